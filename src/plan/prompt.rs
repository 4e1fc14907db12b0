//! The plan prompt: handlebars templates (`prompts/*.hbs`, strict mode,
//! partials) and the context they render from an incident.
//!
//! Templates are read from the prompts directory at start; any template the
//! directory lacks falls back to the copy built into pipemedic, so users can
//! edit prompts without rebuilding. Every template is test-rendered when
//! loaded, so a broken edit fails at start, naming its file.
//!
//! This module builds text only. It never sends anything: the caller sends
//! [`PlanPrompt`] to the model. The log excerpt is the only untrusted input
//! and is redacted, size-capped (tail kept) and framed as data; the whole
//! prompt is redacted once more before it is returned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use handlebars::Handlebars;
use regex::Regex;
use serde_json::{json, Value};

use super::types::{IncidentFacts, MAX_STEPS};
use super::validate::{allowed_actions, plan_tool_schema, AllowedAction};
use crate::domain::Direction;
use crate::playbooks::{Catalog, ParamSetter};
use crate::redact::Redactor;

/// Most bytes of the log excerpt's tail put in a prompt.
pub const LOG_TAIL_BYTES: usize = 6 * 1024;

/// Name of the tool the model calls with its plan.
pub const PLAN_TOOL_NAME: &str = "submit_plan";

/// Templates built into pipemedic: (name, source). Names starting with `_`
/// are partials (`{{> _log}}`).
const BUNDLED: [(&str, &str); 10] = [
    ("system", include_str!("../../prompts/system.hbs")),
    ("plan", include_str!("../../prompts/plan.hbs")),
    ("_incident", include_str!("../../prompts/_incident.hbs")),
    ("_metrics", include_str!("../../prompts/_metrics.hbs")),
    ("_log", include_str!("../../prompts/_log.hbs")),
    ("_playbooks", include_str!("../../prompts/_playbooks.hbs")),
    ("_actions", include_str!("../../prompts/_actions.hbs")),
    (
        "_track_record",
        include_str!("../../prompts/_track_record.hbs"),
    ),
    ("ask_system", include_str!("../../prompts/ask_system.hbs")),
    ("ask", include_str!("../../prompts/ask.hbs")),
];

/// Sentences a model answer to a question may have.
const ASK_MAX_SENTENCES: usize = 6;

/// A rendered question prompt for the model's tool loop.
#[derive(Debug, Clone, PartialEq)]
pub struct AskPrompt {
    pub system: String,
    /// The user message: the redacted question, framed as untrusted data.
    pub user: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{}: cannot read: {message}", file.display())]
    Read { file: PathBuf, message: String },
    #[error("{}: {message}", file.display())]
    Template { file: PathBuf, message: String },
    #[error("rendering prompt `{name}`: {message}")]
    Render { name: String, message: String },
}

/// A rendered plan prompt, ready for a Bedrock Converse request.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanPrompt {
    /// The system prompt.
    pub system: String,
    /// The user message.
    pub user: String,
    /// The actions the plan may use (also listed in `user`).
    pub allowed: Vec<AllowedAction>,
    /// Name and input schema of the tool the model answers through.
    pub tool_name: &'static str,
    pub tool_schema: Value,
}

/// The loaded prompt templates.
#[derive(Debug, Clone)]
pub struct PromptSet {
    hb: Handlebars<'static>,
    /// Where each template came from (`bundled` or its file).
    sources: BTreeMap<String, String>,
}

fn registry() -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb
}

impl PromptSet {
    /// Only the templates built into pipemedic.
    pub fn bundled() -> Result<Self, PromptError> {
        Self::load(None)
    }

