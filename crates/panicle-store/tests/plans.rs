//! The list queries of events and groups use an index, on both backends
//! (issue 21): a full scan of `events` grows with traffic, and a list page
//! must not. The SQL checked is the store's own: each list runs once through
//! the public API while a `tracing` subscriber records the statements sqlx
//! logs (target `sqlx::query`), and that statement is then explained with
//! the same values bound — `EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on
//! PostgreSQL with `enable_seqscan = off`, so on a small test table the plan
//! shows whether an index *can* serve the query (a query no index fits still
//! gets a sequential scan, at a penalty).

use std::sync::{Mutex, Once};

use panicle_store::testing::TestDb;
use panicle_store::{Backend, Cursor, EventQuery, GroupQuery, NewEvent, Store};
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor, Row};
use tracing::field::{Field, Visit};

/// The statements sqlx logged since the last `take`.
static STATEMENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records the SQL of every `sqlx::query` event, whatever thread runs it
/// (SQLite's connections run on worker threads of their own).
struct Capture;

struct Statement {
    summary: String,
    full: String,
}

impl Visit for Statement {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_string(),
            "db.statement" => self.full = value.trim().to_string(),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "sqlx::query"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut s = Statement {
            summary: String::new(),
            full: String::new(),
        };
        event.record(&mut s);
        // Short statements are logged whole as the summary.
        let sql = if s.full.is_empty() { s.summary } else { s.full };
        statements().push(sql);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// One test at a time records statements: the capture is process-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing::subscriber::set_global_default(Capture).expect("the only subscriber");
    });
}

fn statements() -> std::sync::MutexGuard<'static, Vec<String>> {
    STATEMENTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The one statement logged since `clear` that starts with `prefix`.
fn take(prefix: &str) -> String {
    let mut all = statements();
    let found: Vec<String> = all
        .iter()
        .filter(|s| s.starts_with(prefix))
        .cloned()
        .collect();
    all.clear();
    assert_eq!(found.len(), 1, "one statement {prefix}…: {found:#?}");
    found.into_iter().next().unwrap()
}

enum Value {
    Int(i64),
    Text(String),
}

/// The plan lines of `sql` with `values` bound in order.
async fn plan(db: &TestDb, sql: &str, values: &[Value]) -> Vec<String> {
    let mut conn = AnyConnection::connect(&db.url).await.unwrap();
    let explain = match db.backend {
        Backend::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
        Backend::Postgres => {
            conn.execute("SET enable_seqscan = off").await.unwrap();
            format!("EXPLAIN {sql}")
        }
    };
    let mut q = sqlx::query(AssertSqlSafe(explain));
    for v in values {
        q = match v {
            Value::Int(i) => q.bind(*i),
            Value::Text(t) => q.bind(t.clone()),
        };
    }
    let rows = q
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN failed: {e}\n{sql}"));
    let _ = conn.close().await;
    rows.iter()
        .map(|r| match db.backend {
            Backend::Sqlite => r.try_get::<String, _>("detail").unwrap(),
            Backend::Postgres => r.try_get::<String, _>(0).unwrap(),
        })
        .collect()
}

/// The plan steps that read every row of `table` (under any alias): a
/// full scan, or a walk of a whole index with no key condition (the order
/// of `events_ts` with a filter beside it reads as much when few rows match).
fn full_scans(backend: Backend, lines: &[String], table: &str, aliases: &[&str]) -> Vec<String> {
    match backend {
        // `SCAN x` and `SCAN x USING INDEX i` read all of x; `SEARCH x USING
        // INDEX i (col=?)` seeks.
        Backend::Sqlite => lines
            .iter()
            .filter(|l| {
                l.trim()
                    .strip_prefix("SCAN ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .is_some_and(|name| name == table || aliases.contains(&name))
            })
            .cloned()
            .collect(),
        // `Seq Scan on t`, or `Index Scan using i on t` with no `Index Cond`
        // among its own detail lines (those before the next `->` node).
        Backend::Postgres => {
            let on_table = |l: &str| {
                let after = l.split(&format!(" on {table}")).nth(1);
                after.is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
            };
            let mut out = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                let node = line.trim().trim_start_matches("->").trim();
                if !on_table(node) {
                    continue;
                }
                let seeks = lines[i + 1..]
                    .iter()
                    .take_while(|l| !l.trim().starts_with("->"))
                    .any(|l| l.trim().starts_with("Index Cond:"));
                if node.starts_with("Seq Scan")
                    || ((node.starts_with("Index Scan") || node.starts_with("Index Only Scan"))
                        && !seeks)
                {
                    out.push(line.clone());
                }
            }
            out
        }
    }
}

fn assert_indexed(db: &TestDb, what: &str, lines: &[String], tables: &[(&str, &[&str])]) {
    for (table, aliases) in tables {
        let scans = full_scans(db.backend, lines, table, aliases);
        assert!(
            scans.is_empty(),
            "{what} reads all of `{table}` on {:?}: {scans:?}\nplan:\n{}",
            db.backend,
            lines.join("\n")
        );
    }
}

