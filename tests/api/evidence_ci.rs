//! The failing job's log of abnormal GitHub Actions and GitLab runs,
//! through the real HTTP client against local stand-ins that speak the two
//! REST APIs: success (a redacted, bounded excerpt stored on the run that
//! quotes the error), a missing permission and a deleted or expired log
//! (said once, the incident goes on), throttling (retried, `Retry-After`
//! honoured), an oversized log (bounded in memory and in bytes read), a
//! secret in the log, runs without job ids (the run's or pipeline's jobs
//! listed), and runs that need no fetch, on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use pipemedic::config::{AwsConfig, EvidenceConfig, Secret};
use pipemedic::domain::{Run, RunSource, RunStatus, StageTiming};
use pipemedic::evidence::ci_http::CiLimits;
use pipemedic::evidence::github::GithubLogs;
use pipemedic::evidence::gitlab::GitlabLogs;
use pipemedic::evidence::{CiLogSettings, EvidenceService};
use pipemedic::metrics::Metrics;
use pipemedic::redact::Redactor;
use pipemedic::store::Store;

use crate::fakes::github_actions::FakeGithubActions;
use crate::fakes::gitlab::FakeGitlab;
use crate::helpers::{t, test_aws_settings, Db, TestDb};

const GITHUB_TOKEN: &str = "ghs_evidenceTokenForTheStandIn0000000000";
const GITLAB_TOKEN: &str = "glpat-evidenceTokenForStandIn";
const PROJECT: &str = "gitlab-org/gitlab-test";
const ERROR_LINE: &str =
    "ERROR: cart total mismatch in tests/test_cart.py::test_total (expected 42, got 41)";
const LEAKED_PAT: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";

struct Setup {
    _db: TestDb,
    store: Store,
    github: FakeGithubActions,
    gitlab: FakeGitlab,
    metrics: Arc<Metrics>,
    service: EvidenceService,
    run_pk: i64,
}

/// A failed GitHub Actions run; `job_id` is the failed job's id when a
/// `workflow_job` delivery gave it.
fn github_run(job_id: Option<&str>) -> Run {
    let mut run = Run::new("octo-org/octo-repo/test", "289782451", RunStatus::Failed);
    run.started_at = Some(t("2026-11-20T10:00:00Z"));
    run.finished_at = Some(t("2026-11-20T10:07:12Z"));
    run.url = Some("https://github.com/octo-org/octo-repo/actions/runs/289782451".into());
    if let Some(id) = job_id {
        run.stage = Some("integration-tests".into());
        run.stages.push(StageTiming {
            name: "integration-tests".into(),
            status: Some(RunStatus::Failed),
            started_at: Some(t("2026-11-20T10:01:00Z")),
            finished_at: Some(t("2026-11-20T10:07:00Z")),
            job_id: Some(id.into()),
        });
    }
    run
}

/// A failed GitLab pipeline whose `builds` named the failed job 378.
fn gitlab_run() -> Run {
    let mut run = Run::new(PROJECT, "31", RunStatus::Failed);
    run.started_at = Some(t("2026-11-20T10:00:00Z"));
    run.finished_at = Some(t("2026-11-20T10:07:12Z"));
    run.stage = Some("test-build".into());
    for (name, status, id) in [
        ("build-image", RunStatus::Succeeded, "376"),
        ("lint", RunStatus::Failed, "379"),
        ("test-build", RunStatus::Failed, "378"),
    ] {
        run.stages.push(StageTiming {
            name: name.into(),
            status: Some(status),
            started_at: Some(t("2026-11-20T10:01:00Z")),
            finished_at: Some(t("2026-11-20T10:07:00Z")),
            job_id: Some(id.into()),
        });
    }
    run
}

