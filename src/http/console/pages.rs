//! The console's pages: each handler reads the store through existing
//! queries and the health summary, shapes plain view structs (text already
//! worded, numbers already formatted) and hands them to a template. Charts
//! arrive as SVG text from [`super::svg`]; everything else is escaped by
//! the template engine.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::svg::{self, Point};
use super::{ConsoleState, SignedIn, Who};
use crate::domain::{Incident, IncidentStatus, MetricDeviation};
use crate::http::shape::{JsonPath, JsonQuery};
use crate::http::{ApiError, ErrorCode};
use crate::store::{
    AuditEntry, AuditFilter, GradedRun, GradedSummary, IncidentFilter, IncidentSelection,
    OverviewRuns, StoredPlan,
};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Pipelines per overview page.
const PIPELINES_PER_PAGE: i64 = 50;
/// Runs per pipeline page (each is a point of the charts).
const RUNS_PER_PAGE: i64 = 50;
/// Incidents per listing page.
const INCIDENTS_PER_PAGE: i64 = 25;
/// Audit entries per page.
const AUDIT_PER_PAGE: i64 = 100;
/// Most audit entries one JSON Lines download holds.
const AUDIT_DOWNLOAD_MAX: i64 = 10_000;
/// Points of an overview sparkline.
const SPARK_RUNS: usize = 40;
/// Bytes of a run's log excerpt shown on the pipeline page, once escaped
/// (its tail; a page has 50).
const LOG_BYTES: usize = 1_000;
/// Bytes of the log excerpt shown on an incident's page, once escaped.
const INCIDENT_LOG_BYTES: usize = 12_000;
/// Open incidents listed on the overview (the incidents page has them all).
const OVERVIEW_OPEN: usize = 25;
/// Audit entries of an incident's timeline shown (the latest).
const TIMELINE_MAX: usize = 50;
/// Bytes of an audit entry's detail shown in a table, once escaped.
const DETAIL_BYTES: usize = 360;

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1}%", v * 100.0))
}

fn secs(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{} s", svg::fmt_num(v)))
}

/// Bytes `c` takes once the template engine has escaped it (it escapes
/// `& < > " ' \` =`), so text from CI is cut by what it will weigh on the
/// page, not by its length: a log of `"` is six times its length.
fn escaped_len(c: char) -> usize {
    match c {
        '<' | '>' => 4,
        '&' => 5,
        '"' | '\'' | '`' | '=' => 6,
        c => c.len_utf8(),
    }
}

/// The end of `text` that weighs at most `budget` bytes escaped, marked
/// when cut.
fn tail(text: &str, budget: usize) -> String {
    let mut used = 0;
    let mut start = text.len();
    for (i, c) in text.char_indices().rev() {
        used += escaped_len(c);
        if used > budget {
            return format!("…{}", &text[start..]);
        }
        start = i;
    }
    text.to_string()
}

/// The start of `text` that weighs at most `budget` bytes escaped, marked
/// when cut.
fn head(text: &str, budget: usize) -> String {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        used += escaped_len(c);
        if used > budget {
            return format!("{}…", &text[..i]);
        }
    }
    text.to_string()
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", urlencoding::encode(v)))
        .collect();
    kept.join("&")
}

/// Links to the pages before and after `page` (1-based).
#[derive(Debug, Serialize)]
struct Pager {
    page: i64,
    prev: Option<String>,
    next: Option<String>,
}

impl Pager {
    fn new(base: &str, filters: &[(&str, &str)], page: i64, has_next: bool) -> Self {
        let link = |p: i64| {
            let page = p.to_string();
            let mut pairs = filters.to_vec();
            pairs.push(("page", &page));
            let query = query_string(&pairs);
            if query.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{query}")
            }
        };
        Self {
            page,
            prev: (page > 1).then(|| link(page - 1)),
            next: has_next.then(|| link(page + 1)),
        }
    }
}

fn page_number(page: Option<i64>) -> i64 {
    page.unwrap_or(1).clamp(1, 1_000_000)
}

