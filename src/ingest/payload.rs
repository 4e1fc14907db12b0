//! What every provider adapter shares: the [`AdapterError`] that separates
//! bodies that are not JSON (HTTP 400) from JSON of the wrong shape (HTTP
//! 422), a reader that names the exact field it could not use, the
//! timestamp formats providers send, and pure functions that merge partial
//! updates (a stage timing, a newer delivery) into a [`Run`].
//!
//! Nothing here does I/O; nothing here knows about a particular provider.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::domain::{FieldError, Run, RunStatus, StageTiming};

/// Why a provider payload could not be turned into pipemedic's shapes.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The body is not JSON at all (HTTP 400). The inner error carries the
    /// line and column.
    #[error("body is not valid JSON: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The body is JSON but a field the adapter needs is missing or has the
    /// wrong type or value (HTTP 422).
    #[error("{field}: {message}")]
    Shape {
        /// Dotted path of the field, e.g. `workflow_run.conclusion` or
        /// `builds[2].status`; `$` for the whole body.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The two classes of [`AdapterError`], one per HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdapterErrorKind {
    /// Not JSON: answer 400.
    Malformed,
    /// Valid JSON, wrong shape: answer 422.
    Shape,
}

impl AdapterError {
    /// A shape error for `field`.
    pub fn shape(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Shape {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Which class of error this is.
    pub fn kind(&self) -> AdapterErrorKind {
        match self {
            Self::Malformed(_) => AdapterErrorKind::Malformed,
            Self::Shape { .. } => AdapterErrorKind::Shape,
        }
    }

    /// The HTTP status this error is answered with (400 or 422).
    pub fn http_status(&self) -> u16 {
        match self.kind() {
            AdapterErrorKind::Malformed => 400,
            AdapterErrorKind::Shape => 422,
        }
    }

    /// Line and column (1-based) of a malformed body.
    pub fn line_column(&self) -> Option<(usize, usize)> {
        match self {
            Self::Malformed(e) => Some((e.line(), e.column())),
            Self::Shape { .. } => None,
        }
    }

    /// The offending field of a shape error, in the API's error-detail form.
    pub fn field_error(&self) -> Option<FieldError> {
        match self {
            Self::Malformed(_) => None,
            Self::Shape { field, message } => Some(FieldError::new(field, message)),
        }
    }
}

/// Parses a body into JSON, mapping syntax errors to [`AdapterError::Malformed`].
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, AdapterError> {
    serde_json::from_slice(body).map_err(AdapterError::Malformed)
}

/// A JSON object together with its path in the payload, so that every
/// accessor can name the exact field it found missing or wrong.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
}

/// Owned path storage for nested [`Obj`] readers.
pub(crate) struct Nested<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Nested<'a> {
    /// Borrows the nested object as a reader.
    pub(crate) fn obj(&self) -> Obj<'_> {
        Obj {
            map: self.map,
            path: &self.path,
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Obj<'a> {
    /// The whole body, which must be an object.
    pub(crate) fn root(value: &'a Value) -> Result<Self, AdapterError> {
        match value {
            Value::Object(map) => Ok(Self { map, path: "" }),
            other => Err(AdapterError::shape(
                "$",
                format!("expected a JSON object, got {}", json_kind(other)),
            )),
        }
    }

    /// The path of `key` inside this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn err(&self, key: &str, message: impl Into<String>) -> AdapterError {
        AdapterError::shape(self.path_of(key), message)
    }

