//! The command line: parsing with clap and one function per command. Each
//! command loads the configuration it needs, calls the library, and maps the
//! outcome to the exit codes of the design: 0 ok, 1 runtime failure, 2 bad
//! usage or bad input, 3 anomalous (`check`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Duration, Utc};
use clap::{Parser, Subcommand};

use crate::config::{self, Env, Loaded};
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "pipemedic",
    version,
    about = "Self-healing CI/CD chat-ops bot: learns each pipeline's normal, alerts in Slack or Discord, drafts fixes, runs them only with approval.",
    after_help = "Configuration: --config FILE, else $PIPEMEDIC_CONFIG, else ./pipemedic.toml, else built-in defaults.\nExit codes: 0 ok, 1 runtime failure, 2 bad usage or input, 3 anomalous (check)."
)]
pub struct Cli {
    /// Configuration file (default: $PIPEMEDIC_CONFIG or ./pipemedic.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server, chat connections and detection loop (production mode).
    Serve,
    /// Run the whole loop locally with no credentials: sample history, console chat, offline planner (Bedrock when AWS credentials are set).
    Demo {
        /// Approve every plan as the demo user and exit 0 after the summary.
        #[arg(long)]
        yes: bool,
        /// Use the rule-based planner even when AWS credentials are set.
        #[arg(long)]
        offline: bool,
    },
    /// Backfill runs from a JSON Lines (one Run per line) or CSV file.
    Ingest {
        /// The file: `.csv` is read as CSV with a header, anything else as JSON Lines.
        file: PathBuf,
        /// Validate and report, store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Store the valid lines even when some lines are invalid.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Rebuild detection models from stored history (skipping runs graded abnormal).
    #[command(
        after_help = "Run it while `serve` is stopped: a running server keeps its own models in memory and saves them over these."
    )]
    Train {
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// Score a CSV series from stdin: `timestamp,value[,value...]` in, `timestamp,score,grade,expected...` out.
    #[command(
        after_help = "Example: pipemedic score --shingle 4 < cpu.csv > scored.csv\nA header row is recognised; grades above 0 are anomalies."
    )]
    Score {
        /// Consecutive points the forest sees together.
        #[arg(long, default_value_t = 8)]
        shingle: usize,
        /// Trees in the forest.
        #[arg(long, default_value_t = 50)]
        trees: usize,
        /// Points each tree keeps.
        #[arg(long, default_value_t = 256)]
        sample_size: usize,
        /// Seed of all randomness (same seed and input, same output).
        #[arg(long, default_value_t = 0x5eed)]
        seed: u64,
        /// Higher finds more anomalies.
        #[arg(long, default_value_t = 1.0)]
        sensitivity: f64,
        /// Points learned before any grade can be above zero.
        #[arg(long)]
        warm_up: Option<u64>,
        /// Add a last `why` column: for anomalous rows, the value that drove
        /// the score against what was expected, in words.
        #[arg(long)]
        explain: bool,
    },
    /// Declare a pipeline's current level normal (all metrics, or one): alerts for it stop at once.
    AcceptBaseline {
        pipeline: String,
        /// One metric, e.g. duration_s (default: all).
        metric: Option<String>,
        /// Who says so (for the audit log).
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Print pipeline health: runs, success rate, duration p50/p95 over 7 and 30 days, trend, last run.
    Health {
        /// One pipeline (default: every pipeline).
        pipeline: Option<String>,
        /// Print JSON (the same object as GET /v1/pipelines/{name}/health).
        #[arg(long)]
        json: bool,
    },
    /// Post-build check: send this build's metrics, print the verdict, exit 3 when anomalous.
    #[command(
        after_help = "Exit codes: 0 normal (or server unreachable without --strict), 1 server unreachable with --strict, 2 bad flags or the server refused the run, 3 anomalous.\nThe run id and commit default to the CI's variables (CODEBUILD_BUILD_ID, GITHUB_RUN_ID, CI_PIPELINE_ID; CODEBUILD_RESOLVED_SOURCE_VERSION, GITHUB_SHA, CI_COMMIT_SHA)."
    )]
    Check(Box<CheckArgs>),
    /// Ask a plain-language question about pipelines, runs or incidents.
    #[command(
        after_help = "Examples:\n  pipemedic ask \"how is checkout-service doing this week?\"\n  pipemedic ask \"which pipelines got slower since monday?\"\n  pipemedic ask \"why did payments fail?\" --json"
    )]
    Ask {
        /// The question, in plain words.
        question: String,
        /// Print JSON: {"answer", "facts", "sources", ...} (the body of POST /v1/ask).
        #[arg(long)]
        json: bool,
        /// Answer as of this time (RFC 3339) instead of now.
        #[arg(long, value_name = "TIME")]
        at: Option<DateTime<Utc>>,
    },
    /// Playbook tools.
    Playbooks {
        #[command(subcommand)]
        command: PlaybooksCommand,
    },
    /// Replay stored history: how many alerts would have fired, per pipeline.
    Backtest {
        /// Replay from here (`90d`, `2w`, an RFC 3339 time); earlier runs train the model.
        #[arg(long, default_value = "90d")]
        since: String,
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export the audit log as JSON Lines.
    Audit {
        /// A duration back from now (`90d`, `12h`, `30m`) or an RFC 3339 time.
        #[arg(long, default_value = "30d")]
        since: String,
    },
    /// Draft (or redraft) a remediation plan for a stored incident and print it.
    Plan {
        incident: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a commented starter pipemedic.toml.
    Init {
        /// Where to write it.
        #[arg(default_value = "pipemedic.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Base URL of the pipemedic server, e.g. https://pipemedic.internal:8080.
    #[arg(long, env = "PIPEMEDIC_SERVER")]
    pub server: String,
    /// Pipeline name (as pipemedic knows it).
    #[arg(long)]
    pub pipeline: String,
    /// Bearer token for POST /v1/runs.
    #[arg(long, env = "PIPEMEDIC_INGEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Run id (default: from the CI's variables).
    #[arg(long)]
    pub run_id: Option<String>,
    /// succeeded (default), failed or cancelled.
    #[arg(long)]
    pub status: Option<String>,
    /// Build duration in seconds (ends now unless --finished-at).
    #[arg(long)]
    pub duration_s: Option<f64>,
    #[arg(long)]
    pub started_at: Option<DateTime<Utc>>,
    #[arg(long)]
    pub finished_at: Option<DateTime<Utc>>,
    #[arg(long)]
    pub stage: Option<String>,
    #[arg(long)]
    pub commit: Option<String>,
    #[arg(long)]
    pub tests_total: Option<u64>,
    #[arg(long)]
    pub tests_failed: Option<u64>,
    #[arg(long)]
    pub tests_skipped: Option<u64>,
    #[arg(long)]
    pub cpu_peak_pct: Option<f64>,
    #[arg(long)]
    pub mem_peak_mb: Option<f64>,
    #[arg(long)]
    pub error_rate: Option<f64>,
    #[arg(long)]
    pub latency_p95_ms: Option<f64>,
    /// A custom metric, NAME=VALUE (repeatable).
    #[arg(long = "metric", value_name = "NAME=VALUE")]
    pub metrics: Vec<String>,
    #[arg(long)]
    pub log_url: Option<String>,
    /// Fail (exit 1) when the server cannot be reached, instead of warning.
    #[arg(long)]
    pub strict: bool,
    /// Seconds to wait for the server.
    #[arg(long, default_value_t = 15)]
    pub timeout_s: u64,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PlaybooksCommand {
    /// Validate playbooks; errors name file, line and field.
    Check { dir: Option<PathBuf> },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets redacted) and every problem at once.
    Check,
}

/// How a command ended.
#[derive(Debug)]
pub enum Exit {
    Ok,
    /// Runtime failure (exit 1).
    Failure(anyhow::Error),
    /// Bad usage or bad input (exit 2), with the message to print.
    BadInput(String),
    /// `check` found the run anomalous (exit 3).
    Anomalous,
}

impl Exit {
    pub fn code(&self) -> ExitCode {
        match self {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Failure(_) => ExitCode::from(1),
            Exit::BadInput(_) => ExitCode::from(2),
            Exit::Anomalous => ExitCode::from(3),
        }
    }
}

impl From<anyhow::Error> for Exit {
    fn from(e: anyhow::Error) -> Self {
        Exit::Failure(e)
    }
}

fn load_config(cli_path: Option<&Path>, env: &Env) -> Result<Loaded, Exit> {
    let path = config::resolve_path(cli_path, env);
    config::load(path.as_deref(), env).map_err(|e| Exit::BadInput(e.to_string()))
}

/// Runs one parsed command.
pub async fn run(cli: Cli, env: Env) -> Exit {
    let config_path = cli.config.clone();
    let result = match cli.command {
        Command::Serve => serve(config_path.as_deref(), &env).await,
        Command::Init { path, force } => init(&path, force),
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check(config_path.as_deref(), &env),
        Command::Ingest {
            file,
            dry_run,
            skip_invalid,
        } => ingest(config_path.as_deref(), &env, &file, dry_run, skip_invalid).await,
        Command::Health { pipeline, json } => {
            health(config_path.as_deref(), &env, pipeline, json).await
        }
        Command::Audit { since } => audit(config_path.as_deref(), &env, &since).await,
        Command::Demo { yes, offline } => {
            let planner = if offline {
                crate::demo::DemoPlanner::Offline
            } else {
                crate::demo::DemoPlanner::from_env(&env)
            };
            demo(yes, planner).await
        }
        Command::Train { pipeline } => train(config_path.as_deref(), &env, pipeline).await,
        Command::Score {
            shingle,
            trees,
            sample_size,
            seed,
            sensitivity,
            warm_up,
            explain,
        } => score(
            shingle,
            trees,
            sample_size,
            seed,
            sensitivity,
            warm_up,
            explain,
        ),
        Command::AcceptBaseline {
            pipeline,
            metric,
            by,
        } => {
            accept_baseline(
                config_path.as_deref(),
                &env,
                &pipeline,
                metric.as_deref(),
                &by,
            )
            .await
        }
        Command::Check(args) => check(args, &env).await,
        Command::Ask { question, json, at } => {
            ask(config_path.as_deref(), &env, &question, json, at).await
        }
        Command::Playbooks {
            command: PlaybooksCommand::Check { dir },
        } => playbooks_check(config_path.as_deref(), &env, dir.as_deref()),
        Command::Backtest {
            since,
            pipeline,
            json,
        } => backtest(config_path.as_deref(), &env, &since, pipeline, json).await,
        Command::Plan { incident, dry_run } => {
            plan(config_path.as_deref(), &env, &incident, dry_run).await
        }
    };
    match result {
        Ok(()) => Exit::Ok,
        Err(exit) => exit,
    }
}

async fn serve(path: Option<&Path>, env: &Env) -> Result<(), Exit> {
    let loaded = load_config(path, env)?;
    tracing::info!(
        config = %loaded.source.as_ref().map_or("built-in defaults".to_string(), |p| p.display().to_string()),
        store = %config::redact_url(&loaded.config.store.url),
        "Starting pipemedic."
    );
    let app = crate::startup::Application::build(loaded)
        .await
        .map_err(|e| match e {
            crate::startup::StartupError::UnauthenticatedPublic { .. }
            | crate::startup::StartupError::BadListen(_) => Exit::BadInput(e.to_string()),
            other => Exit::Failure(other.into()),
        })?;
    crate::startup::cancel_on_signals(app.shutdown_token());
    app.run_until_stopped()
        .await
        .map_err(|e| Exit::Failure(e.into()))
}

async fn demo(yes: bool, planner: crate::demo::DemoPlanner) -> Result<(), Exit> {
    match crate::demo::run(crate::demo::DemoOptions { yes, planner }).await {
        Ok(summary) => {
            let healed = summary
                .incidents
                .iter()
                .all(|i| i.recovered_after_min.is_some());
            if yes && (summary.incidents.len() < 2 || !healed) {
                return Err(Exit::Failure(anyhow::anyhow!(
                    "the demo did not complete its loop: {} incidents, all healed: {healed}",
                    summary.incidents.len()
                )));
            }
            Ok(())
        }
        Err(e) => Err(Exit::Failure(e.into())),
    }
}

fn init(path: &Path, force: bool) -> Result<(), Exit> {
    if path.exists() && !force {
        return Err(Exit::BadInput(format!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        )));
    }
    std::fs::write(path, config::STARTER_TOML)
        .map_err(|e| Exit::Failure(anyhow::anyhow!("cannot write {}: {e}", path.display())))?;
    println!(
        "Wrote {}. Check it with `pipemedic config check`.",
        path.display()
    );
    Ok(())
}

fn config_check(path: Option<&Path>, env: &Env) -> Result<(), Exit> {
    let loaded = load_config(path, env)?;
    println!(
        "# effective configuration (source: {})",
        loaded
            .source
            .as_ref()
            .map_or("built-in defaults".to_string(), |p| p.display().to_string())
    );
    print!("{}", loaded.config.to_redacted_toml());
    println!("\n# secrets (values never shown)");
    for (name, set) in loaded.secrets.summary() {
        println!("# {name} = {}", if set { "set" } else { "not set" });
    }
    let open = crate::startup::unauthenticated_routes(&loaded);
    if !open.is_empty() {
        println!(
            "\n# note: without these secrets `serve` only listens on loopback: {}",
            open.join(", ")
        );
    }
    Ok(())
}

async fn open_store(loaded: &Loaded) -> Result<crate::store::Store, Exit> {
    crate::store::Store::connect(
        &loaded.config.store.url,
        loaded.config.store.max_connections,
    )
    .await
    .map_err(|e| Exit::Failure(e.into()))
}

async fn ingest(
    path: Option<&Path>,
    env: &Env,
    file: &Path,
    dry_run: bool,
    skip_invalid: bool,
) -> Result<(), Exit> {
    use crate::ingest::backfill::{self, Format};
    let text = std::fs::read_to_string(file)
        .map_err(|e| Exit::BadInput(format!("cannot read {}: {e}", file.display())))?;
    let (runs, errors) = backfill::parse_file(&text, Format::of(file));
    const SHOWN: usize = 50;
    for e in errors.iter().take(SHOWN) {
        eprintln!("{}:{e}", file.display());
    }
    if errors.len() > SHOWN {
        eprintln!("... and {} more problems", errors.len() - SHOWN);
    }
    let bad_lines = {
        let mut lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        lines.dedup();
        lines.len()
    };
    if dry_run {
        println!(
            "dry run: {} valid runs, {bad_lines} invalid lines, nothing stored",
            runs.len()
        );
        return if errors.is_empty() {
            Ok(())
        } else {
            Err(Exit::BadInput(format!(
                "{} has {bad_lines} invalid lines",
                file.display()
            )))
        };
    }
    if !errors.is_empty() && !skip_invalid {
        return Err(Exit::BadInput(format!(
            "{} has {bad_lines} invalid lines; nothing stored (fix them, or pass --skip-invalid to store the valid ones)",
            file.display()
        )));
    }
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let service = crate::ingest::IngestService::new(
        store.clone(),
        std::sync::Arc::new(crate::metrics::Metrics::new()),
        std::sync::Arc::new(crate::clock::SystemClock),
    );
    let bar = indicatif::ProgressBar::new(runs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} storing runs [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut summary = backfill::store_all(&service, &runs, |done| bar.set_position(done as u64))
        .await
        .map_err(|e| Exit::Failure(e.into()))?;
    bar.finish_and_clear();
    summary.lines_invalid = bad_lines;
    println!(
        "{}: {} runs read, {} inserted, {} updated, {} already stored, {} invalid lines skipped",
        file.display(),
        summary.lines_valid,
        summary.inserted,
        summary.updated,
        summary.duplicates,
        summary.lines_invalid
    );
    store.close().await;
    Ok(())
}

async fn health(
    path: Option<&Path>,
    env: &Env,
    pipeline: Option<String>,
    json: bool,
) -> Result<(), Exit> {
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let now = Utc::now();
    let names = match &pipeline {
        Some(p) => vec![p.clone()],
        None => store
            .pipelines()
            .await
            .map_err(|e| Exit::Failure(e.into()))?,
    };
    let mut rows = Vec::new();
    for name in &names {
        let open = store
            .count_active_incidents(name)
            .await
            .map_err(|e| Exit::Failure(e.into()))?;
        match crate::health::pipeline_health(&store, name, now, open)
            .await
            .map_err(|e| Exit::Failure(e.into()))?
        {
            Some(h) => rows.push(h),
            None => {
                return Err(Exit::BadInput(format!(
                    "no runs stored for pipeline {name:?}"
                )));
            }
        }
    }
    store.close().await;
    if json {
        let out = if pipeline.is_some() && rows.len() == 1 {
            serde_json::to_string_pretty(&rows[0])
        } else {
            serde_json::to_string_pretty(&rows)
        };
        println!("{}", out.map_err(|e| Exit::Failure(e.into()))?);
    } else if rows.is_empty() {
        println!("No runs stored yet. Send some with POST /v1/runs or `pipemedic ingest FILE`.");
    } else {
        print!("{}", crate::health::render_table(&rows));
    }
    Ok(())
}

async fn check(args: Box<CheckArgs>, env: &Env) -> Result<(), Exit> {
    use crate::check::{self, BuildFacts, CheckOutcome};
    let args = *args;
    let facts = BuildFacts {
        pipeline: args.pipeline.clone(),
        run_id: args.run_id,
        status: args.status,
        duration_s: args.duration_s,
        started_at: args.started_at,
        finished_at: args.finished_at,
        stage: args.stage,
        commit: args.commit,
        tests_total: args.tests_total,
        tests_failed: args.tests_failed,
        tests_skipped: args.tests_skipped,
        cpu_peak_pct: args.cpu_peak_pct,
        mem_peak_mb: args.mem_peak_mb,
        error_rate: args.error_rate,
        latency_p95_ms: args.latency_p95_ms,
        metrics: args.metrics,
        log_url: args.log_url,
    };
    let run = check::build_run(&facts, env, Utc::now())
        .map_err(|problems| Exit::BadInput(problems.join("\n")))?;
    let outcome = check::check(
        &args.server,
        args.token.as_deref(),
        &run,
        std::time::Duration::from_secs(args.timeout_s),
    )
    .await;
    let print = |v: &crate::domain::Verdict| {
        if args.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            println!("{}", check::explain(&args.pipeline, v));
        }
    };
    match outcome {
        CheckOutcome::Normal(Some(v)) => {
            print(&v);
            Ok(())
        }
        CheckOutcome::Normal(None) => {
            println!("normal: the run was stored; the server gave no verdict");
            Ok(())
        }
        CheckOutcome::Anomalous(v) => {
            print(&v);
            Err(Exit::Anomalous)
        }
        CheckOutcome::Refused(msg) => Err(Exit::BadInput(msg)),
        CheckOutcome::Unavailable(msg) if args.strict => Err(Exit::Failure(anyhow::anyhow!(msg))),
        CheckOutcome::Unavailable(msg) => {
            eprintln!("warning: {msg}; not blocking the build (use --strict to fail instead)");
            Ok(())
        }
    }
}

fn score(
    shingle: usize,
    trees: usize,
    sample_size: usize,
    seed: u64,
    sensitivity: f64,
    warm_up: Option<u64>,
    explain: bool,
) -> Result<(), Exit> {
    let mut problems = Vec::new();
    if shingle == 0 || shingle > 64 {
        problems.push("--shingle must be 1 to 64");
    }
    if trees == 0 || trees > 1000 {
        problems.push("--trees must be 1 to 1000");
    }
    if !(4..=4096).contains(&sample_size) {
        problems.push("--sample-size must be 4 to 4096");
    }
    if !(sensitivity > 0.0 && sensitivity <= 10.0) {
        problems.push("--sensitivity must be in (0, 10]");
    }
    if !problems.is_empty() {
        return Err(Exit::BadInput(problems.join("\n")));
    }
    let mut config = crate::detect::DetectorConfig {
        shingle_size: shingle,
        trees,
        sample_size,
        seed,
        sensitivity,
        ..crate::detect::DetectorConfig::default()
    };
    if let Some(w) = warm_up {
        config.warm_up = w;
    }
    let stdin = std::io::stdin().lock();
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match crate::scoring::filter::score_stream(stdin, stdout, config, explain) {
        Ok(_) => Ok(()),
        Err(e @ crate::scoring::filter::FilterError::Input { .. }) => {
            Err(Exit::BadInput(format!("stdin: {e}")))
        }
        Err(e) => Err(Exit::Failure(e.into())),
    }
}

fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

async fn train(path: Option<&Path>, env: &Env, pipeline: Option<String>) -> Result<(), Exit> {
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let names = match pipeline {
        Some(p) => vec![p],
        None => store
            .pipelines()
            .await
            .map_err(|e| Exit::Failure(e.into()))?,
    };
    let total = store
        .count_runs()
        .await
        .map_err(|e| Exit::Failure(e.into()))?;
    let bar = progress_bar(total.max(0) as u64, "learning runs");
    let mut done = 0u64;
    for name in &names {
        let before = done;
        let (model, report) =
            crate::scoring::train::rebuild(&store, name, &loaded.config.detector, |n| {
                bar.set_position(before + n as u64)
            })
            .await
            .map_err(|e| Exit::Failure(e.into()))?;
        if report.learned + report.skipped_abnormal == 0 {
            bar.suspend(|| eprintln!("{name}: no finished runs stored"));
            continue;
        }
        done = before + (report.learned + report.skipped_abnormal) as u64;
        crate::scoring::bank::save(&store, name, &model)
            .await
            .map_err(|e| Exit::Failure(e.into()))?;
        bar.suspend(|| {
            println!(
                "{name}: learned {} runs, skipped {} graded abnormal",
                report.learned, report.skipped_abnormal
            )
        });
    }
    bar.finish_and_clear();
    store.close().await;
    Ok(())
}

async fn backtest(
    path: Option<&Path>,
    env: &Env,
    since: &str,
    pipeline: Option<String>,
    json: bool,
) -> Result<(), Exit> {
    let since = parse_since(since, Utc::now()).map_err(Exit::BadInput)?;
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let names = match pipeline {
        Some(p) => vec![p],
        None => store
            .pipelines()
            .await
            .map_err(|e| Exit::Failure(e.into()))?,
    };
    let mut rows = Vec::new();
    for name in &names {
        rows.push(
            crate::scoring::train::backtest(&store, name, since, &loaded.config.detector)
                .await
                .map_err(|e| Exit::Failure(e.into()))?,
        );
    }
    store.close().await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| Exit::Failure(e.into()))?
        );
        return Ok(());
    }
    println!("since {}", since.format("%Y-%m-%d %H:%M UTC"));
    let width = rows
        .iter()
        .map(|r| r.pipeline.len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "{:<width$}  {:>10}  {:>8}  {:>8}  {:>6}",
        "PIPELINE", "TRAINED ON", "REPLAYED", "ABNORMAL", "ALERTS"
    );
    for r in &rows {
        println!(
            "{:<width$}  {:>10}  {:>8}  {:>8}  {:>6}",
            r.pipeline, r.trained_on, r.replayed, r.abnormal_runs, r.alerts
        );
    }
    let alerts: usize = rows.iter().map(|r| r.alerts).sum();
    println!(
        "{alerts} alerts would have fired across {} pipelines",
        rows.len()
    );
    Ok(())
}

