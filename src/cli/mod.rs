//! The command line: parsing with clap and one function per command. Each
//! command loads the configuration it needs, calls the library, and maps the
//! outcome to the exit codes of the design: 0 ok, 1 runtime failure, 2 bad
//! usage or bad input, 3 anomalous (`check`).
//!
//! This file holds the clap definitions, [`Exit`] and the dispatch; the
//! commands live in one file per group: `serve` (serve, demo), `ingest`
//! (ingest, check), `detection` (score, train, backtest, accept-baseline),
//! `export` (training data for SageMaker), `query` (health, ask, audit), `incidents` (plan, incidents, approve,
//! reject), `outcomes` (each fix's track record), `config_cmd` (init,
//! config check, playbooks check) and `backup`.
//!
//! Every argument has help text (a test walks the command tree).

mod backup;
mod config_cmd;
mod detection;
mod export;
mod incidents;
mod ingest;
mod outcomes;
mod query;
mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::config::{self, Env, Loaded};
use crate::telemetry::LogFormat;

use config_cmd::{config_check, init, playbooks_check};
use detection::{accept_baseline, backtest, score, train};
use incidents::plan;
use ingest::{check, ingest};
use query::{ask, audit, health};
use serve::{demo, serve};

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
    /// The command to run.
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
        /// Keep the demo's database at this store URL (e.g. sqlite:///tmp/demo.db) instead of a temporary file, so `serve`, `health`, `ask` and `outcomes` can be tried on it afterwards.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
    /// Backfill runs from a JSON Lines (one Run per line) or CSV file.
    #[command(after_help = INGEST_HELP)]
    Ingest {
        /// The file: `.csv` is read as CSV with a header, anything else as JSON Lines.
        file: PathBuf,
        /// Validate and report, store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Store the valid lines even when some lines are invalid.
        #[arg(long)]
        skip_invalid: bool,
        /// Print the summary as JSON on stdout (see below); no progress bar.
        #[arg(long)]
        json: bool,
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
    /// Write each pipeline's history as training rows for SageMaker's built-in Random Cut Forest, plus a manifest.
    #[command(after_help = EXPORT_HELP)]
    Export {
        /// Where: s3://BUCKET/PREFIX, or file:DIR or a directory for air-gapped hosts.
        #[arg(long, value_name = "URL")]
        to: String,
        /// Only this pipeline (repeatable; default: every stored pipeline).
        #[arg(long)]
        pipeline: Vec<String>,
        /// Export rows of runs from here on (`90d`, `2w`, an RFC 3339 time); earlier runs still teach the normalisation. Default: all history.
        #[arg(long)]
        since: Option<String>,
        /// Print the manifest as JSON on stdout; no progress bar.
        #[arg(long)]
        json: bool,
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
        /// The pipeline, as pipemedic names it.
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
        /// What to do with playbooks.
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
    /// List incidents from the store, each with its plans (the ids approve and reject take).
    #[command(
        after_help = "--status: active (default: not resolved or dismissed), all, or one of open, planning, awaiting_approval, remediating, verifying, resolved, dismissed.\nReads the store named by the configuration directly; no server or token is needed.\nExample: pipemedic incidents --status awaiting_approval"
    )]
    Incidents {
        /// active, all, or one status (open, awaiting_approval, resolved ...).
        #[arg(long, default_value = "active")]
        status: String,
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON: {"incidents": [{"id", "pipeline", "status", "severity", "runs", "opened_at", "plans": [{"id", "state"}]}]}.
        #[arg(long)]
        json: bool,
    },
    /// Approve a plan through a running server's admin API (for when chat is down).
    #[command(after_help = DECIDE_HELP)]
    Approve(DecideArgs),
    /// Reject a plan through a running server's admin API (for when chat is down).
    #[command(after_help = DECIDE_HELP)]
    Reject(DecideArgs),
    /// Draft (or redraft) a remediation plan for a stored incident and print it.
    #[command(after_help = PLAN_HELP)]
    Plan {
        /// The incident's number (`7` or `#7`, from `pipemedic incidents`).
        incident: String,
        /// Draft and print the plan without storing it or offering it for approval.
        #[arg(long)]
        dry_run: bool,
        /// Print the plan as JSON on stdout (see below).
        #[arg(long)]
        json: bool,
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
        /// What to do with the configuration.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Each fix's track record per pipeline and playbook action: offered, approved, rejected, expired, healed, not healed, median minutes to heal.
    #[command(
        after_help = "Reads the store named by the configuration directly; no server or token is needed.\nExample: pipemedic outcomes --pipeline checkout-service --json"
    )]
    Outcomes {
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Print JSON: {"outcomes": [{"pipeline", "playbook", "action", "offered", "approved", "rejected", "expired", "healed", "not_healed", "median_minutes_to_heal", ...}]} (the body of GET /v1/outcomes).
        #[arg(long)]
        json: bool,
    },
    /// Copy the embedded SQLite store to FILE while the server runs (an online, consistent copy).
    #[command(after_help = BACKUP_HELP)]
    Backup {
        /// Where to write the copy (refused if it exists, unless --force).
        file: PathBuf,
        /// Replace FILE if it exists (the old file stays whole until the new copy is complete).
        #[arg(long)]
        force: bool,
    },
}

