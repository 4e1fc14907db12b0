//! [`QueryTools`]: the read-only questions pipemedic can put to its store —
//! pipeline health over a window, rankings, runs, incidents and the last
//! failure of a pipeline. The offline answerer calls these methods, and a
//! model's tool loop calls the same ones by name through
//! [`QueryTools::call`] (the list is [`TOOLS`]).
//!
//! Nothing here writes: every method reads through [`Store`] and computes.
//! Window numbers use the definitions of [`crate::health`] (final runs only;
//! success = succeeded / (succeeded + failed); linear-interpolated
//! percentiles of succeeded and failed durations), so the rolling 7-day
//! window gives exactly the numbers of `pipemedic health`.
//! Text taken from runs (log excerpts, stage names) is untrusted: it is
//! cleaned of control characters and shortened before it is returned.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::intent::{RankBy, Window};
use super::visibility::Visibility;
use crate::domain::{Incident, IncidentStatus, Run, RunStatus, Verdict};
use crate::health::{self, PipelineHealth};
use crate::store::{RunSummary, Store, StoreError};

/// Longest cause text returned from a log excerpt.
const MAX_CAUSE_CHARS: usize = 240;

/// What a window of one pipeline's runs looks like.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowStats {
    pub pipeline: String,
    /// Final runs (every attempt counts as a run, as in `pipemedic health`).
    pub runs: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub success_rate: Option<f64>,
    pub duration_p50_s: Option<f64>,
    pub duration_p95_s: Option<f64>,
    /// Failed runs whose later attempt of the same run succeeded.
    pub flaky_failures: u64,
    /// Distinct commits built.
    pub commits: u64,
}

impl WindowStats {
    /// Share of failed runs that a retry turned green.
    pub fn flakiness(&self) -> Option<f64> {
        (self.failed > 0).then(|| health::round4(self.flaky_failures as f64 / self.failed as f64))
    }
}

/// One pipeline's place in a ranking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    pub pipeline: String,
    pub stats: WindowStats,
    /// The median duration of the window of the same length before.
    pub previous_p50_s: Option<f64>,
    /// Relative change of the median duration against the window before.
    pub duration_p50_change: Option<f64>,
    /// Mean test failure rate over the window.
    pub test_failure_rate_mean: Option<f64>,
}

/// The latest failed run of a pipeline and what is known of its cause.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureReport {
    pub summary_run_id: String,
    pub attempt: i64,
    pub finished_at: DateTime<Utc>,
    pub stage: Option<String>,
    pub commit: Option<String>,
    pub commit_message: Option<String>,
    /// The likeliest cause line: a log line that names an error, the
    /// deviations detection found, or the failed stage.
    pub cause: String,
    pub url: Option<String>,
    /// A later attempt of the same run succeeded.
    pub retried_green: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// Read-only queries over the store, limited to the pipelines the asker
/// may see ([`Visibility`]).
#[derive(Debug, Clone)]
pub struct QueryTools {
    store: Store,
    visibility: Visibility,
}

/// The end bound for a store query of a window whose end is included.
fn end(window: &Window) -> DateTime<Utc> {
    window.to + Duration::milliseconds(1)
}

fn stats_of(pipeline: &str, runs: &[RunSummary]) -> WindowStats {
    let base = health::window_stats(runs.iter());
    let finals: Vec<&RunSummary> = runs.iter().filter(|r| r.status.is_final()).collect();
    let retried_green: HashSet<(&str, i64)> = finals
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .filter(|f| {
            finals.iter().any(|r| {
                r.run_id == f.run_id && r.attempt > f.attempt && r.status == RunStatus::Succeeded
            })
        })
        .map(|f| (f.run_id.as_str(), f.attempt))
        .collect();
    let commits: BTreeSet<&str> = finals.iter().filter_map(|r| r.commit.as_deref()).collect();
    WindowStats {
        pipeline: pipeline.to_string(),
        runs: base.runs,
        succeeded: finals
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count() as u64,
        failed: finals
            .iter()
            .filter(|r| r.status == RunStatus::Failed)
            .count() as u64,
        success_rate: base.success_rate,
        duration_p50_s: health::percentile(&base.durations, 0.5).map(health::round1),
        duration_p95_s: health::percentile(&base.durations, 0.95).map(health::round1),
        flaky_failures: retried_green.len() as u64,
        commits: commits.len() as u64,
    }
}