async fn accept_baseline(
    path: Option<&Path>,
    env: &Env,
    pipeline: &str,
    metric: Option<&str>,
    by: &str,
) -> Result<(), Exit> {
    if let Some(m) = metric {
        if !crate::domain::BUILTIN_METRICS.contains(&m) {
            return Err(Exit::BadInput(format!(
                "{m:?} is not a modelled metric; one of: {}",
                crate::domain::BUILTIN_METRICS.join(", ")
            )));
        }
    }
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    if store
        .last_run(pipeline)
        .await
        .map_err(|e| Exit::Failure(e.into()))?
        .is_none()
    {
        return Err(Exit::BadInput(format!(
            "no runs stored for pipeline {pipeline:?}"
        )));
    }
    let now = Utc::now();
    let mut tx = store
        .begin_write()
        .await
        .map_err(|e| Exit::Failure(e.into()))?;
    let id = tx
        .request_baseline_reset(pipeline, metric, by, now)
        .await
        .map_err(|e| Exit::Failure(e.into()))?;
    tx.audit(
        now,
        "baseline.accepted",
        &format!("pipeline/{pipeline}"),
        by,
        &serde_json::json!({"metric": metric, "request": id}),
    )
    .await
    .map_err(|e| Exit::Failure(e.into()))?;
    tx.commit().await.map_err(|e| Exit::Failure(e.into()))?;
    store.close().await;
    println!(
        "{pipeline}: the current level of {} is the new normal from its next run on.",
        metric.unwrap_or("every metric")
    );
    Ok(())
}

