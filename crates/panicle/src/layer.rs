//! A tower layer for HTTP services (axum, plain hyper): each request runs in
//! a scope holding its method, matched route and request id, so a panic in
//! the handler carries them; the handler's panic is caught (the hook has
//! already reported it) and answered 500 with a JSON body.
//!
//! ```no_run
//! async fn order(axum::extract::Path(id): axum::extract::Path<u64>) -> String {
//!     format!("order {id}")
//! }
//! let app: axum::Router = axum::Router::new()
//!     .route("/orders/{id}", axum::routing::get(order))
//!     .layer(panicle::PanicleLayer::new());
//! ```
//!
//! Added with `Router::layer`, it runs after routing, so axum's `MatchedPath`
//! (`/orders/{id}`, not `/orders/42`) is known. Without axum the route stays
//! empty unless the request carries a [`Route`] extension.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::scope::{self, ScopeData, SharedScope};

/// The header a request id is read from and answered in.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A route template set by a router that is not axum (request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route(pub String);

/// See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct PanicleLayer {
    _private: (),
}

impl PanicleLayer {
    pub fn new() -> Self {
        PanicleLayer { _private: () }
    }
}

impl<S> Layer<S> for PanicleLayer {
    type Service = PanicleService<S>;

    fn layer(&self, inner: S) -> PanicleService<S> {
        PanicleService { inner }
    }
}

/// The service [`PanicleLayer`] wraps around the handler.
#[derive(Debug, Clone)]
pub struct PanicleService<S> {
    inner: S,
}

fn matched_route<B>(req: &Request<B>) -> Option<String> {
    #[cfg(feature = "axum")]
    if let Some(m) = req.extensions().get::<axum::extract::MatchedPath>() {
        return Some(m.as_str().to_string());
    }
    req.extensions().get::<Route>().map(|r| r.0.clone())
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for PanicleService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let request_id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            req.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        let (tags, _) = scope::snapshot();
        let scope: SharedScope = Arc::new(Mutex::new(ScopeData {
            tags,
            request: Some(panicle_protocol::Request {
                method: Some(req.method().as_str().to_string()),
                route: matched_route(&req),
                request_id: Some(request_id.clone()),
            }),
        }));
        let inner = &mut self.inner;
        let state = match scope::enter(&scope, || {
            catch_unwind(AssertUnwindSafe(|| inner.call(req)))
        }) {
            Ok(future) => State::Running(Box::pin(future)),
            Err(_) => State::Panicked,
        };
        ResponseFuture {
            state,
            scope,
            request_id,
        }
    }
}

enum State<F> {
    Running(Pin<Box<F>>),
    Panicked,
    Done,
}

/// The handler's future, polled inside its request scope.
pub struct ResponseFuture<F> {
    state: State<F>,
    scope: SharedScope,
    request_id: String,
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<String>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is Unpin (the inner future is boxed).
        let this = self.get_mut();
        let polled = match &mut this.state {
            State::Running(future) => {
                let future = future.as_mut();
                scope::enter(&this.scope, || {
                    catch_unwind(AssertUnwindSafe(|| future.poll(cx)))
                })
            }
            State::Panicked => Err(Box::new(()) as Box<dyn std::any::Any + Send>),
            State::Done => return Poll::Pending,
        };
        let result = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(mut response))) => {
                if let Ok(v) = HeaderValue::from_str(&this.request_id) {
                    response.headers_mut().entry(REQUEST_ID_HEADER).or_insert(v);
                }
                Ok(response)
            }
            Ok(Poll::Ready(Err(e))) => Err(e),
            Err(_) => Ok(panic_response(&this.request_id)),
        };
        this.state = State::Done;
        Poll::Ready(result)
    }
}

/// 500 with `{"error": {"code": "internal_error", …}}` and, when the hook
/// built one, the id of the event that reported the panic.
fn panic_response<B: From<String>>(request_id: &str) -> Response<B> {
    let mut error = serde_json::json!({
        "code": "internal_error",
        "message": "the request handler panicked",
        "request_id": request_id,
    });
    if let Some(id) = scope::take_last_event_id() {
        error["event_id"] = serde_json::Value::String(id);
    }
    let body = serde_json::json!({ "error": error }).to_string();
    let mut response = Response::new(B::from(body));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}