async fn setup_with(db: Db, run: Run, source: RunSource, limits: CiLimits) -> Option<Setup> {
    let db = TestDb::new(db).await?;
    let store = db.store().await;
    let mut tx = store.begin_write().await.unwrap();
    let pk = tx
        .upsert_run(&run, source, t("2026-11-20T10:08:00Z"))
        .await
        .unwrap()
        .pk;
    tx.commit().await.unwrap();
    let github = FakeGithubActions::start().await;
    let gitlab = FakeGitlab::start().await;
    let ci = CiLogSettings {
        github: Some(GithubLogs {
            api_url: github.url(),
            token: Secret::new(GITHUB_TOKEN),
            limits,
        }),
        gitlab: Some(GitlabLogs {
            api_url: format!("{}/", gitlab.url()),
            token: Secret::new(GITLAB_TOKEN),
            limits,
        }),
        connect_timeout: Duration::from_secs(2),
    };
    let metrics = Arc::new(Metrics::new());
    let service = EvidenceService::with_ci_logs(
        EvidenceConfig {
            timeout_s: 10,
            ..EvidenceConfig::default()
        },
        &test_aws_settings(&AwsConfig::default()),
        store.clone(),
        metrics.clone(),
        Arc::new(Redactor::builtin().unwrap()),
        ci,
    );
    Some(Setup {
        _db: db,
        store,
        github,
        gitlab,
        metrics,
        service,
        run_pk: pk,
    })
}

async fn setup(db: Db, run: Run, source: RunSource) -> Option<Setup> {
    setup_with(db, run, source, CiLimits::default()).await
}

/// A failed GitHub run whose failing job is `job_id`, on SQLite.
async fn github_job(job_id: &str) -> Option<Setup> {
    setup(Db::Sqlite, github_run(Some(job_id)), RunSource::Github).await
}

fn job_log(lines: usize) -> Vec<String> {
    let mut log: Vec<String> = (0..lines)
        .map(|i| {
            format!(
                "2026-11-20T10:05:{:02}.1234567Z tests/test_module_{i}.py::test_case PASSED",
                i % 60
            )
        })
        .collect();
    log.insert(lines / 3, ERROR_LINE.into());
    log.push(format!("git remote set-url origin https://x-access-token:{LEAKED_PAT}@github.com/octo-org/octo-repo"));
    log.push("##[error]Process completed with exit code 1.".into());
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

async fn stored(s: &Setup) -> Run {
    s.store.run_by_pk(s.run_pk).await.unwrap().unwrap().run
}

// ---- GitHub Actions ------------------------------------------------------

crate::on_both_databases!(
    github_failed_job_log_is_stored_redacted_and_bounded,
    gitlab_failed_job_trace_is_stored_redacted_and_bounded
);

async fn github_failed_job_log_is_stored_redacted_and_bounded(db: Db) {
    let Some(s) = setup(db, github_run(Some("7512098341")), RunSource::Github).await else {
        return;
    };
    s.github.put_log("7512098341", &job_log(3000));
    let notes = s.service.gather(7, s.run_pk).await.unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let run = stored(&s).await;
    let excerpt = run.log_excerpt.expect("an excerpt");
    assert!(excerpt.len() <= 4096, "{}", excerpt.len());
    assert!(excerpt.contains(ERROR_LINE), "{excerpt}");
    assert!(excerpt.ends_with("##[error]Process completed with exit code 1."));
    assert!(!excerpt.contains(LEAKED_PAT), "redacted before storing");
    assert!(excerpt.contains("[REDACTED"), "{excerpt}");

    let calls = s.github.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let api = &calls[0];
    assert_eq!(
        api.path,
        "/repos/octo-org/octo-repo/actions/jobs/7512098341/logs"
    );
    assert_eq!(
        api.headers["authorization"],
        format!("Bearer {GITHUB_TOKEN}")
    );
    assert_eq!(api.headers["accept"], "application/vnd.github+json");
    assert_eq!(api.headers["x-github-api-version"], "2022-11-28");
    assert!(api.headers["user-agent"].starts_with("pipemedic/"));
    let download = &calls[1];
    assert_eq!(download.path, "/download/job-logs/7512098341");
    assert!(
        !download.headers.contains_key("authorization"),
        "the token is not sent to the pre-signed download URL"
    );
    assert!(counter(&s.metrics, "github_actions", "ok"));
}

#[tokio::test]
async fn github_without_job_ids_lists_the_runs_jobs_and_reads_the_failed_one() {
    let Some(s) = setup(Db::Sqlite, github_run(None), RunSource::Github).await else {
        return;
    };
    s.github.put_run_jobs(
        "289782451",
        &[
            (7512098340, "build", "success"),
            (7512098341, "integration-tests", "failure"),
        ],
    );
    s.github.put_log("7512098341", &job_log(50));
    s.github.put_log("7512098340", &["build ok".to_string()]);
    let notes = s.service.gather(7, s.run_pk).await.unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let calls = s.github.calls();
    assert_eq!(
        calls[0].path,
        "/repos/octo-org/octo-repo/actions/runs/289782451/jobs"
    );
    assert_eq!(calls[0].query, "filter=latest&per_page=100");
    assert_eq!(
        calls[1].path,
        "/repos/octo-org/octo-repo/actions/jobs/7512098341/logs"
    );
    assert!(stored(&s).await.log_excerpt.unwrap().contains(ERROR_LINE));
}

#[tokio::test]
async fn github_missing_permission_is_said_once_and_fails_nothing() {
    let Some(s) = github_job("7512098341").await else {
        return;
    };
    s.github.put_log("7512098341", &job_log(10));
    s.github
        .reply_next(403, &[], "Resource not accessible by integration");
    s.github
        .reply_next(403, &[], "Resource not accessible by integration");
    let notes = s.service.gather(7, s.run_pk).await.unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("access denied"), "{}", notes[0]);
    assert!(notes[0].contains("Resource not accessible by integration"));
    assert!(notes[0].contains("actions: read"), "{}", notes[0]);
    assert!(!notes[0].contains(GITHUB_TOKEN));
    let again = s.service.gather(7, s.run_pk).await.unwrap();
    assert!(again.is_empty(), "said once per incident: {again:?}");
    assert_eq!(
        s.github.calls().len(),
        2,
        "a permission error is not retried"
    );
    assert_eq!(stored(&s).await.log_excerpt, None);
    assert!(counter(&s.metrics, "github_actions", "denied"));
}

