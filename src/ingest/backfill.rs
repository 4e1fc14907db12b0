//! `pipemedic ingest FILE`: backfill history from JSON Lines (one Run per
//! line) or CSV with a header. The whole file is validated first and every
//! bad line is reported with its line number and field; nothing is stored
//! unless the file is clean (or `--skip-invalid` is given). Valid runs are
//! then stored in big batches, each batch one transaction of multi-row
//! inserts, with a progress bar. Backfilled runs are stored, not scored:
//! `pipemedic train` builds the models from the stored history.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::domain::{
    DeployMetrics, FieldError, ResourceMetrics, Run, RunSource, RunStatus, TestCounts,
};
use crate::store::RunOutcome;

use super::IngestService;

/// Runs stored per transaction: big, so that a backfill costs few durable
/// commits (multi-row inserts inside; see [`crate::store::WriteTx::upsert_runs`]).
const BATCH: usize = 10_000;

/// Batches handed to the writer before the first is answered, so the next
/// one is ready when a commit ends.
const BATCHES_IN_FLIGHT: usize = 2;

/// One bad line of the input file.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    pub line: usize,
    pub error: FieldError,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}: {}: {}",
            self.line, self.error.field, self.error.message
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Csv,
}

impl Format {
    /// By extension: `.csv` is CSV, everything else JSON Lines.
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Self::Csv,
            _ => Self::JsonLines,
        }
    }
}

/// Parses a whole file; returns the valid runs (with their line numbers)
/// and every line error. `now` bounds future timestamps (see
/// [`Run::validate`]).
pub fn parse_file(
    text: &str,
    format: Format,
    now: DateTime<Utc>,
) -> (Vec<(usize, Run)>, Vec<LineError>) {
    match format {
        Format::JsonLines => parse_jsonl(text, now),
        Format::Csv => parse_csv(text, now),
    }
}

/// Lines parsed by one thread at least; smaller files are parsed on one.
const LINES_PER_THREAD: usize = 20_000;

/// Parses JSON Lines on every core, each thread a contiguous share of the
/// lines; the results keep the file's order.
fn parse_jsonl(text: &str, now: DateTime<Utc>) -> (Vec<(usize, Run)>, Vec<LineError>) {
    let lines: Vec<&str> = text.lines().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(lines.len() / LINES_PER_THREAD)
        .max(1);
    let share = lines.len().div_ceil(threads).max(1);
    let parts: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = lines
            .chunks(share)
            .enumerate()
            .map(|(k, chunk)| scope.spawn(move || parse_jsonl_lines(chunk, k * share, now)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut runs = Vec::with_capacity(lines.len());
    let mut errors = Vec::new();
    for (r, e) in parts {
        runs.extend(r);
        errors.extend(e);
    }
    (runs, errors)
}

/// Parses `lines`, the first of which is line `first + 1` of the file.
fn parse_jsonl_lines(
    lines: &[&str],
    first: usize,
    now: DateTime<Utc>,
) -> (Vec<(usize, Run)>, Vec<LineError>) {
    let mut runs = Vec::with_capacity(lines.len());
    let mut errors = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let line_no = first + i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                errors.push(LineError {
                    line: line_no,
                    error: FieldError::new("$", format!("not valid JSON: {e}")),
                });
                continue;
            }
        };
        match super::generic::parse_one(value, "", now) {
            Ok(run) => runs.push((line_no, run)),
            Err(errs) => errors.extend(errs.into_iter().map(|error| LineError {
                line: line_no,
                error,
            })),
        }
    }
    (runs, errors)
}

/// CSV columns: `pipeline, run_id, status` (required), `started_at,
/// finished_at, stage, commit, attempt, tests_total, tests_failed,
/// tests_skipped, cpu_peak_pct, mem_peak_mb, error_rate, latency_p95_ms,
/// log_url`, and `metric.NAME` for custom metrics. Empty cells are absent.
pub const CSV_COLUMNS: [&str; 16] = [
    "pipeline",
    "run_id",
    "status",
    "started_at",
    "finished_at",
    "stage",
    "commit",
    "attempt",
    "tests_total",
    "tests_failed",
    "tests_skipped",
    "cpu_peak_pct",
    "mem_peak_mb",
    "error_rate",
    "latency_p95_ms",
    "log_url",
];

