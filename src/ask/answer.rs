//! Answers: an [`Intent`] turned into text for a terminal plus structured
//! [`Fact`]s and [`Source`]s that chat adapters can render as Slack blocks
//! or Discord embeds. Every number is stated with its window, and changes
//! get a trend word ("steady", "slower", "worse").
//!
//! Answers are computed only through [`QueryTools`]; nothing here writes.
//! The question text is never echoed back, so an answer cannot carry
//! markup that someone typed into a question.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::intent::{self, Intent, Parsed, RankBy, Window};
use super::tools::{IncidentView, QueryTools, WindowStats};
use crate::store::{Store, StoreError};

/// Why a question could not be answered at all.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("the question is empty")]
    EmptyQuestion,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One number or value of an answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fact {
    /// `success_rate`, `duration_p95_s`, `top`, `run_id`, ...
    pub name: String,
    pub value: Value,
    /// The window the value is about, as people say it ("this week").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// The pipeline the value is about, when an answer covers several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Run,
    Incident,
    Pipeline,
}

/// A record an answer was computed from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    pub kind: SourceKind,
    /// Run id, incident id or pipeline name.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The answer to one question, the same on every surface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// Plain text for a terminal or a chat message.
    pub answer: String,
    pub facts: Vec<Fact>,
    pub sources: Vec<Source>,
    /// `pipeline_health`, `ranking`, ..., `ambiguous` or `unknown`.
    pub intent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Who wrote `answer`: `offline` (the parser) or `bedrock` (a model,
    /// every number checked against its tools' results).
    pub backend: String,
    /// Why the model's answer was not used and the offline answer given
    /// instead (tool-call or token limit, unsupported numbers, an error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// The tools the model called, in order (empty offline).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools_used: Vec<String>,
    /// What the parser understood (for chat surfaces and model tool loops).
    #[serde(skip)]
    pub parsed: Parsed,
}

impl Answer {
    /// The first fact of that name (about `pipeline` when given).
    pub fn fact(&self, name: &str, pipeline: Option<&str>) -> Option<&Value> {
        self.facts
            .iter()
            .find(|f| f.name == name && (pipeline.is_none() || f.pipeline.as_deref() == pipeline))
            .map(|f| &f.value)
    }
}

/// Answers a question offline: parse it against the stored pipelines, then
/// compute the answer from the store as of `now`.
pub async fn answer_question(
    store: &Store,
    question: &str,
    now: DateTime<Utc>,
) -> Result<Answer, AskError> {
    answer_offline(&QueryTools::new(store.clone()), question, now).await
}

/// Answers a question offline with `tools`, which may see only some
/// pipelines: a question about a pipeline (or incident) they cannot see is
/// refused without its data, and lists and rankings hold only visible ones.
pub async fn answer_offline(
    tools: &QueryTools,
    question: &str,
    now: DateTime<Utc>,
) -> Result<Answer, AskError> {
    if question.trim().is_empty() {
        return Err(AskError::EmptyQuestion);
    }
    let visible = tools.pipelines().await?;
    if tools.visibility().is_all() {
        let parsed = intent::parse(question, &visible, now);
        return answer_parsed(tools, parsed, &visible, now).await;
    }
    // Names are recognised among every pipeline, so that a question about
    // another team's pipeline is refused rather than answered about a
    // similarly named visible one.
    let all = tools.all_pipelines().await?;
    let mut parsed = intent::parse(question, &all, now);
    if let Parsed::Ambiguous { candidates } = &parsed {
        if !candidates.iter().any(|c| tools.sees(c)) {
            return Ok(refusal(
                parsed.clone(),
                "None of the pipelines that name fits are visible here.".to_string(),
                None,
            ));
        }
        parsed = intent::parse(question, &visible, now);
    }
    if let Parsed::Intent(intent) = &parsed {
        if let Some(p) = intent.pipeline().filter(|p| !tools.sees(p)) {
            let text = crate::ask::visibility::Visibility::refusal(p);
            return Ok(refusal(parsed.clone(), text, Some(p.to_string())));
        }
    }
    answer_parsed(tools, parsed, &visible, now).await
}

