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
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let token = bearer
            .map(str::to_string)
            .or_else(|| session_cookie(&parts.headers))
            .ok_or(ApiError::BadToken)?;
        if state.store.token_valid(&token).await? {
            Ok(Reader)
        } else {
            Err(ApiError::BadToken)
        }
    }
}

/// The dashboard's session cookie: the API token, HttpOnly so page scripts
/// never see it, SameSite=Strict so other sites cannot ride on it.
pub const SESSION_COOKIE: &str = "panicle_session";

pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
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

#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct SignIn {
    pub token: String,
}

/// `POST /api/v1/session {"token": "…"}`: checks the token, sets the cookie.
#[utoipa::path(post, path = "/api/v1/session", tag = "session",
    request_body(content = SignIn, description = "An API token"),
    responses((status = 200, description = "Signed in; sets the HttpOnly session cookie", body = Object),
              (status = 401, description = "Unknown token", body = crate::openapi::ErrorBody)))]
pub async fn sign_in(
    axum::extract::State(state): axum::extract::State<AppState>,
    body: Result<axum::Json<SignIn>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::response::Response, ApiError> {
    let axum::Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    use axum::response::IntoResponse;
    let token = body.token.trim();
    let well_formed = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !well_formed || !state.store.token_valid(token).await? {
        return Err(ApiError::BadToken);
    }
    // Served over https (as the public URL says): the cookie never travels in clear.
    let secure = if state.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=604800{secure}"
    );
    Ok((
        [(axum::http::header::SET_COOKIE, cookie)],
        axum::Json(serde_json::json!({"signed_in": true})),
    )
        .into_response())
}

/// `DELETE /api/v1/session`: clears the cookie.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session",
    responses((status = 200, description = "Session cookie cleared", body = Object)))]
pub async fn sign_out() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
        axum::Json(serde_json::json!({"signed_in": false})),
    )
        .into_response()
}

/// `GET /api/v1/session`: 200 when the caller is signed in, 401 otherwise.
#[utoipa::path(get, path = "/api/v1/session", tag = "session",
    responses((status = 200, description = "Signed in", body = Object),
              (status = 401, description = "Not signed in", body = crate::openapi::ErrorBody)))]
pub async fn whoami(_: Reader) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"signed_in": true}))
}
