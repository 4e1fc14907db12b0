//! Tests of the poller: executions and their actions (as the SDK returns
//! them) to runs, status mapping, and the cursor that revisits running
//! executions and prunes old ones.

use super::*;
use aws_sdk_codepipeline::types::{
    ActionExecutionOutput, ActionExecutionResult, ErrorDetails, SourceRevision,
};
use aws_smithy_types::DateTime as AwsTime;

const T0: i64 = 1_795_000_000; // 2026-11-18

fn at(secs: i64) -> AwsTime {
    AwsTime::from_secs(T0 + secs)
}

fn action(
    stage: &str,
    name: &str,
    status: ActionExecutionStatus,
    start: i64,
    end: i64,
) -> ActionExecutionDetail {
    ActionExecutionDetail::builder()
        .pipeline_execution_id("e-1")
        .stage_name(stage)
        .action_name(name)
        .status(status)
        .start_time(at(start))
        .last_update_time(at(end))
        .build()
}

fn summary(status: PipelineExecutionStatus) -> PipelineExecutionSummary {
    PipelineExecutionSummary::builder()
        .pipeline_execution_id("e-1")
        .status(status)
        .start_time(at(0))
        .last_update_time(at(300))
        .source_revisions(
            SourceRevision::builder()
                .action_name("Source")
                .revision_id("a1b2c3d")
                .revision_summary(
                    r#"{"ProviderType":"GitHub","CommitMessage":"Fix the flaky checkout test"}"#,
                )
                .build()
                .unwrap(),
        )
        .build()
}

