#!/usr/bin/env python3
"""Writes corpus.jsonl: captured panics with a known root cause (`label`).

Deterministic (fixed seed). See README.md for where the shapes come from.
Run: python3 gen_corpus.py > corpus.jsonl
"""
import json
import random

rng = random.Random(20261109)

# Plumbing below the app frames, outermost last (in_app false).
AXUM_TAIL = [
    "<core::pin::Pin<P> as core::future::future::Future>::poll",
    "<axum::handler::future::IntoServiceFuture<F> as core::future::future::Future>::poll",
    "<F as futures_core::future::TryFuture>::try_poll",
    "<tower::util::map_response::MapResponseFuture<F,N> as core::future::future::Future>::poll",
    "<axum::routing::route::RouteFuture<E> as core::future::future::Future>::poll",
    "hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_catch",
    "<hyper_util::server::conn::auto::UpgradeableConnection<I,S,E> as core::future::future::Future>::poll",
    "tokio::runtime::task::core::Core<T,S>::poll",
    "tokio::runtime::task::harness::poll_future",
    "tokio::runtime::scheduler::multi_thread::worker::Context::run_task",
    "tokio::runtime::scheduler::multi_thread::worker::run",
    "std::sys::backtrace::__rust_begin_short_backtrace",
    "std::thread::Builder::spawn_unchecked_::{{closure}}",
    "start_thread",
    "clone3",
]
TOKIO_TASK_TAIL = AXUM_TAIL[7:]
GO_HTTP_TAIL = [
    "net/http.HandlerFunc.ServeHTTP",
    "github.com/go-chi/chi/v5.(*Mux).routeHTTP",
    "net/http.HandlerFunc.ServeHTTP",
    "github.com/go-chi/chi/v5/middleware.Recoverer.func1",
    "net/http.HandlerFunc.ServeHTTP",
    "github.com/go-chi/chi/v5.(*Mux).ServeHTTP",
    "net/http.serverHandler.ServeHTTP",
    "net/http.(*conn).serve",
    "runtime.goexit",
]
GO_WORKER_TAIL = ["golang.org/x/sync/errgroup.(*Group).Go.func1", "runtime.goexit"]
RUST_HEAD = {
    "unwrap_none": ["core::panicking::panic", "core::option::unwrap_failed"],
    "unwrap_err": ["core::result::unwrap_failed"],
    "oob": ["core::panicking::panic_bounds_check"],
    "overflow": ["core::panicking::panic_const::panic_const_add_overflow"],
    "div0": ["core::panicking::panic_const::panic_const_div_by_zero"],
    "expect": ["core::option::expect_failed"],
    "borrow": ["core::cell::panic_already_mutably_borrowed"],
    "str": ["core::str::slice_error_fail_rt", "core::str::slice_error_fail"],
}
GO_HEAD = {
    "nilmap": ["runtime.mapassign_faststr"],
    "nil": ["runtime.panicmem", "runtime.sigpanic"],
    "oob": ["runtime.goPanicIndex"],
    "slice": ["runtime.goPanicSliceAcap"],
    "cmap": ["runtime.fatal", "internal/runtime/maps.fatal"],
}

