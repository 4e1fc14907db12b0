//! What a [`Run`] may hold, and [`Run::validate`]: the one check every ingest
//! route (generic API, GitHub, GitLab, AWS events, CodePipeline polling, CLI
//! backfill) applies before anything is stored.
//!
//! - Names (pipeline, run id, stage, stage names, metric names, commit,
//!   author and the author's email and login) are 1 to [`MAX_NAME_CHARS`] printable characters: no control
//!   characters (ESC, NUL, newlines) and no invisible format characters
//!   (bidirectional overrides, zero-width spaces). Punctuation such as `<`,
//!   `!` and `@` is allowed; chat output escapes it.
//! - Numbers are finite and within the plausible ranges below.
//! - Timestamps lie between [`EARLIEST`] and the validating clock's now plus
//!   [`FUTURE_SLACK_HOURS`].
//! - At most [`MAX_STAGES`] stages, with distinct names, and at most
//!   [`MAX_CUSTOM_METRICS`] custom metrics. A stage's `job_id` is 1 to
//!   [`MAX_JOB_ID`] letters, digits, `-` or `_` (it becomes part of a URL
//!   path when the job's log is fetched).
//!
//! Free text (commit message, log excerpt) is bounded by
//! [`Run::normalise`], which shortens it, rather than refused.

use std::collections::HashSet;
use std::fmt::{Display, Write as _};

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::run::{FieldError, Run, BUILTIN_METRICS};

/// Longest name: pipeline, run id, stage and stage names, metric names,
/// commit, commit author and the author's email and login.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest `url` or `log_url`.
pub const MAX_URL_CHARS: usize = 2048;
/// Most stages in one run (GitHub allows 256 jobs in one matrix).
pub const MAX_STAGES: usize = 256;
/// Longest job id of a stage (GitHub and GitLab job ids are integers).
pub const MAX_JOB_ID: usize = 64;
/// Most custom metrics in one run.
pub const MAX_CUSTOM_METRICS: usize = 64;
/// Largest magnitude of a custom metric value.
pub const MAX_CUSTOM_VALUE: f64 = 1e12;
/// Longest run or stage: 30 days.
pub const MAX_DURATION_S: f64 = 30.0 * 86_400.0;
/// Highest CPU peak: 100 % per core, up to 1,024 cores.
pub const MAX_CPU_PCT: f64 = 102_400.0;
/// Highest memory peak: 16 TiB in MB.
pub const MAX_MEM_MB: f64 = 16.0 * 1024.0 * 1024.0;
/// Highest p95 latency: 30 days in milliseconds.
pub const MAX_LATENCY_MS: f64 = MAX_DURATION_S * 1000.0;
/// Most tests in one run.
pub const MAX_TESTS: u64 = 100_000_000;
/// Highest attempt number.
pub const MAX_ATTEMPT: u32 = 10_000;
/// How far past the validating clock's now a timestamp may lie (clock skew).
pub const FUTURE_SLACK_HOURS: i64 = 24;
/// Longest commit message kept; longer ones keep their head.
pub const MAX_COMMIT_MESSAGE_CHARS: usize = 4096;

/// The earliest accepted timestamp, 2000-01-01T00:00:00Z.
pub fn earliest() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The earliest accepted timestamp, as text for messages.
pub const EARLIEST: &str = "2000-01-01T00:00:00Z";

/// Why a name is refused, if it is.
fn name_problem(value: &str) -> Option<String> {
    if value.trim().is_empty() {
        return Some("must not be empty".into());
    }
    if value.chars().count() > MAX_NAME_CHARS {
        return Some(format!("longer than {MAX_NAME_CHARS} characters"));
    }
    not_printable(value)
}

/// Refuses control characters and invisible format characters.
fn not_printable(value: &str) -> Option<String> {
    value.chars().find(|c| !is_printable(*c)).map(|c| {
        format!(
            "contains the non-printable character U+{:04X}; only printable characters are accepted",
            u32::from(c)
        )
    })
}

/// Not a control character, and not one of the invisible characters that
/// change how text around them reads (bidirectional controls, zero-width
/// characters, the byte-order mark).
fn is_printable(c: char) -> bool {
    !c.is_control()
        && !matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}')
}

/// `stages[i].`, the prefix of a stage's fields in a problem.
struct StageField(usize);

impl Display for StageField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stages[{}].", self.0)
    }
}

/// `metrics.<name>` (the name's first 64 characters), the field of a
/// custom metric in a problem.
struct MetricField<'a>(&'a str);

impl Display for MetricField<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metrics.")?;
        self.0.chars().take(64).try_for_each(|c| f.write_char(c))
    }
}

