//! A real Panicle server (SQLite) on 127.0.0.1:0, on a runtime of its own so
//! the tests' services and the SDK's blocking sends never starve it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use panicle::protocol::Event;
use panicle_server::{AppState, ServerConfig};
use panicle_store::testing::TestDb;
use panicle_store::{Backend, Cursor, EventQuery, Store};

pub struct TestServer {
    pub dsn: String,
    /// The server's listen address (`http://127.0.0.1:PORT`).
    pub url: String,
    project_id: i64,
    pub store: Store,
    pub state: AppState,
    runtime: tokio::runtime::Runtime,
    spool: tempfile::TempDir,
    _db: TestDb,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(ServerConfig::default())
    }

    pub fn start_with(config: ServerConfig) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (db, store, project, addr, tx, state) = runtime.block_on(async {
            let db = TestDb::new(Backend::Sqlite).await;
            let store = db.store().await;
            let project = store.create_project("sdk-test").await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr: SocketAddr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let state = AppState::new(store.clone(), config).unwrap();
            tokio::spawn(panicle_server::serve(listener, state.clone(), async move {
                let _ = rx.await;
            }));
            (db, store, project, addr, tx, state)
        });
        TestServer {
            dsn: format!("http://{}@{}/{}", project.ingest_key, addr, project.id),
            url: format!("http://{addr}"),
            project_id: project.id,
            store,
            state,
            runtime,
            spool: tempfile::tempdir().unwrap(),
            _db: db,
            _shutdown: tx,
        }
    }

    /// SDK options for this server: its DSN, a spool of this test's own, and
    /// no storm control (tests panic the same way more than once on purpose).
    pub fn options(&self) -> panicle::Options {
        let mut options = panicle::Options::default().with_dsn(self.dsn.parse().unwrap());
        options.delivery.spool_dir = Some(self.spool.path().to_path_buf());
        options.delivery.storm_threshold_per_sec = 0;
        options
    }

    /// Runs a future on the server's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The group an event is stored in.
    pub fn group_of(&self, event_id: &str) -> String {
        self.runtime.block_on(async {
            self.store
                .get_event(event_id, Some(self.project_id))
                .await
                .unwrap()
                .unwrap()
                .summary
                .group_id
        })
    }

    /// Every stored event, parsed from its stored payload (all pages).
    pub fn events(&self) -> Vec<Event> {
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let mut cursor = None;
            loop {
                let page = self
                    .store
                    .list_events(&EventQuery {
                        project_id: Some(self.project_id),
                        limit: 1000,
                        cursor,
                        ..EventQuery::default()
                    })
                    .await
                    .unwrap();
                for summary in page.items {
                    let row = self
                        .store
                        .get_event(&summary.event_id, Some(self.project_id))
                        .await
                        .unwrap()
                        .unwrap();
                    out.push(serde_json::from_str(&row.payload).unwrap());
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(Cursor::decode(&next).unwrap()),
                    None => return out,
                }
            }
        })
    }

    /// Waits (bounded) until `n` events are stored.
    pub fn wait_for_events(&self, n: usize) -> Vec<Event> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let events = self.events();
            if events.len() >= n || Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