fn event(i: usize, group: usize, service: &str) -> NewEvent {
    NewEvent {
        event_id: format!("00000000-0000-4000-8000-{i:012}"),
        timestamp_ms: 1_760_000_000_000 + i as i64 * 60_000,
        platform: "rust".into(),
        kind: "panic".into(),
        message: format!("bug {group}"),
        service: Some(service.into()),
        environment: Some("production".into()),
        release: Some(format!("{service}@1.{}", i % 3)),
        trace_id: None,
        pod: Some(format!("pod-{}", i % 4)),
        node: None,
        route: Some("/orders/{id}".into()),
        depth: 5,
        weight: 1,
        payload: "{}".into(),
        fingerprint: format!("fp{group}"),
        template: format!("bug {group}"),
        culprit: Some(format!("shop::handler{group}")),
        signature: vec![format!("shop::handler{group}")],
        storm: None,
        missing_debug_files: Vec::new(),
    }
}

async fn seeded(db: &TestDb) -> (Store, i64, String) {
    let store = db.store().await;
    let project = store.create_project("plans").await.unwrap();
    let events: Vec<NewEvent> = (0..400)
        .map(|i| event(i, i % 20, ["checkout", "orders"][i % 2]))
        .collect();
    store.insert_events(project.id, &events).await.unwrap();
    let group = store
        .list_events(&EventQuery {
            project_id: Some(project.id),
            limit: 1,
            ..EventQuery::default()
        })
        .await
        .unwrap()
        .items[0]
        .group_id
        .clone();
    (store, project.id, group)
}

const EVENTS: (&str, &[&str]) = ("events", &["e"]);
const GROUPS: (&str, &[&str]) = ("event_groups", &["g"]);

panicle_store::backend_tests! {
    async fn event_lists_use_an_index(db: &TestDb) {
        let _serial = SERIAL.lock().await;
        install();
        let (store, project, group) = seeded(db).await;
        let cursor = Cursor {
            ts: 1_760_000_000_000 + 200 * 60_000,
            id: "00000000-0000-4000-8000-000000000200".into(),
        };
        // (what, query, values bound in the store's order)
        let cases: Vec<(&str, EventQuery, Vec<Value>)> = vec![
            (
                "the event list (the read API's: sampled events included)",
                EventQuery { project_id: Some(project), limit: 50, include_sampled: true, ..EventQuery::default() },
                vec![Value::Int(project)],
            ),
            (
                "the event list of stored events",
                EventQuery { project_id: Some(project), limit: 50, ..EventQuery::default() },
                vec![Value::Int(project)],
            ),
            (
                "the event list by service",
                EventQuery { project_id: Some(project), service: Some("orders".into()), limit: 50, include_sampled: true, ..EventQuery::default() },
                vec![Value::Int(project), Value::Text("orders".into())],
            ),
            (
                "the event list of one group",
                EventQuery { project_id: Some(project), group_ids: Some(vec![group.clone()]), limit: 50, include_sampled: true, ..EventQuery::default() },
                vec![Value::Int(project), Value::Text(group.clone())],
            ),
            (
                "the event list's next page",
                EventQuery { project_id: Some(project), cursor: Some(cursor.clone()), limit: 50, include_sampled: true, ..EventQuery::default() },
                vec![Value::Int(project), Value::Int(cursor.ts), Value::Int(cursor.ts), Value::Text(cursor.id.clone())],
            ),
        ];
        for (what, query, values) in cases {
            statements().clear();
            let page = store.list_events(&query).await.unwrap();
            assert!(!page.items.is_empty(), "{what}: the seeded events are listed");
            let sql = take("SELECT event_id, project_id");
            let lines = plan(db, &sql, &values).await;
            eprintln!("{what} on {:?}:\n  {}", db.backend, lines.join("\n  "));
            assert_indexed(db, what, &lines, &[EVENTS, ("sampled_events", &["s"])]);
        }
        // The check sees a full scan when there is one: no index has `message`.
        let lines = plan(
            db,
            "SELECT event_id FROM events e WHERE e.message = $1 ORDER BY e.ts DESC LIMIT 10",
            &[Value::Text("bug 3".into())],
        )
        .await;
        assert!(
            !full_scans(db.backend, &lines, "events", &["e"]).is_empty(),
            "a filter on an unindexed column is a full scan: {lines:?}"
        );
    }

    async fn group_lists_use_an_index(db: &TestDb) {
        let _serial = SERIAL.lock().await;
        install();
        let (store, project, _) = seeded(db).await;
        let cases: Vec<(&str, GroupQuery, Vec<Value>)> = vec![
            (
                "the group list",
                GroupQuery { project_id: Some(project), limit: 50, ..GroupQuery::default() },
                vec![Value::Int(project)],
            ),
            (
                "the group list since a time",
                GroupQuery { project_id: Some(project), since_ms: Some(1_760_000_000_000), limit: 50, ..GroupQuery::default() },
                vec![Value::Int(project), Value::Int(1_760_000_000_000)],
            ),
        ];
        for (what, query, values) in cases {
            statements().clear();
            let page = store.list_groups(&query).await.unwrap();
            assert!(!page.items.is_empty(), "{what}: the seeded groups are listed");
            let sql = take("SELECT id, project_id");
            let lines = plan(db, &sql, &values).await;
            eprintln!("{what} on {:?}:\n  {}", db.backend, lines.join("\n  "));
            assert_indexed(db, what, &lines, &[GROUPS, EVENTS]);
        }
    }
}