# Each cause: service, language, panic head, message maker, the fault chain
# (innermost first), caller chains, and what release 2 changes.
CAUSES = [
    dict(label="checkout-cart-total-overflow", svc="checkout", lang="rust", head="overflow",
         msg=lambda: "attempt to add with overflow",
         fault=["checkout::pricing::sum_line_items", "checkout::pricing::cart_total"],
         callers=[["checkout::api::orders::create_order::{{closure}}", "checkout::api::orders::create_order"],
                  ["checkout::api::cart::preview::{{closure}}", "checkout::api::cart::preview"],
                  ["checkout::jobs::reprice::run::{{closure}}", "checkout::jobs::reprice::run"]],
         v2="move-fault"),
    dict(label="checkout-unwrap-customer", svc="checkout", lang="rust", head="unwrap_none",
         msg=lambda: "called `Option::unwrap()` on a `None` value",
         fault=["checkout::orders::load_customer", "checkout::orders::Order::create"],
         callers=[["checkout::api::orders::create_order::{{closure}}", "checkout::api::orders::create_order"],
                  ["checkout::api::orders::reorder::{{closure}}", "checkout::api::orders::reorder"],
                  ["checkout::api::subscriptions::renew::{{closure}}", "checkout::api::subscriptions::renew"]],
         v2="middleware"),
    dict(label="checkout-unwrap-address", svc="checkout", lang="rust", head="unwrap_none",
         msg=lambda: "called `Option::unwrap()` on a `None` value",
         fault=["checkout::orders::load_address", "checkout::orders::Order::create"],
         callers=[["checkout::api::orders::create_order::{{closure}}", "checkout::api::orders::create_order"],
                  ["checkout::api::orders::reorder::{{closure}}", "checkout::api::orders::reorder"]],
         v2="middleware"),
    dict(label="checkout-coupon-parse", svc="checkout", lang="rust", head="unwrap_err",
         msg=lambda: "called `Result::unwrap()` on an `Err` value: ParseIntError { kind: InvalidDigit }",
         fault=["checkout::coupons::parse_code", "checkout::coupons::Coupon::from_request"],
         callers=[["checkout::api::cart::apply_coupon::{{closure}}", "checkout::api::cart::apply_coupon"],
                  ["checkout::api::orders::create_order::{{closure}}", "checkout::api::orders::create_order"],
                  ["checkout::api::cart::preview::{{closure}}", "checkout::api::cart::preview"]],
         v2="rename"),
    dict(label="inventory-grid-cell-oob", svc="inventory", lang="rust", head="oob",
         msg=lambda: f"index out of bounds: the len is {rng.randint(2, 9)} but the index is {rng.randint(9, 40)}",
         fault=["inventory::grid::Grid::cell", "inventory::placement::find_slot"],
         callers=[["inventory::api::put_away::{{closure}}", "inventory::api::put_away"],
                  ["inventory::api::rebalance::{{closure}}", "inventory::api::rebalance"],
                  ["inventory::jobs::compact::tick::{{closure}}", "inventory::jobs::compact::tick"]],
         v2="inline"),
    dict(label="inventory-grid-row-oob", svc="inventory", lang="rust", head="oob",
         msg=lambda: f"index out of bounds: the len is {rng.randint(2, 9)} but the index is {rng.randint(9, 40)}",
         fault=["inventory::grid::Grid::row_span", "inventory::placement::find_slot"],
         callers=[["inventory::api::put_away::{{closure}}", "inventory::api::put_away"],
                  ["inventory::api::rebalance::{{closure}}", "inventory::api::rebalance"]],
         v2="move"),
    dict(label="inventory-reservation-expect", svc="inventory", lang="rust", head="expect",
         msg=lambda: "reservation exists",
         fault=["inventory::reservations::Book::release", "inventory::reservations::release_expired"],
         callers=[["inventory::api::cancel_reservation::{{closure}}", "inventory::api::cancel_reservation"],
                  ["inventory::jobs::expiry::sweep::{{closure}}", "inventory::jobs::expiry::sweep"],
                  ["inventory::api::checkout_hook::{{closure}}", "inventory::api::checkout_hook"]],
         v2="rename"),
    dict(label="inventory-sku-char-boundary", svc="inventory", lang="rust", head="str",
         msg=lambda: f"byte index {rng.randint(3, 9)} is not a char boundary; it is inside 'é' (bytes 2..4) of `Crème brûlée {rng.randint(1, 99)}`",
         fault=["inventory::sku::short_name", "inventory::catalog::ItemView::from_item"],
         callers=[["inventory::api::list_items::{{closure}}", "inventory::api::list_items"],
                  ["inventory::api::search::{{closure}}", "inventory::api::search"],
                  ["inventory::jobs::export::feed::{{closure}}", "inventory::jobs::export::feed"]],
         v2="inline"),
    dict(label="auth-jwt-decode", svc="auth-gateway", lang="rust", head="unwrap_err",
         msg=lambda: "called `Result::unwrap()` on an `Err` value: Error(InvalidSignature)",
         fault=["auth::tokens::decode_claims", "auth::middleware::require_user::{{closure}}", "auth::middleware::require_user"],
         callers=[["auth::api::me::{{closure}}"], ["auth::api::sessions::list::{{closure}}"],
                  ["auth::api::keys::rotate::{{closure}}"]],
         v2="middleware"),
    dict(label="auth-ratelimit-div0", svc="auth-gateway", lang="rust", head="div0",
         msg=lambda: "attempt to divide by zero",
         fault=["auth::ratelimit::Window::rate", "auth::ratelimit::Limiter::check", "auth::middleware::rate_limit::{{closure}}", "auth::middleware::rate_limit"],
         callers=[["auth::api::login::{{closure}}"], ["auth::api::token::refresh::{{closure}}"],
                  ["auth::api::password::reset::{{closure}}"]],
         v2="move"),
    dict(label="auth-session-borrow", svc="auth-gateway", lang="rust", head="borrow",
         msg=lambda: "already mutably borrowed: BorrowError",
         fault=["auth::session::Cache::touch", "auth::session::Store::get"],
         callers=[["auth::api::me::{{closure}}"], ["auth::api::sessions::list::{{closure}}"]],
         v2="inline"),
    dict(label="auth-tenant-header-unwrap", svc="auth-gateway", lang="rust", head="unwrap_none",
         msg=lambda: "called `Option::unwrap()` on a `None` value",
         fault=["auth::middleware::tenant_header", "auth::middleware::require_user::{{closure}}", "auth::middleware::require_user"],
         callers=[["auth::api::me::{{closure}}"], ["auth::api::keys::rotate::{{closure}}"]],
         v2="rename"),
    dict(label="billing-nil-map", svc="billing", lang="go", head="nilmap",
         msg=lambda: "assignment to entry in nil map",
         fault=["github.com/acme/billing/internal/ledger.(*Ledger).Post", "github.com/acme/billing/internal/ledger.(*Ledger).Apply"],
         callers=[["github.com/acme/billing/api.(*Server).handleCharge"], ["github.com/acme/billing/api.(*Server).handleRefund"],
                  ["github.com/acme/billing/worker.(*Settler).settleBatch", "github.com/acme/billing/worker.(*Settler).Run.func1"]],
         v2="middleware"),
    dict(label="billing-invoice-nil", svc="billing", lang="go", head="nil",
         msg=lambda: "runtime error: invalid memory address or nil pointer dereference",
         fault=["github.com/acme/billing/internal/invoice.(*Renderer).Render", "github.com/acme/billing/internal/invoice.Build"],
         callers=[["github.com/acme/billing/api.(*Server).handleInvoice"],
                  ["github.com/acme/billing/worker.(*Mailer).sendMonthly", "github.com/acme/billing/worker.(*Mailer).Run.func2"]],
         v2="rename"),
    dict(label="billing-tax-rate-oob", svc="billing", lang="go", head="oob",
         msg=lambda: f"runtime error: index out of range [{(n := rng.randint(3, 8))}] with length {n}",
         fault=["github.com/acme/billing/internal/tax.rateFor", "github.com/acme/billing/internal/tax.(*Calc).Total"],
         callers=[["github.com/acme/billing/internal/invoice.Build", "github.com/acme/billing/api.(*Server).handleInvoice"],
                  ["github.com/acme/billing/api.(*Server).handleQuote"],
                  ["github.com/acme/billing/worker.(*Settler).settleBatch", "github.com/acme/billing/worker.(*Settler).Run.func1"]],
         v2="inline"),
    dict(label="billing-tax-bracket-oob", svc="billing", lang="go", head="oob",
         msg=lambda: f"runtime error: index out of range [{(n := rng.randint(3, 8))}] with length {n}",
         fault=["github.com/acme/billing/internal/tax.bracketFor", "github.com/acme/billing/internal/tax.(*Calc).Total"],
         callers=[["github.com/acme/billing/internal/invoice.Build", "github.com/acme/billing/api.(*Server).handleInvoice"],
                  ["github.com/acme/billing/api.(*Server).handleQuote"]],
         v2="move-fault"),
    dict(label="shipping-carrier-nil", svc="shipping", lang="go", head="nil",
         msg=lambda: "runtime error: invalid memory address or nil pointer dereference",
         fault=["github.com/acme/shipping/carrier.(*Client).Quote", "github.com/acme/shipping/rates.(*Service).Best"],
         callers=[["github.com/acme/shipping/api.handleQuote"], ["github.com/acme/shipping/api.handleCheckoutRates"],
                  ["github.com/acme/shipping/batch.(*Quoter).quoteAll.func1"]],
         v2="middleware"),
    dict(label="shipping-rate-cache-race", svc="shipping", lang="go", head="cmap",
         msg=lambda: "concurrent map writes",
         fault=["github.com/acme/shipping/cache.(*RateCache).Put", "github.com/acme/shipping/rates.(*Service).Best"],
         callers=[["github.com/acme/shipping/api.handleQuote"], ["github.com/acme/shipping/batch.(*Quoter).quoteAll.func1"],
                  ["github.com/acme/shipping/api.handleCheckoutRates"]],
         v2="inline"),
    dict(label="shipping-tracking-slice", svc="shipping", lang="go", head="slice",
         msg=lambda: f"runtime error: slice bounds out of range [:{rng.randint(10, 14)}] with capacity {rng.randint(6, 9)}",
         fault=["github.com/acme/shipping/label.formatTracking", "github.com/acme/shipping/label.Render"],
         callers=[["github.com/acme/shipping/api.handleLabel"], ["github.com/acme/shipping/api.handleReprint"]],
         v2="rename"),
    dict(label="shipping-printer-nil", svc="shipping", lang="go", head="nil",
         msg=lambda: "runtime error: invalid memory address or nil pointer dereference",
         fault=["github.com/acme/shipping/label.(*Printer).Send", "github.com/acme/shipping/label.Render"],
         callers=[["github.com/acme/shipping/api.handleLabel"], ["github.com/acme/shipping/api.handleReprint"]],
         v2="move"),
]

