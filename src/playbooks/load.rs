//! Reading playbook files: front matter split, YAML parsing, and every check
//! a playbook must pass before it enters the [`Catalog`], each failure
//! reported with its file, line and field.
//!
//! The loader reads files and builds values; it never runs an action and
//! never consults an incident.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobMatcher};
use regex::RegexBuilder;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_norway::Value as Yaml;

use super::locate::{locate, path_segments};
use super::model::{
    escape_for, render_template_escaped, sample_template_context, url_allowed, ActionDecl,
    ActionKind, ApprovalPolicy, Catalog, Condition, ParamSpec, ParamType, Playbook, Risk,
    TemplateEscape,
};
use crate::domain::{Direction, RunStatus};

/// The playbooks shipped with pipemedic, used when no directory is given.
const BUNDLED: [(&str, &str); 6] = [
    (
        "flaky-tests.md",
        include_str!("../../playbooks/flaky-tests.md"),
    ),
    (
        "resource-exhaustion.md",
        include_str!("../../playbooks/resource-exhaustion.md"),
    ),
    (
        "deploy-regression.md",
        include_str!("../../playbooks/deploy-regression.md"),
    ),
    (
        "dependency-outage.md",
        include_str!("../../playbooks/dependency-outage.md"),
    ),
    (
        "hung-stage.md",
        include_str!("../../playbooks/hung-stage.md"),
    ),
    (
        "build-duration-regression.md",
        include_str!("../../playbooks/build-duration-regression.md"),
    ),
];

const MAX_REGEX_SIZE: usize = 1 << 20;
const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);
const MAX_APPROVERS: u32 = 10;
const SHELLS: [&str; 10] = [
    "sh",
    "bash",
    "zsh",
    "dash",
    "ksh",
    "fish",
    "csh",
    "tcsh",
    "pwsh",
    "powershell",
];

/// What the loader needs from the configuration.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Hosts that `http` actions may call: `hooks.example.com` or
    /// `*.example.com`. Empty: no `http` action is valid.
    pub http_allowed_hosts: Vec<String>,
}

/// One problem in one playbook file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlaybookError {
    pub file: PathBuf,
    /// 1-based line in the file; 0 when the problem is the file itself.
    pub line: usize,
    /// Path of the field in the front matter (`actions[0].with.mode`), or
    /// `front matter` / `body` / `file`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for PlaybookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.message
            )
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file.display(),
                self.line,
                self.field,
                self.message
            )
        }
    }
}

/// Result of checking a directory of playbooks (`pipemedic playbooks check`).
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Playbook files read.
    pub files: usize,
    /// Ids of the valid playbooks, with their files.
    pub valid: Vec<(String, PathBuf)>,
    pub errors: Vec<PlaybookError>,
}

impl CheckReport {
    /// 0 when every playbook is valid, 2 (bad input) otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.errors.is_empty() {
            0
        } else {
            2
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        if self.errors.is_empty() {
            writeln!(f, "{} playbooks OK", self.valid.len())
        } else {
            writeln!(
                f,
                "{} error(s) in {} file(s); {} playbook(s) valid",
                self.errors.len(),
                self.files,
                self.valid.len()
            )
        }
    }
}

/// Checks every `*.md` playbook in `dir` (a `README.md` is documentation
/// and skipped) and reports all problems at once.
pub fn check_dir(dir: &Path, options: &LoadOptions) -> CheckReport {
    check_dir_inner(dir, options).0
}

/// Loads every playbook in `dir`; any error rejects the whole directory.
pub fn load_dir(dir: &Path, options: &LoadOptions) -> Result<Catalog, Vec<PlaybookError>> {
    let (report, playbooks) = check_dir_inner(dir, options);
    if report.errors.is_empty() {
        Ok(catalog(playbooks, options))
    } else {
        Err(report.errors)
    }
}

impl Catalog {
    /// The playbooks shipped with pipemedic.
    pub fn bundled() -> Result<Self, Vec<PlaybookError>> {
        Self::bundled_with(&LoadOptions::default())
    }

    /// The playbooks in `dir` when it exists, the bundled ones otherwise
    /// (no directory configured, or the configured one is absent).
    pub fn load_or_bundled(
        dir: Option<&Path>,
        options: &LoadOptions,
    ) -> Result<Self, Vec<PlaybookError>> {
        match dir.filter(|d| d.is_dir()) {
            Some(dir) => load_dir(dir, options),
            None => Self::bundled_with(options),
        }
    }

