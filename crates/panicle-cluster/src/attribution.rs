//! Attribution: from a cluster's events to what broke (culprit), through
//! which paths, when and at which depth (heatmap), where (distributions,
//! confinement) and since which release (regression). Pure: the server feeds
//! it rows and formats what comes back.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// Share of a cluster's events a frame must appear in to be the culprit.
pub const CULPRIT_SHARE: f64 = 0.8;

/// One in-app frame of an event, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameFacts {
    /// Normalized function name.
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// What attribution needs of one event.
#[derive(Debug, Clone, Default)]
pub struct EventFacts {
    pub timestamp_ms: i64,
    /// In-app frames, innermost first; with no in-app frame on the stack
    /// (a crash in a library's goroutine), its frames outside the runtime.
    pub frames: Vec<FrameFacts>,
    /// `frames` are the application's (false: the fallback above).
    pub app_frames: bool,
    pub release: Option<String>,
    /// Panics the event stands for (a storm aggregate's count, else 1):
    /// what [`hot_paths`] adds up, so its counts agree with the cluster's.
    pub weight: u64,
}

/// The frame to blame: the innermost in-app frame that at least 80% of the
/// events pass through.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Culprit {
    pub function: String,
    pub file: Option<String>,
    pub line_min: Option<u32>,
    pub line_max: Option<u32>,
    /// Share of the events whose stack holds it.
    pub share: f64,
    /// The culprit is application code. False when most events holding it
    /// had no application frame at all: it is then the first frame outside
    /// the runtime (a library's), and the cluster says so.
    pub in_app: bool,
}

/// The culprit and the call path above it shared by 80% of the events
/// (outward from the culprit, culprit excluded).
pub fn culprit(events: &[EventFacts]) -> Option<(Culprit, Vec<String>)> {
    let total = events.len();
    if total == 0 {
        return None;
    }
    // Per function: in how many events, and its innermost position in each.
    let mut seen: HashMap<&str, (usize, usize)> = HashMap::new();
    for e in events {
        let mut first_pos: HashMap<&str, usize> = HashMap::new();
        for (i, f) in e.frames.iter().enumerate() {
            first_pos.entry(f.function.as_str()).or_insert(i);
        }
        for (f, pos) in first_pos {
            let entry = seen.entry(f).or_insert((0, 0));
            entry.0 += 1;
            entry.1 += pos;
        }
    }
    let threshold = (CULPRIT_SHARE * total as f64).ceil() as usize;
    let mut shared: Vec<(&str, usize, f64)> = seen
        .iter()
        .filter(|(_, (n, _))| *n >= threshold)
        .map(|(f, (n, pos_sum))| (*f, *n, *pos_sum as f64 / *n as f64))
        .collect();
    // Innermost first (mean position), then by name for a stable answer.
    shared.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(b.0)));
    let (function, n, _) = *shared.first()?;
    let mut file_counts: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut line_min, mut line_max): (Option<u32>, Option<u32>) = (None, None);
    for f in events
        .iter()
        .flat_map(|e| &e.frames)
        .filter(|f| f.function == function)
    {
        if let Some(file) = &f.file {
            *file_counts.entry(file.as_str()).or_default() += 1;
        }
        if let Some(l) = f.line {
            line_min = Some(line_min.map_or(l, |m| m.min(l)));
            line_max = Some(line_max.map_or(l, |m| m.max(l)));
        }
    }
    let file = file_counts
        .iter()
        .max_by_key(|(name, c)| (**c, std::cmp::Reverse(*name)))
        .map(|(f, _)| (*f).to_string());
    let holding: Vec<&EventFacts> = events
        .iter()
        .filter(|e| e.frames.iter().any(|f| f.function == function))
        .collect();
    let in_app = holding.iter().filter(|e| e.app_frames).count() * 2 > holding.len();
    let path = shared
        .iter()
        .skip(1)
        .map(|(f, _, _)| (*f).to_string())
        .collect();
    Some((
        Culprit {
            function: function.to_string(),
            file,
            line_min,
            line_max,
            share: n as f64 / total as f64,
            in_app,
        },
        path,
    ))
}

