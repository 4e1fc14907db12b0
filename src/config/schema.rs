//! The configuration sections: one struct (or enum) per `[section]` of
//! `pipemedic.toml`, with the built-in defaults each starts from, and the
//! limits their values are checked against.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::detection::{self, MetricRuleConfig, PipelineRulesConfig};
use crate::domain::LinkTemplate;
use crate::playbooks::CiSystem;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port the HTTP server binds.
    pub listen: String,
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_grace_s: u64,
    /// Seconds between the start of shutdown and the listener closing:
    /// `/readyz` answers 503 while requests are still served, so a load
    /// balancer stops sending traffic before connections are refused.
    pub drain_s: u64,
    /// Base URL people use to reach this server (for links in chat).
    pub public_url: String,
    /// Seconds a connection may take to send a request's headers. The
    /// timer also runs while a kept-alive connection waits for its next
    /// request, so it is the idle limit too.
    pub header_timeout_s: f64,
    /// Seconds a request may take to send its body.
    pub body_timeout_s: f64,
    /// Seconds a whole request may take, from its headers to the answer
    /// (requests only hand work off; remediation runs outside them).
    pub request_timeout_s: f64,
    /// Most connections served at once; further ones wait in the listen
    /// backlog. Lowered at start to the open-file limit minus a reserve.
    pub max_connections: usize,
    /// Requests per second each source address may make to the
    /// unauthenticated webhook and chat routes, after a burst.
    pub webhook_rate_per_second: u32,
    /// Requests a source address may make at once before the rate applies.
    pub webhook_burst: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            shutdown_grace_s: 20,
            drain_s: 0,
            public_url: String::new(),
            header_timeout_s: 10.0,
            body_timeout_s: 30.0,
            request_timeout_s: 60.0,
            max_connections: 4096,
            webhook_rate_per_second: 50,
            webhook_burst: 500,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://path.db` (created on first start) or `postgres://...`.
    pub url: String,
    pub max_connections: u32,
    /// Seconds a replica's ownership of a pipeline lasts unless renewed
    /// (PostgreSQL with several replicas; renewed every third of it).
    /// Another replica takes a pipeline over at most this long after its
    /// owner stopped.
    pub lease_seconds: u32,
    /// This replica's name in the pipeline leases; must differ between
    /// replicas. Empty: host name, process id and start time.
    pub replica_id: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://pipemedic.db".into(),
            max_connections: 8,
            lease_seconds: 15,
            replica_id: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Most runs accepted in one `POST /v1/runs` array.
    pub max_batch: usize,
    /// Days a processed delivery or event id is kept for recognising
    /// redeliveries; older ids are pruned.
    pub processed_event_retention_days: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_batch: 1000,
            processed_event_retention_days: 30,
        }
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
    /// Memory the cached pipeline models may take together, in MiB (each
    /// model's estimated heap bytes); with `cache_models`, whichever bound
    /// is reached first evicts the least recently used model.
    pub model_cache_mib: u64,
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

/// Default of `detector.cache_models`: the byte bound is the one that
/// matters at the defaults.
pub const DEFAULT_CACHE_MODELS: usize = 10_000;

/// Default of `detector.model_cache_mib`: 1 GiB, about 7,300 pipeline
/// models of a few hundred runs at today's 143 KB each.
pub const DEFAULT_MODEL_CACHE_MIB: u64 = 1024;

/// Largest accepted `detector.model_cache_mib` (1 TiB).
pub const MAX_MODEL_CACHE_MIB: u64 = 1 << 20;

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            backend: DetectorBackend::Embedded,
            sagemaker_endpoint: String::new(),
            sagemaker_max_failures: 3,
            sagemaker_retry_after_s: 300,
            sensitivity: 1.0,
            retrain_interval_h: 24,
            cache_models: DEFAULT_CACHE_MODELS,
            model_cache_mib: DEFAULT_MODEL_CACHE_MIB,
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
    /// Replaced by `remediate.http_allowlist` (one allowlist for `http`
    /// actions); a non-empty value is an error that says so.
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
    /// Links shown on these pipelines' alerts (a dashboard, a runbook),
    /// with incident facts filled in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkTemplate>,
}