/// Removes control characters and keeps at most `max` characters.
pub fn clean_text(raw: &str, max: usize) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.chars().count() <= max {
        trimmed.to_string()
    } else {
        let mut s: String = trimmed.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The log line most likely to say why a run failed: the last one naming
/// an error, else the last non-empty one.
fn cause_line(log: &str) -> Option<String> {
    const MARKERS: [&str; 6] = ["error", "fail", "exception", "panic", "fatal", "refused"];
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let pick = lines
        .iter()
        .rev()
        .find(|l| {
            let lower = l.to_lowercase();
            MARKERS.iter().any(|m| lower.contains(m))
        })
        .or(lines.last())?;
    Some(clean_text(pick, MAX_CAUSE_CHARS))
}

impl QueryTools {
    /// Tools that see every pipeline.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            visibility: Visibility::All,
        }
    }

    /// The same tools, seeing only what `visibility` allows.
    pub fn with_visibility(mut self, visibility: Visibility) -> Self {
        self.visibility = visibility;
        self
    }

    pub fn visibility(&self) -> &Visibility {
        &self.visibility
    }

    /// Whether `pipeline` may be shown to this asker.
    pub fn sees(&self, pipeline: &str) -> bool {
        self.visibility.sees(pipeline)
    }

    /// Every pipeline with stored runs, sorted (every one, visible or not:
    /// for recognising names in questions).
    pub async fn all_pipelines(&self) -> Result<Vec<String>, StoreError> {
        self.store.pipelines().await
    }

    /// Every visible pipeline with stored runs, sorted.
    pub async fn pipelines(&self) -> Result<Vec<String>, StoreError> {
        let all = self.store.pipelines().await?;
        Ok(all.into_iter().filter(|p| self.sees(p)).collect())
    }

    /// The `pipemedic health` summary of a pipeline at `now`, with its
    /// incidents not yet resolved or dismissed. `None` without runs.
    pub async fn health(
        &self,
        pipeline: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PipelineHealth>, StoreError> {
        let open = self.store.count_active_incidents(pipeline).await?;
        health::pipeline_health(&self.store, pipeline, now, open).await
    }

    /// Runs of a pipeline in a window (both ends included), oldest first,
    /// optionally only those with one status.
    pub async fn runs(
        &self,
        pipeline: &str,
        window: &Window,
        status: Option<RunStatus>,
    ) -> Result<Vec<RunSummary>, StoreError> {
        let runs = self
            .store
            .run_summaries(pipeline, window.from, end(window))
            .await?;
        Ok(runs
            .into_iter()
            .filter(|r| status.is_none_or(|s| r.status == s))
            .collect())
    }

    /// The numbers of one pipeline over a window.
    pub async fn window_stats(
        &self,
        pipeline: &str,
        window: &Window,
    ) -> Result<WindowStats, StoreError> {
        let runs = self.runs(pipeline, window, None).await?;
        Ok(stats_of(pipeline, &runs))
    }

    /// The numbers of the window of the same length just before `window`.
    pub async fn previous_stats(
        &self,
        pipeline: &str,
        window: &Window,
    ) -> Result<WindowStats, StoreError> {
        let previous = window.previous();
        let runs = self
            .store
            .run_summaries(pipeline, previous.from, previous.to)
            .await?;
        Ok(stats_of(pipeline, &runs))
    }

    /// Every pipeline with runs in the window, best first by `by`; ties go
    /// to the lower success rate, then the name.
    pub async fn ranking(&self, by: RankBy, window: &Window) -> Result<Vec<Ranked>, StoreError> {
        let mut ranked = Vec::new();
        for pipeline in self.pipelines().await? {
            let stats = self.window_stats(&pipeline, window).await?;
            if stats.runs == 0 {
                continue;
            }
            let (previous_p50_s, test_failure_rate_mean) = match by {
                RankBy::SlowedDown => (
                    self.previous_stats(&pipeline, window).await?.duration_p50_s,
                    None,
                ),
                RankBy::Flakiest => {
                    let samples = self
                        .store
                        .samples(&pipeline, "test_failure_rate", window.from, end(window))
                        .await?;
                    let mean = (!samples.is_empty()).then(|| {
                        samples.iter().map(|(_, v)| v).sum::<f64>() / samples.len() as f64
                    });
                    (None, mean.map(|m| (m * 10_000.0).round() / 10_000.0))
                }
                _ => (None, None),
            };
            let duration_p50_change = match (stats.duration_p50_s, previous_p50_s) {
                (Some(now), Some(before)) if before > 0.0 => {
                    Some(health::round4(now / before - 1.0))
                }
                _ => None,
            };
            ranked.push(Ranked {
                pipeline,
                stats,
                previous_p50_s,
                duration_p50_change,
                test_failure_rate_mean,
            });
        }
        let key = |r: &Ranked| -> (f64, f64) {
            let minus = |v: Option<f64>| -v.unwrap_or(f64::NEG_INFINITY);
            match by {
                RankBy::Slowest => (minus(r.stats.duration_p50_s), 0.0),
                RankBy::SlowedDown => (minus(r.duration_p50_change), 0.0),
                RankBy::Flakiest => (
                    -(r.stats.flaky_failures as f64),
                    minus(r.test_failure_rate_mean),
                ),
                RankBy::MostFailing => (-(r.stats.failed as f64), 0.0),
            }
        };
        ranked.sort_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            ka.0.total_cmp(&kb.0)
                .then(ka.1.total_cmp(&kb.1))
                .then(
                    a.stats
                        .success_rate
                        .unwrap_or(1.0)
                        .total_cmp(&b.stats.success_rate.unwrap_or(1.0)),
                )
                .then(a.pipeline.cmp(&b.pipeline))
        });
        Ok(ranked)
    }

    /// Incidents (what chat alerts about), newest first: every one not yet
    /// resolved or dismissed when `open_only`, else those opened inside the
    /// window.
    pub async fn incidents(
        &self,
        window: &Window,
        pipeline: Option<&str>,
        open_only: bool,
    ) -> Result<Vec<IncidentView>, StoreError> {
        let all = if open_only {
            self.store.incidents(true, pipeline, MAX_LISTED).await?
        } else {
            self.store
                .incidents_opened_between(window.from, window.to, pipeline)
                .await?
        };
        Ok(all
            .iter()
            .filter(|i| self.sees(&i.pipeline))
            .map(IncidentView::of)
            .collect())
    }

    /// One incident by the id chat shows ("Incident #7").
    pub async fn incident(&self, id: i64) -> Result<Option<IncidentView>, StoreError> {
        Ok(self
            .store
            .incident(id)
            .await?
            .as_ref()
            .map(IncidentView::of))
    }

    /// The latest failed run of a pipeline at or before `now`, with its
    /// stage, commit and cause.
    pub async fn last_failure(
        &self,
        pipeline: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<FailureReport>, StoreError> {
        let upto = now + Duration::milliseconds(1);
        let mut runs = self
            .store
            .run_summaries(pipeline, now - Duration::days(30), upto)
            .await?;
        if !runs.iter().any(|r| r.status == RunStatus::Failed) {
            runs = self
                .store
                .run_summaries(pipeline, DateTime::<Utc>::UNIX_EPOCH, upto)
                .await?;
        }
        let Some(failed) = runs
            .iter()
            .rev()
            .find(|r| r.status == RunStatus::Failed)
            .cloned()
        else {
            return Ok(None);
        };
        let retried_green = runs.iter().any(|r| {
            r.run_id == failed.run_id
                && r.attempt > failed.attempt
                && r.status == RunStatus::Succeeded
        });
        let attempt = u32::try_from(failed.attempt).unwrap_or(1);
        let stored = self
            .store
            .get_run(pipeline, &failed.run_id, attempt)
            .await?;
        let verdict = match &stored {
            Some(s) => self.store.verdict_of(s.pk).await?,
            None => None,
        };
        let run: Option<&Run> = stored.as_ref().map(|s| &s.run);
        let mut causes = Vec::new();
        if let Some(line) = run
            .and_then(|r| r.log_excerpt.as_deref())
            .and_then(cause_line)
        {
            causes.push(line);
        }
        if let Some(v) = verdict.as_ref().filter(|v| v.is_anomalous()) {
            for d in v.deviations.iter().take(3) {
                causes.push(format!(
                    "{} {} (observed {:.4}, expected {:.4})",
                    clean_text(&d.metric, 64),
                    match d.direction {
                        crate::domain::Direction::Up => "up",
                        crate::domain::Direction::Down => "down",
                    },
                    d.observed,
                    d.expected
                ));
            }
        }
        let stage = failed.stage.as_deref().map(|s| clean_text(s, 64));
        if causes.is_empty() {
            causes.push(match &stage {
                Some(stage) => format!("failed in stage {stage}; no log excerpt stored"),
                None => "no log excerpt or stage stored".to_string(),
            });
        }
        Ok(Some(FailureReport {
            summary_run_id: failed.run_id.clone(),
            attempt: failed.attempt,
            finished_at: failed.event_time,
            stage,
            commit: failed.commit.clone(),
            commit_message: run
                .and_then(|r| r.commit_message.as_deref())
                .map(|m| clean_text(m.lines().next().unwrap_or(""), 120)),
            cause: causes.join("; "),
            url: run.and_then(|r| r.url.clone().or_else(|| r.log_url.clone())),
            retried_green,
            verdict,
        }))
    }
}

