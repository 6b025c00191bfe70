#!/usr/bin/env python3
"""Writes payload-corpus.jsonl: panics of 38 known bugs whose messages vary
in their payload (error variants, errnos, serde positions, HTTP statuses),
next to different bugs that share a message, an error type or a module.

Deterministic (fixed seed). Each line carries `split`: `tune` (used to
choose the clustering defaults) or `heldout` (never looked at by the grid
search; a third of the bugs, chosen by a hash of the label). See README.md.
Run: python3 gen_payload_corpus.py > payload-corpus.jsonl
"""
import hashlib
import json
import random

from gen_corpus import AXUM_TAIL, GO_HEAD, GO_HTTP_TAIL, GO_WORKER_TAIL, RUST_HEAD, TOKIO_TASK_TAIL

rng = random.Random(20261202)

RUST_HEAD = dict(RUST_HEAD)
RUST_HEAD.update({
    "sub_overflow": ["core::panicking::panic_const::panic_const_sub_overflow"],
    "mul_overflow": ["core::panicking::panic_const::panic_const_mul_overflow"],
    "borrow_mut": ["core::cell::panic_already_borrowed"],
    "result_expect": ["core::result::unwrap_failed"],
})
GO_HEAD = dict(GO_HEAD)
GO_HEAD.update({
    "err": [],  # panic(err): runtime.gopanic is plumbing, the app frame is on top
    "assert": ["runtime.panicdottypeE"],
    "div0": ["runtime.panicdivide"],
})


def unwrap(payload):
    return "called `Result::unwrap()` on an `Err` value: " + payload


def os_err(code, kind, text):
    return f'Os {{ code: {code}, kind: {kind}, message: "{text}" }}'


NOT_FOUND = os_err(2, "NotFound", "No such file or directory")
DENIED = os_err(13, "PermissionDenied", "Permission denied")
NO_SPACE = os_err(28, "StorageFull", "No space left on device")
BROKEN_PIPE = os_err(32, "BrokenPipe", "Broken pipe")
RESET = os_err(104, "ConnectionReset", "Connection reset by peer")
REFUSED = os_err(111, "ConnectionRefused", "Connection refused")
TIMED_OUT = os_err(110, "TimedOut", "Connection timed out")


def serde(msg):
    return lambda: unwrap(f'Error("{msg}", line: {rng.randint(1, 40)}, column: {rng.randint(1, 120)})')


def fixed(text):
    return lambda: text


def oob():
    return f"index out of bounds: the len is {rng.randint(2, 9)} but the index is {rng.randint(9, 40)}"


def go_oob():
    n = rng.randint(3, 8)
    return f"runtime error: index out of range [{n + rng.randint(0, 3)}] with length {n}"


NONE = fixed("called `Option::unwrap()` on a `None` value")
NIL = fixed("runtime error: invalid memory address or nil pointer dereference")

