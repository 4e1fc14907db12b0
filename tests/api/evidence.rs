//! Evidence of abnormal runs, through the real CloudWatch Logs and
//! CloudWatch SDK clients against their local stand-ins: success (a
//! redacted, bounded excerpt and the build's CPU/memory stored on the
//! run), a missing permission and a deleted log (said once, the incident
//! goes on), throttling (retried by the SDK), an oversized log
//! (bounded) and a polled run's console link (the log in CodeBuild's
//! default group and stream), on SQLite and PostgreSQL.

use std::sync::Arc;

use pipemedic::config::{AwsConfig, EvidenceConfig};
use pipemedic::domain::{ResourceMetrics, Run, RunSource, RunStatus};
use pipemedic::evidence::EvidenceService;
use pipemedic::metrics::Metrics;
use pipemedic::redact::Redactor;
use pipemedic::standin::cloudwatch::{FakeCloudWatch, FakeCloudWatchLogs};
use pipemedic::store::Store;

use crate::helpers::{t, test_aws_settings, Db, TestDb};

const GROUP: &str = "/aws/codebuild/checkout-service-test";
const STREAM: &str = "5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b";
const BUILD: &str = "checkout-service-test:5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b";

struct Setup {
    _db: TestDb,
    store: Store,
    logs: FakeCloudWatchLogs,
    cloudwatch: FakeCloudWatch,
    metrics: Arc<Metrics>,
    service: EvidenceService,
    run_pk: i64,
    aws: pipemedic::aws::AwsSettings,
}

fn failed_run(resources: Option<ResourceMetrics>) -> Run {
    let mut run = Run::new("checkout-service", "exec-1", RunStatus::Failed);
    run.started_at = Some(t("2026-11-20T10:00:00Z"));
    run.finished_at = Some(t("2026-11-20T10:07:02Z"));
    run.stage = Some("Test".into());
    run.resources = resources;
    run.log_url = Some(format!(
        "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEvent:group={GROUP};stream={STREAM}"
    ));
    run
}

async fn setup(db: Db, run: Run) -> Option<Setup> {
    let db = TestDb::new(db).await?;
    let store = db.store().await;
    let mut tx = store.begin_write().await.unwrap();
    let pk = tx
        .upsert_run(&run, RunSource::Aws, t("2026-11-20T10:08:00Z"))
        .await
        .unwrap()
        .pk;
    tx.commit().await.unwrap();
    let logs = FakeCloudWatchLogs::start().await;
    let cloudwatch = FakeCloudWatch::start().await;
    let aws = test_aws_settings(&AwsConfig {
        endpoints: pipemedic::config::AwsEndpoints {
            logs: logs.url(),
            cloudwatch: cloudwatch.url(),
            ..Default::default()
        },
        ..AwsConfig::default()
    });
    let metrics = Arc::new(Metrics::new());
    let service = evidence_service(&aws, &store, &metrics);
    Some(Setup {
        _db: db,
        store,
        logs,
        cloudwatch,
        metrics,
        service,
        run_pk: pk,
        aws,
    })
}

fn evidence_service(
    aws: &pipemedic::aws::AwsSettings,
    store: &Store,
    metrics: &Arc<Metrics>,
) -> EvidenceService {
    EvidenceService::new(
        EvidenceConfig::default(),
        aws,
        store.clone(),
        metrics.clone(),
        Arc::new(Redactor::builtin().unwrap()),
    )
}

impl Setup {
    /// The service of a new process on the same store (a restart, or
    /// another replica).
    fn restarted(&self) -> EvidenceService {
        evidence_service(&self.aws, &self.store, &self.metrics)
    }
}

fn build_log(lines: usize) -> Vec<String> {
    let mut log: Vec<String> = (0..lines)
        .map(|i| {
            format!(
                "[Container] 2026/11/20 10:05:{:02} step {i}: running test module {i} of the suite",
                i % 60
            )
        })
        .collect();
    log.insert(
        lines / 3,
        "ERROR: cart total mismatch in tests/test_cart.py::test_total (expected 42, got 41)".into(),
    );
    log.push("export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE".into());
    log.push("[Container] 2026/11/20 10:07:01 Phase complete: BUILD State: FAILED".into());
    log
}

/// Whether `pipemedic_evidence_fetches_total{source, outcome}` counted.
fn counter(metrics: &Metrics, source: &str, outcome: &str) -> bool {
    metrics.render().lines().any(|l| {
        l.starts_with("pipemedic_evidence_fetches_total{")
            && l.contains(&format!("source=\"{source}\""))
            && l.contains(&format!("outcome=\"{outcome}\""))
            && !l.ends_with(" 0")
    })
}

