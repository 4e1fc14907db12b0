//! The validated playbook model: playbooks, their `when` conditions, the
//! actions they declare, the action vocabulary with its parameter schemas,
//! risk and approval policy, and the catalog that holds them all.
//!
//! Everything here is already checked by the loader; nothing here reads
//! files, runs actions or knows about the model.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use globset::GlobMatcher;
use handlebars::Handlebars;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::domain::{ApprovalPolicy, Risk};
use crate::domain::{Direction, HttpAllowlist, RunStatus};

/// The incident facts a template in a playbook's `with:` may name, and
/// nothing else: `{{stage}}`, `{{pipeline}}`, `{{incident_id}}` ...
pub const TEMPLATE_FACTS: [&str; 13] = [
    "incident_id",
    "pipeline",
    "run_id",
    "status",
    "stage",
    "commit",
    "commit_author",
    "attempt",
    "execution_id",
    "log_url",
    "run_url",
    "last_normal_run_id",
    "last_normal_commit",
];

/// The CI system an incident's pipeline runs on; decides which action kinds
/// can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CiSystem {
    Codepipeline,
    GithubActions,
    Gitlab,
    Other,
}

impl CiSystem {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Codepipeline => "codepipeline",
            Self::GithubActions => "github_actions",
            Self::Gitlab => "gitlab",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for CiSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Type of one action parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// A string; may be a template over incident facts.
    String,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    Bool,
    /// An integer within bounds (inclusive).
    Integer {
        min: i64,
        max: i64,
    },
    /// A list of strings; each may be a template.
    StringList,
    /// An absolute `http`/`https` URL whose host is on the allowlist.
    Url,
    /// A list of environment variable names.
    EnvNames,
}

impl ParamType {
    /// JSON schema of a value of this type.
    pub fn json_schema(self) -> Value {
        match self {
            Self::String | Self::Url => serde_json::json!({"type": "string"}),
            Self::Enum(values) => serde_json::json!({"type": "string", "enum": values}),
            Self::Bool => serde_json::json!({"type": "boolean"}),
            Self::Integer { min, max } => {
                serde_json::json!({"type": "integer", "minimum": min, "maximum": max})
            }
            Self::StringList | Self::EnvNames => {
                serde_json::json!({"type": "array", "items": {"type": "string"}})
            }
        }
    }

    /// Short human form for prompts and error messages.
    pub fn describe(self) -> String {
        match self {
            Self::String => "string".to_string(),
            Self::Enum(values) => format!("one of {}", values.join("|")),
            Self::Bool => "boolean".to_string(),
            Self::Integer { min, max } => format!("integer {min}..={max}"),
            Self::StringList => "list of strings".to_string(),
            Self::Url => "URL".to_string(),
            Self::EnvNames => "list of environment variable names".to_string(),
        }
    }

    /// The values a plan may choose from, for choice parameters.
    pub fn allowed_values(self) -> Vec<Value> {
        match self {
            Self::Enum(values) => values.iter().map(|v| Value::from(*v)).collect(),
            Self::Bool => vec![Value::Bool(false), Value::Bool(true)],
            _ => Vec::new(),
        }
    }
}

/// Who sets a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamSetter {
    /// A plan may choose any of the type's allowed values.
    Plan,
    /// The playbook (or the default) sets it; a plan may only repeat the
    /// rendered value.
    Playbook,
    /// Written in the playbook only; a plan must not mention it at all
    /// (commands, URLs, request bodies, environment).
    PlaybookOnly,
}

/// Schema of one parameter of an action kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    pub required: bool,
    /// Default when the playbook does not set it (a template for strings).
    pub default: Option<ParamDefault>,
    pub setter: ParamSetter,
    pub description: &'static str,
}

/// A parameter's built-in default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamDefault {
    Str(&'static str),
    Bool(bool),
    Int(i64),
    EmptyList,
}