# Each bug: service, language, panic head, payload variants (message makers,
# the same bug reached with different inputs), the fault chain (innermost
# first), caller chains, and what release 2 changes.
BUGS = [
    # --- orders (Rust, axum) ---
    dict(label="orders-qty-parse", svc="orders", lang="rust", head="unwrap_err",
         msgs=[fixed(unwrap("ParseIntError { kind: InvalidDigit }")), fixed(unwrap("ParseIntError { kind: Empty }")),
               fixed(unwrap("ParseIntError { kind: PosOverflow }"))],
         fault=["orders::cart::parse_qty", "orders::cart::LineItem::from_form"],
         callers=[["orders::api::cart::add_item::{{closure}}", "orders::api::cart::add_item"],
                  ["orders::api::cart::update_item::{{closure}}", "orders::api::cart::update_item"],
                  ["orders::jobs::import::run::{{closure}}", "orders::jobs::import::run"]],
         v2="rename"),
    dict(label="orders-discount-parse", svc="orders", lang="rust", head="unwrap_err",
         msgs=[fixed(unwrap("ParseIntError { kind: InvalidDigit }")), fixed(unwrap("ParseIntError { kind: Empty }"))],
         fault=["orders::pricing::parse_discount", "orders::pricing::Discount::from_code"],
         callers=[["orders::api::cart::apply_discount::{{closure}}", "orders::api::cart::apply_discount"],
                  ["orders::api::checkout::submit::{{closure}}", "orders::api::checkout::submit"]],
         v2="middleware"),
    dict(label="orders-rates-read", svc="orders", lang="rust", head="unwrap_err",
         msgs=[fixed(unwrap(NOT_FOUND)), fixed(unwrap(DENIED))],
         fault=["orders::config::load_rates", "orders::config::RateTable::load"],
         callers=[["orders::api::shipping::quote::{{closure}}", "orders::api::shipping::quote"],
                  ["orders::api::checkout::submit::{{closure}}", "orders::api::checkout::submit"],
                  ["orders::jobs::reload::tick::{{closure}}", "orders::jobs::reload::tick"]],
         v2="inline"),
    # Same function as orders-rates-read, a different unwrap: the file's
    # content does not parse.
    dict(label="orders-rates-parse", svc="orders", lang="rust", head="unwrap_err",
         msgs=[fixed(unwrap("ParseFloatError { kind: Invalid }")), fixed(unwrap("ParseFloatError { kind: Empty }"))],
         fault=["orders::config::load_rates", "orders::config::RateTable::load"],
         callers=[["orders::api::shipping::quote::{{closure}}", "orders::api::shipping::quote"],
                  ["orders::jobs::reload::tick::{{closure}}", "orders::jobs::reload::tick"]],
         v2="inline"),
    dict(label="orders-receipt-write", svc="orders", lang="rust", head="unwrap_err",
         msgs=[fixed(unwrap(DENIED)), fixed(unwrap(NO_SPACE))],
         fault=["orders::receipts::write_pdf", "orders::receipts::Receipt::store"],
         callers=[["orders::api::checkout::submit::{{closure}}", "orders::api::checkout::submit"],
                  ["orders::api::receipts::resend::{{closure}}", "orders::api::receipts::resend"]],
         v2="move"),
    dict(label="orders-cart-cookie-json", svc="orders", lang="rust", head="unwrap_err",
         msgs=[serde("expected value"), serde("missing field `items`"), serde("EOF while parsing an object")],
         fault=["orders::cart::decode_cart", "orders::cart::Cart::from_cookie"],
         callers=[["orders::api::cart::show::{{closure}}", "orders::api::cart::show"],
                  ["orders::api::checkout::submit::{{closure}}", "orders::api::checkout::submit"],
                  ["orders::api::cart::merge_guest::{{closure}}", "orders::api::cart::merge_guest"]],
         v2="rename"),
    dict(label="orders-webhook-json", svc="orders", lang="rust", head="unwrap_err",
         msgs=[serde("expected value"), serde("invalid type: null, expected a string")],
         fault=["orders::webhooks::parse_event", "orders::webhooks::handle"],
         callers=[["orders::api::webhooks::stripe::{{closure}}", "orders::api::webhooks::stripe"],
                  ["orders::jobs::replay::run::{{closure}}", "orders::jobs::replay::run"]],
         v2="middleware"),
    dict(label="orders-stock-http", svc="orders", lang="rust", head="unwrap_err",
         msgs=[lambda: unwrap(f'reqwest::Error {{ kind: Status({rng.choice([404, 500, 502, 503])}), '
                              f'url: "http://stock.internal/v1/items/{rng.randint(1, 9999)}" }}'),
               lambda: unwrap('reqwest::Error { kind: Request, url: "http://stock.internal/v1/items/1", '
                              'source: hyper_util::client::legacy::Error(Connect, ConnectError("tcp connect error", '
                              'Os { code: 111, kind: ConnectionRefused, message: "Connection refused" })) }')],
         fault=["orders::stock::reserve", "orders::checkout::Checkout::reserve_all"],
         callers=[["orders::api::checkout::submit::{{closure}}", "orders::api::checkout::submit"],
                  ["orders::api::checkout::express::{{closure}}", "orders::api::checkout::express"]],
         v2="inline"),
    dict(label="orders-line-total-overflow", svc="orders", lang="rust", head="mul_overflow",
         msgs=[fixed("attempt to multiply with overflow")],
         fault=["orders::pricing::line_total", "orders::pricing::Quote::compute"],
         callers=[["orders::api::cart::show::{{closure}}", "orders::api::cart::show"],
                  ["orders::api::checkout::submit::{{closure}}", "orders::api::checkout::submit"],
                  ["orders::jobs::reprice::run::{{closure}}", "orders::jobs::reprice::run"]],
         v2="move-fault"),
    dict(label="orders-customer-none", svc="orders", lang="rust", head="unwrap_none", msgs=[NONE],
         fault=["orders::customers::lookup", "orders::checkout::Checkout::begin"],
         callers=[["orders::api::checkout::submit::{{closure}}", "orders::api::checkout::submit"],
                  ["orders::api::checkout::express::{{closure}}", "orders::api::checkout::express"]],
         v2="middleware"),
    dict(label="orders-address-none", svc="orders", lang="rust", head="unwrap_none", msgs=[NONE],
         fault=["orders::customers::default_address", "orders::checkout::Checkout::begin"],
         callers=[["orders::api::checkout::submit::{{closure}}", "orders::api::checkout::submit"],
                  ["orders::api::checkout::express::{{closure}}", "orders::api::checkout::express"]],
         v2="rename"),
    dict(label="orders-session-store", svc="orders", lang="rust", head="result_expect",
         msgs=[fixed("session store: " + REFUSED), fixed("session store: " + TIMED_OUT)],
         fault=["orders::session::Store::get", "orders::session::load::{{closure}}", "orders::session::load"],
         callers=[["orders::api::cart::show::{{closure}}"], ["orders::api::checkout::submit::{{closure}}"],
                  ["orders::api::account::me::{{closure}}"]],
         v2="inline"),
    # --- catalog (Rust, axum) ---
    dict(label="catalog-price-parse", svc="catalog", lang="rust", head="unwrap_err",
         msgs=[fixed(unwrap("ParseFloatError { kind: Invalid }")), fixed(unwrap("ParseFloatError { kind: Empty }"))],
         fault=["catalog::import::parse_price", "catalog::import::Row::parse"],
         callers=[["catalog::jobs::csv_import::run::{{closure}}", "catalog::jobs::csv_import::run"],
                  ["catalog::api::upload::{{closure}}", "catalog::api::upload"],
                  ["catalog::jobs::sync::tick::{{closure}}", "catalog::jobs::sync::tick"]],
         v2="move"),
    dict(label="catalog-sku-segment-oob", svc="catalog", lang="rust", head="oob", msgs=[oob],
         fault=["catalog::sku::Sku::segment", "catalog::search::facet_for"],
         callers=[["catalog::api::search::{{closure}}", "catalog::api::search"],
                  ["catalog::api::browse::{{closure}}", "catalog::api::browse"]],
         v2="rename"),
    dict(label="catalog-thumbnail-read", svc="catalog", lang="rust", head="unwrap_err",
         msgs=[fixed(unwrap(NOT_FOUND)), fixed(unwrap(DENIED))],
         fault=["catalog::media::load_thumbnail", "catalog::media::Thumb::render"],
         callers=[["catalog::api::product::{{closure}}", "catalog::api::product"],
                  ["catalog::api::gallery::{{closure}}", "catalog::api::gallery"],
                  ["catalog::jobs::reindex::run::{{closure}}", "catalog::jobs::reindex::run"]],
         v2="middleware"),
    dict(label="catalog-slug-char-boundary", svc="catalog", lang="rust", head="str",
         msgs=[lambda: f"byte index {rng.randint(3, 9)} is not a char boundary; it is inside "
                       f"'{rng.choice(['é', 'ü', 'ø'])}' (bytes 2..4) of `{rng.choice(['Crème', 'Müsli', 'Smørrebrød'])} {rng.randint(1, 99)}`"],
         fault=["catalog::slug::truncate", "catalog::views::ProductCard::new"],
         callers=[["catalog::api::browse::{{closure}}", "catalog::api::browse"],
                  ["catalog::api::search::{{closure}}", "catalog::api::search"],
                  ["catalog::jobs::feed::export::{{closure}}", "catalog::jobs::feed::export"]],
         v2="inline"),
    dict(label="catalog-cache-borrow", svc="catalog", lang="rust", head="borrow_mut",
         msgs=[fixed("already borrowed: BorrowMutError")],
         fault=["catalog::cache::Lru::insert", "catalog::cache::Cache::put"],
         callers=[["catalog::api::product::{{closure}}", "catalog::api::product"],
                  ["catalog::api::browse::{{closure}}", "catalog::api::browse"]],
         v2="move"),
    dict(label="catalog-plural-rule", svc="catalog", lang="rust", head="result_expect",
         msgs=[fixed("plural rule: ParseIntError { kind: InvalidDigit }"), fixed("plural rule: ParseIntError { kind: Empty }")],
         fault=["catalog::i18n::parse_plural_rule", "catalog::i18n::Bundle::load"],
         callers=[["catalog::api::product::{{closure}}", "catalog::api::product"],
                  ["catalog::jobs::feed::export::{{closure}}", "catalog::jobs::feed::export"]],
         v2="rename"),
    dict(label="catalog-search-backend", svc="catalog", lang="rust", head="unwrap_err",
         msgs=[fixed(unwrap("Backend(Timeout)")), fixed(unwrap("Backend(Unavailable)")),
               lambda: unwrap(f"Backend(Status({rng.choice([500, 502, 503])}))")],
         fault=["catalog::search::query_backend", "catalog::search::Search::run"],
         callers=[["catalog::api::search::{{closure}}", "catalog::api::search"],
                  ["catalog::api::autocomplete::{{closure}}", "catalog::api::autocomplete"],
                  ["catalog::jobs::suggest::warm::{{closure}}", "catalog::jobs::suggest::warm"]],
         v2="middleware"),
    # --- ledger (Rust, axum + jobs) ---
    dict(label="ledger-balance-underflow", svc="ledger", lang="rust", head="sub_overflow",
         msgs=[fixed("attempt to subtract with overflow")],
         fault=["ledger::accounts::Account::debit", "ledger::transfers::apply"],
         callers=[["ledger::api::transfer::{{closure}}", "ledger::api::transfer"],
                  ["ledger::jobs::settle::batch::{{closure}}", "ledger::jobs::settle::batch"],
                  ["ledger::api::refund::{{closure}}", "ledger::api::refund"]],
         v2="rename"),
    dict(label="ledger-fx-div0", svc="ledger", lang="rust", head="div0",
         msgs=[fixed("attempt to divide by zero")],
         fault=["ledger::fx::convert", "ledger::transfers::apply"],
         callers=[["ledger::api::transfer::{{closure}}", "ledger::api::transfer"],
                  ["ledger::jobs::settle::batch::{{closure}}", "ledger::jobs::settle::batch"]],
         v2="inline"),
    dict(label="ledger-journal-none", svc="ledger", lang="rust", head="unwrap_none", msgs=[NONE],
         fault=["ledger::journal::Journal::last_entry", "ledger::journal::close_day"],
         callers=[["ledger::jobs::close::nightly::{{closure}}", "ledger::jobs::close::nightly"],
                  ["ledger::api::reports::daily::{{closure}}", "ledger::api::reports::daily"]],
         v2="move"),
    dict(label="ledger-export-write", svc="ledger", lang="rust", head="unwrap_err",
         msgs=[fixed(unwrap(BROKEN_PIPE)), fixed(unwrap(RESET))],
         fault=["ledger::export::write_rows", "ledger::export::stream_csv"],
         callers=[["ledger::api::export::{{closure}}", "ledger::api::export"],
                  ["ledger::jobs::dump::nightly::{{closure}}", "ledger::jobs::dump::nightly"]],
         v2="middleware"),
    dict(label="ledger-amount-parse", svc="ledger", lang="rust", head="result_expect",
         msgs=[fixed("amount must be an integer: ParseIntError { kind: InvalidDigit }"),
               fixed("amount must be an integer: ParseIntError { kind: PosOverflow }"),
               fixed("amount must be an integer: ParseIntError { kind: Empty }")],
         fault=["ledger::transfers::parse_amount", "ledger::transfers::Transfer::from_request"],
         callers=[["ledger::api::transfer::{{closure}}", "ledger::api::transfer"],
                  ["ledger::api::refund::{{closure}}", "ledger::api::refund"]],
         v2="rename"),
    # --- payments (Go, chi) ---
    dict(label="payments-fees-nil-map", svc="payments", lang="go", head="nilmap",
         msgs=[fixed("assignment to entry in nil map")],
         fault=["github.com/acme/payments/internal/fees.(*Table).Set", "github.com/acme/payments/internal/fees.Load"],
         callers=[["github.com/acme/payments/api.(*Server).handleCharge"],
                  ["github.com/acme/payments/worker.(*Reconciler).run", "github.com/acme/payments/worker.(*Reconciler).Start.func1"]],
         v2="rename"),
    dict(label="payments-card-nil", svc="payments", lang="go", head="nil", msgs=[NIL],
         fault=["github.com/acme/payments/internal/card.(*Token).Last4", "github.com/acme/payments/internal/receipt.Build"],
         callers=[["github.com/acme/payments/api.(*Server).handleCharge"],
                  ["github.com/acme/payments/api.(*Server).handleReceipt"]],
         v2="middleware"),
    dict(label="payments-charge-gateway", svc="payments", lang="go", head="err",
         msgs=[fixed("charge: gateway: 502 Bad Gateway"), fixed("charge: gateway: 503 Service Unavailable"),
               fixed("charge: gateway: 429 Too Many Requests")],
         fault=["github.com/acme/payments/internal/gateway.(*Client).Charge", "github.com/acme/payments/internal/payments.(*Service).Capture"],
         callers=[["github.com/acme/payments/api.(*Server).handleCharge"],
                  ["github.com/acme/payments/worker.(*Retrier).retry", "github.com/acme/payments/worker.(*Retrier).Start.func1"],
                  ["github.com/acme/payments/api.(*Server).handleSubscription"]],
         v2="inline"),
    dict(label="payments-refund-gateway", svc="payments", lang="go", head="err",
         msgs=[fixed("refund: gateway: 502 Bad Gateway"), fixed("refund: gateway: 404 Not Found")],
         fault=["github.com/acme/payments/internal/gateway.(*Client).Refund", "github.com/acme/payments/internal/payments.(*Service).Refund"],
         callers=[["github.com/acme/payments/api.(*Server).handleRefund"],
                  ["github.com/acme/payments/worker.(*Retrier).retry", "github.com/acme/payments/worker.(*Retrier).Start.func1"]],
         v2="move"),
    dict(label="payments-amount-parse", svc="payments", lang="go", head="err",
         msgs=[lambda: f'strconv.ParseInt: parsing "{rng.choice(["12,50", "ten", "", "1e3"])}": invalid syntax',
               lambda: f'strconv.ParseInt: parsing "{rng.randint(10**19, 10**20)}": value out of range'],
         fault=["github.com/acme/payments/internal/money.ParseCents", "github.com/acme/payments/api.decodeCharge"],
         callers=[["github.com/acme/payments/api.(*Server).handleCharge"],
                  ["github.com/acme/payments/api.(*Server).handleRefund"]],
         v2="rename"),
    dict(label="payments-fee-tier-oob", svc="payments", lang="go", head="oob", msgs=[go_oob],
         fault=["github.com/acme/payments/internal/fees.tierFor", "github.com/acme/payments/internal/fees.(*Table).Fee"],
         callers=[["github.com/acme/payments/internal/payments.(*Service).Capture", "github.com/acme/payments/api.(*Server).handleCharge"],
                  ["github.com/acme/payments/api.(*Server).handleQuote"],
                  ["github.com/acme/payments/worker.(*Reconciler).run", "github.com/acme/payments/worker.(*Reconciler).Start.func1"]],
         v2="inline"),
    # --- notify (Go) ---
    dict(label="notify-templates-open", svc="notify", lang="go", head="err",
         msgs=[fixed("load templates: open /etc/notify/templates/welcome.tmpl: no such file or directory"),
               fixed("load templates: open /etc/notify/templates/receipt.tmpl: permission denied")],
         fault=["github.com/acme/notify/internal/templates.Load", "github.com/acme/notify/internal/mail.(*Mailer).Send"],
         callers=[["github.com/acme/notify/api.handleSend"],
                  ["github.com/acme/notify/worker.(*Digest).flush", "github.com/acme/notify/worker.(*Digest).Run.func1"]],
         v2="middleware"),
    dict(label="notify-config-open", svc="notify", lang="go", head="err",
         msgs=[fixed("read config: open /etc/notify/smtp.yaml: no such file or directory")],
         fault=["github.com/acme/notify/internal/config.Read", "github.com/acme/notify/internal/mail.(*Mailer).dial"],
         callers=[["github.com/acme/notify/internal/mail.(*Mailer).Send", "github.com/acme/notify/api.handleSend"],
                  ["github.com/acme/notify/internal/mail.(*Mailer).Send", "github.com/acme/notify/worker.(*Digest).flush",
                   "github.com/acme/notify/worker.(*Digest).Run.func1"]],
         v2="rename"),
    dict(label="notify-webhook-decode", svc="notify", lang="go", head="err",
         msgs=[lambda: f"decode payload: invalid character '{rng.choice(['<', 'x', '}'])}' looking for beginning of value",
               fixed("decode payload: unexpected end of JSON input"),
               fixed("decode payload: json: cannot unmarshal string into Go struct field Event.attempt of type int")],
         fault=["github.com/acme/notify/internal/webhook.decode", "github.com/acme/notify/internal/webhook.Handle"],
         callers=[["github.com/acme/notify/api.handleWebhook"],
                  ["github.com/acme/notify/worker.(*Replayer).replay", "github.com/acme/notify/worker.(*Replayer).Run.func1"]],
         v2="move"),
    dict(label="notify-sms-truncate-slice", svc="notify", lang="go", head="slice",
         msgs=[lambda: f"runtime error: slice bounds out of range [:{rng.randint(161, 170)}] with length {rng.randint(20, 160)}"],
         fault=["github.com/acme/notify/internal/sms.truncate", "github.com/acme/notify/internal/sms.(*Sender).Send"],
         callers=[["github.com/acme/notify/api.handleSend"],
                  ["github.com/acme/notify/worker.(*Digest).flush", "github.com/acme/notify/worker.(*Digest).Run.func1"]],
         v2="rename"),
    dict(label="notify-contact-nil", svc="notify", lang="go", head="nil", msgs=[NIL],
         fault=["github.com/acme/notify/internal/contacts.(*Contact).Phone", "github.com/acme/notify/internal/sms.(*Sender).Send"],
         callers=[["github.com/acme/notify/api.handleSend"],
                  ["github.com/acme/notify/worker.(*Digest).flush", "github.com/acme/notify/worker.(*Digest).Run.func1"]],
         v2="inline"),
    dict(label="notify-dedupe-race", svc="notify", lang="go", head="cmap", msgs=[fixed("concurrent map writes")],
         fault=["github.com/acme/notify/internal/dedupe.(*Set).Add", "github.com/acme/notify/internal/mail.(*Mailer).Send"],
         callers=[["github.com/acme/notify/api.handleSend"],
                  ["github.com/acme/notify/worker.(*Digest).flush", "github.com/acme/notify/worker.(*Digest).Run.func1"]],
         v2="middleware"),
    # --- fleet (Go) ---
    dict(label="fleet-speed-assert", svc="fleet", lang="go", head="assert",
         msgs=[fixed("interface conversion: interface {} is string, not float64"),
               fixed("interface conversion: interface {} is nil, not float64")],
         fault=["github.com/acme/fleet/internal/telemetry.speedOf", "github.com/acme/fleet/internal/telemetry.Ingest"],
         callers=[["github.com/acme/fleet/api.handleTelemetry"],
                  ["github.com/acme/fleet/worker.(*Backfill).run", "github.com/acme/fleet/worker.(*Backfill).Start.func1"]],
         v2="rename"),
    dict(label="fleet-route-avg-div0", svc="fleet", lang="go", head="div0",
         msgs=[fixed("runtime error: integer divide by zero")],
         fault=["github.com/acme/fleet/internal/routes.avgStop", "github.com/acme/fleet/internal/routes.(*Planner).Plan"],
         callers=[["github.com/acme/fleet/api.handlePlan"],
                  ["github.com/acme/fleet/worker.(*Nightly).replan", "github.com/acme/fleet/worker.(*Nightly).Start.func1"],
                  ["github.com/acme/fleet/api.handlePreview"]],
         v2="move-fault"),
    dict(label="fleet-vehicle-id-atoi", svc="fleet", lang="go", head="err",
         msgs=[lambda: f'strconv.Atoi: parsing "{rng.choice(["", "V-12", "abc"])}": invalid syntax'],
         fault=["github.com/acme/fleet/internal/vehicles.parseID", "github.com/acme/fleet/api.vehicleFrom"],
         callers=[["github.com/acme/fleet/api.handleVehicle"], ["github.com/acme/fleet/api.handleAssign"]],
         v2="middleware"),
]

