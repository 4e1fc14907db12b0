//! Process metrics in the Prometheus text format, served at `/metrics`:
//! runs ingested by source and outcome, requests rejected by reason, events
//! acknowledged but ignored, detector fallbacks from SageMaker to the
//! embedded forest, secrets redacted at ingest by kind, and a request
//! latency histogram per route.
//! A small hand-written registry: counters and one histogram family.
//!
//! Label values come from code, configuration or matched route paths, never
//! straight from a request: event types named by a request header or body
//! are mapped onto a fixed set first ([`event_label`]), so a caller cannot
//! grow the label set.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds (seconds) of the request latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    counters: BTreeMap<(&'static str, Labels), u64>,
    latency: BTreeMap<String, Histogram>,
}

/// The registry; cheap to share behind an `Arc`.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Counter families with their help text.
const COUNTERS: [(&str, &str); 14] = [
    (
        "pipemedic_handoffs_dropped_total",
        "Stored runs whose hand-off to the next stage was dropped because its queue was full, by queue (scored: detection to incidents; handled: incidents to healing).",
    ),
    (
        "pipemedic_healing_total",
        "Steps of the healing loop, by event (plan_offered, approved, rejected, executed, execution_failed, verified, not_healed, recovered_alone, expired, stale, vote_refused, plan_invalid, plan_failed).",
    ),
    (
        "pipemedic_runs_ingested_total",
        "Runs accepted, by source and outcome (inserted, updated, duplicate).",
    ),
    (
        "pipemedic_requests_rejected_total",
        "Requests refused, by route and reason.",
    ),
    (
        "pipemedic_events_ignored_total",
        "Events acknowledged without a run, by source and event type.",
    ),
    (
        "pipemedic_poll_errors_total",
        "CodePipeline poll failures, by pipeline.",
    ),
    (
        "pipemedic_background_errors_total",
        "Failures of background work, by task.",
    ),
    (
        "pipemedic_chat_deliveries_total",
        "Chat outbox attempts, by platform and outcome (sent, rate_limited, retry, dead).",
    ),
    (
        "pipemedic_plans_total",
        "Plans drafted, by backend (offline, bedrock) and outcome (valid, invalid, error).",
    ),
    (
        "pipemedic_planner_tokens_total",
        "Model tokens used by the planner, by direction (input, output).",
    ),
    (
        "pipemedic_ask_tokens_total",
        "Model tokens used answering questions, by direction (input, output).",
    ),
    (
        "pipemedic_asks_total",
        "Questions answered, by backend (offline, bedrock) and outcome (answered, not_visible, or why the model's answer was replaced by the offline one).",
    ),
    (
        "pipemedic_redactions_total",
        "Secrets hidden in CI text before it was stored, by kind (github_token, password, url_password, ...; a fixed set, custom for configured patterns).",
    ),
    (
        "pipemedic_detector_fallbacks_total",
        "Runs scored by the embedded forest instead of SageMaker, by reason (error, circuit_open).",
    ),
];

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&self, name: &'static str, labels: Labels, by: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.counters.entry((name, labels)).or_default() += by;
    }

    pub fn run_ingested(&self, source: &str, outcome: &str) {
        self.add(
            "pipemedic_runs_ingested_total",
            vec![("source", source.into()), ("outcome", outcome.into())],
            1,
        );
    }

    pub fn request_rejected(&self, route: &str, reason: &str) {
        self.add(
            "pipemedic_requests_rejected_total",
            vec![("route", route.into()), ("reason", reason.into())],
            1,
        );
    }

    /// Counts an acknowledged event without a run. `event` comes from the
    /// request (`X-GitHub-Event`, `X-Gitlab-Event`, EventBridge
    /// `detail-type`); only known event types become labels, others count
    /// as `other`.
    pub fn event_ignored(&self, source: &str, event: &str) {
        self.add(
            "pipemedic_events_ignored_total",
            vec![
                ("source", source.into()),
                ("event", event_label(source, event).into()),
            ],
            1,
        );
    }

    pub fn poll_error(&self, pipeline: &str) {
        self.add(
            "pipemedic_poll_errors_total",
            vec![("pipeline", pipeline.into())],
            1,
        );
    }

    /// A hand-off between two background stages was dropped: the queue to
    /// `queue` was full (the run is stored; nothing upstream waited).
    pub fn handoff_dropped(&self, queue: &str) {
        self.add(
            "pipemedic_handoffs_dropped_total",
            vec![("queue", queue.into())],
            1,
        );
    }

    pub fn background_error(&self, task: &str) {
        self.add(
            "pipemedic_background_errors_total",
            vec![("task", task.into())],
            1,
        );
    }

    pub fn chat_delivery(&self, platform: &str, outcome: &str) {
        self.add(
            "pipemedic_chat_deliveries_total",
            vec![("platform", platform.into()), ("outcome", outcome.into())],
            1,
        );
    }

    /// Counts one drafted plan (`outcome`: valid, invalid or error).
    /// One step of the healing loop (see `pipemedic_healing_total`).
    pub fn healing(&self, event: &str) {
        self.add("pipemedic_healing_total", vec![("event", event.into())], 1);
    }

    pub fn plan_drafted(&self, backend: &str, outcome: &str) {
        self.add(
            "pipemedic_plans_total",
            vec![("backend", backend.into()), ("outcome", outcome.into())],
            1,
        );
    }

    /// A run was scored by the embedded forest because SageMaker failed
    /// (`error`) or is being rested after repeated failures (`circuit_open`).
    pub fn detector_fallback(&self, reason: &str) {
        self.add(
            "pipemedic_detector_fallbacks_total",
            vec![("reason", reason.into())],
            1,
        );
    }

    /// Adds the tokens of one model answer.
    pub fn planner_tokens(&self, input: u64, output: u64) {
        self.add(
            "pipemedic_planner_tokens_total",
            vec![("direction", "input".into())],
            input,
        );
        self.add(
            "pipemedic_planner_tokens_total",
            vec![("direction", "output".into())],
            output,
        );
    }

    /// Adds the tokens of one model answer to a question.
    pub fn ask_tokens(&self, input: u64, output: u64) {
        self.add(
            "pipemedic_ask_tokens_total",
            vec![("direction", "input".into())],
            input,
        );
        self.add(
            "pipemedic_ask_tokens_total",
            vec![("direction", "output".into())],
            output,
        );
    }

    /// Counts one answered question.
    pub fn ask_answered(&self, backend: &str, outcome: &str) {
        self.add(
            "pipemedic_asks_total",
            vec![("backend", backend.into()), ("outcome", outcome.into())],
            1,
        );
    }

    /// Counts `n` secrets of `kind` hidden at ingest (`kind` is one of the
    /// redactor's fixed names, never text from a request).
    pub fn redactions(&self, kind: &'static str, n: u64) {
        self.add("pipemedic_redactions_total", vec![("kind", kind.into())], n);
    }

    /// Records one request's latency for a route (the matched path).
    pub fn observe_request(&self, route: &str, seconds: f64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let h = inner.latency.entry(route.to_string()).or_default();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// Current value of one counter (for tests and summaries).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .counters
            .iter()
            .filter(|((n, l), _)| {
                *n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (family, help) in COUNTERS {
            let _ = writeln!(out, "# HELP {family} {help}");
            let _ = writeln!(out, "# TYPE {family} counter");
            for ((name, labels), value) in &inner.counters {
                if *name == family {
                    let _ = writeln!(out, "{family}{} {value}", render_labels(labels, None));
                }
            }
        }
        let family = "pipemedic_http_request_duration_seconds";
        let _ = writeln!(out, "# HELP {family} HTTP request latency by route.");
        let _ = writeln!(out, "# TYPE {family} histogram");
        for (route, h) in &inner.latency {
            let labels = vec![("route", route.clone())];
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{family}_bucket{} {}",
                    render_labels(&labels, Some(&bound.to_string())),
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "{family}_bucket{} {}",
                render_labels(&labels, Some("+Inf")),
                h.count
            );
            let _ = writeln!(
                out,
                "{family}_sum{} {}",
                render_labels(&labels, None),
                h.sum
            );
            let _ = writeln!(
                out,
                "{family}_count{} {}",
                render_labels(&labels, None),
                h.count
            );
        }
        out
    }
}