#[tokio::test]
async fn github_expired_or_deleted_log_is_said_and_the_incident_goes_on() {
    let Some(s) = github_job("7512098341").await else {
        return;
    };
    s.github.expire_log("7512098341");
    let notes = s.service.gather(9, s.run_pk).await.unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("not found") && notes[0].contains("410"),
        "{}",
        notes[0]
    );
    assert_eq!(stored(&s).await.log_excerpt, None);
    assert!(counter(&s.metrics, "github_actions", "not_found"));

    // A deleted job (404) in another incident: said there too.
    let notes = s.service.gather(10, s.run_pk).await.unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let Some(s) = github_job("404404").await else {
        return;
    };
    let notes = s.service.gather(9, s.run_pk).await.unwrap();
    assert!(
        notes[0].contains("not found") && notes[0].contains("404"),
        "{}",
        notes[0]
    );
}

#[tokio::test]
async fn github_throttling_is_retried_after_the_wait_it_asks_for() {
    let Some(s) = github_job("7512098341").await else {
        return;
    };
    s.github.put_log("7512098341", &job_log(20));
    s.github
        .reply_next(429, &[("retry-after", "1")], "API rate limit exceeded");
    let began = std::time::Instant::now();
    let notes = s.service.gather(3, s.run_pk).await.unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert!(
        began.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    let log_calls = s
        .github
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/logs"))
        .count();
    assert_eq!(log_calls, 2, "one throttled, the second answered");
    assert!(stored(&s).await.log_excerpt.unwrap().contains(ERROR_LINE));
    assert!(counter(&s.metrics, "github_actions", "ok"));

    // Throttled through every retry: counted, not said, nothing stored.
    let Some(s) = github_job("7512098341").await else {
        return;
    };
    s.github.put_log("7512098341", &job_log(20));
    for _ in 0..3 {
        s.github.reply_next(
            403,
            &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "0")],
            "API rate limit exceeded",
        );
    }
    let notes = s.service.gather(3, s.run_pk).await.unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(s.github.calls().len(), 3, "the first try and two retries");
    assert_eq!(stored(&s).await.log_excerpt, None);
    assert!(counter(&s.metrics, "github_actions", "throttled"));
}

