//! Web console benchmark: each page's latency over loopback HTTP on a store
//! of 1,000 pipelines and 100,000 runs, as a ratio to `GET /healthz`
//! measured by the same server and client in the same run, and each page's
//! size (it must stay under 100 KB).
//!
//! `cargo bench --bench console`. The store is built first through the
//! store's own write path (runs, verdicts, incidents with a plan, an
//! approval request, a vote and audit entries), and the time that takes is
//! printed. Requests are sent one at a time after a warm-up, so a figure is
//! one page's time, not the server's throughput.

use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use pipemedic::approvals::{Approver, Choice, RequestStatus, StepPolicy, Via, Vote};
use pipemedic::config::Secret;
use pipemedic::domain::{
    Direction, Expectation, MetricDeviation, Run, RunSource, RunStatus, TestCounts, Verdict,
};
use pipemedic::playbooks::{ApprovalPolicy, Risk};
use pipemedic::startup::Application;
use pipemedic::store::{NewApprovalRequest, NewExecution, NewIncident, NewPlan, Store};
use serde_json::json;

// Shared with the throughput benchmarks; this one needs only `loaded`.
#[allow(dead_code)]
mod support;
use support::loaded;

const PIPELINES: usize = 1_000;
const RUNS_PER_PIPELINE: usize = 100;
/// Pipelines with an open incident (every tenth has a plan and a vote).
const INCIDENTS: usize = 200;
const READ_TOKEN: &str = "bench-read-token";
const WARM_UP: usize = 5;
const REQUESTS: usize = 100;
/// The most HTML a page may send.
const MAX_PAGE_BYTES: usize = 100 * 1024;

fn pipeline(p: usize) -> String {
    format!("service-{p:04}")
}

fn verdict(grade: f64) -> Verdict {
    Verdict {
        score: if grade > 0.0 { 2.4 } else { 0.9 },
        grade,
        deviations: if grade > 0.0 {
            vec![MetricDeviation {
                metric: "duration_s".into(),
                observed: 900.0,
                expected: 430.0,
                direction: Direction::Up,
                attribution: 1.0,
                dismissed: None,
            }]
        } else {
            Vec::new()
        },
        expected: vec![Expectation {
            metric: "duration_s".into(),
            usual: 430.0,
            low: 400.0,
            high: 516.0,
        }],
        ..Verdict::default()
    }
}

/// Fills the store.
async fn build_store(store: &Store) {
    let now = Utc::now();
    let log = "error: integration test timed out after 600 s\n".repeat(50);
    for p in 0..PIPELINES {
        let name = pipeline(p);
        let mut tx = store.begin_write().await.expect("write");
        let mut last = None;
        for k in 0..RUNS_PER_PIPELINE {
            let finished = now - Duration::hours(6 * (RUNS_PER_PIPELINE - k) as i64);
            let abnormal = k % 37 == 36 || (p < INCIDENTS && k + 1 == RUNS_PER_PIPELINE);
            let status = if abnormal {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            };
            let mut run = Run::new(name.as_str(), format!("r{k}"), status);
            let secs = if abnormal {
                900
            } else {
                400 + ((p * 7 + k * 13) % 60) as i64
            };
            run.started_at = Some(finished - Duration::seconds(secs));
            run.finished_at = Some(finished);
            run.stage = Some("Test".into());
            run.commit = Some(format!("{:040x}", p * 1000 + k));
            run.tests = Some(TestCounts {
                total: 800,
                failed: if abnormal { 40 } else { (k % 3) as u64 },
                skipped: 4,
            });
            if abnormal {
                run.log_excerpt = Some(log.clone());
            }
            let pk = tx
                .upsert_run(&run, RunSource::Generic, finished)
                .await
                .expect("run")
                .pk;
            tx.set_verdict(pk, &verdict(if abnormal { 0.7 } else { 0.0 }))
                .await
                .expect("verdict");
            last = Some((pk, run, finished));
        }
        if p < INCIDENTS {
            let (pk, run, at) = last.expect("runs");
            seed_incident(&mut tx, p, pk, &run, at).await;
        }
        tx.commit().await.expect("commit");
    }
}

