//! `pipemedic demo`: the whole loop on this machine with no credentials.
//!
//! It starts the real server stack in-process on an embedded SQLite file in
//! a temporary directory, with the console as its chat and the local
//! CodePipeline stand-in as AWS (reached through the real SDK). It loads 90
//! days of generated history for three sample pipelines, trains their
//! models with a progress bar, then replays a day on which checkout-service
//! gets a flaky-test spike and payments-api a deploy that raises the error
//! rate. Each problem is alerted in the console and goes through the same
//! healing loop `serve` runs ([`crate::healing`]): a plan from the bundled
//! playbooks (rule-based, or drafted by Amazon Bedrock when the user's AWS
//! credentials are in the environment, falling back to rule-based if the
//! model fails) is offered in the thread, the demo's people press its
//! buttons (asked on the terminal, or `--yes`), the fix runs once against
//! the stand-in, and the next run, normal, resolves the incident. A summary
//! ends it, with each plan's track record.
//!
//! With `--store URL` the database is kept at that URL (an empty store:
//! the demo refuses one that already holds runs) so that `serve`,
//! `health`, `ask` and `outcomes` can be tried on it afterwards.
//!
//! The demo drives the same services `serve` uses; it only plays the part
//! of the CI system and of the people in the channel.

#[cfg(feature = "ci-evidence")]
mod evidence;
pub mod history;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Timelike, Utc};
use tokio::io::AsyncBufReadExt;

use crate::approvals::RequestStatus;
use crate::chat::console::ConsoleChat;
use crate::chat::{ChatEvent, ChatPlatform};
use crate::clock::SystemClock;
use crate::config::{self, Env, Loaded, Secret, Secrets};
use crate::domain::{Choice as ChatDecision, MessageRef, Platform};
use crate::domain::{IncidentStatus, Run, RunSource, Verdict};
use crate::ingest::IngestService;
use crate::standin::codepipeline::{ExecutionSpec, FakeCodePipeline};
use crate::startup::Application;
use history::{Shape, PIPELINES};

/// Days of history the demo generates.
pub const HISTORY_DAYS: i64 = 90;
/// The people in the demo channel; all of them may approve.
const APPROVERS: [&str; 2] = ["alice", "bob"];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot prepare the demo: {0}")]
    Setup(String),
    #[error("the store failed: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("a demo run was refused: {0}")]
    Ingest(#[from] crate::ingest::IngestError),
    #[error("the demo's problem was not detected: {0}")]
    NotDetected(String),
    #[error("the demo waited in vain for {0}")]
    Stuck(String),
    #[error("--store {url}: {why}")]
    BadStore { url: String, why: String },
}

/// Whether `url` can be a demo store: `sqlite:` or `postgres://`.
pub fn check_store_url(url: &str) -> Result<(), DemoError> {
    let url = url.trim();
    if url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://")
    {
        Ok(())
    } else {
        Err(DemoError::BadStore {
            url: crate::config::redact_url(url),
            why: "expected sqlite://PATH or postgres://…".to_string(),
        })
    }
}

/// Opens the store the demo keeps and checks that it holds no runs (the
/// demo replays a fixed day; runs already there would hide its problems).
async fn check_store_is_empty(url: &str) -> Result<(), DemoError> {
    let store = crate::store::Store::connect(url, 2).await?;
    let runs = store.count_runs().await;
    store.close().await;
    match runs? {
        0 => Ok(()),
        n => Err(DemoError::BadStore {
            url: crate::config::redact_url(url),
            why: format!("the store already holds {n} runs; the demo needs an empty store (delete the file or name another)"),
        }),
    }
}