    /// Templates from `dir` (every `*.hbs`, named by file stem), the bundled
    /// ones for any name the directory lacks. A missing directory means
    /// bundled templates only.
    pub fn load(dir: Option<&Path>) -> Result<Self, PromptError> {
        let mut sources: BTreeMap<String, (String, String)> = BUNDLED
            .iter()
            .map(|(name, text)| {
                (
                    name.to_string(),
                    (format!("prompts/{name}.hbs (bundled)"), text.to_string()),
                )
            })
            .collect();
        if let Some(dir) = dir.filter(|d| d.is_dir()) {
            let entries = std::fs::read_dir(dir).map_err(|e| PromptError::Read {
                file: dir.to_path_buf(),
                message: e.to_string(),
            })?;
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "hbs"))
                .collect();
            paths.sort();
            for path in paths {
                let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                let text = std::fs::read_to_string(&path).map_err(|e| PromptError::Read {
                    file: path.clone(),
                    message: e.to_string(),
                })?;
                sources.insert(name.to_string(), (path.display().to_string(), text));
            }
        }
        let mut hb = registry();
        for (name, (file, text)) in &sources {
            let template_error = |e: handlebars::TemplateError| PromptError::Template {
                file: PathBuf::from(file),
                message: e.to_string(),
            };
            hb.register_template_string(name, text)
                .map_err(template_error)?;
            hb.register_partial(name, text).map_err(template_error)?;
        }
        let set = Self {
            hb,
            sources: sources
                .into_iter()
                .map(|(name, (file, _))| (name, file))
                .collect(),
        };
        // Every edit is checked now, not at the first incident.
        let sample = sample_context();
        let ask_sample = ask_context("how is p doing?", "2026-01-01T00:00:00Z", 1);
        for (name, ctx) in [
            ("system", &sample),
            ("plan", &sample),
            ("ask_system", &ask_sample),
            ("ask", &ask_sample),
        ] {
            set.hb
                .render(name, ctx)
                .map_err(|e| PromptError::Template {
                    file: PathBuf::from(set.source(name).unwrap_or(name)),
                    message: render_message(&e),
                })?;
        }
        Ok(set)
    }

    /// Where a template came from: its file, or `prompts/NAME.hbs (bundled)`.
    pub fn source(&self, name: &str) -> Option<&str> {
        self.sources.get(name).map(String::as_str)
    }

    /// Renders the plan prompt for an incident. `catalog` supplies the
    /// matching playbooks and allowed actions; `redactor` hides secrets.
    pub fn render_plan(
        &self,
        facts: &IncidentFacts,
        catalog: &Catalog,
        redactor: &Redactor,
    ) -> Result<PlanPrompt, PromptError> {
        let allowed = allowed_actions(catalog, facts);
        let ctx = context(facts, catalog, &allowed, redactor);
        let render = |name: &str| {
            self.hb
                .render(name, &ctx)
                .map(|text| redactor.redact(&text).into_owned())
                .map_err(|e| PromptError::Render {
                    name: name.to_string(),
                    message: render_message(&e),
                })
        };
        let tool_schema = plan_tool_schema(&allowed);
        Ok(PlanPrompt {
            system: render("system")?,
            user: render("plan")?,
            allowed,
            tool_name: PLAN_TOOL_NAME,
            tool_schema,
        })
    }
}

impl PromptSet {
    /// Renders the prompt of a question for the model's tool loop: the
    /// question cleaned of control characters, redacted, and framed as
    /// untrusted data; `now` anchors relative dates.
    pub fn render_ask(
        &self,
        question: &str,
        now: chrono::DateTime<chrono::Utc>,
        redactor: &Redactor,
    ) -> Result<AskPrompt, PromptError> {
        let clean: String = question
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let redacted = redactor.redact(clean.trim()).into_owned();
        let redactions = redacted.matches(crate::redact::REDACTED).count();
        let question = neutralise_question_frame(&redacted);
        let ctx = ask_context(
            &question,
            &now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            redactions,
        );
        let render = |name: &str| {
            self.hb
                .render(name, &ctx)
                .map(|text| redactor.redact(&text).into_owned())
                .map_err(|e| PromptError::Render {
                    name: name.to_string(),
                    message: render_message(&e),
                })
        };
        Ok(AskPrompt {
            system: render("ask_system")?,
            user: render("ask")?,
        })
    }
}

fn ask_context(question: &str, now: &str, redactions: usize) -> Value {
    json!({
        "question": question,
        "now": now,
        "redactions": redactions,
        "max_sentences": ASK_MAX_SENTENCES,
    })
}

/// Removes anything that could close or reopen the question's frame.
fn neutralise_question_frame(text: &str) -> String {
    match Regex::new(r"(?i)<\s*/?\s*untrusted[_\- ]?question[^>]*>") {
        Ok(re) => re.replace_all(text, "[frame tag removed]").into_owned(),
        Err(_) => text.replace('<', "‹"),
    }
}

