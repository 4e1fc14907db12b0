//! [`Asker`]: the one way a question is answered, shared by `pipemedic ask`,
//! `POST /v1/ask` and chat, so the same question gets the same facts on
//! every surface.
//!
//! It always computes the offline answer first (the deterministic parser
//! over the query tools): that answer refuses questions about pipelines
//! the asker cannot see, supplies the structured facts, and is the
//! fallback. With `ask.backend = "bedrock"` a model then answers through
//! the tool loop ([`super::model`]); its checked text replaces the offline
//! text, and its sources are the runs and incidents its tool results
//! held. When the model cannot answer within the limits (or fails), the
//! offline answer is given and says so in [`Answer::fallback`].
//!
//! Read-only: nothing here writes to the store or runs anything.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::answer::{answer_offline, Answer, AskError, Fact, Source, SourceKind};
use super::model::{BedrockAsker, ModelSettings, ToolCall};
use super::tools::QueryTools;
use super::visibility::Visibility;
use crate::config::{AskBackend, Config};
use crate::metrics::Metrics;
use crate::plan::{PromptError, PromptSet, RedactError, Redactor};
use crate::store::Store;

/// Most sources cited by a model answer.
const MAX_SOURCES: usize = 12;

/// Why the asker could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AskSetupError {
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error(transparent)]
    Redact(#[from] RedactError),
}

/// Answers questions from the store, offline or through a model.
#[derive(Clone)]
pub struct Asker {
    store: Store,
    model: Option<BedrockAsker>,
    prompts: Arc<PromptSet>,
    redactor: Arc<Redactor>,
    /// `server.public_url` without a trailing slash, when set.
    public_url: Option<String>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Asker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asker")
            .field("backend", &self.backend())
            .field("model", &self.model)
            .finish()
    }
}

impl Asker {
    /// Builds the asker from the configuration: prompts from
    /// `planner.prompts_dir` (bundled ones where absent), the planner's
    /// redaction patterns, and the model when `ask.backend = "bedrock"` and
    /// a Bedrock client is given.
    pub fn from_config(
        config: &Config,
        store: Store,
        metrics: Arc<Metrics>,
        bedrock: Option<aws_sdk_bedrockruntime::Client>,
    ) -> Result<Self, AskSetupError> {
        let dir = Some(config.planner.prompts_dir.trim())
            .filter(|d| !d.is_empty())
            .map(std::path::PathBuf::from);
        let prompts = PromptSet::load(dir.as_deref())?;
        let redactor = Redactor::new(&config.planner.redact_patterns)?;
        let model = match (config.ask.backend, bedrock) {
            (AskBackend::Bedrock, Some(client)) => Some(BedrockAsker::new(
                client,
                ModelSettings::from_config(config),
                metrics.clone(),
            )),
            _ => None,
        };
        let public_url = Some(config.server.public_url.trim().trim_end_matches('/'))
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        Ok(Self {
            store,
            model,
            prompts: Arc::new(prompts),
            redactor: Arc::new(redactor),
            public_url,
            metrics,
        })
    }