async fn seed_incident(
    tx: &mut pipemedic::store::WriteTx,
    p: usize,
    pk: i64,
    run: &Run,
    at: chrono::DateTime<Utc>,
) {
    let name = pipeline(p);
    let anomaly = tx
        .open_or_extend_anomaly(&name, pk, &verdict(0.7), at)
        .await
        .expect("anomaly");
    let v = Verdict {
        anomaly_id: Some(anomaly),
        ..verdict(0.7)
    };
    tx.set_verdict(pk, &v).await.expect("verdict");
    let id = tx
        .insert_incident(
            &NewIncident {
                pipeline: &name,
                run_pk: pk,
                run,
                verdict: &v,
                route: None,
                silenced: false,
            },
            at,
        )
        .await
        .expect("incident");
    tx.audit(
        at,
        "incident_opened",
        &format!("incident/{id}"),
        "pipemedic",
        &json!({"pipeline": name}),
    )
    .await
    .expect("audit");
    if p % 10 != 0 {
        return;
    }
    let plan_id = tx
        .insert_plan(
            &NewPlan {
                anomaly_id: anomaly,
                incident_id: Some(id),
                backend: "offline".into(),
                plan: None,
                validated: Some(json!({
                    "incident_id": id.to_string(),
                    "summary": "Retry the Test stage",
                    "suspected_cause": "a flaky integration test",
                    "confidence": 0.7,
                    "steps": [{
                        "playbook": "flaky-tests", "playbook_title": "Flaky tests",
                        "action": "retry", "kind": "codepipeline.retry_stage",
                        "target": {"pipeline": name}, "params": {"stage": "Test"},
                        "risk": "low", "why": "the failure looks flaky"
                    }],
                    "risk": "low", "stated_risk": "low", "rule_based": true
                })),
                errors: Vec::new(),
                input_tokens: 0,
                output_tokens: 0,
            },
            at,
        )
        .await
        .expect("plan");
    let request = tx
        .create_approval_request(
            &NewApprovalRequest {
                plan_ref: Some(format!("plan {plan_id}")),
                incident_ref: id.to_string(),
                pipeline: name.clone(),
                run_id: run.run_id.clone(),
                commit_author: None,
                steps: vec![StepPolicy {
                    step_no: 1,
                    kind: "codepipeline.retry_stage".into(),
                    risk: Risk::Low,
                    approval: ApprovalPolicy::for_risk(Risk::Low),
                    delay_s: None,
                }],
                created_at: at,
                expires_at: at + Duration::minutes(30),
                status: RequestStatus::Pending,
            },
            &[NewExecution {
                step_no: 1,
                kind: "codepipeline.retry_stage".into(),
                call: json!({"kind": "codepipeline.retry_stage", "pipeline": name}),
                dry_run: "would retry stage Test".into(),
            }],
        )
        .await
        .expect("approval request");
    tx.record_vote(
        request,
        &Vote {
            approver: Approver::new("slack", "U0ALICE"),
            event_id: format!("ev-{p}"),
            choice: Choice::Approve,
            via: Via::Reaction,
            at: at + Duration::minutes(3),
        },
        true,
        "approved",
    )
    .await
    .expect("vote");
}

/// Latency percentiles of `REQUESTS` sequential GETs of `path`, and the
/// size of the last answer's body.
async fn measure(client: &reqwest::Client, url: &str, cookie: &str) -> (Vec<StdDuration>, usize) {
    let get = || async {
        let started = Instant::now();
        let res = client
            .get(url)
            .header("cookie", cookie)
            .send()
            .await
            .expect("request");
        assert!(res.status().is_success(), "{url}: {}", res.status());
        let body = res.bytes().await.expect("body");
        (started.elapsed(), body.len())
    };
    for _ in 0..WARM_UP {
        get().await;
    }
    let mut times = Vec::with_capacity(REQUESTS);
    let mut size = 0;
    for _ in 0..REQUESTS {
        let (t, n) = get().await;
        times.push(t);
        size = n;
    }
    times.sort();
    (times, size)
}

fn at(times: &[StdDuration], q: f64) -> f64 {
    let i = ((times.len() - 1) as f64 * q).round() as usize;
    times[i].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("console.db").display());
    let mut loaded = loaded(&url);
    loaded.secrets.read_token = Some(Secret::new(READ_TOKEN));
    loaded.config.detector.retrain_interval_h = 0;

    let started = Instant::now();
    let store = Store::connect(&url, 4).await.expect("store");
    build_store(&store).await;
    let incident = store
        .incidents(false, Some(&pipeline(10)), 1)
        .await
        .expect("incidents")
        .first()
        .map_or(1, |i| i.id);
    drop(store);
    println!(
        "pipemedic console benchmark (SQLite): {PIPELINES} pipelines, {} runs, {INCIDENTS} incidents; store built in {:.1} s",
        PIPELINES * RUNS_PER_PIPELINE,
        started.elapsed().as_secs_f64()
    );

    let app = Application::build(loaded).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let signed_in = client
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={READ_TOKEN}"))
        .send()
        .await
        .expect("sign in");
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string();

    let (health, _) = measure(&client, &format!("{base}/healthz"), "").await;
    let (h50, h99) = (at(&health, 0.5), at(&health, 0.99));
    println!(
        "{:<28} p50 {h50:>8.2} ms  p99 {h99:>8.2} ms  (baseline)",
        "/healthz"
    );
    let pages = [
        "/ui".to_string(),
        format!("/ui/pipelines/{}", pipeline(500)),
        "/ui/incidents".to_string(),
        format!("/ui/incidents/{incident}"),
        "/ui/audit".to_string(),
    ];
    let mut too_big = Vec::new();
    for page in &pages {
        let (times, size) = measure(&client, &format!("{base}{page}"), &cookie).await;
        let (p50, p99) = (at(&times, 0.5), at(&times, 0.99));
        println!(
            "{page:<28} p50 {p50:>8.2} ms  p99 {p99:>8.2} ms  {:>7.1}x /healthz (p50)  {:>6.1} KB",
            p50 / h50,
            size as f64 / 1024.0
        );
        if size >= MAX_PAGE_BYTES {
            too_big.push(page.clone());
        }
    }
    stop.cancel();
    assert!(too_big.is_empty(), "pages over 100 KB: {too_big:?}");
}