/// Why a tool call by name failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("no tool named {0:?}")]
    UnknownTool(String),
    #[error("bad arguments for {tool}: {message}")]
    BadArguments { tool: String, message: String },
    #[error("`{0}` is not visible here")]
    NotVisible(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The tools a model may call, by name, with what their arguments are.
/// Every tool only reads. `window` is a phrase such as "this week" or
/// "since 2026-11-01" (default: the last 7 days).
pub const TOOLS: [(&str, &str); 8] = [
    ("list_pipelines", "{}"),
    ("pipeline_health", r#"{"pipeline": string}"#),
    ("window_stats", r#"{"pipeline": string, "window"?: string}"#),
    (
        "rank_pipelines",
        r#"{"by": "slowest"|"flakiest"|"most_failing"|"slowed_down", "window"?: string}"#,
    ),
    (
        "list_runs",
        r#"{"pipeline": string, "window"?: string, "status"?: "succeeded"|"failed"|"cancelled"|"running"}"#,
    ),
    (
        "list_incidents",
        r#"{"open_only"?: bool, "window"?: string, "pipeline"?: string}"#,
    ),
    ("get_incident", r#"{"id": integer}"#),
    ("last_failure", r#"{"pipeline": string}"#),
];

fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

impl QueryTools {
    /// Calls one tool of [`TOOLS`] by name with JSON arguments, as a model's
    /// tool loop does, and returns its result as JSON.
    pub async fn call(
        &self,
        tool: &str,
        args: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value, ToolError> {
        let bad = |message: &str| ToolError::BadArguments {
            tool: tool.to_string(),
            message: message.to_string(),
        };
        let text = |key: &str| args.get(key).and_then(serde_json::Value::as_str);
        if let Some(p) = text("pipeline") {
            if !self.sees(p) {
                return Err(ToolError::NotVisible(clean_text(p, 120)));
            }
        }
        let pipeline =
            || text("pipeline").ok_or_else(|| bad("\"pipeline\" (a string) is required"));
        let window = || match text("window") {
            None => Ok(Window::last_days(7, now)),
            Some(phrase) => super::intent::parse_window_text(phrase, now)
                .ok_or_else(|| bad("\"window\" is not a time phrase this parser reads")),
        };
        Ok(match tool {
            "list_pipelines" => to_json(&self.pipelines().await?),
            "pipeline_health" => to_json(&self.health(pipeline()?, now).await?),
            "window_stats" => to_json(&self.window_stats(pipeline()?, &window()?).await?),
            "rank_pipelines" => {
                let by = match text("by") {
                    Some("slowest") => RankBy::Slowest,
                    Some("flakiest") => RankBy::Flakiest,
                    Some("most_failing") => RankBy::MostFailing,
                    Some("slowed_down") => RankBy::SlowedDown,
                    _ => {
                        return Err(bad(
                            "\"by\" must be slowest, flakiest, most_failing or slowed_down",
                        ))
                    }
                };
                to_json(&self.ranking(by, &window()?).await?)
            }
            "list_runs" => {
                let status = match text("status") {
                    None => None,
                    Some(s) => {
                        Some(RunStatus::parse_loose(s).ok_or_else(|| bad("unknown \"status\""))?)
                    }
                };
                let runs = self.runs(pipeline()?, &window()?, status).await?;
                serde_json::Value::Array(
                    runs.iter()
                        .map(|r| {
                            serde_json::json!({
                                "run_id": r.run_id, "attempt": r.attempt, "status": r.status,
                                "event_time": r.event_time, "duration_s": r.duration_s,
                                "stage": r.stage, "commit": r.commit,
                            })
                        })
                        .collect(),
                )
            }
            "list_incidents" => {
                let open_only = args
                    .get("open_only")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                to_json(
                    &self
                        .incidents(&window()?, text("pipeline"), open_only)
                        .await?,
                )
            }
            "get_incident" => {
                let id = args
                    .get("id")
                    .and_then(serde_json::Value::as_i64)
                    .ok_or_else(|| bad("\"id\" (an integer) is required"))?;
                self.incident_story(id).await?
            }
            "last_failure" => to_json(&self.last_failure(pipeline()?, now).await?),
            other => return Err(ToolError::UnknownTool(other.to_string())),
        })
    }
}

impl QueryTools {
    /// One incident with what followed it: its plans, their approval
    /// requests with votes, and the executions of their steps. `null` when
    /// there is no such incident; [`ToolError::NotVisible`] when its
    /// pipeline is not visible.
    pub async fn incident_story(&self, id: i64) -> Result<serde_json::Value, ToolError> {
        use serde_json::json;
        let Some(incident) = self.store.incident(id).await? else {
            return Ok(serde_json::Value::Null);
        };
        if !self.sees(&incident.pipeline) {
            return Err(ToolError::NotVisible(clean_text(&incident.pipeline, 120)));
        }
        let plans = self.store.plans_for_incident(&incident).await?;
        let mut approvals = Vec::new();
        for a in self.store.incident_approvals(id).await? {
            let (r, votes, executions) = (&a.request, &a.votes, &a.executions);
            approvals.push(json!({
                "request_id": r.id,
                "plan_ref": r.plan_ref,
                "status": r.status,
                "created_at": r.created_at,
                "expires_at": r.expires_at,
                "approved_at": r.approved_at,
                "votes": votes.iter().map(|v| json!({
                    "approver": v.vote.approver,
                    "choice": v.vote.choice,
                    "at": v.vote.at,
                    "effective": v.effective,
                    "outcome": v.outcome,
                })).collect::<Vec<_>>(),
                "executions": executions.iter().map(|e| json!({
                    "step": e.step_no,
                    "kind": e.kind,
                    "status": e.status,
                    "error": e.error.as_deref().map(|m| clean_text(m, MAX_CAUSE_CHARS)),
                    "started_at": e.started_at,
                    "finished_at": e.finished_at,
                })).collect::<Vec<_>>(),
            }));
        }
        let plans: Vec<serde_json::Value> = plans
            .iter()
            .map(|p| {
                json!({
                    "plan_id": p.id,
                    "backend": p.backend,
                    "status": p.status,
                    "created_at": p.created_at,
                    "plan": p.plan,
                    "errors": p.errors,
                })
            })
            .collect();
        let mut out = to_json(&IncidentView::of(&incident));
        if let serde_json::Value::Object(map) = &mut out {
            map.insert("plans".into(), serde_json::Value::Array(plans));
            map.insert("approvals".into(), serde_json::Value::Array(approvals));
        }
        Ok(out)
    }
}

/// Most incidents listed as open at once.
const MAX_LISTED: i64 = 200;

/// An incident as the ask tools show it: the "Incident #N" of chat, with
/// its latest abnormal run and what was most off.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentView {
    pub id: i64,
    pub pipeline: String,
    pub status: IncidentStatus,
    /// Not yet resolved or dismissed.
    pub open: bool,
    pub opened_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// Abnormal runs it has gathered.
    pub run_count: i64,
    pub max_grade: f64,
    /// Its latest abnormal run.
    pub last_run_id: String,
    /// The metrics most off in that run, most off first.
    pub deviations: Vec<crate::domain::MetricDeviation>,
}

impl IncidentView {
    pub fn of(i: &Incident) -> Self {
        Self {
            id: i.id,
            pipeline: i.pipeline.clone(),
            status: i.status,
            open: !i.status.is_closed(),
            opened_at: i.opened_at,
            resolved_at: i.resolved_at,
            run_count: i.run_count,
            max_grade: i.max_grade,
            last_run_id: i.latest_run.run_id.clone(),
            deviations: i.verdict.deviations.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_prefers_error_lines_and_strips_control_characters() {
        let log = "step 1 ok\nError: connection refused\x1b[0m\nretrying\n";
        assert_eq!(
            cause_line(log).as_deref(),
            Some("Error: connection refused [0m")
        );
        assert_eq!(cause_line("all good\n").as_deref(), Some("all good"));
        assert_eq!(cause_line("\n\n"), None);
        assert_eq!(clean_text("abcdef", 4), "abc…");
    }
}
