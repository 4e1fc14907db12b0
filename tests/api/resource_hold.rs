//! CodeBuild CPU and memory read from the CloudWatch stand-in before a
//! CodePipeline run is scored (`evidence::resources`), through the real SDK
//! client: the run is scored with the figures, the figures of several held
//! runs come in one `GetMetricData` call, a run whose figures never arrive
//! is scored after the wait, a later run of the pipeline waits behind a
//! held one, a held run is scored after a restart on the same store, and a
//! refused or throttled call still scores the run.
//!
//! The wait is measured on a manual clock and the poll is short, so
//! nothing here sleeps for long; detection hands every scored run (as the
//! model saw it) to a channel the tests read.

use std::sync::Arc;
use std::time::Duration;

use pipemedic::clock::{Clock, ManualClock};
use pipemedic::config::AwsConfig;
use pipemedic::domain::{ResourceMetrics, Run, RunSource, RunStatus, ScoredRun};
use pipemedic::evidence::resources::{HoldSettings, ResourceHold};
use pipemedic::ingest::codepipeline_poll::CodePipelinePoller;
use pipemedic::ingest::{store_runs, IngestService};
use pipemedic::metrics::Metrics;
use pipemedic::redact::Redactor;
use pipemedic::scoring::ownership::OwnershipSettings;
use pipemedic::scoring::{DetectionService, DetectionSettings};
use pipemedic::standin::cloudwatch::FakeCloudWatch;
use pipemedic::store::Store;
use tokio::sync::mpsc;

use crate::fakes::codepipeline::{ExecutionSpec, FakeCodePipeline};
use crate::helpers::{t, test_aws_settings, Db, TestDb};

const CP_FAILED: &str = include_str!("../fixtures/aws/codepipeline-failed-execution.json");
const CB_FAILED: &str = include_str!("../fixtures/aws/codebuild-pipeline-test-failed.json");
const FIXTURE_BUILD: &str = "checkout-service-test:5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b";

/// How long a test waits for something that should happen within a few polls.
const PATIENCE: Duration = Duration::from_secs(10);

struct Setup {
    _db: TestDb,
    store: Store,
    clock: Arc<ManualClock>,
    cloudwatch: FakeCloudWatch,
    aws: pipemedic::aws::AwsSettings,
    metrics: Arc<Metrics>,
    process: Process,
}

/// What one process runs: detection, the hold and ingest on one store.
struct Process {
    ingest: Arc<IngestService>,
    hold: ResourceHold,
    scored: mpsc::Receiver<ScoredRun>,
}

fn settings(poll: Duration) -> HoldSettings {
    HoldSettings {
        wait: chrono::Duration::minutes(5),
        poll,
        max_held: 100,
        timeout: Duration::from_secs(10),
    }
}

impl Setup {
    async fn new(db: Db, now: &str, hold: HoldSettings) -> Option<Self> {
        let db = TestDb::new(db).await?;
        let store = db.store().await;
        let clock = Arc::new(ManualClock::new(t(now)));
        let cloudwatch = FakeCloudWatch::start().await;
        let aws = test_aws_settings(&AwsConfig {
            endpoints: pipemedic::config::AwsEndpoints {
                cloudwatch: cloudwatch.url(),
                ..Default::default()
            },
            ..AwsConfig::default()
        });
        let metrics = Arc::new(Metrics::new());
        let process = start(&store, &clock, &aws, &metrics, hold);
        Some(Self {
            _db: db,
            store,
            clock,
            cloudwatch,
            aws,
            metrics,
            process,
        })
    }

