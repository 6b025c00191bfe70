//! A Sentry event (the JSON of an envelope's `event` item or of the store
//! endpoint) mapped to schema v1.
//!
//! What Sentry orders outermost first (stack frames) becomes innermost
//! first; the last exception of a chain is the one raised and gives the
//! message and frames; frames without `in_app` get the platform's usual
//! default, so grouping and rules see the service's own code.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::event::{
    Breadcrumb, Event, Frame, Kind, Location, Platform, Request, Sdk, Thread, Trace,
};
use crate::normalize::{is_plumbing, short_function_name};

/// Breadcrumbs kept per event, the newest: SDKs keep 100 by default.
pub const MAX_BREADCRUMBS: usize = 100;

/// Why a Sentry event payload could not be mapped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SentryEventError {
    #[error("the event is not valid JSON: {0}")]
    Json(String),
    #[error("the event is not a JSON object")]
    NotAnObject,
}

impl SentryEventError {
    pub fn code(&self) -> &'static str {
        match self {
            SentryEventError::Json(_) => "invalid_json",
            SentryEventError::NotAnObject => "invalid_event",
        }
    }
}

/// What the server fills in when the SDK left it out: the envelope's id
/// (or a fresh one) and the receive time.
#[derive(Debug, Clone, Copy)]
pub struct Fallback<'a> {
    pub event_id: &'a str,
    /// RFC 3339.
    pub timestamp: &'a str,
}

/// Parses and maps an event payload. Strings are made storable (NUL
/// replaced) before mapping.
pub fn parse_event(payload: &[u8], fallback: Fallback<'_>) -> Result<Event, SentryEventError> {
    let mut value: Value =
        serde_json::from_slice(payload).map_err(|e| SentryEventError::Json(e.to_string()))?;
    crate::decode::make_storable(&mut value);
    map_event(&value, fallback)
}

