//! `panicle serve --demo-data`: fills a `demo` project with a generated
//! history (see [`data`]) so a newcomer sees every page of the dashboard
//! populated, and has something to compare their own events with.
//!
//! The events go through the server's own HTTP ingest (`/api/v1/events`
//! and `/api/v1/events/text`, with the project's ingest key) once it
//! listens, so they are validated, grouped, limited and counted exactly as
//! an SDK's are. Then the clustering job runs, three clusters get a state
//! (the calls the state API makes), and the regression is sent: events of
//! the resolved inventory cluster in a newer release. A second fill sends
//! the same event ids, which the server stores once; the states are set
//! only by a fill that has not sent its last event yet.

pub mod data;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use panicle_server::AppState;
use panicle_store::{ClusterRef, Project};
use serde_json::Value;

/// Events per POST: well under the default 1 MiB body limit.
const BATCH: usize = 100;
/// How long a 429 or 503 is waited out before the fill gives up.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// What a fill made, for the lines `serve` prints.
#[derive(Debug)]
pub struct Summary {
    pub project: Project,
    /// Events sent (JSON and text); `stored` of them were new.
    pub sent: usize,
    pub stored: u64,
    /// Panics they stand for (storm aggregates count theirs).
    pub panics: u64,
    pub services: usize,
    pub pods: usize,
    pub releases: usize,
    pub clusters: usize,
    /// The cluster that was resolved and came back, when the states were set now.
    pub regressed: Option<String>,
    pub millis: u128,
}

impl Summary {
    /// The lines `serve` prints; the last one is what tests wait for.
    pub fn lines(&self, dashboard: &str) -> Vec<String> {
        let base = dashboard.trim_end_matches('/');
        let mut lines = vec![format!(
            "Demo data: project `{}` (id {}): {} events sent ({} new) standing for {} panics; \
             {} services, {} pods, {} releases, {} clusters; {} ms",
            self.project.name,
            self.project.id,
            self.sent,
            self.stored,
            self.panics,
            self.services,
            self.pods,
            self.releases,
            self.clusters,
            self.millis
        )];
        if let Some(id) = &self.regressed {
            lines.push(format!(
                "  regression: cluster {id} resolved in {} is back in {}",
                data::FIXED_RELEASE,
                data::REGRESSED_RELEASE
            ));
        }
        lines.push(format!(
            "  storm: {} panics in 2 aggregates (payments); Go crashes from ledger, session-cache, batcher",
            data::STORM_PANICS
        ));
        lines.push(format!(
            "Demo dashboard: {base}/clusters?project={}&range=30d",
            self.project.id
        ));
        lines
    }
}

