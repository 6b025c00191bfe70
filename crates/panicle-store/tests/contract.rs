//! One contract suite, run on SQLite and on PostgreSQL.

use panicle_store::{EventQuery, GroupQuery, NewEvent, StoreError};

fn new_event(fingerprint: &str, ts: i64, service: &str) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        timestamp_ms: ts,
        platform: "rust".into(),
        kind: "panic".into(),
        message: "called `Option::unwrap()` on a `None` value".into(),
        service: Some(service.into()),
        environment: Some("prod".into()),
        release: Some(format!("{service}@1.0.{ts}")),
        trace_id: None,
        pod: Some("pod-a".into()),
        node: None,
        route: Some("/orders/{id}".into()),
        depth: 3,
        weight: 1,
        payload: "{\"x\":1}".into(),
        fingerprint: fingerprint.into(),
        template: "called `Option::unwrap()` on a `None` value".into(),
        culprit: Some("shop::orders::reserve".into()),
        signature: vec!["shop::orders::reserve".into(), "shop::main".into()],
    }
}

panicle_store::backend_tests! {
    async fn projects_and_tokens(db: &TestDb) {
        let store = db.store().await;
        let p = store.create_project("shop").await.unwrap();
        assert_eq!(p.ingest_key.len(), 32);
        assert!(matches!(store.create_project("shop").await, Err(StoreError::ProjectExists(_))));
        assert_eq!(store.project_by_key(&p.ingest_key).await.unwrap().unwrap().id, p.id);
        assert!(store.project_by_key("nope").await.unwrap().is_none());
        let token = store.create_token("ci").await.unwrap();
        assert!(store.token_valid(&token).await.unwrap());
        assert!(!store.token_valid("pnk_wrong").await.unwrap());
        // Migrations are idempotent: a second connect finds the schema in place.
        let again = db.store().await;
        assert_eq!(again.projects().await.unwrap().len(), 1);
    }

    async fn batches_are_idempotent_and_grouped(db: &TestDb) {
        let store = db.store().await;
        let p = store.create_project("shop").await.unwrap();
        let a1 = new_event("fa", 1_000, "checkout");
        let a2 = new_event("fa", 3_000, "checkout");
        let b1 = new_event("fb", 2_000, "billing");
        let out = store.insert_events(p.id, &[a1.clone(), a2.clone(), b1.clone()]).await.unwrap();
        assert_eq!(out.inserted, 3);
        // A resend (also duplicated inside one batch) stores nothing twice.
        let out = store.insert_events(p.id, &[a1.clone(), a1.clone(), b1.clone()]).await.unwrap();
        assert_eq!(out.inserted, 0);
        assert_eq!(out.accepted.len(), 3);

        let groups = store.list_groups(&GroupQuery { project_id: Some(p.id), limit: 50, ..Default::default() }).await.unwrap();
        assert_eq!(groups.items.len(), 2);
        let ga = groups.items.iter().find(|g| g.fingerprint == "fa").unwrap();
        assert_eq!(ga.count, 2);
        assert_eq!((ga.first_seen_ms, ga.last_seen_ms), (1_000, 3_000));
        assert_eq!(ga.first_release.as_deref(), Some("checkout@1.0.1000"));
        assert_eq!(ga.frames, vec!["shop::orders::reserve", "shop::main"]);
        // An older event arriving late moves first_seen and the first release back.
        store.insert_events(p.id, &[new_event("fa", 500, "checkout")]).await.unwrap();
        let ga = store.get_group(&ga.id).await.unwrap().unwrap();
        assert_eq!((ga.count, ga.first_seen_ms), (3, 500));
        assert_eq!(ga.first_release.as_deref(), Some("checkout@1.0.500"));

        let got = store.get_event(&a1.event_id, Some(p.id)).await.unwrap().unwrap();
        assert_eq!(got.payload, "{\"x\":1}");
        assert_eq!(got.summary.group_id, ga.id);
    }

    async fn projects_are_isolated(db: &TestDb) {
        let store = db.store().await;
        let a = store.create_project("a").await.unwrap();
        let b = store.create_project("b").await.unwrap();
        let e = new_event("same", 1_000, "svc");
        store.insert_events(a.id, std::slice::from_ref(&e)).await.unwrap();
        // The same event id in another project is another event, not a duplicate.
        let out = store.insert_events(b.id, std::slice::from_ref(&e)).await.unwrap();
        assert_eq!(out.inserted, 1);
        let only_a = store.list_events(&EventQuery { project_id: Some(a.id), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(only_a.items.len(), 1);
        assert_eq!(only_a.items[0].project_id, a.id);
        assert!(store.get_event(&e.event_id, Some(b.id)).await.unwrap().is_some());
        let groups_b = store.list_groups(&GroupQuery { project_id: Some(b.id), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(groups_b.items.len(), 1);
        assert_ne!(groups_b.items[0].id, store.list_groups(&GroupQuery { project_id: Some(a.id), limit: 10, ..Default::default() }).await.unwrap().items[0].id);
    }

    async fn event_pages_and_filters(db: &TestDb) {
        let store = db.store().await;
        let p = store.create_project("shop").await.unwrap();
        let mut batch = Vec::new();
        for i in 0..25 {
            batch.push(new_event("f", 1_000 + (i / 2) * 10, if i % 5 == 0 { "billing" } else { "checkout" }));
        }
        store.insert_events(p.id, &batch).await.unwrap();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .list_events(&EventQuery { project_id: Some(p.id), limit: 7, cursor: cursor.clone(), ..Default::default() })
                .await
                .unwrap();
            seen.extend(page.items.iter().map(|e| (e.timestamp_ms, e.event_id.clone())));
            match page.next_cursor {
                Some(c) => cursor = Some(panicle_store::Cursor::decode(&c).unwrap()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25, "every event exactly once across pages");
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(seen, sorted, "newest first, ties by id");

        let billing = store
            .list_events(&EventQuery { project_id: Some(p.id), service: Some("billing".into()), limit: 100, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(billing.items.len(), 5);
        let window = store
            .list_events(&EventQuery { project_id: Some(p.id), since_ms: Some(1_050), until_ms: Some(1_100), limit: 100, ..Default::default() })
            .await
            .unwrap();
        assert!(window.items.iter().all(|e| (1_050..1_100).contains(&e.timestamp_ms)));
        assert_eq!(window.items.len(), 10);
    }
}