const EXPORT_HELP: &str = "Writes PREFIX/rows/<pipeline>.csv (text/csv, no header, one row of 24 values per run: the six modelled metrics of the last four runs, normalised and shingled exactly as the SageMaker backend sends them to InvokeEndpoint) and then PREFIX/manifest.json (feature names, normalisation, shingle size, feature_dim, hyperparameters, row counts and time range).\nRows of runs in warm-up or graded abnormal by the replay are left out.\nS3 needs s3:PutObject on arn:aws:s3:::BUCKET/PREFIX/* (deploy/aws/iam-export.json); credentials and region come from the standard AWS chain, the endpoint from aws.endpoints.s3.\nTrain with deploy/aws/sagemaker-retrain-pipeline.json (see README, \"Training the SageMaker model\").\nExit codes: 0 written, 1 the store or S3 failed (no such bucket, access denied), 2 bad --to, --since or --pipeline.\nExample: pipemedic export --to s3://ci-anomaly/pipemedic --since 90d";

const INGEST_HELP: &str = "--json prints one object: {\"file\", \"dry_run\", \"stored\", \"lines_valid\", \"lines_invalid\", \"inserted\", \"updated\", \"duplicates\", \"problems\": [{\"line\", \"field\", \"message\"}]} (counts are 0 when nothing was stored; exit 2 when lines are invalid and nothing was stored; \"problems\" lists the first 10,000, \"lines_invalid\" counts them all).\nThe file is read twice, a chunk at a time: first every line is checked (nothing is stored unless the file is clean, or --skip-invalid), then the valid runs are stored in transactions of 100,000 while the next chunk is parsed. Memory stays bounded whatever the file's size.";

const PLAN_HELP: &str = "--json prints one object: {\"incident\", \"plan_id\" (null for --dry-run), \"planner\", \"status\" (valid or invalid), \"plan\" (the validated plan, null when invalid), \"errors\", \"attempts\", \"usage\": {\"input\", \"output\"}}.\nExit codes: 0 a valid plan, 1 no valid plan or a runtime failure, 2 bad input (no such incident).";

const BACKUP_HELP: &str = "The copy is made with SQLite's VACUUM INTO, checked with PRAGMA integrity_check, and only then takes FILE's name.\nRestore: stop pipemedic, copy FILE over the store's file (store.url), delete any leftover <store>-wal and <store>-shm files, start pipemedic.\nA PostgreSQL store is refused: back it up with pg_dump.\nExample: pipemedic backup /var/backups/pipemedic-$(date +%F).db";

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
    /// When the build started (RFC 3339).
    #[arg(long)]
    pub started_at: Option<DateTime<Utc>>,
    /// When the build finished (RFC 3339; default: now).
    #[arg(long)]
    pub finished_at: Option<DateTime<Utc>>,
    /// The stage or job the build ran (e.g. Test).
    #[arg(long)]
    pub stage: Option<String>,
    /// The commit built (default: from the CI's variables).
    #[arg(long)]
    pub commit: Option<String>,
    /// Tests run.
    #[arg(long)]
    pub tests_total: Option<u64>,
    /// Tests that failed.
    #[arg(long)]
    pub tests_failed: Option<u64>,
    /// Tests skipped.
    #[arg(long)]
    pub tests_skipped: Option<u64>,
    /// Peak CPU use, in percent.
    #[arg(long)]
    pub cpu_peak_pct: Option<f64>,
    /// Peak memory use, in MB.
    #[arg(long)]
    pub mem_peak_mb: Option<f64>,
    /// Error rate after a deploy, 0 to 1.
    #[arg(long)]
    pub error_rate: Option<f64>,
    /// 95th percentile latency after a deploy, in ms.
    #[arg(long)]
    pub latency_p95_ms: Option<f64>,
    /// A custom metric, NAME=VALUE (repeatable).
    #[arg(long = "metric", value_name = "NAME=VALUE")]
    pub metrics: Vec<String>,
    /// Link to the build's log (shown in alerts).
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

const DECIDE_HELP: &str = "The vote counts as the person cli:NAME (--as NAME, else $USER) and is audited with via=cli. It obeys the plan's approval policy like a chat vote: quorum, who may approve (list cli:NAME in an [approvals.groups] group to admit a CLI operator where a playbook names groups), expiry, and a decided plan never runs twice. All decisions made with the admin token count as one person, whatever --as says.\nThe plan ids are in `pipemedic incidents`.\nExit codes: 0 the vote counted, 1 it had no effect (not allowed, expired, already decided) or the server failed, 2 bad input or the server refused the request.\nExample: PIPEMEDIC_ADMIN_TOKEN=... pipemedic approve 12 --server https://pipemedic.internal:8080 --as alice";

