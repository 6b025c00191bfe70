//! Crash text as log pipelines deliver it: every line behind a shipper's
//! prefix (`docker compose logs`, journald/syslog, `kubectl logs
//! --timestamps`, the Kubernetes CRI log format, Docker's json-file lines,
//! JSON shippers), several streams interleaved, and the damage a copy from
//! a web page does (typographic quotes, HTML entities, CRLF, ANSI colours).
//!
//! [`unwrap_log_text`] finds the prefix style most lines carry, strips it
//! per stream, keeps the stream that holds the crash, and says what the
//! prefixes told (container, unit, host, the crash's first timestamp).

use std::sync::LazyLock;

use regex::Regex;

/// What the prefixes of the crash's stream said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogContext {
    /// The prefix style found: `docker-compose`, `journald`, `kubectl`,
    /// `cri`, `docker-json` or `json`.
    pub format: Option<&'static str>,
    /// `docker compose`'s service/container name.
    pub container: Option<String>,
    /// journald/syslog: the unit (or program) and the host.
    pub unit: Option<String>,
    pub host: Option<String>,
    /// The first crash line's time when the prefix carries a full date (RFC 3339).
    pub timestamp: Option<String>,
}

/// Crash text with its log prefixes removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogText {
    pub text: String,
    pub context: LogContext,
}

static RE_ANSI: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]").unwrap());
static RE_CRI: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) (stdout|stderr) ([FP]) ?(.*)$")
        .unwrap()
});
static RE_KUBECTL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) ?(.*)$").unwrap()
});
static RE_SYSLOG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d (\S+) ([^\s\[\]:]+)(?:\[\d+\])?: ?(.*)$")
        .unwrap()
});
static RE_SYSLOG_ISO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) (\S+) ([^\s\[\]:]+)\[\d+\]: ?(.*)$")
        .unwrap()
});
static RE_COMPOSE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z0-9][\w.-]*)\s*\| ?(.*)$").unwrap());

/// One line with its prefix parsed.
#[derive(Debug, Clone)]
struct Prefixed {
    stream: String,
    content: String,
    timestamp: Option<String>,
    host: Option<String>,
    /// CRI's `P`: the line goes on in the next record of the stream.
    partial: bool,
}

type LineParser = fn(&str) -> Option<Prefixed>;

/// The prefix styles, most specific first.
const STYLES: &[(&str, LineParser)] = &[
    ("docker-json", docker_json),
    ("json", shipper_json),
    ("cri", cri),
    ("journald", syslog),
    ("kubectl", kubectl),
    ("docker-compose", compose),
];

/// Share of the non-empty lines a style must parse to be the text's.
const MIN_SHARE: f64 = 0.5;

/// The text with shipper prefixes stripped and copy damage repaired; see
/// the module docs. Text without a prefix style comes back repaired only.
pub fn unwrap_log_text(text: &str) -> LogText {
    let repaired = repair(text);
    let lines: Vec<&str> = repaired.lines().collect();
    let non_empty = lines.iter().filter(|l| !l.trim().is_empty()).count();
    if non_empty == 0 {
        return LogText {
            text: repaired,
            context: LogContext::default(),
        };
    }
    // The style parsing most lines; on a tie the more specific (earlier) one.
    let best = STYLES
        .iter()
        .enumerate()
        .map(|(rank, (name, parse))| {
            let hits = lines.iter().filter(|l| parse(l).is_some()).count();
            (hits, std::cmp::Reverse(rank), *name, *parse)
        })
        .max_by_key(|(hits, rank, _, _)| (*hits, *rank));
    let Some((hits, _, format, parse)) = best else {
        return LogText {
            text: repaired,
            context: LogContext::default(),
        };
    };
    if hits == 0 || (hits as f64) < MIN_SHARE * non_empty as f64 {
        return LogText {
            text: repaired,
            context: LogContext::default(),
        };
    }
    let streams = split_streams(&lines, parse);
    // The stream whose text holds a crash that starts first.
    let chosen = streams
        .iter()
        .filter_map(|s| crash_start(&s.lines).map(|at| (s, at)))
        .min_by_key(|(s, at)| s.positions.get(*at).copied().unwrap_or(usize::MAX));
    let Some((stream, at)) = chosen else {
        // No crash anywhere: the first stream's text, for the caller's error.
        let text = streams
            .first()
            .map(|s| s.lines.join("\n"))
            .unwrap_or_default();
        return LogText {
            text,
            context: LogContext {
                format: Some(format),
                ..LogContext::default()
            },
        };
    };
    let mut context = LogContext {
        format: Some(format),
        timestamp: stream.timestamps.get(at).cloned().flatten(),
        host: stream.host.clone(),
        ..LogContext::default()
    };
    match format {
        "docker-compose" => context.container = Some(stream.name.clone()),
        "journald" => context.unit = Some(stream.name.clone()),
        _ => {}
    }
    LogText {
        text: stream.lines.join("\n"),
        context,
    }
}

