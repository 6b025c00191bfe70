//! Cluster states on SQLite and PostgreSQL: regressions and reopens at
//! ingest and at attach, release order, and states across merges and splits.

use panicle_store::{
    ClusterRef, ClusterState, ClusterStatus, Destination, GroupAssignment, IgnoreUntil,
    NewAlertRule, NewCluster, NewEvent, Resolution, RuleKind, StateChange, Store,
};

const NOW: i64 = 1_800_000_000_000;

fn ev(fingerprint: &str, ts: i64, release: Option<&str>, pod: Option<&str>) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        timestamp_ms: ts,
        platform: "rust".into(),
        kind: "panic".into(),
        message: "boom".into(),
        service: Some("shop".into()),
        environment: Some("prod".into()),
        release: release.map(str::to_string),
        trace_id: None,
        pod: pod.map(str::to_string),
        node: None,
        route: None,
        depth: 3,
        weight: 1,
        payload: "{}".into(),
        fingerprint: fingerprint.into(),
        template: "boom".into(),
        culprit: None,
        signature: vec![format!("shop::{fingerprint}")],
        storm: None,
        missing_debug_files: Vec::new(),
    }
}

/// A project with one group per fingerprint, group `fp` in cluster `fp`'s
/// number (fingerprints "1", "2", …); returns the project id.
async fn setup(store: &Store, fingerprints: &[&str]) -> i64 {
    let p = store.create_project("shop").await.unwrap();
    let events: Vec<NewEvent> = fingerprints
        .iter()
        .map(|fp| ev(fp, NOW - 60_000, Some("1.0.0"), Some("pod-0")))
        .collect();
    store.insert_events(p.id, &events).await.unwrap();
    let groups = store.all_groups(Some(p.id)).await.unwrap();
    let assignments: Vec<GroupAssignment> = groups
        .iter()
        .map(|g| GroupAssignment {
            group_id: g.id.clone(),
            cluster_id: g.frames[0].trim_start_matches("shop::").to_string(),
            core: true,
        })
        .collect();
    store
        .save_clustering(p.id, &assignments, 100, &[], &[], &[])
        .await
        .unwrap();
    p.id
}

async fn set(store: &Store, project: i64, cluster: &str, change: StateChange) {
    store
        .set_cluster_states(
            &[ClusterRef {
                cluster_id: cluster.into(),
                project_id: project,
            }],
            &change,
            "token t1",
        )
        .await
        .unwrap();
}

async fn status(store: &Store, cluster: &str) -> ClusterStatus {
    store.cluster_state(cluster).await.unwrap().status
}

async fn send(store: &Store, project: i64, events: &[NewEvent]) {
    store.insert_events(project, events).await.unwrap();
}

