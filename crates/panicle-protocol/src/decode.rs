//! Decoding of the JSON wire format: one event or an array of events.
//!
//! Every rejection names the offending field (`[2].timestamp`), so a client
//! author can fix the sender without reading server logs.

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::event::Event;

/// Why a request body could not become events.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("body is not valid JSON for an event at `{path}`: {message}")]
    Json { path: String, message: String },
    #[error("field `{field}` is invalid: {message}")]
    InvalidField { field: String, message: String },
    #[error("the batch is empty: send one event object or a non-empty array")]
    EmptyBatch,
    #[error("the batch holds {count} events, more than the limit of {limit}: split it")]
    BatchTooLarge { count: usize, limit: usize },
}

impl DecodeError {
    /// Stable snake_case code for the API's error body and for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Json { .. } => "invalid_json",
            DecodeError::InvalidField { .. } => "invalid_field",
            DecodeError::EmptyBatch => "empty_batch",
            DecodeError::BatchTooLarge { .. } => "batch_too_large",
        }
    }
}

/// An event that passed validation, with its timestamp parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub event: Event,
    /// Milliseconds since the Unix epoch, UTC.
    pub timestamp_ms: i64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<serde_json::Value>),
    One(Box<serde_json::Value>),
}

pub const MAX_BATCH: usize = 1000;

/// A decoded body: one event, or a batch whose events are judged one by one.
#[derive(Debug)]
pub enum DecodedBody {
    /// The body was one event object: it is taken or refused as a whole.
    One(Box<Decoded>),
    /// The body was an array: each event has its own outcome, so one bad
    /// event never blocks the rest of its batch.
    Batch(Vec<BatchItem>),
}

/// One event of a batch and what decoding made of it.
#[derive(Debug)]
pub struct BatchItem {
    /// The item's `event_id` as sent (lowercased), when it had a string one:
    /// names the event in the answer even when it failed validation.
    pub event_id: Option<String>,
    pub result: Result<Decoded, DecodeError>,
}

/// Decodes a body holding one event object or a JSON array of them; the
/// whole body is refused only when it is not JSON, empty or too large, or
/// when its single event is invalid.
pub fn decode_body(body: &[u8]) -> Result<DecodedBody, DecodeError> {
    let parsed: OneOrMany = serde_json::from_slice(body).map_err(|e| DecodeError::Json {
        path: ".".into(),
        message: e.to_string(),
    })?;
    match parsed {
        OneOrMany::One(value) => decode_value(*value, None).map(|d| DecodedBody::One(Box::new(d))),
        OneOrMany::Many(values) => {
            if values.is_empty() {
                return Err(DecodeError::EmptyBatch);
            }
            if values.len() > MAX_BATCH {
                return Err(DecodeError::BatchTooLarge {
                    count: values.len(),
                    limit: MAX_BATCH,
                });
            }
            Ok(DecodedBody::Batch(
                values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| BatchItem {
                        event_id: raw_event_id(&v),
                        result: decode_value(v, Some(i)),
                    })
                    .collect(),
            ))
        }
    }
}

/// Decodes a body holding one event object or a JSON array of them, all or
/// nothing: the first invalid event refuses the body.
pub fn decode_events(body: &[u8]) -> Result<Vec<Decoded>, DecodeError> {
    match decode_body(body)? {
        DecodedBody::One(d) => Ok(vec![*d]),
        DecodedBody::Batch(items) => items.into_iter().map(|i| i.result).collect(),
    }
}

fn raw_event_id(body_item: &serde_json::Value) -> Option<String> {
    body_item
        .get("event_id")
        .and_then(serde_json::Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase())
}

fn decode_value(
    mut value: serde_json::Value,
    index: Option<usize>,
) -> Result<Decoded, DecodeError> {
    let at = |field: &str| match index {
        Some(i) => format!("[{i}].{field}"),
        None => field.to_string(),
    };
    make_storable(&mut value);
    let event: Event = serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.inner().to_string();
        let path = e.path().to_string();
        // serde reports a missing field at the parent path: name the field itself.
        let field = match missing_field_name(&inner) {
            Some(name) if path == "." => name.to_string(),
            Some(name) => format!("{path}.{name}"),
            None => path,
        };
        DecodeError::Json {
            path: at(&field),
            message: inner,
        }
    })?;
    validate(event).map_err(|(field, message)| DecodeError::InvalidField {
        field: at(field),
        message,
    })
}

/// What a NUL character becomes: PostgreSQL cannot store U+0000 in TEXT, and
/// both backends must keep the same string, so it is replaced everywhere.
pub const NUL_REPLACEMENT: char = char::REPLACEMENT_CHARACTER;