/// One stream's lines in order, with where each came in the input.
#[derive(Debug, Default)]
struct Stream {
    name: String,
    host: Option<String>,
    lines: Vec<String>,
    timestamps: Vec<Option<String>>,
    positions: Vec<usize>,
}

/// Lines grouped by stream; a line the style does not parse belongs to the
/// stream of the line before it (a shipper that prefixes only a record's
/// first line), and CRI's partial records are joined.
fn split_streams(lines: &[&str], parse: LineParser) -> Vec<Stream> {
    let mut streams: Vec<Stream> = Vec::new();
    let mut current: Option<usize> = None;
    let mut open_partial: Option<usize> = None;
    for (pos, line) in lines.iter().enumerate() {
        let Some(p) = parse(line) else {
            if let Some(i) = current
                && let Some(s) = streams.get_mut(i)
            {
                s.lines.push((*line).to_string());
                s.timestamps.push(None);
                s.positions.push(pos);
            }
            continue;
        };
        let index = match streams.iter().position(|s| s.name == p.stream) {
            Some(i) => i,
            None => {
                streams.push(Stream {
                    name: p.stream.clone(),
                    host: p.host.clone(),
                    ..Stream::default()
                });
                streams.len() - 1
            }
        };
        current = Some(index);
        let Some(s) = streams.get_mut(index) else {
            continue;
        };
        if open_partial == Some(index)
            && let Some(last) = s.lines.last_mut()
        {
            last.push_str(&p.content);
        } else {
            s.lines.push(p.content);
            s.timestamps.push(p.timestamp);
            s.positions.push(pos);
        }
        open_partial = p.partial.then_some(index);
    }
    streams
}

/// Index of the line a Rust or Go crash starts at.
fn crash_start(lines: &[String]) -> Option<usize> {
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    (0..refs.len()).find(|&i| super::rust::is_header(refs[i]) || super::go::starts_crash(&refs, i))
}

/// Undoes what a copy from a web page or a terminal does to crash text:
/// CRLF and lone CR line ends, ANSI colour codes, typographic quotes and the
/// HTML entities of `<`, `>`, `&` and quotes.
pub fn repair(text: &str) -> String {
    let mut s = text.replace("\r\n", "\n").replace('\r', "\n");
    if s.contains('\x1b') {
        s = RE_ANSI.replace_all(&s, "").into_owned();
    }
    if s.contains(['\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}']) {
        s = s
            .replace(['\u{2018}', '\u{2019}'], "'")
            .replace(['\u{201C}', '\u{201D}'], "\"");
    }
    if s.contains('&') {
        s = s
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&#x27;", "'")
            .replace("&amp;", "&");
    }
    s
}

fn docker_json(line: &str) -> Option<Prefixed> {
    let v = json_object(line)?;
    let log = v.get("log")?.as_str()?;
    Some(Prefixed {
        stream: v
            .get("stream")
            .and_then(|s| s.as_str())
            .unwrap_or("stdout")
            .to_string(),
        content: log.trim_end_matches(['\n', '\r']).to_string(),
        timestamp: v.get("time").and_then(|t| t.as_str()).map(str::to_string),
        host: None,
        partial: false,
    })
}

fn shipper_json(line: &str) -> Option<Prefixed> {
    let v = json_object(line)?;
    let message = ["message", "msg", "MESSAGE"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|m| m.as_str()))?;
    let stream = [
        "stream",
        "container_name",
        "container",
        "_SYSTEMD_UNIT",
        "logger",
    ]
    .iter()
    .find_map(|k| v.get(*k).and_then(|m| m.as_str()))
    .unwrap_or("")
    .to_string();
    let timestamp = ["@timestamp", "timestamp", "time", "ts"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|m| m.as_str()))
        .map(str::to_string);
    Some(Prefixed {
        stream,
        content: message.trim_end_matches(['\n', '\r']).to_string(),
        timestamp,
        host: ["host", "hostname", "_HOSTNAME"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|m| m.as_str()))
            .map(str::to_string),
        partial: false,
    })
}