MIDDLEWARE = {
    "orders": "orders::middleware::request_id::{{closure}}",
    "catalog": "catalog::middleware::locale::{{closure}}",
    "ledger": "ledger::middleware::audit::{{closure}}",
    "payments": "github.com/acme/payments/api.(*Server).withIdempotency.func1",
    "notify": "github.com/acme/notify/api.withTracing.func1",
    "fleet": "github.com/acme/fleet/api.withAuth.func1",
}
OUTER = {"orders": ["orders::main::{{closure}}"], "catalog": ["catalog::serve::{{closure}}"],
         "ledger": ["ledger::main::{{closure}}"], "payments": [], "notify": [], "fleet": []}
RENAMES = {"from_form": "from_request", "from_code": "parse_code", "from_cookie": "restore",
           "handle": "dispatch", "begin": "start", "load": "read", "facet_for": "facets",
           "render": "draw", "new": "build", "apply": "execute", "close_day": "close_period",
           "from_request": "from_body", "Load": "Open", "decodeCharge": "parseCharge",
           "Ingest": "Accept", "Send": "Deliver", "dial": "connect", "vehicleFrom": "lookupVehicle",
           "put": "store", "run": "execute", "stream_csv": "write_csv", "Build": "Compose",
           "Capture": "Settle", "Refund": "Reverse", "Handle": "Process", "Fee": "FeeFor"}