fn incident_href(id: i64) -> String {
    format!("/ui/incidents/{id}")
}

fn pipeline_href(name: &str) -> String {
    format!("/ui/pipelines/{}", urlencoding::encode(name))
}

/// One incident in a listing.
#[derive(Debug, Serialize)]
struct IncidentRow {
    id: i64,
    href: String,
    pipeline: String,
    pipeline_href: String,
    status: &'static str,
    closed: bool,
    severity: String,
    opened: String,
    updated: String,
    runs: i64,
    why: String,
}

impl From<&Incident> for IncidentRow {
    fn from(i: &Incident) -> Self {
        Self {
            id: i.id,
            href: incident_href(i.id),
            pipeline: i.pipeline.clone(),
            pipeline_href: pipeline_href(&i.pipeline),
            status: i.status.label(),
            closed: i.status.is_closed(),
            severity: format!("{:?}", i.severity).to_lowercase(),
            opened: when(i.opened_at),
            updated: when(i.updated_at),
            runs: i.run_count,
            why: i.verdict.why().join("; "),
        }
    }
}

// ---- overview ----

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    page: Option<i64>,
}

#[derive(Debug, Serialize)]
struct PipelineRow {
    name: String,
    href: String,
    runs_7d: u64,
    abnormal_7d: u64,
    success_7d: String,
    p50_7d: String,
    last_run: String,
    open_incidents: u64,
    spark: String,
}

#[derive(Debug, Serialize)]
struct Overview {
    title: &'static str,
    who: Who,
    open: Vec<IncidentRow>,
    /// Open incidents not listed here (see `/ui/incidents?status=active`).
    open_more: usize,
    pipelines: Vec<PipelineRow>,
    pipeline_count: usize,
    pager: Pager,
}

/// `GET /ui`: open incidents first, then every pipeline's last 7 days, a
/// page of pipelines at a time. The page's pipelines are read with two
/// queries in all (their runs, their incident counts), whatever their
/// number.
pub(super) async fn overview(
    State(state): State<ConsoleState>,
    SignedIn(viewer): SignedIn,
    JsonQuery(q): JsonQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let store = &state.app.store;
    let now = state.app.clock.now();
    let week_ago = now - Duration::days(7);
    let page = page_number(q.page);
    let (open, open_total) = store
        .incidents_page(
            IncidentSelection::status(IncidentFilter::Active),
            0,
            OVERVIEW_OPEN as i64,
        )
        .await?;
    let open: Vec<IncidentRow> = open.iter().map(IncidentRow::from).collect();
    let open_more = usize::try_from(open_total)
        .unwrap_or(0)
        .saturating_sub(open.len());
    let names = store.pipelines().await?;
    let from = ((page - 1) * PIPELINES_PER_PAGE) as usize;
    let shown: Vec<&String> = names
        .iter()
        .skip(from)
        .take(PIPELINES_PER_PAGE as usize)
        .collect();
    let mut pipelines = Vec::new();
    if let (Some(first), Some(last)) = (shown.first(), shown.last()) {
        let mut runs = store.overview_runs(first, last, week_ago).await?;
        let incidents = store.active_incident_counts(first, last).await?;
        for name in shown {
            let runs = runs.remove(name.as_str()).unwrap_or_default();
            pipelines.push(pipeline_row(name, &runs, week_ago, now, &incidents));
        }
    }
    let has_next = names.len() > from + PIPELINES_PER_PAGE as usize;
    Ok(state.page(
        "overview",
        &Overview {
            title: "Overview",
            who: Who::from(&viewer),
            open,
            open_more,
            pipelines,
            pipeline_count: names.len(),
            pager: Pager::new("/ui", &[], page, has_next),
        },
    ))
}

