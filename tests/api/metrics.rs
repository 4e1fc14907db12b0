//! `GET /metrics` of the running app: the whole exposition is valid
//! Prometheus text; the per-route request counters and latency histograms
//! move with requests and are labelled by route template, never by raw
//! path; the store gauges follow incidents, the chat outbox and approval
//! requests; a store that fails or stalls does not hang the scrape. And the
//! access log line of a request carries no path, query string, header or
//! body.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipemedic::approvals::{RequestStatus, StepPolicy};
use pipemedic::clock::Clock;
use pipemedic::domain::IncidentStatus;
use pipemedic::metrics::exposition::{self, Family};
use pipemedic::playbooks::{ApprovalPolicy, Risk};
use pipemedic::store::{NewApprovalRequest, NewOutbox, OutboxKind};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, Db, TestApp, READ_TOKEN};
use crate::incidents::{abnormal, send};
use crate::on_both_databases;

/// Scrapes `/metrics` and reads it strictly.
async fn scrape(app: &TestApp) -> Vec<Family> {
    let text = app.metrics_text().await;
    exposition::parse(&text).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{text}"))
}

/// The value of the sample `name` whose labels are exactly `labels`.
fn value(families: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .flat_map(|f| &f.samples)
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.label(k) == Some(*v))
        })
        .map(|s| s.value)
}

fn run(pipeline: &str, run_id: &str) -> String {
    json!({"pipeline": pipeline, "run_id": run_id, "status": "succeeded",
           "started_at": "2026-11-25T11:00:00Z", "finished_at": "2026-11-25T11:07:00Z"})
    .to_string()
}

