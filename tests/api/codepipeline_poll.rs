//! CodePipeline polling through the real `aws-sdk-codepipeline`, pointed at
//! the local fake, on both databases.

use std::sync::Arc;
use std::time::Duration;

use pipemedic::clock::{Clock, ManualClock};
use pipemedic::config::AwsConfig;
use pipemedic::domain::RunStatus;
use pipemedic::ingest::codepipeline_poll::{CodePipelinePoller, PollError, STATE_KIND};
use pipemedic::ingest::IngestService;
use pipemedic::metrics::Metrics;
use pipemedic::store::Store;

use crate::fakes::codepipeline::{ExecutionSpec, FakeCodePipeline};
use crate::helpers::{spawn_app_with, t, test_aws_settings, Db, TestDb};

const PIPELINE: &str = "checkout-service";

/// A poller over `db`, talking to `fake`, as a fresh process would build it.
struct Poller {
    poller: CodePipelinePoller,
    store: Store,
    metrics: Arc<Metrics>,
}

async fn poller(db: &TestDb, fake: &FakeCodePipeline) -> Poller {
    let store = db.store().await;
    let metrics = Arc::new(Metrics::new());
    let clock = Arc::new(ManualClock::new(t("2026-11-25T12:00:00Z")));
    let ingest = Arc::new(IngestService::new(store.clone(), metrics.clone(), clock));
    let mut aws = AwsConfig::default();
    aws.endpoints.codepipeline = fake.url();
    let clients = test_aws_settings(&aws).load().await;
    Poller {
        poller: CodePipelinePoller::new(&clients, ingest, vec![PIPELINE.to_string()]),
        store,
        metrics,
    }
}

fn poll_errors(metrics: &Metrics) -> u64 {
    metrics.counter("pipemedic_poll_errors_total", &[("pipeline", PIPELINE)])
}

fn succeeded(id: &str, start: &str) -> ExecutionSpec {
    ExecutionSpec::new(id, "Succeeded", t(start))
        .commit(&format!("sha-{id}"), "A change")
        .action("Source", "Source", "Succeeded", 0, 10)
        .action("Build", "Compile", "Succeeded", 12, 130)
}

fn failed_in_test(id: &str, start: &str) -> ExecutionSpec {
    ExecutionSpec::new(id, "Failed", t(start))
        .commit(
            "a1b2c3d",
            r#"{"ProviderType":"GitHub","CommitMessage":"Speed up checkout"}"#,
        )
        .action("Source", "Source", "Succeeded", 0, 10)
        .action("Build", "Compile", "Succeeded", 12, 130)
        .action("Build", "Lint", "Succeeded", 15, 100)
        .action("Test", "UnitTests", "Failed", 135, 432)
        .result(
            "Build failed: 37 tests failed",
            "https://console.example/codebuild/1",
        )
}

async fn failed_execution_becomes_one_failed_run(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let fake = FakeCodePipeline::start().await;
    fake.add_execution(PIPELINE, failed_in_test("e-1", "2026-11-25T10:00:00Z"));
    let p = poller(&db, &fake).await;

    let report = p.poller.poll_once().await.unwrap();
    assert_eq!(report.stored(), 1);

    let stored = p.store.get_run(PIPELINE, "e-1", 1).await.unwrap().unwrap();
    assert_eq!(stored.source, "codepipeline_poll");
    let run = stored.run;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.stage.as_deref(), Some("Test"));
    assert_eq!(run.commit.as_deref(), Some("a1b2c3d"));
    assert_eq!(run.commit_message.as_deref(), Some("Speed up checkout"));
    assert_eq!(run.started_at, Some(t("2026-11-25T10:00:00Z")));
    assert_eq!(run.finished_at, Some(t("2026-11-25T10:07:12Z")));
    assert_eq!(run.duration_s(), Some(432.0));
    let stages: Vec<_> = run
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.duration_s(), s.status))
        .collect();
    assert_eq!(
        stages,
        [
            ("Source", Some(10.0), Some(RunStatus::Succeeded)),
            ("Build", Some(118.0), Some(RunStatus::Succeeded)),
            ("Test", Some(297.0), Some(RunStatus::Failed)),
        ]
    );
    assert_eq!(
        run.log_url.as_deref(),
        Some("https://console.example/codebuild/1")
    );
    assert!(run
        .log_excerpt
        .as_deref()
        .unwrap()
        .contains("37 tests failed"));
    let samples = p
        .store
        .samples(
            PIPELINE,
            "stage.Test.duration_s",
            t("2026-11-01T00:00:00Z"),
            t("2026-12-01T00:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(samples, vec![(t("2026-11-25T10:07:12Z"), 297.0)]);

    // The SDK spoke the documented protocol, filtered by execution.
    let actions = fake.calls_of("ListActionExecutions");
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0]["pipelineName"], PIPELINE);
    assert_eq!(actions[0]["filter"]["pipelineExecutionId"], "e-1");
    assert_eq!(
        fake.calls_of("GetPipelineExecution")[0]["pipelineExecutionId"],
        "e-1"
    );
    assert_eq!(poll_errors(&p.metrics), 0);
}

