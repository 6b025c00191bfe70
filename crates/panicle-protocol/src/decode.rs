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

/// Decodes a body holding one event object or a JSON array of them.
pub fn decode_events(body: &[u8]) -> Result<Vec<Decoded>, DecodeError> {
    let parsed: OneOrMany = serde_json::from_slice(body).map_err(|e| DecodeError::Json {
        path: ".".into(),
        message: e.to_string(),
    })?;
    let (values, prefix): (Vec<serde_json::Value>, bool) = match parsed {
        OneOrMany::Many(v) => (v, true),
        OneOrMany::One(v) => (vec![*v], false),
    };
    if values.is_empty() {
        return Err(DecodeError::EmptyBatch);
    }
    if values.len() > MAX_BATCH {
        return Err(DecodeError::BatchTooLarge {
            count: values.len(),
            limit: MAX_BATCH,
        });
    }
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let at = |field: &str| {
                if prefix {
                    format!("[{i}].{field}")
                } else {
                    field.to_string()
                }
            };
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
        })
        .collect()
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
    if event.message.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !event.message.is_char_boundary(cut) {
            cut -= 1;
        }
        event.message.truncate(cut);
    }
    if let Some(trace) = &event.trace
        && (trace.trace_id.len() != 32 || !trace.trace_id.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(("trace.trace_id", "expected 32 hex digits".into()));
    }
    Ok(Decoded {
        event,
        timestamp_ms,
    })
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
}
