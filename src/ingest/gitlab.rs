//! GitLab CI webhooks: Pipeline Hook deliveries (`object_kind: pipeline`)
//! become [`Run`]s and Job Hook deliveries (`object_kind: build`) become
//! stage timings of a run, following the payloads GitLab documents for
//! those events. Pure: bytes in, [`GitlabEvent`] out; the `X-Gitlab-Token`
//! check lives in [`super::signature`] and storage in the ingest service.
//!
//! Choices:
//! - The pipeline is the project's `path_with_namespace` (`group/project`);
//!   the run id is GitLab's pipeline id; the attempt is always 1 (GitLab
//!   retries jobs inside the same pipeline).
//! - Stage timings are per job, named after the job (job names are unique
//!   in a GitLab pipeline), so they match the Job Hook timings and GitHub's
//!   per-job timings. When a job was retried, the latest try (highest job
//!   id) counts, and each timing keeps its job's id (the failing job's log
//!   is fetched by it when the run is abnormal). Jobs that never started
//!   (skipped, manual, created) have no timing and are left out.
//! - The run's `stage` is the first job that failed without
//!   `allow_failure`.
//! - The run starts at the pipeline's `created_at` (so queueing counts) and
//!   ends at `finished_at`; GitLab's `queued_duration` becomes the custom
//!   metric `queued_duration_s`.
//! - Pipelines that are still going yield a `running` run; Job Hooks for
//!   jobs that have not finished are acknowledged and ignored, as is every
//!   other `object_kind`.

use std::collections::BTreeMap;

use crate::domain::{Run, RunStatus, StageTiming};

use super::payload::{email_of, parse_json, sort_stages, AdapterError, Obj};

/// What one GitLab delivery means to pipemedic (shared with GitHub).
pub use super::payload::WebhookEvent as GitlabEvent;

/// Parses one GitLab webhook delivery. The body's `object_kind` decides
/// what it is (the `X-Gitlab-Event` header says the same thing and is not
/// needed). The body must be JSON whatever the event (otherwise
/// [`AdapterError::Malformed`]); only pipeline and job bodies are checked
/// for shape.
pub fn parse_gitlab(body: &[u8]) -> Result<GitlabEvent, AdapterError> {
    let value = parse_json(body)?;
    let root = Obj::root(&value)?;
    match root.str("object_kind")? {
        "pipeline" => parse_pipeline(root),
        "build" => parse_job(root),
        other => Ok(GitlabEvent::Ignored {
            reason: format!("object_kind {other:?} carries no run data"),
        }),
    }
}

/// pipemedic's status for a GitLab pipeline or job status.
fn gitlab_status(raw: &str) -> Option<RunStatus> {
    Some(match raw {
        "success" => RunStatus::Succeeded,
        "failed" => RunStatus::Failed,
        "canceled" | "canceling" | "skipped" => RunStatus::Cancelled,
        "created"
        | "waiting_for_resource"
        | "preparing"
        | "pending"
        | "running"
        | "manual"
        | "scheduled"
        | "waiting_for_callback" => RunStatus::Running,
        _ => return None,
    })
}

fn status_field(obj: Obj<'_>, key: &str) -> Result<RunStatus, AdapterError> {
    let raw = obj.str(key)?;
    gitlab_status(raw).ok_or_else(|| {
        AdapterError::shape(
            obj.path_of(key),
            format!(
                "unknown status {raw:?} (expected success, failed, canceled, skipped, \
                 running, pending, created, manual ...)"
            ),
        )
    })
}

fn project_path(root: Obj<'_>) -> Result<String, AdapterError> {
    let project = root.obj("project")?;
    Ok(project.obj().str("path_with_namespace")?.trim().to_string())
}

