//! Who may do what: ingest keys write one project's events; API tokens read.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use panicle_store::Project;

use crate::{ApiError, AppState};

/// The project whose ingest key came in `X-Panicle-Key`.
pub struct IngestProject(pub Project);

impl FromRequestParts<AppState> for IngestProject {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get("x-panicle-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::BadIngestKey)?;
        let project = state
            .store
            .project_by_key(key)
            .await?
            .ok_or(ApiError::BadIngestKey)?;
        Ok(IngestProject(project))
    }
}

/// A caller holding a valid API token.
pub struct Reader;

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::BadToken)?;
        if state.store.token_valid(token).await? {
            Ok(Reader)
        } else {
            Err(ApiError::BadToken)
        }
    }
}