/// One pipeline's line of the overview from its runs (the last week's,
/// newest first, and the latest).
fn pipeline_row(
    name: &str,
    runs: &OverviewRuns,
    week_ago: DateTime<Utc>,
    now: DateTime<Utc>,
    incidents: &HashMap<String, u64>,
) -> PipelineRow {
    let week: Vec<&GradedSummary> = runs
        .recent
        .iter()
        .filter(|r| r.summary.event_time >= week_ago && r.summary.event_time <= now)
        .collect();
    let stats = crate::health::window_stats(week.iter().map(|r| &r.summary));
    let mut spark: Vec<Point> = week
        .iter()
        .take(SPARK_RUNS)
        .filter_map(|r| {
            Some(Point {
                x: r.summary.event_time.timestamp_millis() as f64,
                y: r.summary.duration_s?,
                abnormal: r.grade.is_some_and(|g| g > 0.0),
                label: String::new(),
            })
        })
        .collect();
    spark.reverse();
    PipelineRow {
        href: pipeline_href(name),
        runs_7d: stats.runs,
        abnormal_7d: week
            .iter()
            .filter(|r| r.grade.is_some_and(|g| g > 0.0))
            .count() as u64,
        success_7d: pct(stats.success_rate),
        p50_7d: secs(crate::health::percentile(&stats.durations, 0.5).map(crate::health::round1)),
        last_run: runs.latest.as_ref().map_or("–".into(), |l| {
            format!(
                "{} {} at {}",
                l.summary.run_id,
                l.summary.status,
                when(l.summary.event_time)
            )
        }),
        open_incidents: incidents.get(name).copied().unwrap_or(0),
        spark: svg::sparkline(&spark, &format!("{name}: duration of recent runs")),
        name: name.to_string(),
    }
}

fn run_time(r: &GradedRun) -> DateTime<Utc> {
    let run = &r.stored.run;
    run.finished_at
        .or(run.started_at)
        .unwrap_or(r.stored.ingested_at)
}

fn run_label(r: &GradedRun) -> String {
    let run = &r.stored.run;
    format!(
        "run {} (attempt {}), {}, {}{}",
        run.run_id,
        run.attempt,
        run.status,
        secs(run.duration_s()),
        if r.is_abnormal() { ", abnormal" } else { "" }
    )
}

fn duration_point(r: &GradedRun) -> Option<Point> {
    Some(Point {
        x: run_time(r).timestamp_millis() as f64,
        y: r.stored.run.duration_s()?,
        abnormal: r.is_abnormal(),
        label: run_label(r),
    })
}

fn failure_point(r: &GradedRun) -> Option<Point> {
    let tests = r.stored.run.tests.as_ref().filter(|t| t.total > 0)?;
    Some(Point {
        x: run_time(r).timestamp_millis() as f64,
        y: tests.failed as f64 / tests.total as f64 * 100.0,
        abnormal: r.is_abnormal(),
        label: format!(
            "{}: {} of {} tests failed",
            run_label(r),
            tests.failed,
            tests.total
        ),
    })
}

/// The points of `runs` (oldest first) that `point` draws, and the band
/// under them: what detection expected of `metric` at each run (times
/// `scale`, the chart's unit), or when no run kept one, the percentiles
/// of the points.
fn series(
    runs: &[GradedRun],
    point: fn(&GradedRun) -> Option<Point>,
    metric: &str,
    scale: f64,
) -> (Vec<Point>, Option<svg::Band>) {
    let (points, expected): (Vec<Point>, Vec<Option<(f64, f64)>>) = runs
        .iter()
        .filter_map(|r| {
            let e = r
                .expected
                .iter()
                .find(|e| e.metric == metric)
                .map(|e| (e.low * scale, e.high * scale));
            Some((point(r)?, e))
        })
        .unzip();
    let band = svg::Band::of(&points, expected);
    (points, band)
}

// ---- one pipeline ----

#[derive(Debug, Serialize)]
struct RunRow {
    run_id: String,
    attempt: u32,
    status: String,
    at: String,
    duration: String,
    stage: String,
    commit: String,
    tests: String,
    abnormal: bool,
    grade: String,
    excerpt: Option<String>,
}

