//! GitHub Actions webhooks: `workflow_run` deliveries become [`Run`]s and
//! `workflow_job` deliveries become stage timings of a run, following the
//! payloads GitHub documents for those events. Pure: bytes and the
//! `X-GitHub-Event` header in, [`GithubEvent`] out; signature checks live in
//! [`super::signature`] and storage in the ingest service.
//!
//! Choices:
//! - The pipeline is `owner/repo/<workflow name>`.
//! - `workflow_run` with action `completed` yields a final run; `requested`
//!   and `in_progress` yield a `running` run (so the run is known while it
//!   lasts); the store must not let a running run replace a final one
//!   (see [`super::payload::merge_update`]).
//! - `workflow_job` with action `completed` yields one stage timing named
//!   after the job, with the job's id (its log is fetched by it when the
//!   run is abnormal); other job actions are acknowledged and ignored.
//! - `ping` and every other event type are acknowledged and ignored.

use crate::domain::{Run, RunStatus, StageTiming};

use super::payload::{email_of, parse_json, AdapterError, Obj};

/// What one GitHub delivery means to pipemedic (shared with GitLab).
pub use super::payload::WebhookEvent as GithubEvent;

/// Parses one GitHub webhook delivery. `event_header` is the value of
/// `X-GitHub-Event`. The body must be JSON whatever the event (otherwise
/// [`AdapterError::Malformed`]); only `workflow_run` and `workflow_job`
/// bodies are checked for shape.
pub fn parse_github(event_header: &str, body: &[u8]) -> Result<GithubEvent, AdapterError> {
    let value = parse_json(body)?;
    let event = event_header.trim();
    match event {
        "workflow_run" => parse_workflow_run(Obj::root(&value)?),
        "workflow_job" => parse_workflow_job(Obj::root(&value)?),
        "ping" => Ok(GithubEvent::Ignored {
            reason: "ping acknowledged".into(),
        }),
        "" => Ok(GithubEvent::Ignored {
            reason: "no X-GitHub-Event header".into(),
        }),
        other => Ok(GithubEvent::Ignored {
            reason: format!("event {other:?} carries no run data"),
        }),
    }
}

/// The outcome of a completed run or job from its `conclusion`.
fn conclusion_status(conclusion: &str) -> Option<RunStatus> {
    Some(match conclusion {
        "success" | "neutral" => RunStatus::Succeeded,
        "failure" | "timed_out" | "startup_failure" => RunStatus::Failed,
        "cancelled" | "skipped" | "stale" | "action_required" => RunStatus::Cancelled,
        _ => return None,
    })
}

fn status_of(obj: Obj<'_>, completed: bool) -> Result<RunStatus, AdapterError> {
    if !completed {
        return Ok(RunStatus::Running);
    }
    let conclusion = obj.str("conclusion")?;
    conclusion_status(conclusion).ok_or_else(|| {
        AdapterError::shape(
            obj.path_of("conclusion"),
            format!(
                "unknown conclusion {conclusion:?} (expected success, failure, cancelled, \
                 timed_out, skipped, neutral, stale, action_required or startup_failure)"
            ),
        )
    })
}

fn attempt_of(obj: Obj<'_>) -> Result<u32, AdapterError> {
    match obj.opt_u64("run_attempt")? {
        None => Ok(1),
        Some(n) if n >= 1 && n <= u64::from(u32::MAX) => Ok(n as u32),
        Some(n) => Err(AdapterError::shape(
            obj.path_of("run_attempt"),
            format!("must be 1 or more, got {n}"),
        )),
    }
}

fn parse_workflow_run(root: Obj<'_>) -> Result<GithubEvent, AdapterError> {
    let action = root.str("action")?;
    let completed = match action {
        "completed" => true,
        "requested" | "in_progress" => false,
        other => {
            return Ok(GithubEvent::Ignored {
                reason: format!("workflow_run action {other:?} carries no run data"),
            })
        }
    };
    let wr = root.obj("workflow_run")?;
    let wr = wr.obj();
    let repository = root.obj("repository")?;
    let full_name = repository.obj().str("full_name")?;
    let workflow = match wr.opt_str("name")? {
        Some(name) if !name.trim().is_empty() => name.to_string(),
        _ => root.obj("workflow")?.obj().str("name")?.to_string(),
    };

    let mut run = Run::new(
        format!("{full_name}/{workflow}"),
        wr.id("id")?,
        status_of(wr, completed)?,
    );
    run.attempt = attempt_of(wr)?;
    run.started_at = match wr.opt_time("run_started_at")? {
        Some(t) => Some(t),
        None => wr.opt_time("created_at")?,
    };
    if completed {
        run.finished_at = Some(wr.time("updated_at")?);
    }
    run.commit = wr.opt_str("head_sha")?.map(str::to_string);
    if let Some(head) = wr.opt_obj("head_commit")? {
        let head = head.obj();
        run.commit_message = head.opt_str("message")?.map(|m| m.trim_end().to_string());
        if let Some(author) = head.opt_obj("author")? {
            let author = author.obj();
            run.commit_author = match author.opt_str("name")? {
                Some(name) => Some(name.to_string()),
                None => author.opt_str("email")?.map(str::to_string),
            };
            run.commit_author_email = email_of(author)?;
        }
    }
    // Who pushed or started the run: the one who re-ran it, else the actor.
    for key in ["triggering_actor", "actor"] {
        if let Some(actor) = wr.opt_obj(key)? {
            if let Some(login) = actor.obj().opt_str("login")? {
                let login = login.trim();
                if !login.is_empty() {
                    run.commit_author_login = Some(login.to_string());
                    break;
                }
            }
        }
    }
    run.url = wr.opt_str("html_url")?.map(str::to_string);
    Ok(GithubEvent::Run(Box::new(run)))
}

