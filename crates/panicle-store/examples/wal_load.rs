//! Peak size of SQLite's write-ahead log under a sustained write load with
//! readers holding transactions, with and without the checkpointer:
//!
//! ```text
//! cargo run --release -p panicle-store --example wal_load -- [--seconds 30] [--no-checkpoint]
//!     [--truncate-mib 64] [--interval-ms 1000]
//! ```

use std::time::Duration;

use panicle_store::testing::TestDb;
use panicle_store::wal_load::{self, WalLoad};
use panicle_store::{Backend, WalPolicy};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1)?.parse::<u64>().ok())
    };
    let checkpoint = !args.iter().any(|a| a == "--no-checkpoint");
    let defaults = WalPolicy::default();
    let policy = WalPolicy {
        interval: flag("--interval-ms").map_or(defaults.interval, Duration::from_millis),
        truncate_above: flag("--truncate-mib").map_or(defaults.truncate_above, |m| m * 1024 * 1024),
        ..defaults
    };
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.store().await;
    let _checkpointer = checkpoint
        .then(|| store.spawn_wal_checkpointer(policy))
        .flatten();
    let load = WalLoad {
        duration: Duration::from_secs(flag("--seconds").unwrap_or(30)),
        bytes: u64::MAX,
        writers: 4,
        batch: 50,
        readers: 2,
        read_hold: Duration::from_millis(200),
    };
    let r = wal_load::run(&store, load).await;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "checkpointer {}: {} events in {:.1} s ({:.0}/s), peak WAL {:.1} MiB, final WAL {:.1} MiB, \
         database {:.1} MiB; batch insert p50 {:?} p99 {:?} max {:?}",
        if checkpoint {
            format!(
                "on (truncate past {} MiB, look every {:?})",
                policy.truncate_above / (1024 * 1024),
                policy.interval
            )
        } else {
            "off".to_string()
        },
        r.events,
        r.elapsed.as_secs_f64(),
        r.events as f64 / r.elapsed.as_secs_f64(),
        mib(r.peak_wal_bytes),
        mib(r.final_wal_bytes),
        mib(r.db_bytes),
        r.batch_p50,
        r.batch_p99,
        r.batch_max,
    );
}
