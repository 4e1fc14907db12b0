//! Layered configuration: built-in defaults, then `pipemedic.toml`, then
//! `PIPEMEDIC_<SECTION>__<KEY>` environment variables. Unknown keys are
//! errors, and every problem (unknown key, wrong type, invalid value) is
//! reported at once with its key path.
//!
//! Secrets never live in the TOML: see [`secrets`]. This module reads the
//! environment only through the [`Env`] snapshot it is given, so tests never
//! mutate the process environment.

pub mod detection;
pub mod secrets;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use detection::{
    MetricRule, MetricRuleConfig, PipelineRules, PipelineRulesConfig, ProblemDirection,
};
pub use secrets::{Secret, Secrets};

use crate::playbooks::CiSystem;

/// A snapshot of environment variables.
pub type Env = BTreeMap<String, String>;

/// The process environment, read once.
pub fn process_env() -> Env {
    std::env::vars().collect()
}

/// Prefix of every configuration variable.
const ENV_PREFIX: &str = "PIPEMEDIC_";

/// Variables with the prefix that are not configuration keys.
const NON_CONFIG_VARS: [&str; 2] = ["PIPEMEDIC_CONFIG", "PIPEMEDIC_TEST_POSTGRES_URL"];

/// The commented starter file written by `pipemedic init`.
pub const STARTER_TOML: &str = include_str!("starter.toml");

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub ingest: IngestConfig,
    pub codepipeline: CodePipelineConfig,
    pub detector: DetectorConfig,
    pub planner: PlannerConfig,
    pub ask: AskConfig,
    pub incidents: IncidentsConfig,
    pub chat: ChatConfig,
    pub slack: SlackConfig,
    pub discord: DiscordConfig,
    pub github: GithubConfig,
    pub aws: AwsConfig,
    pub remediate: RemediateConfig,
    pub approvals: ApprovalsConfig,
    pub secrets: SecretFiles,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port the HTTP server binds.
    pub listen: String,
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_grace_s: u64,
    /// Base URL people use to reach this server (for links in chat).
    pub public_url: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            shutdown_grace_s: 20,
            public_url: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://path.db` (created on first start) or `postgres://...`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://pipemedic.db".into(),
            max_connections: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Most runs accepted in one `POST /v1/runs` array.
    pub max_batch: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self { max_batch: 1000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CodePipelineConfig {
    /// Pipelines to poll with the CodePipeline API (for teams without EventBridge).
    pub poll_pipelines: Vec<String>,
    /// Seconds between polls.
    pub poll_interval_s: u64,
}

impl Default for CodePipelineConfig {
    fn default() -> Self {
        Self {
            poll_pipelines: Vec::new(),
            poll_interval_s: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DetectorBackend {
    Embedded,
    Sagemaker,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    pub backend: DetectorBackend,
    /// SageMaker RCF endpoint name (backend = "sagemaker").
    pub sagemaker_endpoint: String,
    /// Consecutive failed SageMaker calls after which scoring falls back to
    /// the embedded forest.
    pub sagemaker_max_failures: u32,
    /// Seconds scoring stays on the embedded forest after falling back,
    /// before SageMaker is tried again.
    pub sagemaker_retry_after_s: u64,
    /// Higher finds more anomalies; 1.0 is the default balance.
    pub sensitivity: f64,
    /// Hours between scheduled rebuilds of every model (0 = never).
    pub retrain_interval_h: u64,
    /// Pipeline models kept in memory (the rest wait in the store).
    pub cache_models: usize,
    /// Consecutive abnormal runs with the same metrics off the same way
    /// after which that level is taken as the new normal.
    pub new_normal_after: u32,
    /// Days of history after which expected values follow the weekly rhythm
    /// (weekday or weekend, working hours or night).
    pub seasonality_after_days: u32,
    /// The team's local time as an offset from UTC in minutes, for working
    /// hours and weekends.
    pub utc_offset_minutes: i32,
    /// Materiality rules per metric (see [`detection`]).
    pub metrics: BTreeMap<String, MetricRuleConfig>,
    /// Per-pipeline overrides of the rules.
    pub pipelines: BTreeMap<String, PipelineRulesConfig>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            backend: DetectorBackend::Embedded,
            sagemaker_endpoint: String::new(),
            sagemaker_max_failures: 3,
            sagemaker_retry_after_s: 300,
            sensitivity: 1.0,
            retrain_interval_h: 24,
            cache_models: 250,
            new_normal_after: detection::DEFAULT_NEW_NORMAL_AFTER,
            seasonality_after_days: detection::DEFAULT_SEASONALITY_AFTER_DAYS,
            utc_offset_minutes: 0,
            metrics: BTreeMap::new(),
            pipelines: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlannerBackend {
    Offline,
    Bedrock,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PlannerConfig {
    pub backend: PlannerBackend,
    pub model_id: String,
    pub max_tokens: u32,
    pub temperature: f32,
    pub timeout_s: u64,
    /// Directory of user prompt templates; bundled ones are the fallback.
    pub prompts_dir: String,
    /// Directory of playbooks.
    pub playbooks_dir: String,
    /// Hosts that playbook `http` actions may call (`hooks.example.com`,
    /// `*.example.com`); empty: no `http` action is valid.
    pub http_allowed_hosts: Vec<String>,
    /// Extra secret patterns (regular expressions) redacted from everything
    /// sent to a model, on top of the built-in ones.
    pub redact_patterns: Vec<String>,
    /// Model answers tried per plan: the first, plus retries with the
    /// validation errors fed back (2 = retry once).
    pub max_attempts: u32,
    /// The CI system of runs from the generic API and backfill (their
    /// source does not say): `codepipeline`, `github_actions`, `gitlab` or
    /// `other`. Decides which playbook actions can act on them.
    pub generic_ci: CiSystem,
    /// Draft a plan and offer it for approval when an incident opens (off:
    /// alerts only; `pipemedic plan` still drafts on demand).
    pub plan_incidents: bool,
    /// When Bedrock fails or its answers stay invalid, draft the plan with
    /// the rule-based planner instead (labelled as such) rather than offer
    /// none. The failed or invalid model answer stays on record.
    pub offline_fallback: bool,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self {
            backend: PlannerBackend::Offline,
            model_id: "anthropic.claude-3-5-sonnet-20240620-v1:0".into(),
            max_tokens: 2048,
            temperature: 0.0,
            timeout_s: 60,
            prompts_dir: "prompts".into(),
            playbooks_dir: "playbooks".into(),
            http_allowed_hosts: Vec::new(),
            redact_patterns: Vec::new(),
            max_attempts: 2,
            generic_ci: CiSystem::Other,
            plan_incidents: true,
            offline_fallback: false,
        }
    }
}

/// Who answers plain-language questions (`pipemedic ask`, `POST /v1/ask`,
/// chat).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AskBackend {
    /// The deterministic parser and query tools, no model.
    Offline,
    /// A model on Amazon Bedrock calling the read-only query tools, checked
    /// number by number; the offline answer when it cannot answer.
    Bedrock,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AskConfig {
    pub backend: AskBackend,
    /// Bedrock model id; empty means `planner.model_id`. Temperature and the
    /// per-call timeout are the planner's.
    pub model_id: String,
    /// Most tool calls the model may make for one question.
    pub max_tool_calls: u32,
    /// Most model tokens (input + output, every call) for one question.
    pub max_tokens: u64,
}

impl Default for AskConfig {
    fn default() -> Self {
        Self {
            backend: AskBackend::Offline,
            model_id: String::new(),
            max_tool_calls: 8,
            max_tokens: 20_000,
        }
    }
}

impl AskConfig {
    /// The model that answers questions.
    pub fn effective_model_id<'a>(&'a self, planner: &'a PlannerConfig) -> &'a str {
        if self.model_id.trim().is_empty() {
            &planner.model_id
        } else {
            self.model_id.trim()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// An abnormal run joins its pipeline's incident when that incident is
    /// still open and was updated within this many hours.
    pub group_window_h: u64,
    /// The alert chart shows at most this many days of history ...
    pub chart_days: u64,
    /// ... and at most this many runs.
    pub chart_runs: usize,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        Self {
            group_window_h: 6,
            chart_days: 30,
            chart_runs: 50,
        }
    }
}

/// Where the alerts of matching pipelines go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChatRoute {
    /// A glob over pipeline names (`payments-*`, `octo-org/*/deploy`).
    pub pipelines: String,
    /// `slack`, `discord` or `console`.
    pub platform: String,
    /// Slack channel id (`C0123…`) or Discord channel id.
    pub channel: String,
}

/// The route of pipelines no `[[chat.routes]]` entry matches; empty
/// platform means such pipelines are not posted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultRoute {
    pub platform: String,
    pub channel: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Routes tried in order; the first whose glob matches wins.
    pub routes: Vec<ChatRoute>,
    pub default_route: DefaultRoute,
    /// How often the outbox looks for messages to deliver, in milliseconds.
    pub outbox_poll_ms: u64,
    /// Channels (ids) that see every pipeline in answers and commands;
    /// other channels see only the pipelines routed to them. The entry
    /// `"dm"` opens direct messages, which otherwise see no pipeline.
    pub open_channels: Vec<String>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            default_route: DefaultRoute::default(),
            outbox_poll_ms: 1000,
            open_channels: Vec::new(),
        }
    }
}

const CHAT_PLATFORMS: [&str; 3] = ["slack", "discord", "console"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SlackConfig {
    /// Slack Web API base URL.
    pub api_url: String,
    /// `socket` (Socket Mode, no public URL) or `events` (Events API over HTTP).
    pub mode: String,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            api_url: "https://slack.com/api/".into(),
            mode: "socket".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordConfig {
    /// Discord REST API base URL.
    pub api_url: String,
    /// Connect to the Discord gateway (mentions, reactions) when
    /// `DISCORD_TOKEN` is set; off leaves only HTTP interactions.
    pub gateway: bool,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        Self {
            api_url: "https://discord.com/api/v10".into(),
            gateway: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GithubConfig {
    /// GitHub REST API base URL (GitHub Enterprise: `https://HOST/api/v3`).
    pub api_url: String,
}

impl Default for GithubConfig {
    fn default() -> Self {
        Self {
            api_url: "https://api.github.com".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// AWS region; empty means the standard AWS chain decides.
    pub region: String,
    pub endpoints: AwsEndpoints,
}

/// Endpoint overrides for the AWS services (tests, GovCloud, proxies);
/// empty means the SDK's own endpoint resolution.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsEndpoints {
    pub bedrock: String,
    pub sagemaker: String,
    pub codepipeline: String,
}

/// Limits on the remediation actions pipemedic runs once approved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemediateConfig {
    /// Hosts an `http` action may call: exact names, or `*.domain` for
    /// every subdomain. Empty: no `http` action can run.
    pub http_allowlist: Vec<String>,
    /// Default and upper bound of an `http` action's timeout (and of the
    /// GitHub calls), in seconds.
    pub http_timeout_s: u64,
    /// The only environment variables a `shell` action's process sees
    /// (taken from pipemedic's own environment).
    pub shell_env_allowlist: Vec<String>,
    /// Default and upper bound of a `shell` action's run time, in seconds;
    /// the process is killed when it is reached.
    pub shell_timeout_s: u64,
}

/// Longest timeout an action may be given (seconds).
pub const MAX_ACTION_TIMEOUT_S: u64 = 3600;

impl Default for RemediateConfig {
    fn default() -> Self {
        Self {
            http_allowlist: Vec::new(),
            http_timeout_s: 30,
            shell_env_allowlist: vec!["PATH".into(), "HOME".into()],
            shell_timeout_s: 300,
        }
    }
}

/// Who may approve remediations, how long a plan waits, and whether
/// low-risk actions may run without anyone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// Named groups of approvers, referred to as `group:NAME` in playbooks.
    /// Members: `slack:USER_ID`, `discord:USER_ID`, `console:NAME`,
    /// `slack-group:USERGROUP_ID`, `discord-role:ROLE_ID`.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Who may approve an action whose playbook names no `from`
    /// (`group:NAME` or `user:ID`); empty: anyone who can see the plan.
    pub default_from: Vec<String>,
    /// Minutes a plan waits for approval before it expires.
    pub expiry_minutes: u64,
    /// Whether the author of the commit a run built may approve its plan.
    pub commit_author_may_approve: bool,
    /// Whether `approval: none` actions run without anyone (low risk only).
    pub auto_remediation: bool,
}

/// Longest approval window (minutes): one week.
pub const MAX_EXPIRY_MINUTES: u64 = 7 * 24 * 60;

/// Prefixes a member of an approver group may have.
pub const APPROVER_MEMBER_PREFIXES: [&str; 5] = [
    "slack:",
    "discord:",
    "console:",
    "slack-group:",
    "discord-role:",
];

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            groups: BTreeMap::new(),
            default_from: Vec::new(),
            expiry_minutes: 30,
            commit_author_may_approve: false,
            auto_remediation: false,
        }
    }
}

/// Files that hold secrets, as an alternative to the environment variables.
/// The environment variable (or its `_FILE` form) wins over these.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecretFiles {
    pub ingest_token_file: String,
    pub github_webhook_secret_file: String,
    pub aws_webhook_secret_file: String,
    pub gitlab_token_file: String,
    pub slack_bot_token_file: String,
    pub slack_app_token_file: String,
    pub slack_signing_secret_file: String,
    pub discord_token_file: String,
    pub discord_public_key_file: String,
    pub github_token_file: String,
}

/// One configuration problem, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where: `server.listen`, `PIPEMEDIC_SERVER__LISTEN`, or the file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found while loading, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "configuration has {} problem{}:",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn single(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![ConfigProblem {
                key: key.into(),
                message: message.into(),
            }],
        }
    }
}