    /// The value of `key`, treating JSON `null` as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A required nested object.
    pub(crate) fn obj(&self, key: &str) -> Result<Nested<'a>, AdapterError> {
        self.opt_obj(key)?
            .ok_or_else(|| self.err(key, "is required (an object)"))
    }

    /// An optional nested object (absent or `null` is `None`).
    pub(crate) fn opt_obj(&self, key: &str) -> Result<Option<Nested<'a>>, AdapterError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Nested {
                map,
                path: self.path_of(key),
            })),
            Some(other) => {
                Err(self.err(key, format!("expected an object, got {}", json_kind(other))))
            }
        }
    }

    /// The objects of an optional array (absent or `null` is empty).
    pub(crate) fn array(&self, key: &str) -> Result<Vec<Nested<'a>>, AdapterError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let path = format!("{}[{i}]", self.path_of(key));
                    match item {
                        Value::Object(map) => Ok(Nested { map, path }),
                        other => Err(AdapterError::shape(
                            path,
                            format!("expected an object, got {}", json_kind(other)),
                        )),
                    }
                })
                .collect(),
            Some(other) => {
                Err(self.err(key, format!("expected an array, got {}", json_kind(other))))
            }
        }
    }

    /// A required, non-empty string.
    pub(crate) fn str(&self, key: &str) -> Result<&'a str, AdapterError> {
        match self.opt_str(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(self.err(key, "must not be empty")),
            None => Err(self.err(key, "is required (a string)")),
        }
    }

    /// An optional string (absent or `null` is `None`).
    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, AdapterError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.err(key, format!("expected a string, got {}", json_kind(other))))
            }
        }
    }

    /// A required identifier that providers send either as a number or as a
    /// string; returned as a string.
    pub(crate) fn id(&self, key: &str) -> Result<String, AdapterError> {
        match self.get(key) {
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
            Some(Value::String(s)) if s.trim().chars().count() > MAX_DELIVERY_ID_CHARS => Err(self
                .err(
                    key,
                    format!("longer than {MAX_DELIVERY_ID_CHARS} characters"),
                )),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(other) => Err(self.err(
                key,
                format!(
                    "expected an id (number or string), got {}",
                    json_kind(other)
                ),
            )),
            None => Err(self.err(key, "is required (an id)")),
        }
    }

    /// An optional whole number, accepted as a JSON number (`3`, `3.0`) or a
    /// numeric string (`"3"`).
    pub(crate) fn opt_u64(&self, key: &str) -> Result<Option<u64>, AdapterError> {
        let bad = |v: &Value| self.err(key, format!("expected a whole number >= 0, got {v}"));
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(u), _) => Ok(Some(u)),
                (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= u32::MAX as f64 => {
                    Ok(Some(f as u64))
                }
                _ => Err(bad(v)),
            },
            Some(v @ Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad(v)),
            Some(other) => Err(bad(other)),
        }
    }

    /// An optional number of seconds (or any non-negative quantity).
    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>, AdapterError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f)),
                _ => Err(self.err(key, format!("expected a number >= 0, got {n}"))),
            },
            Some(other) => {
                Err(self.err(key, format!("expected a number, got {}", json_kind(other))))
            }
        }
    }

    /// An optional boolean.
    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, AdapterError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => {
                Err(self.err(key, format!("expected a boolean, got {}", json_kind(other))))
            }
        }
    }

    /// A required timestamp in one of the formats of [`parse_time`].
    pub(crate) fn time(&self, key: &str) -> Result<DateTime<Utc>, AdapterError> {
        self.opt_time(key)?
            .ok_or_else(|| self.err(key, "is required (a timestamp)"))
    }

    /// An optional timestamp in one of the formats of [`parse_time`].
    pub(crate) fn opt_time(&self, key: &str) -> Result<Option<DateTime<Utc>>, AdapterError> {
        match self.opt_str(key)? {
            None => Ok(None),
            Some(raw) => parse_time(raw).map(Some).ok_or_else(|| {
                self.err(
                    key,
                    format!(
                        "{raw:?} is not a timestamp (expected RFC 3339, e.g. 2026-11-20T10:00:00Z)"
                    ),
                )
            }),
        }
    }
}

/// Longest delivery or event id accepted: `X-GitHub-Delivery`,
/// `X-Gitlab-Event-UUID`, `Idempotency-Key`, an EventBridge event's `id`.
pub const MAX_DELIVERY_ID_CHARS: usize = 256;

