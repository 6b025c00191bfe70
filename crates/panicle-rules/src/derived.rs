//! The suggestion made when no rule matches: plain words derived from the
//! evidence the service has (culprit, path, release, pod and route shares).

use serde::{Deserialize, Serialize};

use crate::suggestion::{Signal, Suggestion, SuggestionSource};

/// Share at or above which one pod or route "is" the problem.
const CONCENTRATED: f64 = 0.8;
/// Share at or below which events count as spread out.
const SPREAD: f64 = 0.5;
/// Fewer events than this say nothing about concentration.
const MIN_EVENTS: u64 = 5;
/// Path elements shown; the ends of a long path say the most.
const MAX_PATH_SHOWN: usize = 6;

/// What the service knows about a cluster, for [`derived_suggestion`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The innermost in-app frame the panic is blamed on.
    pub culprit: Option<Culprit>,
    /// The call path to the culprit, innermost first (like frames).
    #[serde(default)]
    pub path: Vec<String>,
    /// The release in which the cluster's first event was seen.
    pub first_seen_release: Option<String>,
    /// The pod with the most events.
    pub top_pod: Option<Share>,
    /// The route with the most events.
    pub top_route: Option<Share>,
}

/// A function and where it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Culprit {
    pub function: String,
    pub file: Option<String>,
    pub line_start: Option<u32>,
    pub line_end: Option<u32>,
}

/// How many of a cluster's events one value (a pod, a route) accounts for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub name: String,
    pub count: u64,
    pub total: u64,
    /// How many distinct values were seen, when known.
    pub distinct: Option<u64>,
}

enum Concentration {
    TooFew,
    OnlyOne,
    Concentrated(f64),
    Leaning(f64),
    SpreadOut(f64),
}

impl Share {
    fn fraction(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.count.min(self.total) as f64 / self.total as f64
    }

    fn spread(&self) -> Concentration {
        let f = self.fraction();
        if self.total < MIN_EVENTS {
            Concentration::TooFew
        } else if self.distinct == Some(1) {
            Concentration::OnlyOne
        } else if f >= CONCENTRATED {
            Concentration::Concentrated(f)
        } else if f <= SPREAD {
            Concentration::SpreadOut(f)
        } else {
            Concentration::Leaning(f)
        }
    }

    fn of(&self, what: &str) -> String {
        match self.distinct {
            Some(n) if n > 1 => format!(" (one of {n} {what}s)"),
            _ => String::new(),
        }
    }
}

fn pct(f: f64) -> String {
    format!("{:.0}%", f * 100.0)
}

fn location(c: &Culprit) -> String {
    let lines = match (c.line_start, c.line_end) {
        (Some(a), Some(b)) if a != b => format!(" lines {a}-{b}"),
        (Some(a), _) | (None, Some(a)) => format!(" line {a}"),
        (None, None) => String::new(),
    };
    match &c.file {
        Some(f) => format!("{f}{lines}"),
        None if lines.is_empty() => String::new(),
        None => lines.trim_start().to_string(),
    }
}

/// The path outermost → innermost, the middle elided when long.
fn render_path(path: &[String]) -> String {
    let outer_first: Vec<&str> = path.iter().rev().map(String::as_str).collect();
    if outer_first.len() <= MAX_PATH_SHOWN {
        return outer_first.join(" → ");
    }
    let head = &outer_first[..2];
    let tail = &outer_first[outer_first.len() - (MAX_PATH_SHOWN - 2)..];
    format!("{} → … → {}", head.join(" → "), tail.join(" → "))
}