    fn bundled_with(options: &LoadOptions) -> Result<Self, Vec<PlaybookError>> {
        let files = BUNDLED
            .iter()
            .map(|(name, text)| (PathBuf::from("playbooks").join(name), text.to_string()))
            .collect();
        let (report, playbooks) = check_files(files, options);
        if report.errors.is_empty() {
            Ok(catalog(playbooks, options))
        } else {
            Err(report.errors)
        }
    }
}

fn catalog(mut playbooks: Vec<Playbook>, options: &LoadOptions) -> Catalog {
    playbooks.sort_by(|a, b| a.id.cmp(&b.id));
    Catalog {
        playbooks,
        http_allowed_hosts: options.http_allowed_hosts.clone(),
    }
}

fn check_dir_inner(dir: &Path, options: &LoadOptions) -> (CheckReport, Vec<Playbook>) {
    let file_error = |file: &Path, message: String| PlaybookError {
        file: file.to_path_buf(),
        line: 0,
        field: "file".to_string(),
        message,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            let report = CheckReport {
                errors: vec![file_error(dir, format!("cannot read directory: {e}"))],
                ..CheckReport::default()
            };
            return (report, Vec::new());
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "md"))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.eq_ignore_ascii_case("README.md"))
        })
        .collect();
    paths.sort();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((path, text)),
            Err(e) => errors.push(file_error(&path, format!("cannot read: {e}"))),
        }
    }
    let (mut report, playbooks) = check_files(files, options);
    report.files += errors.len();
    errors.append(&mut report.errors);
    report.errors = errors;
    (report, playbooks)
}

fn check_files(
    files: Vec<(PathBuf, String)>,
    options: &LoadOptions,
) -> (CheckReport, Vec<Playbook>) {
    let mut report = CheckReport {
        files: files.len(),
        ..CheckReport::default()
    };
    let mut playbooks: Vec<Playbook> = Vec::new();
    let mut seen: HashMap<String, (PathBuf, usize)> = HashMap::new();
    for (path, text) in files {
        match parse_playbook(&path, &text, options) {
            Ok(playbook) => {
                let id_line = id_line(&text);
                if let Some((first, first_line)) = seen.get(&playbook.id) {
                    report.errors.push(PlaybookError {
                        file: path.clone(),
                        line: id_line,
                        field: "id".to_string(),
                        message: format!(
                            "duplicate playbook id `{}`, first defined at {}:{}",
                            playbook.id,
                            first.display(),
                            first_line
                        ),
                    });
                    continue;
                }
                seen.insert(playbook.id.clone(), (path.clone(), id_line));
                report.valid.push((playbook.id.clone(), path));
                playbooks.push(playbook);
            }
            Err(mut errors) => report.errors.append(&mut errors),
        }
    }
    (report, playbooks)
}

fn id_line(text: &str) -> usize {
    match split_front_matter(text) {
        Ok(front) => locate(front.yaml, &path_segments("id")) + front.offset,
        Err(_) => 1,
    }
}

struct FrontMatter<'a> {
    yaml: &'a str,
    /// Lines before the YAML's first line.
    offset: usize,
    body: &'a str,
    body_line: usize,
}

fn split_front_matter(text: &str) -> Result<FrontMatter<'_>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or_default();
    if first.trim_end() != "---" {
        return Err((
            1,
            "a playbook starts with a `---` line, then YAML front matter, then `---`".to_string(),
        ));
    }
    let start = first.len();
    let mut pos = start;
    let mut line_no = 1;
    for line in lines {
        line_no += 1;
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed == "..." {
            return Ok(FrontMatter {
                yaml: &text[start..pos],
                offset: 1,
                body: &text[pos + line.len()..],
                body_line: line_no + 1,
            });
        }
        pos += line.len();
    }
    Err((
        1,
        "the front matter is not closed by a `---` line".to_string(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaybook {
    id: String,
    title: String,
    when: RawWhen,
    #[serde(default)]
    actions: Vec<RawAction>,
    #[serde(default)]
    approval: Option<Yaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    metric: Option<String>,
    direction: Option<String>,
    status: Option<String>,
    stage: Option<String>,
    pipeline: Option<String>,
    log: Option<String>,
}

enum RawWhen {
    One(RawCondition),
    Any(Vec<RawCondition>),
}

impl<'de> Deserialize<'de> for RawWhen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WhenVisitor;
        impl<'de> Visitor<'de> for WhenVisitor {
            type Value = RawWhen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a condition mapping or a list of condition mappings")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawWhen, A::Error> {
                RawCondition::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawWhen::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawWhen, A::Error> {
                Vec::<RawCondition>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(RawWhen::Any)
            }
        }
        deserializer.deserialize_any(WhenVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    id: String,
    uses: String,
    #[serde(default)]
    with: BTreeMap<String, Yaml>,
    risk: Option<String>,
    approval: Option<Yaml>,
    delay: Option<String>,
    description: Option<String>,
}

/// Collects errors for one file, placing each at its field's line.
struct Errors<'a> {
    file: &'a Path,
    yaml: &'a str,
    offset: usize,
    list: Vec<PlaybookError>,
}

impl Errors<'_> {
    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.list.push(PlaybookError {
            file: self.file.to_path_buf(),
            line: locate(self.yaml, &path_segments(field)) + self.offset,
            field: field.to_string(),
            message: message.into(),
        });
    }
}