/// Collects problems, each under `prefix`.
struct Problems<'a> {
    prefix: &'a str,
    errors: Vec<FieldError>,
}

impl Problems<'_> {
    fn add(&mut self, field: &(impl Display + ?Sized), message: impl Into<String>) {
        self.errors
            .push(FieldError::new(format!("{}{field}", self.prefix), message));
    }

    fn name(&mut self, field: &str, value: &str) {
        if let Some(p) = name_problem(value) {
            self.add(field, p);
        }
    }

    fn url(&mut self, field: &str, value: &str) {
        if value.chars().count() > MAX_URL_CHARS {
            self.add(field, format!("longer than {MAX_URL_CHARS} characters"));
        } else if let Some(p) = not_printable(value) {
            self.add(field, p);
        }
    }

    /// Whether the timestamp, if any, lies in the accepted range. The
    /// field's name (`at` then `name`) is only written out for a problem:
    /// most runs have none, and naming every field cost a backfill more
    /// time than checking it.
    fn time(
        &mut self,
        at: &dyn Display,
        name: &str,
        t: Option<DateTime<Utc>>,
        latest: DateTime<Utc>,
    ) -> bool {
        let Some(t) = t else { return true };
        if t < earliest() {
            self.add(&format!("{at}{name}"), format!("{t} is before {EARLIEST}"));
            false
        } else if t > latest {
            self.add(
                &format!("{at}{name}"),
                format!("{t} is more than {FUTURE_SLACK_HOURS} hours in the future"),
            );
            false
        } else {
            true
        }
    }

    /// Start, end and, when both are in range, their order and the
    /// duration between them.
    fn span(
        &mut self,
        field: &dyn Display,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        latest: DateTime<Utc>,
    ) {
        let start_ok = self.time(field, "started_at", start, latest);
        let end_ok = self.time(field, "finished_at", end, latest);
        if let (Some(s), Some(e), true, true) = (start, end, start_ok, end_ok) {
            if e < s {
                self.add(
                    &format!("{field}finished_at"),
                    format!("{e} is before started_at {s}"),
                );
            } else if (e - s).num_seconds() as f64 > MAX_DURATION_S {
                self.add(
                    &format!("{field}finished_at"),
                    format!(
                        "the duration is longer than {} days",
                        MAX_DURATION_S / 86_400.0
                    ),
                );
            }
        }
    }

    /// A finite number from 0 to `max`.
    fn number(&mut self, field: &str, v: Option<f64>, max: f64) {
        let Some(v) = v else { return };
        if !v.is_finite() || v < 0.0 {
            self.add(field, format!("must be a finite number >= 0, got {v}"));
        } else if v > max {
            self.add(field, format!("must be at most {max}, got {v}"));
        }
    }
}

impl Run {
    /// Checks the run against the limits of this module; every problem is
    /// reported, each with its path under `prefix` (empty for a single run,
    /// `[i].` inside an array) and the limit it breaks. `now` is the
    /// validating clock's time, the bound of future timestamps.
    pub fn validate(&self, prefix: &str, now: DateTime<Utc>) -> Vec<FieldError> {
        let mut p = Problems {
            prefix,
            errors: Vec::new(),
        };
        let latest = now + Duration::hours(FUTURE_SLACK_HOURS);
        p.name("pipeline", &self.pipeline);
        p.name("run_id", &self.run_id);
        if let Some(stage) = &self.stage {
            p.name("stage", stage);
        }
        if let Some(commit) = &self.commit {
            p.name("commit", commit);
        }
        if let Some(author) = &self.commit_author {
            p.name("commit_author", author);
        }
        if let Some(email) = &self.commit_author_email {
            p.name("commit_author_email", email);
        }
        if let Some(login) = &self.commit_author_login {
            p.name("commit_author_login", login);
        }
        if let Some(url) = &self.url {
            p.url("url", url);
        }
        if let Some(url) = &self.log_url {
            p.url("log_url", url);
        }
        if self.attempt == 0 || self.attempt > MAX_ATTEMPT {
            p.add("attempt", format!("must be 1 to {MAX_ATTEMPT}"));
        }
        p.span(&"", self.started_at, self.finished_at, latest);
        if let Some(t) = &self.tests {
            if t.total > MAX_TESTS {
                p.add("tests.total", format!("must be at most {MAX_TESTS}"));
            }
            if t.failed > t.total {
                p.add(
                    "tests.failed",
                    format!("{} failed is more than {} total", t.failed, t.total),
                );
            }
            if t.skipped > t.total {
                p.add(
                    "tests.skipped",
                    format!("{} skipped is more than {} total", t.skipped, t.total),
                );
            }
        }
        if let Some(r) = &self.resources {
            p.number("resources.cpu_peak_pct", r.cpu_peak_pct, MAX_CPU_PCT);
            p.number("resources.mem_peak_mb", r.mem_peak_mb, MAX_MEM_MB);
        }
        if let Some(d) = &self.deploy {
            p.number("deploy.error_rate", d.error_rate, 1.0);
            p.number("deploy.latency_p95_ms", d.latency_p95_ms, MAX_LATENCY_MS);
        }
        self.validate_metrics(&mut p);
        self.validate_stages(&mut p, latest);
        p.errors
    }

