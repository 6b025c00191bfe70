//! The evidence-derived suggestion, and the JSON shape the server returns.

use panicle_rules::{
    Culprit, Evidence, MatchInput, RuleSet, Share, Signal, SuggestionSource, derived_suggestion,
};

fn full() -> Evidence {
    Evidence {
        culprit: Some(Culprit {
            function: "shop::orders::reserve".into(),
            file: Some("src/orders.rs".into()),
            line_start: Some(40),
            line_end: Some(44),
        }),
        path: vec![
            "shop::orders::reserve".into(),
            "shop::api::checkout".into(),
            "shop::main".into(),
        ],
        first_seen_release: Some("checkout@1.4.2".into()),
        top_pod: Some(Share {
            name: "checkout-7d9f".into(),
            count: 870,
            total: 1000,
            distinct: Some(6),
        }),
        top_route: Some(Share {
            name: "/orders/{id}".into(),
            count: 300,
            total: 1000,
            distinct: Some(4),
        }),
    }
}

#[test]
fn every_signal_is_named_and_used() {
    let s = derived_suggestion(&full());
    assert_eq!(
        s.source,
        SuggestionSource::Evidence {
            signals: vec![
                Signal::Culprit,
                Signal::Path,
                Signal::FirstSeenRelease,
                Signal::PodConcentration,
                Signal::RouteConcentration,
            ]
        }
    );
    assert_eq!(
        s.title,
        "Panic in `shop::orders::reserve` (src/orders.rs lines 40-44)"
    );
    assert!(s.why.starts_with("No rule in the rule base matched"));
    assert!(
        s.why
            .contains("shop::main → shop::api::checkout → shop::orders::reserve"),
        "{}",
        s.why
    );
    assert!(
        s.why.contains("first seen in release `checkout@1.4.2`"),
        "{}",
        s.why
    );
    assert!(
        s.why.contains(
            "87% of the events (870 of 1000) come from pod `checkout-7d9f` (one of 6 pods)"
        ),
        "{}",
        s.why
    );
    assert!(s.why.contains("several routes"), "{}", s.why);
    // Steps: open the culprit, walk the path, diff the release, compare the pod, handle the error.
    assert_eq!(s.how.lines().count(), 5, "{}", s.how);
    assert!(
        s.how.starts_with("1. Open src/orders.rs lines 40-44"),
        "{}",
        s.how
    );
    assert!(s.how.contains("Diff `checkout@1.4.2`"), "{}", s.how);
    assert!(s.how.contains("Compare pod `checkout-7d9f`"), "{}", s.how);
    assert!(
        !s.how.contains("Reproduce with a request"),
        "spread routes give no route step"
    );
    assert_eq!(s.because.len(), 5);
    assert!(s.caught_by.is_empty() && s.code.is_none());
}

#[test]
fn concentrated_route_spread_pods_and_few_events() {
    let mut e = full();
    e.top_route = Some(Share {
        name: "/orders/{id}".into(),
        count: 990,
        total: 1000,
        distinct: Some(3),
    });
    e.top_pod = Some(Share {
        name: "checkout-1".into(),
        count: 200,
        total: 1000,
        distinct: Some(6),
    });
    let s = derived_suggestion(&e);
    assert!(
        s.why
            .contains("99% of the events (990 of 1000) come from requests to `/orders/{id}`"),
        "{}",
        s.why
    );
    assert!(
        s.how.contains("Reproduce with a request to `/orders/{id}`"),
        "{}",
        s.how
    );
    assert!(s.why.contains("spread over pods"), "{}", s.why);
    assert!(!s.how.contains("Compare pod"), "{}", s.how);

    e.top_pod = Some(Share {
        name: "checkout-1".into(),
        count: 3,
        total: 3,
        distinct: Some(1),
    });
    let s = derived_suggestion(&e);
    assert!(s.why.contains("Only 3 events so far"), "{}", s.why);

    e.top_pod = Some(Share {
        name: "checkout-1".into(),
        count: 50,
        total: 50,
        distinct: Some(1),
    });
    let s = derived_suggestion(&e);
    assert!(s.why.contains("the only pod seen"), "{}", s.why);
}

#[test]
fn no_evidence_still_says_so() {
    let s = derived_suggestion(&Evidence::default());
    assert_eq!(s.source, SuggestionSource::Evidence { signals: vec![] });
    assert_eq!(s.title, "Unrecognized panic: start from the evidence");
    assert!(s.why.contains("There is no culprit frame"), "{}", s.why);
    assert_eq!(s.how.lines().count(), 1);
}

#[test]
fn long_paths_are_elided_in_the_middle() {
    let e = Evidence {
        path: (0..10).map(|i| format!("f{i}")).collect(),
        ..Evidence::default()
    };
    let s = derived_suggestion(&e);
    assert!(
        s.why.contains("f9 → f8 → … → f3 → f2 → f1 → f0"),
        "{}",
        s.why
    );
}

#[test]
fn suggestions_serialize_with_their_source() {
    let rules = RuleSet::builtin().unwrap();
    let s = rules
        .suggest(&MatchInput {
            platform: Some("go"),
            message: "fatal error: concurrent map writes",
            frames: &[],
        })
        .unwrap();
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(
        v["source"],
        serde_json::json!({"kind": "rule", "id": "go.concurrent-map-writes"})
    );
    assert!(v["how"].as_str().unwrap().contains("sync.Map"));
    assert!(v["code"].as_str().unwrap().contains("sync.RWMutex"));
    assert_eq!(v["caught_by"][0], "go test -race");

    let d = serde_json::to_value(derived_suggestion(&full())).unwrap();
    assert_eq!(d["source"]["kind"], "evidence");
    assert_eq!(d["source"]["signals"][0], "culprit");
    let e: Evidence = serde_json::from_value(serde_json::json!({
        "culprit": {"function": "f", "file": null, "line_start": 3, "line_end": null},
        "first_seen_release": null, "top_pod": null, "top_route": null
    }))
    .unwrap();
    assert_eq!(derived_suggestion(&e).title, "Panic in `f` (line 3)");
}