impl ParamDefault {
    pub fn to_value(self) -> Value {
        match self {
            Self::Str(s) => Value::from(s),
            Self::Bool(b) => Value::Bool(b),
            Self::Int(i) => Value::from(i),
            Self::EmptyList => Value::Array(Vec::new()),
        }
    }
}

const RETRY_STAGE: &[ParamSpec] = &[
    ParamSpec {
        name: "stage",
        ty: ParamType::String,
        required: true,
        default: Some(ParamDefault::Str("{{stage}}")),
        setter: ParamSetter::Playbook,
        description: "the stage to retry",
    },
    ParamSpec {
        name: "mode",
        ty: ParamType::Enum(&["FAILED_ACTIONS", "ALL_ACTIONS"]),
        required: true,
        default: Some(ParamDefault::Str("FAILED_ACTIONS")),
        setter: ParamSetter::Plan,
        description: "retry only the failed actions, or every action of the stage",
    },
];

const ROLLBACK_STAGE: &[ParamSpec] = &[ParamSpec {
    name: "stage",
    ty: ParamType::String,
    required: true,
    default: Some(ParamDefault::Str("{{stage}}")),
    setter: ParamSetter::Playbook,
    description: "the stage to roll back to its last successful execution",
}];

const STOP_EXECUTION: &[ParamSpec] = &[
    ParamSpec {
        name: "abandon",
        ty: ParamType::Bool,
        required: true,
        default: Some(ParamDefault::Bool(false)),
        setter: ParamSetter::Plan,
        description: "abandon in-progress actions instead of letting them finish",
    },
    ParamSpec {
        name: "reason",
        ty: ParamType::String,
        required: true,
        default: Some(ParamDefault::Str(
            "Stopped by pipemedic for incident {{incident_id}}",
        )),
        setter: ParamSetter::Playbook,
        description: "reason recorded on the stopped execution",
    },
];

const RERUN_FAILED_JOBS: &[ParamSpec] = &[ParamSpec {
    name: "enable_debug_logging",
    ty: ParamType::Bool,
    required: true,
    default: Some(ParamDefault::Bool(false)),
    setter: ParamSetter::Plan,
    description: "rerun with runner debug logging",
}];

const HTTP: &[ParamSpec] = &[
    ParamSpec {
        name: "method",
        ty: ParamType::Enum(&["GET", "POST", "PUT", "PATCH", "DELETE"]),
        required: true,
        default: None,
        setter: ParamSetter::PlaybookOnly,
        description: "HTTP method",
    },
    ParamSpec {
        name: "url",
        ty: ParamType::Url,
        required: true,
        default: None,
        setter: ParamSetter::PlaybookOnly,
        description: "request URL; its host must be on the configured allowlist",
    },
    ParamSpec {
        name: "body",
        ty: ParamType::String,
        required: false,
        default: None,
        setter: ParamSetter::PlaybookOnly,
        description: "request body, a template over incident facts",
    },
    ParamSpec {
        name: "timeout_s",
        ty: ParamType::Integer { min: 1, max: 120 },
        required: true,
        default: Some(ParamDefault::Int(10)),
        setter: ParamSetter::PlaybookOnly,
        description: "request timeout in seconds",
    },
];

const SHELL: &[ParamSpec] = &[
    ParamSpec {
        name: "argv",
        ty: ParamType::StringList,
        required: true,
        default: None,
        setter: ParamSetter::PlaybookOnly,
        description: "program and arguments, run directly without a shell",
    },
    ParamSpec {
        name: "timeout_s",
        ty: ParamType::Integer { min: 1, max: 3600 },
        required: true,
        default: Some(ParamDefault::Int(300)),
        setter: ParamSetter::PlaybookOnly,
        description: "kill the command after this many seconds",
    },
    ParamSpec {
        name: "env",
        ty: ParamType::EnvNames,
        required: true,
        default: Some(ParamDefault::EmptyList),
        setter: ParamSetter::PlaybookOnly,
        description: "environment variables passed through; nothing else is inherited",
    },
];

