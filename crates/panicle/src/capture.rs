//! Building the event of a panic. Runs inside the panic hook: no locks that
//! user code could hold, no network, no panics.

use std::panic::PanicHookInfo;

use panicle_protocol::{Event, Kind, Location, Platform, Sdk, Thread};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::context::Resource;
use crate::options::Options;
use crate::{scope, symbolize};

/// The panic's message, whatever the payload type.
pub fn payload_message(info: &PanicHookInfo<'_>) -> String {
    if let Some(s) = info.payload().downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Runs once, at init, what the first event would otherwise set up inside
/// the hook: the random source behind event ids and the clock's formatting.
pub fn prewarm() {
    std::hint::black_box(uuid::Uuid::new_v4());
    std::hint::black_box(now_rfc3339());
}

/// What is left to do on the panic's span once its id is final.
#[cfg(feature = "otel")]
pub(crate) type SpanException = Option<crate::otel::PendingException>;
/// Without `otel` there is never one.
#[cfg(not(feature = "otel"))]
pub(crate) type SpanException = Option<std::convert::Infallible>;

/// A panic's event, and its exception to record on its span (feature `otel`).
pub(crate) struct Captured {
    pub event: Event,
    pub exception: SpanException,
}

impl Captured {
    /// The event, its exception recorded under its own id (no storm control).
    pub fn into_event(self) -> Event {
        record_on_span(self.exception, &self.event.event_id);
        self.event
    }
}

/// Records the exception on the panic's span, naming `event_id`: the
/// event's own, or the derived id storm control handed out instead.
pub(crate) fn record_on_span(exception: SpanException, event_id: &str) {
    #[cfg(feature = "otel")]
    if let Some(exception) = exception {
        exception.record(event_id);
    }
    #[cfg(not(feature = "otel"))]
    let _ = (exception, event_id);
}

pub(crate) fn capture(
    info: &PanicHookInfo<'_>,
    options: &Options,
    resource: &Resource,
) -> Captured {
    let location = info.location().map(|l| Location {
        // The compiler's path is relative to the workspace already unless the
        // build used absolute paths, which are never shown raw.
        file: if l.file().starts_with('/') {
            symbolize::clean_path(l.file()).0
        } else {
            l.file().to_string()
        },
        line: Some(l.line()),
        column: Some(l.column()),
    });
    build_event(
        payload_message(info),
        location,
        symbolize::capture_raw(),
        options,
        resource,
    )
}

/// The event of a panic with this message and stack, with the thread, the
/// trace (the exception to record on its span), the request and the tags of
/// the current scope. Leaves the event id for the tower layer's 500 answer.
pub(crate) fn build_event(
    message: String,
    location: Option<Location>,
    raw: Vec<symbolize::RawFrame>,
    options: &Options,
    resource: &Resource,
) -> Captured {
    let mut event = Event::new(uuid::Uuid::new_v4().to_string(), now_rfc3339(), message);
    event.platform = Some(Platform::Rust);
    event.kind = Some(Kind::Panic);
    event.location = location;
    let thread = std::thread::current();
    event.thread = Some(Thread {
        name: Some(thread.name().unwrap_or("<unnamed>").to_string()),
        id: Some(format!("{:?}", thread.id())),
    });
    event.frames = symbolize::to_frames(raw, options);
    event.resource = resource.attributes.clone();
    event.release = options.release.clone().or_else(|| {
        let service = resource.get("service.name")?;
        let version = resource.get("service.version")?;
        Some(format!("{service}@{version}"))
    });
    let (tags, request) = scope::snapshot();
    event.tags = tags;
    event.request = request;
    #[cfg(feature = "otel")]
    let exception = crate::otel::attach(&mut event);
    #[cfg(not(feature = "otel"))]
    let exception = None;
    event.sdk = Some(Sdk {
        name: "panicle".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    });
    scope::set_last_event_id(&event.event_id);
    Captured { event, exception }
}
