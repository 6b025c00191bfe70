//! Events that waited for a debug file, moved to their named group when it
//! arrives: on SQLite and on PostgreSQL.

use panicle_store::{GroupQuery, NewEvent, Resymbolized, Store};

fn bare_event(ts: i64, weight: i64, missing: &[&str]) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        timestamp_ms: ts,
        platform: "rust".into(),
        kind: "panic".into(),
        message: "called `Option::unwrap()` on a `None` value".into(),
        service: Some("checkout".into()),
        environment: None,
        release: Some("checkout@1.0.0".into()),
        trace_id: None,
        pod: None,
        node: None,
        route: None,
        depth: 20,
        weight,
        payload: "{\"frames\":[]}".into(),
        fingerprint: "bare".into(),
        template: "called `Option::unwrap()` on a `None` value".into(),
        culprit: None,
        signature: Vec::new(),
        storm: None,
        missing_debug_files: missing.iter().map(|m| m.to_string()).collect(),
    }
}

/// The same event, named: a new fingerprint, payload and depth.
fn named(e: &NewEvent, fingerprint: &str) -> NewEvent {
    NewEvent {
        fingerprint: fingerprint.into(),
        culprit: Some(format!("shop::{fingerprint}")),
        signature: vec![format!("shop::{fingerprint}")],
        payload: format!("{{\"named\":\"{fingerprint}\"}}"),
        depth: 4,
        missing_debug_files: Vec::new(),
        ..e.clone()
    }
}

async fn groups(store: &Store, project_id: i64) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = store
        .list_groups(&GroupQuery {
            project_id: Some(project_id),
            limit: 100,
            ..GroupQuery::default()
        })
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|g| (g.fingerprint, g.count))
        .collect();
    out.sort();
    out
}

panicle_store::backend_tests! {
    async fn events_waiting_for_a_debug_file_move_to_their_named_groups(db: &TestDb) {
        let store = db.store().await;
        let p = store.create_project("symbols").await.unwrap().id;
        let a = bare_event(1_000, 1, &["aaaa"]);
        let b = bare_event(2_000, 3, &["aaaa", "bbbb"]);
        let c = bare_event(3_000, 1, &["aaaa"]);
        let other = bare_event(4_000, 1, &["bbbb"]);
        store
            .insert_events(p, &[a.clone(), b.clone(), c.clone(), other.clone()])
            .await
            .unwrap();
        assert_eq!(groups(&store, p).await, [("bare".to_string(), 6)]);

        let pending = store.events_missing_debug_file("aaaa", 2).await.unwrap();
        assert_eq!(pending.len(), 2, "bounded batches");
        let all = store.events_missing_debug_file("aaaa", 100).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|e| e.event_id.as_str()).collect();
        for e in [&a, &b, &c] {
            assert!(ids.contains(&e.event_id.as_str()));
        }
        assert!(!ids.contains(&other.event_id.as_str()));

        // a and b name the same function, c another.
        let batch = vec![
            Resymbolized { project_id: p, event: named(&a, "reserve") },
            Resymbolized { project_id: p, event: named(&b, "reserve") },
            Resymbolized { project_id: p, event: named(&c, "charge") },
        ];
        let report = store.regroup_events("aaaa", &batch).await.unwrap();
        assert_eq!((report.events, report.moved), (3, 3));
        assert_eq!(
            groups(&store, p).await,
            [
                ("bare".to_string(), 1),
                ("charge".to_string(), 1),
                ("reserve".to_string(), 4)
            ]
        );
        assert!(store.count_mismatches(p).await.unwrap().is_empty());
        assert!(store.events_missing_debug_file("aaaa", 100).await.unwrap().is_empty());
        // b still waits for its other module's debug file.
        let left: Vec<String> = store
            .events_missing_debug_file("bbbb", 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&b.event_id));
        let row = store.get_event(&a.event_id, Some(p)).await.unwrap().unwrap();
        assert_eq!(row.payload, "{\"named\":\"reserve\"}");
        assert_eq!(row.summary.depth, 4);

        // The last bare event goes too: its group is removed.
        let report = store
            .regroup_events("bbbb", &[Resymbolized { project_id: p, event: named(&other, "charge") }])
            .await
            .unwrap();
        assert_eq!(report.groups_removed, 1);
        assert_eq!(
            groups(&store, p).await,
            [("charge".to_string(), 2), ("reserve".to_string(), 4)]
        );
        assert!(store.count_mismatches(p).await.unwrap().is_empty());
        // Retention takes a waiting event and its mark with it.
        let old = bare_event(10, 1, &["cccc"]);
        store.insert_events(p, std::slice::from_ref(&old)).await.unwrap();
        assert_eq!(store.events_missing_debug_file("cccc", 10).await.unwrap().len(), 1);
        let purged = store.purge_batch(p, 500, 100).await.unwrap();
        assert_eq!(purged.events, 1);
        assert!(store.events_missing_debug_file("cccc", 10).await.unwrap().is_empty());
        // Moving again what is already in place changes nothing.
        let again = store
            .regroup_events("aaaa", &[Resymbolized { project_id: p, event: named(&a, "reserve") }])
            .await
            .unwrap();
        assert_eq!((again.events, again.moved), (1, 0));
        assert_eq!(
            groups(&store, p).await,
            [("charge".to_string(), 2), ("reserve".to_string(), 4)]
        );
    }
}