/// A node of the hot-path tree: outermost caller at the root's children,
/// the panic site at the leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathNode {
    pub function: String,
    pub count: u64,
    pub children: Vec<PathNode>,
}

/// Aggregates the events' in-app call paths into a tree with counts, each
/// event counting its weight; the busiest branch comes first at every level.
pub fn hot_paths(events: &[EventFacts]) -> PathNode {
    #[derive(Default)]
    struct Trie {
        count: u64,
        children: BTreeMap<String, Trie>,
    }
    let mut root = Trie::default();
    for e in events {
        root.count += e.weight;
        let mut node = &mut root;
        for f in e.frames.iter().rev() {
            node = node.children.entry(f.function.clone()).or_default();
            node.count += e.weight;
        }
    }
    fn build(function: String, t: Trie) -> PathNode {
        let mut children: Vec<PathNode> =
            t.children.into_iter().map(|(f, c)| build(f, c)).collect();
        children.sort_by(|a, b| b.count.cmp(&a.count).then(a.function.cmp(&b.function)));
        PathNode {
            function,
            count: t.count,
            children,
        }
    }
    build("(all)".into(), root)
}

/// How heatmap columns are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Fixed-width windows of this many milliseconds, aligned to the epoch
    /// (UTC midnight for days).
    Every(i64),
    /// The hour of the day, 0–23 (UTC): daily patterns.
    HourOfDay,
}

/// Most heatmap columns: a wider range gets a coarser bucket, never a
/// column of some odd width still labelled with the one asked for.
pub const MAX_HEATMAP_COLUMNS: i64 = 200;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The widths a heatmap may fall back to, finest first; each divides a day
/// (or is whole days), so columns start at round times.
const LADDER: &[i64] = &[
    MINUTE_MS,
    5 * MINUTE_MS,
    15 * MINUTE_MS,
    30 * MINUTE_MS,
    HOUR_MS,
    3 * HOUR_MS,
    6 * HOUR_MS,
    12 * HOUR_MS,
    DAY_MS,
    7 * DAY_MS,
];

/// Columns of `width` that `since..until` spans (aligned to the width).
pub fn column_count(width: i64, since_ms: i64, until_ms: i64) -> i64 {
    let width = width.max(1);
    let first = since_ms.div_euclid(width);
    let last = (until_ms.max(since_ms + 1) - 1).div_euclid(width);
    last - first + 1
}

/// The bucket a heatmap is drawn at: the one asked for when `since..until`
/// fits in [`MAX_HEATMAP_COLUMNS`] of it, else the finest coarser width of
/// the ladder that fits (whole days past a week). Hour-of-day is 24 columns
/// whatever the range.
pub fn fit_bucket(asked: Bucket, since_ms: i64, until_ms: i64) -> Bucket {
    let Bucket::Every(width) = asked else {
        return asked;
    };
    let width = width.max(1);
    if column_count(width, since_ms, until_ms) <= MAX_HEATMAP_COLUMNS {
        return Bucket::Every(width);
    }
    if let Some(w) = LADDER
        .iter()
        .copied()
        .find(|w| *w > width && column_count(*w, since_ms, until_ms) <= MAX_HEATMAP_COLUMNS)
    {
        return Bucket::Every(w);
    }
    // Longer than 200 weeks: whole days, as few as fit (one more column
    // for the alignment of the first).
    let span = (until_ms - since_ms).max(1);
    let mut days = (span / DAY_MS / (MAX_HEATMAP_COLUMNS - 1)).max(1);
    while column_count(days * DAY_MS, since_ms, until_ms) > MAX_HEATMAP_COLUMNS {
        days += 1;
    }
    Bucket::Every((days * DAY_MS).max(width))
}