def rename(f):
    """A renamed wrapper: the function's last path segment gets a new name."""
    sep = "::" if "::" in f else "."
    closure = "::{{closure}}" if f.endswith("::{{closure}}") else ""
    base = f[: len(f) - len(closure)]
    head, _, last = base.rpartition(sep)
    return head + sep + RENAMES.get(last, "do_" + last) + closure


def move(f):
    """Moved code: the callers' module (or Go package) changed path."""
    for a, b in [("::api::", "::http::"), ("::jobs::", "::tasks::"), ("/api.", "/internal/httpapi."),
                 ("/worker.", "/internal/workers.")]:
        if a in f:
            return f.replace(a, b)
    return f


def move_fault(f):
    """Moved code: the faulting function's own module changed path."""
    for a, b in [("orders::pricing::", "orders::quote::pricing::"), ("internal/routes.", "internal/planning/routes.")]:
        if a in f:
            return f.replace(a, b)
    return f


def apply_v2(bug, fault, caller, svc):
    kind = bug["v2"]
    if kind == "move":
        return fault + [move(f) for f in caller]
    if kind == "move-fault":
        return [move_fault(f) for f in fault] + caller
    if kind == "rename":
        return fault[:1] + [rename(f) for f in fault[1:]] + caller
    if kind == "middleware":
        return fault + caller + [MIDDLEWARE[svc]]
    if kind == "inline":
        return fault[:1] + fault[2:] + caller
    raise ValueError(kind)


