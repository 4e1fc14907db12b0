//! The normalised [`Run`]: every source (generic API, GitHub, GitLab,
//! CodePipeline, CLI backfill) converts its payload into this one shape, and
//! every later stage (store, detection, chat, planning) reads only this shape.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Names of the metric streams derived from the fixed fields of a run.
/// Per-stage durations are `stage.<stage name>.duration_s`; custom metrics
/// keep their own name.
pub const BUILTIN_METRICS: [&str; 6] = [
    "duration_s",
    "test_failure_rate",
    "cpu_peak_pct",
    "mem_peak_mb",
    "error_rate",
    "latency_p95_ms",
];

/// Longest log excerpt kept with a run; longer excerpts keep their tail.
pub const MAX_LOG_EXCERPT: usize = 16 * 1024;

/// Outcome of a pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    Cancelled,
    Running,
}

impl RunStatus {
    /// Parses the many spellings CI systems use ("success", "SUCCEEDED",
    /// "passed", "failure", "canceled", "Stopped", "in_progress" ...).
    pub fn parse_loose(raw: &str) -> Option<Self> {
        let s = raw.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Some(match s.as_str() {
            "succeeded" | "success" | "successful" | "passed" | "pass" | "ok" | "green" => {
                Self::Succeeded
            }
            "failed" | "failure" | "fail" | "error" | "errored" | "timed_out" | "timeout"
            | "fault" | "red" => Self::Failed,
            "cancelled" | "canceled" | "stopped" | "abandoned" | "skipped" | "superseded"
            | "stopping" => Self::Cancelled,
            "running" | "in_progress" | "inprogress" | "pending" | "queued" | "started"
            | "created" | "waiting" => Self::Running,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Running => "running",
        }
    }

    /// A run in this state will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Running)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a run came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunSource {
    Generic,
    Github,
    Gitlab,
    Aws,
    CodepipelinePoll,
    Backfill,
}

impl RunSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Aws => "aws",
            Self::CodepipelinePoll => "codepipeline_poll",
            Self::Backfill => "backfill",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "generic" => Self::Generic,
            "github" => Self::Github,
            "gitlab" => Self::Gitlab,
            "aws" => Self::Aws,
            "codepipeline_poll" => Self::CodepipelinePoll,
            "backfill" => Self::Backfill,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCounts {
    pub total: u64,
    pub failed: u64,
    #[serde(default)]
    pub skipped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_peak_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_peak_mb: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p95_ms: Option<f64>,
}

/// Timing of one stage (CodePipeline stage, GitHub job, GitLab job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageTiming {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::rfc3339::deserialize_option"
    )]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::rfc3339::deserialize_option"
    )]
    pub finished_at: Option<DateTime<Utc>>,
    /// The CI system's id of the job behind this stage (a GitHub Actions
    /// job id, a GitLab job id), where the source gave one: the failing
    /// job's log is fetched by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

impl StageTiming {
    pub fn duration_s(&self) -> Option<f64> {
        duration_between(self.started_at, self.finished_at)
    }
}

/// One pipeline run in pipemedic's normalised shape (the generic ingest body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub pipeline: String,
    pub run_id: String,
    pub status: RunStatus,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::rfc3339::deserialize_option"
    )]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::rfc3339::deserialize_option"
    )]
    pub finished_at: Option<DateTime<Utc>>,
    /// The stage that failed, or the one the run is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The commit author's name as the CI system shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_author: Option<String>,
    /// The commit author's email, where the payload has one (used to keep
    /// authors from approving the fix of their own change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_author_email: Option<String>,
    /// The CI system's login of the person who pushed or started the run
    /// (GitHub `triggering_actor`/`actor`, GitLab `user.username`), where
    /// the payload has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_author_login: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_message: Option<String>,
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployMetrics>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageTiming>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_excerpt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// Link to the run in its CI system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

fn first_attempt() -> u32 {
    1
}

/// One value of one metric stream, derived from a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub metric: String,
    pub value: f64,
}

/// A field of an input that is wrong, with its path (`tests.failed`,
/// `[3].started_at`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn duration_between(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<f64> {
    let (start, end) = (start?, end?);
    let ms = (end - start).num_milliseconds();
    (ms >= 0).then(|| ms as f64 / 1000.0)
}