    /// Stores runs as a CodePipeline source does and hands them on.
    async fn ingest(&self, runs: Vec<Run>) -> Vec<i64> {
        let mut runs = runs;
        let mut tx = self.store.begin_write().await.unwrap();
        let accepted = store_runs(
            &mut tx,
            RunSource::Aws,
            &mut runs,
            self.clock.now(),
            self.process.ingest.redaction(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        self.process
            .ingest
            .score_committed(RunSource::Aws, &accepted, &runs)
            .await;
        accepted.iter().map(|a| a.pk).collect()
    }

    /// The next scored run, as the model saw it.
    async fn next_scored(&mut self) -> ScoredRun {
        tokio::time::timeout(PATIENCE, self.process.scored.recv())
            .await
            .expect("a run scored in time")
            .expect("detection running")
    }

    /// Waits until the stand-in has received more than `n` calls.
    async fn calls_beyond(&self, n: usize) {
        tokio::time::timeout(PATIENCE, async {
            while self.cloudwatch.calls().len() <= n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("CloudWatch asked in time");
    }

    async fn verdict(&self, pk: i64) -> Option<pipemedic::domain::Verdict> {
        self.store.verdict_of(pk).await.unwrap()
    }

    /// Ingests a CodeBuild run of `web` that waits for its figures and a
    /// later one that reported them, held behind it; both are unscored.
    async fn hold_a_run_and_one_behind(&self) -> (i64, i64) {
        let held = self.ingest(vec![codebuild_run("web", 1)]).await[0];
        let mut behind = codebuild_run("web", 2);
        behind.resources = figures(20.0, 900.0);
        let behind = self.ingest(vec![behind]).await[0];
        assert_eq!(self.process.hold.held().await, 2);
        assert_eq!(self.verdict(held).await, None);
        (held, behind)
    }
}

fn start(
    store: &Store,
    clock: &Arc<ManualClock>,
    aws: &pipemedic::aws::AwsSettings,
    metrics: &Arc<Metrics>,
    hold: HoldSettings,
) -> Process {
    start_replica(store, clock, aws, metrics, hold, None)
}

/// [`start`], as one of several replicas on PostgreSQL when `ownership`
/// is set.
fn start_replica(
    store: &Store,
    clock: &Arc<ManualClock>,
    aws: &pipemedic::aws::AwsSettings,
    metrics: &Arc<Metrics>,
    hold: HoldSettings,
    ownership: Option<OwnershipSettings>,
) -> Process {
    let clock: Arc<dyn Clock> = clock.clone();
    let (tx, scored) = mpsc::channel(64);
    let detection = DetectionService::start(
        store.clone(),
        metrics.clone(),
        clock.clone(),
        DetectionSettings {
            ownership,
            ..DetectionSettings::default()
        },
        Some(tx),
    );
    let hold = ResourceHold::start(
        hold,
        aws,
        store.clone(),
        metrics.clone(),
        clock.clone(),
        detection.clone(),
    );
    let ingest = Arc::new(IngestService::with_hold(
        store.clone(),
        metrics.clone(),
        clock,
        Some(detection),
        Arc::new(Redactor::builtin().unwrap()),
        Some(hold.clone()),
    ));
    Process {
        ingest,
        hold,
        scored,
    }
}

/// A finished CodePipeline run whose build `n` is in CodeBuild project
/// `{pipeline}-build`, without CPU or memory.
fn codebuild_run(pipeline: &str, n: u32) -> Run {
    let mut run = Run::new(pipeline, format!("exec-{n}"), RunStatus::Succeeded);
    let end = t("2026-11-25T11:50:00Z") + chrono::Duration::minutes(i64::from(n));
    run.started_at = Some(end - chrono::Duration::seconds(300));
    run.finished_at = Some(end);
    run.log_url = Some(format!(
        "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEvent:group=/aws/codebuild/{pipeline}-build;stream={}",
        stream(pipeline, n)
    ));
    run
}

fn stream(pipeline: &str, n: u32) -> String {
    format!("{pipeline}-uuid-{n}")
}

fn build_id(pipeline: &str, n: u32) -> String {
    format!("{pipeline}-build:{}", stream(pipeline, n))
}

fn figures(cpu: f64, mem: f64) -> Option<ResourceMetrics> {
    Some(ResourceMetrics {
        cpu_peak_pct: Some(cpu),
        mem_peak_mb: Some(mem),
    })
}

/// Whether counter `name` has a non-zero series with all of `labels`.
fn counted(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> bool {
    metrics.render().lines().any(|l| {
        l.starts_with(&format!("{name}{{"))
            && labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            && !l.ends_with(" 0")
    })
}

/// The build ids a `GetMetricData` call asked about.
fn builds_asked(call: &pipemedic::standin::cloudwatch::Call) -> Vec<String> {
    let mut ids: Vec<String> = call.body["MetricDataQueries"]
        .as_array()
        .expect("queries")
        .iter()
        .filter_map(|q| {
            let e = q["Expression"].as_str()?;
            let (_, rest) = e.split_once("BuildId=\"")?;
            Some(rest.split('"').next()?.to_string())
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

crate::on_both_databases!(
    a_codepipeline_run_is_scored_with_its_codebuild_figures,
    a_held_run_is_scored_after_a_restart
);

async fn a_codepipeline_run_is_scored_with_its_codebuild_figures(db: Db) {
    let Some(mut s) = Setup::new(
        db,
        "2026-11-20T10:10:00Z",
        settings(Duration::from_millis(50)),
    )
    .await
    else {
        return;
    };
    // The pipeline's events and its failing build's, as EventBridge sends them.
    let mut events: Vec<serde_json::Value> = serde_json::from_str(CP_FAILED).unwrap();
    events.insert(13, serde_json::from_str(CB_FAILED).unwrap());
    for event in &events {
        let body = serde_json::to_vec(event).unwrap();
        let event = pipemedic::ingest::aws::parse_eventbridge(&body).unwrap();
        s.process.ingest.accept_aws_event(&event).await.unwrap();
    }
    let stored = s
        .store
        .get_run(
            "checkout-service",
            "3137f7cb-7cf7-4f0f-8b0c-5e0a1c2d3e4f",
            1,
        )
        .await
        .unwrap()
        .expect("the run is stored");
    assert_eq!(stored.run.status, RunStatus::Failed);
    assert_eq!(stored.run.resources, None);
    // CloudWatch has nothing yet: the run waits, unscored.
    s.calls_beyond(0).await;
    s.calls_beyond(1).await;
    assert_eq!(s.verdict(stored.pk).await, None, "held, not scored");
    assert_eq!(s.process.hold.held().await, 1);
    assert!(counted(
        &s.metrics,
        "pipemedic_evidence_fetches_total",
        &[("source", "cloudwatch"), ("outcome", "empty")]
    ));

    s.cloudwatch.put_usage(FIXTURE_BUILD, 88.5, 3072.0);
    let scored = s.next_scored().await;
    assert_eq!(scored.run_pk, stored.pk);
    assert_eq!(
        scored.run.resources,
        figures(88.5, 3072.0),
        "the model scored the run with CloudWatch's figures"
    );
    let after = s.store.run_by_pk(stored.pk).await.unwrap().unwrap().run;
    assert_eq!(after.resources, figures(88.5, 3072.0), "stored on the run");
    assert_eq!(
        after.stage.as_deref(),
        Some("Test"),
        "the rest is unchanged"
    );
    assert!(s.verdict(stored.pk).await.is_some());
    assert_eq!(s.process.hold.held().await, 0);
    assert!(counted(
        &s.metrics,
        "pipemedic_resource_waits_total",
        &[("outcome", "metrics")]
    ));
    let last = s.cloudwatch.calls().last().cloned().unwrap();
    assert_eq!(builds_asked(&last), [FIXTURE_BUILD]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_codepipeline_run_is_held_for_its_codebuild_figures() {
    // No poll of its own: the test says when.
    let Some(mut s) = Setup::new(
        Db::Sqlite,
        "2026-11-25T12:00:00Z",
        settings(Duration::from_secs(3600)),
    )
    .await
    else {
        return;
    };
    let build = "checkout-build:0e6c1a52-8f3b-4d7e-9a21-3c4b5d6e7f80";
    let codepipeline = FakeCodePipeline::start().await;
    codepipeline.add_execution(
        "checkout-service",
        ExecutionSpec::new("e-1", "Succeeded", t("2026-11-25T11:40:00Z"))
            .commit("sha-1", "A change")
            .action("Source", "Source", "Succeeded", 0, 10)
            .result("Fetched", "https://github.com/example/checkout/commit/sha-1")
            .action("Build", "Compile", "Succeeded", 12, 300)
            .result(
                "Build succeeded",
                "https://us-east-1.console.aws.amazon.com/codesuite/codebuild/projects/checkout-build/build/checkout-build%3A0e6c1a52-8f3b-4d7e-9a21-3c4b5d6e7f80/?region=us-east-1",
            ),
    );
    let mut aws = AwsConfig::default();
    aws.endpoints.codepipeline = codepipeline.url();
    let clients = test_aws_settings(&aws).load().await;
    let poller = CodePipelinePoller::new(
        &clients,
        s.process.ingest.clone(),
        vec!["checkout-service".to_string()],
    );
    assert_eq!(poller.poll_once().await.unwrap().stored(), 1);

    let stored = s
        .store
        .get_run("checkout-service", "e-1", 1)
        .await
        .unwrap()
        .expect("the polled run is stored");
    assert_eq!(stored.source, "codepipeline_poll");
    assert_eq!(stored.run.resources, None);
    assert_eq!(s.process.hold.held().await, 1, "held, not scored");
    assert_eq!(s.verdict(stored.pk).await, None);

    s.cloudwatch.put_usage(build, 61.0, 2048.0);
    s.process.hold.poll_now().await;
    let scored = s.next_scored().await;
    assert_eq!(scored.run_pk, stored.pk);
    assert_eq!(
        scored.run.resources,
        figures(61.0, 2048.0),
        "the model scored the run with CloudWatch's figures"
    );
    let calls = s.cloudwatch.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(builds_asked(&calls[0]), [build]);
    let after = s.store.run_by_pk(stored.pk).await.unwrap().unwrap().run;
    assert_eq!(after.resources, figures(61.0, 2048.0), "stored on the run");
    assert!(s.verdict(stored.pk).await.is_some());
    assert_eq!(s.process.hold.held().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_figures_of_several_held_runs_come_in_one_call() {
    // No poll of its own: the test says when.
    let Some(mut s) = Setup::new(
        Db::Sqlite,
        "2026-11-25T12:00:00Z",
        settings(Duration::from_secs(3600)),
    )
    .await
    else {
        return;
    };
    let runs = vec![
        codebuild_run("web", 1),
        codebuild_run("api", 1),
        codebuild_run("worker", 1),
    ];
    let pks = s.ingest(runs).await;
    assert_eq!(s.process.hold.held().await, 3);
    for (pipeline, cpu) in [("web", 40.0), ("api", 55.0), ("worker", 70.0)] {
        s.cloudwatch
            .put_usage(&build_id(pipeline, 1), cpu, cpu * 100.0);
    }
    s.process.hold.poll_now().await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let scored = s.next_scored().await;
        got.push((scored.run.pipeline.clone(), scored.run.resources));
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("api".to_string(), figures(55.0, 5500.0)),
            ("web".to_string(), figures(40.0, 4000.0)),
            ("worker".to_string(), figures(70.0, 7000.0)),
        ]
    );
    // One call asked about all three builds at once.
    let calls = s.cloudwatch.calls();
    assert_eq!(calls.len(), 1);
    let all = {
        let mut ids = vec![
            build_id("web", 1),
            build_id("api", 1),
            build_id("worker", 1),
        ];
        ids.sort();
        ids
    };
    for call in &calls {
        assert_eq!(call.operation, "GetMetricData");
        assert_eq!(builds_asked(call), all, "one call for the held runs");
        assert_eq!(call.body["MetricDataQueries"].as_array().unwrap().len(), 6);
    }
    for pk in pks {
        assert!(s.verdict(pk).await.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_that_never_arrive_are_waited_for_no_longer() {
    let Some(mut s) = Setup::new(
        Db::Sqlite,
        "2026-11-25T12:00:00Z",
        settings(Duration::from_millis(50)),
    )
    .await
    else {
        return;
    };
    let pk = s.ingest(vec![codebuild_run("web", 1)]).await[0];
    s.calls_beyond(1).await;
    assert_eq!(s.verdict(pk).await, None, "still waiting");
    s.clock
        .advance(chrono::Duration::minutes(5) + chrono::Duration::seconds(1));
    let scored = s.next_scored().await;
    assert_eq!(scored.run_pk, pk);
    assert_eq!(scored.run.resources, None, "scored without them");
    assert!(s.verdict(pk).await.is_some());
    assert!(counted(
        &s.metrics,
        "pipemedic_resource_waits_total",
        &[("outcome", "waited_out")]
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_run_of_the_pipeline_waits_behind_a_held_one() {
    let Some(mut s) = Setup::new(
        Db::Sqlite,
        "2026-11-25T12:00:00Z",
        settings(Duration::from_millis(50)),
    )
    .await
    else {
        return;
    };
    let first = s.ingest(vec![codebuild_run("web", 1)]).await[0];
    // The next run of the same pipeline reported its figures itself, so it
    // has nothing to wait for but the first; another pipeline's run does
    // not wait.
    let mut second = codebuild_run("web", 2);
    second.resources = figures(20.0, 900.0);
    let second = s.ingest(vec![second]).await[0];
    let mut other = codebuild_run("api", 1);
    other.resources = figures(30.0, 1000.0);
    let other = s.ingest(vec![other]).await[0];
    assert_eq!(s.next_scored().await.run_pk, other, "not held");
    s.calls_beyond(1).await;
    assert_eq!(s.verdict(first).await, None);
    assert_eq!(s.verdict(second).await, None, "held behind the first");
    assert_eq!(s.process.hold.held().await, 2);
    for call in s.cloudwatch.calls() {
        assert_eq!(builds_asked(&call), [build_id("web", 1)]);
    }

    s.cloudwatch.put_usage(&build_id("web", 1), 64.0, 2048.0);
    let a = s.next_scored().await;
    let b = s.next_scored().await;
    assert_eq!((a.run_pk, b.run_pk), (first, second), "in order");
    assert_eq!(a.run.resources, figures(64.0, 2048.0));
    assert_eq!(b.run.resources, figures(20.0, 900.0));
}

async fn a_held_run_is_scored_after_a_restart(db: Db) {
    // The first process never polls after its start: the run stays held.
    let Some(mut s) = Setup::new(
        db,
        "2026-11-25T12:00:00Z",
        settings(Duration::from_secs(3600)),
    )
    .await
    else {
        return;
    };
    let (held, behind) = s.hold_a_run_and_one_behind().await;

    // The process stops; its figures arrive meanwhile; a new one starts on
    // the same store.
    let fresh = start(
        &s.store,
        &s.clock,
        &s.aws,
        &s.metrics,
        settings(Duration::from_millis(50)),
    );
    drop(std::mem::replace(&mut s.process, fresh));
    s.cloudwatch.put_usage(&build_id("web", 1), 77.0, 2500.0);
    assert_eq!(s.process.hold.recover().await.unwrap(), 2);
    let a = s.next_scored().await;
    let b = s.next_scored().await;
    assert_eq!((a.run_pk, b.run_pk), (held, behind), "in order");
    assert_eq!(a.run.resources, figures(77.0, 2500.0));
    assert!(s.verdict(held).await.is_some() && s.verdict(behind).await.is_some());
    // Once scored, nothing is left to recover.
    assert_eq!(s.process.hold.recover().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_throttled_call_still_scores_the_run() {
    let Some(mut s) = Setup::new(
        Db::Sqlite,
        "2026-11-25T12:00:00Z",
        settings(Duration::from_millis(50)),
    )
    .await
    else {
        return;
    };
    s.cloudwatch.put_usage(&build_id("web", 1), 64.0, 2048.0);
    s.cloudwatch
        .fail_next_times("GetMetricData", 1, 403, "AccessDenied");
    let pk = s.ingest(vec![codebuild_run("web", 1)]).await[0];
    let scored = s.next_scored().await;
    assert_eq!(scored.run_pk, pk);
    assert_eq!(scored.run.resources, None, "scored without them");
    assert!(counted(
        &s.metrics,
        "pipemedic_evidence_fetches_total",
        &[("source", "cloudwatch"), ("outcome", "denied")]
    ));
    assert!(counted(
        &s.metrics,
        "pipemedic_resource_waits_total",
        &[("outcome", "failed")]
    ));

    // Throttled through every retry of the SDK.
    s.cloudwatch
        .fail_next_times("GetMetricData", 10, 400, "ThrottlingException");
    let pk = s.ingest(vec![codebuild_run("api", 1)]).await[0];
    let scored = s.next_scored().await;
    assert_eq!(scored.run_pk, pk);
    assert_eq!(scored.run.resources, None);
    assert!(counted(
        &s.metrics,
        "pipemedic_evidence_fetches_total",
        &[("source", "cloudwatch"), ("outcome", "throttled")]
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_most_held_runs_are_scored_at_once_in_order() {
    let mut hold = settings(Duration::from_secs(3600));
    hold.max_held = 1;
    let Some(mut s) = Setup::new(Db::Sqlite, "2026-11-25T12:00:00Z", hold).await else {
        return;
    };
    let first = s.ingest(vec![codebuild_run("web", 1)]).await[0];
    assert_eq!(s.process.hold.held().await, 1);
    // Another pipeline's run finds the hold full: scored at once.
    let other = s.ingest(vec![codebuild_run("api", 1)]).await[0];
    assert_eq!(s.next_scored().await.run_pk, other);
    assert!(counted(
        &s.metrics,
        "pipemedic_resource_waits_total",
        &[("outcome", "full")]
    ));
    // A later run of the held pipeline cannot pass it: both go, in order.
    let second = s.ingest(vec![codebuild_run("web", 2)]).await[0];
    let a = s.next_scored().await;
    let b = s.next_scored().await;
    assert_eq!((a.run_pk, b.run_pk), (first, second));
    assert_eq!(s.process.hold.held().await, 0);
    assert!(s.cloudwatch.calls().is_empty(), "no poll came");
}

/// Several replicas on PostgreSQL: the replica that stored a run holds it;
/// when it stops, the replica that starts next scores it (through the
/// scoring queue, by the pipeline's owner) with its figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_held_by_a_replica_that_stopped_is_scored_by_the_next() {
    if crate::helpers::postgres_url().is_none() {
        eprintln!("PIPEMEDIC_TEST_POSTGRES_URL not set; skipped");
        return;
    }
    let Some(mut s) = Setup::new(
        Db::Postgres,
        "2026-11-25T12:00:00Z",
        settings(Duration::from_secs(3600)),
    )
    .await
    else {
        return;
    };
    let replica = |name: &str| OwnershipSettings {
        replica: name.to_string(),
        lease: Duration::from_secs(3),
        database_url: s._db.url.clone(),
    };
    let a = start_replica(
        &s.store,
        &s.clock,
        &s.aws,
        &s.metrics,
        settings(Duration::from_secs(3600)),
        Some(replica("replica-a")),
    );
    drop(std::mem::replace(&mut s.process, a));
    let (held, behind) = s.hold_a_run_and_one_behind().await;

    let b = start_replica(
        &s.store,
        &s.clock,
        &s.aws,
        &s.metrics,
        settings(Duration::from_millis(50)),
        Some(replica("replica-b")),
    );
    drop(std::mem::replace(&mut s.process, b));
    s.cloudwatch.put_usage(&build_id("web", 1), 81.0, 2600.0);
    assert_eq!(s.process.hold.recover().await.unwrap(), 2);
    let first = s.next_scored().await;
    let second = s.next_scored().await;
    assert_eq!((first.run_pk, second.run_pk), (held, behind), "in order");
    assert_eq!(first.run.resources, figures(81.0, 2600.0));
    assert!(s.verdict(held).await.is_some() && s.verdict(behind).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_builds_than_a_call_takes_are_asked_about_in_few_calls() {
    let Some(mut s) = Setup::new(
        Db::Sqlite,
        "2026-11-25T12:00:00Z",
        settings(Duration::from_secs(3600)),
    )
    .await
    else {
        return;
    };
    let n = pipemedic::evidence::resources::BUILDS_PER_CALL as u32 + 5;
    let pks = s
        .ingest((1..=n).map(|i| codebuild_run("web", i)).collect())
        .await;
    for i in 1..=n {
        s.cloudwatch
            .put_usage(&build_id("web", i), f64::from(i), 1000.0);
    }
    s.process.hold.poll_now().await;
    let calls = s.cloudwatch.calls();
    let asked: Vec<usize> = calls.iter().map(|c| builds_asked(c).len()).collect();
    assert_eq!(asked, [50, 5], "one call per 50 builds");
    for (i, pk) in pks.iter().enumerate() {
        let scored = s.next_scored().await;
        assert_eq!(scored.run_pk, *pk, "in order");
        assert_eq!(scored.run.resources, figures(i as f64 + 1.0, 1000.0));
    }
}
