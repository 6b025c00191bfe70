//! The dashboard's session cookie: a random session id (never the API
//! token), HttpOnly so page scripts never see it, SameSite=Strict so other
//! sites' pages do not send it. On its own module so that the OpenAPI
//! document (which names it) and the auth code (which uses the document's
//! error schema) do not import each other.

use axum::http::HeaderMap;

pub const SESSION_COOKIE: &str = "panicle_session";

/// The session id from the request's cookies, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a new session; `Secure` when served over https.
pub fn set_session(session: &str, max_age_secs: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}"
    )
}

/// `Set-Cookie` that removes the cookie.
pub fn clear_session() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}
