//! Server-side symbolication (issue 18): frames that arrive as bare
//! addresses (a stripped binary; an SDK set to leave symbolization to the
//! server) get their names from an uploaded debug file, with the SDK's own
//! rules (`panicle_debuginfo`), so they read and group as if the process had
//! named them. Events whose debug file is not there yet are marked
//! (`pending_symbols`) and moved to their named group once it is uploaded.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use panicle_debuginfo::DebugFile;
use panicle_protocol::Event;
use panicle_protocol::decode::Decoded;
use panicle_store::Resymbolized;

use crate::AppState;

/// Bytes of debug files kept open at once (their sizes on disk): a few
/// services' full DWARF. Past it the least recently used is closed.
pub const CACHE_BUDGET_BYTES: u64 = 1 << 30;

/// Events symbolized again per transaction when a debug file arrives.
const RESYMBOLIZE_BATCH: i64 = 200;

/// Opens and caches debug files from the store's directory, by build-id.
pub struct Symbolicator {
    dir: PathBuf,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    open: HashMap<String, Opened>,
    bytes: u64,
    clock: u64,
}

struct Opened {
    file: Arc<DebugFile>,
    size: u64,
    used: u64,
}

impl Symbolicator {
    pub fn new(dir: PathBuf) -> Symbolicator {
        Symbolicator {
            dir,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Where the debug file of `build_id` is stored (the store's layout);
    /// `None` for a build-id that is not plain hex (it names no file).
    pub fn path_of(dir: &Path, build_id: &str) -> Option<PathBuf> {
        panicle_store::debug_file_path(dir, build_id).ok()
    }

    /// Forgets an open debug file (replaced or removed).
    pub fn forget(&self, build_id: &str) {
        if let Ok(mut cache) = self.cache.lock()
            && let Some(old) = cache.open.remove(build_id)
        {
            cache.bytes = cache.bytes.saturating_sub(old.size);
        }
    }

    /// The debug file of `build_id`, opened once and kept within the budget.
    /// Blocking (reads the symbol table): call off the async threads.
    fn debug_file(&self, build_id: &str) -> Option<Arc<DebugFile>> {
        let path = Self::path_of(&self.dir, build_id)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.clock += 1;
            let now = cache.clock;
            if let Some(o) = cache.open.get_mut(build_id) {
                o.used = now;
                return Some(o.file.clone());
            }
        }
        let size = std::fs::metadata(&path).ok()?.len();
        let file = match DebugFile::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                tracing::warn!(build_id, error = %e, "a stored debug file cannot be read");
                return None;
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            while cache.bytes + size > CACHE_BUDGET_BYTES && !cache.open.is_empty() {
                let oldest = cache
                    .open
                    .iter()
                    .min_by_key(|(_, o)| o.used)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest
                    && let Some(o) = cache.open.remove(&k)
                {
                    cache.bytes = cache.bytes.saturating_sub(o.size);
                }
            }
            let used = cache.clock;
            cache.bytes += size;
            cache.open.insert(
                build_id.to_string(),
                Opened {
                    file: file.clone(),
                    size,
                    used,
                },
            );
        }
        Some(file)
    }

    /// Names the event's bare frames where a debug file is stored. Returns
    /// the build-ids of bare frames still unnamed for want of a debug file.
    /// Blocking.
    pub fn symbolicate(&self, event: &mut Event) -> Symbolicated {
        let wanted = bare_build_ids(event);
        if wanted.is_empty() {
            return Symbolicated::default();
        }
        let mut found: HashMap<String, Option<Arc<DebugFile>>> = HashMap::new();
        for id in &wanted {
            found.insert(id.clone(), self.debug_file(id));
        }
        let mut lookup = |id: &str| found.get(id).cloned().flatten();
        let named = match panicle_debuginfo::symbolicate(&event.frames, &mut lookup) {
            Some(frames) => {
                event.frames = frames;
                true
            }
            None => false,
        };
        let mut missing: Vec<String> = bare_build_ids(event)
            .into_iter()
            .filter(|id| found.get(id).is_none_or(Option::is_none))
            .collect();
        missing.sort();
        Symbolicated { named, missing }
    }
}

/// What [`Symbolicator::symbolicate`] did to an event.
#[derive(Debug, Default)]
pub struct Symbolicated {
    /// Some frame got its name.
    pub named: bool,
    /// Build-ids of bare frames with no debug file stored yet.
    pub missing: Vec<String>,
}

/// Build-ids of the frames that are bare addresses (no function).
pub fn bare_build_ids(event: &Event) -> Vec<String> {
    let mut ids: HashSet<String> = HashSet::new();
    for f in &event.frames {
        if f.function.is_none()
            && f.module_offset.is_some()
            && let Some(id) = &f.build_id
        {
            ids.insert(id.to_ascii_lowercase());
        }
    }
    ids.into_iter().collect()
}

/// Symbolizes decoded events before they are stored, off the async threads
/// when any has bare frames. Returns, per event, the build-ids still missing.
pub(crate) async fn symbolicate_decoded(
    state: &AppState,
    events: Vec<Decoded>,
) -> Result<(Vec<Decoded>, Vec<Vec<String>>), crate::ApiError> {
    if events.iter().all(|d| bare_build_ids(&d.event).is_empty()) {
        let none = vec![Vec::new(); events.len()];
        return Ok((events, none));
    }
    let symbolicator = state.symbolicator.clone();
    let (events, done) = tokio::task::spawn_blocking(move || {
        let mut events = events;
        let done: Vec<Symbolicated> = events
            .iter_mut()
            .map(|d| {
                // A debug file that makes the DWARF reader panic leaves the
                // event as it came (frames are replaced only when done).
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    symbolicator.symbolicate(&mut d.event)
                }))
                .unwrap_or_default()
            })
            .collect();
        (events, done)
    })
    .await
    // Only a runtime shutting down cancels it: the client resends.
    .map_err(|e| crate::ApiError::Job(format!("symbolication interrupted: {e}")))?;
    let named = done.iter().filter(|d| d.named).count() as u64;
    state.metrics.symbolicated("ingest", named);
    Ok((events, done.into_iter().map(|d| d.missing).collect()))
}