fn parse_workflow_job(root: Obj<'_>) -> Result<GithubEvent, AdapterError> {
    let action = root.str("action")?;
    if action != "completed" {
        return Ok(GithubEvent::Ignored {
            reason: format!("workflow_job action {action:?} has no timing yet"),
        });
    }
    let job = root.obj("workflow_job")?;
    let job = job.obj();
    let repository = root.obj("repository")?;
    let full_name = repository.obj().str("full_name")?;
    let workflow = job.str("workflow_name")?;
    let stage = StageTiming {
        job_id: job.opt_u64("id")?.map(|id| id.to_string()),
        name: job.str("name")?.to_string(),
        status: Some(status_of(job, true)?),
        started_at: job.opt_time("started_at")?,
        finished_at: job.opt_time("completed_at")?,
    };
    Ok(GithubEvent::Job {
        pipeline: format!("{full_name}/{workflow}"),
        run_id: job.id("run_id")?,
        attempt: attempt_of(job)?,
        stage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::payload::{merge_stage, AdapterErrorKind};

    const RUN_FAILED: &str =
        include_str!("../../tests/fixtures/github/workflow_run-completed-failure.json");
    const RUN_IN_PROGRESS: &str =
        include_str!("../../tests/fixtures/github/workflow_run-in_progress.json");
    const JOB_FAILED: &str =
        include_str!("../../tests/fixtures/github/workflow_job-completed-failure.json");
    const PING: &str = include_str!("../../tests/fixtures/github/ping.json");

    fn t(s: &str) -> chrono::DateTime<chrono::Utc> {
        s.parse().unwrap()
    }

    fn run_of(event: GithubEvent) -> Run {
        match event {
            GithubEvent::Run(run) => *run,
            other => panic!("expected a run, got {other:?}"),
        }
    }

    fn edited(fixture: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(fixture).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn completed_failed_workflow_run() {
        let run = run_of(parse_github("workflow_run", RUN_FAILED.as_bytes()).unwrap());
        assert_eq!(run.pipeline, "octo-org/octo-repo/test");
        assert_eq!(run.run_id, "289782451");
        assert_eq!(run.attempt, 2);
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.started_at, Some(t("2026-11-20T10:00:00Z")));
        assert_eq!(run.finished_at, Some(t("2026-11-20T10:07:12Z")));
        assert_eq!(run.duration_s(), Some(432.0));
        assert_eq!(
            run.commit.as_deref(),
            Some("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678")
        );
        assert_eq!(run.commit_author.as_deref(), Some("Mona Lisa"));
        // The identity approvals match against: the email and the login.
        assert_eq!(run.commit_author_email.as_deref(), Some("mona@example.com"));
        assert_eq!(run.commit_author_login.as_deref(), Some("octocat"));
        assert_eq!(
            run.commit_message.as_deref(),
            Some("Retry payments client on 503\n\nThe upstream returns 503 during deploys.")
        );
        assert_eq!(
            run.url.as_deref(),
            Some("https://github.com/octo-org/octo-repo/actions/runs/289782451")
        );
        assert!(run
            .validate("", "2026-11-25T12:00:00Z".parse().unwrap())
            .is_empty());
    }

    #[test]
    fn conclusions_map_to_statuses() {
        for (conclusion, status) in [
            ("success", RunStatus::Succeeded),
            ("failure", RunStatus::Failed),
            ("timed_out", RunStatus::Failed),
            ("cancelled", RunStatus::Cancelled),
            ("skipped", RunStatus::Cancelled),
            ("neutral", RunStatus::Succeeded),
        ] {
            let body = edited(RUN_FAILED, |v| {
                v["workflow_run"]["conclusion"] = conclusion.into();
            });
            let run = run_of(parse_github("workflow_run", &body).unwrap());
            assert_eq!(run.status, status, "{conclusion}");
        }
    }

    #[test]
    fn in_progress_workflow_run_is_a_running_run() {
        let run = run_of(parse_github("workflow_run", RUN_IN_PROGRESS.as_bytes()).unwrap());
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!(run.started_at, Some(t("2026-11-20T10:00:00Z")));
        assert_eq!(run.finished_at, None);
        assert!(run.metric_samples().is_empty());
    }

    #[test]
    fn completed_job_is_a_stage_of_its_run() {
        let event = parse_github("workflow_job", JOB_FAILED.as_bytes()).unwrap();
        let GithubEvent::Job {
            pipeline,
            run_id,
            attempt,
            stage,
        } = event
        else {
            panic!("expected a job, got {event:?}");
        };
        assert_eq!(pipeline, "octo-org/octo-repo/test");
        assert_eq!(run_id, "289782451");
        assert_eq!(attempt, 2);
        assert_eq!(stage.name, "integration-tests");
        assert_eq!(stage.status, Some(RunStatus::Failed));
        assert_eq!(stage.job_id.as_deref(), Some("7512098341"));
        assert_eq!(stage.duration_s(), Some(355.0));

        let mut run = run_of(parse_github("workflow_run", RUN_FAILED.as_bytes()).unwrap());
        merge_stage(&mut run, stage);
        assert_eq!(run.stage.as_deref(), Some("integration-tests"));
        let samples = run.metric_samples();
        assert!(samples
            .iter()
            .any(|s| s.metric == "stage.integration-tests.duration_s" && s.value == 355.0));
    }

    #[test]
    fn deliveries_in_any_order_merge_into_one_run() {
        use crate::ingest::payload::merge_update;
        let deliveries = [
            ("workflow_run", RUN_IN_PROGRESS),
            ("workflow_job", JOB_FAILED),
            ("workflow_run", RUN_FAILED),
        ];
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        let mut results = Vec::new();
        for order in orders {
            let mut stored: Option<Run> = None;
            for i in order {
                let (event, body) = deliveries[i];
                let update = parse_github(event, body.as_bytes())
                    .unwrap()
                    .into_run()
                    .unwrap();
                stored = Some(merge_update(stored.as_ref(), update));
            }
            results.push(stored.unwrap());
        }
        let run = &results[0];
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.stages[0].job_id.as_deref(), Some("7512098341"));
        assert_eq!(run.duration_s(), Some(432.0));
        assert_eq!(run.stage.as_deref(), Some("integration-tests"));
        assert_eq!(run.stages.len(), 1);
        for other in &results {
            assert_eq!(other, run);
        }
        assert_eq!(
            parse_github("ping", PING.as_bytes()).unwrap().into_run(),
            None
        );
    }

    #[test]
    fn queued_job_and_other_events_are_ignored() {
        let body = edited(JOB_FAILED, |v| v["action"] = "queued".into());
        assert!(matches!(
            parse_github("workflow_job", &body).unwrap(),
            GithubEvent::Ignored { .. }
        ));
        match parse_github("ping", PING.as_bytes()).unwrap() {
            GithubEvent::Ignored { reason } => assert!(reason.contains("ping"), "{reason}"),
            other => panic!("{other:?}"),
        }
        for event in ["push", "check_suite", ""] {
            assert!(matches!(
                parse_github(event, br#"{"ref":"refs/heads/main"}"#).unwrap(),
                GithubEvent::Ignored { .. }
            ));
        }
        let body = edited(RUN_FAILED, |v| v["action"] = "deleted".into());
        assert!(matches!(
            parse_github("workflow_run", &body).unwrap(),
            GithubEvent::Ignored { .. }
        ));
    }

    #[test]
    fn wrong_shape_names_the_field() {
        let cases: [(&str, Vec<u8>, &str); 6] = [
            (
                "workflow_run",
                edited(RUN_FAILED, |v| {
                    v["workflow_run"].as_object_mut().unwrap().remove("id");
                }),
                "workflow_run.id",
            ),
            (
                "workflow_run",
                edited(RUN_FAILED, |v| {
                    v["workflow_run"]["conclusion"] = "purple".into()
                }),
                "workflow_run.conclusion",
            ),
            (
                "workflow_run",
                edited(RUN_FAILED, |v| {
                    v["workflow_run"]["updated_at"] = "soon".into()
                }),
                "workflow_run.updated_at",
            ),
            (
                "workflow_run",
                edited(RUN_FAILED, |v| v["repository"] = serde_json::Value::Null),
                "repository",
            ),
            (
                "workflow_job",
                edited(JOB_FAILED, |v| {
                    v["workflow_job"]
                        .as_object_mut()
                        .unwrap()
                        .remove("workflow_name");
                }),
                "workflow_job.workflow_name",
            ),
            ("workflow_run", b"[1, 2]".to_vec(), "$"),
        ];
        for (event, body, field) in cases {
            let err = parse_github(event, &body).unwrap_err();
            assert_eq!(err.kind(), AdapterErrorKind::Shape, "{err}");
            assert_eq!(err.field_error().unwrap().field, field, "{err}");
        }
    }

    #[test]
    fn malformed_body_is_a_400_kind_error() {
        for event in ["workflow_run", "push"] {
            let err = parse_github(event, b"{\"action\": \"completed\",").unwrap_err();
            assert_eq!(err.kind(), AdapterErrorKind::Malformed);
            assert_eq!(err.http_status(), 400);
            assert!(err.line_column().is_some());
        }
    }
}