/// The kinds of action a playbook may declare (`uses:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ActionKind {
    #[serde(rename = "codepipeline.retry_stage")]
    CodepipelineRetryStage,
    #[serde(rename = "codepipeline.rollback_stage")]
    CodepipelineRollbackStage,
    #[serde(rename = "codepipeline.start_execution")]
    CodepipelineStartExecution,
    #[serde(rename = "codepipeline.stop_execution")]
    CodepipelineStopExecution,
    #[serde(rename = "github.rerun_failed_jobs")]
    GithubRerunFailedJobs,
    #[serde(rename = "http")]
    Http,
    #[serde(rename = "shell")]
    Shell,
}

impl ActionKind {
    pub const ALL: [ActionKind; 7] = [
        Self::CodepipelineRetryStage,
        Self::CodepipelineRollbackStage,
        Self::CodepipelineStartExecution,
        Self::CodepipelineStopExecution,
        Self::GithubRerunFailedJobs,
        Self::Http,
        Self::Shell,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CodepipelineRetryStage => "codepipeline.retry_stage",
            Self::CodepipelineRollbackStage => "codepipeline.rollback_stage",
            Self::CodepipelineStartExecution => "codepipeline.start_execution",
            Self::CodepipelineStopExecution => "codepipeline.stop_execution",
            Self::GithubRerunFailedJobs => "github.rerun_failed_jobs",
            Self::Http => "http",
            Self::Shell => "shell",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// What the action does, for prompts and chat.
    pub fn description(self) -> &'static str {
        match self {
            Self::CodepipelineRetryStage => {
                "retry a stage of the incident's CodePipeline execution"
            }
            Self::CodepipelineRollbackStage => {
                "roll a CodePipeline stage back to its last successful execution"
            }
            Self::CodepipelineStartExecution => "start a new execution of the incident's pipeline",
            Self::CodepipelineStopExecution => "stop the incident's CodePipeline execution",
            Self::GithubRerunFailedJobs => "re-run the failed jobs of the incident's workflow run",
            Self::Http => "send the HTTP request written in the playbook",
            Self::Shell => "run the command written in the playbook (no shell)",
        }
    }

