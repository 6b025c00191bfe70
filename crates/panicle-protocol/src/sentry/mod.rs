//! The Sentry protocol, so official Sentry SDKs report to Panicle with
//! their DSN pointed at it: envelopes (`envelope.rs`), event mapping
//! (`event.rs`) and the auth header (`auth.rs`).

pub mod auth;
pub mod envelope;
pub mod event;

pub use auth::{dsn_key, query_key, sentry_key};
pub use envelope::{Envelope, EnvelopeError, Item, ItemType, parse_envelope};
pub use event::{Fallback, SentryEventError, map_event, parse_event};