def rust_frames(bug, caller, release, svc):
    app = (apply_v2(bug, bug["fault"], caller, svc) if release == 2 else bug["fault"] + caller) + OUTER[svc]
    frames = [{"function": f + "::h%016x" % rng.getrandbits(64), "in_app": False} for f in RUST_HEAD[bug["head"]]]
    for f in app:
        frames.append({"function": f + "::h%016x" % rng.getrandbits(64), "file": "src/" + f.split("::")[1] + ".rs",
                       "line": rng.randint(10, 400), "in_app": True})
    tail = TOKIO_TASK_TAIL if "jobs::" in caller[-1] else AXUM_TAIL
    return frames + [{"function": f, "in_app": False} for f in tail]


def go_frames(bug, caller, release, svc):
    app = apply_v2(bug, bug["fault"], caller, svc) if release == 2 else bug["fault"] + caller
    frames = [{"function": "runtime.gopanic", "in_app": False}] if bug["head"] == "err" else []
    frames += [{"function": f, "in_app": False} for f in GO_HEAD[bug["head"]]]
    for f in app:
        frames.append({"function": f + "(0x%x, 0x%x)" % (0xc000010000 + rng.getrandbits(16), rng.getrandbits(8)),
                       "file": "/src/" + svc + "/x.go", "line": rng.randint(10, 400), "in_app": True})
    http = "api." in caller[-1] or "httpapi." in caller[-1]
    return frames + [{"function": f, "in_app": False} for f in (GO_HTTP_TAIL if http else GO_WORKER_TAIL)]