fn parse_csv(text: &str, now: DateTime<Utc>) -> (Vec<(usize, Run)>, Vec<LineError>) {
    let mut runs = Vec::new();
    let mut errors = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            errors.push(LineError {
                line: 1,
                error: FieldError::new("header", e.to_string()),
            });
            return (runs, errors);
        }
    };
    let mut header_ok = true;
    for (i, h) in headers.iter().enumerate() {
        if !CSV_COLUMNS.contains(&h) && !h.starts_with("metric.") {
            header_ok = false;
            errors.push(LineError {
                line: 1,
                error: FieldError::new(
                    format!("header column {}", i + 1),
                    format!(
                        "unknown column {h:?}; known: {} and metric.NAME",
                        CSV_COLUMNS.join(", ")
                    ),
                ),
            });
        }
    }
    for required in ["pipeline", "run_id", "status"] {
        if !headers.iter().any(|h| h == required) {
            header_ok = false;
            errors.push(LineError {
                line: 1,
                error: FieldError::new(
                    "header",
                    format!("required column {required:?} is missing"),
                ),
            });
        }
    }
    if !header_ok {
        return (runs, errors);
    }
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                errors.push(LineError {
                    line,
                    error: FieldError::new("$", e.to_string()),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let cells: BTreeMap<&str, &str> = headers
            .iter()
            .zip(record.iter())
            .filter(|(_, v)| !v.is_empty())
            .collect();
        match run_from_cells(&cells, now) {
            Ok(run) => runs.push((line, run)),
            Err(errs) => errors.extend(errs.into_iter().map(|error| LineError { line, error })),
        }
    }
    (runs, errors)
}

fn run_from_cells(
    cells: &BTreeMap<&str, &str>,
    now: DateTime<Utc>,
) -> Result<Run, Vec<FieldError>> {
    let mut errors = Vec::new();
    let text = |k: &str| cells.get(k).map(|s| s.to_string());
    let mut num = |k: &str| -> Option<f64> {
        let raw = cells.get(k)?;
        match raw.parse::<f64>() {
            Ok(v) => Some(v),
            Err(_) => {
                errors.push(FieldError::new(k, format!("{raw:?} is not a number")));
                None
            }
        }
    };
    let cpu = num("cpu_peak_pct");
    let mem = num("mem_peak_mb");
    let err_rate = num("error_rate");
    let latency = num("latency_p95_ms");
    let total = num("tests_total");
    let failed = num("tests_failed");
    let skipped = num("tests_skipped");
    let attempt = num("attempt");
    let mut metrics = BTreeMap::new();
    for (k, raw) in cells {
        if let Some(name) = k.strip_prefix("metric.") {
            match raw.parse::<f64>() {
                Ok(v) => {
                    metrics.insert(name.to_string(), v);
                }
                Err(_) => errors.push(FieldError::new(*k, format!("{raw:?} is not a number"))),
            }
        }
    }
    let mut time = |k: &str| -> Option<DateTime<Utc>> {
        let raw = cells.get(k)?;
        match DateTime::parse_from_rfc3339(raw) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                errors.push(FieldError::new(
                    k,
                    format!("{raw:?} is not an RFC 3339 time"),
                ));
                None
            }
        }
    };
    let started_at = time("started_at");
    let finished_at = time("finished_at");
    let status = match cells.get("status") {
        Some(raw) => RunStatus::parse_loose(raw).or_else(|| {
            errors.push(FieldError::new(
                "status",
                format!("{raw:?} is not a run status"),
            ));
            None
        }),
        None => {
            errors.push(FieldError::new("status", "is required"));
            None
        }
    };
    let whole = |v: Option<f64>, k: &str, errors: &mut Vec<FieldError>| -> Option<u64> {
        let v = v?;
        if v.fract() == 0.0 && v >= 0.0 {
            Some(v as u64)
        } else {
            errors.push(FieldError::new(k, format!("{v} is not a whole number")));
            None
        }
    };
    let total = whole(total, "tests_total", &mut errors);
    let failed = whole(failed, "tests_failed", &mut errors);
    let skipped = whole(skipped, "tests_skipped", &mut errors);
    let attempt = whole(attempt, "attempt", &mut errors);
    let (Some(pipeline), Some(run_id), Some(status)) = (text("pipeline"), text("run_id"), status)
    else {
        for k in ["pipeline", "run_id"] {
            if !cells.contains_key(k) {
                errors.push(FieldError::new(k, "is required"));
            }
        }
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut run = Run::new(pipeline, run_id, status);
    run.started_at = started_at;
    run.finished_at = finished_at;
    run.stage = text("stage");
    run.commit = text("commit");
    run.log_url = text("log_url");
    run.attempt = attempt.map_or(1, |a| a.min(u64::from(u32::MAX)) as u32);
    if let Some(total) = total {
        run.tests = Some(TestCounts {
            total,
            failed: failed.unwrap_or(0),
            skipped: skipped.unwrap_or(0),
        });
    }
    if cpu.is_some() || mem.is_some() {
        run.resources = Some(ResourceMetrics {
            cpu_peak_pct: cpu,
            mem_peak_mb: mem,
        });
    }
    if err_rate.is_some() || latency.is_some() {
        run.deploy = Some(DeployMetrics {
            error_rate: err_rate,
            latency_p95_ms: latency,
        });
    }
    run.metrics = metrics;
    run.normalise();
    let errors = run.validate("", now);
    if errors.is_empty() {
        Ok(run)
    } else {
        Err(errors)
    }
}