#[derive(Debug, Serialize)]
struct PipelinePage {
    title: String,
    who: Who,
    name: String,
    runs_7d: u64,
    runs_30d: u64,
    success_7d: String,
    success_30d: String,
    p50_7d: String,
    p95_7d: String,
    trend: String,
    why: Vec<String>,
    total_runs: i64,
    shown: usize,
    duration_chart: String,
    failure_chart: Option<String>,
    runs: Vec<RunRow>,
    incidents: Vec<IncidentRow>,
    pager: Pager,
}

/// `GET /ui/pipelines/{name}`: health, charts of the runs on this page,
/// the runs themselves and the latest incidents.
pub(super) async fn pipeline(
    State(state): State<ConsoleState>,
    SignedIn(viewer): SignedIn,
    JsonPath(name): JsonPath<String>,
    JsonQuery(q): JsonQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let store = &state.app.store;
    let now = state.app.clock.now();
    let page = page_number(q.page);
    let active = store.count_active_incidents(&name).await?;
    let health = crate::health::pipeline_health(store, &name, now, active)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no runs of pipeline {name:?}")))?;
    let total_runs = store.count_pipeline_runs(&name).await?;
    let mut runs = store
        .runs_page(&name, (page - 1) * RUNS_PER_PAGE, RUNS_PER_PAGE)
        .await?;
    let rows: Vec<RunRow> = runs.iter().map(run_row).collect();
    runs.reverse();
    let (durations, duration_band) = series(&runs, duration_point, "duration_s", 1.0);
    let (failures, failure_band) = series(&runs, failure_point, "test_failure_rate", 100.0);
    let duration_chart = svg::history(&svg::History {
        title: &format!("{name}: duration per run"),
        unit: "s",
        points: &durations,
        band: duration_band,
    });
    let failure_chart = (!failures.is_empty()).then(|| {
        svg::history(&svg::History {
            title: &format!("{name}: failed tests per run"),
            unit: "%",
            points: &failures,
            band: failure_band,
        })
    });
    let incidents = store
        .incidents(false, Some(&name), 10)
        .await?
        .iter()
        .map(IncidentRow::from)
        .collect();
    let has_next = total_runs > page * RUNS_PER_PAGE;
    let base = pipeline_href(&name);
    Ok(state.page(
        "pipeline",
        &PipelinePage {
            title: format!("Pipeline {name}"),
            who: Who::from(&viewer),
            runs_7d: health.runs_7d,
            runs_30d: health.runs_30d,
            success_7d: pct(health.success_rate_7d),
            success_30d: pct(health.success_rate_30d),
            p50_7d: secs(health.duration_p50_s_7d),
            p95_7d: secs(health.duration_p95_s_7d),
            trend: format!(
                "durations {}, success {}",
                health.duration_trend, health.success_trend
            ),
            why: health.last_verdict_why.clone(),
            total_runs,
            shown: rows.len(),
            duration_chart,
            failure_chart,
            runs: rows,
            incidents,
            pager: Pager::new(&base, &[], page, has_next),
            name,
        },
    ))
}

fn run_row(r: &GradedRun) -> RunRow {
    let run = &r.stored.run;
    RunRow {
        run_id: run.run_id.clone(),
        attempt: run.attempt,
        status: run.status.to_string(),
        at: when(run_time(r)),
        duration: secs(run.duration_s()),
        stage: run.stage.clone().unwrap_or_default(),
        commit: run
            .commit
            .as_deref()
            .map(|c| c.chars().take(10).collect())
            .unwrap_or_default(),
        tests: run.tests.as_ref().map_or(String::new(), |t| {
            format!("{} of {} failed", t.failed, t.total)
        }),
        abnormal: r.is_abnormal(),
        grade: r.grade.map_or("not scored".into(), |g| format!("{g:.2}")),
        excerpt: run
            .log_excerpt
            .as_deref()
            .filter(|l| !l.trim().is_empty())
            .map(|l| tail(l, LOG_BYTES)),
    }
}

// ---- incidents ----