/// A bucket's name as the API takes it: `15m`, `1h`, `1d`, `hour_of_day`.
pub fn bucket_name(bucket: Bucket) -> String {
    match bucket {
        Bucket::HourOfDay => "hour_of_day".into(),
        Bucket::Every(w) if w % DAY_MS == 0 => format!("{}d", w / DAY_MS),
        Bucket::Every(w) if w % HOUR_MS == 0 => format!("{}h", w / HOUR_MS),
        Bucket::Every(w) if w % MINUTE_MS == 0 => format!("{}m", w / MINUTE_MS),
        Bucket::Every(w) => format!("{w}ms"),
    }
}

/// Call depth × time counts, dense: the server sends the non-zero cells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heatmap {
    /// Column keys: bucket starts in epoch ms, or hours 0–23.
    pub times: Vec<i64>,
    /// Row keys: call depths present, ascending; `None` (last) holds the
    /// events whose depth was not kept (sampled).
    pub depths: Vec<Option<i64>>,
    /// `cells[row][column]`.
    pub cells: Vec<Vec<u64>>,
    pub max: u64,
    /// Every count of the map: the events of the window.
    pub total: u64,
}

/// The width the points should be pre-aggregated at: the bucket's (after
/// [`fit_bucket`]); an hour for hour-of-day.
pub fn column_width(bucket: Bucket) -> i64 {
    match bucket {
        Bucket::HourOfDay => HOUR_MS,
        Bucket::Every(width) => width.max(1),
    }
}

/// Sums `(depth, timestamp, count)` points per cell. `bucket` is used as
/// given (fit it first with [`fit_bucket`]); fixed buckets span
/// `since..until`, aligned to their width.
pub fn heatmap(
    points: &[(Option<i64>, i64, u64)],
    bucket: Bucket,
    since_ms: i64,
    until_ms: i64,
) -> Heatmap {
    let mut depths: Vec<Option<i64>> = points.iter().map(|p| p.0).collect();
    // Known depths ascending, the unknown one last.
    depths.sort_unstable_by_key(|d| (d.is_none(), *d));
    depths.dedup();
    let width = column_width(bucket);
    let times: Vec<i64> = match bucket {
        Bucket::HourOfDay => (0..24).collect(),
        Bucket::Every(_) => {
            let start = since_ms.div_euclid(width) * width;
            (0..column_count(width, since_ms, until_ms))
                .map(|i| start + i * width)
                .collect()
        }
    };
    let mut cells = vec![vec![0u64; times.len()]; depths.len()];
    for &(depth, ts, count) in points {
        let column = match bucket {
            Bucket::HourOfDay => Some(ts.div_euclid(HOUR_MS).rem_euclid(24) as usize),
            Bucket::Every(_) => {
                let first = times.first().copied().unwrap_or(0);
                (ts >= first)
                    .then(|| ((ts - first) / width) as usize)
                    .filter(|c| *c < times.len())
            }
        };
        let row = depths.iter().position(|d| *d == depth);
        if let (Some(c), Some(r)) = (column, row) {
            cells[r][c] += count;
        }
    }
    let max = cells.iter().flatten().copied().max().unwrap_or(0);
    let total = cells.iter().flatten().sum();
    Heatmap {
        times,
        depths,
        cells,
        max,
        total,
    }
}

/// Value → count, busiest first (ties by name), absent values left out.
pub fn distribution<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> Vec<(String, u64)> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for v in values.into_iter().flatten() {
        *counts.entry(v).or_default() += 1;
    }
    let mut out: Vec<(String, u64)> = counts
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// A cluster seen on one pod (or node) only, while its service runs on
/// several: suspect the environment before the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confinement {
    pub kind: &'static str,
    pub name: String,
}

/// `cluster` holds the cluster's distribution, `population` how many distinct
/// values the same services have overall; needs at least 3 events.
pub fn confinement(
    kind: &'static str,
    cluster: &[(String, u64)],
    population: usize,
) -> Option<Confinement> {
    let total: u64 = cluster.iter().map(|(_, c)| c).sum();
    match cluster {
        [(name, _)] if total >= 3 && population >= 2 => Some(Confinement {
            kind,
            name: name.clone(),
        }),
        _ => None,
    }
}

