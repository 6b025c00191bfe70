//! Sending events to the server over HTTP.

use std::time::Duration;

use panicle_protocol::{Dsn, Event};

pub struct Transport {
    agent: ureq::Agent,
    url: String,
    key: String,
}

impl Transport {
    pub fn new(dsn: &Dsn, timeout: Duration) -> Transport {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build();
        Transport {
            agent: ureq::Agent::new_with_config(config),
            url: dsn.ingest_url(),
            key: dsn.key.clone(),
        }
    }

    /// Sends on the calling thread, bounded by the timeout; true on 2xx.
    pub fn send_now(&self, event: &Event) -> bool {
        let Ok(body) = serde_json::to_vec(event) else {
            return false;
        };
        match self
            .agent
            .post(&self.url)
            .header("X-Panicle-Key", &self.key)
            .header("Content-Type", "application/json")
            .send(&body[..])
        {
            Ok(resp) if resp.status().is_success() => true,
            Ok(resp) => {
                eprintln!("panicle: server refused the event: HTTP {}", resp.status());
                false
            }
            Err(e) => {
                eprintln!("panicle: could not send the event: {e}");
                false
            }
        }
    }

    /// Nothing is queued while sends are synchronous.
    pub fn flush(&self, _timeout: Duration) -> bool {
        true
    }
}
