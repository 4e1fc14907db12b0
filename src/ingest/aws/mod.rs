//! AWS EventBridge events from CodePipeline and CodeBuild, delivered to
//! `POST /v1/webhooks/aws` by an EventBridge API destination, following the
//! event shapes AWS documents ("CodePipeline Pipeline/Stage/Action Execution
//! State Change", "CodeBuild Build State Change").
//!
//! CodePipeline reports one execution as many separate events that may
//! arrive late, twice or out of order. [`ExecutionAssembly`] is the pure,
//! serialisable state that gathers them, keyed by pipeline + execution id,
//! and derives the same [`Run`] whatever the arrival order: every value is
//! computed from the events' own `time`, never from when they arrived.
//!
//! How the ingest service uses this module:
//! 1. [`parse_eventbridge`] the body; skip events whose [`AwsEvent::event_id`]
//!    was processed before.
//! 2. Pipeline, stage and action events: load the assembly for
//!    [`AwsEvent::execution_key`] (or [`ExecutionAssembly::new`]),
//!    [`ExecutionAssembly::apply`] the event, save it, and store
//!    [`ExecutionAssembly::to_run`] when it is `Some` (a final run; later
//!    events for the same execution yield an updated run).
//! 3. CodeBuild events whose initiator is `codepipeline/<pipeline>`
//!    ([`CodeBuildEvent::initiating_pipeline`]) belong to a pipeline
//!    execution, but carry no execution id. Apply them to the assemblies of
//!    that pipeline that are open or recently final: an assembly uses a
//!    build only when one of its actions names that build as its
//!    `external-execution-id`, so applying to the wrong execution is
//!    harmless ([`ExecutionAssembly::claims_build`] tells which one uses it).
//!    A build adds its phase durations as custom metrics
//!    `codebuild.<action>.<phase>_s` and, when it failed, its log link.
//! 4. Any other CodeBuild build is its own run: [`codebuild_run`], with
//!    the project name as the pipeline and one stage per build phase.

mod assembly;
mod events;