#[test]
fn failed_execution_becomes_a_failed_run_with_stages() {
    let failed = ActionExecutionDetail::builder()
        .pipeline_execution_id("e-1")
        .stage_name("Test")
        .action_name("UnitTests")
        .status(ActionExecutionStatus::Failed)
        .start_time(at(100))
        .last_update_time(at(290))
        .output(
            ActionExecutionOutput::builder()
                .execution_result(
                    ActionExecutionResult::builder()
                        .external_execution_summary("Build failed: 37 tests failed")
                        .external_execution_url("https://console.example/build/1")
                        .error_details(
                            ErrorDetails::builder()
                                .code("JobFailed")
                                .message("exit 1")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .build();
    let actions = vec![
        action("Source", "Source", ActionExecutionStatus::Succeeded, 0, 20),
        action("Build", "Compile", ActionExecutionStatus::Succeeded, 25, 80),
        action("Build", "Lint", ActionExecutionStatus::Succeeded, 30, 95),
        failed,
        // An action of another execution is ignored.
        ActionExecutionDetail::builder()
            .pipeline_execution_id("e-0")
            .stage_name("Deploy")
            .status(ActionExecutionStatus::Succeeded)
            .build(),
    ];
    let run = execution_to_run(
        "checkout-service",
        &summary(PipelineExecutionStatus::Failed),
        None,
        &actions,
        Some("eu-west-1"),
    )
    .unwrap();
    assert_eq!(run.run_id, "e-1");
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.stage.as_deref(), Some("Test"));
    assert_eq!(run.commit.as_deref(), Some("a1b2c3d"));
    assert_eq!(
        run.commit_message.as_deref(),
        Some("Fix the flaky checkout test")
    );
    assert_eq!(run.duration_s(), Some(300.0));
    let names: Vec<_> = run.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Source", "Build", "Test"]);
    assert_eq!(run.stages[1].duration_s(), Some(70.0));
    assert_eq!(run.stages[1].status, Some(RunStatus::Succeeded));
    assert_eq!(run.stages[2].status, Some(RunStatus::Failed));
    assert_eq!(
        run.log_url.as_deref(),
        Some("https://console.example/build/1")
    );
    let log = run.log_excerpt.clone().unwrap();
    assert!(
        log.contains("Test/UnitTests: Build failed: 37 tests failed"),
        "{log}"
    );
    assert!(log.contains("JobFailed exit 1"), "{log}");
    assert!(run
        .url
        .as_deref()
        .unwrap()
        .starts_with("https://eu-west-1.console.aws.amazon.com/codesuite/codepipeline/pipelines/checkout-service/executions/e-1/"));
    assert!(run
        .validate("", "2026-11-25T12:00:00Z".parse().unwrap())
        .is_empty());
}

#[test]
fn statuses_map_to_ours() {
    use PipelineExecutionStatus as S;
    assert_eq!(execution_status(&S::Succeeded), RunStatus::Succeeded);
    assert_eq!(execution_status(&S::Failed), RunStatus::Failed);
    for s in [S::Stopped, S::Superseded, S::Cancelled] {
        assert_eq!(execution_status(&s), RunStatus::Cancelled);
    }
    for s in [S::InProgress, S::Stopping] {
        assert_eq!(execution_status(&s), RunStatus::Running);
    }
    assert_eq!(
        execution_status(&S::from("SomethingNew")),
        RunStatus::Running
    );
}

/// `action` whose result links to `url`.
fn linked(
    stage: &str,
    name: &str,
    status: ActionExecutionStatus,
    (start, end): (i64, i64),
    url: &str,
) -> ActionExecutionDetail {
    let mut detail = action(stage, name, status, start, end);
    detail.output = Some(
        ActionExecutionOutput::builder()
            .execution_result(
                ActionExecutionResult::builder()
                    .external_execution_url(url)
                    .build(),
            )
            .build(),
    );
    detail
}

#[test]
fn a_run_without_a_failed_action_links_its_last_codebuild_build() {
    let build = |n: u32| {
        format!("https://eu-west-1.console.aws.amazon.com/codesuite/codebuild/projects/checkout-build/build/checkout-build%3Auuid-{n}/?region=eu-west-1")
    };
    let ok = ActionExecutionStatus::Succeeded;
    let actions = vec![
        linked(
            "Source",
            "Source",
            ok.clone(),
            (0, 20),
            "https://github.com/o/r/commit/a1",
        ),
        linked("Build", "Compile", ok.clone(), (25, 80), &build(1)),
        linked("Test", "Unit", ok.clone(), (90, 200), &build(2)),
        // A later action whose link is no CodeBuild build.
        linked(
            "Deploy",
            "Deploy",
            ok.clone(),
            (210, 290),
            "https://deploy.example/d-9",
        ),
    ];
    let run = execution_to_run(
        "checkout-service",
        &summary(PipelineExecutionStatus::Succeeded),
        None,
        &actions,
        Some("eu-west-1"),
    )
    .unwrap();
    assert_eq!(run.log_url, Some(build(2)));
    assert_eq!(
        crate::evidence::codebuild_of(&run).map(|b| b.build_id),
        Some("checkout-build:uuid-2".to_string())
    );

    // No CodeBuild action: no link.
    let run = execution_to_run(
        "checkout-service",
        &summary(PipelineExecutionStatus::Succeeded),
        None,
        &[actions[0].clone(), actions[3].clone()],
        Some("eu-west-1"),
    )
    .unwrap();
    assert_eq!(run.log_url, None);
}

#[test]
fn in_progress_execution_has_no_end_and_plain_messages_are_kept() {
    let s = PipelineExecutionSummary::builder()
        .pipeline_execution_id("e-1")
        .status(PipelineExecutionStatus::InProgress)
        .start_time(at(0))
        .last_update_time(at(50))
        .source_revisions(
            SourceRevision::builder()
                .action_name("Source")
                .revision_id("ffff")
                .revision_summary(format!("Long message {}", "x".repeat(900)))
                .build()
                .unwrap(),
        )
        .build();
    let run = execution_to_run(
        "p",
        &s,
        None,
        &[action(
            "Build",
            "B",
            ActionExecutionStatus::InProgress,
            5,
            40,
        )],
        None,
    )
    .unwrap();
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.finished_at, None);
    assert_eq!(run.stages[0].finished_at, None);
    assert_eq!(run.url, None);
    let msg = run.commit_message.unwrap();
    assert!(msg.starts_with("Long message"));
    assert!(msg.len() <= MAX_COMMIT_MESSAGE + '…'.len_utf8());
}

fn listed(id: &str, status: RunStatus, start_ms: i64, updated_ms: i64) -> Listed {
    Listed {
        id: id.into(),
        status,
        start_ms,
        updated_ms,
        summary: PipelineExecutionSummary::builder().build(),
    }
}

#[test]
fn cursor_revisits_in_progress_and_notices_retries() {
    let now: DateTime<Utc> = "2026-11-25T12:00:00Z".parse().unwrap();
    let h = now.timestamp_millis();
    let first = Cursor::first(now);
    let l1 = vec![
        listed("c", RunStatus::Running, h - 1_000, h - 500),
        listed("b", RunStatus::Failed, h - 2_000, h - 1_500),
        listed("a", RunStatus::Succeeded, h - 3_000, h - 2_500),
    ];
    let p = plan(&first, &l1);
    let ids: Vec<_> = p.fetch.iter().map(|(l, a)| (l.id.as_str(), *a)).collect();
    assert_eq!(ids, [("a", 1), ("b", 1)]);
    let c1 = advance(&first, &l1, &p.fetch, true, now);
    assert_eq!(
        c1.horizon_ms,
        h - 1_000,
        "held back by the running execution"
    );

    // c finished, b was retried and succeeded: both are read, b as attempt 2.
    let l2 = vec![
        listed("c", RunStatus::Succeeded, h - 1_000, h - 100),
        listed("b", RunStatus::Succeeded, h - 2_000, h - 50),
        listed("a", RunStatus::Succeeded, h - 3_000, h - 2_500),
    ];
    let p2 = plan(&c1, &l2);
    let ids: Vec<_> = p2.fetch.iter().map(|(l, a)| (l.id.as_str(), *a)).collect();
    assert_eq!(ids, [("b", 2), ("c", 1)]);
    let c2 = advance(&c1, &l2, &p2.fetch, true, now);
    assert_eq!(c2.horizon_ms, h - 1_000, "the newest start");
    assert!(plan(&c2, &l2).fetch.is_empty(), "nothing twice");

    // A failure half-way keeps the horizon and remembers what was stored.
    let partial = advance(&first, &l1, &p.fetch[..1], false, now);
    assert_eq!(partial.horizon_ms, first.horizon_ms);
    let again: Vec<_> = plan(&partial, &l1)
        .fetch
        .iter()
        .map(|(l, _)| l.id.clone())
        .collect();
    assert_eq!(again, ["b"]);
}

#[test]
fn old_entries_are_pruned_and_stale_runs_stop_holding_the_horizon() {
    let now: DateTime<Utc> = "2026-11-25T12:00:00Z".parse().unwrap();
    let day = 86_400_000;
    let h = now.timestamp_millis();
    let cursor = Cursor::first(now);
    let l = vec![
        listed("new", RunStatus::Succeeded, h - 1_000, h - 900),
        listed("stuck", RunStatus::Running, h - 9 * day, h - 9 * day),
        listed("old", RunStatus::Succeeded, h - 3 * day, h - 3 * day),
    ];
    let p = plan(&cursor, &l);
    let next = advance(&cursor, &l, &p.fetch, true, now);
    assert_eq!(next.horizon_ms, h - 1_000);
    assert!(next.seen.contains_key("new"));
    assert!(!next.seen.contains_key("old"), "outside the revisit window");
    assert_eq!(next.list_until_ms(), h - 1_000 - day);
}
