//! Debug files (issue 18): `POST /api/v1/debug-files` stores the DWARF of a
//! stripped binary under its GNU build-id, so the addresses its events carry
//! can be named; `GET` lists them, `DELETE …/{build_id}` removes one.
//!
//! An upload is streamed to disk (a debug file is hundreds of MB), never
//! held in memory. The ingest body limit does not apply: the route has its
//! own, `ServerConfig::max_debug_file_bytes`, checked against the declared
//! `Content-Length` before the body is read and against the bytes as they
//! arrive. Its body is bounded by a stall timeout rather than the whole-body
//! deadline (see `timeouts.rs`), so a large upload at a steady pace is never
//! cut.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use http_body_util::BodyExt;
use panicle_store::{DebugFileError, DebugFileRow, DebugFiles, Stored};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{Admin, Reader};
use crate::error::ReadQuery;
use crate::{ApiError, AppState};

/// The upload route: its body gets the stall timeout, not the deadline.
pub(crate) const UPLOAD_PATH: &str = "/api/v1/debug-files";

/// True for a request that uploads a debug file.
pub(crate) fn is_upload(method: &Method, path: &str) -> bool {
    method == Method::POST && path.trim_end_matches('/') == UPLOAD_PATH
}

/// Called once a debug file is stored (new, or replacing one with less
/// debug info): events that arrived before it can now be symbolized.
pub(crate) fn debug_file_stored(state: &AppState, build_id: &str) {
    tracing::info!(build_id, "debug file stored");
    crate::symbolicate::resymbolize_in_background(state, build_id.to_string());
}

/// Called once a debug file is removed: whatever holds it open (a cache of
/// parsed files) must let it go.
pub(crate) fn debug_file_removed(state: &AppState, build_id: &str) {
    tracing::info!(build_id, "debug file removed");
    state.symbolicator.forget(build_id);
}

fn files(state: &AppState) -> DebugFiles {
    DebugFiles::new(state.store.clone(), &state.config.debug_files_dir)
        .with_max_bytes(state.config.max_debug_file_bytes)
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// The uploaded file's name, shown by the list (default: the build-id).
    pub name: Option<String>,
}

/// What an upload answers: the stored row and what became of the upload.
#[derive(Serialize)]
struct UploadAnswer<'a> {
    /// `stored` (new build-id), `replaced` (it brings DWARF where the
    /// stored file had only symbols) or `exists` (kept the stored one).
    status: &'static str,
    #[serde(flatten)]
    row: &'a DebugFileRow,
}

/// `POST /api/v1/debug-files?name=FILE`: the body is the raw file.
#[utoipa::path(post, path = "/api/v1/debug-files", tag = "debug-files",
    params(UploadParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The ELF file: an unstripped executable or its `objcopy --only-keep-debug` file, with a GNU build-id; at most 1 GiB"),
    responses((status = 201, description = "Stored: `{status: \"stored\"|\"replaced\", build_id, name, kind, arch, has_dwarf, has_symbols, size_bytes, uploaded_at}`; `replaced`: it brings DWARF where the stored file of the build-id had only symbols", body = Object),
              (status = 200, description = "`{status: \"exists\", …}`: the build-id is already stored with as much debug info; the stored file's row, kept", body = Object),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 408, description = "The body stalled (no bytes for the body timeout)", body = crate::openapi::ErrorBody),
              (status = 413, description = "Over the size limit (`too_large`): by its Content-Length, answered before the body is read, or as it arrives", body = crate::openapi::ErrorBody),
              (status = 422, description = "Not a usable debug file: `not_elf`, `no_build_id`, `no_debug_info` (stripped), `truncated`", body = crate::openapi::ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    _reader: Reader,
    ReadQuery(params): ReadQuery<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let files = files(&state);
    let limit = files.max_bytes();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(DebugFileError::TooLarge { limit }.into());
    }
    let mut upload = files
        .begin(params.name.as_deref().unwrap_or(""))
        .await
        .map_err(ApiError::from)?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        // A stall is answered 408 by `timeouts.rs`, whatever this says.
        let frame = frame.map_err(|e| {
            ApiError::BadRequest(format!(
                "the upload was cut after {} bytes ({e}): send it again",
                upload.written()
            ))
        })?;
        if let Ok(data) = frame.into_data() {
            upload.write(&data).await?;
        }
    }
    let stored = upload.finish().await?;
    if stored.is_stored() {
        debug_file_stored(&state, &stored.row().build_id);
    }
    let (status, word) = match &stored {
        Stored::New(_) => (StatusCode::CREATED, "stored"),
        Stored::Replaced(_) => (StatusCode::CREATED, "replaced"),
        Stored::Exists(_) => (StatusCode::OK, "exists"),
    };
    let answer = UploadAnswer {
        status: word,
        row: stored.row(),
    };
    Ok((
        status,
        Json(serde_json::to_value(answer).unwrap_or(Value::Null)),
    ))
}

/// `GET /api/v1/debug-files`: every stored file, newest first.
#[utoipa::path(get, path = "/api/v1/debug-files", tag = "debug-files",
    responses((status = 200, description = "`{items: [{build_id, name, kind, arch, has_dwarf, has_symbols, size_bytes, uploaded_at}]}`, newest first", body = Object),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody)))]
pub async fn list(State(state): State<AppState>, _reader: Reader) -> Result<Json<Value>, ApiError> {
    let items = files(&state).list().await?;
    Ok(Json(json!({ "items": items })))
}

/// `DELETE /api/v1/debug-files/{build_id}`: the row and the file.
#[utoipa::path(delete, path = "/api/v1/debug-files/{build_id}", tag = "debug-files",
    params(("build_id" = String, Path, description = "GNU build-id, hex")),
    responses((status = 200, description = "`{deleted: true}`: row and file removed", body = Object),
              (status = 400, description = "Not a hex build-id", body = crate::openapi::ErrorBody),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 403, description = "Not an admin token", body = crate::openapi::ErrorBody),
              (status = 404, description = "No debug file with this build-id", body = crate::openapi::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    _: Admin,
    Path(build_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !files(&state).remove(&build_id).await? {
        return Err(ApiError::NotFound("debug file"));
    }
    debug_file_removed(&state, &build_id.trim().to_ascii_lowercase());
    Ok(Json(json!({ "deleted": true })))
}
