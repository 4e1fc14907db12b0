//! `pipemedic demo --yes` in-process: two problems detected, planned,
//! approved, fixed exactly once through the CodePipeline stand-in, healed.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_closes_the_whole_loop() {
    let summary = pipemedic::demo::run(pipemedic::demo::DemoOptions { yes: true })
        .await
        .expect("demo runs");
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