/// The effective configuration with the secrets it resolved and where the
/// file came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub secrets: Secrets,
    pub source: Option<PathBuf>,
}

/// Which file to read: `--config`, else `PIPEMEDIC_CONFIG`, else
/// `./pipemedic.toml` when it exists, else none (built-in defaults).
pub fn resolve_path(flag: Option<&Path>, env: &Env) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = env.get("PIPEMEDIC_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from("pipemedic.toml");
    local.exists().then_some(local)
}

/// Loads defaults, then the file (if any), then the environment; validates
/// everything and resolves secrets. Every problem is reported at once.
pub fn load(path: Option<&Path>, env: &Env) -> Result<Loaded, ConfigError> {
    let file_text = match path {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            ConfigError::single(p.display().to_string(), format!("cannot read: {e}"))
        })?),
        None => None,
    };
    let label = path.map(|p| p.display().to_string());
    let config = from_sources(file_text.as_deref(), label.as_deref(), env)?;
    let secrets =
        Secrets::resolve(&config.secrets, env).map_err(|problems| ConfigError { problems })?;
    Ok(Loaded {
        config,
        secrets,
        source: path.map(Path::to_path_buf),
    })
}

/// Builds the configuration from TOML text (if any) and the environment,
/// without touching the file system.
pub fn from_sources(
    file_text: Option<&str>,
    file_label: Option<&str>,
    env: &Env,
) -> Result<Config, ConfigError> {
    let defaults = toml::Value::try_from(Config::default())
        .map_err(|e| ConfigError::single("defaults", e.to_string()))?;
    let mut merged = defaults.clone();
    let mut problems = Vec::new();

    if let Some(text) = file_text {
        let label = file_label.unwrap_or("pipemedic.toml");
        match text.parse::<toml::Table>() {
            Ok(table) => {
                let value = toml::Value::Table(table);
                unknown_keys(&defaults, &value, "", &mut |key| {
                    problems.push(ConfigProblem {
                        key: key.to_string(),
                        message: format!("unknown key (in {label})"),
                    })
                });
                merge(&mut merged, value);
            }
            Err(e) => problems.push(ConfigProblem {
                key: label.to_string(),
                message: format!("not valid TOML: {}", e.message().trim()),
            }),
        }
    }

    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if NON_CONFIG_VARS.contains(&name.as_str()) || !rest.contains("__") {
            // Secrets (PIPEMEDIC_INGEST_TOKEN ...) and other single-word variables.
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let dotted = path.join(".");
        let Some(default_leaf) = lookup(&defaults, &path) else {
            problems.push(ConfigProblem {
                key: name.clone(),
                message: format!("unknown key {dotted}"),
            });
            continue;
        };
        match env_value(raw, default_leaf) {
            Ok(value) => set(&mut merged, &path, value),
            Err(message) => problems.push(ConfigProblem {
                key: name.clone(),
                message,
            }),
        }
    }

    // Deserialise section by section, so one bad section does not hide the others.
    let mut config = Config::default();
    if let toml::Value::Table(table) = &merged {
        for (section, value) in table {
            if let Err(p) = apply_section(&mut config, section, value.clone()) {
                problems.push(p);
            }
        }
    }
    problems.extend(config.validate());
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError { problems })
    }
}