/// A cluster back in a newer release after a quiet period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Regression {
    /// The release it came back in.
    pub release: String,
    /// The last release it was seen in before the quiet period.
    pub previous_release: Option<String>,
    /// How long it was quiet.
    pub quiet_ms: i64,
    /// When it came back.
    pub at_ms: i64,
}

/// Finds the latest return after at least `quiet_ms` of silence in a
/// release not seen before the silence.
pub fn regression(events: &[EventFacts], quiet_ms: i64) -> Option<Regression> {
    let mut sorted: Vec<&EventFacts> = events.iter().collect();
    sorted.sort_by_key(|e| e.timestamp_ms);
    let mut found = None;
    for i in 1..sorted.len() {
        let (before, after) = (sorted[i - 1], sorted[i]);
        let gap = after.timestamp_ms - before.timestamp_ms;
        let Some(release) = &after.release else {
            continue;
        };
        let seen_before = sorted[..i]
            .iter()
            .any(|e| e.release.as_ref() == Some(release));
        if gap >= quiet_ms && !seen_before {
            found = Some(Regression {
                release: release.clone(),
                previous_release: before.release.clone(),
                quiet_ms: gap,
                at_ms: after.timestamp_ms,
            });
        }
    }
    found
}

/// How a cluster's recent window compares with the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrendChange {
    /// First seen after the previous window began: nothing to compare
    /// with (a "+1,200%" for a cluster minutes old says nothing).
    New,
    /// Seen before the previous window began but not in it: back.
    Returned,
    /// Same-length windows, both with events: `(newer − older) / older`.
    Growth { ratio: f64 },
}

impl TrendChange {
    /// The ratio, when there is one to tell.
    pub fn ratio(&self) -> Option<f64> {
        match self {
            TrendChange::Growth { ratio } => Some(*ratio),
            _ => None,
        }
    }
}