#[derive(Debug, Deserialize)]
pub(super) struct IncidentsQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    pipeline: String,
    /// Opened at or after: `7d`, `12h`, a date or an RFC 3339 time.
    #[serde(default)]
    since: String,
    /// Opened before, written the same way.
    #[serde(default)]
    until: String,
    page: Option<i64>,
}

#[derive(Debug, Serialize)]
struct StatusOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

#[derive(Debug, Serialize)]
struct IncidentsPage {
    title: &'static str,
    who: Who,
    statuses: Vec<StatusOption>,
    pipeline: String,
    since: String,
    until: String,
    /// What is wrong with the filters (the page answers 400).
    error: Option<String>,
    incidents: Vec<IncidentRow>,
    total: i64,
    pager: Pager,
}

/// The status filter as written in the query.
fn status_filter(status: &str) -> Result<IncidentFilter<'static>, String> {
    match status {
        "" | "all" => Ok(IncidentFilter::All),
        "active" => Ok(IncidentFilter::Active),
        s => IncidentStatus::parse(s)
            .map(|parsed| IncidentFilter::Status(parsed.as_str()))
            .ok_or_else(|| {
                format!("status {s:?} is not one of active, all, or an incident status")
            }),
    }
}

/// A time filter as written in the query (`None` when empty).
fn time_filter(
    field: &str,
    raw: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    crate::clock::parse_point(raw, now)
        .map(Some)
        .map_err(|e| format!("{field} {e}"))
}

/// `GET /ui/incidents?status=&pipeline=&since=&until=&page=`: newest
/// first. `since` and `until` bound when incidents were opened (`7d`,
/// `12h`, a date or an RFC 3339 time); a value that does not parse answers
/// 400 with the form, its values kept and the field named.
pub(super) async fn incidents(
    State(state): State<ConsoleState>,
    SignedIn(viewer): SignedIn,
    JsonQuery(q): JsonQuery<IncidentsQuery>,
) -> Result<Response, ApiError> {
    let now = state.app.clock.now();
    let status = q.status.trim();
    let pipeline = q.pipeline.trim();
    let (since, until) = (q.since.trim(), q.until.trim());
    let parsed = (|| {
        let filter = status_filter(status)?;
        let opened_since = time_filter("since", since, now)?;
        let opened_before = time_filter("until", until, now)?;
        if let (Some(a), Some(b)) = (opened_since, opened_before) {
            if a >= b {
                return Err(format!("until {until:?} is not after since {since:?}"));
            }
        }
        Ok(IncidentSelection {
            status: filter,
            pipeline: (!pipeline.is_empty()).then_some(pipeline),
            opened_since,
            opened_before,
        })
    })();
    let page = page_number(q.page);
    let (found, total, error) = match parsed {
        Ok(selection) => {
            let (found, total) = state
                .app
                .store
                .incidents_page(
                    selection,
                    (page - 1) * INCIDENTS_PER_PAGE,
                    INCIDENTS_PER_PAGE,
                )
                .await?;
            (found, total, None)
        }
        Err(why) => (Vec::new(), 0, Some(why)),
    };
    let mut statuses = vec![
        StatusOption {
            value: "all",
            label: "all",
            selected: matches!(status, "" | "all"),
        },
        StatusOption {
            value: "active",
            label: "not resolved or dismissed",
            selected: status == "active",
        },
    ];
    statuses.extend(IncidentStatus::ALL.into_iter().map(|s| StatusOption {
        value: s.as_str(),
        label: s.label(),
        selected: status == s.as_str(),
    }));
    let bad = error.is_some();
    let mut response = state.page(
        "incidents",
        &IncidentsPage {
            title: "Incidents",
            who: Who::from(&viewer),
            statuses,
            incidents: found.iter().map(IncidentRow::from).collect(),
            total,
            pager: Pager::new(
                "/ui/incidents",
                &[
                    ("status", status),
                    ("pipeline", pipeline),
                    ("since", since),
                    ("until", until),
                ],
                page,
                total > page * INCIDENTS_PER_PAGE,
            ),
            pipeline: pipeline.to_string(),
            since: since.to_string(),
            until: until.to_string(),
            error,
        },
    );
    if bad && response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::BAD_REQUEST;
        // Marks the page as already answered for the JSON error layer.
        response
            .extensions_mut()
            .insert(ErrorCode::InvalidParameter);
    }
    Ok(response)
}