/// Starts symbolizing again, in bounded batches, every stored event that
/// waited for `build_id`'s debug file, moving each to the group its names
/// give; then reclusters.
pub(crate) fn resymbolize_in_background(state: &AppState, build_id: String) {
    let state = state.clone();
    state.symbolicator.forget(&build_id);
    tokio::spawn(async move {
        match resymbolize(&state, &build_id).await {
            Ok(n) => recluster_after(&state, n).await,
            Err(e) => tracing::warn!(build_id, error = %e, "symbolizing stored events failed"),
        }
    });
}

/// Every `interval` (and at once), symbolizes the stored events that wait
/// for a debug file that is now in the directory: one uploaded through
/// another replica or by `panicle debug-files upload --database-url`, or a
/// run cut short by a restart.
pub fn spawn_sweep(state: &AppState, interval: std::time::Duration) {
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = sweep(&state).await {
                tracing::warn!(error = %e, "symbolizing waiting events failed");
            }
            tokio::time::sleep(interval).await;
        }
    });
}

/// One pass of [`spawn_sweep`]: events rewritten.
pub async fn sweep(state: &AppState) -> Result<u64, panicle_store::StoreError> {
    let mut total = 0;
    for build_id in state.store.pending_build_ids(1000).await? {
        let stored = Symbolicator::path_of(&state.config.debug_files_dir, &build_id)
            .is_some_and(|p| p.is_file());
        if stored {
            total += resymbolize(state, &build_id).await?;
        }
    }
    recluster_after(state, total).await;
    Ok(total)
}

/// Events moved to new groups: the clusters follow.
async fn recluster_after(state: &AppState, rewritten: u64) {
    if rewritten == 0 {
        return;
    }
    tracing::info!(events = rewritten, "waiting events symbolized");
    if let Err(e) = state.job.run().await {
        tracing::warn!(error = %e, "reclustering after symbolization failed");
    }
}

/// The work of [`resymbolize_in_background`]: the number of events
/// rewritten.
pub async fn resymbolize(
    state: &AppState,
    build_id: &str,
) -> Result<u64, panicle_store::StoreError> {
    let mut total = 0;
    loop {
        let pending = state
            .store
            .events_missing_debug_file(build_id, RESYMBOLIZE_BATCH)
            .await?;
        if pending.is_empty() {
            return Ok(total);
        }
        let symbolicator = state.symbolicator.clone();
        let config = state.config.clone();
        let id = build_id.to_string();
        let batch = tokio::task::spawn_blocking(move || {
            // No usable debug file (yet): the marks stay for the next upload.
            symbolicator.debug_file(&id)?;
            let rewritten = pending
                .into_iter()
                .filter_map(|p| {
                    let mut event: Event = serde_json::from_str(&p.payload).ok()?;
                    // An event the file names nothing in is rewritten as it
                    // is: its mark is cleared all the same, so the next
                    // batch moves on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        symbolicator.symbolicate(&mut event)
                    }));
                    let mut new = crate::ingest::to_new_event(
                        Decoded {
                            event,
                            timestamp_ms: p.timestamp_ms,
                        },
                        p.timestamp_ms,
                        config.max_event_age_ms(None),
                    );
                    new.event_id = p.event_id;
                    Some(Resymbolized {
                        project_id: p.project_id,
                        event: new,
                    })
                })
                .collect::<Vec<_>>();
            Some(rewritten)
        })
        .await
        .ok()
        .flatten();
        let Some(done) = batch.filter(|d| !d.is_empty()) else {
            // No debug file, or not one readable payload in a whole batch
            // (they were written by this server: not expected): stop here.
            return Ok(total);
        };
        let report = state.store.regroup_events(build_id, &done).await?;
        state.metrics.symbolicated("later", report.events);
        total += report.events;
    }
}
