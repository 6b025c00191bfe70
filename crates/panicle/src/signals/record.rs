//! The crash record a signal handler leaves in the spool: a line-based text
//! format, written without allocating (the handler) and parsed at the next
//! start. Pure: no I/O.
//!
//! ```text
//! panicle-signal-record 1
//! signal 11                 the signal number
//! code 1                    si_code (> 0: raised by the kernel for a fault)
//! fault_address 0x10        si_addr
//! pc 0x55d0c0a1b2c3         where the thread was interrupted
//! sp 0x7ffd4a1b2000         its stack pointer then
//! pid 4711
//! tid 4711
//! thread worker-1           the kernel's thread name (15 bytes at most)
//! time_ns 1767225600000000000
//! frame 0x55d0c0a1b2c3      the unwound stack, innermost first (the
//! frame 0x55d0c0a1b400      handler's own frames included; cut at `pc`)
//! exe /srv/shop             from here on: written once at init
//! release shop@1.2.0
//! resource {"service.name":"shop"}
//! module 0x55d0c0a00000 0x55d0c0c00000 0x55d0c0900000 8f3a… /srv/shop
//! end                       absent: the handler was cut short
//! ```

use serde_json::{Map, Value};

/// First line of every record; the number is the format's version.
pub const MAGIC: &str = "panicle-signal-record 1";

/// Where bytes go: the handler's file (no allocation), a `Vec` in tests.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// `0x…` in lowercase hex, into a stack buffer.
pub fn hex(n: usize, buf: &mut [u8; 18]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    let mut n = n as u64;
    loop {
        i -= 1;
        buf[i] = DIGITS[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    i -= 1;
    buf[i] = b'x';
    i -= 1;
    buf[i] = b'0';
    &buf[i..]
}

/// A signed decimal, into a stack buffer.
pub fn dec(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// What the handler knows at the moment of the signal.
pub struct Dynamic<'a> {
    pub signal: i32,
    pub code: i32,
    pub fault_address: usize,
    pub pc: usize,
    pub sp: usize,
    pub pid: i32,
    pub tid: i32,
    /// Raw thread name bytes (control characters are written as `?`).
    pub thread: &'a [u8],
    pub time_ns: u64,
}

fn line_hex(sink: &mut impl Sink, key: &[u8], n: usize) {
    let mut buf = [0u8; 18];
    sink.put(key);
    sink.put(b" ");
    sink.put(hex(n, &mut buf));
    sink.put(b"\n");
}

fn line_dec(sink: &mut impl Sink, key: &[u8], n: i64) {
    let mut buf = [0u8; 20];
    sink.put(key);
    sink.put(b" ");
    sink.put(dec(n, &mut buf));
    sink.put(b"\n");
}

/// Writes the record's per-signal part at once (the handler writes it in
/// two steps around the stack walk).
#[cfg(test)]
pub fn write_dynamic(sink: &mut impl Sink, d: &Dynamic<'_>, frames: &[usize]) {
    write_head(sink, d);
    write_frames(sink, frames);
}

/// Everything but the frames. Allocates nothing: safe in a signal handler
/// given a sink that is. Written (and flushed) before the stack walk,
/// so a walk that dies still leaves the signal and the interrupted `pc`.
pub fn write_head(sink: &mut impl Sink, d: &Dynamic<'_>) {
    sink.put(MAGIC.as_bytes());
    sink.put(b"\n");
    line_dec(sink, b"signal", d.signal.into());
    line_dec(sink, b"code", d.code.into());
    line_hex(sink, b"fault_address", d.fault_address);
    line_hex(sink, b"pc", d.pc);
    line_hex(sink, b"sp", d.sp);
    line_dec(sink, b"pid", d.pid.into());
    line_dec(sink, b"tid", d.tid.into());
    if !d.thread.is_empty() {
        sink.put(b"thread ");
        for &b in d.thread {
            let b = if b < 0x20 || b == 0x7f { b'?' } else { b };
            sink.put(&[b]);
        }
        sink.put(b"\n");
    }
    line_dec(sink, b"time_ns", d.time_ns as i64);
}

/// The unwound return addresses, one `frame` line each.
pub fn write_frames(sink: &mut impl Sink, frames: &[usize]) {
    for &f in frames {
        line_hex(sink, b"frame", f);
    }
}

/// A loaded ELF object as the crashed process saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordModule {
    pub start: usize,
    pub end: usize,
    pub bias: usize,
    pub build_id: Option<String>,
    pub path: String,
}

/// The part known at init, made once (allocating is fine there).
pub fn static_part(
    exe: Option<&str>,
    release: Option<&str>,
    resource: &Map<String, Value>,
    modules: &[RecordModule],
) -> Vec<u8> {
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    let mut out = String::new();
    if let Some(exe) = exe {
        out.push_str(&format!("exe {}\n", one_line(exe)));
    }
    if let Some(release) = release {
        out.push_str(&format!("release {}\n", one_line(release)));
    }
    if !resource.is_empty()
        && let Ok(json) = serde_json::to_string(resource)
    {
        out.push_str(&format!("resource {json}\n"));
    }
    for m in modules {
        out.push_str(&format!(
            "module {:#x} {:#x} {:#x} {} {}\n",
            m.start,
            m.end,
            m.bias,
            m.build_id.as_deref().unwrap_or("-"),
            one_line(&m.path)
        ));
    }
    out.into_bytes()
}

/// The last line of a complete record.
pub const END: &[u8] = b"end\n";

/// A parsed record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub signal: i32,
    pub code: i32,
    pub fault_address: usize,
    pub pc: usize,
    pub sp: usize,
    pub pid: i32,
    pub tid: i32,
    pub thread: Option<String>,
    pub time_ns: u64,
    pub frames: Vec<usize>,
    pub exe: Option<String>,
    pub release: Option<String>,
    pub resource: Map<String, Value>,
    pub modules: Vec<RecordModule>,
    /// False when the `end` line is missing: the handler was cut short
    /// (a second fault while writing), what is there is kept.
    pub complete: bool,
}

