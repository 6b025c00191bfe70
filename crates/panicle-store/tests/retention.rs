//! Quotas, the per-group cap and retention, on SQLite and on PostgreSQL.
//!
//! The invariant every test ends on (see the store's retention module): per
//! group, `event_count = Σ weight of its events + Σ weight of its sampled
//! events`, and a group with neither is gone.

use panicle_store::{
    EventQuery, GroupQuery, InsertLimits, LimitsUpdate, NewEvent, QuotaPeriod, Store, StoreError,
    UsagePeriods,
};

const DAY: i64 = 86_400_000;

fn new_event(fingerprint: &str, ts: i64, weight: i64) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        timestamp_ms: ts,
        platform: "rust".into(),
        kind: "panic".into(),
        message: format!("boom in {fingerprint}"),
        service: Some("checkout".into()),
        environment: Some("prod".into()),
        release: Some("checkout@1.0.0".into()),
        trace_id: None,
        pod: None,
        node: None,
        route: None,
        depth: 3,
        weight,
        payload: "{\"x\":1}".into(),
        fingerprint: fingerprint.into(),
        template: format!("boom in {fingerprint}"),
        culprit: Some("shop::orders::reserve".into()),
        signature: vec!["shop::orders::reserve".into(), fingerprint.into()],
        storm: None,
        missing_debug_files: Vec::new(),
    }
}

async fn group_counts(store: &Store, project_id: i64) -> Vec<(String, i64)> {
    let page = store
        .list_groups(&GroupQuery {
            project_id: Some(project_id),
            limit: 1000,
            ..GroupQuery::default()
        })
        .await
        .unwrap();
    let mut out: Vec<(String, i64)> = page
        .items
        .into_iter()
        .map(|g| (g.template, g.count))
        .collect();
    out.sort();
    out
}