/// The answer to a question about something not visible here: no data.
fn refusal(parsed: Parsed, text: String, pipeline: Option<String>) -> Answer {
    Answer {
        answer: text,
        facts: vec![Fact {
            name: "visible".to_string(),
            value: Value::Bool(false),
            window: None,
            pipeline: pipeline.clone(),
        }],
        sources: Vec::new(),
        intent: "not_visible".to_string(),
        pipeline,
        window: None,
        backend: "offline".to_string(),
        fallback: None,
        tools_used: Vec::new(),
        parsed,
    }
}

impl Answer {
    /// Whether this answer refuses a question about something not visible.
    pub fn is_refusal(&self) -> bool {
        self.intent == "not_visible"
    }
}

/// Computes the answer to an already parsed question.
pub async fn answer_parsed(
    tools: &QueryTools,
    parsed: Parsed,
    known: &[String],
    now: DateTime<Utc>,
) -> Result<Answer, AskError> {
    let mut out = Builder::default();
    let (name, pipeline, window) = match &parsed {
        Parsed::Ambiguous { candidates } => {
            out.line(format!("Did you mean: {}?", candidates.join(", ")));
            out.fact("candidates", candidates.clone(), None);
            ("ambiguous".to_string(), None, None)
        }
        Parsed::Intent(intent) => {
            match intent {
                Intent::PipelineHealth { pipeline, window } => {
                    health(tools, &mut out, pipeline, window, now).await?
                }
                Intent::Ranking { by, window } => ranking(tools, &mut out, *by, window).await?,
                Intent::ChangesSince { window, pipeline } => {
                    changes(tools, &mut out, window, pipeline.as_deref(), known).await?
                }
                Intent::Incidents {
                    open_only,
                    window,
                    pipeline,
                } => incidents(tools, &mut out, *open_only, window, pipeline.as_deref()).await?,
                Intent::IncidentDetail { id } => incident(tools, &mut out, *id).await?,
                Intent::LastFailure { pipeline } => {
                    last_failure(tools, &mut out, pipeline, now).await?
                }
                Intent::Unknown => unknown(&mut out, known),
            }
            let window = match intent {
                Intent::PipelineHealth { window, .. }
                | Intent::Ranking { window, .. }
                | Intent::ChangesSince { window, .. } => Some(window.clone()),
                Intent::Incidents {
                    open_only: false,
                    window,
                    ..
                } => Some(window.clone()),
                _ => None,
            };
            (
                intent.name().to_string(),
                intent.pipeline().map(str::to_string),
                window,
            )
        }
    };
    Ok(Answer {
        answer: out.text.join("\n"),
        facts: out.facts,
        sources: out.sources,
        intent: name,
        pipeline,
        window,
        backend: "offline".to_string(),
        fallback: None,
        tools_used: Vec::new(),
        parsed,
    })
}

#[derive(Default)]
struct Builder {
    text: Vec<String>,
    facts: Vec<Fact>,
    sources: Vec<Source>,
}

impl Builder {
    fn line(&mut self, line: impl Into<String>) {
        self.text.push(line.into());
    }

    fn fact(&mut self, name: &str, value: impl Into<Value>, window: Option<&Window>) {
        self.facts.push(Fact {
            name: name.to_string(),
            value: value.into(),
            window: window.map(|w| w.label.clone()),
            pipeline: None,
        });
    }

    fn fact_of(&mut self, pipeline: &str, name: &str, value: impl Into<Value>, window: &Window) {
        self.facts.push(Fact {
            name: name.to_string(),
            value: value.into(),
            window: Some(window.label.clone()),
            pipeline: Some(pipeline.to_string()),
        });
    }

    fn source(&mut self, kind: SourceKind, id: impl Into<String>, pipeline: Option<&str>) {
        self.sources.push(Source {
            kind,
            id: id.into(),
            pipeline: pipeline.map(str::to_string),
            url: None,
        });
    }
}

/// "1 run", "2 runs".
fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0))
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.1}s"))
}

fn describe(w: &Window) -> String {
    format!(
        "{} ({} → {} UTC)",
        w.label,
        w.from.format("%a %Y-%m-%d %H:%M"),
        w.to.format("%a %Y-%m-%d %H:%M")
    )
}

fn window_facts(out: &mut Builder, s: &WindowStats, w: &Window) {
    out.fact("runs", s.runs, Some(w));
    out.fact("failures", s.failed, Some(w));
    out.fact("success_rate", s.success_rate, Some(w));
    out.fact("duration_p50_s", s.duration_p50_s, Some(w));
    out.fact("duration_p95_s", s.duration_p95_s, Some(w));
    out.fact("flaky_failures", s.flaky_failures, Some(w));
}