/// Fills the demo project through the server listening at `listening`.
pub async fn fill(state: &AppState, listening: SocketAddr, now_ms: i64) -> Result<Summary> {
    let started = Instant::now();
    let store = &state.store;
    let project = match store.project_by_name(data::PROJECT).await? {
        Some(p) => p,
        None => store.create_project(data::PROJECT).await?,
    };
    let plan = data::generate(data::SEED, now_ms);
    let finished_before = match plan.last_event_id() {
        Some(id) => store.event_projects(id).await?.contains(&project.id),
        None => true,
    };
    let base = format!("http://{}", loopback(listening));
    let key = project.ingest_key.clone();

    let history = plan.history.clone();
    let texts = plan.text_crashes.clone();
    let (b, k) = (base.clone(), key.clone());
    let mut stored = tokio::task::spawn_blocking(move || -> Result<u64> {
        let agent = agent();
        let mut stored = 0;
        for batch in history.chunks(BATCH) {
            stored += post_events(&agent, &b, &k, batch)?;
        }
        for crash in &texts {
            stored += post_text(&agent, &b, &k, crash)?;
        }
        Ok(stored)
    })
    .await
    .context("the demo sender stopped")??;

    state
        .job
        .run()
        .await
        .context("the clustering run after the demo history failed")?;
    let mut regressed = None;
    if !finished_before {
        let groups = store.all_groups(Some(project.id)).await?;
        for planned in &plan.states {
            let Some(cluster_id) = groups
                .iter()
                .find(|g| g.frames.iter().any(|f| f.contains(planned.culprit)))
                .and_then(|g| g.cluster_id.clone())
            else {
                bail!(
                    "no cluster holds the demo's {} panics after clustering; \
                     were the clustering parameters changed (--cluster-min-samples)?",
                    planned.culprit
                );
            };
            store
                .set_cluster_states(
                    &[ClusterRef {
                        cluster_id: cluster_id.clone(),
                        project_id: project.id,
                    }],
                    &planned.change,
                    "demo data",
                )
                .await?;
            if planned.culprit == data::INVENTORY_CULPRIT {
                regressed = Some(cluster_id);
            }
        }
    }
    let regression = plan.regression.clone();
    stored += tokio::task::spawn_blocking(move || post_events(&agent(), &base, &key, &regression))
        .await
        .context("the demo sender stopped")??;
    state
        .job
        .run()
        .await
        .context("the clustering run after the demo regression failed")?;

    let groups = store.all_groups(Some(project.id)).await?;
    let clusters: BTreeSet<&str> = groups
        .iter()
        .filter_map(|g| g.cluster_id.as_deref())
        .collect();
    let distinct = |key: &str| -> usize {
        let json = plan
            .history
            .iter()
            .chain(&plan.regression)
            .filter_map(|e| e["resource"][key].as_str().map(str::to_string));
        let text = plan.text_crashes.iter().filter_map(|c| {
            let query_key = match key {
                "service.name" => "service",
                "k8s.pod.name" => "pod",
                _ => return None,
            };
            c.query
                .iter()
                .find(|(k, _)| *k == query_key)
                .map(|(_, v)| v.clone())
        });
        json.chain(text).collect::<BTreeSet<String>>().len()
    };
    let releases: BTreeSet<String> = plan
        .history
        .iter()
        .chain(&plan.regression)
        .filter_map(|e| e["release"].as_str().map(str::to_string))
        .chain(plan.text_crashes.iter().filter_map(|c| {
            c.query
                .iter()
                .find(|(k, _)| *k == "release")
                .map(|(_, v)| v.clone())
        }))
        .collect();
    Ok(Summary {
        project,
        sent: plan.event_ids().len(),
        stored,
        panics: plan.panics(),
        services: distinct("service.name"),
        pods: distinct("k8s.pod.name"),
        releases: releases.len(),
        clusters: clusters.len(),
        regressed,
        millis: started.elapsed().as_millis(),
    })
}

/// Where to reach a server listening on `addr` from this host: a wildcard
/// address is reached over loopback.
fn loopback(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build(),
    )
}

/// Sends one request until it is accepted, waiting out 429 and 503 (the
/// operator's rate limit may be lower than the demo's batch); returns the
/// body of the 202.
fn send_accepted(
    what: &str,
    mut send: impl FnMut() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Value> {
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        let mut resp = send().with_context(|| format!("cannot send the demo's {what}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        match status {
            202 => return Ok(serde_json::from_str(&body).unwrap_or(Value::Null)),
            429 | 503 if Instant::now() < deadline => {
                let wait = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1)
                    .clamp(1, 10);
                std::thread::sleep(Duration::from_secs(wait));
            }
            _ => bail!(
                "the server refused the demo's {what}: {status} {body} \
                 (a project quota or body limit lower than the demo needs?)"
            ),
        }
    }
}

fn stored_of(body: &Value) -> u64 {
    body["stored"].as_u64().unwrap_or(0)
}

fn post_events(agent: &ureq::Agent, base: &str, key: &str, events: &[Value]) -> Result<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let url = format!("{base}/api/v1/events");
    let body = serde_json::to_vec(events)?;
    let accepted = send_accepted("events", || {
        agent
            .post(&url)
            .header("X-Panicle-Key", key)
            .content_type("application/json")
            .send(&body[..])
    })?;
    Ok(stored_of(&accepted))
}

fn post_text(agent: &ureq::Agent, base: &str, key: &str, crash: &data::TextCrash) -> Result<u64> {
    let url = format!("{base}/api/v1/events/text");
    let accepted = send_accepted("Go crash text", || {
        let mut req = agent.post(&url).header("X-Panicle-Key", key);
        for (k, v) in &crash.query {
            req = req.query(*k, v);
        }
        req.content_type("text/plain").send(crash.text)
    })?;
    Ok(stored_of(&accepted))
}
