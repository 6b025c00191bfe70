//! What the hook does, callable outside a panic, for the `hook` benchmark.
//! Not a stable API.

use std::sync::OnceLock;

use panicle_protocol::Event;

use crate::Options;
use crate::capture::build_event;
use crate::context::Resource;
use crate::symbolize;

fn resource() -> &'static Resource {
    static RESOURCE: OnceLock<Resource> = OnceLock::new();
    RESOURCE.get_or_init(|| Resource::detect(&Options::default()))
}

/// Capture + symbolize (through the process-wide cache) + build the event.
#[inline(never)]
pub fn capture_event(options: &Options) -> Event {
    build_event(
        "bench".into(),
        None,
        symbolize::capture_raw(),
        options,
        resource(),
    )
}

/// The same with debug info loaded for this call and no cache.
#[inline(never)]
pub fn capture_event_cold(options: &Options) -> Event {
    let raw = symbolize::resolve_cold(&symbolize::capture_addresses());
    build_event("bench".into(), None, raw, options, resource())
}

/// Starts the background warm-up `init` starts.
pub fn warm_up() {
    symbolize::warm_up();
}

/// True once the warm-up loaded the debug info.
pub fn is_warm() -> bool {
    symbolize::is_warm()
}

/// Empties the address cache.
pub fn clear_cache() {
    symbolize::clear_cache();
}
