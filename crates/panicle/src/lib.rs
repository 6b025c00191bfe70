//! Panicle SDK: one call installs a panic hook that captures the panic
//! (message, location, thread, symbolized frames), adds the service's
//! resource (service, release, Kubernetes pod) and ships it to a Panicle
//! server.
//!
//! ```no_run
//! let _guard = panicle::init(panicle::Options::from_env());
//! ```
//!
//! With `PANICLE_DSN` unset, `init` still installs the hook, which only chains
//! the previous one: the SDK can stay in every build.
//!
//! On Linux, with a DSN, `init` also installs handlers for SIGSEGV, SIGBUS,
//! SIGILL, SIGFPE and SIGABRT (stack overflows included) that leave a crash
//! record in the spool; the next start ships it (see [`signals`]).

pub mod batch;
#[cfg(feature = "tower")]
pub mod breaker;
mod capture;
mod context;
#[doc(hidden)]
pub mod hook_bench;
#[cfg(feature = "tower")]
mod layer;
mod ledger;
mod modules;
mod options;
#[cfg(feature = "otel")]
pub mod otel;
mod scope;
mod sender;
pub mod signals;
pub mod spool;
mod symbolize;
mod threads;
mod transport;

use std::panic::PanicHookInfo;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[cfg(feature = "tower")]
pub use layer::{PanicleLayer, PanicleService, REQUEST_ID_HEADER, ResponseFuture, Route};
pub use options::{DEFAULT_STORM_THRESHOLD_PER_SEC, DeliveryOptions, Options, Symbolize};
pub use panicle_protocol as protocol;
pub use scope::{Scoped, remove_tag, scoped, set_tag, take_last_event_id};
#[doc(hidden)]
pub use sender::test_support as __delivery_test_support;
pub use sender::{DeliveryStats, delivery_stats};

/// What the installed hook shares with `flush` and the guard.
struct Client {
    options: Options,
    resource: context::Resource,
    delivery: Option<sender::Delivery>,
}

static CLIENT: OnceLock<Arc<Client>> = OnceLock::new();

/// Flushes queued events when dropped (at the end of `main`).
#[must_use = "dropping the guard at once flushes and ends delivery guarantees; bind it: `let _guard = …`"]
pub struct Guard {
    _private: (),
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(client) = CLIENT.get()
            && let Some(delivery) = &client.delivery
        {
            // Delivery first (storm counts to the spool included), so a
            // recovery still waiting for debug info cannot starve it; then
            // what recovery stored meanwhile, in the time left.
            let o = &client.options.delivery;
            let deadline = std::time::Instant::now() + o.exit_flush_timeout;
            let wait = o.exit_waits_for_unreachable_server;
            let recovering = !signals::recovered();
            delivery.flush_at_exit(o.exit_flush_timeout, wait);
            if recovering && signals::wait_recovered(deadline) {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                delivery.flush_at_exit(left, wait);
            }
        }
    }
}

pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Installs the panic hook. Calling it again keeps the first configuration.
pub fn init(options: Options) -> Guard {
    if CLIENT.get().is_some() {
        return Guard { _private: () };
    }
    if let Some(dsn) = &options.dsn
        && dsn.scheme == "https"
        && !cfg!(feature = "tls")
    {
        eprintln!(
            "panicle: the DSN is https:// but this build has no TLS (the `tls` feature is off): \
             events stay in the spool until it is on or the DSN is http://"
        );
    }
    let resource = context::Resource::detect(&options);
    let delivery = options.dsn.as_ref().map(|dsn| {
        let service = resource.get("service.name");
        sender::Delivery::start(dsn, &options, service)
    });
    let client = Arc::new(Client {
        resource,
        options,
        delivery,
    });
    if CLIENT.set(client.clone()).is_ok() {
        // Debug info loads off the main thread: the first panic must not pay it.
        symbolize::set_mode(client.options.symbolize);
        symbolize::warm_up();
        capture::prewarm();
        // Deaths by signal: records go to the spool, and what an earlier
        // process left there is shipped now.
        if let Some(dir) = client.delivery.as_ref().and_then(|d| d.spool_dir()) {
            if client.options.signal_handlers {
                signals::install(dir, &client.options, &client.resource);
            }
            let shipper = client.clone();
            // Straight to the spool (no storm control: a record is one
            // death); the record goes only once its event is stored.
            signals::recover_in_background(dir, &client.options, &client.resource, move |event| {
                shipper
                    .delivery
                    .as_ref()
                    .is_some_and(|d| d.spool_recovered(&event))
            });
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            hook(&client, info);
            previous(info);
        }));
    }
    Guard { _private: () }
}

/// The resource attributes this process reports (service, Kubernetes pod,
/// host), for tools such as `panicle run` that build events themselves.
pub fn detect_resource(options: &Options) -> std::collections::BTreeMap<String, serde_json::Value> {
    context::Resource::detect(options).attributes
}

/// Waits up to `timeout` for queued events to be sent (the crash records
/// of earlier runs being recovered included); true when none is left.
///
/// Delivery is flushed first (storm counts go to the spool then), so a
/// recovery waiting for debug info cannot take the whole timeout; then
/// recovery is waited for, and what it stored flushed in the time left.
pub fn flush(timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    let delivery = CLIENT.get().and_then(|c| c.delivery.as_ref());
    let recovering = !signals::recovered();
    let flushed = delivery.is_none_or(|d| d.flush(timeout));
    if !recovering {
        return flushed;
    }
    let recovered = signals::wait_recovered(deadline);
    delivery.is_none_or(|d| d.flush(left())) && recovered
}

thread_local! {
    /// Set while this thread runs the hook: a panic inside the hook must not recurse.
    static IN_HOOK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn hook(client: &Client, info: &PanicHookInfo<'_>) {
    if IN_HOOK.with(|f| f.replace(true)) {
        return;
    }
    if let Some(delivery) = &client.delivery {
        let capture::Captured { event, exception } =
            capture::capture(info, &client.options, &client.resource);
        // Storm control may hand out a derived id: the span names that one.
        let handed_out = delivery.submit(event);
        capture::record_on_span(exception, &handed_out);
    }
    IN_HOOK.with(|f| f.set(false));
}

/// `name@version` of the calling crate, for `Options::release`.
#[macro_export]
macro_rules! release_name {
    () => {
        concat!(env!("CARGO_PKG_NAME"), "@", env!("CARGO_PKG_VERSION"))
    };
}
