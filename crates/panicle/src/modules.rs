//! The loaded modules (executable and shared objects): where each sits in
//! memory and its GNU build-id, so every frame carries an address a server
//! can symbolize later even when the binary shipped stripped.
//!
//! Read once at init (`dl_iterate_phdr`); the hook only reads the result.

use std::path::PathBuf;
use std::sync::OnceLock;

/// One loaded ELF object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// File on disk; the main executable is `/proc/self/exe`'s target.
    pub path: PathBuf,
    /// Load bias: runtime address minus the ELF virtual address.
    pub bias: usize,
    /// Lowest and highest runtime addresses of its executable segments.
    pub start: usize,
    pub end: usize,
    /// GNU build-id in lowercase hex, when the linker wrote one.
    pub build_id: Option<String>,
    /// True for the main executable.
    pub is_main: bool,
}

impl Module {
    /// The module-relative address (ELF virtual address) of a runtime address.
    pub fn relative(&self, addr: usize) -> usize {
        addr.wrapping_sub(self.bias)
    }
}

static MODULES: OnceLock<Vec<Module>> = OnceLock::new();

/// The modules of this process, read on first call (call it at init).
pub fn modules() -> &'static [Module] {
    MODULES.get_or_init(read_modules)
}

/// The module whose executable segments hold `addr`.
pub fn find(addr: usize) -> Option<&'static Module> {
    modules().iter().find(|m| addr >= m.start && addr < m.end)
}

/// The main executable, if it was found.
pub fn main_module() -> Option<&'static Module> {
    modules().iter().find(|m| m.is_main)
}

#[cfg(target_os = "linux")]
fn read_modules() -> Vec<Module> {
    let mut out: Vec<Module> = Vec::new();
    // SAFETY: the callback only reads the program headers glibc hands it for
    // the duration of the call, and `data` is the `Vec` above.
    unsafe {
        libc::dl_iterate_phdr(Some(callback), (&mut out as *mut Vec<Module>).cast());
    }
    let exe = std::env::current_exe().ok();
    if let Some(first) = out.iter_mut().find(|m| m.path.as_os_str().is_empty()) {
        first.is_main = true;
        if let Some(exe) = exe {
            first.path = exe;
        }
    }
    out.retain(|m| m.end > m.start);
    out
}

#[cfg(not(target_os = "linux"))]
fn read_modules() -> Vec<Module> {
    Vec::new()
}

#[cfg(target_os = "linux")]
unsafe extern "C" fn callback(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: glibc passes a valid `info` for this call; `data` is our Vec.
    let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<Module>>()) };
    let bias = info.dlpi_addr as usize;
    let path = if info.dlpi_name.is_null() {
        PathBuf::new()
    } else {
        // SAFETY: a NUL-terminated string owned by the dynamic loader.
        let name = unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) };
        PathBuf::from(name.to_string_lossy().into_owned())
    };
    let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: `dlpi_phnum` headers start at `dlpi_phdr`.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
    };
    let (mut start, mut end) = (usize::MAX, 0usize);
    let mut build_id = None;
    for ph in headers {
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
            let lo = bias.wrapping_add(ph.p_vaddr as usize);
            start = start.min(lo);
            end = end.max(lo.wrapping_add(ph.p_memsz as usize));
        }
        if ph.p_type == libc::PT_NOTE && build_id.is_none() {
            let at = bias.wrapping_add(ph.p_vaddr as usize) as *const u8;
            // SAFETY: PT_NOTE segments are mapped (they lie in a PT_LOAD).
            let bytes = unsafe { std::slice::from_raw_parts(at, ph.p_memsz as usize) };
            build_id = gnu_build_id(bytes);
        }
    }
    out.push(Module {
        path,
        bias,
        start: if end == 0 { 0 } else { start },
        end,
        build_id,
        is_main: false,
    });
    0
}

/// Finds the `NT_GNU_BUILD_ID` note (type 3, name "GNU") in a note segment.
pub fn gnu_build_id(mut notes: &[u8]) -> Option<String> {
    let word = |b: &[u8], at: usize| -> Option<usize> {
        let w: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_ne_bytes(w) as usize)
    };
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let name_end = 12 + align4(namesz);
        let desc_end = name_end.checked_add(align4(descsz))?;
        if desc_end > notes.len() {
            return None;
        }
        if kind == 3 && notes.get(12..12 + namesz) == Some(b"GNU\0") {
            let desc = &notes[name_end..name_end + descsz];
            return Some(desc.iter().map(|b| format!("{b:02x}")).collect());
        }
        notes = &notes[desc_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_gnu_build_id_note() {
        let mut note = Vec::new();
        // An unrelated note first, then the build-id.
        for (name, kind, desc) in [
            (&b"XYZ\0"[..], 1u32, &[9u8, 9][..]),
            (&b"GNU\0"[..], 3, &[0xab, 0xcd, 0x01, 0x02][..]),
        ] {
            note.extend_from_slice(&(name.len() as u32).to_ne_bytes());
            note.extend_from_slice(&(desc.len() as u32).to_ne_bytes());
            note.extend_from_slice(&kind.to_ne_bytes());
            note.extend_from_slice(name);
            note.extend_from_slice(desc);
            while note.len() % 4 != 0 {
                note.push(0);
            }
        }
        assert_eq!(gnu_build_id(&note).as_deref(), Some("abcd0102"));
        assert_eq!(gnu_build_id(&note[..10]), None);
    }

    #[test]
    fn finds_this_executable_and_its_code() {
        let main = main_module().expect("main module");
        let here = finds_this_executable_and_its_code as fn() as usize;
        let m = find(here).expect("module of this function");
        assert_eq!(m, main);
        assert!(main.relative(here) < here || main.bias == 0);
        assert!(
            main.build_id.as_deref().is_some_and(|b| b.len() >= 16),
            "{main:?}"
        );
    }
}
