//! `pipemedic check`: the post-build step a pipeline runs right after a
//! build. It posts this build's metrics to a pipemedic server, prints the
//! verdict and says, by exit code, whether the build looks abnormal: 0
//! normal, 3 anomalous. A monitoring outage must not break builds: when the
//! server cannot be reached (or fails), the check warns and exits 0 unless
//! `--strict`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::{DeployMetrics, ResourceMetrics, Run, RunStatus, TestCounts, Verdict};

/// What the check was told about the build.
#[derive(Debug, Clone, Default)]
pub struct BuildFacts {
    pub pipeline: String,
    pub run_id: Option<String>,
    pub status: Option<String>,
    pub duration_s: Option<f64>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub stage: Option<String>,
    pub commit: Option<String>,
    pub tests_total: Option<u64>,
    pub tests_failed: Option<u64>,
    pub tests_skipped: Option<u64>,
    pub cpu_peak_pct: Option<f64>,
    pub mem_peak_mb: Option<f64>,
    pub error_rate: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    /// `--metric name=value`, repeatable.
    pub metrics: Vec<String>,
    pub log_url: Option<String>,
}

/// CI variables that identify the current build, in order of preference.
const RUN_ID_VARS: [&str; 5] = [
    "CODEBUILD_BUILD_ID",
    "GITHUB_RUN_ID",
    "CI_PIPELINE_ID",
    "BUILD_ID",
    "BUILD_NUMBER",
];
const COMMIT_VARS: [&str; 3] = [
    "CODEBUILD_RESOLVED_SOURCE_VERSION",
    "GITHUB_SHA",
    "CI_COMMIT_SHA",
];

/// Builds the run to post; every problem is reported at once.
pub fn build_run(
    facts: &BuildFacts,
    env: &crate::config::Env,
    now: DateTime<Utc>,
) -> Result<Run, Vec<String>> {
    let mut problems = Vec::new();
    let status = match facts.status.as_deref() {
        None => RunStatus::Succeeded,
        Some(raw) => RunStatus::parse_loose(raw).unwrap_or_else(|| {
            problems.push(format!(
                "--status {raw:?} is not a run status (succeeded, failed, cancelled)"
            ));
            RunStatus::Succeeded
        }),
    };
    let run_id = facts
        .run_id
        .clone()
        .or_else(|| {
            RUN_ID_VARS
                .iter()
                .find_map(|v| env.get(*v).filter(|s| !s.is_empty()).cloned())
        })
        .unwrap_or_else(|| format!("check-{}", now.timestamp_millis()));
    let mut run = Run::new(facts.pipeline.clone(), run_id, status);
    let (started, finished) = match (facts.started_at, facts.finished_at, facts.duration_s) {
        (Some(s), Some(f), _) => (Some(s), Some(f)),
        (Some(s), None, Some(d)) => (
            Some(s),
            Some(s + chrono::Duration::milliseconds((d * 1000.0) as i64)),
        ),
        (None, f, Some(d)) => {
            let end = f.unwrap_or(now);
            (
                Some(end - chrono::Duration::milliseconds((d * 1000.0) as i64)),
                Some(end),
            )
        }
        (s, f, None) => (s, f.or(Some(now))),
    };
    if facts.duration_s.is_some_and(|d| !d.is_finite() || d < 0.0) {
        problems.push("--duration-s must be a number >= 0".into());
    }
    run.started_at = started;
    run.finished_at = finished;
    run.stage = facts.stage.clone();
    run.commit = facts.commit.clone().or_else(|| {
        COMMIT_VARS
            .iter()
            .find_map(|v| env.get(*v).filter(|s| !s.is_empty()).cloned())
    });
    run.log_url = facts.log_url.clone();
    if let Some(total) = facts.tests_total {
        run.tests = Some(TestCounts {
            total,
            failed: facts.tests_failed.unwrap_or(0),
            skipped: facts.tests_skipped.unwrap_or(0),
        });
    } else if facts.tests_failed.is_some() {
        problems.push("--tests-failed needs --tests-total".into());
    }
    if facts.cpu_peak_pct.is_some() || facts.mem_peak_mb.is_some() {
        run.resources = Some(ResourceMetrics {
            cpu_peak_pct: facts.cpu_peak_pct,
            mem_peak_mb: facts.mem_peak_mb,
        });
    }
    if facts.error_rate.is_some() || facts.latency_p95_ms.is_some() {
        run.deploy = Some(DeployMetrics {
            error_rate: facts.error_rate,
            latency_p95_ms: facts.latency_p95_ms,
        });
    }
    let mut metrics = BTreeMap::new();
    for raw in &facts.metrics {
        match raw
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim().parse::<f64>()))
        {
            Some((k, Ok(v))) if !k.is_empty() => {
                metrics.insert(k.to_string(), v);
            }
            _ => problems.push(format!("--metric {raw:?} must be NAME=NUMBER")),
        }
    }
    run.metrics = metrics;
    run.normalise();
    problems.extend(run.validate("", now).into_iter().map(|e| e.to_string()));
    if problems.is_empty() {
        Ok(run)
    } else {
        Err(problems)
    }
}

