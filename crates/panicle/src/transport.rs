//! HTTP to the server: one gzip-compressed JSON array per batch, and the
//! answer classified into what the sender must do next. No retry policy here
//! (that is the sender's), no spool (that is the spool's).

use std::io::Write;
use std::time::Duration;

use panicle_protocol::Dsn;

/// What the server's answer means for the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// 2xx: `ids` are stored (or were already): delete them from the spool;
    /// `None` when the body did not list them: then the whole batch counts.
    /// `rejected` names events the server will never take as sent.
    Accepted {
        ids: Option<Vec<String>>,
        rejected: Vec<RejectedEvent>,
    },
    /// Connection error, 5xx, 429, 401/403: try again later, honouring
    /// `Retry-After` when the server sent one. `server_error` is the status
    /// of a 5xx that may come from one event the server cannot handle (500
    /// and the like); 502, 503 and 504 say the server or the database is
    /// unavailable, which no event causes, so they carry `None`.
    Retry {
        retry_after: Option<Duration>,
        reason: String,
        server_error: Option<u16>,
        /// Nothing accepted the connection (refused, no route, no such
        /// host): waiting for an answer is pointless, unlike a slow server.
        unreachable: bool,
    },
    /// 400 / 413 / 422: the batch (or one of its events) will never be taken
    /// as is; the sender splits it to find the culprit.
    Refused { status: u16, reason: String },
}

/// One event of a 2xx answer's `rejected` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEvent {
    pub index: Option<usize>,
    pub event_id: Option<String>,
    /// `code: message`, as the server put it.
    pub reason: String,
}

pub struct HttpTransport {
    agent: ureq::Agent,
    url: String,
    key: String,
}

impl HttpTransport {
    pub fn new(dsn: &Dsn, timeout: Duration) -> HttpTransport {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build();
        HttpTransport {
            agent: ureq::Agent::new_with_config(config),
            url: dsn.ingest_url(),
            key: dsn.key.clone(),
        }
    }

    /// Posts events that are each already serialized JSON objects, as one
    /// gzip-compressed array.
    pub fn post(&self, events: &[&[u8]]) -> PostOutcome {
        let body = match gzip_array(events) {
            Ok(b) => b,
            Err(e) => {
                return PostOutcome::Retry {
                    retry_after: None,
                    reason: format!("gzip: {e}"),
                    server_error: None,
                    unreachable: false,
                };
            }
        };
        let sent = self
            .agent
            .post(&self.url)
            .header("X-Panicle-Key", &self.key)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            // We read the 202's per-event `rejected` list (see `batch`).
            .header("X-Panicle-Partial-Batch", "1")
            .send(&body[..]);
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return PostOutcome::Retry {
                    retry_after: None,
                    unreachable: is_unreachable(&e),
                    reason: e.to_string(),
                    server_error: None,
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Bodies are small JSON; a bound keeps a hostile answer from costing memory.
        let text = resp
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        match status {
            200..=299 => PostOutcome::Accepted {
                ids: accepted_ids(&text),
                rejected: rejected_events(&text),
            },
            400 | 413 | 422 => PostOutcome::Refused {
                status,
                reason: error_message(&text),
            },
            _ => PostOutcome::Retry {
                retry_after,
                reason: format!("HTTP {status}: {}", error_message(&text)),
                server_error: ((500..=599).contains(&status) && !matches!(status, 502..=504))
                    .then_some(status),
                unreachable: false,
            },
        }
    }

    /// One event, synchronously: the hook's fallback when the spool is unusable.
    pub fn send_now(&self, json: &[u8]) -> bool {
        matches!(self.post(&[json]), PostOutcome::Accepted { rejected, .. } if rejected.is_empty())
    }
}

/// `[a,b,c]` from serialized objects, gzip-compressed (fast level: the sender
/// runs beside the service and batches are small).
/// The connection was refused or had nowhere to go. A connect timeout is
/// not: a server that drops packets may still be coming up.
fn is_unreachable(e: &ureq::Error) -> bool {
    use std::io::ErrorKind;
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::AddrNotAvailable
        ),
        _ => false,
    }
}

pub fn gzip_array(events: &[&[u8]]) -> std::io::Result<Vec<u8>> {
    let size: usize = events.iter().map(|e| e.len() + 1).sum::<usize>() + 2;
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(size / 4 + 64),
        flate2::Compression::fast(),
    );
    gz.write_all(b"[")?;
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            gz.write_all(b",")?;
        }
        gz.write_all(e)?;
    }
    gz.write_all(b"]")?;
    gz.finish()
}

/// The `accepted` ids of a 202 body `{"accepted":[ids],"stored":n}`.
fn accepted_ids(body: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let ids = v.get("accepted")?.as_array()?;
    Some(
        ids.iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
    )
}

/// The `rejected` list of a 2xx body: `[{index?, event_id?, code, message}]`.
fn rejected_events(body: &str) -> Vec<RejectedEvent> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let Some(items) = v.get("rejected").and_then(|r| r.as_array()) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|r| RejectedEvent {
            index: r
                .get("index")
                .and_then(|i| i.as_u64())
                .and_then(|i| usize::try_from(i).ok()),
            event_id: r
                .get("event_id")
                .and_then(|i| i.as_str())
                .map(str::to_string),
            reason: format!(
                "{}: {}",
                r.get("code").and_then(|c| c.as_str()).unwrap_or("rejected"),
                r.get("message").and_then(|m| m.as_str()).unwrap_or("")
            ),
        })
        .collect()
}

/// `code: message` of an error body `{"error":{"code","message"}}`, else the
/// body's start.
fn error_message(body: &str) -> String {
    let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    match err {
        Some(e) => format!(
            "{}: {}",
            e.get("code").and_then(|c| c.as_str()).unwrap_or("error"),
            e.get("message").and_then(|m| m.as_str()).unwrap_or("")
        ),
        None => body.chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn batch_is_a_gzipped_json_array() {
        let gz = gzip_array(&[br#"{"a":1}"#, br#"{"b":2}"#]).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, r#"[{"a":1},{"b":2}]"#);
    }

    #[test]
    fn reads_accepted_ids() {
        assert_eq!(
            accepted_ids(r#"{"accepted":["x","y"],"stored":1}"#),
            Some(vec!["x".to_string(), "y".to_string()])
        );
        assert_eq!(accepted_ids("not json"), None);
    }

    #[test]
    fn reads_rejected_events_and_error_bodies() {
        let body = r#"{"accepted":["a"],"stored":1,"rejected":[{"index":1,"event_id":"x","code":"invalid_field","message":"bad"}]}"#;
        assert_eq!(
            rejected_events(body),
            vec![RejectedEvent {
                index: Some(1),
                event_id: Some("x".into()),
                reason: "invalid_field: bad".into()
            }]
        );
        assert!(rejected_events(r#"{"accepted":[]}"#).is_empty());
        assert_eq!(
            error_message(r#"{"error":{"code":"c","message":"m"}}"#),
            "c: m"
        );
        assert_eq!(error_message("plain"), "plain");
    }
}