async fn polling_twice_stores_nothing_twice(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let fake = FakeCodePipeline::start().await;
    fake.add_execution(PIPELINE, succeeded("e-1", "2026-11-25T09:00:00Z"));
    fake.add_execution(PIPELINE, failed_in_test("e-2", "2026-11-25T10:00:00Z"));
    let p = poller(&db, &fake).await;

    assert_eq!(p.poller.poll_once().await.unwrap().stored(), 2);
    fake.clear_calls();
    let again = p.poller.poll_once().await.unwrap();
    assert_eq!(again.stored(), 0);
    assert_eq!(again.pipelines[0].listed, 2);
    assert!(
        fake.calls_of("GetPipelineExecution").is_empty(),
        "known executions are not read again"
    );
    assert_eq!(p.store.count_runs().await.unwrap(), 2);
}

async fn execution_breaking_the_run_limits_is_skipped_not_stalling(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let fake = FakeCodePipeline::start().await;
    fake.add_execution(
        PIPELINE,
        ExecutionSpec::new("e-1", "Failed", t("2026-11-25T09:00:00Z")).action(
            "Build\u{1b}[2J",
            "Compile",
            "Failed",
            0,
            10,
        ),
    );
    fake.add_execution(PIPELINE, succeeded("e-2", "2026-11-25T10:00:00Z"));
    let p = poller(&db, &fake).await;

    // The valid execution is stored; the other is refused by the same run
    // limits as every route, and the poll still succeeds.
    assert_eq!(p.poller.poll_once().await.unwrap().stored(), 1);
    assert_eq!(p.store.count_runs().await.unwrap(), 1);
    assert!(p.store.get_run(PIPELINE, "e-1", 1).await.unwrap().is_none());
    assert_eq!(poll_errors(&p.metrics), 0);
    // The cursor moved past it: the next poll reads nothing again.
    fake.clear_calls();
    assert_eq!(p.poller.poll_once().await.unwrap().stored(), 0);
    assert!(fake.calls_of("GetPipelineExecution").is_empty());
}

async fn in_progress_execution_is_stored_when_it_finishes(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let fake = FakeCodePipeline::start().await;
    fake.add_execution(PIPELINE, succeeded("e-1", "2026-11-25T09:00:00Z"));
    fake.add_execution(
        PIPELINE,
        ExecutionSpec::new("e-2", "InProgress", t("2026-11-25T10:00:00Z"))
            .action("Source", "Source", "Succeeded", 0, 10)
            .action("Build", "Compile", "InProgress", 12, 60),
    );
    let p = poller(&db, &fake).await;

    let first = p.poller.poll_once().await.unwrap();
    assert_eq!(first.stored(), 1);
    assert_eq!(first.pipelines[0].in_progress, ["e-2"]);
    assert!(p.store.get_run(PIPELINE, "e-2", 1).await.unwrap().is_none());

    // e-2 finishes and a newer e-3 succeeds before the next poll.
    fake.update_execution(PIPELINE, "e-2", |e| {
        e.status = "Succeeded".into();
        e.actions[1].status = "Succeeded".into();
        e.actions[1].end_s = 200;
    });
    fake.add_execution(PIPELINE, succeeded("e-3", "2026-11-25T11:00:00Z"));
    let second = p.poller.poll_once().await.unwrap();
    let ids: Vec<_> = second.pipelines[0]
        .stored
        .iter()
        .map(|a| a.run_id.as_str())
        .collect();
    assert_eq!(ids, ["e-2", "e-3"]);
    let e2 = p.store.get_run(PIPELINE, "e-2", 1).await.unwrap().unwrap();
    assert_eq!(e2.run.status, RunStatus::Succeeded);
    assert_eq!(e2.run.duration_s(), Some(200.0));

    assert_eq!(p.poller.poll_once().await.unwrap().stored(), 0);
    assert_eq!(p.store.count_runs().await.unwrap(), 3);
}

