//! Sends alert notifications to their receivers over HTTP or HTTPS.
//!
//! The one HTTP client of the project (ureq, with rustls and Mozilla's root
//! certificates, the same client the SDK ships events with) runs on the
//! blocking pool: a receiver that is slow holds one blocking thread for at
//! most the send timeout, never a runtime worker.

use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// A client for notification receivers; cheap to clone.
#[derive(Clone)]
pub struct WebhookClient {
    agent: ureq::Agent,
}

/// Trust anchors for `https://` receivers other than the built-in ones.
#[derive(Clone, Debug)]
pub struct TrustRoots(Arc<Vec<Certificate<'static>>>);

impl TrustRoots {
    /// Every certificate of a PEM file (a private CA's bundle). A file
    /// without one is an error: a deployment that names a CA file and gets
    /// no trust from it would fail every delivery later, far from the cause.
    pub fn from_pem(pem: &[u8]) -> Result<TrustRoots, String> {
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(format!("not a PEM certificate bundle: {e}")),
            }
        }
        if certs.is_empty() {
            return Err("the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
        }
        Ok(TrustRoots(Arc::new(certs)))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl WebhookClient {
    /// `roots`: trust only these for `https://` (a private CA); `None`
    /// trusts Mozilla's root program (webpki-roots), which is what Slack and
    /// public receivers need.
    pub fn new(timeout: Duration, roots: Option<&TrustRoots>) -> WebhookClient {
        let mut tls = TlsConfig::builder();
        if let Some(roots) = roots {
            tls = tls.root_certs(RootCerts::Specific(Arc::clone(&roots.0)));
        }
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // A redirect of a POST would resend or drop the body: the
            // delivery log names the new address instead.
            .max_redirects(0)
            .user_agent("panicle-alerts/1")
            .tls_config(tls.build())
            .build();
        WebhookClient {
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// POSTs `body` as JSON; the status of a 2xx answer, else what went
    /// wrong, in words for the delivery log.
    pub async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<u16, String> {
        check_url(url)?;
        let agent = self.agent.clone();
        let url = url.to_string();
        tokio::task::spawn_blocking(move || post_blocking(&agent, &url, &body))
            .await
            .map_err(|e| format!("the send task failed: {e}"))?
    }
}

fn post_blocking(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<u16, String> {
    let response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .map_err(describe)?;
    let status = response.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else if status.is_redirection() {
        let to = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        Err(format!(
            "the receiver answered HTTP {} (moved to {to}): update the rule's URL",
            status.as_u16()
        ))
    } else {
        Err(format!("the receiver answered HTTP {}", status.as_u16()))
    }
}

/// Refuses what is not an http(s) URL with a host before any I/O.
fn check_url(url: &str) -> Result<(), String> {
    let uri: axum::http::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("the URL must start with http:// or https://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// ureq's errors in the words an operator acts on.
fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "no answer within the send timeout".into(),
        ureq::Error::HostNotFound => "the receiver's host name does not resolve".into(),
        ureq::Error::ConnectionFailed => "cannot connect to the receiver".into(),
        ureq::Error::Io(e)
            if e.get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
        {
            tls_failed(&e)
        }
        ureq::Error::Io(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::HostUnreachable
            | std::io::ErrorKind::NetworkUnreachable
            | std::io::ErrorKind::AddrNotAvailable => {
                format!("cannot connect to the receiver: {e}")
            }
            _ => format!("the connection to the receiver failed: {e}"),
        },
        ureq::Error::Tls(e) => format!("TLS failed: {e}"),
        ureq::Error::Rustls(e) => tls_failed(&e),
        other => format!("request failed: {other}"),
    }
}

fn tls_failed(e: &dyn std::fmt::Display) -> String {
    format!(
        "TLS failed: {e} (a receiver whose certificate a private CA signed needs --alert-ca-file)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_sending() {
        assert!(check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(check_url("https://hooks.slack.com/services/T/B/x").is_ok());
        assert!(check_url("ftp://x/y").unwrap_err().contains("http://"));
        assert!(check_url("/relative").is_err());
    }

    #[test]
    fn a_pem_without_certificates_is_refused() {
        assert!(TrustRoots::from_pem(b"hello").is_err());
        let ca = include_bytes!("../../../testdata/tls/ca.pem");
        assert_eq!(TrustRoots::from_pem(ca).unwrap().len(), 1);
    }
}