fn parse_pipeline(root: Obj<'_>) -> Result<GitlabEvent, AdapterError> {
    let pipeline = project_path(root)?;
    let attrs = root.obj("object_attributes")?;
    let attrs = attrs.obj();
    let status = status_field(attrs, "status")?;
    let mut run = Run::new(pipeline, attrs.id("id")?, status);
    run.started_at = attrs.opt_time("created_at")?;
    if status.is_final() {
        run.finished_at = attrs.opt_time("finished_at")?;
    }
    run.commit = attrs.opt_str("sha")?.map(str::to_string);
    if let Some(queued) = attrs.opt_f64("queued_duration")? {
        run.metrics.insert("queued_duration_s".into(), queued);
    }
    run.url = attrs.opt_str("url")?.map(str::to_string);
    if let Some(commit) = root.opt_obj("commit")? {
        let commit = commit.obj();
        run.commit_message = commit.opt_str("message")?.map(|m| m.trim_end().to_string());
        if let Some(author) = commit.opt_obj("author")? {
            let author = author.obj();
            run.commit_author = match author.opt_str("name")? {
                Some(name) => Some(name.to_string()),
                None => author.opt_str("email")?.map(str::to_string),
            };
            run.commit_author_email = email_of(author)?;
        }
    }
    // The user who pushed or started the pipeline.
    if let Some(user) = root.opt_obj("user")? {
        let user = user.obj();
        run.commit_author_login = user
            .opt_str("username")?
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        if run.commit_author_email.is_none() {
            run.commit_author_email = email_of(user)?;
        }
    }

    // Latest try of each job, by name.
    struct Job {
        id: u64,
        timing: StageTiming,
        blocking_failure: bool,
    }
    let mut jobs: BTreeMap<String, Job> = BTreeMap::new();
    for build in root.array("builds")? {
        let build = build.obj();
        let id = build.opt_u64("id")?.unwrap_or(0);
        let name = build.str("name")?.to_string();
        let job_status = status_field(build, "status")?;
        let timing = StageTiming {
            job_id: (id > 0).then(|| id.to_string()),
            name: name.clone(),
            status: Some(job_status),
            started_at: build.opt_time("started_at")?,
            finished_at: build.opt_time("finished_at")?,
        };
        let blocking_failure =
            job_status == RunStatus::Failed && !build.opt_bool("allow_failure")?.unwrap_or(false);
        if jobs.get(&name).is_none_or(|seen| seen.id < id) {
            jobs.insert(
                name,
                Job {
                    id,
                    timing,
                    blocking_failure,
                },
            );
        }
    }
    let mut failed: Vec<&StageTiming> = jobs
        .values()
        .filter(|j| j.blocking_failure)
        .map(|j| &j.timing)
        .collect();
    failed.sort_by_key(|s| (s.finished_at.is_none(), s.finished_at, s.name.clone()));
    if status == RunStatus::Failed {
        run.stage = failed.first().map(|s| s.name.clone());
    }
    run.stages = jobs
        .into_values()
        .map(|j| j.timing)
        .filter(|s| s.started_at.is_some())
        .collect();
    sort_stages(&mut run.stages);
    Ok(GitlabEvent::Run(Box::new(run)))
}