#[derive(Debug, Deserialize)]
struct PostedRun {
    #[serde(default)]
    verdict: Option<Verdict>,
}

#[derive(Debug, Deserialize)]
struct PostResponse {
    runs: Vec<PostedRun>,
}

/// How a check ended.
#[derive(Debug)]
pub enum CheckOutcome {
    Normal(Option<Verdict>),
    Anomalous(Verdict),
    /// The server could not be asked (unreachable, timed out, failed).
    Unavailable(String),
    /// The server refused the run (bad token, bad input).
    Refused(String),
}

/// Posts the run and interprets the answer.
pub async fn check(
    server: &str,
    token: Option<&str>,
    run: &Run,
    timeout: Duration,
) -> CheckOutcome {
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => return CheckOutcome::Unavailable(format!("cannot build an HTTP client: {e}")),
    };
    let url = format!("{}/v1/runs", server.trim_end_matches('/'));
    let mut request = client.post(&url).json(run);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return CheckOutcome::Unavailable(format!("cannot reach {url}: {e}")),
    };
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_server_error() {
        return CheckOutcome::Unavailable(format!("{url} answered {status}: {}", body.trim()));
    }
    if !status.is_success() {
        return CheckOutcome::Refused(format!("{url} refused the run ({status}): {}", body.trim()));
    }
    match serde_json::from_str::<PostResponse>(&body) {
        Ok(parsed) => match parsed.runs.into_iter().next().and_then(|r| r.verdict) {
            Some(v) if v.is_anomalous() => CheckOutcome::Anomalous(v),
            v => CheckOutcome::Normal(v),
        },
        Err(e) => CheckOutcome::Unavailable(format!("{url} answered something unexpected: {e}")),
    }
}

/// A human explanation of a verdict, one line per metric that is off.
pub fn explain(pipeline: &str, verdict: &Verdict) -> String {
    let mut out = if verdict.is_anomalous() {
        format!(
            "ANOMALOUS: {pipeline} run looks abnormal (grade {:.2}, score {:.2})",
            verdict.grade, verdict.score
        )
    } else if verdict.warming_up {
        format!(
            "normal: {pipeline} is still learning its normal (score {:.2})",
            verdict.score
        )
    } else {
        format!(
            "normal: {pipeline} run looks normal (score {:.2})",
            verdict.score
        )
    };
    for line in verdict.why() {
        out.push_str(&format!("\n  {line}"));
    }
    if !verdict.warming_up && !verdict.seasonal {
        out.push_str("\n  (weekly rhythm not learned yet: expected values are the same for every hour and day)");
    }
    if let Some(id) = verdict.anomaly_id {
        out.push_str(&format!("\n  anomaly #{id}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_and_ci_variables_fill_the_run() {
        let now: DateTime<Utc> = "2026-11-25T12:00:00Z".parse().unwrap();
        let env: crate::config::Env = [
            ("GITHUB_RUN_ID".to_string(), "991".to_string()),
            ("GITHUB_SHA".to_string(), "abc".to_string()),
        ]
        .into_iter()
        .collect();
        let facts = BuildFacts {
            pipeline: "o/r/ci".into(),
            duration_s: Some(90.0),
            metrics: vec!["bundle_kb=512".into()],
            ..Default::default()
        };
        let run = build_run(&facts, &env, now).unwrap();
        assert_eq!(run.run_id, "991");
        assert_eq!(run.commit.as_deref(), Some("abc"));
        assert_eq!(run.duration_s(), Some(90.0));
        assert_eq!(run.finished_at, Some(now));
        assert_eq!(run.metrics["bundle_kb"], 512.0);
    }

    #[test]
    fn every_bad_flag_is_reported() {
        let facts = BuildFacts {
            pipeline: "p".into(),
            status: Some("purple".into()),
            tests_failed: Some(3),
            metrics: vec!["nonsense".into()],
            ..Default::default()
        };
        let problems = build_run(&facts, &Default::default(), Utc::now()).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