async fn retried_execution_is_stored_as_the_next_attempt(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let fake = FakeCodePipeline::start().await;
    fake.add_execution(PIPELINE, failed_in_test("e-1", "2026-11-25T10:00:00Z"));
    let p = poller(&db, &fake).await;
    assert_eq!(p.poller.poll_once().await.unwrap().stored(), 1);

    // The failed stage is retried and passes: same execution, later update.
    fake.update_execution(PIPELINE, "e-1", |e| {
        e.status = "Succeeded".into();
        e.actions.push(crate::fakes::codepipeline::ActionSpec {
            stage: "Test".into(),
            action: "UnitTests".into(),
            status: "Succeeded".into(),
            start_s: 600,
            end_s: 900,
            summary: None,
            url: None,
        });
    });
    let report = p.poller.poll_once().await.unwrap();
    assert_eq!(report.stored(), 1);
    assert_eq!(report.pipelines[0].stored[0].attempt, 2);
    let first = p.store.get_run(PIPELINE, "e-1", 1).await.unwrap().unwrap();
    let second = p.store.get_run(PIPELINE, "e-1", 2).await.unwrap().unwrap();
    assert_eq!(first.run.status, RunStatus::Failed);
    assert_eq!(second.run.status, RunStatus::Succeeded);
    assert_eq!(second.run.stage, None);
    let test_stage = second.run.stages.iter().find(|s| s.name == "Test").unwrap();
    assert_eq!(test_stage.status, Some(RunStatus::Succeeded));
    assert_eq!(p.poller.poll_once().await.unwrap().stored(), 0);
}

