//! OpenTelemetry: the current trace and span ids for the event, and the
//! panic recorded on that span as an `exception` event (semantic
//! conventions), so trace backends show it too.
//!
//! An app must use the same versions as the SDK (opentelemetry 0.33 with
//! tracing-opentelemetry 0.34); take them from here to be sure:
//! `use panicle::otel::{opentelemetry, tracing_opentelemetry};`.

pub use opentelemetry;
pub use tracing_opentelemetry;

use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use panicle_protocol::{Event, Trace};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Where the panic's span lives: the current `tracing` span (through
/// tracing-opentelemetry) or the opentelemetry Context used directly.
enum Current {
    Tracing(tracing::Span, SpanContext),
    Otel(Context, SpanContext),
}

fn current() -> Option<Current> {
    let span = tracing::Span::current();
    if !span.is_none() {
        let sc = span.context().span().span_context().clone();
        if sc.is_valid() {
            return Some(Current::Tracing(span, sc));
        }
    }
    let cx = Context::current();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(Current::Otel(cx, sc))
}

/// The ids of the current span; `None` outside any (all-zero ids).
pub fn current_trace() -> Option<Trace> {
    current().map(|c| {
        let sc = match &c {
            Current::Tracing(_, sc) | Current::Otel(_, sc) => sc,
        };
        Trace {
            trace_id: sc.trace_id().to_string(),
            span_id: Some(sc.span_id().to_string()),
        }
    })
}

/// The panic's `exception` event, added to its span once the event id is
/// final: storm control may hand out a derived id instead of the event's.
pub(crate) struct PendingException {
    current: Current,
    attributes: Vec<KeyValue>,
}

impl PendingException {
    /// Adds the exception to the span, naming the id the SDK handed out.
    pub(crate) fn record(self, event_id: &str) {
        let mut attributes = self.attributes;
        attributes.push(KeyValue::new("panicle.event_id", event_id.to_string()));
        match self.current {
            Current::Tracing(span, _) => span.add_event("exception", attributes),
            Current::Otel(cx, _) => cx.span().add_event("exception", attributes),
        }
    }
}

/// Fills the event's trace; returns the exception to record on its span.
pub(crate) fn attach(event: &mut Event) -> Option<PendingException> {
    let current = current()?;
    let sc = match &current {
        Current::Tracing(_, sc) | Current::Otel(_, sc) => sc,
    };
    event.trace = Some(Trace {
        trace_id: sc.trace_id().to_string(),
        span_id: Some(sc.span_id().to_string()),
    });
    let attributes = vec![
        KeyValue::new("exception.type", "panic"),
        KeyValue::new("exception.message", event.message.clone()),
        KeyValue::new("exception.stacktrace", stacktrace(event)),
    ];
    Some(PendingException {
        current,
        attributes,
    })
}

/// The frames as text, one `function` / `at file:line` pair each, like
/// Rust's own backtrace.
fn stacktrace(event: &Event) -> String {
    let mut out = String::with_capacity(event.frames.len() * 64);
    for (i, f) in event.frames.iter().enumerate() {
        let name = f.function.as_deref().unwrap_or("<unknown>");
        out.push_str(&format!("{i:4}: {name}\n"));
        if let Some(file) = &f.file {
            match f.line {
                Some(line) => out.push_str(&format!("             at {file}:{line}\n")),
                None => out.push_str(&format!("             at {file}\n")),
            }
        }
    }
    out
}