/// What happened, for the summary and for tests.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DemoSummary {
    pub history_runs: usize,
    pub replayed_runs: usize,
    pub incidents: Vec<IncidentSummary>,
    /// Calls the CodePipeline stand-in received, by operation.
    pub codepipeline_calls: BTreeMap<String, usize>,
    /// Calls the CloudWatch Logs stand-in received (the failing build's log).
    pub logs_calls: BTreeMap<String, usize>,
    /// Calls the CloudWatch stand-in received (the failing build's CPU and memory).
    pub cloudwatch_calls: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentSummary {
    pub incident_id: i64,
    pub pipeline: String,
    pub run_id: String,
    pub grade: f64,
    pub metrics: Vec<String>,
    pub plan: String,
    /// The offered plan's suspected cause.
    pub cause: String,
    /// Who drafted the plan offered: `bedrock` or `offline`.
    pub planner: String,
    pub approved_by: Vec<String>,
    pub action: Option<String>,
    pub action_result: Option<String>,
    pub recovered_after_min: Option<i64>,
    /// The track record of each fix of the plan offered, in words.
    pub track_record: Vec<String>,
}

/// Options of a demo run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Approve every plan as the demo users instead of asking.
    pub yes: bool,
    pub planner: DemoPlanner,
    /// Keep the database at this store URL (`None`: a temporary file).
    pub store: Option<String>,
}

/// Who drafts the demo's plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoPlanner {
    /// The rule-based planner: no model, no credentials.
    Offline,
    /// Amazon Bedrock (`planner.model_id`), with the rule-based planner as
    /// the fallback when the model fails. `endpoint: None` reaches the real
    /// service with the standard AWS credential chain and region
    /// (`AWS_REGION`, else us-east-1); `Some(url)` a stand-in, with the
    /// demo's static credentials.
    Bedrock { endpoint: Option<String> },
}

impl DemoPlanner {
    /// Bedrock when AWS credentials are set in `env` (access keys, a
    /// profile, web identity or container credentials), else offline.
    pub fn from_env(env: &Env) -> Self {
        const CREDENTIAL_VARIABLES: [&str; 5] = [
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ];
        let set = |k: &str| env.get(k).is_some_and(|v| !v.trim().is_empty());
        if CREDENTIAL_VARIABLES.iter().any(|k| set(k)) {
            Self::Bedrock { endpoint: None }
        } else {
            Self::Offline
        }
    }
}

