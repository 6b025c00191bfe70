//! Posting events to a Panicle server from the CLI: one gzip batch, retried
//! with backoff on connection errors, 429 and 5xx.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use panicle_protocol::{Dsn, Event};

pub fn send_batch(dsn: &Dsn, events: &[Event], budget: Duration) -> Result<()> {
    let json = serde_json::to_vec(events)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&json)?;
    let body = gz.finish()?;
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build(),
    );
    let deadline = Instant::now() + budget;
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = agent
            .post(&dsn.ingest_url())
            .header("X-Panicle-Key", &dsn.key)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .send(&body[..]);
        let retry = match attempt {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) if resp.status().as_u16() == 429 || resp.status().is_server_error() => {
                format!("HTTP {}", resp.status())
            }
            Ok(mut resp) => {
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                bail!(
                    "the server refused the events: HTTP {}: {text}",
                    resp.status()
                );
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() + delay > deadline {
            bail!("gave up after retries: {retry}");
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