impl Run {
    /// A minimal run, for sources that fill the rest in afterwards.
    pub fn new(pipeline: impl Into<String>, run_id: impl Into<String>, status: RunStatus) -> Self {
        Self {
            pipeline: pipeline.into(),
            run_id: run_id.into(),
            status,
            started_at: None,
            finished_at: None,
            stage: None,
            commit: None,
            commit_author: None,
            commit_author_email: None,
            commit_author_login: None,
            commit_message: None,
            attempt: 1,
            tests: None,
            resources: None,
            deploy: None,
            metrics: BTreeMap::new(),
            stages: Vec::new(),
            log_excerpt: None,
            log_url: None,
            url: None,
        }
    }

    /// Wall-clock duration of the run in seconds, when both ends are known.
    pub fn duration_s(&self) -> Option<f64> {
        duration_between(self.started_at, self.finished_at)
    }

    /// The time that orders this run in its pipeline's history.
    pub fn event_time(&self) -> Option<DateTime<Utc>> {
        self.finished_at.or(self.started_at)
    }

    /// Trims oversized free text (log excerpt keeps its tail, where errors
    /// are; a commit message keeps its head).
    pub fn normalise(&mut self) {
        self.pipeline = self.pipeline.trim().to_string();
        self.run_id = self.run_id.trim().to_string();
        if let Some(message) = &mut self.commit_message {
            if let Some((cut, _)) = message
                .char_indices()
                .nth(super::run_limits::MAX_COMMIT_MESSAGE_CHARS)
            {
                message.truncate(cut);
            }
        }
        if let Some(log) = &mut self.log_excerpt {
            if log.len() > MAX_LOG_EXCERPT {
                let mut cut = log.len() - MAX_LOG_EXCERPT;
                while !log.is_char_boundary(cut) {
                    cut += 1;
                }
                *log = log[cut..].to_string();
            }
        }
    }

    /// The metric samples this run contributes to its pipeline's streams:
    /// whichever of the built-in metrics the source provided, per-stage
    /// durations and custom metrics. Running runs contribute nothing.
    pub fn metric_samples(&self) -> Vec<MetricSample> {
        let mut out: Vec<MetricSample> = BUILTIN_METRICS
            .iter()
            .zip(self.builtin_samples())
            .filter_map(|(metric, value)| {
                value.map(|value| MetricSample {
                    metric: (*metric).to_string(),
                    value,
                })
            })
            .collect();
        out.extend(self.other_samples());
        out
    }

    /// The values of the built-in metrics this run contributes, in the
    /// order of [`BUILTIN_METRICS`]: `None` for a metric the source did not
    /// provide (or not a finite number), and for every metric of a run that
    /// has not finished. The store keeps these as columns of the run.
    pub fn builtin_samples(&self) -> [Option<f64>; 6] {
        if !self.status.is_final() {
            return [None; 6];
        }
        let resources = self.resources.as_ref();
        let deploy = self.deploy.as_ref();
        [
            self.duration_s(),
            self.tests
                .filter(|t| t.total > 0)
                .map(|t| t.failed as f64 / t.total as f64),
            resources.and_then(|r| r.cpu_peak_pct),
            resources.and_then(|r| r.mem_peak_mb),
            deploy.and_then(|d| d.error_rate),
            deploy.and_then(|d| d.latency_p95_ms),
        ]
        .map(|v| v.filter(|v| v.is_finite()))
    }