MIDDLEWARE = {
    "rust": {"checkout": "checkout::middleware::request_id::{{closure}}",
             "inventory": "inventory::middleware::tenant::{{closure}}",
             "auth-gateway": "auth::middleware::audit::{{closure}}"},
    "go": {"billing": "github.com/acme/billing/api.(*Server).withTenant.func1",
           "shipping": "github.com/acme/shipping/api.withTracing.func1"},
}
OUTER = {
    "checkout": ["checkout::main::{{closure}}"], "inventory": ["inventory::serve::{{closure}}"],
    "auth-gateway": ["auth::serve::{{closure}}"], "billing": [], "shipping": [],
}


def rename(f):
    """A renamed wrapper: the caller-side function gets a new name."""
    for a, b in [("create_order", "place_order"), ("apply_coupon", "redeem_coupon"),
                 ("require_user", "authenticate"), ("release_expired", "expire_stale"),
                 ("handleInvoice", "serveInvoice"), ("Build", "Compose"), ("Render", "Draw"),
                 ("handleLabel", "serveLabel"), ("cancel_reservation", "cancel_hold")]:
        if a in f:
            return f.replace(a, b)
    return f


def move(f):
    """Moved code: a module (or Go package) in the caller chain changed path."""
    for a, b in [("checkout::api::", "checkout::http::"), ("inventory::api::", "inventory::routes::"),
                 ("auth::api::", "auth::routes::"), ("billing/internal/invoice", "billing/internal/docs/invoice"),
                 ("shipping/api.", "shipping/internal/httpapi.")]:
        if a in f:
            return f.replace(a, b)
    return f


