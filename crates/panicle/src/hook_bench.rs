//! What the hook does, callable outside a panic, for the `hook` benchmark.
//! Not a stable API.

use std::sync::OnceLock;

use panicle_protocol::Event;

use crate::capture::build_event;
use crate::context::Resource;
use crate::options::Options;
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
    .into_event()
}

/// Installs a panic hook that does what `init`'s does with a panic
/// (capture, symbolize, build; delivery left out) and records how long that
/// took, in nanoseconds. Its closure is SDK code, like the real hook's.
pub fn install_timed_hook(options: Options) {
    std::panic::set_hook(Box::new(move |info| {
        let t = std::time::Instant::now();
        std::hint::black_box(crate::capture::capture(info, &options, resource()).into_event());
        let took = t.elapsed().as_nanos() as f64;
        if let Ok(mut times) = HOOK_TIMES.lock() {
            times.push(took);
        }
    }));
}

static HOOK_TIMES: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());

/// What the hook of [`install_timed_hook`] measured, oldest first.
pub fn hook_times() -> Vec<f64> {
    HOOK_TIMES.lock().map(|t| t.clone()).unwrap_or_default()
}

/// The same with debug info loaded for this call and no cache.
#[inline(never)]
pub fn capture_event_cold(options: &Options) -> Event {
    let raw = symbolize::resolve_cold(&symbolize::capture_addresses());
    build_event("bench".into(), None, raw, options, resource()).into_event()
}

/// Sets where addresses get their names, as `init` does from the options.
pub fn set_symbolize(mode: crate::Symbolize) {
    symbolize::set_mode(mode);
}

/// Starts the background warm-up `init` starts (and detects the resource,
/// as `init` does).
pub fn warm_up() {
    let _ = resource();
    symbolize::warm_up();
    crate::capture::prewarm();
}

/// True once the warm-up loaded the debug info.
pub fn is_warm() -> bool {
    symbolize::is_warm()
}

/// Empties the address cache.
pub fn clear_cache() {
    symbolize::clear_cache();
}

/// The hook's phases timed separately (ns): capture, symbolize, classify, build (classify included).
#[inline(never)]
pub fn phases(options: &Options) -> [u128; 4] {
    let t = std::time::Instant::now();
    let addresses = symbolize::capture_addresses();
    let captured = t.elapsed().as_nanos();
    let t = std::time::Instant::now();
    let raw = symbolize::resolve(&addresses);
    let resolved = t.elapsed().as_nanos();
    let t = std::time::Instant::now();
    let frames = symbolize::to_frames(raw.clone(), options);
    let classified = t.elapsed().as_nanos();
    std::hint::black_box(frames);
    let t = std::time::Instant::now();
    let event = build_event("bench".into(), None, raw, options, resource()).into_event();
    std::hint::black_box(event);
    [captured, resolved, classified, t.elapsed().as_nanos()]
}