fn apply_section(
    config: &mut Config,
    section: &str,
    value: toml::Value,
) -> Result<(), ConfigProblem> {
    fn parse<T: serde::de::DeserializeOwned>(
        section: &str,
        value: toml::Value,
    ) -> Result<T, ConfigProblem> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let inner = e.path().to_string();
            let key = if inner == "." || inner.is_empty() {
                section.to_string()
            } else {
                format!("{section}.{inner}")
            };
            ConfigProblem {
                key,
                message: e.into_inner().to_string(),
            }
        })
    }
    match section {
        "server" => config.server = parse(section, value)?,
        "store" => config.store = parse(section, value)?,
        "ingest" => config.ingest = parse(section, value)?,
        "codepipeline" => config.codepipeline = parse(section, value)?,
        "detector" => config.detector = parse(section, value)?,
        "planner" => config.planner = parse(section, value)?,
        "ask" => config.ask = parse(section, value)?,
        "incidents" => config.incidents = parse(section, value)?,
        "chat" => config.chat = parse(section, value)?,
        "slack" => config.slack = parse(section, value)?,
        "discord" => config.discord = parse(section, value)?,
        "github" => config.github = parse(section, value)?,
        "aws" => config.aws = parse(section, value)?,
        "remediate" => config.remediate = parse(section, value)?,
        "approvals" => config.approvals = parse(section, value)?,
        "secrets" => config.secrets = parse(section, value)?,
        // Unknown sections were already reported by `unknown_keys`.
        _ => {}
    }
    Ok(())
}