async fn health(
    tools: &QueryTools,
    out: &mut Builder,
    pipeline: &str,
    window: &Window,
    now: DateTime<Utc>,
) -> Result<(), AskError> {
    let stats = tools.window_stats(pipeline, window).await?;
    let before = tools.previous_stats(pipeline, window).await?;
    let duration_trend = crate::health::duration_trend(stats.duration_p50_s, before.duration_p50_s);
    let success_trend = crate::health::success_trend(stats.success_rate, before.success_rate);
    out.line(format!(
        "{pipeline}, {}: {} runs, {} success ({} failed, {success_trend} against {}), p50 {}, p95 {} ({duration_trend}).",
        describe(window),
        stats.runs,
        pct(stats.success_rate),
        stats.failed,
        before_label(window),
        secs(stats.duration_p50_s),
        secs(stats.duration_p95_s),
    ));
    if stats.flaky_failures > 0 {
        out.line(format!(
            "{} of {} failures passed on retry (flaky).",
            stats.flaky_failures, stats.failed
        ));
    }
    window_facts(out, &stats, window);
    out.fact("success_trend", success_trend, Some(window));
    out.fact("duration_trend", duration_trend, Some(window));
    out.source(SourceKind::Pipeline, pipeline, Some(pipeline));

    if let Some(h) = tools.health(pipeline, now).await? {
        if !window.is_health_week(now) {
            out.line(format!(
                "Last 7 days (as `pipemedic health`): {} runs, {} success ({}), p50 {}, p95 {} ({}).",
                h.runs_7d,
                pct(h.success_rate_7d),
                h.success_trend,
                secs(h.duration_p50_s_7d),
                secs(h.duration_p95_s_7d),
                h.duration_trend,
            ));
        }
        let week = Window::last_days(7, now);
        let month = Window::last_days(30, now);
        out.fact("runs_7d", h.runs_7d, Some(&week));
        out.fact("runs_30d", h.runs_30d, Some(&month));
        out.fact("success_rate_7d", h.success_rate_7d, Some(&week));
        out.fact("success_rate_30d", h.success_rate_30d, Some(&month));
        out.fact("duration_p50_s_7d", h.duration_p50_s_7d, Some(&week));
        out.fact("duration_p95_s_7d", h.duration_p95_s_7d, Some(&week));
        out.fact("open_incidents", h.open_incidents, None);
        if let Some(last) = &h.last_run {
            out.line(format!(
                "Last run {} {} at {}. Open incidents: {}.",
                last.run_id,
                last.status,
                last.finished_at.format("%Y-%m-%d %H:%M UTC"),
                h.open_incidents
            ));
            out.fact("last_run_id", last.run_id.clone(), None);
            out.fact("last_run_status", last.status.as_str(), None);
            out.source(SourceKind::Run, last.run_id.clone(), Some(pipeline));
        }
    }
    Ok(())
}

fn before_label(w: &Window) -> String {
    w.previous().label
}