/// Why a file is not a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("not a Panicle signal record (first line {0:?})")]
    NotARecord(String),
    #[error("the record names no signal")]
    NoSignal,
}

fn parse_hex(s: &str) -> Option<usize> {
    usize::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

impl Record {
    /// Parses a record; unknown keys and malformed lines are skipped (a
    /// newer writer, a cut line), a missing signal is an error.
    pub fn parse(text: &str) -> Result<Record, RecordError> {
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("");
        if first != MAGIC {
            return Err(RecordError::NotARecord(
                first.chars().take(60).collect::<String>(),
            ));
        }
        let mut r = Record::default();
        let mut signal = None;
        for line in lines {
            if line == "end" {
                r.complete = true;
                break;
            }
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "signal" => signal = value.parse().ok(),
                "code" => r.code = value.parse().unwrap_or(0),
                "fault_address" => r.fault_address = parse_hex(value).unwrap_or(0),
                "pc" => r.pc = parse_hex(value).unwrap_or(0),
                "sp" => r.sp = parse_hex(value).unwrap_or(0),
                "pid" => r.pid = value.parse().unwrap_or(0),
                "tid" => r.tid = value.parse().unwrap_or(0),
                "thread" if !value.is_empty() => r.thread = Some(value.to_string()),
                "time_ns" => r.time_ns = value.parse().unwrap_or(0),
                "frame" => r.frames.extend(parse_hex(value)),
                "exe" if !value.is_empty() => r.exe = Some(value.to_string()),
                "release" if !value.is_empty() => r.release = Some(value.to_string()),
                "resource" => {
                    if let Ok(Value::Object(map)) = serde_json::from_str(value) {
                        r.resource = map;
                    }
                }
                "module" => {
                    let mut parts = value.splitn(5, ' ');
                    let mut next_hex = || parts.next().and_then(parse_hex);
                    if let (Some(start), Some(end), Some(bias)) =
                        (next_hex(), next_hex(), next_hex())
                    {
                        let build_id = parts.next().filter(|b| *b != "-").map(str::to_string);
                        let path = parts.next().unwrap_or("").to_string();
                        r.modules.push(RecordModule {
                            start,
                            end,
                            bias,
                            build_id,
                            path,
                        });
                    }
                }
                _ => {}
            }
        }
        r.signal = signal.ok_or(RecordError::NoSignal)?;
        Ok(r)
    }

    /// The module whose code holds `addr`.
    pub fn module_of(&self, addr: usize) -> Option<&RecordModule> {
        self.modules
            .iter()
            .find(|m| addr >= m.start && addr < m.end)
    }

    /// The unwound stack from the interrupted frame on: the handler's own
    /// frames (and the kernel's signal trampoline) above `pc` dropped. When
    /// the unwinder did not get through the trampoline, `pc` alone.
    pub fn crash_frames(&self) -> Vec<usize> {
        match self
            .frames
            .iter()
            .position(|&f| f == self.pc || f == self.pc.wrapping_add(1))
        {
            Some(i) => {
                let mut out = self.frames[i..].to_vec();
                out[0] = self.pc;
                out
            }
            None if self.pc != 0 => vec![self.pc],
            None => self.frames.clone(),
        }
    }

    /// A fault on the stack's own guard: a kernel-raised SIGSEGV/SIGBUS
    /// at an address within 64 KiB of the stack pointer. Rust probes its
    /// stack page by page, so an overflow faults right at the pointer,
    /// while a bad pointer rarely lands next to it.
    pub fn is_stack_overflow(&self) -> bool {
        const NEAR: usize = 64 * 1024;
        let fault = self.signal == libc::SIGSEGV || self.signal == libc::SIGBUS;
        let by_kernel = self.code > 0;
        let near = self.fault_address.abs_diff(self.sp) <= NEAR;
        fault && by_kernel && self.sp != 0 && near
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_format_without_allocating() {
        let mut h = [0u8; 18];
        assert_eq!(hex(0, &mut h), b"0x0");
        assert_eq!(hex(0xdead_beef, &mut h), b"0xdeadbeef");
        assert_eq!(hex(usize::MAX, &mut h), b"0xffffffffffffffff");
        let mut d = [0u8; 20];
        assert_eq!(dec(0, &mut d), b"0");
        assert_eq!(dec(-6, &mut d), b"-6");
        assert_eq!(dec(i64::MIN, &mut d), b"-9223372036854775808");
        assert_eq!(dec(1_767_225_600, &mut d), b"1767225600");
    }

    fn sample(frames: &[usize], thread: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_dynamic(
            &mut out,
            &Dynamic {
                signal: 11,
                code: 1,
                fault_address: 0x7ffc_0000_0ff8,
                pc: 0x5555_0000_1234,
                sp: 0x7ffc_0000_1000,
                pid: 4711,
                tid: 4712,
                thread,
                time_ns: 1_767_225_600_123_456_789,
            },
            frames,
        );
        let mut resource = Map::new();
        resource.insert("service.name".into(), Value::from("shop"));
        out.extend(static_part(
            Some("/srv/shop"),
            Some("shop@1.2.0"),
            &resource,
            &[RecordModule {
                start: 0x5555_0000_0000,
                end: 0x5555_0010_0000,
                bias: 0x5554_ff00_0000,
                build_id: Some("8f3a01".into()),
                path: "/srv/my shop".into(),
            }],
        ));
        out
    }

    #[test]
    fn a_written_record_parses_back() {
        let frames = [0x1000, 0x2000, 0x5555_0000_1234, 0x5555_0000_2000];
        let mut bytes = sample(&frames, b"work\ner");
        bytes.extend_from_slice(END);
        let r = Record::parse(std::str::from_utf8(&bytes).unwrap()).unwrap();
        assert!(r.complete);
        assert_eq!(r.signal, 11);
        assert_eq!(r.code, 1);
        assert_eq!((r.pid, r.tid), (4711, 4712));
        assert_eq!(r.thread.as_deref(), Some("work?er"));
        assert_eq!(r.time_ns, 1_767_225_600_123_456_789);
        assert_eq!(r.frames, frames);
        assert_eq!(r.exe.as_deref(), Some("/srv/shop"));
        assert_eq!(r.release.as_deref(), Some("shop@1.2.0"));
        assert_eq!(r.resource["service.name"], "shop");
        assert_eq!(r.modules.len(), 1);
        assert_eq!(r.modules[0].path, "/srv/my shop");
        assert_eq!(r.modules[0].build_id.as_deref(), Some("8f3a01"));
        assert_eq!(
            r.module_of(0x5555_0000_2000).map(|m| m.bias),
            Some(0x5554_ff00_0000)
        );
        assert_eq!(r.module_of(0x1000), None);
        // The handler's frames above the interrupted one are cut.
        assert_eq!(r.crash_frames(), [0x5555_0000_1234, 0x5555_0000_2000]);
        // 0xff8 below the stack pointer, raised by the kernel.
        assert!(r.is_stack_overflow());
    }

    #[test]
    fn a_cut_record_keeps_what_was_written() {
        let bytes = sample(&[0x1000, 0x2000], b"main");
        let text = std::str::from_utf8(&bytes).unwrap();
        // Cut in the middle of the frames: the last line half written.
        let cut = &text[..text.find("frame 0x2000").unwrap() + 8];
        let r = Record::parse(cut).unwrap();
        assert!(!r.complete);
        assert_eq!(r.frames, [0x1000]);
        // The unwinder never reached the interrupted frame: `pc` alone.
        assert_eq!(r.crash_frames(), [0x5555_0000_1234]);
        assert!(matches!(
            Record::parse("{\"event_id\":1}"),
            Err(RecordError::NotARecord(_))
        ));
        assert_eq!(
            Record::parse(&format!("{MAGIC}\npid 1\n")),
            Err(RecordError::NoSignal)
        );
    }

    #[test]
    fn a_null_dereference_or_a_sent_signal_is_no_stack_overflow() {
        let base = Record {
            signal: libc::SIGSEGV,
            code: 1,
            fault_address: 0x10,
            sp: 0x7ffc_0000_1000,
            ..Record::default()
        };
        assert!(!base.is_stack_overflow());
        let sent = Record {
            code: -6,
            fault_address: 0x7ffc_0000_0ff0,
            ..base.clone()
        };
        assert!(!sent.is_stack_overflow());
        let abort = Record {
            signal: libc::SIGABRT,
            fault_address: 0x7ffc_0000_0ff0,
            ..base
        };
        assert!(!abort.is_stack_overflow());
    }
}