/// Parses and validates one playbook file; `file` names it in errors.
pub fn parse_playbook(
    file: &Path,
    text: &str,
    options: &LoadOptions,
) -> Result<Playbook, Vec<PlaybookError>> {
    let front = split_front_matter(text).map_err(|(line, message)| {
        vec![PlaybookError {
            file: file.to_path_buf(),
            line,
            field: "front matter".to_string(),
            message,
        }]
    })?;
    let raw: RawPlaybook =
        serde_norway::from_str(front.yaml).map_err(|e| vec![yaml_error(file, &front, &e)])?;
    let mut errors = Errors {
        file,
        yaml: front.yaml,
        offset: front.offset,
        list: Vec::new(),
    };

    if !valid_id(&raw.id) {
        errors.push(
            "id",
            format!(
                "`{}` is not a valid id: use 1 to 64 lowercase letters, digits and dashes",
                raw.id
            ),
        );
    }
    if raw.title.trim().is_empty() || raw.title.len() > 120 {
        errors.push("title", "must be 1 to 120 characters");
    }

    let when = match raw.when {
        RawWhen::One(c) => vec![("when".to_string(), c)],
        RawWhen::Any(list) => {
            if list.is_empty() {
                errors.push("when", "needs at least one condition");
            }
            list.into_iter()
                .enumerate()
                .map(|(i, c)| (format!("when[{i}]"), c))
                .collect()
        }
    };
    let mut conditions = Vec::new();
    for (path, raw) in when {
        if let Some(c) = condition(&path, raw, &mut errors) {
            conditions.push(c);
        }
    }

    let default_approval = raw
        .approval
        .as_ref()
        .and_then(|y| approval(y, "approval", &mut errors));
    let mut actions = Vec::new();
    let mut action_ids: HashMap<String, usize> = HashMap::new();
    for (i, raw) in raw.actions.into_iter().enumerate() {
        let path = format!("actions[{i}]");
        if !valid_id(&raw.id) {
            errors.push(
                &format!("{path}.id"),
                format!(
                    "`{}` is not a valid action id: use lowercase letters, digits and dashes",
                    raw.id
                ),
            );
        }
        if let Some(first) = action_ids.insert(raw.id.clone(), i) {
            errors.push(
                &format!("{path}.id"),
                format!(
                    "duplicate action id `{}` (also actions[{first}].id)",
                    raw.id
                ),
            );
        }
        if let Some(action) = action(&path, raw, default_approval.as_ref(), options, &mut errors) {
            actions.push(action);
        }
    }

    if front.body.trim().is_empty() {
        errors.list.push(PlaybookError {
            file: file.to_path_buf(),
            line: front.body_line - 1,
            field: "body".to_string(),
            message: "the runbook text below the front matter is empty".to_string(),
        });
    }

    if errors.list.is_empty() {
        Ok(Playbook {
            id: raw.id,
            title: raw.title,
            when: conditions,
            actions,
            body: front.body.trim().to_string(),
            file: file.to_path_buf(),
        })
    } else {
        Err(errors.list)
    }
}

/// 1 to 64 lowercase letters, digits and dashes, not starting with a dash.
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn yaml_error(file: &Path, front: &FrontMatter<'_>, e: &serde_norway::Error) -> PlaybookError {
    let text = e.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let (parent, message) = match text.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(' ') => {
            (Some(path.to_string()), rest.to_string())
        }
        _ => (None, text),
    };
    // Name the offending key itself for unknown and missing fields.
    let key = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string);
    let field = match (parent, key) {
        (Some(parent), Some(key)) => format!("{parent}.{key}"),
        (None, Some(key)) => key,
        (Some(parent), None) => parent,
        (None, None) => "front matter".to_string(),
    };
    let line = e
        .location()
        .map(|l| l.line() + front.offset)
        .unwrap_or_else(|| locate(front.yaml, &path_segments(&field)) + front.offset);
    PlaybookError {
        file: file.to_path_buf(),
        line,
        field,
        message,
    }
}

fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid glob `{pattern}`: {}", e.kind()))
}

fn condition(path: &str, raw: RawCondition, errors: &mut Errors<'_>) -> Option<Condition> {
    let before = errors.list.len();
    if raw.metric.is_none()
        && raw.status.is_none()
        && raw.stage.is_none()
        && raw.pipeline.is_none()
        && raw.log.is_none()
    {
        errors.push(
            path,
            "a condition needs at least one of metric, status, stage, pipeline, log",
        );
    }
    let mut field_glob = |name: &str, value: Option<String>| -> Option<(String, GlobMatcher)> {
        let value = value?;
        match glob(&value) {
            Ok(m) if !value.trim().is_empty() => Some((value, m)),
            Ok(_) => {
                errors.push(&format!("{path}.{name}"), "must not be empty");
                None
            }
            Err(msg) => {
                errors.push(&format!("{path}.{name}"), msg);
                None
            }
        }
    };
    let metric = field_glob("metric", raw.metric);
    let stage = field_glob("stage", raw.stage);
    let pipeline = field_glob("pipeline", raw.pipeline);
    let direction = match raw.direction.as_deref() {
        None => None,
        Some("up") => Some(Direction::Up),
        Some("down") => Some(Direction::Down),
        Some(other) => {
            errors.push(
                &format!("{path}.direction"),
                format!("`{other}` is not a direction: use up or down"),
            );
            None
        }
    };
    if raw.direction.is_some() && metric.is_none() && errors.list.len() == before {
        errors.push(
            &format!("{path}.direction"),
            "direction needs a metric in the same condition",
        );
    }
    let status = match raw.status.as_deref() {
        None => None,
        Some(s) => match [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
            RunStatus::Running,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        {
            Some(st) => Some(st),
            None => {
                errors.push(
                    &format!("{path}.status"),
                    format!(
                        "`{s}` is not a run status: use succeeded, failed, cancelled or running"
                    ),
                );
                None
            }
        },
    };
    let log = match raw.log {
        None => None,
        Some(pattern) => match RegexBuilder::new(&pattern)
            .size_limit(MAX_REGEX_SIZE)
            .build()
        {
            Ok(re) => Some(re),
            Err(e) => {
                let msg = e.to_string();
                let last = msg.lines().last().unwrap_or_default().trim();
                let last = last.strip_prefix("error: ").unwrap_or(last).to_string();
                errors.push(
                    &format!("{path}.log"),
                    format!("invalid regular expression: {last}"),
                );
                None
            }
        },
    };
    (errors.list.len() == before).then_some(Condition {
        metric,
        direction,
        status,
        stage,
        pipeline,
        log,
    })
}

fn approval(y: &Yaml, path: &str, errors: &mut Errors<'_>) -> Option<ApprovalPolicy> {
    match y {
        Yaml::String(s) if s == "none" => Some(ApprovalPolicy::None),
        Yaml::Mapping(map) => {
            let before = errors.list.len();
            let mut required = None;
            let mut from = Vec::new();
            for (k, v) in map {
                match k.as_str() {
                    Some("required") => match v.as_u64() {
                        Some(n) if (1..=u64::from(MAX_APPROVERS)).contains(&n) => {
                            required = u32::try_from(n).ok();
                        }
                        _ => errors.push(
                            &format!("{path}.required"),
                            format!("must be a whole number from 1 to {MAX_APPROVERS}"),
                        ),
                    },
                    Some("from") => match v.as_sequence() {
                        Some(list) => {
                            for (i, item) in list.iter().enumerate() {
                                match item.as_str() {
                                    Some(s) if approver_ok(s) => from.push(s.to_string()),
                                    _ => errors.push(
                                        &format!("{path}.from[{i}]"),
                                        "must be `group:NAME` or `user:ID`",
                                    ),
                                }
                            }
                        }
                        None => errors.push(
                            &format!("{path}.from"),
                            "must be a list of `group:NAME` or `user:ID`",
                        ),
                    },
                    _ => errors.push(
                        path,
                        format!(
                            "unknown field `{}`: approval takes required and from",
                            yaml_key(k)
                        ),
                    ),
                }
            }
            let Some(required) = required else {
                if errors.list.len() == before {
                    errors.push(path, "missing field `required`");
                }
                return None;
            };
            let all_users = !from.is_empty() && from.iter().all(|f| f.starts_with("user:"));
            if all_users && from.len() < required as usize {
                errors.push(
                    &format!("{path}.required"),
                    format!(
                        "{required} approvals can never come from {} listed user(s)",
                        from.len()
                    ),
                );
            }
            (errors.list.len() == before).then_some(ApprovalPolicy::Required { required, from })
        }
        _ => {
            errors.push(
                path,
                "must be `none` or a mapping `{ required: N, from: [...] }`",
            );
            None
        }
    }
}

fn approver_ok(s: &str) -> bool {
    let rest = s.strip_prefix("group:").or_else(|| s.strip_prefix("user:"));
    rest.is_some_and(|r| !r.is_empty() && !r.chars().any(char::is_whitespace))
}

fn yaml_key(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

fn yaml_kind(y: &Yaml) -> &'static str {
    match y {
        Yaml::Null => "null",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

fn parse_delay(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = raw.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

fn action(
    path: &str,
    raw: RawAction,
    default_approval: Option<&ApprovalPolicy>,
    options: &LoadOptions,
    errors: &mut Errors<'_>,
) -> Option<ActionDecl> {
    let before = errors.list.len();
    let kind = ActionKind::parse(&raw.uses);
    if kind.is_none() {
        let known: Vec<&str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
        errors.push(
            &format!("{path}.uses"),
            format!(
                "unknown action kind `{}`; known kinds: {}",
                raw.uses,
                known.join(", ")
            ),
        );
    }
    let risk = match raw.risk.as_deref() {
        None => {
            errors.push(&format!("{path}.risk"), "missing: low or high");
            None
        }
        Some(r) => match Risk::parse(r) {
            Some(risk) => Some(risk),
            None => {
                errors.push(
                    &format!("{path}.risk"),
                    format!("`{r}` is not a risk level: use low or high"),
                );
                None
            }
        },
    };
    let own_approval = raw
        .approval
        .as_ref()
        .and_then(|y| approval(y, &format!("{path}.approval"), errors));
    let delay = match raw.delay.as_deref() {
        None => None,
        Some(d) => match parse_delay(d) {
            Some(delay) if delay <= MAX_DELAY => Some(delay),
            _ => {
                errors.push(
                    &format!("{path}.delay"),
                    format!("`{d}` is not a delay: use a number with s, m or h, at most 24h"),
                );
                None
            }
        },
    };
    let mut with = BTreeMap::new();
    if let Some(kind) = kind {
        for (name, value) in &raw.with {
            let field = format!("{path}.with.{name}");
            let Some(spec) = kind.param(name) else {
                let accepted: Vec<&str> = kind.params().iter().map(|p| p.name).collect();
                errors.push(
                    &field,
                    format!(
                        "`{}` takes no parameter `{name}`; it accepts: {}",
                        kind,
                        if accepted.is_empty() {
                            "none".to_string()
                        } else {
                            accepted.join(", ")
                        }
                    ),
                );
                continue;
            };
            if let Some(v) = param_value(kind, spec, value, &field, options, errors) {
                with.insert(name.clone(), v);
            }
        }
        for spec in kind.params() {
            if spec.required && spec.default.is_none() && !raw.with.contains_key(spec.name) {
                errors.push(
                    &format!("{path}.with"),
                    format!(
                        "`{}` needs parameter `{}` ({})",
                        kind, spec.name, spec.description
                    ),
                );
            }
        }
    }
    let (kind, risk) = (kind?, risk?);
    let approval = own_approval
        .or_else(|| default_approval.cloned())
        .unwrap_or_else(|| ApprovalPolicy::for_risk(risk));
    if approval == ApprovalPolicy::None && risk != Risk::Low {
        let field = if raw.approval.is_some() {
            format!("{path}.approval")
        } else {
            "approval".to_string()
        };
        errors.push(
            &field,
            format!(
                "`approval: none` is allowed only for low-risk actions; `{}` is {risk} risk",
                raw.id
            ),
        );
    }
    (errors.list.len() == before).then(|| ActionDecl {
        line: locate(errors.yaml, &path_segments(path)) + errors.offset,
        id: raw.id,
        kind,
        with,
        risk,
        approval,
        delay,
        description: raw.description,
    })
}

/// Checks one `with:` value against its schema and returns it as JSON.
fn param_value(
    kind: ActionKind,
    spec: &ParamSpec,
    value: &Yaml,
    field: &str,
    options: &LoadOptions,
    errors: &mut Errors<'_>,
) -> Option<Value> {
    let expected = |errors: &mut Errors<'_>, what: &str| {
        let hint = if matches!(value, Yaml::Mapping(_)) && what.contains("string") {
            "; quote templates: \"{{stage}}\""
        } else {
            ""
        };
        errors.push(
            field,
            format!("expected {what}, found {}{hint}", yaml_kind(value)),
        );
        None
    };
    let sample = sample_template_context();
    let check_template = |errors: &mut Errors<'_>, field: &str, s: &str| -> Option<String> {
        match render_template_escaped(s, &sample, escape_for(kind, spec, s)) {
            Ok(rendered) => Some(rendered),
            Err(msg) => {
                errors.push(field, format!("template does not render: {msg}"));
                None
            }
        }
    };
    match spec.ty {
        ParamType::String => {
            let Some(s) = value.as_str() else {
                return expected(errors, "a string");
            };
            let rendered = check_template(errors, field, s)?;
            if escape_for(kind, spec, s) == TemplateEscape::JsonString
                && serde_json::from_str::<Value>(&rendered).is_err()
            {
                errors.push(field, "looks like JSON but is not valid JSON once rendered");
                return None;
            }
            Some(Value::from(s))
        }
        ParamType::Enum(allowed) => {
            let Some(s) = value.as_str() else {
                return expected(errors, &format!("a string, one of {}", allowed.join(", ")));
            };
            if allowed.contains(&s) {
                Some(Value::from(s))
            } else {
                errors.push(
                    field,
                    format!("`{s}` is not allowed; use one of {}", allowed.join(", ")),
                );
                None
            }
        }
        ParamType::Bool => match value.as_bool() {
            Some(b) => Some(Value::Bool(b)),
            None => expected(errors, "a boolean (true or false)"),
        },
        ParamType::Integer { min, max } => match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => Some(Value::from(n)),
            Some(n) => {
                errors.push(field, format!("{n} is out of range {min}..={max}"));
                None
            }
            None => expected(errors, &format!("an integer {min}..={max}")),
        },
        ParamType::Url => {
            let Some(s) = value.as_str() else {
                return expected(errors, "a URL string");
            };
            if let Err(msg) = url_allowed(s, &options.http_allowed_hosts) {
                errors.push(field, msg);
                return None;
            }
            let rendered = check_template(errors, field, s)?;
            if let Err(msg) = url_allowed(&rendered, &options.http_allowed_hosts) {
                errors.push(field, msg);
                return None;
            }
            Some(Value::from(s))
        }
        ParamType::StringList | ParamType::EnvNames => {
            let Some(list) = value.as_sequence() else {
                return expected(errors, "a list of strings");
            };
            let mut out = Vec::new();
            for (i, item) in list.iter().enumerate() {
                let item_field = format!("{field}[{i}]");
                let Some(s) = item.as_str() else {
                    errors.push(
                        &item_field,
                        format!("expected a string, found {}", yaml_kind(item)),
                    );
                    continue;
                };
                if spec.ty == ParamType::EnvNames {
                    let ok = s
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                        && s.chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                    if !ok {
                        errors.push(
                            &item_field,
                            format!("`{s}` is not an environment variable name (A-Z, 0-9, _)"),
                        );
                        continue;
                    }
                } else if check_template(errors, &item_field, s).is_none() {
                    continue;
                }
                out.push(Value::from(s));
            }
            if spec.name == "argv" {
                argv_checks(list, field, errors);
            }
            Some(Value::Array(out))
        }
    }
}

fn argv_checks(list: &[Yaml], field: &str, errors: &mut Errors<'_>) {
    let Some(program) = list.first().and_then(Yaml::as_str) else {
        if list.is_empty() {
            errors.push(field, "needs at least the program to run");
        }
        return;
    };
    if program.contains("{{") {
        errors.push(
            &format!("{field}[0]"),
            "the program must be written out, not templated",
        );
    }
    let base = program.rsplit('/').next().unwrap_or(program);
    if SHELLS.contains(&base) {
        errors.push(
            &format!("{field}[0]"),
            format!("`{program}` is a shell; write the command itself as argv, without a shell"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse() {
        assert_eq!(parse_delay("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_delay("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_delay("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_delay("soon"), None);
        assert_eq!(parse_delay("5d"), None);
    }
}