panicle_store::backend_tests! {
    async fn resolved_regresses_on_any_new_event(db: &TestDb) {
        let store = db.store().await;
        let p = setup(&store, &["1", "2"]).await;
        assert_eq!(status(&store, "1").await, ClusterStatus::Unresolved);
        set(&store, p, "1", StateChange::Resolve).await;
        set(&store, p, "2", StateChange::Resolve).await;
        assert_eq!(status(&store, "1").await, ClusterStatus::Resolved(Resolution::Now));
        // A resend of a stored event is no new event.
        let first = ev("1", NOW, Some("1.0.0"), None);
        send(&store, p, &[first.clone(), ev("1", NOW + 1, Some("1.0.0"), None)]).await;
        let s = store.cluster_state("1").await.unwrap();
        assert_eq!(s.status, ClusterStatus::Unresolved);
        let mark = s.regression.expect("regression mark");
        assert_eq!(mark.event_id, first.event_id, "the first event in time brought it back");
        assert_eq!(mark.release.as_deref(), Some("1.0.0"));
        // The other cluster is untouched; the history tells who and what.
        assert_eq!(status(&store, "2").await, ClusterStatus::Resolved(Resolution::Now));
        let changes = store.cluster_changes("1").await.unwrap();
        let mut kinds: Vec<&str> = changes.iter().map(|(_, c)| c.kind.as_str()).collect();
        kinds.sort();
        assert_eq!(kinds, ["regression", "state"]);
        let of = |kind: &str| changes.iter().find(|(_, c)| c.kind == kind).unwrap().1.clone();
        assert_eq!(of("state").actor.as_deref(), Some("token t1"));
        assert_eq!(of("state").detail.unwrap()["status"], "resolved");
        assert_eq!(of("regression").detail.unwrap()["event_id"], first.event_id);
        // Resending the regressing batch changes nothing more.
        send(&store, p, &[first]).await;
        assert_eq!(store.cluster_changes("1").await.unwrap().len(), 2);
    }

    async fn concurrent_batches_regress_a_cluster_once(db: &TestDb) {
        let store = db.store().await;
        // Four groups in one cluster: batches of different groups do not
        // wait on each other's group rows, only on the cluster's state.
        let fps = ["x1", "x2", "x3", "x4"];
        let p = setup(&store, &fps).await;
        let groups = store.all_groups(Some(p)).await.unwrap();
        let together: Vec<GroupAssignment> = groups
            .iter()
            .map(|g| GroupAssignment { group_id: g.id.clone(), cluster_id: "1".into(), core: true })
            .collect();
        store.save_clustering(p, &together, 100, &[], &[], &[]).await.unwrap();
        set(&store, p, "1", StateChange::Resolve).await;
        let tasks: Vec<_> = fps
            .iter()
            .map(|fp| {
                let store = store.clone();
                let batch: Vec<NewEvent> = (0..5).map(|j| ev(fp, NOW + j, Some("2.0.0"), None)).collect();
                tokio::spawn(async move { store.insert_events(p, &batch).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // Each batch read the state under its lock: one regression, not four.
        let regressions = store.cluster_changes("1").await.unwrap().iter().filter(|(_, c)| c.kind == "regression").count();
        assert_eq!(regressions, 1);
        assert_eq!(status(&store, "1").await, ClusterStatus::Unresolved);
    }

    async fn resolved_in_release_regresses_only_on_a_newer_release(db: &TestDb) {
        let store = db.store().await;
        let p = setup(&store, &["1", "2"]).await;
        // Semver: 1.10.0 > 1.9.0 (not by text).
        set(&store, p, "1", StateChange::ResolveInRelease("1.9.0".into())).await;
        send(&store, p, &[ev("1", NOW, Some("1.9.0"), None), ev("1", NOW + 1, Some("1.2.0"), None), ev("1", NOW + 2, None, None)]).await;
        assert_eq!(status(&store, "1").await, ClusterStatus::Resolved(Resolution::InRelease("1.9.0".into())));
        send(&store, p, &[ev("1", NOW + 3, Some("1.10.0"), None)]).await;
        let s = store.cluster_state("1").await.unwrap();
        assert_eq!(s.status, ClusterStatus::Unresolved);
        assert_eq!(s.regression.unwrap().release.as_deref(), Some("1.10.0"));
        // Not semver: the order releases were first seen in the project.
        send(&store, p, &[ev("2", NOW + 10, Some("blue"), None)]).await;
        set(&store, p, "2", StateChange::ResolveInRelease("blue".into())).await;
        send(&store, p, &[ev("2", NOW + 20, Some("blue"), None)]).await;
        assert!(matches!(status(&store, "2").await, ClusterStatus::Resolved(_)));
        // "green" seen first now, after blue: newer.
        send(&store, p, &[ev("2", NOW + 30, Some("green"), None)]).await;
        assert_eq!(status(&store, "2").await, ClusterStatus::Unresolved);
    }

    async fn resolved_in_next_release_takes_the_latest_at_resolve_time(db: &TestDb) {
        let store = db.store().await;
        let p = setup(&store, &["1", "2"]).await;
        send(&store, p, &[ev("2", NOW, Some("1.1.0"), None)]).await;
        set(&store, p, "1", StateChange::ResolveInNextRelease).await;
        assert_eq!(status(&store, "1").await, ClusterStatus::Resolved(Resolution::NextRelease { latest: Some("1.1.0".into()) }));
        // The same release (the one deployed when resolved) stays resolved.
        send(&store, p, &[ev("1", NOW + 1, Some("1.1.0"), None), ev("1", NOW + 2, Some("1.0.0"), None)]).await;
        assert!(matches!(status(&store, "1").await, ClusterStatus::Resolved(_)));
        send(&store, p, &[ev("1", NOW + 3, Some("1.2.0"), None)]).await;
        let s = store.cluster_state("1").await.unwrap();
        assert_eq!(s.status, ClusterStatus::Unresolved);
        assert_eq!(s.regression.unwrap().release.as_deref(), Some("1.2.0"));
    }

    async fn ignore_until_ten_events_reopens_at_the_eleventh(db: &TestDb) {
        let store = db.store().await;
        let p = setup(&store, &["1"]).await;
        set(&store, p, "1", StateChange::Ignore(IgnoreUntil::Events(10))).await;
        // Nine in one batch, one alone: ten, still ignored.
        let nine: Vec<NewEvent> = (0..9).map(|i| ev("1", NOW + i, None, None)).collect();
        send(&store, p, &nine).await;
        send(&store, p, &[ev("1", NOW + 9, None, None)]).await;
        let s = store.cluster_state("1").await.unwrap();
        assert_eq!((s.status.clone(), s.seen_events), (ClusterStatus::Ignored(IgnoreUntil::Events(10)), 10));
        send(&store, p, &[ev("1", NOW + 10, None, None)]).await;
        let s = store.cluster_state("1").await.unwrap();
        assert_eq!(s.status, ClusterStatus::Unresolved);
        assert_eq!(s.regression, None, "a reopen is no regression");
        assert!(store.cluster_changes("1").await.unwrap().iter().any(|(_, c)| c.kind == "reopened"));
    }

    async fn ignore_until_pods_and_forever(db: &TestDb) {
        let store = db.store().await;
        let p = setup(&store, &["1", "2"]).await;
        set(&store, p, "1", StateChange::Ignore(IgnoreUntil::Pods(2))).await;
        set(&store, p, "2", StateChange::Ignore(IgnoreUntil::Forever)).await;
        send(&store, p, &[ev("1", NOW, None, Some("web-1")), ev("1", NOW + 1, None, Some("web-1")), ev("1", NOW + 2, None, Some("web-2"))]).await;
        assert_eq!(store.cluster_state("1").await.unwrap().seen_pods, ["web-1", "web-2"]);
        send(&store, p, &[ev("1", NOW + 3, None, Some("web-3"))]).await;
        assert_eq!(status(&store, "1").await, ClusterStatus::Unresolved);
        let many: Vec<NewEvent> = (0..30).map(|i| ev("2", NOW + i, Some("9.0.0"), Some(&format!("p{i}")))).collect();
        send(&store, p, &many).await;
        assert_eq!(status(&store, "2").await, ClusterStatus::Ignored(IgnoreUntil::Forever));
    }

    async fn ignore_until_a_time_reopens_after_it(db: &TestDb) {
        let store = db.store().await;
        let p = setup(&store, &["1"]).await;
        let until = panicle_store_now() + 800;
        set(&store, p, "1", StateChange::Ignore(IgnoreUntil::Time(until))).await;
        send(&store, p, &[ev("1", NOW, None, None)]).await;
        let s = store.cluster_state("1").await.unwrap();
        assert_eq!(s.effective(panicle_store_now()), "ignored");
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
        // Reads as unresolved once the time passed, and the next event reopens it.
        assert_eq!(store.cluster_state("1").await.unwrap().effective(panicle_store_now()), "unresolved");
        send(&store, p, &[ev("1", NOW + 1, None, None)]).await;
        assert_eq!(status(&store, "1").await, ClusterStatus::Unresolved);
    }

    async fn a_group_attached_to_a_resolved_cluster_regresses_it(db: &TestDb) {
        let store = db.store().await;
        let p = setup(&store, &["1"]).await;
        set(&store, p, "1", StateChange::Resolve).await;
        // A new group arrives loose (no cluster yet): nothing to check.
        send(&store, p, &[ev("late", NOW, Some("2.0.0"), None)]).await;
        assert!(matches!(status(&store, "1").await, ClusterStatus::Resolved(_)));
        let loose = store.loose_groups(p).await.unwrap();
        assert_eq!(loose.len(), 1);
        assert!(store.set_group_cluster(&loose[0].id, "1").await.unwrap());
        let s = store.cluster_state("1").await.unwrap();
        assert_eq!(s.status, ClusterStatus::Unresolved);
        assert_eq!(s.regression.unwrap().release.as_deref(), Some("2.0.0"));
    }

    async fn a_loose_group_a_run_puts_in_a_resolved_cluster_regresses_it(db: &TestDb) {
        let store = db.store().await;
        let p = setup(&store, &["1"]).await;
        set(&store, p, "1", StateChange::ResolveInRelease("1.0.0".into())).await;
        send(&store, p, &[ev("late", NOW, Some("1.5.0"), None)]).await;
        let groups = store.all_groups(Some(p)).await.unwrap();
        let assignments: Vec<GroupAssignment> = groups
            .iter()
            .map(|g| GroupAssignment { group_id: g.id.clone(), cluster_id: "1".into(), core: true })
            .collect();
        store.save_clustering(p, &assignments, 100, &[], &[("1".into(), vec!["1".into()])], &[]).await.unwrap();
        let s = store.cluster_state("1").await.unwrap();
        assert_eq!(s.status, ClusterStatus::Unresolved);
        assert_eq!(s.regression.unwrap().release.as_deref(), Some("1.5.0"));
    }

    async fn a_run_does_not_announce_a_group_another_replica_attached(db: &TestDb) {
        let store = db.store().await;
        let p = store.create_project("shop").await.unwrap().id;
        let rule = NewAlertRule::new(p, "new bugs", RuleKind::NewCluster, Destination::Webhook, "http://127.0.0.1:9/");
        store.create_alert_rule(&rule).await.unwrap();
        send(&store, p, &[ev("a", NOW, None, None), ev("b", NOW, None, None)]).await;
        let groups = store.all_groups(Some(p)).await.unwrap();
        let (a, b) = (groups[0].id.clone(), groups[1].id.clone());
        let new = |cluster: &str, group: &str| NewCluster { cluster_id: cluster.into(), group_id: group.into(), release: None };
        // A run read both groups loose; before it saved, another replica's
        // attach started a cluster for `a`.
        assert!(store.start_cluster(p, &new("5", &a)).await.unwrap());
        let put = |g: &str, c: &str| GroupAssignment { group_id: g.into(), cluster_id: c.into(), core: true };
        store
            .save_clustering(p, &[put(&a, "7"), put(&b, "8")], 100, &[], &[("7".into(), vec![]), ("8".into(), vec![])], &[new("7", &a), new("8", &b)])
            .await
            .unwrap();
        // `a` was announced once (cluster 5); `b`, still loose at the save, once.
        let mut told: Vec<(String, String)> = store
            .deliveries(p, None, 100)
            .await
            .unwrap()
            .iter()
            .map(|d| (d.cluster_id.clone(), d.details["group_id"].as_str().unwrap().to_string()))
            .collect();
        told.sort();
        assert_eq!(told, [("5".to_string(), a), ("8".to_string(), b)]);
    }

    async fn states_follow_merges_and_splits(db: &TestDb) {
        let store = db.store().await;
        let p = setup(&store, &["1", "2", "3", "4", "5"]).await;
        set(&store, p, "1", StateChange::Resolve).await;
        set(&store, p, "2", StateChange::Ignore(IgnoreUntil::Forever)).await;
        set(&store, p, "3", StateChange::ResolveInRelease("1.0.0".into())).await;
        set(&store, p, "4", StateChange::Ignore(IgnoreUntil::Forever)).await;
        let groups = store.all_groups(Some(p)).await.unwrap();
        let gid = |fp: &str| groups.iter().find(|g| g.frames[0] == format!("shop::{fp}")).unwrap().id.clone();
        let put = |g: &str, c: &str| GroupAssignment { group_id: gid(g), cluster_id: c.into(), core: true };
        // 1 (resolved) + 2 (ignored) merge into 1: resolved (reopens sooner).
        // 3 (resolved in 1.0.0) + 5 (unresolved) merge into 3: unresolved.
        // 4 (ignored) keeps its id: untouched.
        store
            .save_clustering(
                p,
                &[put("1", "1"), put("2", "1"), put("3", "3"), put("5", "3"), put("4", "4")],
                100,
                &[],
                &[("1".into(), vec!["1".into(), "2".into()]), ("3".into(), vec!["3".into(), "5".into()]), ("4".into(), vec!["4".into()])],
                &[],
            )
            .await
            .unwrap();
        assert_eq!(status(&store, "1").await, ClusterStatus::Resolved(Resolution::Now));
        assert_eq!(status(&store, "3").await, ClusterStatus::Unresolved);
        assert_eq!(status(&store, "4").await, ClusterStatus::Ignored(IgnoreUntil::Forever));
        let history = store.cluster_changes("3").await.unwrap();
        let inherited = history.iter().find(|(_, c)| c.actor.as_deref() == Some("clustering")).unwrap();
        assert_eq!(inherited.1.detail.as_ref().unwrap()["because"], "merge of 3, 5");
        // 2 and 5 are retired: no state rows left behind.
        let listed = store.cluster_states(Some(&[p])).await.unwrap();
        assert!(!listed.contains_key("2") && !listed.contains_key("5"), "{:?}", listed.keys());
        // Cluster 1 splits into 1 and a fresh 7: both resolved.
        store
            .save_clustering(p, &[put("1", "1"), put("2", "7")], 100, &[], &[("1".into(), vec!["1".into()]), ("7".into(), vec!["1".into()])], &[])
            .await
            .unwrap();
        assert_eq!(status(&store, "7").await, ClusterStatus::Resolved(Resolution::Now));
        assert_eq!(status(&store, "1").await, ClusterStatus::Resolved(Resolution::Now));
        // And the inherited state still works: a new event regresses 7.
        send(&store, p, &[ev("2", NOW, None, None)]).await;
        assert_eq!(status(&store, "7").await, ClusterStatus::Unresolved);
        let listed = store.cluster_states(Some(&[p])).await.unwrap();
        assert_eq!(listed.get("4").map(|s: &ClusterState| s.status.name()), Some("ignored"));
    }
}

fn panicle_store_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