async fn ask(
    path: Option<&Path>,
    env: &Env,
    question: &str,
    json: bool,
    at: Option<DateTime<Utc>>,
) -> Result<(), Exit> {
    if question.trim().is_empty() {
        return Err(Exit::BadInput(
            "the question is empty; try `pipemedic ask \"how is PIPELINE doing?\"`".into(),
        ));
    }
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let bedrock = if loaded.config.ask.backend == config::AskBackend::Bedrock {
        let aws = crate::aws::AwsSettings::from_config(&loaded.config.aws)
            .load()
            .await;
        Some(aws.bedrock())
    } else {
        None
    };
    let asker = crate::ask::Asker::from_config(
        &loaded.config,
        store.clone(),
        std::sync::Arc::new(crate::metrics::Metrics::new()),
        bedrock,
    )
    .map_err(|e| Exit::BadInput(e.to_string()))?;
    let answer = asker
        .ask(
            question,
            at.unwrap_or_else(Utc::now),
            crate::ask::Visibility::All,
        )
        .await
        .map_err(|e| Exit::Failure(e.into()));
    store.close().await;
    let answer = answer?;
    if json {
        let out = serde_json::to_string_pretty(&answer).map_err(|e| Exit::Failure(e.into()))?;
        println!("{out}");
    } else {
        print!("{}", crate::ask::render_text(&answer));
    }
    Ok(())
}

