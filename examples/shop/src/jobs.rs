//! Background jobs started by a request: a `tokio::spawn`ed task (carrying
//! the request's span), `spawn_blocking` work and a `std::thread`.

use tracing::Instrument;

pub async fn run_task() -> String {
    let span = tracing::info_span!("reindex_task");
    let joined = tokio::spawn(reindex_async(3).instrument(span)).await;
    format!("task panicked: {}", joined.is_err())
}

async fn reindex_async(shards: u32) -> u32 {
    tokio::task::yield_now().await;
    let healthy: Result<u32, String> = std::hint::black_box(Err("shard 2 is gone".into()));
    healthy.expect("reindex needs every shard") + shards
}

pub async fn run_blocking() -> String {
    let span = tracing::Span::current();
    let joined = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        compact(7)
    })
    .await;
    format!("blocking panicked: {}", joined.is_err())
}

fn compact(segments: u32) -> u32 {
    let budget: u32 = std::hint::black_box(0);
    segments / budget
}

pub async fn run_thread() -> String {
    let panicked = reindex(5).join().is_err();
    format!("thread panicked: {panicked}")
}

fn reindex(batch: usize) -> std::thread::JoinHandle<()> {
    let spawned = std::thread::Builder::new()
        .name("reindex".into())
        .spawn(move || {
            let ids: Vec<u64> = std::hint::black_box(Vec::new());
            let first = ids.first().copied();
            let _ = first.map(|id| id + batch as u64);
            panic!("reindex batch {batch} is empty");
        });
    match spawned {
        Ok(handle) => handle,
        Err(e) => std::thread::spawn(move || panic!("cannot start the reindex thread: {e}")),
    }
}
