//! One contract suite, run on SQLite and on PostgreSQL.

use std::borrow::Cow;

use panicle_store::{
    Backend, EventQuery, GroupQuery, InsertJob, InsertLimits, NewEvent, SessionPolicy, StoreError,
    TokenScope, UsagePeriods, hash_token,
};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// Applies migrations 0001–0003 only: the schema before access control.
async fn migrate_before_access(db: &panicle_store::testing::TestDb) -> sqlx::AnyPool {
    let dir = match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let files: [(i64, &str, &'static str, &'static str); 3] = [
        (
            1,
            "init",
            include_str!("../../../migrations/sqlite/0001_init.sql"),
            include_str!("../../../migrations/postgres/0001_init.sql"),
        ),
        (
            2,
            "clusters",
            include_str!("../../../migrations/sqlite/0002_clusters.sql"),
            include_str!("../../../migrations/postgres/0002_clusters.sql"),
        ),
        (
            3,
            "filter_indexes",
            include_str!("../../../migrations/sqlite/0003_filter_indexes.sql"),
            include_str!("../../../migrations/postgres/0003_filter_indexes.sql"),
        ),
    ];
    let migrations = files
        .iter()
        .map(|(v, name, lite, pg)| {
            let sql = if dir == "sqlite" { *lite } else { *pg };
            Migration::new(
                *v,
                Cow::Borrowed(*name),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    let url = match db.backend {
        Backend::Sqlite => format!("{}?mode=rwc", db.url),
        Backend::Postgres => db.url.clone(),
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    Migrator::with_migrations(migrations)
        .run(&pool)
        .await
        .unwrap();
    pool
}

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
        storm: None,
        missing_debug_files: Vec::new(),
    }
}

async fn day_usage(store: &panicle_store::Store, project_id: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    store
        .usage(project_id, &UsagePeriods::at(now))
        .await
        .unwrap()
        .0
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

    async fn jobs_of_several_requests_commit_together_each_with_its_outcome(db: &TestDb) {
        let store = db.store().await;
        let shop = store.create_project("shop").await.unwrap();
        let ledger = store.create_project("ledger").await.unwrap();
        let a = new_event("fa", 1_000, "checkout");
        let b = new_event("fb", 2_000, "checkout");
        let old = new_event("fa", 500, "checkout");
        store.insert_events(shop.id, std::slice::from_ref(&old)).await.unwrap();
        let c = new_event("fa", 3_000, "ledger");
        let first = [a.clone(), b.clone()];
        // `a` again (another request's resend racing the first), and `old`, stored before.
        let second = [a.clone(), old.clone(), new_event("fb", 4_000, "checkout")];
        let third = [c.clone()];
        let none = InsertLimits::default();
        let jobs = [
            InsertJob { project_id: shop.id, events: &first, limits: none },
            InsertJob { project_id: shop.id, events: &second, limits: none },
            InsertJob { project_id: ledger.id, events: &third, limits: none },
            InsertJob { project_id: shop.id, events: &[], limits: none },
        ];
        let out = store.insert_jobs(&jobs).await.unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!((out[0].inserted, out[0].accepted.len()), (2, 2));
        assert_eq!((out[1].inserted, out[1].accepted.len()), (1, 3), "a and old were stored already");
        assert_eq!((out[2].inserted, out[2].accepted.len()), (1, 1));
        assert_eq!((out[3].inserted, out[3].accepted.len()), (0, 0));
        let groups = store.list_groups(&GroupQuery { project_id: Some(shop.id), limit: 50, ..Default::default() }).await.unwrap();
        let count = |fp: &str| groups.items.iter().find(|g| g.fingerprint == fp).map(|g| g.count);
        assert_eq!((count("fa"), count("fb")), (Some(2), Some(2)));
        let fa = groups.items.iter().find(|g| g.fingerprint == "fa").unwrap();
        assert_eq!((fa.first_seen_ms, fa.last_seen_ms), (500, 1_000));
        let ledger_groups = store.list_groups(&GroupQuery { project_id: Some(ledger.id), limit: 50, ..Default::default() }).await.unwrap();
        assert_eq!(ledger_groups.items.len(), 1);
        assert_eq!(ledger_groups.items[0].count, 1);
        assert_eq!(day_usage(&store, shop.id).await, 4, "old, a, b and the second fb");

        // A quota the sum crosses refuses the whole transaction, nothing stored.
        let tight = InsertLimits { daily_quota: 5, ..InsertLimits::default() };
        let (d, e) = ([new_event("fc", 5_000, "checkout")], [new_event("fc", 6_000, "checkout")]);
        let jobs = [
            InsertJob { project_id: shop.id, events: &d, limits: tight },
            InsertJob { project_id: shop.id, events: &e, limits: tight },
        ];
        assert!(matches!(store.insert_jobs(&jobs).await, Err(StoreError::QuotaExceeded { limit: 5, used: 4, .. })));
        assert!(store.get_event(&d[0].event_id, Some(shop.id)).await.unwrap().is_none());
        assert_eq!(day_usage(&store, shop.id).await, 4);
        // Alone, the first fits.
        assert_eq!(store.insert_events_with(shop.id, &d, &tight).await.unwrap().inserted, 1);
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

    async fn tokens_from_before_access_control_stay_admin(db: &TestDb) {
        sqlx::any::install_default_drivers();
        let pool = migrate_before_access(db).await;
        sqlx::query("INSERT INTO api_tokens (token_hash, label, created_at) VALUES ($1, 'old', 1)")
            .bind(hash_token("pnk_old"))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let store = db.store().await;
        let access = store.token_access("pnk_old").await.unwrap().unwrap();
        assert_eq!(access.scope, TokenScope::Admin);
        let listed = store.tokens().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, access.token_id);
        assert_eq!(listed[0].label, "old");
    }

    async fn token_scopes_list_and_revoke(db: &TestDb) {
        let store = db.store().await;
        let shop = store.create_project("shop").await.unwrap();
        let web = store.create_project("web").await.unwrap();
        let admin = store.create_token("first start").await.unwrap();
        let scoped = store
            .create_token_with_scope("web", &TokenScope::Projects([web.id].into()))
            .await
            .unwrap();
        assert!(matches!(
            store.create_token_with_scope("none", &TokenScope::Projects(Default::default())).await,
            Err(StoreError::InvalidScope(_))
        ));
        assert!(matches!(
            store.create_token_with_scope("ghost", &TokenScope::Projects([web.id + 100].into())).await,
            Err(StoreError::InvalidScope(_))
        ));
        assert_eq!(store.token_access(&admin).await.unwrap().unwrap().scope, TokenScope::Admin);
        let access = store.token_access(&scoped.token).await.unwrap().unwrap();
        assert_eq!(access.token_id, scoped.id);
        assert_eq!(access.scope, TokenScope::Projects([web.id].into()));
        assert!(access.scope.allows(web.id) && !access.scope.allows(shop.id));

        // Listed without secrets; last use recorded.
        let listed = store.tokens().await.unwrap();
        assert_eq!(listed.len(), 2);
        let row = listed.iter().find(|t| t.id == scoped.id).unwrap();
        assert_eq!(row.label, "web");
        assert!(row.last_used_at.is_some());
        assert!(!format!("{listed:?}").contains(&scoped.token));

        // Revoke: the token and its sessions stop working; others live on.
        let now = 1_000_000;
        let policy = SessionPolicy::default();
        let (session, _) = store.open_session(&scoped.token, policy, now).await.unwrap().unwrap();
        let (admin_session, _) = store.open_session(&admin, policy, now).await.unwrap().unwrap();
        assert!(store.session_access(&session, policy, now).await.unwrap().is_some());
        assert!(!store.revoke_token("0123456789abcdef").await.unwrap());
        assert!(!store.revoke_token("not an id").await.unwrap());
        assert!(store.revoke_token(&scoped.id).await.unwrap());
        assert!(store.token_access(&scoped.token).await.unwrap().is_none());
        assert!(store.session_access(&session, policy, now).await.unwrap().is_none());
        assert!(store.session_access(&admin_session, policy, now).await.unwrap().is_some());
        assert!(store.open_session(&scoped.token, policy, now).await.unwrap().is_none());
        assert_eq!(store.tokens().await.unwrap().len(), 1);
    }

    async fn sessions_end_and_expire(db: &TestDb) {
        let store = db.store().await;
        let web = store.create_project("web").await.unwrap();
        let token = store
            .create_token_with_scope("web", &TokenScope::Projects([web.id].into()))
            .await
            .unwrap();
        let policy = SessionPolicy { idle_ms: 1_000_000, absolute_ms: 5_000_000 };
        let t0 = 10_000_000;
        let (session, access) = store.open_session(&token.token, policy, t0).await.unwrap().unwrap();
        assert_ne!(session, token.token);
        assert_eq!(access.scope, TokenScope::Projects([web.id].into()));
        // The session carries the token's scope.
        let got = store.session_access(&session, policy, t0 + 1).await.unwrap().unwrap();
        assert_eq!(got, access);
        assert!(store.session_access("nope", policy, t0).await.unwrap().is_none());
        assert!(store.session_access(&token.token, policy, t0).await.unwrap().is_none(), "a token is not a session id");

        // Used every ~half idle period, it lives until the absolute limit.
        let mut t = t0;
        while t + 500_000 <= t0 + 5_000_000 {
            t += 500_000;
            assert!(store.session_access(&session, policy, t).await.unwrap().is_some(), "at {t}");
        }
        assert!(store.session_access(&session, policy, t0 + 5_000_001).await.unwrap().is_none());
        // Refused once expired, and gone (not revived by an earlier clock).
        assert!(store.session_access(&session, policy, t0 + 1).await.unwrap().is_none());

        // Idle: unused for longer than the idle limit.
        let (idle, _) = store.open_session(&token.token, policy, t0).await.unwrap().unwrap();
        assert!(store.session_access(&idle, policy, t0 + 1_000_001).await.unwrap().is_none());

        // Sign-out ends it at once.
        let (out, _) = store.open_session(&token.token, policy, t0).await.unwrap().unwrap();
        assert!(store.end_session(&out).await.unwrap());
        assert!(!store.end_session(&out).await.unwrap());
        assert!(store.session_access(&out, policy, t0).await.unwrap().is_none());
    }

    async fn lists_narrow_to_a_set_of_projects(db: &TestDb) {
        let store = db.store().await;
        let a = store.create_project("a").await.unwrap();
        let b = store.create_project("b").await.unwrap();
        let c = store.create_project("c").await.unwrap();
        let shared = new_event("f", 1_000, "svc");
        for p in [&a, &b, &c] {
            store.insert_events(p.id, &[shared.clone(), new_event("g", 2_000, "svc")]).await.unwrap();
        }
        let events = store
            .list_events(&EventQuery { project_ids: Some(vec![a.id, c.id]), limit: 100, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(events.items.len(), 4);
        assert!(events.items.iter().all(|e| e.project_id != b.id));
        let none = store
            .list_events(&EventQuery { project_ids: Some(vec![]), limit: 100, ..Default::default() })
            .await
            .unwrap();
        assert!(none.items.is_empty());
        let groups = store
            .list_groups(&GroupQuery { project_ids: Some(vec![b.id]), limit: 100, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(groups.items.len(), 2);
        assert!(groups.items.iter().all(|g| g.project_id == b.id));
        assert!(store
            .list_groups(&GroupQuery { project_ids: Some(vec![]), limit: 100, ..Default::default() })
            .await
            .unwrap()
            .items
            .is_empty());
        // The same event id in three projects: each holder is named.
        assert_eq!(store.event_projects(&shared.event_id).await.unwrap(), vec![a.id, b.id, c.id]);
        assert!(store.event_projects("missing").await.unwrap().is_empty());
        let copy = store.get_event(&shared.event_id, Some(b.id)).await.unwrap().unwrap();
        assert_eq!(copy.summary.project_id, b.id);
    }
}