/// `pipemedic playbooks check [DIR]`: every problem with its file, line and
/// field on stdout; exit 2 when there is any.
fn playbooks_check(path: Option<&Path>, env: &Env, dir: Option<&Path>) -> Result<(), Exit> {
    let loaded = load_config(path, env)?;
    let dir = dir.map_or_else(
        || PathBuf::from(&loaded.config.planner.playbooks_dir),
        Path::to_path_buf,
    );
    let options = crate::playbooks::LoadOptions {
        http_allowed_hosts: loaded.config.planner.http_allowed_hosts.clone(),
    };
    let report = crate::playbooks::check_dir(&dir, &options);
    for e in &report.errors {
        println!("{e}");
    }
    if report.errors.is_empty() {
        println!("{}: {} playbooks OK", dir.display(), report.valid.len());
        Ok(())
    } else {
        Err(Exit::BadInput(format!(
            "{}: {} error(s) in {} file(s); {} playbook(s) valid",
            dir.display(),
            report.errors.len(),
            report.files,
            report.valid.len()
        )))
    }
}

/// `pipemedic plan INCIDENT [--dry-run]`: drafts a plan with the configured
/// planner and prints it; exit 1 when no valid plan came out.
async fn plan(path: Option<&Path>, env: &Env, incident: &str, dry_run: bool) -> Result<(), Exit> {
    use crate::plan::{PlanService, PlanServiceError};
    let id: i64 = incident
        .trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|_| Exit::BadInput(format!("{incident:?} is not an incident number")))?;
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let bedrock = if loaded.config.planner.backend == config::PlannerBackend::Bedrock {
        let aws = crate::aws::AwsSettings::from_config(&loaded.config.aws)
            .load()
            .await;
        Some(aws.bedrock())
    } else {
        None
    };
    let service = PlanService::from_config(
        &loaded.config,
        store.clone(),
        std::sync::Arc::new(crate::metrics::Metrics::new()),
        std::sync::Arc::new(crate::clock::SystemClock),
        bedrock,
    )
    .map_err(|e| Exit::BadInput(e.to_string()))?;
    let incident = match store.incident(id).await {
        Ok(Some(incident)) => incident,
        Ok(None) => {
            store.close().await;
            return Err(Exit::BadInput(format!(
                "no incident #{id} (`GET /v1/incidents` lists them)"
            )));
        }
        Err(e) => {
            store.close().await;
            return Err(Exit::Failure(e.into()));
        }
    };
    let drafted = service
        .draft_for_incident(&incident, incident.last_run_pk, &incident.verdict, !dry_run)
        .await;
    store.close().await;
    let drafted = drafted.map_err(|e| match e {
        PlanServiceError::UnknownAnomaly(_) | PlanServiceError::NoAnomaly(_) => {
            Exit::BadInput(e.to_string())
        }
        other => Exit::Failure(other.into()),
    })?;
    print!("{}", crate::plan::render_report(&drafted));
    if drafted.outcome.is_valid() {
        Ok(())
    } else {
        Err(Exit::Failure(anyhow::anyhow!(
            "no valid plan for incident {id}; nothing is offered for approval"
        )))
    }
}