async fn restart_resumes_from_the_cursor(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let fake = FakeCodePipeline::start().await;
    fake.add_execution(PIPELINE, succeeded("e-1", "2026-11-25T09:00:00Z"));
    fake.add_execution(
        PIPELINE,
        ExecutionSpec::new("e-2", "InProgress", t("2026-11-25T10:00:00Z")).action(
            "Build",
            "Compile",
            "InProgress",
            0,
            30,
        ),
    );
    {
        let before = poller(&db, &fake).await;
        assert_eq!(before.poller.poll_once().await.unwrap().stored(), 1);
        let cursor = before
            .store
            .get_state(STATE_KIND, PIPELINE)
            .await
            .unwrap()
            .expect("cursor stored with the runs");
        assert!(cursor.contains("horizon_ms"), "{cursor}");
        before.store.close().await;
    }

    // While "down": e-2 finishes and e-3 runs.
    fake.update_execution(PIPELINE, "e-2", |e| {
        e.status = "Failed".into();
        e.actions[0].status = "Failed".into();
        e.actions[0].end_s = 90;
    });
    fake.add_execution(PIPELINE, succeeded("e-3", "2026-11-25T11:00:00Z"));
    fake.clear_calls();

    let after = poller(&db, &fake).await;
    let report = after.poller.poll_once().await.unwrap();
    let ids: Vec<_> = report.pipelines[0]
        .stored
        .iter()
        .map(|a| a.run_id.as_str())
        .collect();
    assert_eq!(ids, ["e-2", "e-3"]);
    let read: Vec<_> = fake
        .calls_of("GetPipelineExecution")
        .iter()
        .map(|b| b["pipelineExecutionId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        read,
        ["e-2", "e-3"],
        "e-1 is not read again after a restart"
    );
    assert_eq!(after.store.count_runs().await.unwrap(), 3);
    let e2 = after
        .store
        .get_run(PIPELINE, "e-2", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e2.run.stage.as_deref(), Some("Build"));
}

async fn overlapping_pollers_store_once_and_keep_the_newer_cursor(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let fake = FakeCodePipeline::start().await;
    fake.add_execution(PIPELINE, failed_in_test("e-1", "2026-11-25T10:00:00Z"));
    let slow = poller(&db, &fake).await;
    let fast = poller(&db, &fake).await;

    // The slow poller has read the cursor and waits for its listing while
    // the fast one polls and commits.
    fake.delay_next("ListPipelineExecutions", Duration::from_millis(700));
    let slow_poll = tokio::spawn(async move {
        let report = slow.poller.poll_once().await;
        (report, slow)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fast.poller.poll_once().await.unwrap().stored(), 1);
    let cursor = fast.store.get_state(STATE_KIND, PIPELINE).await.unwrap();

    let (report, slow) = slow_poll.await.unwrap();
    assert_eq!(report.unwrap().stored(), 0, "the slow poll is dropped");
    assert_eq!(
        slow.store.get_state(STATE_KIND, PIPELINE).await.unwrap(),
        cursor
    );
    assert_eq!(slow.store.count_runs().await.unwrap(), 1);
}

async fn pagination_follows_next_token(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let fake = FakeCodePipeline::start().await;
    fake.set_page_size(2);
    for i in 0..5 {
        fake.add_execution(
            PIPELINE,
            succeeded(&format!("e-{i}"), &format!("2026-11-25T0{i}:00:00Z"))
                .action("Deploy", "Blue", "Succeeded", 140, 150)
                .action("Deploy", "Green", "Succeeded", 141, 160),
        );
    }
    let p = poller(&db, &fake).await;
    let report = p.poller.poll_once().await.unwrap();
    assert_eq!(report.stored(), 5);
    let lists = fake.calls_of("ListPipelineExecutions");
    assert_eq!(lists.len(), 3);
    assert!(lists[0].get("nextToken").is_none());
    assert_eq!(lists[1]["nextToken"], "2");
    assert_eq!(lists[2]["nextToken"], "4");
    // Four actions per execution, two per page: every page was read.
    assert_eq!(fake.calls_of("ListActionExecutions").len(), 10);
    let run = p.store.get_run(PIPELINE, "e-3", 1).await.unwrap().unwrap();
    let names: Vec<_> = run.run.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Source", "Build", "Deploy"]);
    assert_eq!(run.run.stages[2].duration_s(), Some(20.0));
}

async fn throttling_and_server_errors_are_reported_and_retried(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let fake = FakeCodePipeline::start().await;
    fake.add_execution(PIPELINE, succeeded("e-1", "2026-11-25T09:00:00Z"));
    fake.add_execution(PIPELINE, failed_in_test("e-2", "2026-11-25T10:00:00Z"));
    let p = poller(&db, &fake).await;

    // Throttled on every attempt the SDK makes.
    fake.fail_next_times("ListPipelineExecutions", 3, 400, "ThrottlingException");
    let err = p.poller.poll_once().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("ThrottlingException"), "{err}");
    assert_eq!(poll_errors(&p.metrics), 1);
    assert_eq!(fake.calls_of("ListPipelineExecutions").len(), 3);
    assert_eq!(p.store.count_runs().await.unwrap(), 0);

    // The service fails (500) reading e-2 only: e-1 is kept, e-2 waits.
    fake.fail_matching("GetPipelineExecution", "e-2", 3, 500, "InternalFailure");
    let err = p.poller.poll_once().await.unwrap_err();
    let PollError::Incomplete { failures, .. } = &err else {
        panic!("unexpected {err:?}");
    };
    assert!(matches!(
        &failures[0],
        PollError::Api {
            operation: "GetPipelineExecution",
            ..
        }
    ));
    assert!(err.is_retryable());
    assert_eq!(poll_errors(&p.metrics), 2);
    assert_eq!(p.store.count_runs().await.unwrap(), 1);

    // Next poll: only e-2 is read, nothing is lost or stored twice.
    fake.clear_calls();
    let report = p.poller.poll_once().await.unwrap();
    assert_eq!(report.stored(), 1);
    assert_eq!(report.pipelines[0].stored[0].run_id, "e-2");
    assert_eq!(fake.calls_of("GetPipelineExecution").len(), 1);
    assert_eq!(p.store.count_runs().await.unwrap(), 2);
    assert_eq!(poll_errors(&p.metrics), 2);
}

async fn serve_polls_in_the_background_and_survives_an_unreachable_endpoint(db: Db) {
    let fake = FakeCodePipeline::start().await;
    fake.add_execution(PIPELINE, failed_in_test("e-1", "2026-11-25T10:00:00Z"));
    let url = fake.url();
    let app = spawn_app_with(db, |c| {
        c.codepipeline.poll_pipelines = vec![PIPELINE.into()];
        c.codepipeline.poll_interval_s = 1;
        c.aws.endpoints.codepipeline = url;
    })
    .await
    .unwrap();
    assert_eq!(app.clock.now(), t("2026-11-25T12:00:00Z"));
    let mut stored = false;
    for _ in 0..100 {
        if app.store.count_runs().await.unwrap() == 1 {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored, "the background poll stored the execution");

    // An endpoint nobody listens on: serve still answers and reports it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = spawn_app_with(db, |c| {
        c.codepipeline.poll_pipelines = vec!["unreachable".into()];
        c.codepipeline.poll_interval_s = 1;
        c.aws.endpoints.codepipeline = format!("http://{closed}");
    })
    .await
    .unwrap();
    let mut reported = false;
    for _ in 0..100 {
        let metrics = down.metrics_text().await;
        if metrics.contains("pipemedic_poll_errors_total{pipeline=\"unreachable\"}") {
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reported, "poll failures are counted in /metrics");
    let health = down.http.get(down.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
}

crate::on_both_databases!(
    failed_execution_becomes_one_failed_run,
    polling_twice_stores_nothing_twice,
    execution_breaking_the_run_limits_is_skipped_not_stalling,
    in_progress_execution_is_stored_when_it_finishes,
    retried_execution_is_stored_as_the_next_attempt,
    restart_resumes_from_the_cursor,
    overlapping_pollers_store_once_and_keep_the_newer_cursor,
    pagination_follows_next_token,
    throttling_and_server_errors_are_reported_and_retried,
    serve_polls_in_the_background_and_survives_an_unreachable_endpoint,
);

/// The fake's remediation operations answer in shapes the real SDK parses,
/// and injected errors reach the SDK as the documented error types.
#[tokio::test]
async fn fake_remediation_operations_parse_through_the_sdk() {
    use aws_sdk_codepipeline::types::StageRetryMode;
    use pipemedic::aws::{classify, ErrorClass};

    let fake = FakeCodePipeline::start().await;
    fake.add_execution(PIPELINE, failed_in_test("e-1", "2026-11-25T10:00:00Z"));
    let mut aws = AwsConfig::default();
    aws.endpoints.codepipeline = fake.url();
    let client = test_aws_settings(&aws).load().await.codepipeline();

    let retried = client
        .retry_stage_execution()
        .pipeline_name(PIPELINE)
        .stage_name("Test")
        .pipeline_execution_id("e-1")
        .retry_mode(StageRetryMode::FailedActions)
        .send()
        .await
        .unwrap();
    assert_eq!(retried.pipeline_execution_id(), Some("e-1"));
    let call = &fake.calls_of("RetryStageExecution")[0];
    assert_eq!(call["stageName"], "Test");
    assert_eq!(call["retryMode"], "FAILED_ACTIONS");

    fake.fail_next("RetryStageExecution", 400, "StageNotRetryableException");
    let err = client
        .retry_stage_execution()
        .pipeline_name(PIPELINE)
        .stage_name("Test")
        .pipeline_execution_id("e-1")
        .retry_mode(StageRetryMode::FailedActions)
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .is_some_and(|e| e.is_stage_not_retryable_exception()));
    assert_eq!(classify(&err), ErrorClass::Permanent);

    let rollback = client
        .rollback_stage()
        .pipeline_name(PIPELINE)
        .stage_name("Deploy")
        .target_pipeline_execution_id("e-1")
        .send()
        .await
        .unwrap();
    assert!(rollback.pipeline_execution_id().starts_with("rollback-"));

    let started = client
        .start_pipeline_execution()
        .name(PIPELINE)
        .send()
        .await
        .unwrap();
    assert!(started.pipeline_execution_id().is_some());
    assert!(fake.calls_of("StartPipelineExecution")[0]["clientRequestToken"].is_string());

    let stopped = client
        .stop_pipeline_execution()
        .pipeline_name(PIPELINE)
        .pipeline_execution_id("e-1")
        .abandon(false)
        .reason("pipemedic")
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.pipeline_execution_id(), Some("e-1"));

    // An unknown pipeline is a permanent error, not worth retrying.
    let err = client
        .list_pipeline_executions()
        .pipeline_name("nope")
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .is_some_and(|e| e.is_pipeline_not_found_exception()));
    assert!(!pipemedic::aws::is_retryable(&err));
    assert_eq!(
        fake.calls_of("ListPipelineExecutions").len(),
        1,
        "not retried"
    );
}
