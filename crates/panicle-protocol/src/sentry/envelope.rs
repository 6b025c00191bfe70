//! Sentry envelopes: a JSON header line, then items, each a JSON header line
//! and a payload. A payload is `length` bytes when the item header says so,
//! else it runs to the next newline (how SDKs send JSON items).

use serde_json::{Map, Value};

/// Most items one envelope may hold; SDKs send a handful.
pub const MAX_ITEMS: usize = 100;

/// Why a body is not an envelope. Nothing of a refused envelope is used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the envelope is empty")]
    Empty,
    #[error("the envelope header line is not a JSON object: {0}")]
    BadHeader(String),
    #[error("the header of item {index} is not a JSON object with a string `type`: {message}")]
    BadItemHeader { index: usize, message: String },
    #[error("item {index} declares {length} bytes but only {available} follow")]
    LengthPastEnd {
        index: usize,
        length: u64,
        available: usize,
    },
    #[error("the envelope holds more than {MAX_ITEMS} items")]
    TooManyItems,
}

impl EnvelopeError {
    /// Stable snake_case code for the API's error body and for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::Empty => "empty_envelope",
            EnvelopeError::BadHeader(_) => "invalid_envelope_header",
            EnvelopeError::BadItemHeader { .. } => "invalid_item_header",
            EnvelopeError::LengthPastEnd { .. } => "item_length_past_end",
            EnvelopeError::TooManyItems => "too_many_items",
        }
    }
}

/// The kinds of item Panicle tells apart. Only `Event` is stored; the rest
/// are accepted and counted so SDKs neither retry nor log errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemType {
    Event,
    Transaction,
    Session,
    Sessions,
    ClientReport,
    Attachment,
    CheckIn,
    Span,
    Log,
    /// Any other type (profiles, replays, user reports, types newer than us).
    Unknown,
}

impl ItemType {
    pub fn parse(name: &str) -> ItemType {
        match name {
            "event" => ItemType::Event,
            "transaction" => ItemType::Transaction,
            "session" => ItemType::Session,
            "sessions" => ItemType::Sessions,
            "client_report" => ItemType::ClientReport,
            "attachment" => ItemType::Attachment,
            "check_in" => ItemType::CheckIn,
            "span" => ItemType::Span,
            "log" => ItemType::Log,
            _ => ItemType::Unknown,
        }
    }

    /// A bounded label for metrics: unknown types share one.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemType::Event => "event",
            ItemType::Transaction => "transaction",
            ItemType::Session => "session",
            ItemType::Sessions => "sessions",
            ItemType::ClientReport => "client_report",
            ItemType::Attachment => "attachment",
            ItemType::CheckIn => "check_in",
            ItemType::Span => "span",
            ItemType::Log => "log",
            ItemType::Unknown => "unknown",
        }
    }
}

/// One item: its header (as sent) and its payload (borrowed from the body).
#[derive(Debug, Clone, PartialEq)]
pub struct Item<'a> {
    pub item_type: ItemType,
    pub header: Map<String, Value>,
    pub payload: &'a [u8],
}

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<'a> {
    pub header: Map<String, Value>,
    pub items: Vec<Item<'a>>,
}

impl Envelope<'_> {
    /// The `event_id` of the envelope header, when it has one.
    pub fn event_id(&self) -> Option<&str> {
        self.header.get("event_id").and_then(Value::as_str)
    }

    /// The DSN the SDK put in the envelope header (carries the public key).
    pub fn dsn(&self) -> Option<&str> {
        self.header.get("dsn").and_then(Value::as_str)
    }
}