    /// The samples beyond the built-in metrics: per-stage durations
    /// (`stage.<name>.duration_s`) and custom metrics. Running runs
    /// contribute nothing. The store keeps these as rows of their own.
    pub fn other_samples(&self) -> Vec<MetricSample> {
        if !self.status.is_final() {
            return Vec::new();
        }
        let stages = self.stages.iter().map(|stage| {
            (
                format!("stage.{}.duration_s", stage.name),
                stage.duration_s(),
            )
        });
        let custom = self
            .metrics
            .iter()
            .map(|(name, value)| (name.clone(), Some(*value)));
        stages
            .chain(custom)
            .filter_map(|(metric, value)| {
                value
                    .filter(|v| v.is_finite())
                    .map(|value| MetricSample { metric, value })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_run() -> Run {
        serde_json::from_str(
            r#"{"pipeline": "checkout-service", "run_id": "8f1c", "status": "failed",
 "started_at": "2026-11-20T10:00:00Z", "finished_at": "2026-11-20T10:07:12Z",
 "stage": "Test", "commit": "a1b2c3d", "attempt": 1,
 "tests": {"total": 812, "failed": 37, "skipped": 4},
 "resources": {"cpu_peak_pct": 93.5, "mem_peak_mb": 3100},
 "deploy": {"error_rate": 0.002, "latency_p95_ms": 180},
 "metrics": {"any_custom_metric": 1.5},
 "log_excerpt": "...", "log_url": "https://example.com/log"}"#,
        )
        .unwrap()
    }

    #[test]
    fn design_example_parses_and_derives_every_metric() {
        let run = sample_run();
        assert!(run
            .validate("", "2026-11-25T12:00:00Z".parse().unwrap())
            .is_empty());
        let samples = run.metric_samples();
        let get = |m: &str| samples.iter().find(|s| s.metric == m).map(|s| s.value);
        assert_eq!(get("duration_s"), Some(432.0));
        assert!((get("test_failure_rate").unwrap() - 37.0 / 812.0).abs() < 1e-12);
        assert_eq!(get("cpu_peak_pct"), Some(93.5));
        assert_eq!(get("mem_peak_mb"), Some(3100.0));
        assert_eq!(get("error_rate"), Some(0.002));
        assert_eq!(get("latency_p95_ms"), Some(180.0));
        assert_eq!(get("any_custom_metric"), Some(1.5));
        assert_eq!(samples.len(), 7);
    }

    #[test]
    fn validation_reports_every_problem_with_its_path() {
        let mut run = sample_run();
        run.pipeline = " ".into();
        run.tests = Some(TestCounts {
            total: 3,
            failed: 5,
            skipped: 0,
        });
        run.finished_at = Some("2026-11-20T09:00:00Z".parse().unwrap());
        run.metrics.insert("duration_s".into(), 1.0);
        let errors = run.validate("[2].", "2026-11-25T12:00:00Z".parse().unwrap());
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "[2].pipeline",
                "[2].finished_at",
                "[2].tests.failed",
                "[2].metrics.duration_s"
            ]
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<Run>(
            r#"{"pipeline":"p","run_id":"1","status":"failed","colour":"red"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn loose_status_spellings() {
        assert_eq!(
            RunStatus::parse_loose("SUCCEEDED"),
            Some(RunStatus::Succeeded)
        );
        assert_eq!(RunStatus::parse_loose("failure"), Some(RunStatus::Failed));
        assert_eq!(
            RunStatus::parse_loose("Canceled"),
            Some(RunStatus::Cancelled)
        );
        assert_eq!(
            RunStatus::parse_loose("in_progress"),
            Some(RunStatus::Running)
        );
        assert_eq!(RunStatus::parse_loose("purple"), None);
    }

    #[test]
    fn running_runs_yield_no_samples_and_stage_durations_are_named() {
        let mut run = Run::new("p", "1", RunStatus::Running);
        run.stages.push(StageTiming {
            job_id: None,
            name: "Build".into(),
            status: Some(RunStatus::Succeeded),
            started_at: Some("2026-11-20T10:00:00Z".parse().unwrap()),
            finished_at: Some("2026-11-20T10:01:30Z".parse().unwrap()),
        });
        assert!(run.metric_samples().is_empty());
        run.status = RunStatus::Succeeded;
        let samples = run.metric_samples();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].metric, "stage.Build.duration_s");
        assert_eq!(samples[0].value, 90.0);
    }

    #[test]
    fn long_log_keeps_its_tail() {
        let mut run = Run::new("p", "1", RunStatus::Failed);
        run.log_excerpt = Some(format!("{}END", "x".repeat(MAX_LOG_EXCERPT)));
        run.normalise();
        let log = run.log_excerpt.unwrap();
        assert_eq!(log.len(), MAX_LOG_EXCERPT);
        assert!(log.ends_with("END"));
    }
}
