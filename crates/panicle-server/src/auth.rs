//! Who may do what: ingest keys write one project's events; API tokens and
//! dashboard sessions read the projects of their token's scope; only admin
//! tokens see ingest keys and change things, except cluster states, which
//! any token may set for its projects' clusters (`states.rs`).
//!
//! A project outside the caller's scope answers 404, like one that does not
//! exist, so a project token cannot learn which other projects there are.
//! An admin-only action asked by a project token answers 403.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use panicle_store::{Access, Project, TokenScope};

use crate::cookie::{clear_session, session_cookie, set_session};
use crate::origin::{DASHBOARD_HEADER, RequestOrigin, is_same_origin};
use crate::{ApiError, AppState};

/// Projects by ingest key, as found: a project's id, name and key never
/// change and projects are not deleted, so a key found once is the same
/// project for the life of the process, and ingest asks the database only
/// for keys it has not seen (unknown ones are asked each time, so a project
/// another replica or the CLI just created is found at once).
#[derive(Default)]
pub struct IngestKeys {
    known: Mutex<HashMap<String, Project>>,
}

/// Keys remembered at most; past it the map starts over (a bound against
/// memory, not a limit on projects).
const KNOWN_KEYS_MAX: usize = 10_000;

impl IngestKeys {
    pub async fn project(
        &self,
        store: &panicle_store::Store,
        key: &str,
    ) -> Result<Option<Project>, ApiError> {
        if let Some(p) = self.known.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(Some(p));
        }
        let found = store.project_by_key(key).await?;
        if let (Some(p), Ok(mut known)) = (&found, self.known.lock()) {
            if known.len() >= KNOWN_KEYS_MAX {
                known.clear();
            }
            known.insert(key.to_string(), p.clone());
        }
        Ok(found)
    }
}

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
            .ingest_keys
            .project(&state.store, key)
            .await?
            .ok_or(ApiError::BadIngestKey)?;
        Ok(IngestProject(project))
    }
}

/// A caller holding a valid API token (`Authorization: Bearer`) or session
/// cookie, and what it may read.
pub struct Reader {
    pub access: Access,
}

impl Reader {
    pub fn scope(&self) -> &TokenScope {
        &self.access.scope
    }

    /// A project the caller names or a row belongs to: 404 outside the scope.
    pub fn check_project(&self, project_id: i64, what: &'static str) -> Result<(), ApiError> {
        if self.access.scope.allows(project_id) {
            Ok(())
        } else {
            Err(ApiError::NotFound(what))
        }
    }

    /// For a list: checks `project=` when given and returns the projects the
    /// list may show (`None`: all).
    pub fn list_projects(&self, requested: Option<i64>) -> Result<Option<Vec<i64>>, ApiError> {
        if let Some(p) = requested {
            self.check_project(p, "project")?;
        }
        Ok(self.access.scope.project_ids())
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().to_string())
}

fn request_origin(headers: &HeaderMap) -> RequestOrigin<'_> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    RequestOrigin {
        origin: text(header::ORIGIN),
        referer: text(header::REFERER),
        host: text(header::HOST),
        dashboard_header: headers.contains_key(DASHBOARD_HEADER),
    }
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let access = if let Some(token) = bearer(&parts.headers) {
            state.store.token_access(&token).await?
        } else if let Some(session) = session_cookie(&parts.headers) {
            // The cookie travels by itself: a change made with it must come
            // from the dashboard's own pages.
            if !parts.method.is_safe()
                && !is_same_origin(request_origin(&parts.headers), &state.config.public_url)
            {
                return Err(ApiError::CrossOrigin);
            }
            state
                .store
                .session_access(&session, state.config.session, crate::now_ms())
                .await?
        } else {
            None
        };
        access
            .map(|access| Reader { access })
            .ok_or(ApiError::BadToken)
    }
}

/// A caller with an admin token (or a session opened with one).
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let reader = Reader::from_request_parts(parts, state).await?;
        if reader.scope().is_admin() {
            Ok(Admin)
        } else {
            Err(ApiError::Forbidden(
                "this token reads its projects only; this needs an admin token \
                 (`panicle token create` without --project)"
                    .into(),
            ))
        }
    }
}

fn scope_json(access: &Access) -> serde_json::Value {
    serde_json::json!({
        "signed_in": true,
        "token_id": access.token_id,
        "admin": access.scope.is_admin(),
        "projects": access.scope.project_ids(),
    })
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct SignIn {
    pub token: String,
}

/// `POST /api/v1/session {"token": "…"}`: checks the token and opens a
/// server-side session; the cookie holds the session's random id, never the
/// token. The session ends at sign-out, after 12 hours without a request, 7
/// days after sign-in, or when the token is revoked.
#[utoipa::path(post, path = "/api/v1/session", tag = "session",
    request_body(content = SignIn, description = "An API token"),
    responses((status = 200, description = "Signed in: `{signed_in, token_id, admin, projects}`; sets the HttpOnly session cookie", body = Object),
              (status = 401, description = "Unknown token", body = crate::openapi::ErrorBody),
              (status = 403, description = "Sent from another site's page (Origin)", body = crate::openapi::ErrorBody)))]
pub async fn sign_in(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
    body: Result<axum::Json<SignIn>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    // Another site must not sign a browser in with its own token either; a
    // client that names no origin at all (curl, scripts) may.
    let origin = RequestOrigin {
        dashboard_header: true,
        ..request_origin(&headers)
    };
    if !is_same_origin(origin, &state.config.public_url) {
        return Err(ApiError::CrossOrigin);
    }
    let axum::Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let token = body.token.trim();
    let well_formed = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !well_formed {
        return Err(ApiError::BadToken);
    }
    let policy = state.config.session;
    let (session, access) = state
        .store
        .open_session(token, policy, crate::now_ms())
        .await?
        .ok_or(ApiError::BadToken)?;
    // Served over https (as the public URL says): the cookie never travels in clear.
    let secure = state.config.public_url.starts_with("https://");
    let cookie = set_session(&session, policy.absolute_ms / 1000, secure);
    Ok((
        [(header::SET_COOKIE, cookie)],
        axum::Json(scope_json(&access)),
    )
        .into_response())
}

/// `DELETE /api/v1/session`: ends the session (its id stops working at once)
/// and clears the cookie.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session",
    responses((status = 200, description = "Session ended and cookie cleared", body = Object),
              (status = 403, description = "Sent from another site's page (Origin)", body = crate::openapi::ErrorBody)))]
pub async fn sign_out(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    if let Some(session) = session_cookie(&headers) {
        if !is_same_origin(request_origin(&headers), &state.config.public_url) {
            return Err(ApiError::CrossOrigin);
        }
        state.store.end_session(&session).await?;
    }
    Ok((
        [(header::SET_COOKIE, clear_session())],
        axum::Json(serde_json::json!({"signed_in": false})),
    )
        .into_response())
}

/// `GET /api/v1/session`: 200 with the caller's scope when signed in (or
/// holding a token), 401 otherwise.
#[utoipa::path(get, path = "/api/v1/session", tag = "session",
    responses((status = 200, description = "Signed in: `{signed_in, token_id, admin, projects}` (`projects` null for admin)", body = Object),
              (status = 401, description = "Not signed in", body = crate::openapi::ErrorBody)))]
pub async fn whoami(reader: Reader) -> axum::Json<serde_json::Value> {
    axum::Json(scope_json(&reader.access))
}