/// Reports every key of `given` that has no counterpart in `known`.
fn unknown_keys(
    known: &toml::Value,
    given: &toml::Value,
    prefix: &str,
    report: &mut impl FnMut(&str),
) {
    let (toml::Value::Table(known), toml::Value::Table(given)) = (known, given) else {
        return;
    };
    for (key, value) in given {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if path == "approvals.groups" {
            // Group names are the user's own; their shape is checked by validate().
            continue;
        }
        match known.get(key) {
            None => report(&path),
            Some(k) => unknown_keys(k, value, &path, report),
        }
    }
}

fn merge(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(base), toml::Value::Table(overlay)) => {
            for (k, v) in overlay {
                match base.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

fn lookup<'a>(value: &'a toml::Value, path: &[String]) -> Option<&'a toml::Value> {
    path.iter().try_fold(value, |v, key| v.as_table()?.get(key))
}

fn set(value: &mut toml::Value, path: &[String], leaf: toml::Value) {
    let mut cur = value;
    for key in &path[..path.len() - 1] {
        let toml::Value::Table(t) = cur else { return };
        cur = t
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    if let (toml::Value::Table(t), Some(last)) = (cur, path.last()) {
        t.insert(last.clone(), leaf);
    }
}

/// Interprets an environment value by the type of the key's default.
fn env_value(raw: &str, default: &toml::Value) -> Result<toml::Value, String> {
    let raw = raw.trim();
    Ok(match default {
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.parse()
                .map_err(|_| format!("expected an integer, got {raw:?}"))?,
        ),
        toml::Value::Float(_) => toml::Value::Float(
            raw.parse()
                .map_err(|_| format!("expected a number, got {raw:?}"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(format!("expected true or false, got {raw:?}")),
        }),
        toml::Value::Array(_) => {
            if raw.starts_with('[') {
                let t: toml::Table = format!("v = {raw}")
                    .parse()
                    .map_err(|_| format!("expected a TOML array, got {raw:?}"))?;
                t.get("v").cloned().unwrap_or(toml::Value::Array(vec![]))
            } else {
                toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_string()))
                        .collect(),
                )
            }
        }
        toml::Value::Table(_) => return Err("this key is a section; set its keys instead".into()),
        toml::Value::Datetime(_) => toml::Value::String(raw.to_string()),
    })
}