fn render_message(e: &handlebars::RenderError) -> String {
    e.to_string()
}

fn fmt_num(v: f64) -> String {
    crate::playbooks::fmt_num(v)
}

/// The log excerpt as it goes into a prompt: control characters dropped,
/// secrets redacted, the tail kept, frame tags neutralised.
fn log_context(excerpt: Option<&str>, redactor: &Redactor) -> Value {
    let Some(raw) = excerpt.filter(|s| !s.trim().is_empty()) else {
        return json!({"present": false, "text": "", "truncated": false,
            "shown_bytes": 0, "total_bytes": 0, "redactions": 0});
    };
    let clean: String = raw
        .chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect();
    let redacted = redactor.redact(&clean).into_owned();
    let redactions = redacted.matches(crate::redact::REDACTED).count();
    let mut text = redacted.as_str();
    let truncated = text.len() > LOG_TAIL_BYTES;
    if truncated {
        let mut cut = text.len() - LOG_TAIL_BYTES;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text = &text[cut..];
        // Start at a whole line when there is one.
        if let Some(nl) = text.find('\n') {
            if nl + 1 < text.len() {
                text = &text[nl + 1..];
            }
        }
    }
    let text = neutralise_frame(text.trim_end());
    json!({
        "present": true,
        "shown_bytes": text.len(),
        "text": text,
        "truncated": truncated,
        "total_bytes": raw.len(),
        "redactions": redactions,
    })
}

/// Removes anything that could close or reopen the untrusted-data frame.
fn neutralise_frame(text: &str) -> String {
    match Regex::new(r"(?i)<\s*/?\s*untrusted[_\- ]?log[^>]*>") {
        Ok(re) => re.replace_all(text, "[frame tag removed]").into_owned(),
        Err(_) => text.replace('<', "‹"),
    }
}

/// Longest fact value shown in a prompt outside the log frame.
const MAX_FACT_CHARS: usize = 200;

/// A fact from a CI payload as one short line: commit authors, stage and
/// pipeline names come from outside too, so they cannot add lines (and so
/// instructions) to the prompt, nor grow without bound.
fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > MAX_FACT_CHARS {
        let cut: String = flat.chars().take(MAX_FACT_CHARS).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Up => "up",
        Direction::Down => "down",
    }
}