async fn route_metrics_move_with_requests(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let runs = [("route", "/v1/runs"), ("method", "POST"), ("status", "200")];
    let before = scrape(&app).await;
    assert_eq!(value(&before, "pipemedic_http_requests_total", &runs), None);

    let res = app.post_runs(run("billing/deploy", "r1")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .http
        .get(app.url("/v1/pipelines/billing%2Fdeploy/health?verbose=1"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .http
        .get(app.url("/v1/pipelines/billing%2Fdeploy/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    for path in ["/no/such/route/1", "/no/such/route/2"] {
        let res = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }

    let after = scrape(&app).await;
    assert_eq!(
        value(&after, "pipemedic_http_requests_total", &runs),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "pipemedic_http_request_duration_seconds_count",
            &runs
        ),
        Some(1.0)
    );
    let inf = [runs[0], runs[1], runs[2], ("le", "+Inf")];
    assert_eq!(
        value(
            &after,
            "pipemedic_http_request_duration_seconds_bucket",
            &inf
        ),
        Some(1.0)
    );
    assert!(
        value(&after, "pipemedic_http_request_duration_seconds_sum", &runs)
            .is_some_and(|s| s > 0.0)
    );
    let health = "/v1/pipelines/{name}/health";
    for (status, n) in [("200", 1.0), ("401", 1.0)] {
        let labels = [("route", health), ("method", "GET"), ("status", status)];
        assert_eq!(
            value(&after, "pipemedic_http_requests_total", &labels),
            Some(n),
            "{status}"
        );
    }
    let unmatched = [("route", "unmatched"), ("method", "GET"), ("status", "404")];
    assert_eq!(
        value(&after, "pipemedic_http_requests_total", &unmatched),
        Some(2.0)
    );
    // The first scrape is counted by the second.
    let scrapes = [("route", "/metrics"), ("method", "GET"), ("status", "200")];
    assert_eq!(
        value(&after, "pipemedic_http_requests_total", &scrapes),
        Some(1.0)
    );
    // Rejections keep their own counter, by route template and reason.
    assert_eq!(
        value(
            &after,
            "pipemedic_requests_rejected_total",
            &[("route", health), ("reason", "unauthorized")]
        ),
        Some(1.0)
    );
    // No pipeline name, raw path or query string became a label value.
    for family in after
        .iter()
        .filter(|f| f.name.starts_with("pipemedic_http_"))
    {
        for sample in &family.samples {
            for (_, v) in &sample.labels {
                assert!(
                    !v.contains("billing") && !v.contains("/no/such") && !v.contains('?'),
                    "{sample:?}"
                );
            }
        }
    }
}

async fn exposition_is_valid_prometheus_text(db: Db) {
    let app = spawn_app(db).await.unwrap();
    app.post_runs(run("checkout-service", "r1")).await;
    app.post_runs("{not json").await;
    let res = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = res.text().await.unwrap();
    let families =
        exposition::parse(&text).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{text}"));
    let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
    for name in [
        "pipemedic_runs_ingested_total",
        "pipemedic_requests_rejected_total",
        "pipemedic_http_requests_total",
        "pipemedic_http_request_duration_seconds",
        "pipemedic_incidents_open",
        "pipemedic_chat_outbox_depth",
        "pipemedic_chat_outbox_oldest_age_seconds",
        "pipemedic_approvals_pending",
        "pipemedic_models_cached",
        "pipemedic_model_cache_hits_total",
        "pipemedic_model_cache_misses_total",
        "pipemedic_build_info",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let build = families
        .iter()
        .find(|f| f.name == "pipemedic_build_info")
        .unwrap();
    assert_eq!(build.samples.len(), 1);
    assert_eq!(build.samples[0].value, 1.0);
    assert_eq!(
        build.samples[0].label("version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    if cfg!(target_os = "linux") {
        let rss = value(&families, "process_resident_memory_bytes", &[]);
        assert!(rss.is_some_and(|b| b > 1_000_000.0), "{rss:?}");
        let fds = value(&families, "process_open_fds", &[]);
        assert!(fds.is_some_and(|n| n >= 3.0), "{fds:?}");
        let start = value(&families, "process_start_time_seconds", &[]);
        // The process started after this test was written and before now.
        assert!(start.is_some_and(|s| s > 1.7e9), "{start:?}");
        assert!(value(&families, "process_cpu_seconds_total", &[]).is_some());
    }
    // The run was scored: its model was loaded into the cache once.
    let mut loaded = None;
    for _ in 0..200 {
        let families = scrape(&app).await;
        loaded = value(&families, "pipemedic_model_loads_total", &[("from", "new")]);
        if loaded.is_some() {
            assert_eq!(value(&families, "pipemedic_models_cached", &[]), Some(1.0));
            assert_eq!(
                value(&families, "pipemedic_model_cache_misses_total", &[]),
                Some(1.0)
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(loaded, Some(1.0));
}

async fn store_gauges_follow_the_store(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let families = scrape(&app).await;
    for status in IncidentStatus::ALL.into_iter().filter(|s| !s.is_closed()) {
        assert_eq!(
            value(
                &families,
                "pipemedic_incidents_open",
                &[("status", status.as_str())]
            ),
            Some(0.0),
            "{status:?}"
        );
    }
    for platform in ["slack", "discord", "console"] {
        let labels = [("platform", platform)];
        assert_eq!(
            value(&families, "pipemedic_chat_outbox_depth", &labels),
            Some(0.0)
        );
        assert_eq!(
            value(
                &families,
                "pipemedic_chat_outbox_oldest_age_seconds",
                &labels
            ),
            Some(0.0)
        );
    }
    assert_eq!(
        value(&families, "pipemedic_approvals_pending", &[]),
        Some(0.0)
    );

    // An abnormal run opens an incident.
    let scored = abnormal(&app, "checkout-service", "slow-1").await;
    send(&app, scored).await;
    let mut incident = None;
    for _ in 0..300 {
        incident = app
            .store
            .incidents(true, Some("checkout-service"), 1)
            .await
            .unwrap()
            .pop();
        if incident.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let incident = incident.expect("an incident was opened");
    let open = [("status", "open")];
    assert_eq!(
        value(&scrape(&app).await, "pipemedic_incidents_open", &open),
        Some(1.0)
    );

    // Two chat deliveries queued 5 and 2 minutes ago, nobody to send them.
    let now = app.clock.now();
    let mut tx = app.store.begin_write().await.unwrap();
    for minutes in [5, 2] {
        let new = NewOutbox {
            incident_id: Some(incident.id),
            platform: "slack".into(),
            channel: "C0ALERTS".into(),
            kind: OutboxKind::ThreadReply,
            payload: json!({"text": "queued"}),
        };
        tx.enqueue(&new, now - chrono::Duration::minutes(minutes))
            .await
            .unwrap();
    }
    // One plan waiting for votes, and one already decided.
    for status in [RequestStatus::Pending, RequestStatus::Rejected] {
        let request = NewApprovalRequest {
            plan_ref: None,
            incident_ref: incident.id.to_string(),
            pipeline: "checkout-service".into(),
            run_id: "slow-1".into(),
            commit_author: None,
            steps: vec![StepPolicy {
                step_no: 1,
                kind: "codepipeline.retry_stage".into(),
                risk: Risk::Low,
                approval: ApprovalPolicy::for_risk(Risk::Low),
                delay_s: None,
            }],
            created_at: now,
            expires_at: now + chrono::Duration::minutes(30),
            status,
        };
        tx.create_approval_request(&request, &[]).await.unwrap();
    }
    tx.set_incident_status(incident.id, IncidentStatus::AwaitingApproval, now)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let families = scrape(&app).await;
    assert_eq!(
        value(&families, "pipemedic_incidents_open", &open),
        Some(0.0)
    );
    assert_eq!(
        value(
            &families,
            "pipemedic_incidents_open",
            &[("status", "awaiting_approval")]
        ),
        Some(1.0)
    );
    let slack = [("platform", "slack")];
    assert_eq!(
        value(&families, "pipemedic_chat_outbox_depth", &slack),
        Some(2.0)
    );
    assert_eq!(
        value(
            &families,
            "pipemedic_chat_outbox_oldest_age_seconds",
            &slack
        ),
        Some(300.0)
    );
    assert_eq!(
        value(
            &families,
            "pipemedic_chat_outbox_depth",
            &[("platform", "discord")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&families, "pipemedic_approvals_pending", &[]),
        Some(1.0)
    );

    // The outbox ages with the clock.
    app.clock_advance_minutes(10);
    assert_eq!(
        value(
            &scrape(&app).await,
            "pipemedic_chat_outbox_oldest_age_seconds",
            &slack
        ),
        Some(900.0)
    );

    // Resolved, the incident leaves the gauge.
    let mut tx = app.store.begin_write().await.unwrap();
    tx.set_incident_status(incident.id, IncidentStatus::Resolved, app.clock.now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let families = scrape(&app).await;
    for status in ["open", "awaiting_approval"] {
        assert_eq!(
            value(&families, "pipemedic_incidents_open", &[("status", status)]),
            Some(0.0)
        );
    }

    // With the store gone, the scrape still answers, with the last values,
    // and the failed read is counted.
    app.store.close().await;
    let families = scrape(&app).await;
    assert_eq!(
        value(&families, "pipemedic_chat_outbox_depth", &slack),
        Some(2.0)
    );
    assert_eq!(
        value(
            &families,
            "pipemedic_background_errors_total",
            &[("task", "metrics_store_gauges")]
        ),
        Some(1.0)
    );
}

on_both_databases!(
    route_metrics_move_with_requests,
    exposition_is_valid_prometheus_text,
    store_gauges_follow_the_store,
);

/// A store that does not answer (a table locked by another transaction)
/// delays the scrape by the refresh timeout at most; the last values are
/// served and the abandoned read counted. PostgreSQL only: there a lock
/// makes a reader wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_does_not_hang_the_scrape() {
    if crate::helpers::postgres_url().is_none() {
        eprintln!("PIPEMEDIC_TEST_POSTGRES_URL not set; skipped");
        return;
    }
    let app = spawn_app(Db::Postgres).await.unwrap();
    let families = scrape(&app).await;
    assert_eq!(
        value(&families, "pipemedic_approvals_pending", &[]),
        Some(0.0)
    );
    let mut locker = <sqlx::AnyConnection as sqlx::Connection>::connect(&app._db.url)
        .await
        .unwrap();
    sqlx::Executor::execute(&mut locker, "BEGIN").await.unwrap();
    sqlx::Executor::execute(&mut locker, "LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // Without the refresh timeout this request would wait for the lock,
    // which is held until after it: the client's limit turns a hang into a
    // failure rather than measuring speed.
    let res = app
        .http
        .get(app.url("/metrics"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("the scrape answers while the store is stalled");
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    let families = exposition::parse(&text).unwrap();
    assert_eq!(
        value(&families, "pipemedic_approvals_pending", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &families,
            "pipemedic_background_errors_total",
            &[("task", "metrics_store_gauges")]
        ),
        Some(1.0)
    );
    sqlx::Executor::execute(&mut locker, "ROLLBACK")
        .await
        .unwrap();
}

/// Collects what the access log writes, for one thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// One line per request with method, route template, status and time;
/// nothing of the path, query string, headers or body. On a one-thread
/// runtime, so the app's tasks log to this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn access_log_has_the_route_template_and_no_request_data() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "pipemedic::access=debug",
        ))
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = spawn_app(Db::Sqlite).await.unwrap();
    let body = json!({"pipeline": "secret-pipeline-name", "run_id": "r1", "status": "succeeded",
                      "started_at": "2026-11-25T11:00:00Z", "finished_at": "2026-11-25T11:07:00Z",
                      "log_excerpt": "password=hunter2"});
    let res = app.post_runs(body.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .http
        .get(app.url("/v1/pipelines/secret-pipeline-name/health?token=query-secret"))
        .bearer_auth(READ_TOKEN)
        .header("x-custom", "header-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.metrics_text().await;
    drop(app);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let access: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("pipemedic::access"))
        .collect();
    assert_eq!(access.len(), 3, "{text}");
    assert!(access[0].contains(" INFO "), "{}", access[0]);
    assert!(access[0].contains("method=POST route=/v1/runs status=200 ms="));
    assert!(access[1].contains(" INFO "), "{}", access[1]);
    assert!(access[1].contains("method=GET route=/v1/pipelines/{name}/health status=200 ms="));
    // Probes are logged at debug.
    assert!(access[2].contains(" DEBUG "), "{}", access[2]);
    assert!(access[2].contains("method=GET route=/metrics status=200 ms="));
    for secret in [
        "secret-pipeline-name",
        "hunter2",
        "query-secret",
        "header-secret",
        READ_TOKEN,
        crate::helpers::INGEST_TOKEN,
    ] {
        assert!(
            access.iter().all(|l| !l.contains(secret)),
            "{secret} logged:\n{text}"
        );
    }
}