/// Compares the events of `[mid − len, mid)` (`older`) with `[mid, mid + len)`
/// (`newer`), like with like: only for a cluster that existed during the
/// whole previous window (first seen at or before its start).
pub fn trend_change(
    older: u64,
    newer: u64,
    first_seen_ms: i64,
    previous_start_ms: i64,
) -> TrendChange {
    if first_seen_ms > previous_start_ms {
        return TrendChange::New;
    }
    if older == 0 {
        return TrendChange::Returned;
    }
    TrendChange::Growth {
        ratio: (newer as f64 - older as f64) / older as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: i64, frames: &[(&str, u32)], release: Option<&str>) -> EventFacts {
        EventFacts {
            timestamp_ms: ts,
            frames: frames
                .iter()
                .map(|(f, l)| FrameFacts {
                    function: (*f).into(),
                    file: Some(format!("src/{}.rs", f.rsplit("::").next().unwrap_or(f))),
                    line: Some(*l),
                })
                .collect(),
            app_frames: true,
            release: release.map(Into::into),
            weight: 1,
        }
    }

    #[test]
    fn a_culprit_outside_the_app_says_so() {
        let mut lib = ev(1, &[("bytes.(*Buffer).Reset", 98)], None);
        lib.app_frames = false;
        let (c, _) = culprit(&[lib.clone(), lib]).unwrap();
        assert_eq!(c.function, "bytes.(*Buffer).Reset");
        assert!(!c.in_app);
        let (c, _) = culprit(&[ev(1, &[("shop::reserve", 4)], None)]).unwrap();
        assert!(c.in_app);
    }

    #[test]
    fn culprit_is_the_innermost_frame_most_events_share() {
        // 4 of 5 events pass through reserve; the innermost frames differ.
        let events = vec![
            ev(
                1,
                &[
                    ("shop::parse", 10),
                    ("shop::reserve", 40),
                    ("shop::handler", 5),
                ],
                None,
            ),
            ev(
                2,
                &[
                    ("shop::validate", 11),
                    ("shop::reserve", 42),
                    ("shop::handler", 5),
                ],
                None,
            ),
            ev(3, &[("shop::reserve", 44), ("shop::handler", 6)], None),
            ev(4, &[("shop::reserve", 41), ("shop::batch", 9)], None),
            ev(5, &[("shop::other", 1), ("shop::handler", 6)], None),
        ];
        let (c, path) = culprit(&events).unwrap();
        assert_eq!(c.function, "shop::reserve");
        assert_eq!((c.line_min, c.line_max), (Some(40), Some(44)));
        assert_eq!(c.file.as_deref(), Some("src/reserve.rs"));
        assert!((c.share - 0.8).abs() < 1e-9);
        assert_eq!(path, vec!["shop::handler"]);
        assert!(culprit(&[]).is_none());
    }

    #[test]
    fn hot_paths_aggregate_from_the_outermost_caller() {
        let events = vec![
            ev(1, &[("reserve", 1), ("checkout", 1), ("main", 1)], None),
            ev(2, &[("reserve", 1), ("checkout", 1), ("main", 1)], None),
            ev(3, &[("reserve", 1), ("batch", 1), ("main", 1)], None),
        ];
        let tree = hot_paths(&events);
        assert_eq!(tree.count, 3);
        assert_eq!(tree.children.len(), 1);
        let main = &tree.children[0];
        assert_eq!((main.function.as_str(), main.count), ("main", 3));
        assert_eq!(main.children[0].function, "checkout");
        assert_eq!(main.children[0].count, 2);
        assert_eq!(main.children[1].children[0].function, "reserve");
    }

    #[test]
    fn heatmap_counts_depth_by_bucket() {
        let hour = 3_600_000;
        let points = [
            (Some(5), 0, 1),
            (Some(5), 10, 1),
            (Some(7), hour + 1, 1),
            (Some(5), 2 * hour, 1),
            (Some(9), 2 * hour + 5, 1),
            (None, 2 * hour + 7, 4),
        ];
        let h = heatmap(&points, Bucket::Every(hour), 0, 3 * hour);
        assert_eq!(h.times, vec![0, hour, 2 * hour]);
        assert_eq!(
            h.depths,
            vec![Some(5), Some(7), Some(9), None],
            "unknown depth last"
        );
        assert_eq!(
            h.cells,
            vec![vec![2, 0, 1], vec![0, 1, 0], vec![0, 0, 1], vec![0, 0, 4]]
        );
        assert_eq!((h.max, h.total), (4, 9));
        let by_hour = heatmap(&points, Bucket::HourOfDay, 0, 0);
        assert_eq!(by_hour.times.len(), 24);
        assert_eq!(by_hour.cells[0][0], 2);
        assert_eq!(by_hour.cells[0][2], 1);
        // Events outside the window are not counted.
        let h = heatmap(
            &[(Some(1), -5, 1), (Some(1), 10 * hour, 1)],
            Bucket::Every(hour),
            0,
            2 * hour,
        );
        assert_eq!(h.max, 0);
        // Counts add up (pre-aggregated points, storm counts).
        let h = heatmap(
            &[(Some(2), 0, 3), (Some(2), 5, 4)],
            Bucket::Every(hour),
            0,
            hour,
        );
        assert_eq!(h.cells, vec![vec![7]]);
    }

    #[test]
    fn buckets_are_what_they_say_and_columns_are_bounded() {
        let (minute, hour, day) = (60_000, 3_600_000, 86_400_000);
        // 15 minutes over 3 hours: as asked, 12 columns.
        assert_eq!(
            fit_bucket(Bucket::Every(15 * minute), 0, 3 * hour),
            Bucket::Every(15 * minute)
        );
        // 15 minutes over a week (672 columns): the finest ladder width
        // that fits, 1h (168 columns), named as such.
        let b = fit_bucket(Bucket::Every(15 * minute), 0, 7 * day);
        assert_eq!((b, bucket_name(b)), (Bucket::Every(hour), "1h".to_string()));
        // A year by the hour: days, then 3 years: weeks, then decades: whole days.
        assert_eq!(
            fit_bucket(Bucket::Every(hour), 0, 365 * day),
            Bucket::Every(7 * day)
        );
        let long = fit_bucket(Bucket::Every(hour), 0, 20 * 365 * day);
        let Bucket::Every(w) = long else {
            panic!("{long:?}")
        };
        assert_eq!(w % day, 0);
        for (asked, since, until) in [
            (Bucket::Every(minute), 17, 30 * day + 5),
            (
                Bucket::Every(15 * minute),
                1_700_000_123_456,
                1_700_000_123_456 + 7 * day,
            ),
            (Bucket::Every(hour), 0, 20 * 365 * day),
            (Bucket::Every(day), 3, 3 + 199 * day),
        ] {
            let b = fit_bucket(asked, since, until);
            let h = heatmap(
                &[(Some(1), since, 1), (Some(1), until - 1, 1)],
                b,
                since,
                until,
            );
            assert!(
                h.times.len() as i64 <= MAX_HEATMAP_COLUMNS,
                "{asked:?} {since} {until}: {}",
                h.times.len()
            );
            assert_eq!(h.total, 2, "both ends counted: {asked:?}");
            let w = column_width(b);
            assert!(
                h.times.windows(2).all(|p| p[1] - p[0] == w),
                "columns are the bucket apart"
            );
            assert_eq!(h.times[0] % w, 0, "aligned");
        }
        assert_eq!(bucket_name(Bucket::Every(15 * minute)), "15m");
        assert_eq!(bucket_name(Bucket::HourOfDay), "hour_of_day");
    }

    #[test]
    fn distribution_and_confinement() {
        let d = distribution([Some("a"), Some("b"), Some("a"), None]);
        assert_eq!(d, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
        let one = distribution([Some("pod-1"), Some("pod-1"), Some("pod-1")]);
        assert_eq!(confinement("pod", &one, 4).unwrap().name, "pod-1");
        assert!(
            confinement("pod", &one, 1).is_none(),
            "a single-pod service is not suspect"
        );
        assert!(confinement("pod", &d, 4).is_none());
    }

    #[test]
    fn regression_after_quiet_period_in_a_new_release() {
        let day = 86_400_000;
        let events = vec![
            ev(0, &[], Some("a@1")),
            ev(day / 2, &[], Some("a@1")),
            ev(10 * day, &[], Some("a@2")),
            ev(10 * day + 5, &[], Some("a@2")),
        ];
        let r = regression(&events, 7 * day).unwrap();
        assert_eq!(r.release, "a@2");
        assert_eq!(r.previous_release.as_deref(), Some("a@1"));
        assert!(regression(&events, 20 * day).is_none());
        // Back after a quiet period but in a release seen before: not a regression.
        let same = vec![ev(0, &[], Some("a@1")), ev(10 * day, &[], Some("a@1"))];
        assert!(regression(&same, 7 * day).is_none());
    }

    #[test]
    fn trend_compares_like_with_like() {
        // Existed through the previous window: growth of same-length windows.
        assert_eq!(trend_change(2, 4, 0, 100).ratio(), Some(1.0));
        assert_eq!(trend_change(4, 1, 100, 100).ratio(), Some(-0.75));
        // First seen minutes ago (after the previous window began): new.
        assert_eq!(trend_change(0, 13, 150, 100), TrendChange::New);
        assert_eq!(trend_change(1, 13, 101, 100), TrendChange::New);
        // Old, quiet in the previous window, back now.
        assert_eq!(trend_change(0, 3, 5, 100), TrendChange::Returned);
    }

    #[test]
    fn hot_paths_count_weights() {
        let mut storm = ev(1, &[("reserve", 1), ("main", 1)], None);
        storm.weight = 37;
        let tree = hot_paths(&[storm, ev(2, &[("reserve", 1), ("main", 1)], None)]);
        assert_eq!(tree.count, 38);
        assert_eq!(tree.children[0].children[0].count, 38);
    }
}