fn parse_job(root: Obj<'_>) -> Result<GitlabEvent, AdapterError> {
    let status = status_field(root, "build_status")?;
    if !status.is_final() {
        return Ok(GitlabEvent::Ignored {
            reason: "the job has not finished".into(),
        });
    }
    let pipeline = project_path(root)?;
    let time = |key: &str| -> Result<_, AdapterError> {
        match root.opt_time(&format!("{key}_iso"))? {
            Some(t) => Ok(Some(t)),
            None => root.opt_time(key),
        }
    };
    let stage = StageTiming {
        job_id: root.opt_u64("build_id")?.map(|id| id.to_string()),
        name: root.str("build_name")?.to_string(),
        status: Some(status),
        started_at: time("build_started_at")?,
        finished_at: time("build_finished_at")?,
    };
    Ok(GitlabEvent::Job {
        pipeline,
        run_id: root.id("pipeline_id")?,
        attempt: 1,
        stage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::payload::{merge_stage, AdapterErrorKind};

    const PIPELINE_FAILED: &str = include_str!("../../tests/fixtures/gitlab/pipeline-failed.json");
    const JOB_SUCCESS: &str = include_str!("../../tests/fixtures/gitlab/job-success.json");

    fn t(s: &str) -> chrono::DateTime<chrono::Utc> {
        s.parse().unwrap()
    }

    fn edited(fixture: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(fixture).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    fn run_of(event: GitlabEvent) -> Run {
        match event {
            GitlabEvent::Run(run) => *run,
            other => panic!("expected a run, got {other:?}"),
        }
    }

    #[test]
    fn failed_pipeline_with_jobs() {
        let run = run_of(parse_gitlab(PIPELINE_FAILED.as_bytes()).unwrap());
        assert_eq!(run.pipeline, "gitlab-org/gitlab-test");
        assert_eq!(run.run_id, "31");
        assert_eq!(run.attempt, 1);
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.started_at, Some(t("2026-11-20T10:00:00Z")));
        assert_eq!(run.finished_at, Some(t("2026-11-20T10:07:12Z")));
        assert_eq!(run.duration_s(), Some(432.0));
        assert_eq!(
            run.commit.as_deref(),
            Some("bcbb5ec396a2c0f828686f14fac9b80b780504f2")
        );
        assert_eq!(
            run.commit_message.as_deref(),
            Some("Pin the payments client timeout")
        );
        assert_eq!(run.commit_author.as_deref(), Some("User"));
        // The identity approvals match against: the commit's email (the
        // user's is `[REDACTED]`) and the user who started the pipeline.
        assert_eq!(run.commit_author_email.as_deref(), Some("user@gitlab.com"));
        assert_eq!(run.commit_author_login.as_deref(), Some("root"));
        assert_eq!(
            run.url.as_deref(),
            Some("https://gitlab.example.com/gitlab-org/gitlab-test/-/pipelines/31")
        );
        assert_eq!(run.metrics.get("queued_duration_s"), Some(&12.0));
        // The allowed-to-fail lint job does not count as the failed stage.
        assert_eq!(run.stage.as_deref(), Some("test-build"));
        // Each stage keeps its job's id (the retried job: the latest try's).
        let ids: Vec<_> = run
            .stages
            .iter()
            .map(|s| (s.name.as_str(), s.job_id.as_deref()))
            .collect();
        assert_eq!(
            ids,
            [
                ("build-image", Some("376")),
                ("lint", Some("379")),
                ("test-image", Some("377")),
                ("test-build", Some("378")),
            ]
        );

        let stages: Vec<_> = run
            .stages
            .iter()
            .map(|s| (s.name.as_str(), s.status, s.duration_s()))
            .collect();
        assert_eq!(
            stages,
            [
                // The retried build job: its latest try counts.
                ("build-image", Some(RunStatus::Succeeded), Some(140.0)),
                ("lint", Some(RunStatus::Failed), Some(20.0)),
                ("test-image", Some(RunStatus::Succeeded), Some(100.0)),
                ("test-build", Some(RunStatus::Failed), Some(219.0)),
            ]
        );
        assert!(run
            .validate("", "2026-11-25T12:00:00Z".parse().unwrap())
            .is_empty());
    }

    #[test]
    fn pipeline_statuses() {
        for (raw, status) in [
            ("success", RunStatus::Succeeded),
            ("failed", RunStatus::Failed),
            ("canceled", RunStatus::Cancelled),
            ("skipped", RunStatus::Cancelled),
            ("running", RunStatus::Running),
            ("pending", RunStatus::Running),
            ("created", RunStatus::Running),
            ("manual", RunStatus::Running),
        ] {
            let body = edited(PIPELINE_FAILED, |v| {
                v["object_attributes"]["status"] = raw.into();
            });
            let run = run_of(parse_gitlab(&body).unwrap());
            assert_eq!(run.status, status, "{raw}");
            assert_eq!(run.finished_at.is_some(), status.is_final(), "{raw}");
            assert_eq!(run.stage.is_some(), status == RunStatus::Failed, "{raw}");
        }
    }

    #[test]
    fn iso_timestamps_are_accepted() {
        let body = edited(PIPELINE_FAILED, |v| {
            v["object_attributes"]["created_at"] = "2026-11-20T10:00:00.000Z".into();
            v["object_attributes"]["finished_at"] = "2026-11-20T11:07:12+01:00".into();
        });
        let run = run_of(parse_gitlab(&body).unwrap());
        assert_eq!(run.duration_s(), Some(432.0));
    }

    #[test]
    fn finished_job_is_a_stage_of_its_pipeline() {
        let event = parse_gitlab(JOB_SUCCESS.as_bytes()).unwrap();
        let GitlabEvent::Job {
            pipeline,
            run_id,
            attempt,
            stage,
        } = event
        else {
            panic!("expected a job, got {event:?}");
        };
        assert_eq!(pipeline, "gitlab-org/gitlab-test");
        assert_eq!(run_id, "31");
        assert_eq!(attempt, 1);
        assert_eq!(stage.name, "test-image");
        assert_eq!(stage.job_id.as_deref(), Some("377"));
        assert_eq!(stage.status, Some(RunStatus::Succeeded));
        assert_eq!(stage.duration_s(), Some(100.0));

        // The same timing as the pipeline hook reports for that job.
        let mut run = run_of(parse_gitlab(PIPELINE_FAILED.as_bytes()).unwrap());
        let before = run.clone();
        merge_stage(&mut run, stage);
        assert_eq!(run, before);

        // Without the *_iso fields the plain GitLab format is read.
        let body = edited(JOB_SUCCESS, |v| {
            let o = v.as_object_mut().unwrap();
            o.remove("build_started_at_iso");
            o.remove("build_finished_at_iso");
        });
        match parse_gitlab(&body).unwrap() {
            GitlabEvent::Job { stage, .. } => assert_eq!(stage.duration_s(), Some(100.0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn job_before_pipeline_merges_into_one_run() {
        use crate::ingest::payload::merge_update;
        let job = parse_gitlab(JOB_SUCCESS.as_bytes())
            .unwrap()
            .into_run()
            .unwrap();
        let pipeline = parse_gitlab(PIPELINE_FAILED.as_bytes())
            .unwrap()
            .into_run()
            .unwrap();
        let job_first = merge_update(Some(&merge_update(None, job.clone())), pipeline.clone());
        let pipeline_first = merge_update(Some(&pipeline), job);
        assert_eq!(job_first, pipeline);
        assert_eq!(pipeline_first, pipeline);
    }

    #[test]
    fn unfinished_jobs_and_other_kinds_are_ignored() {
        let body = edited(JOB_SUCCESS, |v| v["build_status"] = "running".into());
        assert!(matches!(
            parse_gitlab(&body).unwrap(),
            GitlabEvent::Ignored { .. }
        ));
        for kind in ["push", "merge_request", "deployment"] {
            let body = format!(r#"{{"object_kind": "{kind}"}}"#);
            assert!(matches!(
                parse_gitlab(body.as_bytes()).unwrap(),
                GitlabEvent::Ignored { .. }
            ));
        }
    }

    #[test]
    fn wrong_shape_names_the_field() {
        let cases: [(Vec<u8>, &str); 6] = [
            (b"{}".to_vec(), "object_kind"),
            (
                edited(PIPELINE_FAILED, |v| {
                    v["project"]
                        .as_object_mut()
                        .unwrap()
                        .remove("path_with_namespace");
                }),
                "project.path_with_namespace",
            ),
            (
                edited(PIPELINE_FAILED, |v| {
                    v["object_attributes"]["status"] = "mauve".into()
                }),
                "object_attributes.status",
            ),
            (
                edited(PIPELINE_FAILED, |v| {
                    v["builds"][2]["started_at"] = "later".into()
                }),
                "builds[2].started_at",
            ),
            (
                edited(PIPELINE_FAILED, |v| v["builds"] = "none".into()),
                "builds",
            ),
            (
                edited(JOB_SUCCESS, |v| v["pipeline_id"] = serde_json::Value::Null),
                "pipeline_id",
            ),
        ];
        for (body, field) in cases {
            let err = parse_gitlab(&body).unwrap_err();
            assert_eq!(err.kind(), AdapterErrorKind::Shape, "{err}");
            assert_eq!(err.field_error().unwrap().field, field, "{err}");
        }
    }

    #[test]
    fn malformed_body_is_a_400_kind_error() {
        let err = parse_gitlab(b"object_kind=pipeline").unwrap_err();
        assert_eq!(err.kind(), AdapterErrorKind::Malformed);
        assert_eq!(err.line_column(), Some((1, 1)));
    }
}