crate::on_both_databases!(the_failing_log_and_usage_are_stored_redacted_and_bounded);

async fn the_failing_log_and_usage_are_stored_redacted_and_bounded(db: Db) {
    let Some(s) = setup(db, failed_run(None)).await else {
        return;
    };
    s.logs.put_log(GROUP, STREAM, &build_log(3000));
    s.cloudwatch.put_usage(BUILD, 97.5, 3900.0);
    let notes = s.service.gather(7, s.run_pk).await.unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let run = s.store.run_by_pk(s.run_pk).await.unwrap().unwrap().run;
    let excerpt = run.log_excerpt.expect("an excerpt");
    assert!(excerpt.len() <= 4096, "{}", excerpt.len());
    assert!(excerpt.contains("ERROR: cart total mismatch"), "{excerpt}");
    assert!(excerpt.ends_with("Phase complete: BUILD State: FAILED"));
    assert!(
        !excerpt.contains("AKIAIOSFODNN7EXAMPLE"),
        "redacted before storing"
    );
    assert_eq!(
        run.resources,
        Some(ResourceMetrics {
            cpu_peak_pct: Some(97.5),
            mem_peak_mb: Some(3900.0)
        })
    );
    let calls = s.logs.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].operation, "GetLogEvents");
    assert_eq!(calls[0].body["logGroupName"], GROUP);
    assert_eq!(calls[0].body["startFromHead"], false);
    let cw = s.cloudwatch.calls();
    assert_eq!(cw.len(), 1, "one GetMetricData call");
    let queries = cw[0].body["MetricDataQueries"].as_array().unwrap();
    assert_eq!(queries.len(), 2);
    assert!(queries[0]["Expression"]
        .as_str()
        .unwrap()
        .contains(&format!("BuildId=\"{BUILD}\"")));
    assert!(counter(&s.metrics, "cloudwatch_logs", "ok"));
    assert!(counter(&s.metrics, "cloudwatch", "ok"));
}

