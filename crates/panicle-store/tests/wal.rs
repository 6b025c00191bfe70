//! The SQLite write-ahead log stays bounded under a sustained concurrent
//! write load with readers holding transactions (the baseline without the
//! checkpointer is the `wal_load` example: `cargo run --release -p
//! panicle-store --example wal_load -- --no-checkpoint`).

use std::time::Duration;

use panicle_store::wal_load::{self, WalLoad};
use panicle_store::{Backend, WalPolicy};

const MIB: u64 = 1024 * 1024;

panicle_store::backend_tests! {
    async fn the_write_ahead_log_stays_bounded_under_load(db: &TestDb) {
        let store = db.store().await;
        let policy = WalPolicy {
            interval: Duration::from_millis(50),
            truncate_above: MIB,
            busy_timeout: Duration::from_secs(1),
        };
        let checkpointer = store.spawn_wal_checkpointer(policy);
        if db.backend == Backend::Postgres {
            // No log file there, and nothing to run.
            assert!(checkpointer.is_none());
            assert_eq!(store.wal_bytes(), None);
            return;
        }
        assert!(checkpointer.is_some());
        let load = WalLoad {
            duration: Duration::from_secs(60),
            bytes: 96 * MIB,
            writers: 4,
            batch: 20,
            readers: 3,
            read_hold: Duration::from_millis(300),
        };
        let report = wal_load::run(&store, load).await;
        eprintln!("{report:?}");
        // The bound: the 1 MiB threshold plus what the writers add in the
        // 50 ms between two looks and until the gate holds them (in-flight
        // batches finish, a reader's 300 ms snapshot ends). 24 MiB leaves
        // room for a loaded machine. Without the checkpointer this load
        // peaked at 31 MiB in a debug build (and at 533–594 MiB in the
        // release `wal_load` example, where writes are faster).
        let bound = 24 * MIB;
        assert!(report.peak_wal_bytes <= bound, "peak WAL {} > {bound}: {report:?}", report.peak_wal_bytes);
        // The load was heavy enough for the bound to mean something: it
        // wrote several times the bound through the log.
        assert!(report.db_bytes + report.final_wal_bytes >= 3 * bound, "only {} bytes written: {report:?}", report.db_bytes);
        // Writes paused: the log is given back (without the checkpointer it
        // keeps `journal_size_limit`, 16 MiB).
        // Polled: a checkpoint a reader kept busy backs off for a second or more.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while store.wal_bytes() != Some(0) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(store.wal_bytes(), Some(0));
    }
}
