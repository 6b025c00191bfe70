//! The OpenAPI document, generated from the handlers' annotations: routes
//! are registered through `utoipa_axum::routes!`, so a route cannot exist
//! without its documentation.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error: `{"error": {"code": "snake_case", "message": "…"}}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `invalid_field`, `payload_too_large`.
    code: String,
    /// What was wrong and what to do.
    message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Panicle",
        description = "Self-hosted panic attribution: ingest, groups, clusters, attribution."
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Security),
    security(("bearer" = []), ("session" = []))
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::cookie::SESSION_COOKIE,
            ))),
        );
        components.add_security_scheme(
            "ingest_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Panicle-Key"))),
        );
    }
}
