//! The hook against the sender's lock, in-process (one test: the hook is
//! process-global). Deadlock shows up as a panicking thread that never
//! finishes; the 60 s bounds below only turn a hang into a failure.

use std::sync::mpsc;
use std::time::Duration;

use panicle::__delivery_test_support as support;
use panicle_server::{AppState, ServerConfig};
use panicle_store::testing::TestDb;
use panicle_store::{Backend, EventQuery};

const HANG: Duration = Duration::from_secs(60);

fn spooled(dir: &std::path::Path) -> usize {
    panicle::spool::waiting_events(dir)
}

#[test]
fn hook_neither_waits_for_nor_deadlocks_on_the_sender_lock() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_db, store, project, port, _shutdown) = rt.block_on(async {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = db.store().await;
        let project = store.create_project("shop").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(panicle_server::serve(
            listener,
            AppState::new(store.clone(), ServerConfig::default()).unwrap(),
            async move {
                let _ = rx.await;
            },
        ));
        (db, store, project, port, tx)
    });
    let spool = tempfile::tempdir().unwrap();
    let dsn = format!(
        "http://{}@127.0.0.1:{port}/{}",
        project.ingest_key, project.id
    );
    let _guard = panicle::init(
        panicle::Options::default()
            .with_dsn(dsn.parse().unwrap())
            .with_spool_dir(spool.path()),
    );

    // 1. The sender holds its lock (as when stuck in a slow send) while
    //    another thread panics: the hook spools and returns all the same.
    let held = support::hold_sender_lock().expect("delivery is running");
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(|| panic!("panic while the sender lock is held"));
        let _ = done_tx.send(r.is_err());
    });
    assert_eq!(
        done_rx.recv_timeout(HANG),
        Ok(true),
        "the hook blocked on the sender lock"
    );
    assert_eq!(
        spooled(spool.path()),
        1,
        "spooled while the sender was stuck"
    );
    drop(held);

    // 2. The sender thread itself panics while holding its lock: the hook runs
    //    on that very thread, must not relock, and the sender must recover.
    assert!(support::panic_in_sender());
    let deadline = std::time::Instant::now() + HANG;
    while panicle::delivery_stats().spooled < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sender's own panic was never spooled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        panicle::flush(HANG),
        "the sender recovered and delivered everything"
    );

    let messages: Vec<String> = rt.block_on(async {
        let page = store
            .list_events(&EventQuery {
                project_id: Some(project.id),
                limit: 100,
                ..EventQuery::default()
            })
            .await
            .unwrap();
        page.items.into_iter().map(|e| e.message).collect()
    });
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m == "panic while the sender lock is held")
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("the sender panicked while holding its lock"))
    );
    assert_eq!(spooled(spool.path()), 0);
    let stats = panicle::delivery_stats();
    assert_eq!((stats.spooled, stats.sent, stats.sent_from_hook), (2, 2, 0));
}