async fn ranking(
    tools: &QueryTools,
    out: &mut Builder,
    by: RankBy,
    window: &Window,
) -> Result<(), AskError> {
    let ranked = tools.ranking(by, window).await?;
    let title = match by {
        RankBy::Slowest => "Slowest pipelines by median duration",
        RankBy::Flakiest => "Flakiest pipelines (failures that passed on retry)",
        RankBy::MostFailing => "Pipelines with the most failures",
        RankBy::SlowedDown => "Pipelines that slowed down most (median against the window before)",
    };
    out.line(format!("{title}, {}:", describe(window)));
    out.fact("ranked_by", by.as_str(), Some(window));
    if ranked.is_empty() {
        out.line("  no runs in this window.");
        return Ok(());
    }
    let width = ranked.iter().map(|r| r.pipeline.len()).max().unwrap_or(0);
    for (i, r) in ranked.iter().enumerate() {
        let s = &r.stats;
        let measure = match by {
            RankBy::Slowest => format!(
                "p50 {}, p95 {}",
                secs(s.duration_p50_s),
                secs(s.duration_p95_s)
            ),
            RankBy::SlowedDown => format!(
                "p50 {} (was {}, {})",
                secs(s.duration_p50_s),
                secs(r.previous_p50_s),
                r.duration_p50_change
                    .map_or("no earlier runs".to_string(), |c| {
                        format!(
                            "{:+.1}%, {}",
                            c * 100.0,
                            crate::health::duration_trend(s.duration_p50_s, r.previous_p50_s)
                        )
                    })
            ),
            RankBy::Flakiest => format!(
                "{} of {} failures passed on retry, mean test failure rate {}",
                s.flaky_failures,
                s.failed,
                pct(r.test_failure_rate_mean)
            ),
            RankBy::MostFailing => format!("{} failed, {} success", s.failed, pct(s.success_rate)),
        };
        out.line(format!(
            "  {}. {:<width$}  {measure}  ({} runs)",
            i + 1,
            r.pipeline,
            s.runs
        ));
        let p = r.pipeline.as_str();
        out.fact_of(p, "runs", s.runs, window);
        out.fact_of(p, "failures", s.failed, window);
        out.fact_of(p, "success_rate", s.success_rate, window);
        out.fact_of(p, "duration_p50_s", s.duration_p50_s, window);
        match by {
            RankBy::SlowedDown => {
                out.fact_of(p, "duration_p50_s_before", r.previous_p50_s, window);
                out.fact_of(p, "duration_p50_change", r.duration_p50_change, window);
            }
            RankBy::Flakiest => {
                out.fact_of(p, "flaky_failures", s.flaky_failures, window);
                out.fact_of(p, "flakiness", s.flakiness(), window);
                out.fact_of(
                    p,
                    "test_failure_rate_mean",
                    r.test_failure_rate_mean,
                    window,
                );
            }
            _ => {}
        }
        out.source(SourceKind::Pipeline, p, Some(p));
    }
    out.fact("top", ranked[0].pipeline.clone(), Some(window));
    out.fact(
        "ranked",
        ranked
            .iter()
            .map(|r| r.pipeline.clone())
            .collect::<Vec<_>>(),
        Some(window),
    );
    Ok(())
}

async fn changes(
    tools: &QueryTools,
    out: &mut Builder,
    window: &Window,
    pipeline: Option<&str>,
    known: &[String],
) -> Result<(), AskError> {
    let names: Vec<String> = match pipeline {
        Some(p) => vec![p.to_string()],
        None => known.to_vec(),
    };
    let opened = tools.incidents(window, pipeline, false).await?;
    out.line(format!(
        "Changes {} against {}:",
        describe(window),
        before_label(window)
    ));
    for name in &names {
        let now = tools.window_stats(name, window).await?;
        let before = tools.previous_stats(name, window).await?;
        if now.runs == 0 && before.runs == 0 {
            continue;
        }
        let mine = opened.iter().filter(|a| &a.pipeline == name).count();
        out.line(format!(
            "  {name}: {} runs ({} before), {} commits; success {} (was {}, {}); p50 {} (was {}, {}){}",
            now.runs,
            before.runs,
            now.commits,
            pct(now.success_rate),
            pct(before.success_rate),
            crate::health::success_trend(now.success_rate, before.success_rate),
            secs(now.duration_p50_s),
            secs(before.duration_p50_s),
            crate::health::duration_trend(now.duration_p50_s, before.duration_p50_s),
            if mine > 0 {
                format!("; {} opened", count(mine as u64, "incident", "incidents"))
            } else {
                String::new()
            }
        ));
        if pipeline.is_some() {
            window_facts(out, &now, window);
            out.fact("runs_before", before.runs, Some(window));
            out.fact("success_rate_before", before.success_rate, Some(window));
            out.fact("duration_p50_s_before", before.duration_p50_s, Some(window));
            out.fact("commits", now.commits, Some(window));
        } else {
            out.fact_of(name, "runs", now.runs, window);
            out.fact_of(name, "runs_before", before.runs, window);
            out.fact_of(name, "success_rate", now.success_rate, window);
            out.fact_of(name, "success_rate_before", before.success_rate, window);
            out.fact_of(name, "duration_p50_s", now.duration_p50_s, window);
            out.fact_of(name, "duration_p50_s_before", before.duration_p50_s, window);
            out.fact_of(name, "commits", now.commits, window);
        }
        out.source(SourceKind::Pipeline, name.clone(), Some(name));
    }
    out.fact("incidents_opened", opened.len(), Some(window));
    for i in &opened {
        out.source(SourceKind::Incident, i.id.to_string(), Some(&i.pipeline));
    }
    Ok(())
}