impl Config {
    /// Semantic checks that types alone cannot express; every problem listed.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: String| {
            problems.push(ConfigProblem {
                key: key.to_string(),
                message,
            })
        };
        if self.server.listen.parse::<SocketAddr>().is_err() {
            bad(
                "server.listen",
                format!(
                    "{:?} is not an address:port such as 127.0.0.1:8080",
                    self.server.listen
                ),
            );
        }
        if self.server.max_body_bytes < 1024 {
            bad("server.max_body_bytes", "must be at least 1024".into());
        }
        let url = self.store.url.as_str();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            bad(
                "store.url",
                format!(
                    "{:?} must start with sqlite:, postgres:// or postgresql://",
                    redact_url(url)
                ),
            );
        }
        if self.store.max_connections == 0 {
            bad("store.max_connections", "must be at least 1".into());
        }
        if self.ingest.max_batch == 0 {
            bad("ingest.max_batch", "must be at least 1".into());
        }
        if self.codepipeline.poll_interval_s == 0 {
            bad("codepipeline.poll_interval_s", "must be at least 1".into());
        }
        if !(self.detector.sensitivity > 0.0 && self.detector.sensitivity <= 10.0) {
            bad("detector.sensitivity", "must be in (0, 10]".into());
        }
        for (key, message) in self.detector.rule_problems() {
            bad(&key, message);
        }
        if self.detector.cache_models == 0 {
            bad("detector.cache_models", "must be at least 1".into());
        }
        if self.detector.backend == DetectorBackend::Sagemaker
            && self.detector.sagemaker_endpoint.is_empty()
        {
            bad(
                "detector.sagemaker_endpoint",
                "is required when detector.backend = \"sagemaker\"".into(),
            );
        }
        if self.detector.sagemaker_max_failures == 0 {
            bad(
                "detector.sagemaker_max_failures",
                "must be at least 1".into(),
            );
        }
        if !(1..=86_400).contains(&self.detector.sagemaker_retry_after_s) {
            bad(
                "detector.sagemaker_retry_after_s",
                "must be in [1, 86400]".into(),
            );
        }
        if self.planner.backend == PlannerBackend::Bedrock && self.planner.model_id.is_empty() {
            bad(
                "planner.model_id",
                "is required when planner.backend = \"bedrock\"".into(),
            );
        }
        if self.ask.backend == AskBackend::Bedrock
            && self.ask.effective_model_id(&self.planner).is_empty()
        {
            bad(
                "ask.model_id",
                "is required when ask.backend = \"bedrock\" (or set planner.model_id)".into(),
            );
        }
        if !(1..=32).contains(&self.ask.max_tool_calls) {
            bad("ask.max_tool_calls", "must be 1 to 32".into());
        }
        if !(1_000..=1_000_000).contains(&self.ask.max_tokens) {
            bad("ask.max_tokens", "must be 1000 to 1000000".into());
        }
        for (i, channel) in self.chat.open_channels.iter().enumerate() {
            if channel.trim().is_empty() || channel.contains(char::is_whitespace) {
                bad(
                    &format!("chat.open_channels[{i}]"),
                    format!("{channel:?} must be a channel id or \"dm\""),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.planner.temperature) {
            bad("planner.temperature", "must be in [0, 1]".into());
        }
        if self.incidents.group_window_h == 0 {
            bad("incidents.group_window_h", "must be at least 1".into());
        }
        if self.incidents.chart_days == 0 || self.incidents.chart_runs < 2 {
            bad(
                "incidents.chart_days",
                "chart_days must be at least 1 and chart_runs at least 2".into(),
            );
        }
        if self.chat.outbox_poll_ms == 0 {
            bad("chat.outbox_poll_ms", "must be at least 1".into());
        }
        for (i, route) in self.chat.routes.iter().enumerate() {
            if let Err(e) = globset::Glob::new(&route.pipelines) {
                bad(
                    &format!("chat.routes[{i}].pipelines"),
                    format!("{:?} is not a valid glob: {e}", route.pipelines),
                );
            }
            if !CHAT_PLATFORMS.contains(&route.platform.as_str()) {
                bad(
                    &format!("chat.routes[{i}].platform"),
                    format!(
                        "{:?} must be \"slack\", \"discord\" or \"console\"",
                        route.platform
                    ),
                );
            }
            if route.channel.trim().is_empty() {
                bad(
                    &format!("chat.routes[{i}].channel"),
                    "must name a channel".into(),
                );
            }
        }
        let default = &self.chat.default_route;
        if !default.platform.is_empty() || !default.channel.is_empty() {
            if !CHAT_PLATFORMS.contains(&default.platform.as_str()) {
                bad(
                    "chat.default_route.platform",
                    format!(
                        "{:?} must be \"slack\", \"discord\" or \"console\"",
                        default.platform
                    ),
                );
            }
            if default.channel.trim().is_empty() {
                bad("chat.default_route.channel", "must name a channel".into());
            }
        }
        if self.planner.max_tokens == 0 {
            bad("planner.max_tokens", "must be at least 1".into());
        }
        if self.planner.timeout_s == 0 {
            bad("planner.timeout_s", "must be at least 1".into());
        }
        if !(1..=5).contains(&self.planner.max_attempts) {
            bad("planner.max_attempts", "must be 1 to 5".into());
        }
        for (i, pattern) in self.planner.redact_patterns.iter().enumerate() {
            if let Err(e) = crate::redact::Redactor::new(std::slice::from_ref(pattern)) {
                let message = match e {
                    crate::redact::RedactError::Pattern { message, .. } => message,
                };
                bad(
                    &format!("planner.redact_patterns[{i}]"),
                    format!("{pattern:?} is not a valid regular expression: {message}"),
                );
            }
        }
        for (i, host) in self.planner.http_allowed_hosts.iter().enumerate() {
            let h = host.strip_prefix("*.").unwrap_or(host);
            if h.is_empty()
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                bad(
                    &format!("planner.http_allowed_hosts[{i}]"),
                    format!(
                        "{host:?} must be a host name such as hooks.example.com or *.example.com"
                    ),
                );
            }
        }
        if !matches!(self.slack.mode.as_str(), "socket" | "events") {
            bad(
                "slack.mode",
                format!("{:?} must be \"socket\" or \"events\"", self.slack.mode),
            );
        }
        for (key, value) in [
            ("remediate.http_timeout_s", self.remediate.http_timeout_s),
            ("remediate.shell_timeout_s", self.remediate.shell_timeout_s),
        ] {
            if !(1..=MAX_ACTION_TIMEOUT_S).contains(&value) {
                bad(key, format!("must be between 1 and {MAX_ACTION_TIMEOUT_S}"));
            }
        }
        for (i, host) in self.remediate.http_allowlist.iter().enumerate() {
            if let Err(message) = check_allowlist_host(host) {
                bad(&format!("remediate.http_allowlist[{i}]"), message);
            }
        }
        for (i, name) in self.remediate.shell_env_allowlist.iter().enumerate() {
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                bad(
                    &format!("remediate.shell_env_allowlist[{i}]"),
                    format!("{name:?} is not an environment variable name"),
                );
            }
        }
        if !(1..=MAX_EXPIRY_MINUTES).contains(&self.approvals.expiry_minutes) {
            bad(
                "approvals.expiry_minutes",
                format!("must be between 1 and {MAX_EXPIRY_MINUTES}"),
            );
        }
        for (name, members) in &self.approvals.groups {
            let name_ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !name_ok {
                bad(
                    &format!("approvals.groups.{name}"),
                    "a group name uses only letters, digits, '-', '_' and '.'".into(),
                );
            }
            for (i, member) in members.iter().enumerate() {
                let ok = APPROVER_MEMBER_PREFIXES.iter().any(|p| {
                    member
                        .strip_prefix(p)
                        .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
                });
                if !ok {
                    bad(
                        &format!("approvals.groups.{name}[{i}]"),
                        format!(
                            "{member:?} must be slack:USER, discord:USER, console:NAME, slack-group:ID or discord-role:ID"
                        ),
                    );
                }
            }
        }
        for (i, entry) in self.approvals.default_from.iter().enumerate() {
            let ok = ["group:", "user:"].iter().any(|p| {
                entry
                    .strip_prefix(p)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
            });
            if !ok {
                bad(
                    &format!("approvals.default_from[{i}]"),
                    format!("{entry:?} must be group:NAME or user:ID"),
                );
            }
        }
        for (key, value) in [
            ("slack.api_url", &self.slack.api_url),
            ("discord.api_url", &self.discord.api_url),
            ("github.api_url", &self.github.api_url),
            ("aws.endpoints.bedrock", &self.aws.endpoints.bedrock),
            ("aws.endpoints.sagemaker", &self.aws.endpoints.sagemaker),
            (
                "aws.endpoints.codepipeline",
                &self.aws.endpoints.codepipeline,
            ),
        ] {
            let optional = key.starts_with("aws.");
            let is_http = value.starts_with("http://") || value.starts_with("https://");
            let may_be_empty = optional && value.is_empty();
            if !(is_http || may_be_empty) {
                bad(
                    key,
                    format!("{:?} must be an http:// or https:// URL", redact_url(value)),
                );
            }
        }
        problems
    }

    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.server.listen.parse().ok()
    }

    /// The effective configuration as TOML, with credentials in URLs redacted
    /// (secrets themselves are never part of [`Config`]).
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.store.url = redact_url(&shown.store.url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Checks one `remediate.http_allowlist` entry: a host name or IP
/// address, or `*.domain`; no scheme, port, path or user.
fn check_allowlist_host(entry: &str) -> Result<(), String> {
    let host = entry.strip_prefix("*.").unwrap_or(entry);
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !host.starts_with('.')
        && !host.ends_with('.');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{entry:?} must be a host name such as hooks.internal.example or *.internal.example (no scheme, port or path)"
        ))
    }
}