/// Splits at the first `\n` (or the end): the line without its newline and
/// what follows it.
fn line(body: &[u8]) -> (&[u8], &[u8]) {
    match body.iter().position(|&b| b == b'\n') {
        Some(at) => (&body[..at], &body[at + 1..]),
        None => (body, &[]),
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses an envelope. Blank lines between items are skipped; a payload
/// with a `length` may hold newlines and is followed by an optional one.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    let (head, mut rest) = line(body);
    let head = trim_cr(head);
    if head.iter().all(u8::is_ascii_whitespace) {
        if rest.iter().all(u8::is_ascii_whitespace) {
            return Err(EnvelopeError::Empty);
        }
        return Err(EnvelopeError::BadHeader("the first line is blank".into()));
    }
    let header = match serde_json::from_slice::<Value>(head) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(EnvelopeError::BadHeader("not an object".into())),
        Err(e) => return Err(EnvelopeError::BadHeader(e.to_string())),
    };
    let mut items = Vec::new();
    loop {
        // Skip blank lines (a trailing newline, or `\n\n` between items).
        while let Some((&first, tail)) = rest.split_first() {
            if first == b'\n' || first == b'\r' {
                rest = tail;
            } else {
                break;
            }
        }
        if rest.is_empty() {
            break;
        }
        let index = items.len();
        if index == MAX_ITEMS {
            return Err(EnvelopeError::TooManyItems);
        }
        let (item_head, after) = line(rest);
        let bad = |message: String| EnvelopeError::BadItemHeader { index, message };
        let item_header = match serde_json::from_slice::<Value>(trim_cr(item_head)) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(bad("not an object".into())),
            Err(e) => return Err(bad(e.to_string())),
        };
        let item_type = item_header
            .get("type")
            .and_then(Value::as_str)
            .map(ItemType::parse)
            .ok_or_else(|| bad("no string `type`".into()))?;
        let payload;
        match item_header.get("length") {
            None | Some(Value::Null) => {
                let (p, tail) = line(after);
                payload = trim_cr(p);
                rest = tail;
            }
            Some(v) => {
                let length = v
                    .as_u64()
                    .ok_or_else(|| bad("`length` is not a non-negative integer".into()))?;
                if length > after.len() as u64 {
                    return Err(EnvelopeError::LengthPastEnd {
                        index,
                        length,
                        available: after.len(),
                    });
                }
                let n = length as usize;
                payload = &after[..n];
                rest = &after[n..];
                // The newline after a payload is optional.
                if let Some(tail) = rest.strip_prefix(b"\n") {
                    rest = tail;
                } else if let Some(tail) = rest.strip_prefix(b"\r\n") {
                    rest = tail;
                }
            }
        }
        items.push(Item {
            item_type,
            header: item_header,
            payload,
        });
    }
    Ok(Envelope { header, items })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_with_and_without_length() {
        let body =
            b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"dsn\":\"https://k@h/1\"}\n\
{\"type\":\"attachment\",\"length\":10,\"filename\":\"a.txt\"}\n\
line1\nline\n\
{\"type\":\"event\"}\n\
{\"message\":\"hi\"}\n\
{\"type\":\"session\",\"length\":2}\n{}";
        let env = parse_envelope(body).unwrap();
        assert_eq!(env.event_id(), Some("9ec79c33ec9942ab8353589fcb2e04dc"));
        assert_eq!(env.dsn(), Some("https://k@h/1"));
        assert_eq!(env.items.len(), 3);
        assert_eq!(env.items[0].item_type, ItemType::Attachment);
        assert_eq!(env.items[0].payload, b"line1\nline");
        assert_eq!(env.items[1].item_type, ItemType::Event);
        assert_eq!(env.items[1].payload, b"{\"message\":\"hi\"}");
        assert_eq!(env.items[2].item_type, ItemType::Session);
        assert_eq!(env.items[2].payload, b"{}");
    }

    #[test]
    fn header_only_and_trailing_newlines_are_fine() {
        let env = parse_envelope(b"{}\n\n").unwrap();
        assert!(env.items.is_empty());
        let env = parse_envelope(b"{}\r\n{\"type\":\"what\"}\r\n{}\r\n").unwrap();
        assert_eq!(env.items[0].item_type, ItemType::Unknown);
        assert_eq!(env.items[0].payload, b"{}");
    }

    #[test]
    fn malformed_envelopes_are_named() {
        assert_eq!(parse_envelope(b"").unwrap_err(), EnvelopeError::Empty);
        assert_eq!(parse_envelope(b"\n\n").unwrap_err(), EnvelopeError::Empty);
        assert_eq!(
            parse_envelope(b"not json\n{}").unwrap_err().code(),
            "invalid_envelope_header"
        );
        assert_eq!(
            parse_envelope(b"[1]\n").unwrap_err().code(),
            "invalid_envelope_header"
        );
        assert_eq!(
            parse_envelope(b"{}\n{\"length\":2}\n{}").unwrap_err(),
            EnvelopeError::BadItemHeader {
                index: 0,
                message: "no string `type`".into()
            }
        );
        assert_eq!(
            parse_envelope(b"{}\n{\"type\":\"event\",\"length\":50}\n{}").unwrap_err(),
            EnvelopeError::LengthPastEnd {
                index: 0,
                length: 50,
                available: 2
            }
        );
        assert_eq!(
            parse_envelope(b"{}\n{\"type\":\"event\",\"length\":-1}\n{}")
                .unwrap_err()
                .code(),
            "invalid_item_header"
        );
        let many = format!("{{}}\n{}", "{\"type\":\"log\"}\n{}\n".repeat(MAX_ITEMS + 1));
        assert_eq!(
            parse_envelope(many.as_bytes()).unwrap_err(),
            EnvelopeError::TooManyItems
        );
    }
}