/// About `mb` MiB of log with the error early and the end at the end.
fn big_log(mb: usize) -> Vec<u8> {
    let line = "2026-11-20T10:05:00.1234567Z   Compiling crate-with-a-long-name v1.2.3 (/home/runner/work)\n";
    let mut log = String::with_capacity(mb * 1024 * 1024 + 1024);
    log.push_str(ERROR_LINE);
    log.push('\n');
    while log.len() < mb * 1024 * 1024 {
        log.push_str(line);
    }
    log.push_str("##[error]Process completed with exit code 101.\n");
    log.into_bytes()
}

#[tokio::test]
async fn github_oversized_log_is_read_with_a_cap_and_kept_small() {
    // Under the read cap: the whole log is read, its tail kept.
    let Some(s) = github_job("1").await else {
        return;
    };
    s.github.put_log_bytes("1", big_log(3));
    s.service.gather(1, s.run_pk).await.unwrap();
    let excerpt = stored(&s).await.log_excerpt.unwrap();
    assert!(excerpt.len() <= 4096, "{}", excerpt.len());
    assert!(excerpt.ends_with("##[error]Process completed with exit code 101."));

    // Over it: reading stops there, and the excerpt says the log was cut.
    let limits = CiLimits {
        tail_bytes: 256 * 1024,
        max_read_bytes: 2 * 1024 * 1024,
        ..CiLimits::default()
    };
    let Some(s) = setup_with(Db::Sqlite, github_run(Some("1")), RunSource::Github, limits).await
    else {
        return;
    };
    let log = big_log(48);
    let total = log.len() as u64;
    s.github.put_log_bytes("1", log);
    s.service.gather(1, s.run_pk).await.unwrap();
    let excerpt = stored(&s).await.log_excerpt.unwrap();
    assert!(excerpt.len() <= 4096, "{}", excerpt.len());
    assert!(excerpt.ends_with("its end was not read]"), "{excerpt}");
    let served = s.github.bytes_served();
    assert!(
        served < total / 2,
        "the client hung up after its cap: {served} of {total} bytes served"
    );
}

#[tokio::test]
async fn normal_runs_and_runs_without_a_token_fetch_nothing() {
    let mut run = github_run(Some("7512098341"));
    run.status = RunStatus::Succeeded;
    let Some(s) = setup(Db::Sqlite, run, RunSource::Github).await else {
        return;
    };
    assert!(s.service.gather(1, s.run_pk).await.unwrap().is_empty());
    let mut run = gitlab_run();
    run.status = RunStatus::Succeeded;
    let Some(g) = setup(Db::Sqlite, run, RunSource::Gitlab).await else {
        return;
    };
    assert!(g.service.gather(1, g.run_pk).await.unwrap().is_empty());
    // A run from the generic API is not a GitHub run, whatever its name.
    let Some(n) = setup(Db::Sqlite, github_run(Some("1")), RunSource::Generic).await else {
        return;
    };
    assert!(n.service.gather(1, n.run_pk).await.unwrap().is_empty());
    assert!(s.github.calls().is_empty() && g.gitlab.calls().is_empty());
    assert!(n.github.calls().is_empty() && n.gitlab.calls().is_empty());
    assert_eq!(stored(&s).await.log_excerpt, None);

    // No token: the source is off and asks nothing.
    let db = TestDb::new(Db::Sqlite).await.unwrap();
    let store = db.store().await;
    let mut tx = store.begin_write().await.unwrap();
    let pk = tx
        .upsert_run(
            &github_run(Some("7")),
            RunSource::Github,
            t("2026-11-20T10:08:00Z"),
        )
        .await
        .unwrap()
        .pk;
    tx.commit().await.unwrap();
    let off = EvidenceService::with_ci_logs(
        EvidenceConfig::default(),
        &test_aws_settings(&AwsConfig::default()),
        store.clone(),
        Arc::new(Metrics::new()),
        Arc::new(Redactor::builtin().unwrap()),
        CiLogSettings::default(),
    );
    assert!(off.gather(1, pk).await.unwrap().is_empty());
    assert_eq!(
        store.run_by_pk(pk).await.unwrap().unwrap().run.log_excerpt,
        None
    );
}

// ---- GitLab --------------------------------------------------------------