/// Replaces NUL in a string so every backend can store it.
pub fn storable_str(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Makes every string (and object key) in a JSON value storable. serde_json
/// limits nesting to 128 levels, so the recursion is bounded.
pub fn make_storable(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if s.contains('\0') {
                *s = s.replace('\0', "\u{FFFD}");
            }
        }
        Value::Array(items) => items.iter_mut().for_each(make_storable),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                for (k, v) in old {
                    map.insert(storable_str(&k).into_owned(), v);
                }
            }
            map.values_mut().for_each(make_storable);
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn missing_field_name(serde_message: &str) -> Option<&str> {
    let rest = serde_message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Checks the fields a store relies on and puts them in canonical form.
pub fn validate(mut event: Event) -> Result<Decoded, (&'static str, String)> {
    let id = uuid::Uuid::parse_str(event.event_id.trim())
        .map_err(|e| ("event_id", format!("expected a UUID: {e}")))?;
    event.event_id = id.hyphenated().to_string();
    let ts = OffsetDateTime::parse(event.timestamp.trim(), &Rfc3339).map_err(|e| {
        (
            "timestamp",
            format!("expected RFC 3339 (2026-01-31T12:00:00Z): {e}"),
        )
    })?;
    let timestamp_ms = i64::try_from(ts.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| ("timestamp", "out of range".to_string()))?;
    let kept = crate::truncate_str(&event.message, MAX_MESSAGE_BYTES).len();
    event.message.truncate(kept);
    if let Some(trace) = &event.trace
        && (trace.trace_id.len() != 32 || !trace.trace_id.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(("trace.trace_id", "expected 32 hex digits".into()));
    }
    if let Some(storm) = &mut event.storm {
        storm.validate().map_err(|e| ("storm", e))?;
    }
    Ok(Decoded {
        event,
        timestamp_ms,
    })
}

/// How far ahead of the server's clock an event may be dated before its
/// time counts as clock drift (Sentry allows the same hour).
pub const MAX_FUTURE_MS: i64 = 3_600_000;

/// The time an event is stored under: the sent time when it is plausible
/// (within `max_age_ms` before and [`MAX_FUTURE_MS`] after `received_ms`),
/// else the receive time, so a client with a broken clock (year 0000 or 9999)
/// cannot pin its group to the top or bottom of every list. The raw event
/// keeps the sent value.
pub fn stored_timestamp(sent_ms: i64, received_ms: i64, max_age_ms: i64) -> i64 {
    let earliest = received_ms.saturating_sub(max_age_ms.max(0));
    let latest = received_ms.saturating_add(MAX_FUTURE_MS);
    if (earliest..=latest).contains(&sent_ms) {
        sent_ms
    } else {
        received_ms
    }
}

/// Most panics one event may stand for (storm control's `"count"`). The SDK
/// ships a storm's count every 2 s and its hook costs at least ~20 µs a
/// panic, so one thread counts at most ~100,000 in a report; the SDK and
/// `panicle run` send a larger count as several events, so an exact total
/// still arrives. One event claiming more is clamped to this, never trusted
/// (a hostile `"count": 1e18` adds 100,000, not 10^18).
pub const MAX_EVENT_COUNT: i64 = 100_000;

/// The weight an event adds to its group: its storm `count`, bounded.
pub fn event_weight(count: Option<&serde_json::Value>) -> i64 {
    let Some(v) = count else { return 1 };
    let n = v
        .as_i64()
        .or_else(|| v.as_u64().map(|_| i64::MAX))
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        .unwrap_or(1);
    n.clamp(1, MAX_EVENT_COUNT)
}

/// Longer messages are cut, not refused: the head names the bug.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b9a4f8e-7c1d-4e2a-9f3b-1a2b3c4d5e6f";

    #[test]
    fn one_event_and_a_batch_decode() {
        let one =
            format!(r#"{{"event_id":"{ID}","timestamp":"2026-01-02T03:04:05Z","message":"boom"}}"#);
        let got = decode_events(one.as_bytes()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].timestamp_ms, 1_767_323_045_000);
        let many = format!("[{one},{one}]");
        assert_eq!(decode_events(many.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn missing_message_names_the_field() {
        let body = format!(r#"[{{"event_id":"{ID}","timestamp":"2026-01-02T03:04:05Z"}}]"#);
        let err = decode_events(body.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        assert!(err.to_string().contains("[0].message"), "{err}");
    }

    #[test]
    fn bad_timestamp_and_id_are_named() {
        let body = format!(r#"{{"event_id":"{ID}","timestamp":"yesterday","message":"m"}}"#);
        let err = decode_events(body.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("`timestamp`"), "{err}");
        let body = r#"{"event_id":"nope","timestamp":"2026-01-02T03:04:05Z","message":"m"}"#;
        let err = decode_events(body.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("`event_id`"), "{err}");
    }

    #[test]
    fn unknown_fields_are_kept() {
        let body = format!(
            r#"{{"event_id":"{ID}","timestamp":"2026-01-02T03:04:05Z","message":"m","future":{{"x":1}}}}"#
        );
        let got = decode_events(body.as_bytes()).unwrap();
        assert_eq!(got[0].event.extra["future"]["x"], 1);
        let round = serde_json::to_value(&got[0].event).unwrap();
        assert_eq!(round["future"]["x"], 1);
    }

    #[test]
    fn wrong_type_names_nested_path() {
        let body = format!(
            r#"{{"event_id":"{ID}","timestamp":"2026-01-02T03:04:05Z","message":"m","frames":[{{"line":"x"}}]}}"#
        );
        let err = decode_events(body.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("frames[0].line"), "{err}");
    }

    #[test]
    fn empty_and_garbage_are_refused() {
        assert_eq!(decode_events(b"[]").unwrap_err(), DecodeError::EmptyBatch);
        assert_eq!(decode_events(b"{nope").unwrap_err().code(), "invalid_json");
    }

    #[test]
    fn nul_is_replaced_in_every_string_and_key() {
        let body = format!(
            r#"{{"event_id":"{ID}","timestamp":"2026-01-02T03:04:05Z","message":"a\u0000b","release":"r\u0000","tags":{{"k\u0000":"v\u0000"}},"frames":[{{"function":"f\u0000"}}],"x":["\u0000"]}}"#
        );
        let got = decode_events(body.as_bytes()).unwrap();
        let e = &got[0].event;
        assert_eq!(e.message, "a\u{FFFD}b");
        assert_eq!(e.release.as_deref(), Some("r\u{FFFD}"));
        assert_eq!(e.tags["k\u{FFFD}"], "v\u{FFFD}");
        assert_eq!(e.frames[0].function.as_deref(), Some("f\u{FFFD}"));
        assert_eq!(e.extra["x"][0], "\u{FFFD}");
        assert!(!serde_json::to_string(e).unwrap().contains("\\u0000"));
    }

    #[test]
    fn a_batch_judges_each_event_alone() {
        let good =
            format!(r#"{{"event_id":"{ID}","timestamp":"2026-01-02T03:04:05Z","message":"ok"}}"#);
        let bad = r#"{"event_id":"nope","timestamp":"2026-01-02T03:04:05Z","message":"m"}"#;
        let body = format!("[{good},{bad},{good}]");
        let DecodedBody::Batch(items) = decode_body(body.as_bytes()).unwrap() else {
            panic!("an array is a batch")
        };
        assert!(items[0].result.is_ok() && items[2].result.is_ok());
        assert_eq!(items[1].event_id.as_deref(), Some("nope"));
        let err = items[1].result.as_ref().unwrap_err();
        assert!(err.to_string().contains("[1].event_id"), "{err}");
        // A single object is still all or nothing.
        assert!(decode_body(bad.as_bytes()).is_err());
        assert!(decode_events(body.as_bytes()).is_err());
    }

    #[test]
    fn implausible_times_become_the_receive_time() {
        let now = 1_767_323_045_000;
        let day = 86_400_000;
        assert_eq!(stored_timestamp(now - day, now, 90 * day), now - day);
        assert_eq!(stored_timestamp(now + 60_000, now, 90 * day), now + 60_000);
        assert_eq!(
            stored_timestamp(now + 2 * MAX_FUTURE_MS, now, 90 * day),
            now
        );
        assert_eq!(stored_timestamp(now - 91 * day, now, 90 * day), now);
        assert_eq!(stored_timestamp(i64::MIN, now, i64::MAX), now);
        assert_eq!(stored_timestamp(253_402_300_799_000, now, 90 * day), now);
    }

    #[test]
    fn counts_are_bounded() {
        use serde_json::json;
        assert_eq!(event_weight(None), 1);
        assert_eq!(event_weight(Some(&json!(5))), 5);
        assert_eq!(event_weight(Some(&json!(0))), 1);
        assert_eq!(event_weight(Some(&json!(-3))), 1);
        assert_eq!(event_weight(Some(&json!(1e18))), MAX_EVENT_COUNT);
        assert_eq!(event_weight(Some(&json!(u64::MAX))), MAX_EVENT_COUNT);
        assert_eq!(event_weight(Some(&json!("many"))), 1);
    }
}
