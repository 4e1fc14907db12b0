//! Operational metrics in the Prometheus text format (version 0.0.4),
//! served at `/metrics`, on the `prometheus-client` registry.
//!
//! What is measured:
//!
//! - counters of the application's events, one family per entry of
//!   `COUNTERS` (runs ingested, requests rejected, events ignored,
//!   detector fallbacks, redactions, healing steps, chat deliveries, ...);
//! - every HTTP request, by method, matched route template and status: a
//!   counter and a latency histogram (recorded by the HTTP edge);
//! - the model cache of the detection shards: hits, misses, loads and the
//!   models held;
//! - the work in flight, read from the store when `/metrics` is scraped
//!   ([`store_gauges`]): incidents not closed by status, chat outbox depth
//!   and the age of its oldest row per platform, approvals pending;
//! - `pipemedic_build_info` and the process's own figures ([`process`]).
//!
//! The names predate the registry and are kept: a counter's exported name
//! ends in `_total` (the registry adds the suffix to the registered name),
//! label names and their order are unchanged. [`exposition`] reads the text
//! back, strictly, for [`Metrics::counter`] and the tests.
//!
//! Label values come from code, configuration or matched route templates,
//! never straight from a request: event types named by a request header or
//! body are mapped onto a fixed set first ([`event_label`]), HTTP methods
//! outside the standard ones count as `other`, and a request that matched
//! no route is labelled [`UNMATCHED_ROUTE`], so a caller cannot grow the
//! label set.

pub mod exposition;
pub mod process;
pub mod store_gauges;

use std::collections::HashMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the request latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The route label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The labels of a counter of `COUNTERS`, in the order they are written.
type Labels = Vec<(&'static str, String)>;

/// The labels of an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    /// The matched route template (`/v1/pipelines/{name}/health`).
    route: String,
    method: &'static str,
    status: u16,
}

/// One label with a value fixed in code.
type Fixed = [(&'static str, &'static str); 1];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The methods kept as labels; any other counts as `other`.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// The label of an HTTP method: itself when standard, otherwise `other`.
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("other")
}