/// A random token for one demo run, so the demo's server accepts nothing
/// unauthenticated (hash keys come from the operating system's randomness).
fn ephemeral_secret() -> Secret {
    use std::hash::{BuildHasher, Hasher};
    // Each RandomState draws fresh keys; the empty hash is their digest.
    let part = || {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    Secret::new(format!("{:016x}{:016x}", part(), part()))
}

fn setup(e: impl std::fmt::Display) -> DemoError {
    DemoError::Setup(e.to_string())
}

fn say(line: &str) {
    println!("{line}");
}

/// Runs the demo to the end.
pub async fn run(options: DemoOptions) -> Result<DemoSummary, DemoError> {
    let dir = tempfile::tempdir().map_err(setup)?;
    let (store_url, kept) = match &options.store {
        Some(url) => {
            check_store_url(url)?;
            check_store_is_empty(url).await?;
            (url.trim().to_string(), true)
        }
        None => (
            format!(
                "sqlite://{}",
                dir.path().join("pipemedic-demo.db").display()
            ),
            false,
        ),
    };
    let standin = FakeCodePipeline::start().await;
    #[cfg(feature = "ci-evidence")]
    let evidence = evidence::Evidence::start().await;

    let mut config = config::from_sources(None, None, &Env::new()).map_err(setup)?;
    config.server.listen = "127.0.0.1:0".into();
    config.store.url = store_url.clone();
    config.chat.default_route.platform = "console".into();
    config.chat.default_route.channel = "#pipeline-alerts".into();
    config.chat.outbox_poll_ms = 50;
    config.aws.region = "us-east-1".into();
    // The demo's runs come through the generic API but are CodePipeline
    // executions (the stand-in knows them).
    config.planner.generic_ci = crate::playbooks::CiSystem::Codepipeline;
    config.aws.endpoints.codepipeline = standin.url();
    #[cfg(feature = "ci-evidence")]
    evidence.configure(&mut config);
    let mut real_aws = false;
    if let DemoPlanner::Bedrock { endpoint } = &options.planner {
        config.planner.backend = config::PlannerBackend::Bedrock;
        config.planner.offline_fallback = true;
        config.planner.timeout_s = 30;
        match endpoint {
            Some(url) => config.aws.endpoints.bedrock = url.clone(),
            None => {
                real_aws = true;
                config.aws.region = std::env::var("AWS_REGION")
                    .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                    .unwrap_or_else(|_| "us-east-1".into());
            }
        }
    }
    // The demo feeds runs in-process; its HTTP routes take no one else's.
    let secrets = Secrets {
        ingest_token: Some(ephemeral_secret()),
        read_token: Some(ephemeral_secret()),
        github_webhook_secret: Some(ephemeral_secret()),
        aws_webhook_secret: Some(ephemeral_secret()),
        gitlab_token: Some(ephemeral_secret()),
        ..Secrets::default()
    };
    let loaded = Loaded {
        config: config.clone(),
        secrets,
        source: None,
    };
    let aws = crate::aws::AwsSettings::from_config(&config.aws);
    // With real credentials (for Bedrock) the CodePipeline stand-in gets
    // signed requests too; it checks nothing and keeps nothing.
    let aws = if real_aws {
        aws
    } else {
        aws.with_static_credentials(
            aws_credential_types::Credentials::new(
                "DEMO",
                "demo-secret",
                None,
                None,
                "pipemedic-demo",
            ),
            "us-east-1",
        )
    };
    let console: Arc<dyn ChatPlatform> = Arc::new(ConsoleChat::stdout());
    let app = Application::build_with_platforms(
        loaded,
        Arc::new(SystemClock),
        aws,
        vec![console.clone()],
    )
    .await
    .map_err(setup)?;
    let state = app.state().clone();
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());

    say(if real_aws {
        "pipemedic demo: the whole loop on this machine; your AWS credentials are used for Bedrock only."
    } else {
        "pipemedic demo: the whole loop on this machine, no credentials needed."
    });
    say(&format!(
        "  store: {} ({})",
        crate::config::redact_url(&store_url),
        if kept {
            "kept; try `pipemedic outcomes` on it afterwards"
        } else {
            "temporary"
        }
    ));
    say(&format!(
        "  CodePipeline: local stand-in at {} via the AWS SDK",
        standin.url()
    ));
    say(&match &options.planner {
        DemoPlanner::Offline => "  chat: this console    planner: rule-based (bundled playbooks; set AWS credentials to use Bedrock)\n".to_string(),
        DemoPlanner::Bedrock { .. } => format!(
            "  chat: this console    planner: Amazon Bedrock ({} in {}), rule-based if it fails; --offline for rule-based only\n",
            config.planner.model_id, config.aws.region
        ),
    });

    // 1. History, stored without alerting, then learned.
    let today = Utc::now()
        .with_hour(0)
        .and_then(|t| t.with_minute(0))
        .and_then(|t| t.with_second(0))
        .unwrap_or_else(Utc::now)
        - Duration::days(1);
    let past = history::history(HISTORY_DAYS, today, 2026);
    let backfill = IngestService::new(
        state.store.clone(),
        state.metrics.clone(),
        state.clock.clone(),
    );
    let bar = progress(past.len() as u64, "loading 90 days of history");
    for chunk in past.chunks(500) {
        backfill
            .accept_runs(RunSource::Backfill, None, chunk, false)
            .await?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    say(&format!(
        "Loaded {} runs of 3 pipelines over {HISTORY_DAYS} days.",
        past.len()
    ));
    let bar = progress(past.len() as u64, "training models");
    let mut trained = 0u64;
    for p in PIPELINES {
        let before = trained;
        let (model, report) =
            crate::scoring::train::rebuild(&state.store, p.name, &state.config.detector, |n| {
                bar.set_position(before + n as u64)
            })
            .await?;
        trained += (report.learned + report.skipped_abnormal) as u64;
        if let Some(detection) = state.ingest.detection() {
            detection.replace(p.name, model).await.map_err(setup)?;
        }
    }
    bar.finish_and_clear();
    say("Trained one model per pipeline.\n");
    // The stand-in knows the last successful execution of each pipeline
    // (a rollback goes back to it).
    for p in PIPELINES {
        if let Some(last) = past
            .iter()
            .rev()
            .find(|r| r.pipeline == p.name && r.status.is_final())
        {
            let start = last.started_at.unwrap_or(today);
            let mut spec = ExecutionSpec::new(&last.run_id, "Succeeded", start);
            let mut offset = 0;
            for s in &last.stages {
                let d = s.duration_s().unwrap_or(1.0) as i64;
                spec = spec.action(
                    &s.name,
                    &format!("{}Action", s.name),
                    "Succeeded",
                    offset,
                    offset + d,
                );
                offset += d;
            }
            standin.add_execution(p.name, spec);
        }
    }

    // 2. The replayed day.
    say(&format!("Replaying {} ...", today.format("%A %Y-%m-%d")));
    let mut rng = crate::detect::rcf::Rng::new(99);
    let mut summary = DemoSummary {
        history_runs: past.len(),
        ..DemoSummary::default()
    };
    let problems: [(&str, u32, Shape); 2] = [
        ("checkout-service", 10, Shape::FlakyTests),
        ("payments-api", 14, Shape::DeployRegression),
    ];
    let mut n = 50_000u64;
    for hour in 8..18u32 {
        for p in PIPELINES {
            let start = today + Duration::hours(i64::from(hour)) + Duration::minutes(5);
            let problem = problems
                .iter()
                .find(|(name, h, _)| *name == p.name && *h == hour);
            let shape = problem.map_or(Shape::Normal, |(_, _, s)| *s);
            n += 1;
            #[allow(unused_mut)]
            let mut run = history::run(&p, n, start, shape, &mut rng);
            #[cfg(feature = "ci-evidence")]
            if shape == Shape::FlakyTests {
                // A CodeBuild build: its log and usage are where CodeBuild
                // keeps them, and pipemedic fetches them.
                evidence.move_to_codebuild(&mut run);
            }
            register(&standin, &run);
            let verdict = ingest_one(&state, &run).await?;
            summary.replayed_runs += 1;
            say(&format!(
                "  {}  {:<17} {:<10} {:<9} {:>5.0}s  {}",
                start.format("%H:%M"),
                run.pipeline,
                run.run_id,
                run.status.as_str(),
                run.duration_s().unwrap_or(0.0),
                if verdict.is_anomalous() {
                    format!("ABNORMAL (grade {:.2})", verdict.grade)
                } else {
                    "normal".to_string()
                }
            ));
            if problem.is_none() {
                continue;
            }
            if !verdict.is_anomalous() {
                return Err(DemoError::NotDetected(format!(
                    "{} run {}",
                    run.pipeline, run.run_id
                )));
            }
            let incident =
                handle_incident(&state, &run, &verdict, &options, &mut rng, &mut n, start).await?;
            summary.incidents.push(incident);
        }
    }

    wait_for_outbox(&state).await;
    for incident in &mut summary.incidents {
        incident.track_record = track_record_of(&state, incident.incident_id).await?;
    }
    for call in standin.calls() {
        *summary
            .codepipeline_calls
            .entry(call.operation.clone())
            .or_default() += 1;
    }
    #[cfg(feature = "ci-evidence")]
    evidence.count_calls(&mut summary);
    stop.cancel();
    let _ = server.await;
    print_summary(&summary);
    if kept {
        say(&browse_hint(&store_url));
    }
    Ok(summary)
}

/// How to look at a kept demo store afterwards: `serve` on it, then the
/// web console.
fn browse_hint(store_url: &str) -> String {
    format!(
        "Browse it: PIPEMEDIC_STORE__URL={} PIPEMEDIC_READ_TOKEN=<a token you choose> pipemedic serve, \
         then open http://127.0.0.1:8080/ui and sign in with that token.",
        crate::config::redact_url(store_url)
    )
}

/// The track record, in words, of each fix offered for an incident.
async fn track_record_of(
    state: &crate::http::AppState,
    incident_id: i64,
) -> Result<Vec<String>, DemoError> {
    let mut fixes: Vec<(String, String, String)> = Vec::new();
    for request in state
        .store
        .approval_requests_for_incident(&incident_id.to_string())
        .await?
    {
        for row in state.store.request_outcomes(request.id).await? {
            let fix = (row.pipeline, row.playbook, row.action);
            if !fixes.contains(&fix) {
                fixes.push(fix);
            }
        }
    }
    let mut out = Vec::new();
    for (pipeline, playbook, action) in fixes {
        if let Some(record) = state
            .store
            .track_record(&pipeline, &playbook, &action)
            .await?
        {
            out.push(format!("{playbook}/{action}: {}", record.sentence()));
        }
    }
    Ok(out)
}

/// Tells the CodePipeline stand-in about a run, as CodePipeline itself
/// would know its executions.
fn register(standin: &FakeCodePipeline, run: &Run) {
    let status = match run.status {
        crate::domain::RunStatus::Succeeded => "Succeeded",
        crate::domain::RunStatus::Failed => "Failed",
        crate::domain::RunStatus::Cancelled => "Stopped",
        crate::domain::RunStatus::Running => "InProgress",
    };
    let start = run.started_at.unwrap_or_else(Utc::now);
    let mut spec = ExecutionSpec::new(&run.run_id, status, start);
    for s in &run.stages {
        let (from, to) = match (s.started_at, s.finished_at) {
            (Some(a), Some(b)) => ((a - start).num_seconds(), (b - start).num_seconds()),
            _ => (0, 0),
        };
        let state = if s.status == Some(crate::domain::RunStatus::Failed) {
            "Failed"
        } else {
            "Succeeded"
        };
        spec = spec.action(&s.name, &format!("{}Action", s.name), state, from, to);
    }
    standin.add_execution(&run.pipeline, spec);
}

fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Stores a run as a CI system would report it and returns its verdict.
async fn ingest_one(state: &crate::http::AppState, run: &Run) -> Result<Verdict, DemoError> {
    let report = state
        .ingest
        .accept_runs(RunSource::Generic, None, std::slice::from_ref(run), true)
        .await?;
    report
        .runs
        .into_iter()
        .next()
        .and_then(|a| a.verdict)
        .ok_or_else(|| DemoError::Setup(format!("run {} was not scored", run.run_id)))
}

/// Waits until the incident of `pipeline` exists and its alert was posted.
async fn wait_for_incident(
    state: &crate::http::AppState,
    pipeline: &str,
) -> Result<crate::domain::Incident, DemoError> {
    for _ in 0..200 {
        if let Some(incident) = state
            .store
            .incidents(true, Some(pipeline), 1)
            .await?
            .into_iter()
            .next()
        {
            if incident.root_ref.is_some() {
                return Ok(incident);
            }
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    Err(DemoError::NotDetected(format!(
        "no incident opened for {pipeline}"
    )))
}

async fn wait_for_outbox(state: &crate::http::AppState) {
    for _ in 0..200 {
        match state.store.outbox_heads("console").await {
            Ok(heads) if heads.is_empty() => return,
            Ok(_) => {}
            Err(_) => return,
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
}

/// Polls `probe` until it yields something (about 10 s at most).
async fn wait_until<T, F, Fut>(what: &str, mut probe: F) -> Result<T, DemoError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, DemoError>>,
{
    for _ in 0..400 {
        if let Some(found) = probe().await? {
            return Ok(found);
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    Err(DemoError::Stuck(what.to_string()))
}

/// Waits until incident `id` is in one of `statuses`.
async fn wait_for_status(
    state: &crate::http::AppState,
    id: i64,
    statuses: &[IncidentStatus],
) -> Result<crate::domain::Incident, DemoError> {
    let what = format!(
        "incident #{id} to become {}",
        statuses
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" or ")
    );
    wait_until(&what, || async {
        Ok(state
            .store
            .incident(id)
            .await?
            .filter(|i| statuses.contains(&i.status)))
    })
    .await
}

/// The plan card posted for `request_id` in the thread (once sent).
async fn plan_card(
    state: &crate::http::AppState,
    incident_id: i64,
    request_id: i64,
) -> Result<MessageRef, DemoError> {
    let value = format!("request:{request_id}");
    wait_until("the plan to be posted", || async {
        Ok(state
            .store
            .outbox(Some("console"))
            .await?
            .into_iter()
            .filter(|row| row.incident_id == Some(incident_id))
            .filter(|row| {
                row.payload
                    .pointer("/message/buttons/0/value")
                    .and_then(|v| v.as_str())
                    == Some(value.as_str())
            })
            .find_map(|row| row.sent_ref))
    })
    .await
}

/// The demo's people press Approve (or Reject) under the plan, one after
/// another, until the plan is decided; returns who approved.
async fn decide(
    state: &crate::http::AppState,
    card: &MessageRef,
    request_id: i64,
    yes: bool,
) -> Result<Vec<String>, DemoError> {
    let sink = state
        .chat
        .sink
        .clone()
        .ok_or_else(|| setup("no chat sink"))?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut approved = Vec::new();
    for who in APPROVERS {
        let approve = if yes {
            true
        } else {
            say(&format!("  [{who}] type approve or reject: "));
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) if line.trim().is_empty() => continue,
                    Ok(Some(line)) => {
                        break line.trim().eq_ignore_ascii_case("approve") || line.trim() == "✅"
                    }
                    _ => break false,
                }
            }
        };
        let decision = if approve {
            ChatDecision::Approve
        } else {
            ChatDecision::Reject
        };
        let votes_before = state.store.approval_votes(request_id).await?.len();
        sink.handle(ChatEvent::Button {
            platform: Platform::Console,
            event_id: format!("demo-{request_id}-{who}"),
            channel: card.channel.clone(),
            message: card.clone(),
            user: who.to_string(),
            action_id: crate::chat::action_id(decision).to_string(),
            value: format!("request:{request_id}"),
        })
        .await;
        say(&format!(
            "  {} {who} pressed {}",
            if approve { "✅" } else { "❌" },
            if approve { "Approve" } else { "Reject" }
        ));
        let request = wait_until("the decision to be recorded", || async {
            let votes = state.store.approval_votes(request_id).await?.len();
            if votes <= votes_before {
                return Ok(None);
            }
            Ok(state.store.approval_request(request_id).await?)
        })
        .await?;
        if !approve {
            return Ok(Vec::new());
        }
        approved.push(who.to_string());
        if request.status != RequestStatus::Pending {
            break;
        }
    }
    Ok(approved)
}

/// One detected problem, through the loop `serve` runs: the healing service
/// drafts and offers the plan, the demo's people press the buttons, the
/// fix runs once, and the next run verifies it.
async fn handle_incident(
    state: &crate::http::AppState,
    run: &Run,
    verdict: &Verdict,
    options: &DemoOptions,
    rng: &mut crate::detect::rcf::Rng,
    n: &mut u64,
    started: DateTime<Utc>,
) -> Result<IncidentSummary, DemoError> {
    let incident = wait_for_incident(state, &run.pipeline).await?;
    let mut summary = IncidentSummary {
        incident_id: incident.id,
        pipeline: run.pipeline.clone(),
        run_id: run.run_id.clone(),
        grade: verdict.grade,
        metrics: verdict
            .deviations
            .iter()
            .map(|d| d.metric.clone())
            .collect(),
        plan: String::new(),
        cause: String::new(),
        planner: String::new(),
        approved_by: Vec::new(),
        action: None,
        action_result: None,
        recovered_after_min: None,
        track_record: Vec::new(),
    };
    // Healing stores a plan, then offers it (awaiting approval) or says
    // why it cannot (open).
    wait_until("a plan to be drafted", || async {
        Ok(state.store.plans_for_incident(&incident).await?.pop())
    })
    .await?;
    let offered = wait_for_status(
        state,
        incident.id,
        &[IncidentStatus::AwaitingApproval, IncidentStatus::Open],
    )
    .await?;
    let request = state
        .store
        .approval_requests_for_incident(&incident.id.to_string())
        .await?
        .pop();
    if let Some(plan) = request
        .as_ref()
        .and_then(|r| r.plan_ref.as_deref())
        .and_then(|p| p.parse::<i64>().ok())
    {
        if let Some(stored) = state.store.plan(plan).await? {
            summary.planner = stored.backend.clone();
            if let Some(validated) = stored
                .validated
                .and_then(|v| serde_json::from_value::<crate::plan::ValidatedPlan>(v).ok())
            {
                summary.plan = validated.summary;
                summary.cause = validated.suspected_cause;
            }
        }
    }
    let Some(request) = request.filter(|_| offered.status == IncidentStatus::AwaitingApproval)
    else {
        wait_for_outbox(state).await;
        return Ok(summary);
    };
    let card = plan_card(state, incident.id, request.id).await?;
    wait_for_outbox(state).await;
    summary.approved_by = decide(state, &card, request.id, options.yes).await?;
    let after = wait_for_status(
        state,
        incident.id,
        &[IncidentStatus::Verifying, IncidentStatus::Open],
    )
    .await?;
    let steps = state
        .healing
        .approvals()
        .steps(request.id)
        .await
        .map_err(setup)?;
    if let Some(step) = steps
        .first()
        .filter(|s| s.status != crate::store::ExecutionState::Skipped)
    {
        summary.action = Some(step.call.clone());
        summary.action_result = Some(format!("{}: {}", step.status.as_str(), step.summary));
    }
    wait_for_outbox(state).await;
    if after.status != IncidentStatus::Verifying {
        return Ok(summary);
    }
    // The next run of the pipeline, after the fix.
    let next_start = started + Duration::minutes(25);
    *n += 1;
    let p = PIPELINES
        .iter()
        .find(|p| p.name == run.pipeline)
        .ok_or_else(|| setup("unknown pipeline"))?;
    let next = history::run(p, *n, next_start, Shape::Normal, rng);
    let next_verdict = ingest_one(state, &next).await?;
    say(&format!(
        "  {}  {:<17} {:<10} {:<9} {:>5.0}s  {}",
        next_start.format("%H:%M"),
        next.pipeline,
        next.run_id,
        next.status.as_str(),
        next.duration_s().unwrap_or(0.0),
        if next_verdict.is_anomalous() {
            "still abnormal"
        } else {
            "normal again"
        }
    ));
    let done = wait_for_status(
        state,
        incident.id,
        &[
            IncidentStatus::Resolved,
            IncidentStatus::Open,
            IncidentStatus::AwaitingApproval,
        ],
    )
    .await?;
    if done.status == IncidentStatus::Resolved {
        let broken = run.finished_at.unwrap_or(started);
        let healed = next.finished_at.unwrap_or(next_start);
        summary.recovered_after_min = Some((healed - broken).num_minutes());
    }
    wait_for_outbox(state).await;
    Ok(summary)
}

fn print_summary(s: &DemoSummary) {
    say("\n== Summary ==");
    say(&format!(
        "history: {} runs learned; replayed: {} runs",
        s.history_runs, s.replayed_runs
    ));
    say(&format!("incidents detected: {}", s.incidents.len()));
    for i in &s.incidents {
        say(&format!(
            "  #{} {} run {} (grade {:.2}; {})",
            i.incident_id,
            i.pipeline,
            i.run_id,
            i.grade,
            i.metrics.join(", ")
        ));
        say(&format!("     plan ({}): {}", i.planner, i.plan));
        if !i.cause.is_empty() {
            say(&format!("     suspected cause: {}", i.cause));
        }
        say(&format!(
            "     approved by: {}",
            if i.approved_by.is_empty() {
                "nobody (rejected)".to_string()
            } else {
                i.approved_by.join(", ")
            }
        ));
        if let Some(a) = &i.action {
            say(&format!("     action: {a}"));
        }
        if let Some(r) = &i.action_result {
            say(&format!("     result: {r}"));
        }
        match i.recovered_after_min {
            Some(m) => say(&format!(
                "     recovery verified: next run normal, {m} min after the failure"
            )),
            None => say("     recovery: not verified"),
        }
        for line in &i.track_record {
            say(&format!("     track record: {line}"));
        }
    }
    for (service, calls) in [
        ("CodePipeline", &s.codepipeline_calls),
        ("CloudWatch Logs", &s.logs_calls),
        ("CloudWatch", &s.cloudwatch_calls),
    ] {
        let calls: Vec<String> = calls.iter().map(|(op, n)| format!("{op} x{n}")).collect();
        say(&format!(
            "{service} calls: {}",
            if calls.is_empty() {
                "none".into()
            } else {
                calls.join(", ")
            }
        ));
    }
}

#[cfg(test)]
mod tests;