// ---- one incident ----

#[derive(Debug, Serialize)]
struct DeviationRow {
    metric: String,
    observed: String,
    expected: String,
    words: String,
}

impl From<&MetricDeviation> for DeviationRow {
    fn from(d: &MetricDeviation) -> Self {
        Self {
            metric: crate::domain::metric_label(&d.metric).to_string(),
            observed: crate::domain::amount(&d.metric, d.observed),
            expected: crate::domain::amount(&d.metric, d.expected),
            words: d.describe(),
        }
    }
}

#[derive(Debug, Serialize)]
struct StepView {
    number: usize,
    title: String,
    kind: String,
    risk: String,
    why: String,
    call: String,
}

#[derive(Debug, Serialize)]
struct PlanView {
    id: i64,
    backend: String,
    status: String,
    created: String,
    summary: String,
    cause: String,
    confidence: String,
    steps: Vec<StepView>,
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct VoteView {
    who: String,
    platform: String,
    choice: String,
    via: String,
    at: String,
    outcome: String,
    counted: bool,
}

#[derive(Debug, Serialize)]
struct ExecutionView {
    step: u32,
    kind: String,
    call: String,
    status: String,
    dry_run: String,
    outcome: Option<String>,
    error: Option<String>,
    attempts: i64,
}

#[derive(Debug, Serialize)]
struct ApprovalView {
    id: i64,
    plan: String,
    status: String,
    created: String,
    expires: String,
    approved: Option<String>,
    votes: Vec<VoteView>,
    executions: Vec<ExecutionView>,
}

#[derive(Debug, Serialize)]
struct TimelineRow {
    at: String,
    kind: String,
    actor: String,
    subject: String,
    detail: String,
}

impl From<&AuditEntry> for TimelineRow {
    fn from(e: &AuditEntry) -> Self {
        Self {
            at: when(e.at),
            kind: e.kind.clone(),
            actor: e.actor.clone(),
            subject: e.subject.clone(),
            detail: head(&e.detail.to_string(), DETAIL_BYTES),
        }
    }
}

#[derive(Debug, Serialize)]
struct IncidentPage {
    title: String,
    who: Who,
    incident: IncidentRow,
    resolved: Option<String>,
    silenced: bool,
    run_id: String,
    run_status: String,
    stage: String,
    commit: String,
    author: String,
    excerpt: Option<String>,
    deviations: Vec<DeviationRow>,
    why: Vec<String>,
    chart: String,
    plans: Vec<PlanView>,
    approvals: Vec<ApprovalView>,
    timeline: Vec<TimelineRow>,
    /// Earlier entries left out (the audit page has them).
    timeline_earlier: usize,
    audit_href: String,
}

/// `GET /ui/incidents/{id}`: the whole story of one incident.
pub(super) async fn incident(
    State(state): State<ConsoleState>,
    SignedIn(viewer): SignedIn,
    JsonPath(id): JsonPath<i64>,
) -> Result<Response, ApiError> {
    let store = &state.app.store;
    let incident = store
        .incident(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    let mut subjects = vec![format!("incident/{id}")];
    if let Some(a) = incident.anomaly_id {
        subjects.push(format!("anomaly/{a}"));
    }
    let plans = store.plans_for_incident(&incident).await?;
    let approvals = store.incident_approvals(id).await?;
    subjects.extend(plans.iter().map(|p| format!("plan/{}", p.id)));
    subjects.extend(
        approvals
            .iter()
            .map(|a| format!("approval_request:{}", a.request.id)),
    );
    let mut timeline = store.audit_for(&subjects).await?;
    let timeline_earlier = timeline.len().saturating_sub(TIMELINE_MAX);
    timeline.drain(..timeline_earlier);
    let until = incident.updated_at + Duration::days(1);
    let mut history: Vec<GradedRun> = store
        .runs_page(&incident.pipeline, 0, 200)
        .await?
        .into_iter()
        .filter(|r| run_time(r) <= until)
        .take(svg::MAX_POINTS.min(60))
        .collect();
    history.reverse();
    let (points, band) = series(&history, duration_point, "duration_s", 1.0);
    let chart = svg::history(&svg::History {
        title: &format!(
            "{}: duration per run up to this incident",
            incident.pipeline
        ),
        unit: "s",
        points: &points,
        band,
    });
    let run = &incident.latest_run;
    Ok(state.page(
        "incident",
        &IncidentPage {
            title: format!("Incident #{id}"),
            who: Who::from(&viewer),
            resolved: incident.resolved_at.map(when),
            silenced: incident.silenced,
            run_id: format!("{} (attempt {})", run.run_id, run.attempt),
            run_status: run.status.to_string(),
            stage: run.stage.clone().unwrap_or_default(),
            commit: run.commit.clone().unwrap_or_default(),
            author: run.commit_author.clone().unwrap_or_default(),
            excerpt: run
                .log_excerpt
                .as_deref()
                .filter(|l| !l.trim().is_empty())
                .map(|l| tail(l, INCIDENT_LOG_BYTES)),
            deviations: incident
                .verdict
                .deviations
                .iter()
                .map(DeviationRow::from)
                .collect(),
            why: incident.verdict.why(),
            chart,
            plans: plans.iter().map(plan_view).collect(),
            approvals: approvals
                .iter()
                .map(|a| ApprovalView {
                    id: a.request.id,
                    plan: a.request.plan_ref.clone().unwrap_or_default(),
                    status: a.request.status.to_string(),
                    created: when(a.request.created_at),
                    expires: when(a.request.expires_at),
                    approved: a.request.approved_at.map(when),
                    votes: a
                        .votes
                        .iter()
                        .map(|v| VoteView {
                            who: v.vote.approver.user.clone(),
                            platform: v.vote.approver.platform.clone(),
                            choice: v.vote.choice.label().to_string(),
                            via: v.vote.via.as_str().to_string(),
                            at: when(v.vote.at),
                            outcome: v.outcome.clone(),
                            counted: v.effective,
                        })
                        .collect(),
                    executions: a
                        .executions
                        .iter()
                        .map(|e| ExecutionView {
                            step: e.step_no,
                            kind: e.kind.clone(),
                            call: pretty(&e.call),
                            status: e.status.as_str().to_string(),
                            dry_run: e.dry_run.clone(),
                            outcome: e.outcome.as_ref().map(pretty),
                            error: e.error.clone(),
                            attempts: e.attempts,
                        })
                        .collect(),
                })
                .collect(),
            timeline: timeline.iter().map(TimelineRow::from).collect(),
            timeline_earlier,
            audit_href: format!("/ui/audit?subject=incident%2F{id}"),
            incident: IncidentRow::from(&incident),
        },
    ))
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn plan_view(p: &StoredPlan) -> PlanView {
    let plan = p.validated.as_ref().or(p.plan.as_ref());
    let empty = Value::Null;
    let plan = plan.unwrap_or(&empty);
    let steps = plan
        .get("steps")
        .and_then(Value::as_array)
        .map(|steps| {
            steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let title = match text(s, "playbook_title") {
                        t if !t.is_empty() => format!("{t} → {}", text(s, "action")),
                        _ => format!("{} → {}", text(s, "playbook"), text(s, "action")),
                    };
                    let mut call = serde_json::Map::new();
                    for key in ["kind", "target", "params"] {
                        if let Some(v) = s.get(key) {
                            call.insert(key.into(), v.clone());
                        }
                    }
                    StepView {
                        number: i + 1,
                        title,
                        kind: text(s, "kind"),
                        risk: text(s, "risk"),
                        why: text(s, "why"),
                        call: pretty(&Value::Object(call)),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    PlanView {
        id: p.id,
        backend: p.backend.clone(),
        status: p.status.as_str().to_string(),
        created: when(p.created_at),
        summary: text(plan, "summary"),
        cause: text(plan, "suspected_cause"),
        confidence: plan
            .get("confidence")
            .and_then(Value::as_f64)
            .map_or(String::new(), |c| format!("{:.0}%", c * 100.0)),
        steps,
        errors: p.errors.clone(),
    }
}

// ---- audit ----

#[derive(Debug, Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    actor: String,
    /// Only entries of the last N days.
    days: Option<i64>,
    page: Option<i64>,
}

impl AuditQuery {
    fn filter(&self, now: DateTime<Utc>) -> AuditFilter<'_> {
        AuditFilter {
            kind: self.kind.trim(),
            subject: self.subject.trim(),
            actor: self.actor.trim(),
            since: self
                .days
                .filter(|d| *d > 0)
                .map(|d| now - Duration::days(d.min(36_500))),
        }
    }

    fn days_text(&self) -> String {
        self.days
            .filter(|d| *d > 0)
            .map_or(String::new(), |d| d.to_string())
    }
}

#[derive(Debug, Serialize)]
struct AuditPage {
    title: &'static str,
    who: Who,
    kind: String,
    subject: String,
    actor: String,
    days: String,
    entries: Vec<TimelineRow>,
    download: String,
    pager: Pager,
}

/// `GET /ui/audit?kind=&subject=&actor=&days=&page=`: newest first.
pub(super) async fn audit(
    State(state): State<ConsoleState>,
    SignedIn(viewer): SignedIn,
    JsonQuery(q): JsonQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let page = page_number(q.page);
    let mut entries = state
        .app
        .store
        .audit_page(
            q.filter(state.app.clock.now()),
            (page - 1) * AUDIT_PER_PAGE,
            AUDIT_PER_PAGE + 1,
        )
        .await?;
    let has_next = entries.len() > AUDIT_PER_PAGE as usize;
    entries.truncate(AUDIT_PER_PAGE as usize);
    let days = q.days_text();
    let filters = [
        ("kind", q.kind.trim()),
        ("subject", q.subject.trim()),
        ("actor", q.actor.trim()),
        ("days", days.as_str()),
    ];
    let query = query_string(&filters);
    Ok(state.page(
        "audit",
        &AuditPage {
            title: "Audit trail",
            who: Who::from(&viewer),
            kind: q.kind.trim().to_string(),
            subject: q.subject.trim().to_string(),
            actor: q.actor.trim().to_string(),
            entries: entries.iter().map(TimelineRow::from).collect(),
            download: if query.is_empty() {
                "/ui/audit.jsonl".into()
            } else {
                format!("/ui/audit.jsonl?{query}")
            },
            pager: Pager::new("/ui/audit", &filters, page, has_next),
            days,
        },
    ))
}

/// `GET /ui/audit.jsonl` with the audit page's filters: the matching
/// entries (newest first, at most 10,000) as JSON Lines.
pub(super) async fn audit_jsonl(
    State(state): State<ConsoleState>,
    SignedIn(_viewer): SignedIn,
    JsonQuery(q): JsonQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let entries = state
        .app
        .store
        .audit_page(q.filter(state.app.clock.now()), 0, AUDIT_DOWNLOAD_MAX)
        .await?;
    let mut body = String::new();
    for entry in &entries {
        if let Ok(line) = serde_json::to_string(entry) {
            body.push_str(&line);
            body.push('\n');
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"pipemedic-audit.jsonl\"",
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_by_its_escaped_weight() {
        assert_eq!(tail("abc", 3), "abc");
        assert_eq!(tail("abcdef", 3), "…def");
        // `"` weighs six bytes escaped: a budget of 13 keeps two.
        assert_eq!(tail(&"\"".repeat(10), 13), format!("…{}", "\"".repeat(2)));
        assert_eq!(head("<<<<", 9), "<<…");
        assert_eq!(head("héllo", 3), "hé…");
        assert_eq!(head("ok", 2), "ok");
    }
}