fn json_object(line: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let t = line.trim();
    if !(t.starts_with('{') && t.ends_with('}')) {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(t).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

fn cri(line: &str) -> Option<Prefixed> {
    let c = RE_CRI.captures(line)?;
    Some(Prefixed {
        stream: c[2].to_string(),
        content: c[4].to_string(),
        timestamp: Some(c[1].to_string()),
        host: None,
        partial: &c[3] == "P",
    })
}

fn kubectl(line: &str) -> Option<Prefixed> {
    let c = RE_KUBECTL.captures(line)?;
    Some(Prefixed {
        stream: String::new(),
        content: c[2].to_string(),
        timestamp: Some(c[1].to_string()),
        host: None,
        partial: false,
    })
}

fn syslog(line: &str) -> Option<Prefixed> {
    if let Some(c) = RE_SYSLOG_ISO.captures(line) {
        return Some(Prefixed {
            stream: c[3].to_string(),
            content: c[4].to_string(),
            timestamp: Some(c[1].to_string()),
            host: Some(c[2].to_string()),
            partial: false,
        });
    }
    let c = RE_SYSLOG.captures(line)?;
    Some(Prefixed {
        stream: c[2].to_string(),
        content: c[3].to_string(),
        // No year in this form: not a time an event can carry.
        timestamp: None,
        host: Some(c[1].to_string()),
        partial: false,
    })
}

fn compose(line: &str) -> Option<Prefixed> {
    let c = RE_COMPOSE.captures(line)?;
    Some(Prefixed {
        stream: c[1].to_string(),
        content: c[2].to_string(),
        timestamp: None,
        host: None,
        partial: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PANIC: &str = "thread 'main' panicked at src/main.rs:5:9:\nindex out of bounds: the len is 3 but the index is 7\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace";

    fn wrapped(prefix: impl Fn(usize, &str) -> String) -> String {
        PANIC
            .lines()
            .enumerate()
            .map(|(i, l)| prefix(i, l))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn each_prefix_style_is_stripped_with_its_context() {
        let compose = wrapped(|_, l| format!("haven2-relay  | {l}"));
        let got = unwrap_log_text(&compose);
        assert_eq!(got.text, PANIC);
        assert_eq!(got.context.format, Some("docker-compose"));
        assert_eq!(got.context.container.as_deref(), Some("haven2-relay"));

        let journald = wrapped(|_, l| format!("Feb 18 20:48:08 host-7 relay[898]: {l}"));
        let got = unwrap_log_text(&journald);
        assert_eq!(got.text, PANIC);
        assert_eq!(got.context.unit.as_deref(), Some("relay"));
        assert_eq!(got.context.host.as_deref(), Some("host-7"));

        let kubectl = wrapped(|i, l| format!("2026-01-02T03:04:0{i}.123456789Z {l}"));
        let got = unwrap_log_text(&kubectl);
        assert_eq!(got.text, PANIC);
        assert_eq!(
            got.context.timestamp.as_deref(),
            Some("2026-01-02T03:04:00.123456789Z")
        );

        let cri = wrapped(|_, l| format!("2026-01-02T03:04:05.123Z stderr F {l}"));
        assert_eq!(unwrap_log_text(&cri).text, PANIC);

        let docker = wrapped(|_, l| {
            serde_json::json!({"log": format!("{l}\n"), "stream": "stderr", "time": "2026-01-02T03:04:05Z"})
                .to_string()
        });
        let got = unwrap_log_text(&docker);
        assert_eq!(got.text, PANIC);
        assert_eq!(got.context.format, Some("docker-json"));

        let shipper =
            wrapped(|_, l| serde_json::json!({"message": l, "level": "error"}).to_string());
        assert_eq!(unwrap_log_text(&shipper).text, PANIC);
    }

    #[test]
    fn cri_partial_records_are_joined() {
        let text = "2026-01-02T03:04:05Z stderr P thread 'main' panicked at src/ma\n\
                    2026-01-02T03:04:05Z stderr F in.rs:5:9:\n\
                    2026-01-02T03:04:05Z stderr F boom";
        assert_eq!(
            unwrap_log_text(text).text,
            "thread 'main' panicked at src/main.rs:5:9:\nboom"
        );
    }

    #[test]
    fn the_stream_holding_the_crash_is_kept() {
        let mut lines = Vec::new();
        for (i, l) in PANIC.lines().enumerate() {
            lines.push(format!("db-1      | checkpoint {i} complete"));
            lines.push(format!("api-1     | {l}"));
        }
        let got = unwrap_log_text(&lines.join("\n"));
        assert_eq!(got.text, PANIC);
        assert_eq!(got.context.container.as_deref(), Some("api-1"));
    }

    #[test]
    fn copy_damage_is_repaired() {
        let pasted = "thread \u{2018}main\u{2019} panicked at src/main.rs:5:9:\r\n\x1b[31mcalled `Option::unwrap()` on a `None` value\x1b[0m\r\nVec&lt;u8&gt; &amp; \u{201C}x\u{201D}";
        assert_eq!(
            unwrap_log_text(pasted).text,
            "thread 'main' panicked at src/main.rs:5:9:\ncalled `Option::unwrap()` on a `None` value\nVec<u8> & \"x\""
        );
    }

    #[test]
    fn plain_text_is_left_alone() {
        let got = unwrap_log_text(PANIC);
        assert_eq!(got.text, PANIC);
        assert_eq!(got.context, LogContext::default());
        assert_eq!(unwrap_log_text("").text, "");
    }
}