/// Replaces the password of `scheme://user:password@host` with `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}://{}:***@{}",
                    &url[..scheme_end],
                    &userinfo[..colon],
                    &rest[at + 1..]
                ),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_any_file() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.store.url, "sqlite://pipemedic.db");
        assert_eq!(c.planner.backend, PlannerBackend::Offline);
        assert_eq!(c.detector.backend, DetectorBackend::Embedded);
    }

    #[test]
    fn file_then_environment_override() {
        let text = "[server]\nlisten = \"127.0.0.1:9000\"\n[store]\nurl = \"sqlite://x.db\"\n";
        let c = from_sources(
            Some(text),
            None,
            &env(&[
                ("PIPEMEDIC_SERVER__LISTEN", "127.0.0.1:9100"),
                ("PIPEMEDIC_AWS__ENDPOINTS__BEDROCK", "http://127.0.0.1:4000"),
                ("PIPEMEDIC_CODEPIPELINE__POLL_PIPELINES", "a, b"),
                ("PIPEMEDIC_INGEST_TOKEN", "not-a-config-key"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9100");
        assert_eq!(c.store.url, "sqlite://x.db");
        assert_eq!(c.aws.endpoints.bedrock, "http://127.0.0.1:4000");
        assert_eq!(c.codepipeline.poll_pipelines, ["a", "b"]);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key() {
        let text = "[server]\nlisten = \"nowhere\"\ncolour = 3\n[store]\nmax_connections = \"many\"\n[bogus]\nx = 1\n";
        let err = from_sources(
            Some(text),
            Some("pipemedic.toml"),
            &env(&[
                ("PIPEMEDIC_PLANNER__TEMPERATURE", "warm"),
                ("PIPEMEDIC_SLACK__NOPE", "x"),
            ]),
        )
        .unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for expected in [
            "server.colour",
            "bogus",
            "PIPEMEDIC_PLANNER__TEMPERATURE",
            "PIPEMEDIC_SLACK__NOPE",
            "store.max_connections",
        ] {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
        // server.listen is only checked once its section deserialises; the
        // unknown key in the same section is reported alongside.
        assert!(err.to_string().contains("problems"));
    }

    #[test]
    fn semantic_problems_are_all_listed() {
        let text = "[server]\nlisten = \"nowhere\"\n[store]\nurl = \"mysql://x\"\n[detector]\nbackend = \"sagemaker\"\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["server.listen", "store.url", "detector.sagemaker_endpoint"]
        );
    }

    #[test]
    fn sagemaker_fallback_settings_have_defaults_and_are_validated() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(c.detector.sagemaker_max_failures, 3);
        assert_eq!(c.detector.sagemaker_retry_after_s, 300);
        let text = "[detector]\nsagemaker_max_failures = 0\nsagemaker_retry_after_s = 0\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "detector.sagemaker_max_failures",
                "detector.sagemaker_retry_after_s"
            ]
        );
    }

    #[test]
    fn remediate_limits_are_validated() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert!(c.remediate.http_allowlist.is_empty());
        assert_eq!(c.remediate.shell_env_allowlist, ["PATH", "HOME"]);
        assert_eq!(c.remediate.http_timeout_s, 30);
        assert_eq!(c.remediate.shell_timeout_s, 300);

        let c = from_sources(
            Some("[remediate]\nhttp_allowlist = [\"hooks.internal.example\", \"*.ops.example\"]\n"),
            None,
            &env(&[("PIPEMEDIC_REMEDIATE__SHELL_ENV_ALLOWLIST", "PATH, LANG")]),
        )
        .unwrap();
        assert_eq!(
            c.remediate.http_allowlist,
            ["hooks.internal.example", "*.ops.example"]
        );
        assert_eq!(c.remediate.shell_env_allowlist, ["PATH", "LANG"]);

        let text = "[remediate]\nhttp_allowlist = [\"https://x.example/path\", \"ok.example\"]\nshell_env_allowlist = [\"A=B\"]\nhttp_timeout_s = 0\nshell_timeout_s = 100000\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "remediate.http_timeout_s",
                "remediate.shell_timeout_s",
                "remediate.http_allowlist[0]",
                "remediate.shell_env_allowlist[0]",
            ]
        );
    }

    #[test]
    fn chat_routes_are_read_and_checked() {
        let text = "[incidents]\ngroup_window_h = 2\n[chat.default_route]\nplatform = \"discord\"\nchannel = \"42\"\n\
                    [[chat.routes]]\npipelines = \"payments-*\"\nplatform = \"slack\"\nchannel = \"C0123\"\n";
        let c = from_sources(Some(text), None, &Env::new()).unwrap();
        assert_eq!(c.incidents.group_window_h, 2);
        assert_eq!(c.chat.routes[0].pipelines, "payments-*");
        assert_eq!(c.chat.default_route.channel, "42");
        let bad = "[[chat.routes]]\npipelines = \"a[\"\nplatform = \"teams\"\nchannel = \"\"\n";
        let err = from_sources(Some(bad), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "chat.routes[0].pipelines",
                "chat.routes[0].platform",
                "chat.routes[0].channel"
            ]
        );
    }

    #[test]
    fn planner_keys_are_validated() {
        let text = "[planner]\nredact_patterns = [\"ok-[0-9]+\", \"(unclosed\"]\nmax_attempts = 0\nhttp_allowed_hosts = [\"https://x\"]\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "planner.max_attempts",
                "planner.redact_patterns[1]",
                "planner.http_allowed_hosts[0]"
            ]
        );
        let c = from_sources(
            Some("[planner]\ngeneric_ci = \"codepipeline\"\n"),
            None,
            &env(&[("PIPEMEDIC_PLANNER__REDACT_PATTERNS", "ACME-[0-9]{6}")]),
        )
        .unwrap();
        assert_eq!(c.planner.generic_ci, CiSystem::Codepipeline);
        assert_eq!(c.planner.redact_patterns, ["ACME-[0-9]{6}"]);
        assert_eq!(c.planner.max_attempts, 2);
    }

    #[test]
    fn approvals_settings_are_validated() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(c.approvals.expiry_minutes, 30);
        assert!(!c.approvals.commit_author_may_approve);
        assert!(!c.approvals.auto_remediation);
        assert!(c.approvals.groups.is_empty());

        let text = "[approvals]\nexpiry_minutes = 45\nauto_remediation = true\n[approvals.groups]\nsre = [\"slack:U123\", \"discord:456\", \"slack-group:S0SRE\"]\n";
        let c = from_sources(
            Some(text),
            None,
            &env(&[("PIPEMEDIC_APPROVALS__COMMIT_AUTHOR_MAY_APPROVE", "true")]),
        )
        .unwrap();
        assert_eq!(c.approvals.expiry_minutes, 45);
        assert!(c.approvals.auto_remediation);
        assert!(c.approvals.commit_author_may_approve);
        assert_eq!(
            c.approvals.groups["sre"],
            ["slack:U123", "discord:456", "slack-group:S0SRE"]
        );

        let text = "[approvals]\nexpiry_minutes = 0\ndefault_from = [\"sre\"]\n[approvals.groups]\n\"bad name\" = [\"U123\"]\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "approvals.expiry_minutes",
                "approvals.groups.bad name",
                "approvals.groups.bad name[0]",
                "approvals.default_from[0]",
            ]
        );
    }

    #[test]
    fn ask_keys_have_defaults_and_are_validated() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(c.ask.backend, AskBackend::Offline);
        assert_eq!(c.ask.max_tool_calls, 8);
        assert_eq!(c.ask.max_tokens, 20_000);
        assert_eq!(c.ask.effective_model_id(&c.planner), c.planner.model_id);
        assert!(c.chat.open_channels.is_empty());
        let c = from_sources(
            Some("[ask]\nbackend = \"bedrock\"\nmodel_id = \"m1\"\n[chat]\nopen_channels = [\"C1\", \"dm\"]\n"),
            None,
            &env(&[("PIPEMEDIC_ASK__MAX_TOOL_CALLS", "4")]),
        )
        .unwrap();
        assert_eq!(c.ask.backend, AskBackend::Bedrock);
        assert_eq!(c.ask.effective_model_id(&c.planner), "m1");
        assert_eq!(c.ask.max_tool_calls, 4);
        assert_eq!(c.chat.open_channels, ["C1", "dm"]);
        let text = "[ask]\nmax_tool_calls = 0\nmax_tokens = 5\n[chat]\nopen_channels = [\" \"]\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ask.max_tool_calls",
                "ask.max_tokens",
                "chat.open_channels[0]"
            ]
        );
    }

    #[test]
    fn starter_file_is_valid() {
        from_sources(Some(STARTER_TOML), Some("starter"), &Env::new()).unwrap();
    }

    #[test]
    fn effective_config_renders_with_routes() {
        let mut c = Config::default();
        c.chat.routes.push(ChatRoute {
            pipelines: "payments-*".into(),
            platform: "slack".into(),
            channel: "C1".into(),
        });
        let text = c.to_redacted_toml();
        assert!(!text.starts_with("# cannot render"), "{text}");
        let back = from_sources(Some(&text), None, &Env::new()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
        let mut c = Config::default();
        c.store.url = "postgres://app:s3cret@db/x".into();
        assert!(!c.to_redacted_toml().contains("s3cret"));
    }
}
