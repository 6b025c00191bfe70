//! Where a Sentry SDK puts its public key: `X-Sentry-Auth: Sentry
//! sentry_key=…, sentry_version=7`, `?sentry_key=` in the query (browsers),
//! or the DSN in the envelope header.

/// The `sentry_key` of an `X-Sentry-Auth` (or `Authorization`) header value.
pub fn sentry_key(header: &str) -> Option<&str> {
    let rest = header.trim();
    let rest = rest
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("sentry "))
        .map_or(rest, |_| &rest[7..]);
    rest.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == "sentry_key")
            .then(|| v.trim())
            .filter(|v| !v.is_empty())
    })
}

/// The public key of a DSN (`https://<key>[:<secret>]@host/<project>`).
pub fn dsn_key(dsn: &str) -> Option<&str> {
    let (_, rest) = dsn.trim().split_once("://")?;
    let (userinfo, _) = rest.split_once('@')?;
    let key = userinfo.split(':').next()?;
    (!key.is_empty()).then_some(key)
}

/// The key from a query string's `sentry_key=` (keys are URL-safe, so no
/// percent-decoding is needed).
pub fn query_key(query: &str) -> Option<&str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "sentry_key" && !v.is_empty()).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_where_sdks_put_them() {
        assert_eq!(
            sentry_key(
                "Sentry sentry_key=abc123, sentry_version=7, sentry_client=sentry.python/2.0"
            ),
            Some("abc123")
        );
        assert_eq!(
            sentry_key("Sentry sentry_version=7,sentry_key=k_1"),
            Some("k_1")
        );
        assert_eq!(sentry_key("Sentry sentry_version=7"), None);
        assert_eq!(sentry_key("Sentry sentry_key="), None);
        assert_eq!(dsn_key("http://pk_1@127.0.0.1:9/4"), Some("pk_1"));
        assert_eq!(dsn_key("https://pk:secret@h/4"), Some("pk"));
        assert_eq!(dsn_key("https://h/4"), None);
        assert_eq!(query_key("sentry_version=7&sentry_key=abc"), Some("abc"));
        assert_eq!(query_key("sentry_key="), None);
    }
}