/// Parses `--since`: `90d`, `12h`, `30m`, `2w`, or an RFC 3339 time.
pub fn parse_since(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or(now));
    }
    let (num, unit) = raw.split_at(raw.len().saturating_sub(1));
    let n: i64 = num.parse().map_err(|_| {
        format!("--since {raw:?}: expected like 90d, 12h, 30m, 2w or an RFC 3339 time")
    })?;
    let d = match unit {
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => return Err(format!("--since {raw:?}: unit must be m, h, d or w")),
    };
    Ok(now - d)
}

async fn audit(path: Option<&Path>, env: &Env, since: &str) -> Result<(), Exit> {
    let since = parse_since(since, Utc::now()).map_err(Exit::BadInput)?;
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let entries = store
        .audit_since(since)
        .await
        .map_err(|e| Exit::Failure(e.into()))?;
    for e in entries {
        println!(
            "{}",
            serde_json::to_string(&e).map_err(|e| Exit::Failure(e.into()))?
        );
    }
    store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now: DateTime<Utc> = "2026-11-25T12:00:00Z".parse().unwrap();
        assert_eq!(parse_since("90d", now).unwrap(), now - Duration::days(90));
        assert_eq!(parse_since("12h", now).unwrap(), now - Duration::hours(12));
        assert_eq!(
            parse_since("2026-11-01", now).unwrap(),
            "2026-11-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_since("soon", now).is_err());
        assert!(parse_since("5y", now).is_err());
    }
}