    /// `offline` or `bedrock`.
    pub fn backend(&self) -> &'static str {
        if self.model.is_some() {
            "bedrock"
        } else {
            "offline"
        }
    }

    /// Answers `question` as of `now` for someone who sees `visibility`.
    #[tracing::instrument(name = "ask", skip_all, fields(backend = self.backend()))]
    pub async fn ask(
        &self,
        question: &str,
        now: DateTime<Utc>,
        visibility: Visibility,
    ) -> Result<Answer, AskError> {
        let tools = QueryTools::new(self.store.clone()).with_visibility(visibility);
        let mut offline = answer_offline(&tools, question, now).await?;
        self.link(&mut offline.sources).await;
        // Runs are redacted when stored; this covers rows stored before.
        redact_answer(&self.redactor, &mut offline);
        let Some(model) = &self.model else {
            self.metrics.ask_answered("offline", outcome_of(&offline));
            return Ok(offline);
        };
        if offline.is_refusal() {
            self.metrics.ask_answered("offline", "not_visible");
            return Ok(offline);
        }
        let prompt = match self.prompts.render_ask(question, now, &self.redactor) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "Cannot render the question prompt.");
                return Ok(self.fall_back(
                    offline,
                    "the question prompt could not be rendered",
                    &e.to_string(),
                    Vec::new(),
                    "prompt_error",
                ));
            }
        };
        let run = model.answer(&prompt, &tools, now, &self.redactor).await;
        let names: Vec<String> = run.calls.iter().map(|c| c.name.clone()).collect();
        match run.outcome {
            Ok(text) => {
                let facts = if matches!(offline.intent.as_str(), "unknown" | "ambiguous") {
                    tool_facts(&run.calls)
                } else {
                    offline.facts
                };
                let mut sources = model_sources(&run.calls, &text);
                self.link(&mut sources).await;
                self.metrics.ask_answered("bedrock", "answered");
                Ok(Answer {
                    answer: text,
                    facts,
                    sources,
                    backend: "bedrock".to_string(),
                    fallback: None,
                    tools_used: names,
                    ..offline
                })
            }
            Err(e) => Ok(self.fall_back(offline, &e.note(), &e.to_string(), names, e.label())),
        }
    }

    /// The offline answer in place of the model's: `note` tells people why,
    /// `reason` (in [`Answer::fallback`]) has the details.
    fn fall_back(
        &self,
        mut offline: Answer,
        note: &str,
        reason: &str,
        tools_used: Vec<String>,
        label: &str,
    ) -> Answer {
        self.metrics.ask_answered("bedrock", label);
        offline.answer = format!("(Offline answer: {note}.)\n{}", offline.answer);
        offline.fallback = Some(reason.to_string());
        offline.tools_used = tools_used;
        offline
    }

    /// Links sources: runs to their page in the CI system (the run's
    /// `url`), pipelines to their health under `server.public_url`. A run
    /// that cannot be read stays unlinked.
    async fn link(&self, sources: &mut [Source]) {
        for s in sources.iter_mut().filter(|s| s.url.is_none()) {
            match (s.kind, &self.public_url, s.pipeline.as_deref()) {
                (SourceKind::Pipeline, Some(base), _) => {
                    s.url = Some(format!(
                        "{base}/v1/pipelines/{}/health",
                        urlencoding::encode(&s.id)
                    ));
                }
                (SourceKind::Run, _, Some(pipeline)) => {
                    match self.store.latest_attempt(pipeline, &s.id).await {
                        Ok(run) => s.url = run.and_then(|r| r.run.url),
                        Err(e) => tracing::warn!(error = %e, "Cannot read a cited run's link."),
                    }
                }
                _ => {}
            }
        }
    }
}

fn outcome_of(answer: &Answer) -> &'static str {
    if answer.is_refusal() {
        "not_visible"
    } else {
        "answered"
    }
}

/// Facts of a model answer to a question the parser did not understand:
/// what each successful tool call returned.
fn tool_facts(calls: &[ToolCall]) -> Vec<Fact> {
    calls
        .iter()
        .filter(|c| c.error.is_none())
        .map(|c| Fact {
            name: format!("tool:{}", c.name),
            value: c.result.clone(),
            window: c.input["window"].as_str().map(str::to_string),
            pipeline: c.input["pipeline"].as_str().map(str::to_string),
        })
        .collect()
}

/// The words and numbers of a text, for finding the ids it mentions.
fn tokens(text: &str) -> HashSet<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_' || c == '/' || c == '.'))
        .map(|t| t.trim_matches(|c: char| c == '.' || c == '/'))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The runs, incidents and pipelines a model answer rests on: those its