def move_fault(f):
    """Moved code: the faulting function's own module changed path."""
    for a, b in [("checkout::pricing::", "checkout::billing::pricing::"),
                 ("billing/internal/tax.", "billing/internal/pricing/tax.")]:
        if a in f:
            return f.replace(a, b)
    return f


def rust_hash():
    return "::h%016x" % rng.getrandbits(64)


def rust_frames(cause, caller, release, svc):
    app = cause["fault"] + caller + OUTER[svc]
    if release == 2:
        app = apply_v2(cause, app, svc)
    frames = [{"function": f + rust_hash(), "in_app": False} for f in RUST_HEAD[cause["head"]]]
    for f in app:
        frames.append({"function": f + rust_hash(), "file": "src/" + f.split("::")[1] + ".rs",
                       "line": rng.randint(10, 400), "in_app": True})
    tail = TOKIO_TASK_TAIL if "jobs::" in caller[-1] else AXUM_TAIL
    frames += [{"function": f, "in_app": False} for f in tail]
    return frames


def go_frames(cause, caller, release, svc):
    app = cause["fault"] + caller
    if release == 2:
        app = apply_v2(cause, app, svc)
    frames = [{"function": f, "in_app": False} for f in GO_HEAD[cause["head"]]]
    for f in app:
        frames.append({"function": f + "(0x%x, 0x%x)" % (0xc000010000 + rng.getrandbits(16), rng.getrandbits(8)),
                       "file": "/src/" + svc + "/x.go", "line": rng.randint(10, 400), "in_app": True})
    http = "api." in caller[-1] or "httpapi." in caller[-1]
    frames += [{"function": f, "in_app": False} for f in (GO_HTTP_TAIL if http else GO_WORKER_TAIL)]
    return frames


def apply_v2(cause, app, svc):
    kind = cause["v2"]
    if kind == "move":
        return [move(f) for f in app]
    if kind == "move-fault":
        return [move_fault(f) for f in app[:2]] + app[2:]
    if kind == "rename":
        # The wrapper (not the faulting function) is renamed.
        return app[:1] + [rename(f) for f in app[1:]]
    if kind == "middleware":
        mw = MIDDLEWARE[cause["lang"]][svc]
        return app + [mw]
    if kind == "inline":
        # The helper next to the fault got inlined: its frame is gone.
        return app[:1] + app[2:]
    raise ValueError(kind)


def main():
    n = 0
    for cause in CAUSES:
        svc = cause["svc"]
        for ci, caller in enumerate(cause["callers"]):
            for release in (1, 2):
                # One to three captures per stack: rebuilt binaries (new hashes,
                # addresses, lines) that exact fingerprints already unite.
                for _ in range(rng.choice([1, 1, 2, 3])):
                    n += 1
                    maker = rust_frames if cause["lang"] == "rust" else go_frames
                    rec = {
                        "id": f"p{n:04d}",
                        "label": cause["label"],
                        "service": svc,
                        "platform": cause["lang"],
                        "release": f"{svc}@1.{4 + release - 1}.0",
                        "count": int(rng.paretovariate(1.2)),
                        "message": cause["msg"](),
                        "frames": maker(cause, caller, release, svc),
                    }
                    print(json.dumps(rec))


if __name__ == "__main__":
    main()