/// The route of pipelines no `[[chat.routes]]` entry matches; empty
/// platform means such pipelines are not posted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultRoute {
    pub platform: String,
    pub channel: String,
    /// Links shown on the alerts of pipelines this route takes.
    pub links: Vec<LinkTemplate>,
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
    /// Who may `silence`, `unsilence` and `accept-baseline` in chat:
    /// `slack:USER`, `discord:USER`, `console:NAME`, `slack-group:ID`,
    /// `discord-role:ID` or `group:NAME` (an `[approvals.groups]` group).
    /// Empty: nobody, in chat.
    pub admins: Vec<String>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            default_route: DefaultRoute::default(),
            outbox_poll_ms: 1000,
            open_channels: Vec::new(),
            admins: Vec::new(),
        }
    }
}

pub(super) const CHAT_PLATFORMS: [&str; 3] = ["slack", "discord", "console"];

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

/// The GitLab REST API (the failing job's trace of an abnormal run).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GitlabConfig {
    /// GitLab base URL (self-managed: `https://gitlab.example.com`); the
    /// API is under `{api_url}/api/v4`.
    pub api_url: String,
}

impl Default for GitlabConfig {
    fn default() -> Self {
        Self {
            api_url: "https://gitlab.com".into(),
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
    /// S3 (`pipemedic export`); an override is addressed path-style.
    pub s3: String,
    /// CloudWatch Logs (failing CodeBuild logs, `[evidence]`).
    pub logs: String,
    /// CloudWatch (CodeBuild CPU and memory, `[evidence]`).
    pub cloudwatch: String,
}

/// Limits on the remediation actions pipemedic runs once approved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemediateConfig {
    /// What an `http` action may call, for playbooks and the executor
    /// alike: exact host names, `*.domain` for every subdomain, and IP
    /// addresses or CIDR networks, which are the only way to reach a
    /// loopback, link-local, private or unique-local address. Empty: no
    /// `http` action can run.
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
    /// Who a chat user is, for recognising a commit's author: `slack:USER_ID`
    /// or `discord:USER_ID` (or `console:NAME`) to the person's emails and
    /// CI logins. Added to what the platform says (a Slack profile's email);
    /// Discord has no email, so this is how Discord voters are known.
    pub identities: BTreeMap<String, Vec<String>>,
    /// What happens to a vote when authors are excluded and the voter's
    /// identity is unknown (no email from the platform, no `identities`
    /// entry): `refuse` (the default) or `allow`.
    pub unknown_identity: UnknownIdentity,
}

/// What to do with a vote whose voter pipemedic cannot tell apart from the
/// commit's author.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnknownIdentity {
    /// Refuse the vote and say why in the thread (fail closed).
    #[default]
    Refuse,
    /// Count it as if the voter were not the author.
    Allow,
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
            identities: BTreeMap::new(),
            unknown_identity: UnknownIdentity::Refuse,
        }
    }
}

/// Paging the on-call person (`[paging]`): when a plan expires without
/// enough approvals, or when fixes did not heal an incident
/// `not_healed_times` times, through PagerDuty's Events API v2 or
/// Opsgenie's Alert API; resolved when the incident closes. The
/// credentials are secrets (`PIPEMEDIC_PAGERDUTY_ROUTING_KEY`,
/// `PIPEMEDIC_OPSGENIE_API_KEY`), never keys of this section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PagingConfig {
    /// `pagerduty`, `opsgenie`, or empty: nobody is paged.
    pub provider: String,
    /// Page when a plan expires without enough approvals.
    pub on_expiry: bool,
    /// Page when this many fixes did not heal one incident (0: never).
    pub not_healed_times: u32,
    pub pagerduty: PagerDutyConfig,
    pub opsgenie: OpsgenieConfig,
}