    /// The parameters this kind accepts.
    pub fn params(self) -> &'static [ParamSpec] {
        match self {
            Self::CodepipelineRetryStage => RETRY_STAGE,
            Self::CodepipelineRollbackStage => ROLLBACK_STAGE,
            Self::CodepipelineStartExecution => &[],
            Self::CodepipelineStopExecution => STOP_EXECUTION,
            Self::GithubRerunFailedJobs => RERUN_FAILED_JOBS,
            Self::Http => HTTP,
            Self::Shell => SHELL,
        }
    }

    pub fn param(self, name: &str) -> Option<&'static ParamSpec> {
        self.params().iter().find(|p| p.name == name)
    }

    /// Whether this kind can act on a pipeline run by `ci`.
    pub fn applies_to(self, ci: CiSystem) -> bool {
        match self {
            Self::CodepipelineRetryStage
            | Self::CodepipelineRollbackStage
            | Self::CodepipelineStartExecution
            | Self::CodepipelineStopExecution => ci == CiSystem::Codepipeline,
            Self::GithubRerunFailedJobs => ci == CiSystem::GithubActions,
            Self::Http | Self::Shell => true,
        }
    }

    /// Whether the action addresses one execution of the pipeline (and so
    /// needs the incident's `execution_id`).
    pub fn needs_execution_id(self) -> bool {
        matches!(
            self,
            Self::CodepipelineRetryStage
                | Self::CodepipelineStopExecution
                | Self::GithubRerunFailedJobs
        )
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alternative of a playbook's `when`: every field that is set must hold.
#[derive(Debug, Clone)]
pub struct Condition {
    pub metric: Option<(String, GlobMatcher)>,
    pub direction: Option<Direction>,
    pub status: Option<RunStatus>,
    pub stage: Option<(String, GlobMatcher)>,
    pub pipeline: Option<(String, GlobMatcher)>,
    pub log: Option<Regex>,
}

/// One action a playbook declares.
#[derive(Debug, Clone)]
pub struct ActionDecl {
    pub id: String,
    pub kind: ActionKind,
    /// Values the playbook sets, before rendering (strings may be templates).
    pub with: BTreeMap<String, Value>,
    pub risk: Risk,
    pub approval: ApprovalPolicy,
    /// Do not run before this long after approval ("retry later").
    pub delay: Option<Duration>,
    pub description: Option<String>,
    /// `shell` only: incident facts that may fill an argument starting
    /// with `-` (an option). Any other fact that would is refused.
    pub flags: Vec<String>,
    /// Line of the action in its file.
    pub line: usize,
}

impl ActionDecl {
    /// The value the playbook (or the default) gives a parameter, unrendered.
    pub fn configured(&self, spec: &ParamSpec) -> Option<Value> {
        self.with
            .get(spec.name)
            .cloned()
            .or_else(|| spec.default.map(ParamDefault::to_value))
    }
}

/// The incident fact a template starts with (`{{stage}}-x` → `stage`), if
/// it starts with one.
pub fn leading_fact(template: &str) -> Option<&str> {
    let inner = template.strip_prefix("{{")?;
    let end = inner.find("}}")?;
    let name = inner[..end].trim();
    let simple = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    simple.then_some(name)
}

/// Whether a rendered `shell` argument is refused because a fact made it
/// start with `-` (read as an option by most programs) and the action does
/// not declare that fact in `flags`: the reason, or `None` when it may run.
pub fn fact_flag_refusal(template: &str, rendered: &str, flags: &[String]) -> Option<String> {
    if !rendered.starts_with('-') || template.starts_with('-') {
        return None;
    }
    match leading_fact(template) {
        Some(fact) if flags.iter().any(|f| f == fact) => None,
        Some(fact) => Some(format!(
            "the fact `{fact}` makes this argument start with `-` ({:?}), which would be read as an option; declare `flags: [{fact}]` on the action if that is intended",
            truncate_chars(rendered, 40)
        )),
        None => Some(format!(
            "an incident fact makes this argument start with `-` ({:?}), which would be read as an option",
            truncate_chars(rendered, 40)
        )),
    }
}

fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// A loaded, valid playbook.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub id: String,
    pub title: String,
    /// Any of these alternatives may match.
    pub when: Vec<Condition>,
    pub actions: Vec<ActionDecl>,
    /// Links shown on plans that use this playbook (`links:` in the front
    /// matter: `{label, url}` templates, checked when loaded).
    pub links: Vec<crate::domain::LinkTemplate>,
    /// The Markdown runbook below the front matter.
    pub body: String,
    pub file: PathBuf,
}

impl Playbook {
    pub fn action(&self, id: &str) -> Option<&ActionDecl> {
        self.actions.iter().find(|a| a.id == id)
    }
}

/// All loaded playbooks, in id order, with the HTTP host allowlist they were
/// checked against.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub(crate) playbooks: Vec<Playbook>,
    pub(crate) http_allowed_hosts: Vec<String>,
}

impl Catalog {
    pub fn playbooks(&self) -> &[Playbook] {
        &self.playbooks
    }

    pub fn get(&self, id: &str) -> Option<&Playbook> {
        self.playbooks.iter().find(|p| p.id == id)
    }

    pub fn len(&self) -> usize {
        self.playbooks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.playbooks.is_empty()
    }

    /// Hosts `http` actions may call (`example.com` or `*.example.com`).
    pub fn http_allowed_hosts(&self) -> &[String] {
        &self.http_allowed_hosts
    }

    /// Whether `url` is an absolute http(s) URL without credentials whose
    /// host is on the allowlist.
    pub fn url_allowed(&self, url: &str) -> Result<(), String> {
        url_allowed(url, &self.http_allowed_hosts)
    }
}

