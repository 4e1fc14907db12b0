//! `pipemedic demo --yes` in-process: two problems detected, planned,
//! approved, fixed exactly once through the CodePipeline stand-in, healed;
//! with the rule-based planner, and with Bedrock (a stand-in) drafting the
//! first plan while the second falls back to rule-based after the model
//! keeps answering without its tool.

use pipemedic::demo::{DemoOptions, DemoPlanner, DemoSummary};
use serde_json::json;

use crate::fakes::bedrock::FakeBedrock;

fn assert_loop_closed(summary: &DemoSummary) {
    assert_eq!(summary.incidents.len(), 2, "{summary:#?}");
    let pipelines: Vec<&str> = summary
        .incidents
        .iter()
        .map(|i| i.pipeline.as_str())
        .collect();
    assert_eq!(pipelines, ["checkout-service", "payments-api"]);
    assert!(
        summary
            .incidents
            .iter()
            .all(|i| i.recovered_after_min.is_some()),
        "{summary:#?}"
    );
    assert_eq!(summary.incidents[0].approved_by, ["alice"]);
    assert_eq!(
        summary.incidents[1].approved_by,
        ["alice", "bob"],
        "a rollback is high risk"
    );
    assert_eq!(
        summary.codepipeline_calls.get("RetryStageExecution"),
        Some(&1)
    );
    assert_eq!(summary.codepipeline_calls.get("RollbackStage"), Some(&1));
    assert_eq!(summary.replayed_runs, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_closes_the_whole_loop() {
    let summary = pipemedic::demo::run(DemoOptions {
        yes: true,
        planner: DemoPlanner::Offline,
        store: None,
    })
    .await
    .expect("demo runs");
    assert_loop_closed(&summary);
    assert!(summary.incidents.iter().all(|i| i.planner == "offline"));
    #[cfg(feature = "ci-evidence")]
    {
        // The failing CodeBuild build's log and usage were fetched through
        // the SDK clients, and the plan quotes the log.
        assert_eq!(
            summary.logs_calls.get("GetLogEvents"),
            Some(&1),
            "{summary:#?}"
        );
        assert_eq!(summary.cloudwatch_calls.get("GetMetricData"), Some(&1));
        assert!(
            summary.incidents[0]
                .cause
                .contains("The log says: \"FAILED CheckoutFlowIT.placesOrder - timed out waiting for element #confirm"),
            "{}",
            summary.incidents[0].cause
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_plans_with_bedrock_and_falls_back_to_rules() {
    let bedrock = FakeBedrock::start().await;
    bedrock.reply_with_tool(json!({
        "summary": "Unit tests timed out on a shared runner; rerun the Test stage on fresh containers.",
        "suspected_cause": "Flaky tests: the test failure rate jumped while nothing else moved.",
        "confidence": 0.8, "risk": "low",
        "steps": [{"playbook": "flaky-tests", "action": "rerun-tests-clean", "params": {},
                   "why": "A clean rerun settles flaky failures."}]}));
    // The second incident: the model answers in prose, twice.
    bedrock.reply_with_text("I would roll back production right away.");
    bedrock.reply_with_text("Roll back. Trust me.");
    let summary = pipemedic::demo::run(DemoOptions {
        yes: true,
        planner: DemoPlanner::Bedrock {
            endpoint: Some(bedrock.url()),
        },
        store: None,
    })
    .await
    .expect("demo runs");
    assert_loop_closed(&summary);
    assert_eq!(summary.incidents[0].planner, "bedrock");
    assert!(
        summary.incidents[0]
            .plan
            .starts_with("Unit tests timed out"),
        "{summary:#?}"
    );
    assert_eq!(summary.incidents[1].planner, "offline");
    assert!(summary.incidents[1].plan.starts_with("Rule-based plan"));
    assert_eq!(bedrock.requests().len(), 3, "one answer, then two in prose");
    assert_eq!(bedrock.pending(), 0);
}