async fn stored(store: &Store, project_id: i64) -> usize {
    store
        .list_events(&EventQuery {
            project_id: Some(project_id),
            limit: 1000,
            ..EventQuery::default()
        })
        .await
        .unwrap()
        .items
        .len()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

panicle_store::backend_tests! {
    async fn a_batch_over_the_quota_is_refused_whole_and_counters_persist(db: &TestDb) {
        let store = db.store().await;
        let p = store.create_project("shop").await.unwrap();
        let limits = InsertLimits { daily_quota: 10, monthly_quota: 0, group_cap: 0 };
        let now = now_ms();
        let batch: Vec<NewEvent> = (0..6).map(|i| new_event("a", now - i, 1)).collect();
        let out = store.insert_events_with(p.id, &batch, &limits).await.unwrap();
        assert_eq!(out.inserted, 6);
        // Resends count nothing: the same six again fit.
        let out = store.insert_events_with(p.id, &batch, &limits).await.unwrap();
        assert_eq!(out.inserted, 0);

        let five: Vec<NewEvent> = (0..5).map(|i| new_event("b", now - i, 1)).collect();
        match store.insert_events_with(p.id, &five, &limits).await {
            Err(StoreError::QuotaExceeded { period: QuotaPeriod::Daily, limit: 10, used: 6 }) => {}
            other => panic!("expected the daily quota, got {other:?}"),
        }
        assert_eq!(stored(&store, p.id).await, 6, "nothing of the refused batch is stored");
        assert_eq!(group_counts(&store, p.id).await.len(), 1, "no group for the refused batch");

        let four = &five[..4];
        assert_eq!(store.insert_events_with(p.id, four, &limits).await.unwrap().inserted, 4);
        // A new connection (a restarted server) sees the same usage.
        let again = db.store().await;
        let periods = UsagePeriods::at(now_ms());
        assert_eq!(again.usage(p.id, &periods).await.unwrap(), (10, 10));
        let one = [new_event("c", now, 1)];
        assert!(matches!(
            again.insert_events_with(p.id, &one, &limits).await,
            Err(StoreError::QuotaExceeded { used: 10, .. })
        ));
        let monthly = InsertLimits { daily_quota: 0, monthly_quota: 11, group_cap: 0 };
        assert_eq!(again.insert_events_with(p.id, &one, &monthly).await.unwrap().inserted, 1);
        assert!(matches!(
            again.insert_events_with(p.id, &[new_event("c", now, 1)], &monthly).await,
            Err(StoreError::QuotaExceeded { period: QuotaPeriod::Monthly, limit: 11, used: 11 })
        ));
    }

    async fn limits_are_stored_per_project(db: &TestDb) {
        let store = db.store().await;
        let p = store.create_project("shop").await.unwrap();
        store.create_project("quiet").await.unwrap();
        let set = store
            .update_project_limits("shop", &LimitsUpdate {
                rate: Some(Some(50)),
                daily_quota: Some(Some(0)),
                retention_days: Some(Some(7)),
                ..LimitsUpdate::default()
            })
            .await
            .unwrap();
        assert_eq!((set.rate, set.burst, set.daily_quota, set.retention_days), (Some(50), None, Some(0), Some(7)));
        let back = store
            .update_project_limits("shop", &LimitsUpdate { rate: Some(None), ..LimitsUpdate::default() })
            .await
            .unwrap();
        assert_eq!((back.rate, back.retention_days), (None, Some(7)), "only the named field changes");
        let all = store.project_limits().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all.iter().find(|(id, _)| *id == p.id).unwrap().1, back);
        assert!(matches!(
            store.update_project_limits("nope", &LimitsUpdate::default()).await,
            Err(StoreError::NoSuchProject(_))
        ));
    }

    async fn the_cap_samples_while_counts_stay_exact(db: &TestDb) {
        let store = db.store().await;
        let p = store.create_project("shop").await.unwrap();
        let limits = InsertLimits { group_cap: 20, ..InsertLimits::default() };
        let now = now_ms();
        let mut sent: Vec<NewEvent> = Vec::new();
        let mut sampled = 0;
        for round in 0..10 {
            // Weights 1 and 3 alternate: the count must add weights, not rows.
            let batch: Vec<NewEvent> = (0..10)
                .map(|i| new_event("hot", now - round * 100 - i, 1 + 2 * (i % 2)))
                .collect();
            let out = store.insert_events_with(p.id, &batch, &limits).await.unwrap();
            assert_eq!(out.inserted, 10);
            sampled += out.sampled;
            sent.extend(batch);
        }
        let total: i64 = sent.iter().map(|e| e.weight).sum();
        assert_eq!(group_counts(&store, p.id).await, vec![("boom in hot".to_string(), total)]);
        let kept = stored(&store, p.id).await;
        assert_eq!(kept + sampled, 100);
        assert!((20..60).contains(&kept) && sampled > 0, "the cap keeps 20, then thins out: {kept} kept");
        // Resending everything (sampled ones included) changes nothing.
        for chunk in sent.chunks(25) {
            let out = store.insert_events_with(p.id, chunk, &limits).await.unwrap();
            assert_eq!(out.inserted, 0);
        }
        assert_eq!(group_counts(&store, p.id).await, vec![("boom in hot".to_string(), total)]);
        assert_eq!(stored(&store, p.id).await, kept);
        // Another group is not capped by this one.
        let cold: Vec<NewEvent> = (0..5).map(|i| new_event("cold", now - i, 1)).collect();
        assert_eq!(store.insert_events_with(p.id, &cold, &limits).await.unwrap().sampled, 0);
        assert!(store.count_mismatches(p.id).await.unwrap().is_empty());
    }

    async fn retention_deletes_old_events_and_keeps_counts_true(db: &TestDb) {
        let store = db.store().await;
        let p = store.create_project("shop").await.unwrap();
        let other = store.create_project("other").await.unwrap();
        let now = now_ms();
        let limits = InsertLimits { group_cap: 5, ..InsertLimits::default() };
        // "old": only old events (30 of them, weight 2): the group goes.
        let old: Vec<NewEvent> = (0..30).map(|i| new_event("old", now - 100 * DAY - i, 2)).collect();
        // "mixed": 12 old (some sampled past the cap of 5) and 4 new events.
        let mut mixed: Vec<NewEvent> = (0..12).map(|i| new_event("mixed", now - 95 * DAY - i, 1)).collect();
        mixed.extend((0..4).map(|i| new_event("mixed", now - DAY - i, 5)));
        let fresh: Vec<NewEvent> = (0..3).map(|i| new_event("fresh", now - i, 1)).collect();
        for batch in [&old, &mixed, &fresh] {
            store.insert_events_with(p.id, batch, &limits).await.unwrap();
        }
        let theirs: Vec<NewEvent> = (0..4).map(|i| new_event("old", now - 200 * DAY - i, 1)).collect();
        store.insert_events_with(other.id, &theirs, &limits).await.unwrap();
        assert!(store.count_mismatches(p.id).await.unwrap().is_empty());

        let cutoff = now - 90 * DAY;
        let mut total = panicle_store::PurgeReport::default();
        let mut batches = 0;
        loop {
            let r = store.purge_batch(p.id, cutoff, 7).await.unwrap();
            assert!(r.events <= 7 && r.sampled <= 7, "a batch deletes at most 7 of each: {r:?}");
            total.add(&r);
            batches += 1;
            if r.rows() == 0 {
                break;
            }
            assert!(store.count_mismatches(p.id).await.unwrap().is_empty(), "consistent after every batch");
        }
        assert!(batches > 4, "small batches: {batches}");
        assert_eq!(total.rows(), 42, "30 old + 12 old of mixed");
        assert_eq!(total.weight, 60 + 12);
        assert_eq!(total.groups, 1, "only the group with nothing left goes");
        assert_eq!(
            group_counts(&store, p.id).await,
            vec![("boom in fresh".to_string(), 3), ("boom in mixed".to_string(), 20)]
        );
        let left = store
            .list_events(&EventQuery { project_id: Some(p.id), limit: 1000, ..EventQuery::default() })
            .await
            .unwrap();
        assert!(left.items.iter().all(|e| e.timestamp_ms >= cutoff));
        // 3 fresh and those of the 4 new "mixed" ones the cap kept in full.
        assert!((3..=7).contains(&left.items.len()), "{}", left.items.len());
        assert!(store.count_mismatches(p.id).await.unwrap().is_empty());
        // The other project's (older) events are not this purge's business.
        assert_eq!(stored(&store, other.id).await, 4);
        // Old daily usage counters go; today's stays.
        store.prune_usage(now, 62).await.unwrap();
        assert_eq!(store.usage(p.id, &UsagePeriods::at(now)).await.unwrap().0, 49);
    }

    async fn a_storm_range_resolves_past_the_cap_and_goes_with_its_aggregate(db: &TestDb) {
        let store = db.store().await;
        let p = store.create_project("shop").await.unwrap();
        let other = store.create_project("other").await.unwrap();
        let limits = InsertLimits { daily_quota: 0, monthly_quota: 0, group_cap: 2 };
        let now = now_ms();
        // The group is at its cap before the storm comes.
        let plain: Vec<NewEvent> = (0..4).map(|i| new_event("loop", now - 300 * DAY - i, 1)).collect();
        store.insert_events_with(p.id, &plain, &limits).await.unwrap();

        let prefix = panicle_protocol::storm::storm_id_prefix(0xabcd, 7);
        let range = |start, end| panicle_store::StormRange { id_prefix: prefix.to_uppercase(), seq_start: start, seq_end: end };
        let mut old = new_event("loop", now - 200 * DAY, 37);
        old.event_id = panicle_protocol::storm::folded_event_id(&prefix, 0);
        old.storm = Some(range(0, 37));
        let mut fresh = new_event("loop", now, 5);
        fresh.event_id = panicle_protocol::storm::folded_event_id(&prefix, 37);
        fresh.storm = Some(range(37, 42));
        let out = store.insert_events_with(p.id, &[old.clone(), fresh.clone()], &limits).await.unwrap();
        assert_eq!((out.inserted, out.sampled), (2, 0), "aggregates are kept in full past the cap");
        // A resend stores nothing twice.
        assert_eq!(store.insert_events_with(p.id, &[old.clone()], &limits).await.unwrap().inserted, 0);
        // The same storm id in another project is that project's.
        let mut theirs = new_event("loop", now, 3);
        theirs.event_id = old.event_id.clone();
        theirs.storm = Some(range(0, 3));
        store.insert_events_with(other.id, &[theirs], &limits).await.unwrap();

        let folded = |seq| panicle_protocol::storm::folded_event_id(&prefix, seq);
        assert_eq!(store.storm_holders(&folded(0)).await.unwrap(), vec![(p.id, old.event_id.clone()), (other.id, old.event_id.clone())]);
        assert_eq!(store.storm_holders(&folded(36)).await.unwrap(), vec![(p.id, old.event_id.clone())]);
        assert_eq!(store.storm_holders(&folded(37)).await.unwrap(), vec![(p.id, fresh.event_id.clone())]);
        assert_eq!(store.storm_holders(&folded(41).to_uppercase()).await.unwrap(), vec![(p.id, fresh.event_id.clone())]);
        assert!(store.storm_holders(&folded(42)).await.unwrap().is_empty(), "past the last range");
        assert!(store.storm_holders(&uuid::Uuid::new_v4().to_string()).await.unwrap().is_empty());
        assert!(store.storm_holders("not an id").await.unwrap().is_empty());

        // Retention deletes the old aggregate and its range, not the fresh one.
        while store.purge_batch(p.id, now - 90 * DAY, 100).await.unwrap().rows() > 0 {}
        assert!(store.count_mismatches(p.id).await.unwrap().is_empty());
        assert!(store.get_event(&old.event_id, Some(p.id)).await.unwrap().is_none());
        assert!(store.storm_holders(&folded(5)).await.unwrap().is_empty(), "the old range went with its aggregate");
        assert_eq!(store.storm_holders(&folded(2)).await.unwrap(), vec![(other.id, old.event_id.clone())]);
        assert_eq!(store.storm_holders(&folded(40)).await.unwrap(), vec![(p.id, fresh.event_id.clone())]);
        assert_eq!(group_counts(&store, p.id).await, vec![("boom in loop".to_string(), 5)]);
    }
}