fn context(
    facts: &IncidentFacts,
    catalog: &Catalog,
    allowed: &[AllowedAction],
    redactor: &Redactor,
) -> Value {
    let metrics: Vec<Value> = facts
        .metrics
        .iter()
        .map(|m| {
            let change = if m.expected.abs() > f64::EPSILON {
                let pct = (m.observed - m.expected) / m.expected.abs() * 100.0;
                format!(
                    "{}{}%",
                    if pct >= 0.0 { "+" } else { "" },
                    fmt_num(pct.round())
                )
            } else {
                "n/a".to_string()
            };
            json!({
                "metric": one_line(&m.metric),
                "observed": fmt_num(m.observed),
                "expected": fmt_num(m.expected),
                "direction": direction_str(m.direction),
                "change": change,
                "attribution_pct": fmt_num((m.attribution * 100.0).round()),
            })
        })
        .collect();
    let matching = catalog.matching(&facts.match_subject());
    let signature = facts.signature();
    // The record of the matching playbooks' fixes on this pipeline, as
    // facts; the reasons people typed are redacted like the log.
    let track_record: Vec<Value> = facts
        .track_record
        .iter()
        .filter(|r| matching.iter().any(|m| m.playbook.id == r.playbook))
        .map(|r| {
            let not_healed_here = r.not_healed_for(&signature);
            json!({
                "fix": one_line(&format!("{}/{}", r.playbook, r.action)),
                "sentence": one_line(&redactor.redact(&r.sentence())),
                "offered": r.offered,
                "healed": r.healed,
                "not_healed": r.not_healed,
                "not_healed_here": not_healed_here,
                "repeated_failure": not_healed_here >= 2,
                "signature": one_line(&signature.describe()),
            })
        })
        .collect();
    let playbooks: Vec<Value> = matching
        .iter()
        .map(|m| {
            json!({
                "id": m.playbook.id,
                "title": m.playbook.title,
                "score": fmt_num(m.score),
                "reasons": m.reasons,
                "body": m.playbook.body,
            })
        })
        .collect();
    let actions: Vec<Value> = allowed
        .iter()
        .map(|a| {
            let params: Vec<Value> = a
                .params
                .iter()
                .map(|p| {
                    let who = match p.setter {
                        ParamSetter::Plan => "plan may choose",
                        ParamSetter::Playbook | ParamSetter::PlaybookOnly => "fixed by the playbook",
                    };
                    json!({
                        "name": p.name,
                        "ty": p.ty,
                        "value": p.value.to_string(),
                        "who": who,
                        "choosable": p.setter == ParamSetter::Plan,
                        "allowed": p.allowed.iter().map(Value::to_string).collect::<Vec<_>>().join(", "),
                    })
                })
                .collect();
            json!({
                "playbook": a.playbook,
                "action": a.action,
                "uses": a.kind.as_str(),
                "description": a.description,
                "risk": a.risk.as_str(),
                "approval": a.approval.describe(),
                "delay": a.delay_s.map(|s| format!("{s}s")),
                "params": params,
            })
        })
        .collect();
    let opt = |v: &Option<String>| v.as_deref().map(one_line);
    let last_normal = facts.last_normal.as_ref().map(|l| {
        json!({
            "run_id": one_line(&l.run_id),
            "commit": opt(&l.commit),
            "finished_at": l.finished_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        })
    });
    json!({
        "incident": {
            "id": one_line(&facts.incident_id),
            "pipeline": one_line(&facts.pipeline),
            "run_id": one_line(&facts.run_id),
            "status": facts.status.as_str(),
            "stage": opt(&facts.stage),
            "commit": opt(&facts.commit),
            "commit_author": opt(&facts.commit_author),
            "attempt": facts.attempt,
            "execution_id": opt(&facts.execution_id),
            "ci": facts.ci.as_str(),
            "source": facts.source.as_str(),
            "grade": fmt_num(facts.grade),
            "log_url": opt(&facts.log_url),
            "run_url": opt(&facts.run_url),
            "last_normal": last_normal,
        },
        "metrics": metrics,
        "log": log_context(facts.log_excerpt.as_deref(), redactor),
        "playbooks": playbooks,
        "track_record": track_record,
        "actions": actions,
        "max_steps": MAX_STEPS,
        "tool_name": PLAN_TOOL_NAME,
    })
}

/// A context with every field present, to test-render edited templates.
fn sample_context() -> Value {
    json!({
        "incident": {
            "id": "1", "pipeline": "p", "run_id": "r", "status": "failed",
            "stage": "Test", "commit": "c", "commit_author": "a", "attempt": 1,
            "execution_id": "e", "ci": "codepipeline", "source": "aws", "grade": "0.5",
            "log_url": "https://example.com/log", "run_url": "https://example.com/run",
            "last_normal": {"run_id": "r0", "commit": "c0", "finished_at": "2026-01-01T00:00:00Z"},
        },
        "metrics": [{"metric": "m", "observed": "2", "expected": "1", "direction": "up",
            "change": "+100%", "attribution_pct": "100"}],
        "log": {"present": true, "text": "line", "truncated": true, "shown_bytes": 4,
            "total_bytes": 8, "redactions": 1},
        "playbooks": [{"id": "p", "title": "t", "score": "1", "reasons": ["r"], "body": "b"}],
        "track_record": [{"fix": "p/a", "sentence": "healed 1 of 1 time on p", "offered": 1,
            "healed": 1, "not_healed": 2, "not_healed_here": 2, "repeated_failure": true,
            "signature": "m up in stage Test"}],
        "actions": [{"playbook": "p", "action": "a", "uses": "shell", "description": "d",
            "risk": "low", "approval": "1 of any approver", "delay": "60s",
            "params": [{"name": "n", "ty": "string", "value": "\"v\"", "who": "w",
                "choosable": true, "allowed": "\"v\""}]}],
        "max_steps": MAX_STEPS,
        "tool_name": PLAN_TOOL_NAME,
    })
}