fn incident_line(i: &IncidentView) -> String {
    let top = i
        .deviations
        .first()
        .map(|d| format!(", {} off", super::tools::clean_text(&d.metric, 64)))
        .unwrap_or_default();
    let state = match i.resolved_at {
        Some(resolved) if !i.open => format!(
            "opened {}, {} {}",
            i.opened_at.format("%Y-%m-%d %H:%M UTC"),
            i.status.label(),
            resolved.format("%Y-%m-%d %H:%M UTC")
        ),
        _ if !i.open => format!(
            "opened {}, {}",
            i.opened_at.format("%Y-%m-%d %H:%M UTC"),
            i.status.label()
        ),
        _ => format!(
            "{} since {}",
            i.status.label(),
            i.opened_at.format("%Y-%m-%d %H:%M UTC")
        ),
    };
    format!(
        "  #{} {} {state}: {}, grade {:.2}{top}",
        i.id,
        i.pipeline,
        count(
            u64::try_from(i.run_count).unwrap_or(0),
            "abnormal run",
            "abnormal runs"
        ),
        i.max_grade
    )
}

async fn incidents(
    tools: &QueryTools,
    out: &mut Builder,
    open_only: bool,
    window: &Window,
    pipeline: Option<&str>,
) -> Result<(), AskError> {
    let list = tools.incidents(window, pipeline, open_only).await?;
    let scope = pipeline.map_or(String::new(), |p| format!(" on {p}"));
    let open = list.iter().filter(|i| i.open).count();
    if open_only {
        out.line(match list.len() {
            0 => format!("No open incidents{scope}."),
            n => format!(
                "{}{scope}:",
                count(n as u64, "open incident", "open incidents")
            ),
        });
        out.fact("incidents", list.len(), None);
    } else {
        out.line(match list.len() {
            0 => format!("No incidents{scope} opened {}.", describe(window)),
            n => format!(
                "{}{scope} opened {}, {open} still open:",
                count(n as u64, "incident", "incidents"),
                describe(window)
            ),
        });
        out.fact("incidents", list.len(), Some(window));
    }
    out.fact("open", open, None);
    out.fact("ids", list.iter().map(|i| i.id).collect::<Vec<_>>(), None);
    for i in &list {
        out.line(incident_line(i));
        out.source(SourceKind::Incident, i.id.to_string(), Some(&i.pipeline));
    }
    Ok(())
}

async fn incident(tools: &QueryTools, out: &mut Builder, id: i64) -> Result<(), AskError> {
    let Some(a) = tools.incident(id).await? else {
        out.line(format!("There is no incident #{id}."));
        out.fact("found", false, None);
        return Ok(());
    };
    if !tools.sees(&a.pipeline) {
        out.line(format!("Incident #{id} is not visible here."));
        out.fact("visible", false, None);
        return Ok(());
    }
    out.line(format!(
        "Incident #{} on {}: {}, opened {}{}; {} (latest: run {}), highest grade {:.2}.",
        a.id,
        a.pipeline,
        a.status.label(),
        a.opened_at.format("%Y-%m-%d %H:%M UTC"),
        a.resolved_at
            .map(|c| format!(", {} {}", a.status.label(), c.format("%Y-%m-%d %H:%M UTC")))
            .unwrap_or_default(),
        count(
            u64::try_from(a.run_count).unwrap_or(0),
            "abnormal run",
            "abnormal runs"
        ),
        a.last_run_id,
        a.max_grade
    ));
    for d in a.deviations.iter().take(3) {
        out.line(format!(
            "  {}: {:.4} against an expected {:.4}",
            super::tools::clean_text(&d.metric, 64),
            d.observed,
            d.expected
        ));
    }
    out.fact("found", true, None);
    out.fact("id", a.id, None);
    out.fact("pipeline", a.pipeline.clone(), None);
    out.fact("status", a.status.as_str(), None);
    out.fact("runs", a.run_count, None);
    out.fact("max_grade", a.max_grade, None);
    out.fact("opened_at", a.opened_at.to_rfc3339(), None);
    if let Some(d) = a.deviations.first() {
        out.fact("top_metric", d.metric.clone(), None);
    }
    out.source(SourceKind::Incident, a.id.to_string(), Some(&a.pipeline));
    out.source(SourceKind::Run, a.last_run_id.clone(), Some(&a.pipeline));
    Ok(())
}