/// A delivery id read from the header `header`: `None` when absent or
/// empty; an error naming the header and the limit when it is longer than
/// [`MAX_DELIVERY_ID_CHARS`] or holds control characters.
pub fn delivery_id<'a>(
    header: &str,
    value: Option<&'a str>,
) -> Result<Option<&'a str>, AdapterError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > MAX_DELIVERY_ID_CHARS {
        return Err(AdapterError::shape(
            header,
            format!("longer than {MAX_DELIVERY_ID_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(AdapterError::shape(header, "contains control characters"));
    }
    Ok(Some(value))
}

/// Parses the timestamp formats CI providers send, all read as UTC unless
/// they carry an offset:
///
/// - RFC 3339 / ISO 8601: `2026-11-20T10:00:00Z`, `2021-02-23T02:41:37.886Z`,
///   `2016-08-12T17:23:21+02:00`;
/// - GitLab's `2016-08-12 15:23:28 UTC` and `2016-08-12 15:23:28 +0200`;
/// - CodeBuild's `Sep 1, 2017 4:12:29 PM`.
pub fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    let s = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Some(naive) = s.strip_suffix(" UTC").or_else(|| s.strip_suffix('Z')) {
        for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(naive.trim(), fmt) {
                return Some(t.and_utc());
            }
        }
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f %z") {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%b %d, %Y %I:%M:%S %p")
        .ok()
        .map(|t| t.and_utc())
}

/// Merges one stage timing into a run: a stage of the same name is
/// replaced, otherwise the stage is added. Stages stay ordered by start time
/// (then name). When the merged stage failed and the run names no failed
/// stage yet, the run's `stage` becomes this one.
pub fn merge_stage(run: &mut Run, stage: StageTiming) {
    if stage.status == Some(RunStatus::Failed) && run.stage.is_none() {
        run.stage = Some(stage.name.clone());
    }
    match run.stages.iter_mut().find(|s| s.name == stage.name) {
        Some(existing) => *existing = stage,
        None => run.stages.push(stage),
    }
    sort_stages(&mut run.stages);
}

