//! Cross-site request forgery guard for requests that ride on the session
//! cookie. A state-changing request made with the cookie must show that it
//! comes from the dashboard itself: its `Origin` (or, when the browser sends
//! none or `null`, its `Referer`) names this server, or, when it has
//! neither, it carries the dashboard's [`DASHBOARD_HEADER`], which another
//! site's page cannot add without a CORS preflight this server never grants.
//! Requests with `Authorization: Bearer` are not subject to it: a browser
//! never adds that header by itself. Pure logic, no I/O.

/// Sent by the dashboard's scripts on every request.
pub const DASHBOARD_HEADER: &str = "x-panicle-dashboard";

/// What the request says about where it comes from.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestOrigin<'a> {
    pub origin: Option<&'a str>,
    pub referer: Option<&'a str>,
    /// The `Host` the request was sent to.
    pub host: Option<&'a str>,
    pub dashboard_header: bool,
}

/// `scheme://host[:port]` of a URL, lowercased; `None` for `null` or junk.
fn origin_of(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if scheme.is_empty() || authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// True when the request comes from this server's own pages: its origin is
/// the one of `public_url` or has the host the request was sent to.
pub fn is_same_origin(req: RequestOrigin<'_>, public_url: &str) -> bool {
    let claimed = req
        .origin
        .filter(|o| o.trim() != "null")
        .or(req.referer)
        .map(origin_of);
    let claimed = match claimed {
        // No usable Origin or Referer: only the dashboard's header vouches.
        None => return req.dashboard_header,
        Some(None) => return false,
        Some(Some(o)) => o,
    };
    if origin_of(public_url).is_some_and(|own| own == claimed) {
        return true;
    }
    let Some((scheme, authority)) = claimed.split_once("://") else {
        return false;
    };
    // The public address is https: a page of that same host over plain http
    // (which a network attacker can write) is another origin.
    let public = origin_of(public_url);
    if scheme == "http"
        && public
            .as_deref()
            .and_then(|p| p.strip_prefix("https://"))
            .is_some_and(|public_authority| public_authority == authority)
    {
        return false;
    }
    req.host
        .is_some_and(|host| authority == host.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC: &str = "https://panicle.example.com";

    fn req<'a>(origin: Option<&'a str>, referer: Option<&'a str>) -> RequestOrigin<'a> {
        RequestOrigin {
            origin,
            referer,
            host: Some("127.0.0.1:8471"),
            dashboard_header: false,
        }
    }

    #[test]
    fn plain_http_of_an_https_server_is_another_origin() {
        let on_host = |origin| RequestOrigin {
            origin: Some(origin),
            referer: None,
            host: Some("panicle.example.com"),
            dashboard_header: false,
        };
        assert!(is_same_origin(
            on_host("https://panicle.example.com"),
            PUBLIC
        ));
        assert!(!is_same_origin(
            on_host("http://panicle.example.com"),
            PUBLIC
        ));
        // A server on plain http (the default) takes its own host either way.
        assert!(is_same_origin(
            on_host("http://panicle.example.com"),
            "http://127.0.0.1:8471"
        ));
    }

    #[test]
    fn own_origin_passes_foreign_fails() {
        assert!(is_same_origin(
            req(Some("http://127.0.0.1:8471"), None),
            PUBLIC
        ));
        assert!(is_same_origin(
            req(Some("https://panicle.example.com"), None),
            PUBLIC
        ));
        assert!(is_same_origin(
            req(Some("HTTPS://Panicle.Example.com"), None),
            PUBLIC
        ));
        assert!(!is_same_origin(
            req(Some("https://evil.example"), None),
            PUBLIC
        ));
        assert!(!is_same_origin(
            req(Some("http://127.0.0.1:9999"), None),
            PUBLIC
        ));
        assert!(!is_same_origin(
            req(Some("https://panicle.example.com.evil"), None),
            PUBLIC
        ));
    }

    #[test]
    fn referer_stands_in_for_a_missing_or_null_origin() {
        assert!(is_same_origin(
            req(None, Some("http://127.0.0.1:8471/clusters?x=1")),
            PUBLIC
        ));
        assert!(is_same_origin(
            req(Some("null"), Some("http://127.0.0.1:8471/")),
            PUBLIC
        ));
        assert!(!is_same_origin(
            req(None, Some("https://evil.example/127.0.0.1:8471")),
            PUBLIC
        ));
        // A foreign Origin is not rescued by a matching Referer.
        assert!(!is_same_origin(
            req(Some("https://evil.example"), Some("http://127.0.0.1:8471/")),
            PUBLIC
        ));
    }

    #[test]
    fn without_origin_or_referer_only_the_dashboard_header_passes() {
        assert!(!is_same_origin(req(None, None), PUBLIC));
        assert!(!is_same_origin(req(Some("null"), None), PUBLIC));
        let mut r = req(None, None);
        r.dashboard_header = true;
        assert!(is_same_origin(r, PUBLIC));
        // The header does not excuse a foreign origin.
        let mut r = req(Some("https://evil.example"), None);
        r.dashboard_header = true;
        assert!(!is_same_origin(r, PUBLIC));
        assert!(!is_same_origin(req(Some("garbage"), None), PUBLIC));
    }
}
