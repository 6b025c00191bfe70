//! The dashboard's static files, compiled into the binary.

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

const INDEX_HTML: &str = include_str!("../../../web/index.html");

pub async fn fallback(uri: Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"code": "not_found", "message": format!("no route {path}")}})),
        )
            .into_response();
    }
    if path == "/" || path == "/index.html" {
        return (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
            ],
            INDEX_HTML,
        )
            .into_response();
    }
    (StatusCode::NOT_FOUND, "not found").into_response()
}