#[tokio::test]
async fn a_missing_permission_is_said_once_and_fails_nothing() {
    let Some(s) = setup(Db::Sqlite, failed_run(None)).await else {
        return;
    };
    s.logs.put_log(GROUP, STREAM, &build_log(10));
    s.logs
        .fail_next_times("GetLogEvents", 2, 400, "AccessDeniedException");
    s.cloudwatch
        .fail_next_times("GetMetricData", 2, 403, "AccessDenied");
    let notes = s.service.gather(7, s.run_pk).await.unwrap();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("access denied") && notes[0].contains(GROUP));
    assert!(notes[1].contains("CloudWatch") && notes[1].contains("access denied"));
    let again = s.service.gather(7, s.run_pk).await.unwrap();
    assert!(again.is_empty(), "said once per incident: {again:?}");
    assert_eq!(s.logs.calls().len(), 2, "a permission error is not retried");
    let run = s.store.run_by_pk(s.run_pk).await.unwrap().unwrap().run;
    assert_eq!(run.log_excerpt, None);
    assert!(counter(&s.metrics, "cloudwatch_logs", "denied"));
    assert!(counter(&s.metrics, "cloudwatch", "denied"));
    // Another process (a restart, another replica) does not say it again:
    // what was said is in the audit log.
    let restarted = s.restarted();
    s.logs
        .fail_next_times("GetLogEvents", 1, 400, "AccessDeniedException");
    s.cloudwatch
        .fail_next_times("GetMetricData", 1, 403, "AccessDenied");
    let after_restart = restarted.gather(7, s.run_pk).await.unwrap();
    assert!(
        after_restart.is_empty(),
        "said once, across processes: {after_restart:?}"
    );
    let audited = s
        .store
        .audit_for(&["incident/7".to_string()])
        .await
        .unwrap();
    let kinds: Vec<_> = audited
        .iter()
        .filter(|e| e.kind == "evidence.unavailable")
        .map(|e| e.detail["source"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(kinds, ["cloudwatch_logs", "cloudwatch"]);
    // A different incident hears of it.
    s.logs
        .fail_next_times("GetLogEvents", 1, 400, "AccessDeniedException");
    s.cloudwatch
        .fail_next_times("GetMetricData", 1, 403, "AccessDenied");
    assert_eq!(restarted.gather(8, s.run_pk).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_polled_runs_console_link_finds_the_log_in_codebuilds_default_place() {
    // A run polled from CodePipeline links its build's console page.
    let mut run = failed_run(None);
    run.log_url = Some(format!(
        "https://eu-west-1.console.aws.amazon.com/codesuite/codebuild/projects/checkout-service-test/build/{}/?region=eu-west-1",
        BUILD.replace(':', "%3A")
    ));
    let Some(s) = setup(Db::Sqlite, run).await else {
        return;
    };
    s.logs.put_log(GROUP, STREAM, &build_log(50));
    s.cloudwatch.put_usage(BUILD, 55.0, 2100.0);
    let notes = s.service.gather(7, s.run_pk).await.unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let calls = s.logs.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body["logGroupName"], GROUP);
    assert_eq!(calls[0].body["logStreamName"], STREAM);
    let run = s.store.run_by_pk(s.run_pk).await.unwrap().unwrap().run;
    assert!(run
        .log_excerpt
        .expect("an excerpt")
        .contains("ERROR: cart total mismatch"));
    assert_eq!(run.resources.unwrap().cpu_peak_pct, Some(55.0));
}

#[tokio::test]
async fn a_deleted_log_is_said_and_the_usage_still_read() {
    let Some(s) = setup(Db::Sqlite, failed_run(None)).await else {
        return;
    };
    s.cloudwatch.put_usage(BUILD, 40.0, 1000.0);
    let notes = s.service.gather(9, s.run_pk).await.unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("not found"), "{}", notes[0]);
    let run = s.store.run_by_pk(s.run_pk).await.unwrap().unwrap().run;
    assert_eq!(run.log_excerpt, None);
    assert_eq!(run.resources.unwrap().mem_peak_mb, Some(1000.0));
    assert!(counter(&s.metrics, "cloudwatch_logs", "not_found"));
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk() {
    let Some(s) = setup(Db::Sqlite, failed_run(None)).await else {
        return;
    };
    s.logs.put_log(GROUP, STREAM, &build_log(20));
    s.logs
        .fail_next_times("GetLogEvents", 2, 400, "ThrottlingException");
    s.cloudwatch
        .fail_next_times("GetMetricData", 1, 400, "ThrottlingException");
    s.cloudwatch.put_usage(BUILD, 50.0, 2000.0);
    let notes = s.service.gather(3, s.run_pk).await.unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(s.logs.calls().len(), 3, "two throttled, the third answered");
    assert_eq!(s.cloudwatch.calls().len(), 2);
    let run = s.store.run_by_pk(s.run_pk).await.unwrap().unwrap().run;
    assert!(run
        .log_excerpt
        .unwrap()
        .contains("ERROR: cart total mismatch"));

    // Throttled through every attempt: counted, not said, nothing stored.
    let Some(s) = setup(Db::Sqlite, failed_run(None)).await else {
        return;
    };
    s.logs.put_log(GROUP, STREAM, &build_log(20));
    s.logs
        .fail_next_times("GetLogEvents", 3, 400, "ThrottlingException");
    let notes = s.service.gather(3, s.run_pk).await.unwrap();
    assert!(notes.iter().all(|n| !n.contains("log of")), "{notes:?}");
    assert!(counter(&s.metrics, "cloudwatch_logs", "throttled"));
}

#[tokio::test]
async fn an_oversized_log_keeps_a_bounded_excerpt() {
    let reported = ResourceMetrics {
        cpu_peak_pct: Some(60.0),
        mem_peak_mb: None,
    };
    let Some(s) = setup(Db::Sqlite, failed_run(Some(reported))).await else {
        return;
    };
    // About 2.4 MB: more than one GetLogEvents answer carries.
    let mut log = build_log(24_000);
    log.iter_mut()
        .for_each(|l| l.push_str(&" padding".repeat(3)));
    s.logs.put_log(GROUP, STREAM, &log);
    s.service.gather(1, s.run_pk).await.unwrap();
    let run = s.store.run_by_pk(s.run_pk).await.unwrap().unwrap().run;
    let excerpt = run.log_excerpt.unwrap();
    assert!(excerpt.len() <= 4096, "{}", excerpt.len());
    assert_eq!(excerpt.lines().last(), log.last().map(String::as_str));
    assert!(excerpt.contains("Phase complete: BUILD State: FAILED"));
    assert_eq!(run.resources, Some(reported), "reported usage is kept");
    assert!(
        s.cloudwatch.calls().is_empty(),
        "no CloudWatch call when the run reported its usage"
    );
}

#[tokio::test]
async fn a_run_without_a_codebuild_log_loads_no_aws() {
    let mut run = failed_run(None);
    run.log_url = Some("https://github.com/acme/shop/actions/runs/1".into());
    let Some(s) = setup(Db::Sqlite, run).await else {
        return;
    };
    assert!(s.service.gather(1, s.run_pk).await.unwrap().is_empty());
    assert!(s.logs.calls().is_empty() && s.cloudwatch.calls().is_empty());
}