/// The registry and a handle on every metric; cheap to share behind an
/// `Arc`. Recording takes no lock shared by all metrics: each family has
/// its own read-mostly map and each value is atomic.
pub struct Metrics {
    registry: Registry,
    counters: HashMap<&'static str, Family<Labels, Counter>>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    model_hits: Counter,
    model_misses: Counter,
    model_loads: Family<Fixed, Counter>,
    models_cached: Gauge,
    leases_held: Gauge,
    verdict_wait: Family<Fixed, Histogram, fn() -> Histogram>,
    store: store_gauges::StoreGauges,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The help text as the registry wants it: it adds the final full stop.
fn help(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

/// Counter families with their help text.
const COUNTERS: [(&str, &str); 18] = [
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
        "pipemedic_evidence_fetches_total",
        "Evidence fetched for abnormal runs (and CodeBuild CPU and memory before scoring), by source (cloudwatch_logs, cloudwatch, github_actions, gitlab) and outcome (ok, empty, denied, not_found, throttled, timed_out, failed).",
    ),
    (
        "pipemedic_resource_waits_total",
        "Finished CodeBuild runs that waited for their CPU and memory from CloudWatch before scoring, by outcome (metrics: scored with them; waited_out: scored without them after evidence.resource_wait_s; failed: CloudWatch refused or failed, scored without them; full: too many runs waiting, scored at once; recovered: found waiting at start).",
    ),
    (
        "pipemedic_detector_fallbacks_total",
        "Runs scored by the embedded forest instead of SageMaker, by reason (error, circuit_open).",
    ),
    (
        "pipemedic_scoring_leases_total",
        "Pipeline leases changing hands at this replica (PostgreSQL), by event (acquired: nobody held it; taken_over: its holder let it lapse; lost: another replica took it; released: given up at shutdown).",
    ),
    (
        "pipemedic_scoring_handoffs_total",
        "Runs that went through the scoring queue (PostgreSQL), by role (local: received and scored here; for_peer: scored here for the replica that received it; handed_off: received here, scored by the owner; timed_out: received here, no verdict in time).",
    ),
];

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let mut counters = HashMap::new();
        for (name, text) in COUNTERS {
            let family = Family::<Labels, Counter>::default();
            // The registry adds `_total` to a counter's name.
            registry.register(
                name.strip_suffix("_total").unwrap_or(name),
                help(text),
                family.clone(),
            );
            counters.insert(name, family);
        }

        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "pipemedic_http_requests",
            "HTTP requests answered, by matched route template, method and status",
            requests.clone(),
        );
        let latency: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "pipemedic_http_request_duration_seconds",
            "HTTP request latency in seconds, by matched route template, method and status",
            latency.clone(),
        );

        let model_hits = Counter::default();
        registry.register(
            "pipemedic_model_cache_hits",
            "Runs whose pipeline model was already in the detection cache",
            model_hits.clone(),
        );
        let model_misses = Counter::default();
        registry.register(
            "pipemedic_model_cache_misses",
            "Runs whose pipeline model had to be loaded into the detection cache",
            model_misses.clone(),
        );
        let model_loads = Family::<Fixed, Counter>::default();
        registry.register(
            "pipemedic_model_loads",
            "Pipeline models brought into the detection cache, by where from (stored: a saved model; converted: a model saved as JSON, now rewritten in the binary format; new: none was saved; rebuilt: the saved one was unreadable or of an unknown format)",
            model_loads.clone(),
        );
        let models_cached = Gauge::default();
        registry.register(
            "pipemedic_models_cached",
            "Pipeline models held in memory by the detection shards",
            models_cached.clone(),
        );

        let leases_held = Gauge::default();
        registry.register(
            "pipemedic_scoring_leases_held",
            "Pipelines this replica owns (scores) under a lease (PostgreSQL)",
            leases_held.clone(),
        );
        let verdict_wait: Family<Fixed, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "pipemedic_scoring_verdict_wait_seconds",
            "Seconds from queuing a received run for scoring to its verdict at the receiving replica (PostgreSQL), by path (local: this replica owns the pipeline; handoff: another replica scored it)",
            verdict_wait.clone(),
        );

        let store = store_gauges::StoreGauges::register(&mut registry);

        let build = Family::<[(&'static str, &'static str); 5], Gauge>::default();
        registry.register(
            "pipemedic_build_info",
            "Always 1, labelled with the build: version, revision (PIPEMEDIC_BUILD_REVISION at build time, else unknown), os, arch and profile",
            build.clone(),
        );
        build
            .get_or_create(&[
                ("version", env!("CARGO_PKG_VERSION")),
                (
                    "revision",
                    option_env!("PIPEMEDIC_BUILD_REVISION").unwrap_or("unknown"),
                ),
                ("os", std::env::consts::OS),
                ("arch", std::env::consts::ARCH),
                (
                    "profile",
                    if cfg!(debug_assertions) {
                        "debug"
                    } else {
                        "release"
                    },
                ),
            ])
            .set(1);
        registry.register_collector(Box::new(process::ProcessCollector));

        Self {
            registry,
            counters,
            requests,
            latency,
            model_hits,
            model_misses,
            model_loads,
            models_cached,
            leases_held,
            verdict_wait,
            store,
        }
    }

    fn add(&self, name: &'static str, labels: Labels, by: u64) {
        match self.counters.get(name) {
            Some(family) => {
                family.get_or_create(&labels).inc_by(by);
            }
            None => debug_assert!(false, "counter {name} is not in COUNTERS"),
        }
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

    /// One evidence fetch for an abnormal run (see `pipemedic_evidence_fetches_total`).
    pub fn evidence_fetch(&self, source: &str, outcome: &str) {
        self.add(
            "pipemedic_evidence_fetches_total",
            vec![("source", source.into()), ("outcome", outcome.into())],
            1,
        );
    }

    /// One run's wait for its CodeBuild figures (see `pipemedic_resource_waits_total`).
    pub fn resource_wait(&self, outcome: &'static str) {
        self.add(
            "pipemedic_resource_waits_total",
            vec![("outcome", outcome.into())],
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

    /// Records one answered HTTP request. `route` is the matched route
    /// template, or [`UNMATCHED_ROUTE`]; never a raw path.
    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            route: route.to_string(),
            method: method_label(method),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// A run's pipeline model was in the detection cache.
    pub fn model_cache_hit(&self) {
        self.model_hits.inc();
    }

    /// A run's pipeline model was not in the detection cache.
    pub fn model_cache_miss(&self) {
        self.model_misses.inc();
    }

    /// A model was brought into the cache; `from` is `stored`, `converted`, `new` or
    /// `rebuilt` (see `pipemedic_model_loads_total`).
    pub fn model_loaded(&self, from: &'static str) {
        self.model_loads.get_or_create(&[("from", from)]).inc();
    }

    /// A pipeline lease changed hands here (`acquired`, `taken_over`,
    /// `lost`, `released`).
    pub fn scoring_lease(&self, event: &'static str) {
        self.add(
            "pipemedic_scoring_leases_total",
            vec![("event", event.into())],
            1,
        );
    }

    /// The pipelines this replica holds leases on.
    pub fn scoring_leases_held(&self, held: usize) {
        self.leases_held.set(held as i64);
    }

    /// A run went through the scoring queue in `role` (`local`,
    /// `for_peer`, `handed_off`, `timed_out`).
    pub fn scoring_handoff(&self, role: &'static str) {
        self.add(
            "pipemedic_scoring_handoffs_total",
            vec![("role", role.into())],
            1,
        );
    }

    /// A received run's verdict came back after `seconds` by `path`
    /// (`local` or `handoff`).
    pub fn scoring_verdict_wait(&self, path: &'static str, seconds: f64) {
        self.verdict_wait
            .get_or_create(&[("path", path)])
            .observe(seconds);
    }

    /// The models held by one detection shard changed by `delta`.
    pub fn models_cached_changed(&self, delta: i64) {
        self.models_cached.inc_by(delta);
    }

    /// Current value of one counter of `COUNTERS` (or of the request
    /// counter), summed over the series whose labels include `labels` (for
    /// tests and summaries). Reads the exposition back, so it is not for
    /// hot paths.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let families = exposition::parse(&self.render()).unwrap_or_default();
        let total: f64 = families
            .iter()
            .flat_map(|f| &f.samples)
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .map(|s| s.value)
            .sum();
        total as u64
    }

    /// The Prometheus text exposition (version 0.0.4). The store gauges
    /// hold the values of the last [`Metrics::refresh_store_gauges`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "Metrics could not be written.");
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{IncidentStatus, Platform};
    use crate::store::{OutboxBacklog, WorkInFlight};

    fn lines_of<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        let mut lines: Vec<_> = text.lines().filter(|l| l.starts_with(prefix)).collect();
        lines.sort_unstable();
        lines
    }

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::new();
        m.run_ingested("github", "inserted");
        m.run_ingested("github", "inserted");
        m.request_rejected("/v1/runs", "bad \"token\"");
        m.http_request("POST", "/v1/runs", 200, 0.003);
        m.planner_tokens(1200, 300);
        m.planner_tokens(800, 100);
        m.plan_drafted("bedrock", "valid");
        let text = m.render();
        assert!(text.contains("# TYPE pipemedic_runs_ingested_total counter\n"));
        assert!(text.contains("pipemedic_planner_tokens_total{direction=\"input\"} 2000\n"));
        assert!(text.contains("pipemedic_planner_tokens_total{direction=\"output\"} 400\n"));
        assert!(text.contains("pipemedic_plans_total{backend=\"bedrock\",outcome=\"valid\"} 1\n"));
        assert!(text
            .contains("pipemedic_runs_ingested_total{source=\"github\",outcome=\"inserted\"} 2\n"));
        assert!(text.contains("reason=\"bad \\\"token\\\"\""));
        let series = "route=\"/v1/runs\",method=\"POST\",status=\"200\"";
        assert!(text.contains(&format!("pipemedic_http_requests_total{{{series}}} 1\n")));
        assert!(text.contains(&format!(
            "pipemedic_http_request_duration_seconds_bucket{{{series},le=\"0.0025\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "pipemedic_http_request_duration_seconds_bucket{{{series},le=\"0.005\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "pipemedic_http_request_duration_seconds_count{{{series}}} 1\n"
        )));
        assert_eq!(
            m.counter("pipemedic_runs_ingested_total", &[("source", "github")]),
            2
        );
        assert_eq!(
            m.counter("pipemedic_http_requests_total", &[("route", "/v1/runs")]),
            1
        );
    }

    #[test]
    fn request_labels_are_bounded() {
        let m = Metrics::new();
        for i in 0..500 {
            m.http_request(&format!("X-{i}"), UNMATCHED_ROUTE, 405, 0.001);
        }
        let text = m.render();
        assert_eq!(
            lines_of(&text, "pipemedic_http_requests_total{"),
            ["pipemedic_http_requests_total{route=\"unmatched\",method=\"other\",status=\"405\"} 500"]
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
        assert_eq!(
            lines_of(&text, "pipemedic_events_ignored_total{"),
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

    #[test]
    fn every_family_is_declared_once_with_help_and_type() {
        let m = Metrics::new();
        m.run_ingested("generic", "inserted");
        m.healing("approved");
        m.redactions("password", 2);
        m.http_request("GET", "/healthz", 200, 0.0004);
        m.http_request("GET", UNMATCHED_ROUTE, 404, 0.02);
        m.model_cache_miss();
        m.model_loaded("new");
        m.models_cached_changed(1);
        let families = exposition::parse(&m.render()).expect("a valid exposition");
        let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        // A labelled family appears once it has a series.
        for name in [
            "pipemedic_runs_ingested_total",
            "pipemedic_healing_total",
            "pipemedic_redactions_total",
            "pipemedic_http_requests_total",
            "pipemedic_http_request_duration_seconds",
            "pipemedic_model_cache_hits_total",
            "pipemedic_model_cache_misses_total",
            "pipemedic_model_loads_total",
            "pipemedic_models_cached",
            "pipemedic_approvals_pending",
            "pipemedic_build_info",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert!(families.iter().all(|f| !f.help.is_empty()));
        let build = families
            .iter()
            .find(|f| f.name == "pipemedic_build_info")
            .unwrap();
        assert_eq!(build.samples.len(), 1);
        assert_eq!(build.samples[0].value, 1.0);
        assert_eq!(
            build.samples[0].label("version"),
            Some(env!("CARGO_PKG_VERSION"))
        );
        if cfg!(target_os = "linux") {
            for name in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_open_fds",
                "process_start_time_seconds",
            ] {
                let family = families.iter().find(|f| f.name == name);
                assert!(family.is_some_and(|f| f.samples.len() == 1), "{name}");
            }
        }
    }

    #[test]
    fn store_gauges_show_the_last_reading() {
        let m = Metrics::new();
        let now: chrono::DateTime<chrono::Utc> = "2026-11-25T12:00:00Z".parse().unwrap();
        let work = WorkInFlight {
            incidents: vec![
                (IncidentStatus::Open, 2),
                (IncidentStatus::AwaitingApproval, 1),
            ],
            outbox: vec![
                OutboxBacklog {
                    platform: Platform::Slack,
                    pending: 3,
                    oldest_queued_at: Some(now - chrono::Duration::milliseconds(90_500)),
                },
                OutboxBacklog {
                    platform: Platform::Discord,
                    pending: 0,
                    oldest_queued_at: None,
                },
            ],
            approvals_pending: 4,
        };
        m.set_store_gauges(&work, now);
        let text = m.render();
        assert!(text.contains("pipemedic_incidents_open{status=\"open\"} 2\n"));
        assert!(text.contains("pipemedic_incidents_open{status=\"awaiting_approval\"} 1\n"));
        assert!(text.contains("pipemedic_chat_outbox_depth{platform=\"slack\"} 3\n"));
        assert!(text.contains("pipemedic_chat_outbox_depth{platform=\"discord\"} 0\n"));
        assert!(
            text.contains("pipemedic_chat_outbox_oldest_age_seconds{platform=\"slack\"} 90.5\n")
        );
        assert!(
            text.contains("pipemedic_chat_outbox_oldest_age_seconds{platform=\"discord\"} 0.0\n")
        );
        assert!(text.contains("pipemedic_approvals_pending 4\n"));
    }

    #[test]
    fn methods_outside_the_standard_set_are_other() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("PURGE"), "other");
        assert_eq!(method_label("get"), "other");
    }
}