/// Orders stages by start time (unknown starts last), then by name.
pub(crate) fn sort_stages(stages: &mut [StageTiming]) {
    stages.sort_by(|a, b| {
        let key = |s: &StageTiming| (s.started_at.is_none(), s.started_at);
        key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
}

/// Combines a newly parsed delivery with the run already stored for the
/// same pipeline, run id and attempt, for sources whose deliveries each
/// carry only part of a run (GitHub and GitLab send run and job events
/// separately and not necessarily in order).
///
/// - A final run is never turned back into a running one: when `stored`
///   is final and `incoming` is still running, `stored` keeps its status,
///   times and stage.
/// - Stages of both are kept; a stage in `incoming` replaces the stored
///   stage of the same name.
/// - Optional fields missing from `incoming` are taken from `stored`.
pub fn merge_update(stored: Option<&Run>, incoming: Run) -> Run {
    let Some(stored) = stored else {
        return incoming;
    };
    if stored.status.is_final() && !incoming.status.is_final() {
        let mut keep = stored.clone();
        let extra = optional_of(&incoming);
        for stage in incoming.stages {
            merge_stage(&mut keep, stage);
        }
        fill_missing(&mut keep, extra);
        return keep;
    }
    let mut base = incoming;
    fill_missing(&mut base, optional_of(stored));
    let mut stages = stored.stages.clone();
    for stage in std::mem::take(&mut base.stages) {
        match stages.iter_mut().find(|s| s.name == stage.name) {
            Some(existing) => *existing = stage,
            None => stages.push(stage),
        }
    }
    sort_stages(&mut stages);
    base.stages = stages;
    if base.stage.is_none() && base.status == RunStatus::Failed {
        base.stage = base
            .stages
            .iter()
            .find(|s| s.status == Some(RunStatus::Failed))
            .map(|s| s.name.clone());
    }
    base
}

/// The `email` of a CI payload's person object, when it is an address
/// (GitLab sends `[REDACTED]` when the user hides it): trimmed, kept only
/// with one `@` and something on each side.
pub(crate) fn email_of(person: Obj<'_>) -> Result<Option<String>, AdapterError> {
    Ok(person.opt_str("email")?.map(str::trim).and_then(|e| {
        let (local, domain) = e.split_once('@')?;
        (!local.is_empty() && !domain.is_empty() && !domain.contains('@')).then(|| e.to_string())
    }))
}

/// The optional fields of a run, used to fill gaps in a newer delivery.
struct Optional {
    started_at: Option<DateTime<Utc>>,
    commit: Option<String>,
    commit_author: Option<String>,
    commit_author_email: Option<String>,
    commit_author_login: Option<String>,
    commit_message: Option<String>,
    tests: Option<crate::domain::TestCounts>,
    resources: Option<crate::domain::ResourceMetrics>,
    deploy: Option<crate::domain::DeployMetrics>,
    metrics: std::collections::BTreeMap<String, f64>,
    log_excerpt: Option<String>,
    log_url: Option<String>,
    url: Option<String>,
}

fn optional_of(run: &Run) -> Optional {
    Optional {
        started_at: run.started_at,
        commit: run.commit.clone(),
        commit_author: run.commit_author.clone(),
        commit_author_email: run.commit_author_email.clone(),
        commit_author_login: run.commit_author_login.clone(),
        commit_message: run.commit_message.clone(),
        tests: run.tests,
        resources: run.resources,
        deploy: run.deploy,
        metrics: run.metrics.clone(),
        log_excerpt: run.log_excerpt.clone(),
        log_url: run.log_url.clone(),
        url: run.url.clone(),
    }
}

fn fill_missing(run: &mut Run, from: Optional) {
    run.started_at = run.started_at.or(from.started_at);
    run.commit = run.commit.take().or(from.commit);
    run.commit_author = run.commit_author.take().or(from.commit_author);
    run.commit_author_email = run.commit_author_email.take().or(from.commit_author_email);
    run.commit_author_login = run.commit_author_login.take().or(from.commit_author_login);
    run.commit_message = run.commit_message.take().or(from.commit_message);
    run.tests = run.tests.or(from.tests);
    run.resources = run.resources.or(from.resources);
    run.deploy = run.deploy.or(from.deploy);
    for (name, value) in from.metrics {
        run.metrics.entry(name).or_insert(value);
    }
    run.log_excerpt = run.log_excerpt.take().or(from.log_excerpt);
    run.log_url = run.log_url.take().or(from.log_url);
    run.url = run.url.take().or(from.url);
}

/// A `running` run that carries only one stage timing: what a job event
/// (GitHub `workflow_job`, GitLab Job Hook) knows about its run. Combine it
/// with the stored run through [`merge_update`].
pub fn stage_update(
    pipeline: impl Into<String>,
    run_id: impl Into<String>,
    attempt: u32,
    stage: StageTiming,
) -> Run {
    let mut run = Run::new(pipeline, run_id, RunStatus::Running);
    run.attempt = attempt;
    merge_stage(&mut run, stage);
    run
}

/// The commit message in a CodePipeline source revision summary: sources
/// behind a connection (GitHub, Bitbucket, GitLab) send a JSON object with
/// `CommitMessage`; others send the message itself. `None` for a JSON
/// object without one. Shared by the EventBridge assembly and the poller.
pub fn revision_commit_message(summary: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(summary) {
        Ok(serde_json::Value::Object(map)) => map
            .get("CommitMessage")
            .and_then(|m| m.as_str())
            .map(str::to_string),
        _ => Some(summary.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn webhook_runs_have_their_free_text_bounded() {
        let mut run = Run::new(" p ", "1", RunStatus::Failed);
        run.commit_message = Some("é".repeat(10_000));
        let run = WebhookEvent::Run(Box::new(run)).into_run().unwrap();
        assert_eq!(run.pipeline, "p");
        assert_eq!(run.commit_message.unwrap().chars().count(), 4096);
    }

    #[test]
    fn delivery_ids_are_capped() {
        assert_eq!(delivery_id("X-GitHub-Delivery", None).unwrap(), None);
        assert_eq!(delivery_id("X-GitHub-Delivery", Some(" ")).unwrap(), None);
        let ok = "a".repeat(MAX_DELIVERY_ID_CHARS);
        assert_eq!(
            delivery_id("X-GitHub-Delivery", Some(&ok)).unwrap(),
            Some(ok.as_str())
        );
        let long = "a".repeat(200 * 1024);
        let err = delivery_id("X-GitHub-Delivery", Some(&long)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "X-GitHub-Delivery: longer than 256 characters"
        );
        assert_eq!(err.http_status(), 422);

        let v: Value = serde_json::json!({"id": "e".repeat(257), "n": 7});
        let root = Obj::root(&v).unwrap();
        assert_eq!(
            root.id("id").unwrap_err().to_string(),
            "id: longer than 256 characters"
        );
        assert_eq!(root.id("n").unwrap(), "7");
    }

    #[test]
    fn provider_time_formats() {
        assert_eq!(
            parse_time("2016-08-12 15:23:28 UTC"),
            Some(t("2016-08-12T15:23:28Z"))
        );
        assert_eq!(
            parse_time("2016-08-12T17:23:21+02:00"),
            Some(t("2016-08-12T15:23:21Z"))
        );
        assert_eq!(
            parse_time("2021-02-23T02:41:37.886Z"),
            Some(t("2021-02-23T02:41:37.886Z"))
        );
        assert_eq!(
            parse_time("2016-08-12 17:23:28 +0200"),
            Some(t("2016-08-12T15:23:28Z"))
        );
        assert_eq!(
            parse_time("Sep 1, 2017 4:12:29 PM"),
            Some(t("2017-09-01T16:12:29Z"))
        );
        assert_eq!(
            parse_time("Nov 25, 2026 12:03:05 AM"),
            Some(t("2026-11-25T00:03:05Z"))
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn errors_name_the_field_and_their_class() {
        let v: Value = serde_json::from_str(r#"{"a": {"b": 3, "c": [{"d": "x"}, 7]}}"#).unwrap();
        let root = Obj::root(&v).unwrap();
        let a = root.obj("a").unwrap();
        let err = a.obj().str("b").unwrap_err();
        assert_eq!(err.to_string(), "a.b: expected a string, got a number");
        assert_eq!(err.kind(), AdapterErrorKind::Shape);
        assert_eq!(err.http_status(), 422);
        assert_eq!(err.field_error().unwrap().field, "a.b");
        let err = a.obj().array("c").err().unwrap();
        assert_eq!(err.field_error().unwrap().field, "a.c[1]");
        let err = a.obj().time("missing").unwrap_err();
        assert_eq!(err.field_error().unwrap().field, "a.missing");

        let err = parse_json(b"{\"a\": ").unwrap_err();
        assert_eq!(err.kind(), AdapterErrorKind::Malformed);
        assert_eq!(err.http_status(), 400);
        assert_eq!(err.line_column(), Some((1, 6)));
        assert!(err.field_error().is_none());

        let err = Obj::root(&Value::Array(vec![])).unwrap_err();
        assert_eq!(err.to_string(), "$: expected a JSON object, got an array");
    }

    fn stage(name: &str, status: RunStatus, start: &str, end: &str) -> StageTiming {
        StageTiming {
            job_id: None,
            name: name.into(),
            status: Some(status),
            started_at: Some(t(start)),
            finished_at: Some(t(end)),
        }
    }

    #[test]
    fn merge_stage_replaces_by_name_and_orders_by_start() {
        let mut run = Run::new("p", "1", RunStatus::Failed);
        merge_stage(
            &mut run,
            stage(
                "test",
                RunStatus::Running,
                "2026-11-20T10:02:00Z",
                "2026-11-20T10:02:00Z",
            ),
        );
        merge_stage(
            &mut run,
            stage(
                "build",
                RunStatus::Succeeded,
                "2026-11-20T10:00:00Z",
                "2026-11-20T10:01:00Z",
            ),
        );
        merge_stage(
            &mut run,
            stage(
                "test",
                RunStatus::Failed,
                "2026-11-20T10:02:00Z",
                "2026-11-20T10:05:00Z",
            ),
        );
        let names: Vec<_> = run.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["build", "test"]);
        assert_eq!(run.stages[1].duration_s(), Some(180.0));
        assert_eq!(run.stage.as_deref(), Some("test"));
    }

    #[test]
    fn merge_update_never_regresses_a_final_run_and_keeps_stages() {
        let mut done = Run::new("p", "1", RunStatus::Failed);
        done.finished_at = Some(t("2026-11-20T10:05:00Z"));
        done.commit = Some("abc".into());
        let mut late = Run::new("p", "1", RunStatus::Running);
        late.stages.push(stage(
            "lint",
            RunStatus::Succeeded,
            "2026-11-20T10:00:00Z",
            "2026-11-20T10:00:30Z",
        ));
        let merged = merge_update(Some(&done), late);
        assert_eq!(merged.status, RunStatus::Failed);
        assert_eq!(merged.finished_at, done.finished_at);
        assert_eq!(merged.stages.len(), 1);

        let mut running = Run::new("p", "1", RunStatus::Running);
        running.stages.push(stage(
            "test",
            RunStatus::Failed,
            "2026-11-20T10:01:00Z",
            "2026-11-20T10:04:00Z",
        ));
        let mut final_run = Run::new("p", "1", RunStatus::Failed);
        final_run.commit = None;
        let merged = merge_update(Some(&running), final_run);
        assert_eq!(merged.status, RunStatus::Failed);
        assert_eq!(merged.stages.len(), 1);
        assert_eq!(merged.stage.as_deref(), Some("test"));
        assert_eq!(merge_update(None, done.clone()), done);
    }

    #[test]
    fn job_first_then_run_then_late_job() {
        let job = stage_update(
            "p",
            "1",
            2,
            stage(
                "test",
                RunStatus::Failed,
                "2026-11-20T10:01:00Z",
                "2026-11-20T10:04:00Z",
            ),
        );
        assert_eq!(job.status, RunStatus::Running);
        assert_eq!(job.attempt, 2);
        let stored = merge_update(None, job);

        let mut final_run = Run::new("p", "1", RunStatus::Failed);
        final_run.attempt = 2;
        final_run.started_at = Some(t("2026-11-20T10:00:00Z"));
        final_run.finished_at = Some(t("2026-11-20T10:05:00Z"));
        final_run.metrics.insert("queued_duration_s".into(), 3.0);
        let stored = merge_update(Some(&stored), final_run);
        assert_eq!(stored.status, RunStatus::Failed);
        assert_eq!(stored.stage.as_deref(), Some("test"));

        let late = stage_update(
            "p",
            "1",
            2,
            stage(
                "build",
                RunStatus::Succeeded,
                "2026-11-20T10:00:05Z",
                "2026-11-20T10:00:55Z",
            ),
        );
        let stored = merge_update(Some(&stored), late);
        assert_eq!(stored.status, RunStatus::Failed);
        assert_eq!(stored.finished_at, Some(t("2026-11-20T10:05:00Z")));
        assert_eq!(stored.metrics.get("queued_duration_s"), Some(&3.0));
        let names: Vec<_> = stored.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["build", "test"]);
        assert_eq!(stored.stage.as_deref(), Some("test"));
    }
}

/// What one GitHub or GitLab delivery means to pipemedic.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    /// The run (a `workflow_run` or a Pipeline Hook), final or still running.
    Run(Box<Run>),
    /// A finished job: one stage timing to merge (with [`merge_stage`]) into
    /// the run `pipeline` / `run_id` / `attempt`.
    Job {
        /// The pipeline of the run the job belongs to.
        pipeline: String,
        /// The id of the run the job belongs to.
        run_id: String,
        /// The attempt of the run the job belongs to.
        attempt: u32,
        /// The job's timing, named after the job.
        stage: StageTiming,
    },
    /// A delivery that carries no run data (`ping`, `push`, a job still
    /// running ...); answered 2xx and not stored.
    Ignored {
        /// Why, in a few words, for the response body and the log.
        reason: String,
    },
}

impl WebhookEvent {
    /// The run this delivery describes, whole or in part: the run itself,
    /// or for a job a `running` run carrying only that job's timing (see
    /// [`stage_update`]). Combine it with the stored run through
    /// [`merge_update`]. `None` for ignored deliveries. Oversized free text
    /// is shortened ([`Run::normalise`]).
    pub fn into_run(self) -> Option<Run> {
        let mut run = match self {
            Self::Run(run) => Some(*run),
            Self::Job {
                pipeline,
                run_id,
                attempt,
                stage,
            } => Some(stage_update(pipeline, run_id, attempt, stage)),
            Self::Ignored { .. } => None,
        }?;
        run.normalise();
        Some(run)
    }
}