/// A suggestion built from the evidence alone, for a panic no rule knows.
/// Each sentence of `why` rests on one signal; `source` lists them.
pub fn derived_suggestion(evidence: &Evidence) -> Suggestion {
    let mut signals = Vec::new();
    let mut why = vec![
        "No rule in the rule base matched this panic, so this advice is derived from the events themselves."
            .to_string(),
    ];
    let mut steps: Vec<String> = Vec::new();
    let mut because = Vec::new();
    let culprit_name = evidence
        .culprit
        .as_ref()
        .map(|c| format!("`{}`", c.function))
        .unwrap_or_else(|| "the innermost frame of your code".to_string());

    let title = match &evidence.culprit {
        Some(c) => {
            signals.push(Signal::Culprit);
            let loc = location(c);
            let at = if loc.is_empty() {
                String::new()
            } else {
                format!(" ({loc})")
            };
            why.push(format!(
                "The innermost frame of your own code is `{}`{at}: the panic is raised there or in a library call it makes.",
                c.function
            ));
            because.push(format!("culprit: {}{at}", c.function));
            let open = if loc.is_empty() {
                format!("Open `{}`", c.function)
            } else {
                format!("Open {loc} (`{}`)", c.function)
            };
            steps.push(format!(
                "{open} and list each operation there that can panic: unwrap/expect, indexing or slicing, arithmetic, a RefCell borrow, an assert (in Go: a nil dereference, a map write, an index, a type assertion). Find which value the failing input makes invalid."
            ));
            format!("Panic in `{}`{at}", c.function)
        }
        None => "Unrecognized panic: start from the evidence".to_string(),
    };

    if evidence.path.len() > 1 {
        signals.push(Signal::Path);
        let shown = render_path(&evidence.path);
        why.push(format!("It is reached by {shown}."));
        because.push(format!("path: {shown}"));
        steps.push(format!(
            "Walk the call path outward to the first function that takes outside input (a request, a message, a file) and reject the bad value there, so it never reaches {culprit_name}."
        ));
    }

    if let Some(release) = &evidence.first_seen_release {
        signals.push(Signal::FirstSeenRelease);
        why.push(format!("It was first seen in release `{release}`."));
        because.push(format!("first seen in release {release}"));
        steps.push(format!(
            "Diff `{release}` against the release before it, looking at {culprit_name} and its callers; if nothing changed there, look for inputs that changed with that rollout (config, schema, upstream data)."
        ));
    }

    if let Some(pod) = &evidence.top_pod {
        signals.push(Signal::PodConcentration);
        let (sentence, step) = describe_pods(pod);
        because.push(format!(
            "top pod {}: {} of {} events",
            pod.name, pod.count, pod.total
        ));
        why.push(sentence);
        steps.extend(step);
    }

    if let Some(route) = &evidence.top_route {
        signals.push(Signal::RouteConcentration);
        let (sentence, step) = describe_routes(route);
        because.push(format!(
            "top route {}: {} of {} events",
            route.name, route.count, route.total
        ));
        why.push(sentence);
        steps.extend(step);
    }

    if signals.is_empty() {
        why.push("There is no culprit frame, path, release or pod and route data yet: send events with frames (debug line tables on) and the request and resource context.".to_string());
    }
    steps.push(
        "Once the cause is clear, return an error the caller handles instead of panicking, and add a test with the failing input."
            .to_string(),
    );

    let how = steps
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {s}", i + 1))
        .collect::<Vec<_>>()
        .join("\n");
    Suggestion {
        source: SuggestionSource::Evidence { signals },
        title,
        why: why.join(" "),
        how,
        caught_by: Vec::new(),
        links: Vec::new(),
        code: None,
        because,
    }
}

fn describe_pods(pod: &Share) -> (String, Option<String>) {
    let name = &pod.name;
    let (count, total) = (pod.count, pod.total);
    match pod.spread() {
        Concentration::TooFew => (
            format!("Only {total} events so far: too few to say whether pod `{name}` stands out."),
            None,
        ),
        Concentration::OnlyOne => (
            format!(
                "All {total} events come from pod `{name}`, the only pod seen, so pods tell nothing here."
            ),
            None,
        ),
        Concentration::Concentrated(f) => (
            format!(
                "{} of the events ({count} of {total}) come from pod `{name}`{}.",
                pct(f),
                pod.of("pod")
            ),
            Some(format!(
                "Compare pod `{name}` with the others: its node, config and secrets, the data or tenants it serves, its memory and file limits. A panic on one pod points to its environment or its share of traffic."
            )),
        ),
        Concentration::Leaning(f) => (
            format!(
                "Pod `{name}` has more than its share: {} of the events ({count} of {total}){}.",
                pct(f),
                pod.of("pod")
            ),
            None,
        ),
        Concentration::SpreadOut(f) => (
            format!(
                "The events are spread over pods (the busiest, `{name}`, has {}, {count} of {total}): not one bad pod; the cause travels with the code or the input.",
                pct(f)
            ),
            None,
        ),
    }
}

fn describe_routes(route: &Share) -> (String, Option<String>) {
    let name = &route.name;
    let (count, total) = (route.count, route.total);
    match route.spread() {
        Concentration::TooFew => (
            format!(
                "Only {total} events so far: too few to say whether route `{name}` stands out."
            ),
            None,
        ),
        Concentration::OnlyOne | Concentration::Concentrated(_) => (
            format!(
                "{} of the events ({count} of {total}) come from requests to `{name}`{}.",
                pct(route.fraction()),
                route.of("route")
            ),
            Some(format!(
                "Reproduce with a request to `{name}`: replay a failing request (its request id is on the events) against a local build or staging."
            )),
        ),
        Concentration::Leaning(f) => (
            format!(
                "Requests to `{name}` have more than their share: {} of the events ({count} of {total}).",
                pct(f)
            ),
            None,
        ),
        Concentration::SpreadOut(f) => (
            format!(
                "Requests to several routes hit it (the top one, `{name}`, has {}): the bug is in code they share; start from the culprit, not from one handler.",
                pct(f)
            ),
            None,
        ),
    }
}
