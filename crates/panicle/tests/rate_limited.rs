//! A real server whose project is over its rate limit answers 429 with
//! `Retry-After`. The SDK's sender (panics through the installed hook) and
//! `spool::send_dir` (what `panicle run` and `panicle spool send` ship
//! with) must wait at least that long before the next request and then
//! deliver every event exactly once.
//!
//! The hook is process-global: this file installs it once, in one test.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use panicle_server::{AppState, ServerConfig};
use panicle_store::testing::TestDb;
use panicle_store::{Backend, EventQuery, LimitsUpdate, Store};

/// One ingest request as the server saw it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    arrived: Instant,
    answered: Instant,
    status: u16,
    retry_after: Option<u64>,
}

struct Limited {
    runtime: tokio::runtime::Runtime,
    store: Store,
    state: AppState,
    project_id: i64,
    key: String,
    dsn: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    _db: TestDb,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

const RATE: i64 = 2;
const BURST: i64 = 4;

impl Limited {
    /// A server whose project `shop` may send 2 events/s, 4 at once.
    fn start() -> Limited {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let (db, store, state, project, addr, tx) = runtime.block_on(async move {
            let db = TestDb::new(Backend::Sqlite).await;
            let store = db.store().await;
            let project = store.create_project("shop").await.unwrap();
            store
                .update_project_limits(
                    "shop",
                    &LimitsUpdate {
                        rate: Some(Some(RATE)),
                        burst: Some(Some(BURST)),
                        ..LimitsUpdate::default()
                    },
                )
                .await
                .unwrap();
            let state = AppState::new(store.clone(), ServerConfig::default()).unwrap();
            let app = panicle_server::router(state.clone()).layer(axum::middleware::from_fn(
                move |req: Request, next: Next| {
                    let log = log.clone();
                    async move {
                        let ingest = req.uri().path() == "/api/v1/events";
                        let arrived = Instant::now();
                        let resp = next.run(req).await;
                        if ingest {
                            let retry_after = resp
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse().ok());
                            log.lock().unwrap().push(Seen {
                                arrived,
                                answered: Instant::now(),
                                status: resp.status().as_u16(),
                                retry_after,
                            });
                        }
                        resp
                    }
                },
            ));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr: SocketAddr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
            });
            (db, store, state, project, addr, tx)
        });
        Limited {
            dsn: format!("http://{}@{addr}/{}", project.ingest_key, project.id),
            key: project.ingest_key,
            project_id: project.id,
            runtime,
            store,
            state,
            seen,
            _db: db,
            _shutdown: tx,
        }
    }

    /// Uses up the bucket with a direct post of BURST events, then forgets
    /// that request.
    fn drain_bucket(&self) {
        let url = self.dsn_base() + "/api/v1/events";
        let events: Vec<serde_json::Value> = (0..BURST)
            .map(|i| {
                serde_json::json!({
                    "event_id": uuid::Uuid::new_v4().to_string(),
                    "timestamp": "2026-12-02T10:00:00Z",
                    "message": format!("drain {i}"),
                })
            })
            .collect();
        let resp = ureq::post(&url)
            .header("X-Panicle-Key", &self.key)
            .header("Content-Type", "application/json")
            .send(&serde_json::to_vec(&events).unwrap()[..])
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        self.seen.lock().unwrap().clear();
    }

    fn dsn_base(&self) -> String {
        let (scheme, rest) = self.dsn.split_once("://").unwrap();
        let host = rest.split_once('@').unwrap().1.rsplit_once('/').unwrap().0;
        format!("{scheme}://{host}")
    }

    /// Messages of the stored events, with how many rows each has.
    fn messages(&self) -> Vec<String> {
        self.runtime.block_on(async {
            self.store
                .list_events(&EventQuery {
                    project_id: Some(self.project_id),
                    limit: 1000,
                    ..EventQuery::default()
                })
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|e| e.message)
                .filter(|m| !m.starts_with("drain "))
                .collect()
        })
    }

    /// Every 429 was followed by a wait of at least its Retry-After (from
    /// the moment the server answered to the next request's arrival); the
    /// last request was accepted. Returns how many 429s there were.
    fn check_waits(&self) -> usize {
        let seen = self.seen.lock().unwrap().clone();
        assert!(!seen.is_empty());
        let mut refused = 0;
        for pair in seen.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.status == 429 {
                refused += 1;
                let ra = Duration::from_secs(a.retry_after.expect("a 429 carries Retry-After"));
                let waited = b.arrived.duration_since(a.answered);
                assert!(
                    waited >= ra,
                    "retried after {waited:?}, Retry-After was {ra:?}: {seen:?}"
                );
            }
        }
        assert_eq!(seen.last().unwrap().status, 202, "{seen:?}");
        let accepted = seen.iter().filter(|s| s.status == 202).count();
        assert!(accepted >= 1);
        refused
    }
}

#[test]
fn sdk_sender_waits_out_retry_after_and_delivers_each_event_once() {
    let server = Limited::start();
    server.drain_bucket();
    let spool = tempfile::tempdir().unwrap();
    let mut options = panicle::Options::default().with_dsn(server.dsn.parse().unwrap());
    options.delivery.spool_dir = Some(spool.path().to_path_buf());
    options.delivery.storm_threshold_per_sec = 0;
    let _guard = panicle::init(options);

    let expected: BTreeSet<String> = (0..12).map(|i| format!("limited panic {i}")).collect();
    for message in &expected {
        let m = message.clone();
        let r = std::panic::catch_unwind(move || panic!("{m}"));
        assert!(r.is_err());
    }
    assert!(
        panicle::flush(Duration::from_secs(60)),
        "delivered within 60 s"
    );

    let refused = server.check_waits();
    assert!(
        refused >= 1,
        "the drained bucket refused the SDK at least once"
    );
    let stored = server.messages();
    assert_eq!(stored.len(), 12, "{stored:?}");
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), expected);
    assert_eq!(
        server.state.metrics.events_duplicate.get(),
        0,
        "nothing was sent again after a 202"
    );
    assert_eq!(
        panicle::spool::waiting_events(spool.path()),
        0,
        "the spool is empty"
    );
}

#[test]
fn spool_send_dir_waits_out_retry_after_and_delivers_each_event_once() {
    let server = Limited::start();
    let spool_dir = tempfile::tempdir().unwrap();
    let spool = panicle::spool::Spool::open(spool_dir.path(), false, 1 << 24, 1000).unwrap();
    let mut expected = BTreeSet::new();
    for i in 0..10 {
        let message = format!("spooled crash {i}");
        let event = panicle::protocol::Event::new(
            uuid::Uuid::new_v4().to_string(),
            "2026-12-02T10:00:00Z".into(),
            message.clone(),
        );
        spool
            .write(&event.event_id, &serde_json::to_vec(&event).unwrap())
            .unwrap();
        expected.insert(message);
    }
    server.drain_bucket();
    let dsn: panicle::protocol::Dsn = server.dsn.parse().unwrap();
    let report = panicle::batch::send_dir(spool_dir.path(), &dsn, Duration::from_secs(60)).unwrap();
    assert_eq!((report.sent, report.rejected, report.remaining), (10, 0, 0));
    assert!(server.check_waits() >= 1);
    let stored = server.messages();
    assert_eq!(stored.len(), 10);
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), expected);
    assert_eq!(server.state.metrics.events_duplicate.get(), 0);
}