/// Counts of a backfill.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackfillSummary {
    pub lines_valid: usize,
    pub lines_invalid: usize,
    pub inserted: usize,
    pub updated: usize,
    pub duplicates: usize,
}

/// Stores parsed runs in batches, each batch one transaction, in file
/// order, calling `progress` with the number of runs done after each batch.
/// Runs are stored, not scored: `pipemedic train` builds the models from
/// them afterwards.
pub async fn store_all(
    service: &IngestService,
    runs: Vec<(usize, Run)>,
    mut progress: impl FnMut(usize),
) -> Result<BackfillSummary, super::IngestError> {
    use futures::StreamExt;
    let mut summary = BackfillSummary {
        lines_valid: runs.len(),
        ..Default::default()
    };
    let mut done = 0;
    let mut batches = Vec::with_capacity(runs.len().div_ceil(BATCH));
    let mut runs = runs.into_iter().map(|(_, r)| r).peekable();
    while runs.peek().is_some() {
        batches.push(runs.by_ref().take(BATCH).collect::<Vec<Run>>());
    }
    let mut stored = futures::stream::iter(batches)
        .map(|batch| service.accept_owned_runs(RunSource::Backfill, None, batch, false))
        .buffered(BATCHES_IN_FLIGHT);
    while let Some(report) = stored.next().await {
        let report = report?;
        for a in &report.runs {
            match a.outcome {
                RunOutcome::Inserted => summary.inserted += 1,
                RunOutcome::Updated => summary.updated += 1,
                RunOutcome::Duplicate => summary.duplicates += 1,
            }
        }
        done += report.runs.len();
        progress(done);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn jsonl_errors_name_line_and_field() {
        let text = "{\"pipeline\":\"p\",\"run_id\":\"1\",\"status\":\"failed\"}\n\n{\"pipeline\":\"p\",\"run_id\":\"2\",\"status\":\"nope\"}\n{oops\n";
        let (runs, errors) = parse_file(text, Format::JsonLines, now());
        assert_eq!(runs.len(), 1);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, 3);
        assert_eq!(errors[0].error.field, "status");
        assert_eq!(errors[1].line, 4);
    }

    #[test]
    fn csv_with_metrics_and_errors() {
        let text = "pipeline,run_id,status,started_at,finished_at,tests_total,tests_failed,metric.bundle_kb\n\
                    web,1,succeeded,2026-11-01T10:00:00Z,2026-11-01T10:05:00Z,100,2,512\n\
                    web,2,failed,2026-11-01T11:00:00Z,yesterday,100,x,\n";
        let (runs, errors) = parse_file(text, Format::Csv, now());
        assert_eq!(runs.len(), 1);
        let run = &runs[0].1;
        assert_eq!(run.duration_s(), Some(300.0));
        assert_eq!(run.tests.unwrap().failed, 2);
        assert_eq!(run.metrics["bundle_kb"], 512.0);
        let fields: Vec<_> = errors
            .iter()
            .map(|e| (e.line, e.error.field.as_str()))
            .collect();
        assert_eq!(fields, [(3, "tests_failed"), (3, "finished_at")]);
    }

    #[test]
    fn backfill_applies_the_run_limits() {
        let text = format!(
            "{{\"pipeline\":\"p\",\"run_id\":\"1\",\"status\":\"failed\",\"started_at\":\"0000-01-01T00:00:00Z\"}}\n\
             {{\"pipeline\":\"{}\",\"run_id\":\"2\",\"status\":\"failed\"}}\n",
            "p".repeat(201)
        );
        let (runs, errors) = parse_file(&text, Format::JsonLines, now());
        assert!(runs.is_empty());
        let found: Vec<_> = errors
            .iter()
            .map(|e| (e.line, e.error.to_string()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    1,
                    "started_at: 0000-01-01 00:00:00 UTC is before 2000-01-01T00:00:00Z"
                        .to_string()
                ),
                (2, "pipeline: longer than 200 characters".to_string())
            ]
        );
        let csv = "pipeline,run_id,status,cpu_peak_pct\np,1,failed,1.7e308\n";
        let (runs, errors) = parse_file(csv, Format::Csv, now());
        assert!(runs.is_empty());
        assert_eq!(errors[0].error.field, "resources.cpu_peak_pct");
    }

    #[test]
    fn csv_unknown_header_is_reported() {
        let (runs, errors) = parse_file(
            "pipeline,run_id,status,colour\np,1,failed,red\n",
            Format::Csv,
            now(),
        );
        assert!(runs.is_empty());
        assert!(errors[0].error.message.contains("colour"));
    }
}