fn render_labels(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// GitHub webhook event names (`X-GitHub-Event`) kept as labels.
const GITHUB_EVENTS: [&str; 24] = [
    "check_run",
    "check_suite",
    "create",
    "delete",
    "deployment",
    "deployment_status",
    "fork",
    "installation",
    "issue_comment",
    "issues",
    "member",
    "merge_group",
    "meta",
    "ping",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "push",
    "release",
    "repository",
    "status",
    "workflow_dispatch",
    "workflow_job",
    "workflow_run",
];

/// GitLab hook names (`X-Gitlab-Event`) kept as labels.
const GITLAB_EVENTS: [&str; 15] = [
    "Deployment Hook",
    "Emoji Hook",
    "Feature Flag Hook",
    "Issue Hook",
    "Job Hook",
    "Member Hook",
    "Merge Request Hook",
    "Note Hook",
    "Pipeline Hook",
    "Push Hook",
    "Release Hook",
    "Resource Access Token Hook",
    "Subgroup Hook",
    "Tag Push Hook",
    "Wiki Page Hook",
];

/// EventBridge `detail-type`s kept as labels.
const AWS_EVENTS: [&str; 5] = [
    "CodeBuild Build Phase Change",
    "CodeBuild Build State Change",
    "CodePipeline Action Execution State Change",
    "CodePipeline Pipeline Execution State Change",
    "CodePipeline Stage Execution State Change",
];

/// The label of a request-named event type: itself when `source` knows it,
/// otherwise `other`.
pub fn event_label<'a>(source: &str, event: &'a str) -> &'a str {
    let known: &[&str] = match source {
        "github" => &GITHUB_EVENTS,
        "gitlab" => &GITLAB_EVENTS,
        "aws" => &AWS_EVENTS,
        _ => &[],
    };
    if known.contains(&event) {
        event
    } else {
        "other"
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::new();
        m.run_ingested("github", "inserted");
        m.run_ingested("github", "inserted");
        m.request_rejected("/v1/runs", "bad \"token\"");
        m.observe_request("/v1/runs", 0.003);
        m.planner_tokens(1200, 300);
        m.planner_tokens(800, 100);
        m.plan_drafted("bedrock", "valid");
        let text = m.render();
        assert!(text.contains("pipemedic_planner_tokens_total{direction=\"input\"} 2000"));
        assert!(text.contains("pipemedic_planner_tokens_total{direction=\"output\"} 400"));
        assert!(text.contains("pipemedic_plans_total{backend=\"bedrock\",outcome=\"valid\"} 1"));
        assert!(text
            .contains("pipemedic_runs_ingested_total{source=\"github\",outcome=\"inserted\"} 2"));
        assert!(text.contains("reason=\"bad \\\"token\\\"\""));
        assert!(text.contains(
            "pipemedic_http_request_duration_seconds_bucket{route=\"/v1/runs\",le=\"0.0025\"} 0"
        ));
        assert!(text.contains(
            "pipemedic_http_request_duration_seconds_bucket{route=\"/v1/runs\",le=\"0.005\"} 1"
        ));
        assert_eq!(
            m.counter("pipemedic_runs_ingested_total", &[("source", "github")]),
            2
        );
    }

    #[test]
    fn request_named_event_types_become_labels_only_when_known() {
        let m = Metrics::new();
        for i in 0..3_000 {
            m.event_ignored("github", &format!("random-{i}"));
        }
        m.event_ignored("github", "ping");
        m.event_ignored("gitlab", "Push Hook");
        m.event_ignored("gitlab", "push");
        m.event_ignored("aws", "CodeBuild Build Phase Change");
        m.event_ignored("aws", "Some\nOther \"Type\"");
        let text = m.render();
        let lines: Vec<_> = text
            .lines()
            .filter(|l| l.starts_with("pipemedic_events_ignored_total{"))
            .collect();
        assert_eq!(
            lines,
            [
                "pipemedic_events_ignored_total{source=\"aws\",event=\"CodeBuild Build Phase Change\"} 1",
                "pipemedic_events_ignored_total{source=\"aws\",event=\"other\"} 1",
                "pipemedic_events_ignored_total{source=\"github\",event=\"other\"} 3000",
                "pipemedic_events_ignored_total{source=\"github\",event=\"ping\"} 1",
                "pipemedic_events_ignored_total{source=\"gitlab\",event=\"Push Hook\"} 1",
                "pipemedic_events_ignored_total{source=\"gitlab\",event=\"other\"} 1",
            ]
        );
    }
}
