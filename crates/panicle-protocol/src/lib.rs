//! Panicle's wire protocol: event schema v1, the DSN, decoding with named
//! errors, and the normalization that turns an event into a fingerprint.
//!
//! Architecture invariant: this crate does no I/O and spawns nothing, so every
//! function here is deterministic and tested alone.

pub mod crashtext;
pub mod decode;
pub mod dsn;
pub mod event;
pub mod message;
pub mod normalize;
pub mod sentry;
pub mod storm;

pub use crashtext::truncate_str;
pub use decode::{BatchItem, DecodeError, DecodedBody, decode_body, decode_events};
pub use dsn::{Dsn, DsnError};
pub use event::{Breadcrumb, Event, Frame, Kind, Location, Platform, Request, Sdk, Thread, Trace};
pub use message::{MessageParts, message_parts};
pub use normalize::{
    fingerprint, frame_token, message_template, short_function_name, signature_frames,
};
pub use storm::{StormRecord, StormSample};