/// tool results held that the text names, plus the single records of
/// `last_failure`, `get_incident` and `pipeline_health`.
fn model_sources(calls: &[ToolCall], text: &str) -> Vec<Source> {
    let named = tokens(text);
    let mut out: Vec<Source> = Vec::new();
    let mut push = |kind: SourceKind, id: String, pipeline: Option<&str>, url: Option<String>| {
        if out.len() < MAX_SOURCES
            && !out
                .iter()
                .any(|s| s.kind == kind && s.id == id && s.pipeline.as_deref() == pipeline)
        {
            out.push(Source {
                kind,
                id,
                pipeline: pipeline.map(str::to_string),
                url,
            });
        }
    };
    let str_of = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    for call in calls.iter().filter(|c| c.error.is_none()) {
        let pipeline = call.input["pipeline"].as_str();
        let r = &call.result;
        match call.name.as_str() {
            "pipeline_health" | "window_stats" => {
                if let Some(p) = pipeline {
                    push(SourceKind::Pipeline, p.to_string(), Some(p), None);
                }
                if let Some(id) = str_of(&r["last_run"]["run_id"]) {
                    push(SourceKind::Run, id, pipeline, None);
                }
            }
            "rank_pipelines" => {
                for item in r.as_array().into_iter().flatten() {
                    if let Some(p) = item["pipeline"].as_str().filter(|p| named.contains(*p)) {
                        push(SourceKind::Pipeline, p.to_string(), Some(p), None);
                    }
                }
            }
            "list_runs" => {
                for item in r.as_array().into_iter().flatten() {
                    if let Some(id) = str_of(&item["run_id"]).filter(|id| named.contains(id)) {
                        push(SourceKind::Run, id, pipeline, None);
                    }
                }
            }
            "list_incidents" => {
                for item in r.as_array().into_iter().flatten() {
                    if let Some(id) = str_of(&item["id"]).filter(|id| named.contains(id)) {
                        push(SourceKind::Incident, id, item["pipeline"].as_str(), None);
                    }
                }
            }
            "get_incident" => {
                if let Some(id) = str_of(&r["id"]) {
                    let p = r["pipeline"].as_str();
                    push(SourceKind::Incident, id, p, None);
                    if let Some(run) = str_of(&r["last_run_id"]) {
                        push(SourceKind::Run, run, p, None);
                    }
                }
            }
            "last_failure" => {
                if let Some(id) = str_of(&r["summary_run_id"]) {
                    push(
                        SourceKind::Run,
                        id,
                        pipeline,
                        r["url"].as_str().map(str::to_string),
                    );
                }
            }
            _ => {}
        }
    }
    out
}

/// Hides secrets in an answer's text and in the text of its facts.
fn redact_answer(redactor: &Redactor, answer: &mut Answer) {
    fn value(redactor: &Redactor, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let std::borrow::Cow::Owned(hidden) = redactor.redact(s) {
                    *s = hidden;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| value(redactor, i)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|i| value(redactor, i)),
            _ => {}
        }
    }
    if let std::borrow::Cow::Owned(hidden) = redactor.redact(&answer.answer) {
        answer.answer = hidden;
    }
    for fact in &mut answer.facts {
        value(redactor, &mut fact.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(name: &str, input: Value, result: Value) -> ToolCall {
        ToolCall {
            name: name.into(),
            input,
            result,
            error: None,
        }
    }

    #[test]
    fn sources_are_the_records_the_text_rests_on() {
        let calls = [
            call(
                "last_failure",
                json!({"pipeline": "payments"}),
                json!({"summary_run_id": "118", "url": "https://ci/118"}),
            ),
            call(
                "list_runs",
                json!({"pipeline": "payments"}),
                json!([{"run_id": "117"}, {"run_id": "116"}]),
            ),
            call(
                "list_incidents",
                json!({}),
                json!([{"id": 2, "pipeline": "payments"}, {"id": 3, "pipeline": "x"}]),
            ),
        ];
        let sources = model_sources(
            &calls,
            "payments failed in run 118 (also 117); incident #2.",
        );
        let ids: Vec<(&str, SourceKind)> =
            sources.iter().map(|s| (s.id.as_str(), s.kind)).collect();
        assert_eq!(
            ids,
            [
                ("118", SourceKind::Run),
                ("117", SourceKind::Run),
                ("2", SourceKind::Incident)
            ]
        );
        assert_eq!(sources[0].url.as_deref(), Some("https://ci/118"));
    }
}
