//! The proof of issue 13 with a real axum service: the shop binary runs as
//! separate processes ("pods") against a real Panicle server, panics in
//! nested async fns and blocks, a `tokio::spawn`ed task, `spawn_blocking`
//! and a `std::thread`, and the test reads what was stored through the HTTP
//! API: frame names with their paths, in-app flags, trace and request links,
//! the cluster title; built as a workspace member and as an app outside
//! this workspace (release, line tables only). Then 48 requests over 4 pods
//! and 2 releases: every event id a 500 body handed out resolves, and the
//! cluster lists all 48 traces whatever storm control folded.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::{Answer, PanicleServer, Pod};

/// Crates whose frames are never the app's, however they are depended on.
const DEPENDENCIES: &[&str] = &[
    "panicle",
    "tower",
    "tower_http",
    "tower_layer",
    "tower_service",
    "axum",
    "axum_core",
    "hyper",
    "hyper_util",
    "http",
    "http_body",
    "tokio",
    "futures",
    "futures_util",
    "futures_core",
    "tracing",
    "tracing_core",
    "tracing_subscriber",
    "tracing_opentelemetry",
    "opentelemetry",
    "opentelemetry_sdk",
    "std",
    "core",
    "alloc",
];

/// Every mismatch found, reported together: one run shows all of what is
/// still wrong, with the actual values.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    /// Adds the event's stack once when checks since `since` failed.
    fn add_stack(&mut self, since: usize, what: &str, event: &Value) {
        if self.0.len() > since {
            self.0.push(format!(
                "{what}: its stack, innermost first:\n{}",
                describe(event)
            ));
        }
    }

    fn finish(self, context: &str) {
        assert!(
            self.0.is_empty(),
            "{context}: {} failed check(s):\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

fn frames(event: &Value) -> Vec<Value> {
    event["frames"].as_array().cloned().unwrap_or_default()
}

fn function(frame: &Value) -> &str {
    frame["function"].as_str().unwrap_or("")
}

/// The top of a stack as text, for failure messages.
fn describe(event: &Value) -> String {
    frames(event)
        .iter()
        .take(14)
        .enumerate()
        .map(|(i, f)| {
            format!(
                "    #{i} {} | raw {} | {}:{} | in_app {} | package {}",
                function(f),
                f["raw_function"].as_str().unwrap_or("-"),
                f["file"].as_str().unwrap_or("?"),
                f["line"],
                f["in_app"],
                f["package"].as_str().unwrap_or("-"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `frames[index]` is `name`, in `file` (a path suffix) and in-app.
fn expect_frame(f: &mut Failures, what: &str, event: &Value, index: usize, name: &str, file: &str) {
    let all = frames(event);
    let Some(frame) = all.get(index) else {
        f.0.push(format!("{what}: no frames[{index}] (want `{name}`)"));
        return;
    };
    let actual_file = frame["file"].as_str().unwrap_or("");
    f.check(
        function(frame) == name && actual_file.ends_with(file) && frame["in_app"] == true,
        || {
            format!(
                "{what}: frames[{index}] is `{}` in {actual_file:?} (in_app {}), want `{name}` in …{file}, in-app",
                function(frame),
                frame["in_app"],
            )
        },
    );
}

/// The crate a function name starts with, after an optional `<` of a
/// `<T as Trait>` qualifier.
fn leading_crate(name: &str) -> &str {
    let name = name.strip_prefix('<').unwrap_or(name);
    name.split("::").next().unwrap_or(name)
}

/// A display name has no generic arguments: at most the leading `<T as
/// Trait>` qualifier opens a `<`.
fn has_generic_arguments(name: &str) -> bool {
    match name.strip_prefix('<') {
        Some(rest) => match rest.find('>') {
            Some(end) => rest[..end].contains('<') || rest[end..].contains('<'),
            None => true,
        },
        None => name.contains('<'),
    }
}

/// Source files under `dir`, as paths relative to it (`symbolize/mod.rs`).
fn sources(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(relative) = path.strip_prefix(root) {
                out.insert(relative.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// Whether a frame's file is one of panicle's sources: under
/// `crates/panicle/src/`, or given relative (`src/layer.rs`, as a path
/// dependency's files may be) and no file of the shop's.
fn is_panicle_source(file: &str) -> bool {
    static PANICLE: std::sync::OnceLock<(BTreeSet<String>, BTreeSet<String>)> =
        std::sync::OnceLock::new();
    let (panicle, shop) = PANICLE.get_or_init(|| {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        (
            sources(&here.join("../../crates/panicle/src")),
            sources(&here.join("src")),
        )
    });
    assert!(!panicle.is_empty(), "panicle's sources not found");
    if file.contains("crates/panicle/src/") {
        return true;
    }
    file.strip_prefix("src/")
        .is_some_and(|f| panicle.contains(f) && !shop.contains(f))
}

/// What must hold for every frame of every event; one line per rule
/// broken, with how many frames broke it and the first few.
fn check_every_frame(f: &mut Failures, what: &str, event: &Value) {
    let mut broken: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (i, frame) in frames(event).iter().enumerate() {
        let name = function(frame);
        let in_app = frame["in_app"] == true;
        let krate = leading_crate(name);
        let file = frame["file"].as_str().unwrap_or("");
        let mut rule = |rule: &'static str, ok: bool, detail: String| {
            if !ok {
                broken
                    .entry(rule)
                    .or_default()
                    .push(format!("frames[{i}] {detail}"));
            }
        };
        rule(
            "a dependency's frame is in-app",
            !(in_app && (DEPENDENCIES.contains(&krate) || is_panicle_source(file))),
            format!("`{name}`"),
        );
        rule(
            "an in-app frame is not named `shop::…`",
            !in_app || name.starts_with("shop::"),
            format!("`{name}`"),
        );
        rule(
            "a frame of panicle's source is not named `panicle::…`",
            !is_panicle_source(file) || krate == "panicle",
            format!("`{name}` ({file})"),
        );
        rule(
            "a name lost its crate (`layer::…`)",
            krate != "layer",
            format!("`{name}`"),
        );
        rule(
            "a name keeps generic arguments",
            !has_generic_arguments(name),
            format!("`{name}`"),
        );
        if let Some(raw) = frame["raw_function"].as_str() {
            rule(
                "raw_function is not the longer full name",
                raw.len() > name.len(),
                format!("`{raw}` for `{name}`"),
            );
        }
    }
    for (rule, frames) in broken {
        let shown: Vec<&String> = frames.iter().take(4).collect();
        f.0.push(format!(
            "{what}: {rule}: {} frame(s), e.g. {shown:?}",
            frames.len()
        ));
    }
}

fn has_trace(event: &Value) -> bool {
    event["trace"]["trace_id"]
        .as_str()
        .is_some_and(|t| !t.is_empty() && t.chars().any(|c| c != '0'))
}

/// Stored events as received (`event` of `GET /api/v1/events/{id}`).
fn stored_events(server: &PanicleServer, summaries: &[Value]) -> Vec<(Value, Value)> {
    summaries
        .iter()
        .map(|s| {
            let id = s["event_id"].as_str().expect("event id");
            let view = server.event(id);
            assert_eq!(view.status, 200, "GET /api/v1/events/{id}: {}", view.text);
            (s.clone(), view.json()["event"].clone())
        })
        .collect()
}

fn expect_status(answer: &Answer, status: u16, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.text);
}

/// Runs one pod of `bin`, panics it the five ways, and checks what the
/// server stored and the cluster title of the thread's panic. The first
/// request comes as soon as the pod listens, without waiting for the SDK's
/// warm-up: a panic right after a deploy must be named like any other.
/// `nested_async_named`: whether an async fn awaited by another is named
/// (it is unless both were inlined and its constructor dissolved).
fn check_stacks(bin: &Path, build: &str, nested_async_named: bool) {
    let server = PanicleServer::start();
    let pod = Pod::start(bin, &server.dsn, "shop-a", "shop@1.0.0");
    let orders = pod.get("/orders/7", "orders-request-7");
    expect_status(&orders, 500, "/orders/7");
    let orders_body = orders.json();
    expect_status(
        &pod.get("/checkout/3", "checkout-request-3"),
        500,
        "/checkout/3",
    );
    for (path, said) in [
        ("/jobs/task", "task panicked: true"),
        ("/jobs/blocking", "blocking panicked: true"),
        ("/jobs/thread", "thread panicked: true"),
    ] {
        let answer = pod.get(path, &format!("{path}-request"));
        expect_status(&answer, 200, path);
        assert_eq!(answer.text, said, "{path}");
    }
    pod.stop();

    let summaries = server.wait_for_panics(5);
    let stored = stored_events(&server, &summaries);
    let mut f = Failures::default();
    let find = |f: &mut Failures, what: &str, message: &str| -> Option<(Value, Value)> {
        let found: Vec<&(Value, Value)> = stored
            .iter()
            .filter(|(_, e)| e["message"].as_str().unwrap_or("").contains(message))
            .collect();
        match found.as_slice() {
            [one] => Some((*one).clone()),
            _ => {
                let messages: Vec<&Value> = stored.iter().map(|(_, e)| &e["message"]).collect();
                f.0.push(format!(
                    "{what}: {} stored events with a message containing {message:?}, want 1; stored: {messages:?}",
                    found.len()
                ));
                None
            }
        }
    };

    if let Some((summary, event)) = find(
        &mut f,
        "/orders",
        "called `Option::unwrap()` on a `None` value",
    ) {
        let what = "/orders";
        let before = f.0.len();
        expect_frame(
            &mut f,
            what,
            &event,
            0,
            if nested_async_named {
                "shop::order::load::{async block}"
            } else {
                "shop::order::{async block}"
            },
            "src/order.rs",
        );
        expect_frame(
            &mut f,
            what,
            &event,
            1,
            if nested_async_named {
                "shop::order::load::{async fn}"
            } else {
                "shop::order::{async fn}"
            },
            "src/order.rs",
        );
        expect_frame(
            &mut f,
            what,
            &event,
            2,
            "shop::order::show::{async fn}",
            "src/order.rs",
        );
        f.check(has_trace(&event), || {
            format!("{what}: no trace: {}", event["trace"])
        });
        f.check(event["request"]["route"] == "/orders/{id}", || {
            format!("{what}: request.route {}", event["request"]["route"])
        });
        f.check(event["request"]["request_id"] == "orders-request-7", || {
            format!(
                "{what}: request.request_id {}",
                event["request"]["request_id"]
            )
        });
        f.check(
            orders_body["error"]["event_id"] == summary["event_id"],
            || {
                format!(
                    "{what}: the 500 body's event id {} is not the stored event {}",
                    orders_body["error"]["event_id"], summary["event_id"]
                )
            },
        );
        check_every_frame(&mut f, what, &event);
        f.add_stack(before, what, &event);
    }
    if let Some((_, event)) = find(&mut f, "/checkout", "index out of bounds") {
        let what = "/checkout";
        let before = f.0.len();
        expect_frame(
            &mut f,
            what,
            &event,
            0,
            if nested_async_named {
                "shop::checkout::price_of::{async fn}"
            } else {
                "shop::checkout::{async fn}"
            },
            "src/checkout.rs",
        );
        expect_frame(
            &mut f,
            what,
            &event,
            1,
            "shop::checkout::total::{async fn}",
            "src/checkout.rs",
        );
        check_every_frame(&mut f, what, &event);
        f.add_stack(before, what, &event);
    }
    if let Some((_, event)) = find(&mut f, "/jobs/task", "reindex needs every shard") {
        let what = "/jobs/task (tokio::spawn)";
        let before = f.0.len();
        expect_frame(
            &mut f,
            what,
            &event,
            0,
            "shop::jobs::reindex_async::{async fn}",
            "src/jobs.rs",
        );
        f.check(has_trace(&event), || {
            format!("{what}: no trace: {}", event["trace"])
        });
        check_every_frame(&mut f, what, &event);
        f.add_stack(before, what, &event);
    }
    if let Some((_, event)) = find(&mut f, "/jobs/blocking", "divide by zero") {
        let what = "/jobs/blocking (spawn_blocking)";
        let before = f.0.len();
        expect_frame(
            &mut f,
            what,
            &event,
            0,
            "shop::jobs::compact",
            "src/jobs.rs",
        );
        expect_frame(
            &mut f,
            what,
            &event,
            1,
            "shop::jobs::run_blocking::{closure}",
            "src/jobs.rs",
        );
        f.check(has_trace(&event), || {
            format!("{what}: no trace: {}", event["trace"])
        });
        check_every_frame(&mut f, what, &event);
        f.add_stack(before, what, &event);
    }
    if let Some((summary, event)) = find(&mut f, "/jobs/thread", "reindex batch 5 is empty") {
        let what = "/jobs/thread (std::thread)";
        let before = f.0.len();
        expect_frame(
            &mut f,
            what,
            &event,
            0,
            "shop::jobs::reindex::{closure}",
            "src/jobs.rs",
        );
        check_every_frame(&mut f, what, &event);
        f.add_stack(before, what, &event);
        let group = summary["group_id"].clone();
        let clusters = server.clusters();
        let holding: Vec<&Value> = clusters
            .iter()
            .filter(|c| {
                c["groups"]
                    .as_array()
                    .is_some_and(|g| g.iter().any(|g| g["id"] == group))
            })
            .collect();
        match holding.as_slice() {
            [cluster] => {
                // The title a reader sees: a rule's, else the derived
                // suggestion's "Panic in `…`", which names the culprit.
                let title = cluster["suggestion"]["title"].as_str().unwrap_or("");
                f.check(title.contains("`shop::jobs::reindex::{closure}`"), || {
                    format!(
                        "{what}: the cluster's title {title:?} does not name `shop::jobs::reindex::{{closure}}` (title field {}, culprit {})",
                        cluster["title"], cluster["culprit"]
                    )
                });
            }
            _ => f.0.push(format!(
                "{what}: {} clusters hold group {group}, want 1",
                holding.len()
            )),
        }
    }
    f.finish(build);
}

#[test]
fn stacks_and_in_app_as_a_workspace_member() {
    check_stacks(&support::workspace_shop(), "workspace member (debug)", true);
}

#[test]
fn stacks_and_in_app_with_panicle_as_a_path_dependency_outside_the_workspace() {
    let bin = support::standalone_shop();
    // `load` and `price_of` are awaited by another async fn of theirs and
    // inlined into it; their constructors dissolve into the caller's state
    // machine, so no symbol and no DWARF entry names them (line-tables-only
    // DWARF has a bare `{async_fn#0}`, see `llvm-dwarfdump --debug-info`):
    // they are shown with their crate and module, never another function's
    // name. A handler (named by axum's generics), a task (tokio's) and a
    // blocking closure keep their full names.
    check_stacks(&bin, "standalone app (release, line-tables-only)", false);
}

/// 4 pods × 12 requests, the pods concurrent: shop-a and shop-b take theirs
/// back to back (a burst storm control may fold), shop-c and shop-d 200 ms
/// apart (a pace a healthy service sees). Whatever storm control folds,
/// every id handed out resolves and every request's trace is listed.
#[test]
fn forty_eight_requests_over_four_pods_keep_every_trace_and_event_id() {
    const PER_POD: usize = 12;
    let server = PanicleServer::start();
    let bin = support::workspace_shop();
    let burst = Duration::ZERO;
    let paced = Duration::from_millis(200);
    let pods: Vec<(Pod, Duration)> = [
        ("shop-a", "shop@1.0.0", burst),
        ("shop-b", "shop@1.0.0", burst),
        ("shop-c", "shop@1.1.0", paced),
        ("shop-d", "shop@1.1.0", paced),
    ]
    .iter()
    .map(|(name, release, pause)| (Pod::start(&bin, &server.dsn, name, release), *pause))
    .collect();

    // (request id, event id from the 500 body) per request.
    let handed_out: Vec<(String, String)> = std::thread::scope(|s| {
        let workers: Vec<_> = pods
            .iter()
            .map(|(pod, pause)| {
                s.spawn(move || {
                    (0..PER_POD)
                        .map(|n| {
                            if n > 0 {
                                std::thread::sleep(*pause);
                            }
                            let request_id = format!("{}-req-{n:02}", pod.name);
                            let answer = pod.get(&format!("/orders/{}", 100 + n), &request_id);
                            expect_status(&answer, 500, &request_id);
                            let body = answer.json();
                            assert_eq!(body["error"]["request_id"], request_id.as_str(), "{body}");
                            let event_id = body["error"]["event_id"]
                                .as_str()
                                .unwrap_or_else(|| {
                                    panic!("{request_id}: no error.event_id in {body}")
                                })
                                .to_string();
                            (request_id, event_id)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("requests"))
            .collect()
    });
    for (pod, _) in pods {
        pod.stop();
    }
    let sent: BTreeSet<&str> = handed_out.iter().map(|(r, _)| r.as_str()).collect();
    let ids: HashSet<&str> = handed_out.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(
        (sent.len(), ids.len()),
        (48, 48),
        "48 distinct request and event ids"
    );

    let summaries = server.wait_for_panics(48);
    let stored: i64 = summaries
        .iter()
        .map(|e| e["count"].as_i64().unwrap_or(1))
        .sum();
    let mut f = Failures::default();
    f.check(stored == 48, || {
        format!(
            "stored events stand for {stored} panics, want 48 ({} events)",
            summaries.len()
        )
    });

    // Every id handed out resolves: to its event, or to the aggregate that
    // folded it, whose samples keep this request.
    let mut unresolved: Vec<String> = Vec::new();
    let mut folded = 0;
    for (request_id, event_id) in &handed_out {
        let answer = server.event(event_id);
        if answer.status != 200 {
            unresolved.push(format!(
                "{request_id} {event_id} → {} {}",
                answer.status, answer.text
            ));
            continue;
        }
        let view = answer.json();
        if view.get("folded").is_some_and(|v| !v.is_null()) {
            folded += 1;
            let sample = view["storm"]["samples"].as_array().and_then(|s| {
                s.iter()
                    .find(|s| s["event_id"] == event_id.as_str())
                    .cloned()
            });
            f.check(
                sample.as_ref().is_some_and(|s| {
                    s["request_id"] == request_id.as_str() && s["trace_id"].is_string()
                }),
                || {
                    format!(
                        "{request_id}: folded into {} without its sample: {sample:?}",
                        view["folded"]["into"]
                    )
                },
            );
        } else {
            let event = &view["event"];
            f.check(
                view["event_id"] == event_id.as_str()
                    && event["request"]["request_id"] == request_id.as_str()
                    && has_trace(event),
                || {
                    format!(
                        "{request_id}: {event_id} resolved to {} (request {}, trace {})",
                        view["event_id"], event["request"]["request_id"], event["trace"]
                    )
                },
            );
        }
    }

    eprintln!("{folded} of 48 event ids resolved to a storm aggregate that folded them");
    f.check(unresolved.is_empty(), || {
        format!(
            "{} of 48 event ids from 500 bodies do not resolve, e.g. {:?}",
            unresolved.len(),
            unresolved.iter().take(3).collect::<Vec<_>>()
        )
    });

    // One cluster holds them; its traces are the 48 requests'.
    let groups: BTreeSet<String> = summaries
        .iter()
        .filter_map(|s| s["group_id"].as_str().map(str::to_string))
        .collect();
    let clusters = server.clusters();
    let holding: Vec<&Value> = clusters
        .iter()
        .filter(|c| {
            c["groups"].as_array().is_some_and(|g| {
                g.iter()
                    .any(|g| g["id"].as_str().is_some_and(|id| groups.contains(id)))
            })
        })
        .collect();
    match holding.as_slice() {
        [cluster] => {
            let traces = cluster["traces"].as_array().cloned().unwrap_or_default();
            let trace_ids: HashSet<&str> = traces
                .iter()
                .filter_map(|t| t["trace_id"].as_str())
                .collect();
            f.check(
                trace_ids.len() == 48 && cluster["trace_count"] == 48,
                || {
                    format!(
                        "the cluster lists {} distinct traces (trace_count {}), want 48; storms {}",
                        trace_ids.len(),
                        cluster["trace_count"],
                        cluster["storms"]
                    )
                },
            );
            let listed: BTreeSet<&str> = traces
                .iter()
                .filter_map(|t| t["request_id"].as_str())
                .collect();
            f.check(listed == sent, || {
                let missing: Vec<&&str> = sent.difference(&listed).collect();
                format!(
                    "the cluster's traces miss {} request ids, e.g. {:?}; listed: {listed:?}",
                    missing.len(),
                    missing.iter().take(5).collect::<Vec<_>>()
                )
            });
            let names = |key: &str| -> BTreeMap<String, i64> {
                cluster["where"][key]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .map(|i| {
                                (
                                    i["name"].as_str().unwrap_or("").to_string(),
                                    i["count"].as_i64().unwrap_or(0),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let pods = names("pods");
            f.check(
                pods.keys()
                    .map(String::as_str)
                    .eq(["shop-a", "shop-b", "shop-c", "shop-d"]),
                || format!("the cluster's pods {pods:?}, want shop-a..shop-d"),
            );
            let releases = names("releases");
            f.check(
                releases
                    .keys()
                    .map(String::as_str)
                    .eq(["shop@1.0.0", "shop@1.1.0"]),
                || format!("the cluster's releases {releases:?}, want shop@1.0.0 and shop@1.1.0"),
            );
        }
        _ => f.0.push(format!(
            "{} clusters hold the 48 requests' groups {groups:?}, want 1",
            holding.len()
        )),
    }
    f.finish("48 requests over 4 pods");
}
