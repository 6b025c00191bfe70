//! Requests whose URI carries a NUL (`%00`): PostgreSQL cannot store or
//! compare U+0000 in TEXT, so such a value must never reach a query. A read
//! parameter with one is a 400 (nothing could match it); ingest metadata is
//! made storable like every string of an event body (NUL → U+FFFD).

use axum::extract::Request;
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// Routes whose query is event metadata, stored rather than matched.
const INGEST_PATHS: &[&str] = &["/api/v1/events/text"];

const NUL: &str = "%00";
const REPLACEMENT: &str = "%EF%BF%BD";

pub async fn refuse_nul(mut request: Request, next: Next) -> Response {
    let uri = request.uri();
    if uri.path().contains(NUL) {
        return ApiError::BadRequest(
            "the path holds a NUL character (%00), which no stored value contains".into(),
        )
        .into_response();
    }
    if let Some(query) = uri.query().filter(|q| q.contains(NUL)) {
        if !INGEST_PATHS.contains(&uri.path()) {
            return ApiError::BadRequest(
                "a query parameter holds a NUL character (%00), which no stored value contains: remove it"
                    .into(),
            )
            .into_response();
        }
        let cleaned = format!("{}?{}", uri.path(), query.replace(NUL, REPLACEMENT));
        match cleaned.parse::<Uri>() {
            Ok(new) => *request.uri_mut() = new,
            Err(e) => return ApiError::BadRequest(format!("invalid URI: {e}")).into_response(),
        }
    }
    next.run(request).await
}