pub(crate) fn url_allowed(url: &str, allowed: &[String]) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| "must be an absolute http:// or https:// URL".to_string())?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not carry credentials in the URL".to_string());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    }
    .to_ascii_lowercase();
    if host.is_empty() || host.contains("{{") {
        return Err("the host must be written out, not templated".to_string());
    }
    if HttpAllowlist::lenient(allowed).allows_host(&host) {
        Ok(())
    } else {
        Err(format!(
            "host `{host}` is not on remediate.http_allowlist ({})",
            if allowed.is_empty() {
                "empty".to_string()
            } else {
                allowed.join(", ")
            }
        ))
    }
}

/// How fact values are escaped where a template inserts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateEscape {
    /// Inserted as they are (argv elements, stage names, reasons).
    None,
    /// Escaped for the inside of a JSON string (`http` bodies that are JSON).
    JsonString,
    /// Percent-encoded as one URL component (`http` URLs).
    UrlComponent,
}

/// How facts are escaped in a parameter: percent-encoded in URLs, JSON
/// string escaped in JSON request bodies, as they are elsewhere.
pub fn escape_for(kind: ActionKind, spec: &ParamSpec, template: &str) -> TemplateEscape {
    match spec.ty {
        ParamType::Url => TemplateEscape::UrlComponent,
        ParamType::String
            if kind == ActionKind::Http
                && spec.name == "body"
                && template.trim_start().starts_with(['{', '[']) =>
        {
            TemplateEscape::JsonString
        }
        _ => TemplateEscape::None,
    }
}

fn json_string_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_default()
        .to_string()
}

fn url_component_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn template_registry(escape: TemplateEscape) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    match escape {
        TemplateEscape::None => hb.register_escape_fn(handlebars::no_escape),
        TemplateEscape::JsonString => hb.register_escape_fn(json_string_escape),
        TemplateEscape::UrlComponent => hb.register_escape_fn(url_component_escape),
    }
    hb
}

/// Renders a template from a playbook's `with:` against `facts` (strict: a
/// name that is not in `facts` is an error), inserting values as they are.
pub fn render_template(template: &str, facts: &Value) -> Result<String, String> {
    render_template_escaped(template, facts, TemplateEscape::None)
}

/// Like [`render_template`], escaping every inserted value. Triple braces
/// and `{{&name}}`, which would bypass the escaping, are refused.
pub fn render_template_escaped(
    template: &str,
    facts: &Value,
    escape: TemplateEscape,
) -> Result<String, String> {
    if !template.contains("{{") {
        return Ok(template.to_string());
    }
    if template.contains("{{{") || template.contains("{{&") || template.contains("{{~{") {
        return Err(
            "unescaped output (`{{{name}}}`, `{{&name}}`) is not allowed; use `{{name}}`"
                .to_string(),
        );
    }
    template_registry(escape)
        .render_template(template, facts)
        .map_err(|e| template_error_message(&e))
}

fn template_error_message(e: &handlebars::RenderError) -> String {
    if let handlebars::RenderErrorReason::MissingVariable(name) = e.reason() {
        let name = name.as_deref().unwrap_or("?");
        if TEMPLATE_FACTS.contains(&name) {
            return format!("needs the incident fact `{name}`, which this incident does not have");
        }
        return format!(
            "`{name}` is not an incident fact; templates may use only {}",
            TEMPLATE_FACTS.join(", ")
        );
    }
    let text = e.to_string();
    // Strip the registry's location noise ("... in template ... line 1, col 3").
    let text = text
        .split(" in template")
        .next()
        .unwrap_or(&text)
        .to_string();
    if text.contains("Failed to access variable in strict mode") {
        format!(
            "{text} (templates may use only the incident facts {})",
            TEMPLATE_FACTS.join(", ")
        )
    } else {
        text
    }
}

/// A context in which every allowed fact is present, used to check that a
/// template names only incident facts.
pub fn sample_template_context() -> Value {
    let mut map = serde_json::Map::new();
    for name in TEMPLATE_FACTS {
        let value = if name == "attempt" {
            Value::from(1)
        } else {
            Value::from(format!("sample-{name}"))
        };
        map.insert(name.to_string(), value);
    }
    Value::Object(map)
}