async fn last_failure(
    tools: &QueryTools,
    out: &mut Builder,
    pipeline: &str,
    now: DateTime<Utc>,
) -> Result<(), AskError> {
    let Some(f) = tools.last_failure(pipeline, now).await? else {
        out.line(format!("{pipeline} has no failed runs stored."));
        out.fact("found", false, None);
        return Ok(());
    };
    let ago = now - f.finished_at;
    let ago = if ago.num_hours() >= 48 {
        format!("{} days ago", ago.num_days())
    } else if ago.num_minutes() >= 120 {
        format!("{} hours ago", ago.num_hours())
    } else {
        format!("{} minutes ago", ago.num_minutes().max(0))
    };
    out.line(format!(
        "{pipeline} last failed in run {} (attempt {}) at {} ({ago}){}{}.",
        f.summary_run_id,
        f.attempt,
        f.finished_at.format("%Y-%m-%d %H:%M UTC"),
        f.stage
            .as_ref()
            .map(|s| format!(", stage {s}"))
            .unwrap_or_default(),
        f.commit
            .as_ref()
            .map(|c| format!(
                ", commit {}{}",
                super::tools::clean_text(c, 64),
                f.commit_message
                    .as_ref()
                    .map(|m| format!(" \"{m}\""))
                    .unwrap_or_default()
            ))
            .unwrap_or_default(),
    ));
    out.line(format!("Cause: {}", f.cause));
    if f.retried_green {
        out.line("A retry of the same run succeeded: likely flaky.");
    }
    out.fact("found", true, None);
    out.fact("run_id", f.summary_run_id.clone(), None);
    out.fact("attempt", f.attempt, None);
    out.fact("finished_at", f.finished_at.to_rfc3339(), None);
    out.fact("stage", f.stage.clone(), None);
    out.fact("commit", f.commit.clone(), None);
    out.fact("cause", f.cause.clone(), None);
    out.fact("retried_green", f.retried_green, None);
    out.sources.push(Source {
        kind: SourceKind::Run,
        id: f.summary_run_id.clone(),
        pipeline: Some(pipeline.to_string()),
        url: f.url.clone(),
    });
    Ok(())
}

/// What the offline parser can answer, for questions it cannot.
pub const CAN_ANSWER: [&str; 6] = [
    "how is PIPELINE doing [this week | since Monday | last 30 days]?",
    "which pipelines are slowest / flakiest / failing most / got slower?",
    "what changed since DATE [on PIPELINE]?",
    "any open incidents? recent incidents? incident #ID",
    "why did PIPELINE fail? (its last failure and cause)",
    "windows: today, yesterday, last night, this week, last week, since Monday, since 2026-11-01, past 2 weeks, last 24h",
];

fn unknown(out: &mut Builder, known: &[String]) {
    out.line("I can't answer that offline. I can answer:");
    for line in CAN_ANSWER {
        out.line(format!("  - {line}"));
    }
    if known.is_empty() {
        out.line("No pipelines are stored yet.");
    } else {
        const SHOWN: usize = 20;
        let mut names = known
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if known.len() > SHOWN {
            names.push_str(&format!(" and {} more", known.len() - SHOWN));
        }
        out.line(format!("Pipelines: {names}."));
    }
    out.fact("can_answer", CAN_ANSWER.to_vec(), None);
}

/// Renders an answer for a terminal: the text, then its sources.
pub fn render_text(answer: &Answer) -> String {
    let mut s = answer.answer.clone();
    s.push('\n');
    let runs: Vec<String> = answer
        .sources
        .iter()
        .filter(|s| s.kind != SourceKind::Pipeline)
        .map(|s| {
            let kind = match s.kind {
                SourceKind::Run => "run",
                SourceKind::Incident => "incident",
                SourceKind::Pipeline => "pipeline",
            };
            let mut line = format!("{kind} {}", s.id);
            if let Some(p) = &s.pipeline {
                line.push_str(&format!(" ({p})"));
            }
            if let Some(u) = &s.url {
                line.push_str(&format!(" {u}"));
            }
            line
        })
        .collect();
    if !runs.is_empty() {
        s.push_str(&format!("Sources: {}\n", runs.join("; ")));
    }
    s
}
