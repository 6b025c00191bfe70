//! The dashboard's static files, compiled into the binary (read from disk in
//! debug builds, so editing web/ needs no rebuild).

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use serde_json::json;

#[derive(RustEmbed)]
#[folder = "../../web/"]
#[exclude = "e2e/*"]
#[exclude = "*/node_modules/*"]
struct Assets;

/// No inline script, no plugins, no framing: event text is attacker-controlled.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn fallback(uri: Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"error": {"code": "not_found", "message": format!("no route {path}")}}),
            ),
        )
            .into_response();
    }
    let file = path.trim_start_matches('/');
    // Client-side routes (no file extension) get the app shell.
    let file = if file.is_empty() || !file.contains('.') {
        "index.html"
    } else {
        file
    };
    match Assets::get(file) {
        Some(asset) => {
            let mime = asset.metadata.mimetype().to_string();
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CONTENT_SECURITY_POLICY, CSP.to_string()),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
                    // Same-origin requests keep their Origin (which the
                    // cookie's cross-site guard checks); other sites get nothing.
                    (header::REFERRER_POLICY, "same-origin".to_string()),
                    (header::CACHE_CONTROL, "no-cache".to_string()),
                ],
                asset.data.into_owned(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