pub use assembly::*;
pub use events::*;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::domain::{Run, RunStatus};
    use crate::ingest::payload::AdapterErrorKind;

    const FAILED_EXECUTION: &str =
        include_str!("../../../tests/fixtures/aws/codepipeline-failed-execution.json");
    const PIPELINE_BUILD_FAILED: &str =
        include_str!("../../../tests/fixtures/aws/codebuild-pipeline-test-failed.json");
    const STANDALONE_BUILD: &str =
        include_str!("../../../tests/fixtures/aws/codebuild-standalone-succeeded.json");

    const EXECUTION: &str = "3137f7cb-7cf7-4f0f-8b0c-5e0a1c2d3e4f";

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Each event of the failed execution, as the bytes an API destination posts.
    fn execution_bodies() -> Vec<Vec<u8>> {
        let events: Vec<serde_json::Value> = serde_json::from_str(FAILED_EXECUTION).unwrap();
        events
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap())
            .collect()
    }

    fn execution_events() -> Vec<AwsEvent> {
        let mut events: Vec<AwsEvent> = execution_bodies()
            .iter()
            .map(|b| parse_eventbridge(b).unwrap())
            .collect();
        events.push(parse_eventbridge(PIPELINE_BUILD_FAILED.as_bytes()).unwrap());
        events
    }

    fn assemble(events: &[AwsEvent]) -> ExecutionAssembly {
        let mut assembly = ExecutionAssembly::new("checkout-service", EXECUTION);
        for event in events {
            assembly.apply(event).unwrap();
        }
        assembly
    }

    /// A deterministic shuffle (linear congruential generator).
    fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
        let mut out = items.to_vec();
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        for i in (1..out.len()).rev() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = ((state >> 33) % (i as u64 + 1)) as usize;
            out.swap(i, j);
        }
        out
    }

    fn edited(fixture: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(fixture).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn each_detail_type_parses() {
        let events = execution_events();
        assert_eq!(events.len(), 15);
        match &events[0] {
            AwsEvent::PipelineExecution(e) => {
                assert_eq!(e.pipeline, "checkout-service");
                assert_eq!(e.execution_id, EXECUTION);
                assert_eq!(e.state, PipelineState::Started);
                assert_eq!(e.time, t("2026-11-20T10:00:00Z"));
                assert_eq!(e.attempt, Some(1));
                assert_eq!(e.trigger_type.as_deref(), Some("Webhook"));
                assert_eq!(e.event_id, "6f0c1a2b-0000-4000-8000-000000000001");
            }
            other => panic!("{other:?}"),
        }
        match &events[1] {
            AwsEvent::Stage(e) => {
                assert_eq!(
                    (e.stage.as_str(), e.state),
                    ("Source", PipelineState::Started)
                );
            }
            other => panic!("{other:?}"),
        }
        match &events[11] {
            AwsEvent::Action(e) => {
                assert_eq!(e.stage, "Test");
                assert_eq!(e.action, "UnitTests");
                assert_eq!(e.state, PipelineState::Failed);
                assert_eq!(e.provider.as_deref(), Some("CodeBuild"));
                assert_eq!(
                    e.external_execution_id.as_deref(),
                    Some("checkout-service-test:5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b")
                );
                assert_eq!(e.error_code.as_deref(), Some("JobFailed"));
            }
            other => panic!("{other:?}"),
        }
        match &events[14] {
            AwsEvent::CodeBuild(e) => {
                assert_eq!(e.project, "checkout-service-test");
                assert_eq!(
                    e.build_id,
                    "checkout-service-test:5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
                );
                assert_eq!(e.initiating_pipeline(), Some("checkout-service"));
                assert_eq!(e.run_status(), RunStatus::Failed);
                assert_eq!(e.started_at, Some(t("2026-11-20T10:03:39Z")));
                assert_eq!(e.phases.len(), 11);
            }
            other => panic!("{other:?}"),
        }
        let ids: BTreeSet<&str> = events.iter().map(AwsEvent::event_id).collect();
        assert_eq!(ids.len(), events.len(), "event ids are distinct");
    }

    fn assert_failed_run(run: &Run) {
        assert_eq!(run.pipeline, "checkout-service");
        assert_eq!(run.run_id, EXECUTION);
        assert_eq!(run.attempt, 1);
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.started_at, Some(t("2026-11-20T10:00:00Z")));
        assert_eq!(run.finished_at, Some(t("2026-11-20T10:07:12Z")));
        assert_eq!(run.duration_s(), Some(432.0));
        assert_eq!(run.stage.as_deref(), Some("Test"));
        assert_eq!(
            run.commit.as_deref(),
            Some("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678")
        );
        assert_eq!(
            run.commit_message.as_deref(),
            Some("Retry payments client on 503")
        );
        let stages: Vec<_> = run
            .stages
            .iter()
            .map(|s| (s.name.as_str(), s.status, s.duration_s()))
            .collect();
        assert_eq!(
            stages,
            [
                ("Source", Some(RunStatus::Succeeded), Some(4.0)),
                ("Build", Some(RunStatus::Succeeded), Some(211.0)),
                ("Test", Some(RunStatus::Failed), Some(213.0)),
            ]
        );
        assert_eq!(run.metrics.get("codebuild.UnitTests.build_s"), Some(&137.0));
        assert_eq!(
            run.metrics.get("codebuild.UnitTests.provisioning_s"),
            Some(&30.0)
        );
        assert_eq!(
            run.log_url.as_deref(),
            Some(
                "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEvent:\
                 group=/aws/codebuild/checkout-service-test;\
                 stream=5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
            )
        );
        let problems = run.validate("", "2026-11-25T12:00:00Z".parse().unwrap());
        assert!(problems.is_empty(), "{problems:?}");
        let samples = run.metric_samples();
        assert!(samples
            .iter()
            .any(|s| s.metric == "stage.Test.duration_s" && s.value == 213.0));
    }

    #[test]
    fn failed_execution_in_order() {
        let assembly = assemble(&execution_events());
        assert!(assembly.is_final());
        assert!(assembly.claims_build(
            "arn:aws:codebuild:eu-west-1:123456789012:build/checkout-service-test:5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
        ));
        assert_failed_run(&assembly.to_run().unwrap());
    }

    #[test]
    fn failed_execution_in_any_order_gives_the_same_run() {
        let events = execution_events();
        let expected = assemble(&events).to_run().unwrap();
        let mut reversed = events.clone();
        reversed.reverse();
        let mut orders = vec![reversed];
        orders.extend((1..=40).map(|seed| shuffled(&events, seed)));
        for order in orders {
            let run = assemble(&order).to_run().unwrap();
            assert_eq!(run, expected);
        }
        assert_failed_run(&expected);
    }

    #[test]
    fn assembly_survives_a_round_trip_through_the_store_between_events() {
        let events = shuffled(&execution_events(), 7);
        let mut stored =
            serde_json::to_string(&ExecutionAssembly::new("checkout-service", EXECUTION)).unwrap();
        for event in &events {
            let mut assembly: ExecutionAssembly = serde_json::from_str(&stored).unwrap();
            assembly.apply(event).unwrap();
            stored = serde_json::to_string(&assembly).unwrap();
        }
        let assembly: ExecutionAssembly = serde_json::from_str(&stored).unwrap();
        assert_failed_run(&assembly.to_run().unwrap());
    }

    #[test]
    fn no_final_run_before_the_execution_ends_and_redeliveries_change_nothing() {
        let events = execution_events();
        let mut assembly = ExecutionAssembly::for_event(&events[0]).unwrap();
        // Everything except the pipeline's FAILED event.
        for event in events.iter().filter(
            |e| !matches!(e, AwsEvent::PipelineExecution(p) if p.state == PipelineState::Failed),
        ) {
            assert!(assembly.apply(event).unwrap());
        }
        assert!(!assembly.is_final());
        assert_eq!(assembly.to_run(), None);
        let running = assembly.snapshot();
        assert_eq!(running.status, RunStatus::Running);
        assert_eq!(running.finished_at, None);
        assert!(running.metric_samples().is_empty());

        let before = assembly.clone();
        for event in &events[..5] {
            assert!(!assembly.apply(event).unwrap());
        }
        assert_eq!(assembly, before);
        let last = events.iter().find(
            |e| matches!(e, AwsEvent::PipelineExecution(p) if p.state == PipelineState::Failed),
        );
        assert!(assembly.apply(last.unwrap()).unwrap());
        assert_failed_run(&assembly.to_run().unwrap());
    }

    #[test]
    fn other_executions_and_builds_are_refused() {
        let mut assembly = ExecutionAssembly::new("checkout-service", "another-execution");
        let events = execution_events();
        assert!(matches!(
            assembly.apply(&events[0]),
            Err(AssemblyError::OtherExecution { .. })
        ));
        let standalone = parse_eventbridge(STANDALONE_BUILD.as_bytes()).unwrap();
        assert!(matches!(
            assembly.apply(&standalone),
            Err(AssemblyError::OtherBuild { .. })
        ));
        // A build of this pipeline that no action of this execution ran is
        // kept but does not show in the run.
        assert!(assembly.apply(&events[14]).unwrap());
        assert!(assembly.snapshot().metrics.is_empty());
        assert!(
            !assembly.claims_build("checkout-service-test:5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b")
        );
    }

    #[test]
    fn end_states_map_to_statuses() {
        for (state, status) in [
            ("SUCCEEDED", RunStatus::Succeeded),
            ("FAILED", RunStatus::Failed),
            ("STOPPED", RunStatus::Cancelled),
            ("SUPERSEDED", RunStatus::Cancelled),
            ("CANCELED", RunStatus::Cancelled),
        ] {
            let body = edited(FAILED_EXECUTION, |v| {
                v[13]["detail"]["state"] = state.into();
            });
            let all: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            let end = parse_eventbridge(&serde_json::to_vec(&all[13]).unwrap()).unwrap();
            let start = parse_eventbridge(&serde_json::to_vec(&all[0]).unwrap()).unwrap();
            let mut assembly = ExecutionAssembly::for_event(&end).unwrap();
            assembly.apply(&end).unwrap();
            assembly.apply(&start).unwrap();
            let run = assembly.to_run().unwrap();
            assert_eq!(run.status, status, "{state}");
            assert_eq!(run.duration_s(), Some(432.0));
        }
    }

    #[test]
    fn a_succeeded_execution_links_its_last_codebuild_log() {
        let body = edited(FAILED_EXECUTION, |v| {
            for i in [11, 12, 13] {
                v[i]["detail"]["state"] = "SUCCEEDED".into();
            }
        });
        let all: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        let mut events: Vec<AwsEvent> = all
            .iter()
            .map(|e| parse_eventbridge(&serde_json::to_vec(e).unwrap()).unwrap())
            .collect();
        let without_build = assemble(&events).to_run().unwrap();
        assert_eq!(without_build.status, RunStatus::Succeeded);
        assert_eq!(without_build.log_url, None);
        events.push(parse_eventbridge(PIPELINE_BUILD_FAILED.as_bytes()).unwrap());
        let run = assemble(&events).to_run().unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!(
            run.log_url.as_deref(),
            Some("https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEvent:group=/aws/codebuild/checkout-service-test;stream=5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b")
        );
    }

    #[test]
    fn retried_stage_counts_its_last_try() {
        let mut events = execution_events();
        let extra = [
            (PIPELINE_EXECUTION, None, "RESUMED", "10:20:00", 2),
            (STAGE_EXECUTION, Some("Test"), "STARTED", "10:20:01", 2),
            (STAGE_EXECUTION, Some("Test"), "SUCCEEDED", "10:23:01", 2),
            (PIPELINE_EXECUTION, None, "SUCCEEDED", "10:23:02", 2),
        ];
        for (i, (kind, stage, state, time, attempt)) in extra.into_iter().enumerate() {
            let mut detail = serde_json::json!({
                "pipeline": "checkout-service",
                "execution-id": EXECUTION,
                "state": state,
                "pipeline-execution-attempt": attempt,
            });
            if let Some(stage) = stage {
                detail["stage"] = stage.into();
            }
            let body = serde_json::json!({
                "id": format!("retry-{i}"),
                "detail-type": kind,
                "source": "aws.codepipeline",
                "time": format!("2026-11-20T{time}Z"),
                "detail": detail,
            });
            events.push(parse_eventbridge(&serde_json::to_vec(&body).unwrap()).unwrap());
        }
        for seed in [1, 2, 3] {
            let run = assemble(&shuffled(&events, seed)).to_run().unwrap();
            assert_eq!(run.status, RunStatus::Succeeded);
            assert_eq!(run.attempt, 2);
            assert_eq!(run.started_at, Some(t("2026-11-20T10:20:00Z")));
            assert_eq!(run.duration_s(), Some(182.0));
            assert_eq!(run.stage, None);
            let stages: Vec<_> = run
                .stages
                .iter()
                .map(|s| (s.name.as_str(), s.status, s.duration_s()))
                .collect();
            assert_eq!(stages, [("Test", Some(RunStatus::Succeeded), Some(180.0))]);
        }
    }

    #[test]
    fn standalone_codebuild_build_is_its_own_run() {
        let AwsEvent::CodeBuild(build) = parse_eventbridge(STANDALONE_BUILD.as_bytes()).unwrap()
        else {
            panic!("expected a CodeBuild event");
        };
        assert_eq!(build.initiating_pipeline(), None);
        let run = codebuild_run(&build);
        assert_eq!(run.pipeline, "nightly-report");
        assert_eq!(
            run.run_id,
            "nightly-report:8745a7a9-c340-456a-9166-edf953571b2e"
        );
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!(run.started_at, Some(t("2026-11-24T23:58:59Z")));
        assert_eq!(run.finished_at, Some(t("2026-11-25T00:00:55Z")));
        assert_eq!(run.duration_s(), Some(116.0));
        assert_eq!(
            run.commit.as_deref(),
            Some("9c4e2b7d1f3a5c6e8b0d2f4a6c8e0b1d3f5a7c9e")
        );
        assert_eq!(run.stage, None);
        assert_eq!(run.stages.len(), 10);
        let build_phase = run.stages.iter().find(|s| s.name == "BUILD").unwrap();
        assert_eq!(build_phase.duration_s(), Some(70.0));
        assert_eq!(build_phase.status, Some(RunStatus::Succeeded));
        assert!(run.log_url.is_some());
        assert!(run
            .validate("", "2026-11-25T12:00:00Z".parse().unwrap())
            .is_empty());

        let AwsEvent::CodeBuild(failed) =
            parse_eventbridge(PIPELINE_BUILD_FAILED.as_bytes()).unwrap()
        else {
            panic!("expected a CodeBuild event");
        };
        let run = codebuild_run(&failed);
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.stage.as_deref(), Some("BUILD"));
        assert_eq!(run.commit, None, "an S3 object version is not a commit");

        let body = edited(STANDALONE_BUILD, |v| {
            v["detail"]["build-status"] = "IN_PROGRESS".into();
            v["detail"]["additional-information"]["build-complete"] = false.into();
        });
        let AwsEvent::CodeBuild(running) = parse_eventbridge(&body).unwrap() else {
            panic!("expected a CodeBuild event");
        };
        let run = codebuild_run(&running);
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!(run.finished_at, None);
    }

    #[test]
    fn other_detail_types_are_ignored_with_their_id() {
        let body = br#"{"version":"0","id":"ab12","detail-type":"CodeBuild Build Phase Change",
            "source":"aws.codebuild","time":"2026-11-20T10:00:00Z","detail":{}}"#;
        let event = parse_eventbridge(body).unwrap();
        assert_eq!(
            event,
            AwsEvent::Ignored {
                event_id: "ab12".into(),
                detail_type: "CodeBuild Build Phase Change".into()
            }
        );
        assert_eq!(event.event_id(), "ab12");
        assert_eq!(event.execution_key(), None);
        let mut assembly = ExecutionAssembly::new("p", "x");
        assert_eq!(assembly.apply(&event), Ok(false));
    }

    #[test]
    fn wrong_shape_names_the_field() {
        let bodies = execution_bodies();
        let one = |i: usize| String::from_utf8(bodies[i].clone()).unwrap();
        let cases: [(Vec<u8>, &str); 8] = [
            (
                edited(&one(0), |v| {
                    v["detail"].as_object_mut().unwrap().remove("execution-id");
                }),
                "detail.execution-id",
            ),
            (
                edited(&one(0), |v| v["detail"]["state"] = "EXPLODED".into()),
                "detail.state",
            ),
            (
                edited(&one(1), |v| {
                    v["detail"].as_object_mut().unwrap().remove("stage");
                }),
                "detail.stage",
            ),
            (
                edited(&one(11), |v| v["detail"]["execution-result"] = 5.into()),
                "detail.execution-result",
            ),
            (edited(&one(0), |v| v["time"] = "noon".into()), "time"),
            (
                edited(&one(0), |v| {
                    v.as_object_mut().unwrap().remove("id");
                }),
                "id",
            ),
            (
                edited(STANDALONE_BUILD, |v| {
                    v["detail"]["additional-information"]["phases"][3]["start-time"] =
                        "whenever".into();
                }),
                "detail.additional-information.phases[3].start-time",
            ),
            (
                edited(STANDALONE_BUILD, |v| {
                    v["detail"]["build-status"] = "MAYBE".into();
                }),
                "detail.build-status",
            ),
        ];
        for (body, field) in cases {
            let err = parse_eventbridge(&body).unwrap_err();
            assert_eq!(err.kind(), AdapterErrorKind::Shape, "{err}");
            assert_eq!(err.field_error().unwrap().field, field, "{err}");
        }
        let err = parse_eventbridge(br#"{"id": "1"}"#).unwrap_err();
        assert_eq!(err.field_error().unwrap().field, "detail-type");
    }

    #[test]
    fn malformed_body_is_a_400_kind_error() {
        let err = parse_eventbridge(b"{\"detail-type\": \"CodeBuild Build State Change\"\n,,}")
            .unwrap_err();
        assert_eq!(err.kind(), AdapterErrorKind::Malformed);
        assert_eq!(err.line_column(), Some((2, 2)));
    }
}