def split_of():
    """A third of the bugs held out: per language, every third label in the
    order of its SHA-256 (so neither the author nor the order of BUGS picks)."""
    split = {}
    for lang in ("rust", "go"):
        order = sorted((b["label"] for b in BUGS if b["lang"] == lang),
                       key=lambda label: hashlib.sha256(label.encode()).hexdigest())
        split.update({label: ("heldout" if i % 3 == 0 else "tune") for i, label in enumerate(order)})
    return split


def main():
    split = split_of()
    n = 0
    for bug in BUGS:
        svc = bug["svc"]
        k = 0
        for caller in bug["callers"]:
            for release in (1, 2):
                # One to three captures per stack (rebuilt binaries), each
                # with the next payload variant, so every variant shows up.
                for _ in range(rng.choice([1, 2, 2, 3])):
                    n += 1
                    k += 1
                    maker = rust_frames if bug["lang"] == "rust" else go_frames
                    msgs = bug["msgs"]
                    rec = {
                        "id": f"q{n:04d}",
                        "label": bug["label"],
                        "split": split[bug["label"]],
                        "service": svc,
                        "platform": bug["lang"],
                        "release": f"{svc}@2.{release}.0",
                        "count": int(rng.paretovariate(1.2)),
                        "message": msgs[k % len(msgs)](),
                        "frames": maker(bug, caller, release, svc),
                    }
                    print(json.dumps(rec, ensure_ascii=False))


if __name__ == "__main__":
    main()