async fn gitlab_failed_job_trace_is_stored_redacted_and_bounded(db: Db) {
    let Some(s) = setup(db, gitlab_run(), RunSource::Gitlab).await else {
        return;
    };
    s.gitlab.put_trace(PROJECT, "378", &job_log(3000));
    s.gitlab
        .put_trace(PROJECT, "379", &["lint failed".to_string()]);
    let notes = s.service.gather(7, s.run_pk).await.unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let excerpt = stored(&s).await.log_excerpt.expect("an excerpt");
    assert!(excerpt.len() <= 4096, "{}", excerpt.len());
    assert!(excerpt.contains(ERROR_LINE), "{excerpt}");
    assert!(!excerpt.contains(LEAKED_PAT), "redacted before storing");
    let calls = s.gitlab.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].path, "/api/v4/projects/gitlab-org%2Fgitlab-test/jobs/378/trace",
        "the run's failed stage, not the allowed-to-fail job"
    );
    assert_eq!(calls[0].headers["private-token"], GITLAB_TOKEN);
    assert!(!calls[0].headers.contains_key("authorization"));
    assert!(counter(&s.metrics, "gitlab", "ok"));
}

#[tokio::test]
async fn gitlab_missing_permission_and_deleted_trace_are_said_once() {
    let Some(s) = setup(Db::Sqlite, gitlab_run(), RunSource::Gitlab).await else {
        return;
    };
    s.gitlab.put_trace(PROJECT, "378", &job_log(10));
    s.gitlab.reply_next(403, &[], "403 Forbidden");
    let notes = s.service.gather(7, s.run_pk).await.unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("access denied") && notes[0].contains("read_api"),
        "{}",
        notes[0]
    );
    assert!(!notes[0].contains(GITLAB_TOKEN));
    s.gitlab.reply_next(403, &[], "403 Forbidden");
    assert!(
        s.service.gather(7, s.run_pk).await.unwrap().is_empty(),
        "said once"
    );
    assert_eq!(s.gitlab.calls().len(), 2, "not retried");
    assert!(counter(&s.metrics, "gitlab", "denied"));

    // The trace was erased (or the job deleted): 404.
    let Some(s) = setup(Db::Sqlite, gitlab_run(), RunSource::Gitlab).await else {
        return;
    };
    let notes = s.service.gather(8, s.run_pk).await.unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("not found"), "{}", notes[0]);
    assert_eq!(stored(&s).await.log_excerpt, None);
    assert!(counter(&s.metrics, "gitlab", "not_found"));
}

/// A failed GitLab pipeline from a hook without `builds`: no job ids.
fn gitlab_run_without_job_ids() -> Run {
    let mut run = gitlab_run();
    run.stage = None;
    run.stages.clear();
    run
}

/// A job as GitLab's `List pipeline jobs` answers it.
fn gitlab_job(id: u64, name: &str, status: &str, finished_at: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "name": name,
        "stage": "test",
        "status": status,
        "allow_failure": false,
        "created_at": "2026-11-20T10:00:00.000Z",
        "started_at": "2026-11-20T10:01:00.000Z",
        "finished_at": finished_at,
        "web_url": format!("https://gitlab.example.com/{PROJECT}/-/jobs/{id}"),
    })
}