/// Maps a parsed Sentry event to a schema-v1 event. Never fails on a field
/// of an unexpected type: such a field is skipped.
pub fn map_event(value: &Value, fallback: Fallback<'_>) -> Result<Event, SentryEventError> {
    let obj = value.as_object().ok_or(SentryEventError::NotAnObject)?;
    let event_id = str_of(obj, "event_id").unwrap_or(fallback.event_id);
    let timestamp = obj
        .get("timestamp")
        .and_then(rfc3339)
        .unwrap_or_else(|| fallback.timestamp.to_string());
    let platform = platform_of(obj);
    let exceptions = values_of(obj.get("exception"));
    let raised = exceptions.last().copied();
    let level = str_of(obj, "level");

    let message = match raised {
        Some(exc) => exception_message(exc, platform),
        None => log_message(obj).unwrap_or_else(|| "(no message)".to_string()),
    };
    let mut event = Event::new(event_id.trim().to_string(), timestamp, message);
    event.platform = Some(platform);
    event.kind = Some(match raised {
        Some(exc) => kind_of(exc, platform, level),
        None => Kind::Message,
    });

    // Frames: the raised exception's, else the crashing thread's, else the
    // event's own (`attach_stacktrace`).
    let threads = values_of(obj.get("threads"));
    let crashed = threads
        .iter()
        .find(|t| t.get("crashed").and_then(Value::as_bool) == Some(true))
        .or_else(|| {
            let wanted = raised.and_then(|e| e.get("thread_id"));
            threads
                .iter()
                .find(|t| wanted.is_some() && t.get("id") == wanted)
        })
        .or_else(|| {
            threads
                .iter()
                .find(|t| t.get("current").and_then(Value::as_bool) == Some(true))
        })
        .copied();
    let stacktrace = raised
        .and_then(|e| e.get("stacktrace"))
        .filter(|s| has_frames(s))
        .or_else(|| {
            crashed
                .and_then(|t| t.get("stacktrace"))
                .filter(|s| has_frames(s))
        })
        .or_else(|| obj.get("stacktrace").filter(|s| has_frames(s)));
    if let Some(st) = stacktrace {
        event.frames = map_frames(st, platform, event.kind == Some(Kind::Panic));
    }
    event.location = event.frames.first().and_then(|f| {
        Some(Location {
            file: f.file.clone()?,
            line: f.line,
            column: f.column,
        })
    });
    if let Some(t) = crashed {
        let name = t.get("name").and_then(Value::as_str).map(str::to_string);
        let id = t.get("id").and_then(scalar_string);
        if name.is_some() || id.is_some() {
            event.thread = Some(Thread { name, id });
        }
    }

    let contexts = obj.get("contexts").and_then(Value::as_object);
    event.trace = contexts
        .and_then(|c| c.get("trace"))
        .and_then(|t| t.as_object())
        .and_then(|t| {
            let trace_id = str_of(t, "trace_id")?.to_ascii_lowercase();
            (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| {
                Trace {
                    trace_id,
                    span_id: str_of(t, "span_id").map(str::to_ascii_lowercase),
                }
            })
        });
    let mut put = |key: &str, v: Option<&str>| {
        if let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) {
            event
                .resource
                .insert(key.to_string(), Value::String(v.to_string()));
        }
    };
    put("host.name", str_of(obj, "server_name"));
    put("deployment.environment", str_of(obj, "environment"));
    let ctx = |name: &str, field: &str| {
        contexts
            .and_then(|c| c.get(name))
            .and_then(Value::as_object)
            .and_then(|o| str_of(o, field))
    };
    put("os.name", ctx("os", "name"));
    put("os.version", ctx("os", "version"));
    put("process.runtime.name", ctx("runtime", "name"));
    put("process.runtime.version", ctx("runtime", "version"));
    put("device.model.identifier", ctx("device", "model"));
    put("host.arch", ctx("device", "arch"));

    event.release = str_of(obj, "release").map(str::to_string);
    event.tags = tags_of(obj.get("tags"));
    event.sdk = obj.get("sdk").and_then(Value::as_object).and_then(|s| {
        Some(Sdk {
            name: str_of(s, "name")?.to_string(),
            version: str_of(s, "version").unwrap_or("").to_string(),
        })
    });
    let transaction = str_of(obj, "transaction");
    event.request = request_of(obj.get("request"), transaction);
    event.breadcrumbs = breadcrumbs_of(obj.get("breadcrumbs"));

    // Kept as sent, outside the typed schema.
    let extra = &mut event.extra;
    if let Some(level) = level {
        extra.insert("level".into(), json!(level));
    }
    if let Some(t) = transaction {
        extra.insert("transaction".into(), json!(t));
    }
    if let Some(id) = obj
        .get("user")
        .and_then(|u| u.get("id"))
        .and_then(scalar_string)
    {
        // Only the id: emails, names and addresses stay with the SDK.
        extra.insert("user".into(), json!({ "id": id }));
    }
    if !exceptions.is_empty() {
        let chain: Vec<Value> = exceptions
            .iter()
            .map(|e| {
                let mut m = Map::new();
                for key in ["type", "value", "module", "mechanism"] {
                    if let Some(v) = e.get(key).filter(|v| !v.is_null()) {
                        m.insert(key.into(), v.clone());
                    }
                }
                Value::Object(m)
            })
            .collect();
        extra.insert("exceptions".into(), Value::Array(chain));
    }
    if let Some(x) = obj.get("extra").filter(|x| x.is_object()) {
        extra.insert("sentry_extra".into(), x.clone());
    }
    Ok(event)
}