impl Default for PagingConfig {
    fn default() -> Self {
        Self {
            provider: String::new(),
            on_expiry: true,
            not_healed_times: 2,
            pagerduty: PagerDutyConfig::default(),
            opsgenie: OpsgenieConfig::default(),
        }
    }
}

/// The paging providers `paging.provider` may name.
pub const PAGING_PROVIDERS: [&str; 2] = ["pagerduty", "opsgenie"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PagerDutyConfig {
    /// Events API v2 base URL; events go to `{events_url}/v2/enqueue`.
    pub events_url: String,
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        Self {
            events_url: "https://events.pagerduty.com".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpsgenieConfig {
    /// Alert API base URL (`https://api.eu.opsgenie.com` for EU accounts);
    /// alerts go to `{api_url}/v2/alerts`.
    pub api_url: String,
}

impl Default for OpsgenieConfig {
    fn default() -> Self {
        Self {
            api_url: "https://api.opsgenie.com".into(),
        }
    }
}

/// Files that hold secrets, as an alternative to the environment variables.
/// The environment variable (or its `_FILE` form) wins over these.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecretFiles {
    pub ingest_token_file: String,
    pub read_token_file: String,
    pub admin_token_file: String,
    pub github_webhook_secret_file: String,
    pub aws_webhook_secret_file: String,
    pub gitlab_token_file: String,
    pub slack_bot_token_file: String,
    pub slack_app_token_file: String,
    pub slack_signing_secret_file: String,
    pub discord_token_file: String,
    pub discord_public_key_file: String,
    pub github_token_file: String,
    pub gitlab_api_token_file: String,
    pub pagerduty_routing_key_file: String,
    pub opsgenie_api_key_file: String,
}

/// The read-only web console under `/ui`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Hours a console session lasts after signing in (1 to 168).
    pub session_hours: u32,
    /// Directory of console templates (`*.hbs`, by file stem); any template
    /// it lacks is the one built into pipemedic. Empty: built-in only.
    pub templates_dir: String,
    /// A header set by an authenticating proxy (oauth2-proxy's
    /// `X-Forwarded-User`) that names the person; empty turns the mode off.
    pub trusted_proxy_header: String,
    /// Peer addresses (CIDR or single addresses) whose
    /// `trusted_proxy_header` is believed; from anywhere else it is ignored.
    pub trusted_proxies: Vec<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            session_hours: 12,
            templates_dir: String::new(),
            trusted_proxy_header: String::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Evidence fetched for abnormal runs from where CI keeps it (`src/evidence/`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// Fetch the failing job's log of an abnormal run (CodeBuild through
    /// CloudWatch Logs; GitHub Actions and GitLab through their APIs).
    pub fetch_logs: bool,
    /// Read a CodeBuild build's CPU and memory from CloudWatch when the run
    /// did not report them.
    pub codebuild_usage: bool,
    /// Time allowed for all the fetches of one run, in seconds.
    pub timeout_s: u64,
    /// Most bytes of fetched log kept with the run (its tail and the lines
    /// around errors).
    pub max_excerpt_bytes: usize,
    /// Longest a finished CodeBuild run of CodePipeline that reported no
    /// CPU or memory waits for CloudWatch's figures before it is scored
    /// without them, in seconds; 0 scores it at once (the figures are then
    /// read only for abnormal runs, after detection).
    pub resource_wait_s: u64,
    /// How often the waiting runs' figures are asked for (one batched
    /// `GetMetricData`), in seconds.
    pub resource_poll_s: u64,
    /// Most runs waiting at once; beyond it a run is scored at once.
    pub resource_max_held: usize,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        Self {
            fetch_logs: true,
            codebuild_usage: true,
            timeout_s: 20,
            max_excerpt_bytes: 4096,
            resource_wait_s: 300,
            resource_poll_s: 30,
            resource_max_held: 5000,
        }
    }
}