#[tokio::test]
async fn gitlab_without_job_ids_lists_the_pipelines_failed_jobs_and_reads_one() {
    let Some(s) = setup(Db::Sqlite, gitlab_run_without_job_ids(), RunSource::Gitlab).await else {
        return;
    };
    s.gitlab.put_pipeline_jobs(
        PROJECT,
        "31",
        vec![
            (
                gitlab_job(376, "build-image", "success", "2026-11-20T10:02:00.000Z"),
                false,
            ),
            // `unit` failed, was retried and failed again; the retry is the one.
            (
                gitlab_job(378, "unit", "failed", "2026-11-20T10:04:00.000Z"),
                true,
            ),
            (
                gitlab_job(381, "unit", "failed", "2026-11-20T10:06:00.000Z"),
                false,
            ),
            // Failed later than `unit`'s retry.
            (
                gitlab_job(380, "e2e", "failed", "2026-11-20T10:07:00.000Z"),
                false,
            ),
        ],
    );
    s.gitlab.put_trace(PROJECT, "381", &job_log(50));
    s.gitlab
        .put_trace(PROJECT, "378", &["the first try".to_string()]);
    s.gitlab
        .put_trace(PROJECT, "380", &["e2e failed".to_string()]);
    let notes = s.service.gather(7, s.run_pk).await.unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let calls = s.gitlab.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[0].path,
        "/api/v4/projects/gitlab-org%2Fgitlab-test/pipelines/31/jobs"
    );
    assert_eq!(calls[0].query, "scope[]=failed&per_page=100");
    assert_eq!(calls[0].headers["private-token"], GITLAB_TOKEN);
    assert_eq!(
        calls[1].path, "/api/v4/projects/gitlab-org%2Fgitlab-test/jobs/381/trace",
        "the latest try of the job that failed first"
    );
    let excerpt = stored(&s).await.log_excerpt.expect("an excerpt");
    assert!(excerpt.contains(ERROR_LINE), "{excerpt}");
    assert!(counter(&s.metrics, "gitlab", "ok"));
}

#[tokio::test]
async fn gitlab_pipeline_without_a_failed_job_fetches_nothing() {
    let Some(s) = setup(Db::Sqlite, gitlab_run_without_job_ids(), RunSource::Gitlab).await else {
        return;
    };
    s.gitlab.put_pipeline_jobs(
        PROJECT,
        "31",
        vec![
            (
                gitlab_job(376, "build-image", "success", "2026-11-20T10:02:00.000Z"),
                false,
            ),
            (
                gitlab_job(377, "unit", "canceled", "2026-11-20T10:03:00.000Z"),
                false,
            ),
        ],
    );
    s.gitlab.put_trace(PROJECT, "377", &job_log(10));
    let notes = s.service.gather(7, s.run_pk).await.unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let calls = s.gitlab.calls();
    assert_eq!(calls.len(), 1, "the list only, no trace: {calls:?}");
    assert!(calls[0].path.ends_with("/pipelines/31/jobs"), "{calls:?}");
    assert_eq!(stored(&s).await.log_excerpt, None);
    assert!(counter(&s.metrics, "gitlab", "empty"));
}

#[tokio::test]
async fn gitlab_denied_job_list_is_said_once() {
    let Some(s) = setup(Db::Sqlite, gitlab_run_without_job_ids(), RunSource::Gitlab).await else {
        return;
    };
    s.gitlab.put_pipeline_jobs(
        PROJECT,
        "31",
        vec![(
            gitlab_job(381, "unit", "failed", "2026-11-20T10:06:00.000Z"),
            false,
        )],
    );
    s.gitlab.put_trace(PROJECT, "381", &job_log(10));
    s.gitlab.reply_next(403, &[], "403 Forbidden");
    let notes = s.service.gather(7, s.run_pk).await.unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("access denied") && notes[0].contains("read_api"),
        "{}",
        notes[0]
    );
    assert!(
        notes[0].contains("failed jobs of pipeline 31"),
        "{}",
        notes[0]
    );
    assert!(!notes[0].contains(GITLAB_TOKEN));
    s.gitlab.reply_next(403, &[], "403 Forbidden");
    assert!(
        s.service.gather(7, s.run_pk).await.unwrap().is_empty(),
        "said once"
    );
    let calls = s.gitlab.calls();
    assert_eq!(calls.len(), 2, "not retried, no trace asked: {calls:?}");
    assert!(calls.iter().all(|c| c.path.ends_with("/pipelines/31/jobs")));
    assert_eq!(stored(&s).await.log_excerpt, None);
    assert!(counter(&s.metrics, "gitlab", "denied"));
}