fn str_of<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `{"values": [..]}` or a bare array, as Sentry accepts both.
fn values_of(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(Value::Object(o)) => match o.get("values") {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// An RFC 3339 string as sent, or Sentry's float seconds since the epoch.
fn rfc3339(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => {
            let s = s.trim();
            if OffsetDateTime::parse(s, &Rfc3339).is_ok() {
                return Some(s.to_string());
            }
            // Sentry also takes a naive time, meaning UTC.
            let with_z = format!("{s}Z");
            OffsetDateTime::parse(&with_z, &Rfc3339)
                .is_ok()
                .then_some(with_z)
                .or_else(|| s.parse::<f64>().ok().and_then(from_seconds))
        }
        Value::Number(n) => n.as_f64().and_then(from_seconds),
        _ => None,
    }
}

fn from_seconds(secs: f64) -> Option<String> {
    if !secs.is_finite() {
        return None;
    }
    let nanos = (secs * 1e9) as i128;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// The platform from the SDK's name first (sentry-rust says `native`),
/// then the event's `platform`.
fn platform_of(obj: &Map<String, Value>) -> Platform {
    let sdk = obj
        .get("sdk")
        .and_then(|s| s.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if sdk.starts_with("sentry.rust") {
        return Platform::Rust;
    }
    if sdk.starts_with("sentry.go") {
        return Platform::Go;
    }
    if sdk.starts_with("sentry.python") {
        return Platform::Python;
    }
    if sdk.starts_with("sentry.javascript.node") {
        return Platform::Node;
    }
    match str_of(obj, "platform").unwrap_or("") {
        "rust" => Platform::Rust,
        "go" => Platform::Go,
        "python" => Platform::Python,
        "node" | "javascript" => Platform::Node,
        _ => Platform::Other,
    }
}

fn mechanism_type(exc: &Value) -> Option<&str> {
    exc.get("mechanism")?.get("type")?.as_str()
}

/// A panic is a panic whichever SDK reports it: sentry-rust's panic
/// integration (mechanism `panic`) and sentry-go's `Recover` (level fatal).
fn kind_of(exc: &Value, platform: Platform, level: Option<&str>) -> Kind {
    if mechanism_type(exc) == Some("panic") {
        return Kind::Panic;
    }
    if platform == Platform::Go && level == Some("fatal") {
        return Kind::Panic;
    }
    Kind::Exception
}

/// Rust and Go messages are the panic's own text (as Panicle's SDK and
/// crash-text parser give them, so they group alike and the rules match);
/// other platforms read `Type: value`, as their tracebacks print it.
fn exception_message(exc: &Value, platform: Platform) -> String {
    let ty = exc
        .get("type")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let value = exc
        .get("value")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let bare = matches!(platform, Platform::Rust | Platform::Go);
    match (ty, value) {
        (_, Some(v)) if bare => v.to_string(),
        (Some(t), Some(v)) => format!("{t}: {v}"),
        (Some(t), None) => t.to_string(),
        (None, Some(v)) => v.to_string(),
        (None, None) => "(no message)".to_string(),
    }
}

fn log_message(obj: &Map<String, Value>) -> Option<String> {
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => str_of(o, "formatted")
                .or_else(|| str_of(o, "message"))
                .map(str::to_string),
            _ => None,
        }
    };
    obj.get("logentry")
        .and_then(text)
        .or_else(|| obj.get("message").and_then(text))
        .filter(|s| !s.trim().is_empty())
}

fn has_frames(stacktrace: &Value) -> bool {
    stacktrace
        .get("frames")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// Sentry's frames are outermost first; Panicle's innermost first. A Rust
/// panic's own machinery on top (`core::panicking`, `Option::unwrap`,
/// sentry's hook) is cut, so `frames[0]` is the panicking user frame as
/// Panicle's SDK gives it.
fn map_frames(stacktrace: &Value, platform: Platform, panic: bool) -> Vec<Frame> {
    let Some(raw) = stacktrace.get("frames").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut frames: Vec<(Frame, bool)> = raw
        .iter()
        .rev()
        .filter_map(Value::as_object)
        .map(|f| (map_frame(f, platform), is_rust_library_path(f)))
        .collect();
    if platform == Platform::Rust {
        if panic {
            let cut = frames
                .iter()
                .position(|(f, std_path)| {
                    !(*std_path || f.function.as_deref().is_some_and(is_rust_panic_machinery))
                })
                .unwrap_or(0);
            frames.drain(..cut);
        }
        qualify_bare_rust_names(&mut frames);
    }
    frames.into_iter().map(|(f, _)| f).collect()
}

/// A frame in Rust's own library sources (`/rustc/<hash>/library/core/…`).
fn is_rust_library_path(f: &Map<String, Value>) -> bool {
    ["abs_path", "filename"].iter().any(|k| {
        str_of(f, k).is_some_and(|p| {
            p.starts_with("/rustc/")
                || p.contains("/library/core/")
                || p.contains("/library/std/")
                || p.contains("/library/alloc/")
        })
    })
}

/// sentry-rust names an inlined function as DWARF does, bare
/// (`account_of`); Panicle's SDK names it by its path. A bare name takes
/// the module of a neighbouring frame in the same file (the caller first),
/// as Panicle's symbolizer does, so both group alike.
fn qualify_bare_rust_names(frames: &mut [(Frame, bool)]) {
    for i in 0..frames.len() {
        let (frame, std_path) = &frames[i];
        let Some(name) = frame.function.as_deref() else {
            continue;
        };
        if *std_path || name.contains("::") || name.starts_with('<') || is_plumbing(name) {
            continue;
        }
        let file = frame.file.clone();
        let module = [i + 1, i.wrapping_sub(1)]
            .into_iter()
            .filter_map(|j| frames.get(j))
            .filter(|(n, _)| file.is_some() && n.file == file)
            .find_map(|(n, _)| module_of(n.function.as_deref()?));
        if let Some(module) = module {
            let qualified = format!("{module}::{name}");
            frames[i].0.function = Some(qualified);
        }
    }
}

/// The module of a named function: `a::b` for `a::b::f` and for
/// `a::b::f::{closure}::{closure}`; None for `<T as Trait>::f`.
fn module_of(function: &str) -> Option<String> {
    if function.starts_with('<') {
        return None;
    }
    let mut path = function;
    while let Some((head, last)) = path.rsplit_once("::") {
        if last.starts_with('{') {
            path = head;
        } else {
            return Some(head.to_string());
        }
    }
    None
}

fn rust_crate(function: &str) -> &str {
    let f = function.trim_start_matches(['<', '&']);
    let end = f
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(f.len());
    &f[..end]
}

fn is_rust_panic_machinery(function: &str) -> bool {
    if is_plumbing(function) || function.starts_with("rust_begin_unwind") {
        return true;
    }
    let root = rust_crate(function);
    root == "panicle" || root == "backtrace" || root == "sentry" || root.starts_with("sentry_")
}

fn map_frame(f: &Map<String, Value>, platform: Platform) -> Frame {
    let function = str_of(f, "function").filter(|s| !s.is_empty());
    let module = str_of(f, "module").filter(|s| !s.is_empty());
    let filename = str_of(f, "filename").filter(|s| !s.is_empty());
    let abs_path = str_of(f, "abs_path").filter(|s| !s.is_empty());
    let mut frame = Frame {
        file: filename.or(abs_path).map(str::to_string),
        line: f
            .get("lineno")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        column: f
            .get("colno")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        in_app: f.get("in_app").and_then(Value::as_bool),
        package: str_of(f, "package").map(str::to_string),
        instruction_addr: str_of(f, "instruction_addr").map(str::to_string),
        ..Frame::default()
    };
    match platform {
        Platform::Rust => {
            if let Some(name) = function {
                // Legacy demangling's `{{closure}}` is the `{closure}` of v0.
                let short = short_function_name(&name.replace("{{closure}}", "{closure}"));
                if short != name {
                    frame.raw_function = Some(name.to_string());
                }
                frame.function = Some(short);
            }
        }
        _ => {
            // Python's `<module>`, JavaScript's `<anonymous>`: braces, as
            // Rust's `{closure}`, so no step takes them for generics.
            let name = function.map(|n| n.replace('<', "{").replace('>', "}"));
            let qualify = matches!(platform, Platform::Python | Platform::Go);
            frame.function = match (name, module) {
                (Some(n), Some(m)) if qualify && !n.starts_with(&format!("{m}.")) => {
                    Some(format!("{m}.{n}"))
                }
                (Some(n), _) => Some(n),
                (None, Some(m)) => Some(m.to_string()),
                (None, None) => None,
            };
        }
    }
    let default = default_in_app(platform, function, module, filename, abs_path);
    frame.in_app = match (frame.in_app, platform) {
        // sentry-rust marks every frame it cannot place in-app (tokio,
        // registry crates, inlined std): its `true` is only a guess.
        (Some(true), Platform::Rust) => default,
        (Some(sent), _) => Some(sent),
        (None, _) => default,
    };
    frame
}

/// The platform's usual answer for a frame the SDK did not mark: the
/// standard library, installed packages and the runtime are not the
/// service's code.
fn default_in_app(
    platform: Platform,
    function: Option<&str>,
    module: Option<&str>,
    filename: Option<&str>,
    abs_path: Option<&str>,
) -> Option<bool> {
    let paths = [filename, abs_path];
    let any_path = |pred: &dyn Fn(&str) -> bool| paths.iter().flatten().any(|p| pred(p));
    match platform {
        Platform::Python => Some(!any_path(&|p| {
            p.contains("site-packages") || p.contains("dist-packages") || is_python_stdlib(p)
        })),
        Platform::Node => Some(!any_path(&|p| {
            p.starts_with("node:")
                || p.contains("node_modules")
                || p.starts_with("internal/")
                || p.starts_with("events.js")
        })),
        Platform::Go => {
            // The standard library's import paths have no dot in their
            // first segment (`runtime`, `net/http`); `main` is the service.
            let stdlib_module = module.is_some_and(|m| {
                let first = m.split('/').next().unwrap_or(m);
                m != "main" && !first.contains('.')
            });
            let foreign_path = any_path(&|p| {
                p.contains("/pkg/mod/")
                    || p.contains("/vendor/")
                    || p.contains("/usr/local/go/src/")
                    || p.contains("/usr/lib/go")
                    || p.contains("/goroot/src/")
            });
            Some(!(stdlib_module || foreign_path))
        }
        Platform::Rust => {
            // An unnamed frame (`<unknown>`: no symbol) is nobody's code.
            let foreign_fn =
                function.is_none_or(|f| f == "<unknown>" || is_rust_panic_machinery(f));
            let foreign_path = any_path(&|p| {
                p.starts_with("/rustc/")
                    || p.contains("/.cargo/registry/")
                    || p.contains("/.cargo/git/")
                    || p.contains("/library/std/")
                    || p.contains("/library/core/")
            });
            Some(!(foreign_fn || foreign_path))
        }
        Platform::Other => None,
    }
}

/// `/usr/lib/python3.11/json/decoder.py` and the like (site-packages is
/// checked apart).
fn is_python_stdlib(path: &str) -> bool {
    let Some(at) = path.find("/python") else {
        return false;
    };
    let rest = &path[at + "/python".len()..];
    let digits = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    digits > 0 && rest.as_bytes().get(digits) == Some(&b'/') && path[..at].ends_with("lib")
}

fn tags_of(v: Option<&Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match v {
        Some(Value::Object(o)) => {
            for (k, v) in o {
                if let Some(s) = scalar_string(v) {
                    out.insert(k.clone(), s);
                }
            }
        }
        Some(Value::Array(pairs)) => {
            for pair in pairs {
                if let Some([k, v]) = pair.as_array().map(Vec::as_slice)
                    && let (Some(k), Some(v)) = (k.as_str(), scalar_string(v))
                {
                    out.insert(k.to_string(), v);
                }
            }
        }
        _ => {}
    }
    out
}

/// The route from the transaction name (`GET /orders/{id}`, `/orders/:id`)
/// where it reads as one, else the URL's path.
fn request_of(v: Option<&Value>, transaction: Option<&str>) -> Option<Request> {
    let req = v.and_then(Value::as_object);
    let method = req
        .and_then(|r| str_of(r, "method"))
        .map(str::to_ascii_uppercase);
    let from_transaction = transaction.and_then(|t| {
        let t = t.trim();
        let path = match t.split_once(' ') {
            Some((m, rest)) if m.chars().all(|c| c.is_ascii_uppercase()) => rest.trim(),
            _ => t,
        };
        path.starts_with('/').then(|| path.to_string())
    });
    let from_url = || {
        let url = req.and_then(|r| str_of(r, "url"))?;
        let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
        let path = match after_scheme.find('/') {
            Some(at) if url.contains("://") => &after_scheme[at..],
            None if url.contains("://") => "/",
            _ => after_scheme,
        };
        let path = path.split(['?', '#']).next().unwrap_or(path);
        Some(path.to_string())
    };
    let route = from_transaction.or_else(from_url);
    if req.is_none() && route.is_none() {
        return None;
    }
    Some(Request {
        method,
        route,
        request_id: None,
    })
}

fn breadcrumbs_of(v: Option<&Value>) -> Vec<Breadcrumb> {
    let all = values_of(v);
    let skip = all.len().saturating_sub(MAX_BREADCRUMBS);
    all.into_iter()
        .skip(skip)
        .filter_map(Value::as_object)
        .map(|b| Breadcrumb {
            timestamp: b.get("timestamp").and_then(rfc3339),
            kind: str_of(b, "type").map(str::to_string),
            category: str_of(b, "category").map(str::to_string),
            level: str_of(b, "level").map(str::to_string),
            message: str_of(b, "message").map(str::to_string),
            data: b.get("data").filter(|d| !d.is_null()).cloned(),
        })
        .collect()
}