    fn validate_metrics(&self, p: &mut Problems<'_>) {
        if self.metrics.len() > MAX_CUSTOM_METRICS {
            // Reported once; the individual metrics are not checked.
            p.add(
                "metrics",
                format!(
                    "{} custom metrics; at most {MAX_CUSTOM_METRICS} are accepted per run",
                    self.metrics.len()
                ),
            );
            return;
        }
        for (name, value) in &self.metrics {
            let field = MetricField(name);
            if let Some(problem) = name_problem(name) {
                p.add(&field, format!("metric name {problem}"));
            } else if BUILTIN_METRICS.contains(&name.as_str()) || name.starts_with("stage.") {
                p.add(
                    &field,
                    "this name is reserved for a derived metric; use the dedicated field",
                );
            }
            if !value.is_finite() || value.abs() >= MAX_CUSTOM_VALUE {
                p.add(
                    &field,
                    format!("must be a finite number below {MAX_CUSTOM_VALUE:e} in magnitude, got {value}"),
                );
            }
        }
    }

    fn validate_stages(&self, p: &mut Problems<'_>, latest: DateTime<Utc>) {
        if self.stages.len() > MAX_STAGES {
            // Reported once; the individual stages are not checked.
            p.add(
                "stages",
                format!(
                    "{} stages; at most {MAX_STAGES} are accepted per run",
                    self.stages.len()
                ),
            );
            return;
        }
        let mut seen = HashSet::with_capacity(self.stages.len());
        for (i, stage) in self.stages.iter().enumerate() {
            let field = StageField(i);
            if let Some(problem) = name_problem(&stage.name) {
                p.add(&format!("{field}name"), problem);
            } else if !seen.insert(stage.name.as_str()) {
                p.add(
                    &format!("{field}name"),
                    format!("stage {:?} appears twice", stage.name),
                );
            }
            if let Some(job_id) = &stage.job_id {
                if job_id.is_empty()
                    || job_id.len() > MAX_JOB_ID
                    || !job_id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                {
                    p.add(
                        &format!("{field}job_id"),
                        format!(
                            "must be 1 to {MAX_JOB_ID} letters, digits, '-' or '_', got {:?}",
                            super::text::truncate(job_id, 80)
                        ),
                    );
                }
            }
            p.span(&field, stage.started_at, stage.finished_at, latest);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{ResourceMetrics, RunStatus, StageTiming};

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn fields(run: &Run) -> Vec<String> {
        run.validate("", now())
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    fn messages(run: &Run) -> Vec<String> {
        run.validate("", now())
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn stage(name: &str) -> StageTiming {
        StageTiming {
            job_id: None,
            name: name.into(),
            status: None,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn job_ids_are_short_path_safe_tokens() {
        let mut run = Run::new("p", "1", RunStatus::Failed);
        for (i, id) in ["399444496", "job_7-a", "../../admin", "", &"9".repeat(65)]
            .into_iter()
            .enumerate()
        {
            let mut s = stage(&format!("s{i}"));
            s.job_id = Some(id.to_string());
            run.stages.push(s);
        }
        assert_eq!(
            fields(&run),
            ["stages[2].job_id", "stages[3].job_id", "stages[4].job_id"]
        );
    }

    #[test]
    fn long_names_and_escape_characters_are_refused() {
        let mut run = Run::new(
            format!("\u{1b}[31m{}<!channel>", "p".repeat(330)),
            "1",
            RunStatus::Failed,
        );
        run.stages.push(stage("ok"));
        run.stages.push(stage("bad\u{1b}name"));
        run.commit_author = Some("Mona\u{202E}Lisa".into());
        run.commit_author_email = Some(format!("{}@example.com", "m".repeat(200)));
        run.commit_author_login = Some("octo\ncat".into());
        let msgs = messages(&run);
        assert_eq!(
            msgs,
            [
                "pipeline: longer than 200 characters",
                "commit_author: contains the non-printable character U+202E; only printable characters are accepted",
                "commit_author_email: longer than 200 characters",
                "commit_author_login: contains the non-printable character U+000A; only printable characters are accepted",
                "stages[1].name: contains the non-printable character U+001B; only printable characters are accepted",
            ]
        );
        // Punctuation alone is printable: chat output escapes it.
        let run = Run::new("deploy <!channel> @here", "1", RunStatus::Failed);
        assert!(fields(&run).is_empty());
        // Exactly at the limit is fine; the limit counts characters, not bytes.
        let run = Run::new("é".repeat(MAX_NAME_CHARS), "1", RunStatus::Failed);
        assert!(fields(&run).is_empty());
    }

    #[test]
    fn huge_values_and_year_zero_are_refused() {
        let mut run = Run::new("p", "1", RunStatus::Failed);
        run.resources = Some(ResourceMetrics {
            cpu_peak_pct: Some(1.7e308),
            mem_peak_mb: Some(-1.0),
        });
        run.metrics.insert("custom".into(), 1.7e308);
        run.metrics.insert("fine".into(), -5.5e11);
        run.started_at = Some("0000-01-01T00:00:00Z".parse().unwrap());
        run.finished_at = Some(now() + Duration::hours(25));
        assert_eq!(
            fields(&run),
            [
                "started_at",
                "finished_at",
                "resources.cpu_peak_pct",
                "resources.mem_peak_mb",
                "metrics.custom"
            ]
        );
        let msgs = messages(&run);
        assert!(msgs[0].contains("before 2000-01-01"), "{msgs:?}");
        assert!(msgs[1].contains("in the future"), "{msgs:?}");
    }

    #[test]
    fn the_future_is_measured_by_the_given_clock() {
        let mut run = Run::new("p", "1", RunStatus::Succeeded);
        run.finished_at = Some(now() + Duration::hours(23));
        assert!(fields(&run).is_empty());
        assert_eq!(
            run.validate("", now() - Duration::hours(2))
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>(),
            ["finished_at"]
        );
    }

    #[test]
    fn durations_longer_than_thirty_days_are_refused() {
        let mut run = Run::new("p", "1", RunStatus::Succeeded);
        run.started_at = Some(now() - Duration::days(31));
        run.finished_at = Some(now());
        assert_eq!(
            messages(&run),
            ["finished_at: the duration is longer than 30 days"]
        );
        let mut s = stage("build");
        s.started_at = Some(now() - Duration::days(40));
        s.finished_at = Some(now());
        run.started_at = None;
        run.stages.push(s);
        assert_eq!(fields(&run), ["stages[0].finished_at"]);
    }

    #[test]
    fn too_many_custom_metrics_names_the_limit() {
        let mut run = Run::new("p", "1", RunStatus::Succeeded);
        run.metrics = (0..11_000).map(|i| (format!("m{i}"), 1.0)).collect();
        assert_eq!(
            messages(&run),
            ["metrics: 11000 custom metrics; at most 64 are accepted per run"]
        );
        run.metrics = (0..MAX_CUSTOM_METRICS)
            .map(|i| (format!("m{i}"), 1.0))
            .collect::<BTreeMap<_, _>>();
        assert!(fields(&run).is_empty());
    }

    #[test]
    fn too_many_stages_names_the_limit() {
        let mut run = Run::new("p", "1", RunStatus::Succeeded);
        run.stages = (0..55_000).map(|i| stage(&format!("s{i}"))).collect();
        assert_eq!(
            messages(&run),
            ["stages: 55000 stages; at most 256 are accepted per run"]
        );
        run.stages.truncate(MAX_STAGES);
        assert!(fields(&run).is_empty());
    }

    #[test]
    fn duplicate_stages_are_found_wherever_they_are() {
        let mut run = Run::new("p", "1", RunStatus::Succeeded);
        run.stages = (0..MAX_STAGES - 2)
            .map(|i| stage(&format!("s{i}")))
            .collect();
        run.stages.push(stage("s0"));
        run.stages.push(stage("s100"));
        assert_eq!(
            messages(&run),
            [
                "stages[254].name: stage \"s0\" appears twice",
                "stages[255].name: stage \"s100\" appears twice"
            ]
        );
        // Same name, different case: two stages.
        run.stages = vec![stage("Build"), stage("build")];
        assert!(fields(&run).is_empty());
    }

    #[test]
    fn urls_are_bounded() {
        let mut run = Run::new("p", "1", RunStatus::Succeeded);
        run.url = Some(format!(
            "https://ci.example.com/{}",
            "x".repeat(MAX_URL_CHARS)
        ));
        run.log_url = Some("https://ci.example.com/\u{7}".into());
        assert_eq!(fields(&run), ["url", "log_url"]);
    }
}