#[tokio::test]
async fn gitlab_throttling_and_server_errors_are_retried() {
    let Some(s) = setup(Db::Sqlite, gitlab_run(), RunSource::Gitlab).await else {
        return;
    };
    s.gitlab.put_trace(PROJECT, "378", &job_log(20));
    s.gitlab
        .reply_next(429, &[("retry-after", "1")], "429 Too Many Requests");
    s.gitlab.reply_next(502, &[], "502 Bad Gateway");
    let began = std::time::Instant::now();
    let notes = s.service.gather(3, s.run_pk).await.unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert!(
        began.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(s.gitlab.calls().len(), 3);
    assert!(stored(&s).await.log_excerpt.unwrap().contains(ERROR_LINE));
    assert!(counter(&s.metrics, "gitlab", "ok"));

    // A wait longer than the time left is not waited for.
    let Some(s) = setup(Db::Sqlite, gitlab_run(), RunSource::Gitlab).await else {
        return;
    };
    s.gitlab.put_trace(PROJECT, "378", &job_log(20));
    s.gitlab
        .reply_next(429, &[("retry-after", "3600")], "429 Too Many Requests");
    let began = std::time::Instant::now();
    assert!(s.service.gather(3, s.run_pk).await.unwrap().is_empty());
    assert!(began.elapsed() < Duration::from_secs(5));
    assert_eq!(s.gitlab.calls().len(), 1);
    assert!(counter(&s.metrics, "gitlab", "throttled"));
}

#[tokio::test]
async fn gitlab_oversized_trace_is_read_with_a_cap_and_kept_small() {
    let limits = CiLimits {
        tail_bytes: 256 * 1024,
        max_read_bytes: 2 * 1024 * 1024,
        ..CiLimits::default()
    };
    let Some(s) = setup_with(Db::Sqlite, gitlab_run(), RunSource::Gitlab, limits).await else {
        return;
    };
    let trace = big_log(48);
    let total = trace.len() as u64;
    s.gitlab.put_trace_bytes(PROJECT, "378", trace);
    s.service.gather(1, s.run_pk).await.unwrap();
    let excerpt = stored(&s).await.log_excerpt.unwrap();
    assert!(excerpt.len() <= 4096, "{}", excerpt.len());
    assert!(excerpt.contains(ERROR_LINE) || excerpt.ends_with("its end was not read]"));
    let served = s.gitlab.bytes_served();
    assert!(served < total / 2, "{served} of {total} bytes served");
}

// ---- End to end ----------------------------------------------------------

#[tokio::test]
async fn an_abnormal_github_run_gets_its_failing_jobs_log_through_the_loop() {
    let github = FakeGithubActions::start().await;
    github.put_log("7512098341", &job_log(200));
    let api_url = github.url();
    let Some(app) = crate::helpers::spawn_app_with_secrets(
        Db::Sqlite,
        |c| {
            c.evidence.fetch_logs = true;
            c.github.api_url = api_url;
        },
        |s| s.github_token = Some(Secret::new(GITHUB_TOKEN)),
        None,
    )
    .await
    else {
        return;
    };
    let pipeline = "octo-org/octo-repo/test";
    crate::healing::history(&app, pipeline).await;
    assert!(github.calls().is_empty(), "normal runs fetch nothing");
    // The failed job first, then its run (seven minutes against two).
    for (event, delivery, body) in [
        ("workflow_job", "d-job", GH_JOB_FAILED),
        ("workflow_run", "d-run", GH_RUN_FAILED),
    ] {
        let res =
            crate::webhooks::github(&app, event, delivery, body, crate::webhooks::signed(body))
                .await;
        assert!(res.status().is_success(), "{}", res.status());
    }
    let mut excerpt = None;
    for _ in 0..1500 {
        let run = app
            .store
            .get_run(pipeline, "289782451", 2)
            .await
            .unwrap()
            .map(|s| s.run);
        excerpt = run.and_then(|r| r.log_excerpt);
        if excerpt.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let excerpt = excerpt.expect("the failing job's log is stored with the run");
    assert!(excerpt.contains(ERROR_LINE), "{excerpt}");
    assert!(!excerpt.contains(LEAKED_PAT));
    let calls = github.calls();
    assert_eq!(
        calls[0].path, "/repos/octo-org/octo-repo/actions/jobs/7512098341/logs",
        "the job id from the workflow_job delivery: no listing"
    );
}

const GH_JOB_FAILED: &str = include_str!("../fixtures/github/workflow_job-completed-failure.json");
const GH_RUN_FAILED: &str = include_str!("../fixtures/github/workflow_run-completed-failure.json");