/// `pipemedic approve|reject PLAN`.
#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// The plan's id (from `pipemedic incidents`).
    pub plan: String,
    /// Base URL of the pipemedic server.
    #[arg(
        long,
        env = "PIPEMEDIC_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// The admin token.
    #[arg(long, env = "PIPEMEDIC_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Who decides, for the audit log (default: $USER).
    #[arg(long = "as", value_name = "NAME")]
    pub operator: Option<String>,
    /// Why (shown in the incident's thread and audited).
    #[arg(long)]
    pub reason: Option<String>,
    /// Seconds to wait for the server.
    #[arg(long, default_value_t = 30)]
    pub timeout_s: u64,
    /// Print the server's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PlaybooksCommand {
    /// Validate playbooks; errors name file, line and field.
    #[command(after_help = PLAYBOOKS_CHECK_HELP)]
    Check {
        /// The directory of playbooks (default: planner.playbooks_dir).
        dir: Option<PathBuf>,
        /// Print the report as JSON on stdout (see below).
        #[arg(long)]
        json: bool,
    },
}

const PLAYBOOKS_CHECK_HELP: &str = "--json prints one object: {\"ok\", \"dir\", \"files\", \"playbooks\": [{\"id\", \"file\"}], \"errors\": [{\"file\", \"line\", \"field\", \"message\"}]}.\nExit codes: 0 every playbook is valid, 2 any problem.";

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets redacted) and every problem at once.
    #[command(after_help = CONFIG_CHECK_HELP)]
    Check {
        /// Print the result as JSON on stdout (see below).
        #[arg(long)]
        json: bool,
    },
}

const CONFIG_CHECK_HELP: &str = "--json prints one object: {\"ok\", \"source\" (the file, or null for built-in defaults), \"config\" (the effective configuration, URLs' passwords masked; absent when not ok), \"secrets\": {VARIABLE: true when set}, \"unauthenticated_routes\", \"problems\": [{\"key\", \"message\"}]}.\nExit codes: 0 no problem, 2 any problem.";

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
            command: ConfigCommand::Check { json },
        } => config_check(config_path.as_deref(), &env, json),
        Command::Ingest {
            file,
            dry_run,
            skip_invalid,
            json,
        } => {
            let options = ingest::IngestOptions {
                dry_run,
                skip_invalid,
                json,
            };
            ingest(config_path.as_deref(), &env, &file, options).await
        }
        Command::Backup { file, force } => {
            backup::backup(config_path.as_deref(), &env, &file, force).await
        }
        Command::Health { pipeline, json } => {
            health(config_path.as_deref(), &env, pipeline, json).await
        }
        Command::Audit { since } => audit(config_path.as_deref(), &env, &since).await,
        Command::Demo {
            yes,
            offline,
            store,
        } => {
            let planner = if offline {
                crate::demo::DemoPlanner::Offline
            } else {
                crate::demo::DemoPlanner::from_env(&env)
            };
            demo(yes, planner, store).await
        }
        Command::Export {
            to,
            pipeline,
            since,
            json,
        } => {
            let options = export::ExportOptions {
                to,
                pipelines: pipeline,
                since,
                json,
            };
            export::export(config_path.as_deref(), &env, options).await
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
            command: PlaybooksCommand::Check { dir, json },
        } => playbooks_check(config_path.as_deref(), &env, dir.as_deref(), json),
        Command::Backtest {
            since,
            pipeline,
            json,
        } => backtest(config_path.as_deref(), &env, &since, pipeline, json).await,
        Command::Incidents {
            status,
            pipeline,
            limit,
            json,
        } => {
            incidents::incidents(
                config_path.as_deref(),
                &env,
                &status,
                pipeline.as_deref(),
                limit,
                json,
            )
            .await
        }
        Command::Approve(args) => {
            incidents::decide(&args, crate::domain::Choice::Approve, &env).await
        }
        Command::Reject(args) => {
            incidents::decide(&args, crate::domain::Choice::Reject, &env).await
        }
        Command::Plan {
            incident,
            dry_run,
            json,
        } => plan(config_path.as_deref(), &env, &incident, dry_run, json).await,
        Command::Outcomes { pipeline, json } => {
            outcomes::outcomes(config_path.as_deref(), &env, pipeline.as_deref(), json).await
        }
    };
    match result {
        Ok(()) => Exit::Ok,
        Err(exit) => exit,
    }
}

async fn open_store(loaded: &Loaded) -> Result<crate::store::Store, Exit> {
    crate::store::Store::connect(
        &loaded.config.store.url,
        loaded.config.store.max_connections,
    )
    .await
    .map_err(|e| Exit::Failure(e.into()))
}

/// Parses `--since`: `90d`, `12h`, `30m`, `2w`, or an RFC 3339 time.
pub fn parse_since(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    crate::clock::parse_point(raw, now).map_err(|e| format!("--since {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        use chrono::Duration;
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
