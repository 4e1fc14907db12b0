//! `pipemedic ingest FILE`: backfill history from JSON Lines (one Run per
//! line) or CSV with a header. The file is read a chunk at a time
//! ([`Chunks`]), so memory stays bounded whatever its size: a first pass
//! validates every line and reports each bad one with its line number and
//! field; nothing is stored unless the file is clean (or `--skip-invalid`
//! is given). A second pass parses the file again, makes each chunk's rows
//! on every core, and stores them in transactions of [`RUNS_PER_COMMIT`]
//! (one prepared insert per run on a SQLite file, multi-row inserts on
//! PostgreSQL) while the next chunk is parsed, with a progress bar. A backfill stopped part
//! way keeps the transactions it committed; running it again stores the
//! rest and counts the stored runs as already stored. Backfilled runs are
//! stored, not scored: `pipemedic train` builds the models from the stored
//! history.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::domain::{
    DeployMetrics, FieldError, ResourceMetrics, Run, RunSource, RunStatus, TestCounts,
};
use crate::store::{BulkRunWriter, RunOutcome, RunRow, Store, StoreError, Upserted, WriteTx};

use super::IngestService;

/// Runs handed to the store at a time inside a transaction; the progress
/// bar moves after each.
const BATCH: usize = 10_000;

/// Runs stored per transaction: many, because each transaction of a
/// backfill touches most pages of the indexes keyed by pipeline (a history
/// export interleaves its pipelines), and a commit writes every page it
/// touched: ten times fewer commits write the indexes ten times less.
const RUNS_PER_COMMIT: usize = 100_000;

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

/// Parses a whole file held in memory; returns the valid runs (with their
/// line numbers) and every line error. `now` bounds future timestamps (see
/// [`Run::validate`]).
pub fn parse_file(
    text: &str,
    format: Format,
    now: DateTime<Utc>,
) -> (Vec<(usize, Run)>, Vec<LineError>) {
    let mut runs = Vec::new();
    let mut errors = Vec::new();
    for chunk in Chunks::new(text.as_bytes(), format, now) {
        // Reading from memory cannot fail.
        let Ok(chunk) = chunk else { break };
        runs.extend(chunk.runs);
        errors.extend(chunk.errors);
    }
    (runs, errors)
}

/// Lines (JSON Lines) or records (CSV) read and parsed at a time: about
/// 50 MB of a typical history, parsed on every core.
pub const CHUNK_LINES: usize = 50_000;

/// Lines parsed by one thread at least; smaller chunks are parsed on one.
const LINES_PER_THREAD: usize = 10_000;

/// One chunk of a backfill file, parsed.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The valid runs, with their line numbers, in file order.
    pub runs: Vec<(usize, Run)>,
    /// The problems of the chunk's bad lines, in line order.
    pub errors: Vec<LineError>,
    /// Bytes of the file read so far, this chunk included.
    pub bytes_read: u64,
}

/// A backfill file read and parsed a chunk ([`CHUNK_LINES`]) at a time.
/// A read error ends the iteration after it is returned.
pub struct Chunks<R: BufRead> {
    source: Source<R>,
    now: DateTime<Utc>,
    /// Lines or records per chunk.
    chunk_lines: usize,
    done: bool,
}

enum Source<R: BufRead> {
    JsonLines {
        reader: R,
        /// Lines read so far.
        line: usize,
        bytes_read: u64,
    },
    Csv {
        reader: csv::Reader<R>,
        header: Header,
    },
}

/// The header of a CSV file, as far as it has been read.
enum Header {
    Unread,
    /// Unusable: its problems were reported and nothing more is read.
    Bad,
    Good(csv::StringRecord),
}

/// A CSV error that is an I/O error, as one.
fn into_io(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

impl<R: BufRead> Chunks<R> {
    pub fn new(reader: R, format: Format, now: DateTime<Utc>) -> Self {
        let source = match format {
            Format::JsonLines => Source::JsonLines {
                reader,
                line: 0,
                bytes_read: 0,
            },
            Format::Csv => Source::Csv {
                reader: csv::ReaderBuilder::new()
                    .trim(csv::Trim::All)
                    .flexible(false)
                    .from_reader(reader),
                header: Header::Unread,
            },
        };
        Self {
            source,
            now,
            chunk_lines: CHUNK_LINES,
            done: false,
        }
    }

    /// The same reader, `lines` lines or records per chunk (at least 1).
    pub fn with_chunk_lines(mut self, lines: usize) -> Self {
        self.chunk_lines = lines.max(1);
        self
    }
}

impl<R: BufRead> Iterator for Chunks<R> {
    type Item = std::io::Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let now = self.now;
        let chunk = match &mut self.source {
            Source::JsonLines {
                reader,
                line,
                bytes_read,
            } => next_jsonl_chunk(reader, line, bytes_read, self.chunk_lines, now),
            Source::Csv { reader, header } => next_csv_chunk(reader, header, self.chunk_lines, now),
        };
        match chunk {
            Ok(Some(chunk)) => Some(Ok(chunk)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads up to `chunk_lines` lines and parses them on every core; `None`
/// at the end of the file. A line that is not UTF-8 is a line error.
fn next_jsonl_chunk(
    reader: &mut impl BufRead,
    line: &mut usize,
    bytes_read: &mut u64,
    chunk_lines: usize,
    now: DateTime<Utc>,
) -> std::io::Result<Option<Chunk>> {
    let first = *line;
    let mut lines: Vec<String> = Vec::with_capacity(chunk_lines.min(1024));
    let mut errors = Vec::new();
    let mut buf = Vec::new();
    while lines.len() < chunk_lines {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        *bytes_read += n as u64;
        *line += 1;
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        match std::str::from_utf8(&buf) {
            Ok(text) => lines.push(text.to_string()),
            Err(e) => {
                errors.push(LineError {
                    line: *line,
                    error: FieldError::new("$", format!("not UTF-8 text: {e}")),
                });
                // Stands in for the line, so line numbers stay right.
                lines.push(String::new());
            }
        }
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let mut lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (runs, parse_errors) = parse_jsonl(&mut lines, first, now);
    errors.extend(parse_errors);
    errors.sort_by_key(|e| e.line);
    Ok(Some(Chunk {
        runs,
        errors,
        bytes_read: *bytes_read,
    }))
}

/// Parses JSON Lines on every core, each thread a contiguous share of the
/// lines; the results keep the file's order. `lines[0]` is line `first + 1`.
fn parse_jsonl(
    lines: &mut [&str],
    first: usize,
    now: DateTime<Utc>,
) -> (Vec<(usize, Run)>, Vec<LineError>) {
    let parts = on_every_core(lines, LINES_PER_THREAD, |share, at| {
        parse_jsonl_lines(share, first + at, now)
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
        // The common case, a well-formed run, straight from the text; any
        // line that is not one goes through a JSON value, whose errors
        // name the line's field (the same run either way).
        let parsed = match serde_json::from_str::<Run>(line) {
            Ok(run) => super::generic::normalised_and_valid(run, "", now),
            Err(_) => match serde_json::from_str::<serde_json::Value>(line) {
                Ok(value) => super::generic::parse_one(value, "", now),
                Err(e) => {
                    errors.push(LineError {
                        line: line_no,
                        error: FieldError::new("$", format!("not valid JSON: {e}")),
                    });
                    continue;
                }
            },
        };
        match parsed {
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

/// Checks a CSV header: every column known, the required ones present.
fn header_problems(headers: &csv::StringRecord) -> Vec<LineError> {
    let mut errors = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        if !CSV_COLUMNS.contains(&h) && !h.starts_with("metric.") {
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
            errors.push(LineError {
                line: 1,
                error: FieldError::new(
                    "header",
                    format!("required column {required:?} is missing"),
                ),
            });
        }
    }
    errors
}

/// Reads and parses up to `chunk_lines` CSV records; `None` at the end.
/// The first call reads the header: a bad header is the only chunk, its
/// problems reported on line 1.
fn next_csv_chunk<R: BufRead>(
    reader: &mut csv::Reader<R>,
    header: &mut Header,
    chunk_lines: usize,
    now: DateTime<Utc>,
) -> std::io::Result<Option<Chunk>> {
    let mut chunk = Chunk::default();
    let header = match header {
        Header::Good(h) => h.clone(),
        Header::Bad => return Ok(None),
        Header::Unread => {
            let read = match reader.headers() {
                Ok(h) => h.clone(),
                Err(e) if e.is_io_error() => return Err(into_io(e)),
                Err(e) => {
                    *header = Header::Bad;
                    chunk.errors.push(LineError {
                        line: 1,
                        error: FieldError::new("header", e.to_string()),
                    });
                    return Ok(Some(chunk));
                }
            };
            chunk.errors = header_problems(&read);
            if !chunk.errors.is_empty() {
                // Nothing after a bad header is read.
                *header = Header::Bad;
                chunk.bytes_read = reader.position().byte();
                return Ok(Some(chunk));
            }
            *header = Header::Good(read.clone());
            read
        }
    };
    let mut record = csv::StringRecord::new();
    let mut records = 0;
    while records < chunk_lines {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) if e.is_io_error() => return Err(into_io(e)),
            Err(e) => {
                records += 1;
                let line = e.position().map_or(0, |p| p.line() as usize);
                chunk.errors.push(LineError {
                    line,
                    error: FieldError::new("$", e.to_string()),
                });
                continue;
            }
        }
        records += 1;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let cells: BTreeMap<&str, &str> = header
            .iter()
            .zip(record.iter())
            .filter(|(_, v)| !v.is_empty())
            .collect();
        match run_from_cells(&cells, now) {
            Ok(run) => chunk.runs.push((line, run)),
            Err(errs) => chunk
                .errors
                .extend(errs.into_iter().map(|error| LineError { line, error })),
        }
    }
    if records == 0 {
        return Ok(None);
    }
    chunk.bytes_read = reader.position().byte();
    Ok(Some(chunk))
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

/// Stores the runs received from `chunks` (in file order) in transactions
/// of [`RUNS_PER_COMMIT`] runs, a [`BATCH`] at a time, and commits the last
/// when the sender is dropped; calls `progress` with the number of runs
/// done after each batch. The runs of committed transactions stay stored
/// if a later one fails. Runs are stored, not scored: `pipemedic train`
/// builds the models from them afterwards.
///
/// Each chunk's rows are made ([`super::rows_to_store`]: checked, redacted,
/// serialised) on every core while the writer stores the batches before:
/// on a SQLite file SQLite's bulk writer ([`crate::store::BulkRunWriter`]),
/// elsewhere sqlx transactions ([`crate::store::Store::begin_bulk_write`]).
pub async fn store_all(
    service: &IngestService,
    chunks: tokio::sync::mpsc::Receiver<Vec<Run>>,
    progress: impl FnMut(usize),
) -> Result<BackfillSummary, super::IngestError> {
    store_committing_every(service, chunks, RUNS_PER_COMMIT, progress).await
}

/// [`store_all`], committing once `runs_per_commit` runs are stored.
async fn store_committing_every(
    service: &IngestService,
    chunks: tokio::sync::mpsc::Receiver<Vec<Run>>,
    runs_per_commit: usize,
    mut progress: impl FnMut(usize),
) -> Result<BackfillSummary, super::IngestError> {
    let (ready, mut batches) = tokio::sync::mpsc::channel(2);
    let maker = tokio::spawn(make_rows(
        chunks,
        service.redaction().clone(),
        service.clock().clone(),
        ready,
    ));
    let mut writer = Writer::open(service.store()).await?;
    let mut summary = BackfillSummary::default();
    let mut in_transaction = 0;
    while let Some(batch) = batches.recv().await {
        let stored = writer.upsert(batch?).await?;
        service.count_outcomes(RunSource::Backfill, stored.iter().map(|s| s.outcome));
        for s in &stored {
            match s.outcome {
                RunOutcome::Inserted => summary.inserted += 1,
                RunOutcome::Updated => summary.updated += 1,
                RunOutcome::Duplicate => summary.duplicates += 1,
            }
        }
        summary.lines_valid += stored.len();
        in_transaction += stored.len();
        if in_transaction >= runs_per_commit {
            writer.commit().await?;
            in_transaction = 0;
        }
        progress(summary.lines_valid);
    }
    writer.finish().await?;
    // It ended when `chunks` did, having sent all it made.
    let _ = maker.await;
    Ok(summary)
}

/// Least runs made into rows per thread.
const ROWS_PER_THREAD: usize = 2_000;

/// Makes the rows of each chunk received, on every core, and sends them
/// on in batches of at most [`BATCH`]; stops at the end of `chunks`, after
/// sending an error, or when the writer stops listening.
async fn make_rows(
    mut chunks: tokio::sync::mpsc::Receiver<Vec<Run>>,
    redaction: super::redaction::RunRedaction,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
    ready: tokio::sync::mpsc::Sender<Result<Vec<RunRow>, super::IngestError>>,
) {
    while let Some(mut runs) = chunks.recv().await {
        let now = clock.now();
        let redaction = redaction.clone();
        let made = tokio::task::spawn_blocking(move || {
            let parts = on_every_core(&mut runs, ROWS_PER_THREAD, |part, _| {
                super::rows_to_store(part, RunSource::Backfill, now, &redaction)
            });
            let mut rows = Vec::with_capacity(runs.len());
            for part in parts {
                rows.extend(part?);
            }
            Ok(rows)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let rows = match made {
            Ok(rows) => rows,
            Err(e) => {
                let _ = ready.send(Err(e)).await;
                return;
            }
        };
        // Each row moves once, into its batch.
        let mut rows = rows.into_iter();
        loop {
            let batch: Vec<RunRow> = rows.by_ref().take(BATCH).collect();
            if batch.is_empty() {
                break;
            }
            if ready.send(Ok(batch)).await.is_err() {
                return;
            }
        }
    }
}

/// Where a backfill writes: SQLite's bulk writer on a SQLite file, sqlx
/// transactions elsewhere.
enum Writer<'s> {
    /// Taken while a batch is being stored on a blocking thread.
    Bulk(Option<BulkRunWriter>),
    Sqlx {
        store: &'s Store,
        open: Option<WriteTx>,
    },
}

impl<'s> Writer<'s> {
    async fn open(store: &'s Store) -> Result<Self, StoreError> {
        Ok(match store.bulk_run_writer().await? {
            Some(writer) => Self::Bulk(Some(writer)),
            None => Self::Sqlx { store, open: None },
        })
    }

    /// Stores `rows` in the open transaction (begun if none is).
    async fn upsert(&mut self, rows: Vec<RunRow>) -> Result<Vec<Upserted>, StoreError> {
        match self {
            Self::Bulk(slot) => Self::on_bulk(slot, move |writer| writer.upsert_rows(&rows)).await,
            Self::Sqlx { store, open } => {
                let tx = match open {
                    Some(tx) => tx,
                    None => open.insert(store.begin_bulk_write().await?),
                };
                tx.upsert_rows(&rows).await
            }
        }
    }

    /// Commits the open transaction, if any.
    async fn commit(&mut self) -> Result<(), StoreError> {
        match self {
            Self::Bulk(slot) => Self::on_bulk(slot, BulkRunWriter::commit).await,
            Self::Sqlx { open, .. } => match open.take() {
                Some(tx) => tx.commit().await,
                None => Ok(()),
            },
        }
    }

    /// Commits the open transaction and, on the bulk writer, leaves the
    /// store checkpointed ([`BulkRunWriter::finish`]).
    async fn finish(mut self) -> Result<(), StoreError> {
        match &mut self {
            Self::Bulk(slot) => Self::on_bulk(slot, BulkRunWriter::finish).await,
            Self::Sqlx { .. } => self.commit().await,
        }
    }

    /// Runs `work` on the bulk writer on a blocking thread and puts the
    /// writer back.
    async fn on_bulk<R: Send + 'static>(
        slot: &mut Option<BulkRunWriter>,
        work: impl FnOnce(&mut BulkRunWriter) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let mut writer = slot
            .take()
            .ok_or_else(|| StoreError::Bulk("the writer was lost to an earlier failure".into()))?;
        let (writer, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut writer);
            (writer, result)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        *slot = Some(writer);
        result
    }
}

/// `f` of `items` in contiguous shares, one per core but at least
/// `min_share` items each, on scoped threads; the results in the items'
/// order. `f` gets a share and the index of its first item.
fn on_every_core<T: Send, R: Send>(
    items: &mut [T],
    min_share: usize,
    f: impl Fn(&mut [T], usize) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len() / min_share.max(1))
        .max(1);
    let share = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks_mut(share)
            .enumerate()
            .map(|(k, part)| scope.spawn(move || f(part, k * share)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
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

    /// Every chunking of a file gives what parsing it whole gives.
    fn chunked(text: &[u8], format: Format, lines: usize) -> (Vec<(usize, Run)>, Vec<LineError>) {
        let mut runs = Vec::new();
        let mut errors = Vec::new();
        let mut last_bytes = 0;
        for chunk in Chunks::new(text, format, now()).with_chunk_lines(lines) {
            let chunk = chunk.unwrap();
            assert!(chunk.bytes_read > last_bytes, "each chunk reads on");
            last_bytes = chunk.bytes_read;
            runs.extend(chunk.runs);
            errors.extend(chunk.errors);
        }
        assert_eq!(last_bytes, text.len() as u64, "the whole file is read");
        (runs, errors)
    }

    #[test]
    fn chunks_keep_line_numbers_across_chunk_boundaries() {
        let mut text = Vec::new();
        for i in 1..=11 {
            match i {
                4 => text.extend_from_slice(b"{oops\r\n"),
                7 => text.extend_from_slice(b"\n"),
                9 => text.extend_from_slice(b"{\"pipeline\":\"p\xff\"}\n"),
                _ => text.extend_from_slice(
                    format!("{{\"pipeline\":\"p\",\"run_id\":\"{i}\",\"status\":\"failed\"}}\r\n")
                        .as_bytes(),
                ),
            }
        }
        let whole = chunked(&text, Format::JsonLines, CHUNK_LINES);
        for lines in [1, 2, 3, 5] {
            let (runs, errors) = chunked(&text, Format::JsonLines, lines);
            let lines_of = |r: &[(usize, Run)]| {
                r.iter()
                    .map(|(l, r)| (*l, r.run_id.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                lines_of(&runs),
                lines_of(&whole.0),
                "{lines} lines per chunk"
            );
            assert_eq!(errors, whole.1, "{lines} lines per chunk");
        }
        let lines: Vec<_> = whole.0.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [1, 2, 3, 5, 6, 8, 10, 11]);
        let bad: Vec<_> = whole
            .1
            .iter()
            .map(|e| (e.line, e.error.message.clone()))
            .collect();
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!(bad[0].0, 4);
        assert!(bad[0].1.starts_with("not valid JSON"), "{bad:?}");
        assert_eq!(bad[1].0, 9);
        assert!(bad[1].1.starts_with("not UTF-8 text"), "{bad:?}");
    }

    #[test]
    fn csv_chunks_keep_line_numbers_and_a_bad_header_reads_nothing_more() {
        let text = "pipeline,run_id,status,tests_total,tests_failed\n\
                    web,1,succeeded,10,1\n\
                    web,2,failed,10,x\n\
                    web,3,failed,10,2\n\
                    web,4,failed\n\
                    web,5,succeeded,10,0\n";
        let whole = chunked(text.as_bytes(), Format::Csv, CHUNK_LINES);
        for lines in [1, 2, 4] {
            let (runs, errors) = chunked(text.as_bytes(), Format::Csv, lines);
            let ids: Vec<_> = runs.iter().map(|(l, r)| (*l, r.run_id.as_str())).collect();
            assert_eq!(
                ids,
                [(2, "1"), (4, "3"), (6, "5")],
                "{lines} records per chunk"
            );
            assert_eq!(errors, whole.1);
        }
        let bad: Vec<_> = whole
            .1
            .iter()
            .map(|e| (e.line, e.error.field.as_str()))
            .collect();
        assert_eq!(bad, [(3, "tests_failed"), (5, "$")]);

        let mut chunks = Chunks::new("pipeline,colour\np,red\n".as_bytes(), Format::Csv, now())
            .with_chunk_lines(1);
        let first = chunks.next().unwrap().unwrap();
        assert!(first.runs.is_empty());
        assert!(
            first.errors.iter().all(|e| e.line == 1),
            "{:?}",
            first.errors
        );
        assert!(
            chunks.next().is_none(),
            "nothing after a bad header is read"
        );
    }

    #[test]
    fn a_read_error_ends_the_chunks() {
        struct Broken;
        impl std::io::Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        let mut chunks = Chunks::new(std::io::BufReader::new(Broken), Format::JsonLines, now());
        let err = chunks.next().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "disk gone");
        assert!(chunks.next().is_none());
    }

    #[test]
    fn a_line_read_straight_or_through_a_value_gives_the_same_run() {
        // serde reads a repeated key straight from the text as an error, a
        // JSON value keeps the last: such a line is stored as before.
        let text = "{\"pipeline\":\"p\",\"run_id\":\"1\",\"status\":\"running\",\"status\":\"failed\"}\n\
                    {\"pipeline\":\"p\",\"run_id\":\"2\",\"status\":\"failed\",\"attempt\":\"two\"}\n\
                    {\"pipeline\":\"p\",\"run_id\":\"3\",\"status\":\"succeeded\"} {}\n";
        let (runs, errors) = parse_file(text, Format::JsonLines, now());
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].1.status, RunStatus::Failed);
        let found: Vec<_> = errors
            .iter()
            .map(|e| (e.line, e.error.field.as_str(), e.error.message.as_str()))
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, 2);
        assert_eq!(found[0].1, "attempt");
        assert_eq!(found[1].0, 3);
        assert!(found[1].2.starts_with("not valid JSON"), "{found:?}");
    }

    fn run(id: &str, status: RunStatus) -> Run {
        let mut run = Run::new("web".to_string(), id.to_string(), status);
        run.started_at = Some("2026-11-20T10:00:00Z".parse().unwrap());
        run
    }

    fn service_on(store: &crate::store::Store) -> IngestService {
        IngestService::new(
            store.clone(),
            std::sync::Arc::new(crate::metrics::Metrics::new()),
            std::sync::Arc::new(crate::clock::SystemClock),
        )
    }

    /// Backfills two chunks (a running run that finishes in the second, an
    /// unchanged repeat, a repeat within the chunk) committing every 3 runs;
    /// returns the second chunk, and checks the counts and progress.
    async fn backfill_two_chunks(service: &IngestService) -> Vec<Run> {
        let first: Vec<Run> = (1..=5)
            .map(|i| {
                let status = if i == 3 {
                    RunStatus::Running
                } else {
                    RunStatus::Succeeded
                };
                run(&i.to_string(), status)
            })
            .collect();
        let second = vec![
            run("6", RunStatus::Failed),
            run("3", RunStatus::Succeeded),
            run("1", RunStatus::Succeeded),
            run("6", RunStatus::Failed),
        ];
        let (send, received) = tokio::sync::mpsc::channel(4);
        send.send(first).await.unwrap();
        send.send(second.clone()).await.unwrap();
        drop(send);
        let mut seen = Vec::new();
        let summary = store_committing_every(service, received, 3, |done| seen.push(done))
            .await
            .unwrap();
        assert_eq!(
            summary,
            BackfillSummary {
                lines_valid: 9,
                lines_invalid: 0,
                inserted: 6,
                updated: 1,
                duplicates: 2,
            }
        );
        assert_eq!(seen, [5, 9]);
        second
    }

    /// On a SQLite file (the bulk writer's way).
    #[tokio::test]
    async fn a_backfill_of_several_transactions_is_stored_whole_and_counts_what_was_known() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("pm.db").display());
        let store = crate::store::Store::connect(&url, 1).await.unwrap();
        let second = backfill_two_chunks(&service_on(&store)).await;
        store.close().await;

        // Everything is in the file once the backfill returns.
        let reopened = crate::store::Store::connect(&url, 1).await.unwrap();
        assert_eq!(reopened.count_runs().await.unwrap(), 6);
        let third = reopened.get_run("web", "3", 1).await.unwrap().unwrap();
        assert_eq!(third.run.status, RunStatus::Succeeded);
        assert_eq!(third.source, "backfill");
        let (send, received) = tokio::sync::mpsc::channel(1);
        send.send(second).await.unwrap();
        drop(send);
        let again = store_all(&service_on(&reopened), received, |_| {})
            .await
            .unwrap();
        assert_eq!((again.inserted, again.updated, again.duplicates), (0, 0, 4));
        reopened.close().await;
    }

    /// Where there is no bulk writer (in memory here, PostgreSQL alike),
    /// through sqlx's bulk transactions, whose larger page cache is given
    /// back at each commit.
    #[tokio::test]
    async fn a_backfill_without_a_bulk_writer_stores_the_same() {
        // One connection, so the cache size seen afterwards is the one the
        // backfill wrote through.
        let store = crate::store::Store::connect("sqlite::memory:", 1)
            .await
            .unwrap();
        assert!(store.bulk_run_writer().await.unwrap().is_none());
        backfill_two_chunks(&service_on(&store)).await;
        assert_eq!(store.count_runs().await.unwrap(), 6);
        let cache: i64 = sqlx::Row::get(
            &sqlx::query("PRAGMA cache_size")
                .fetch_one(store.pool())
                .await
                .unwrap(),
            0,
        );
        assert_eq!(cache, -32768, "the bulk cache is given back at the commit");
    }

    /// A chunk with a run the store must refuse stores nothing of it, and
    /// the error says which field.
    #[tokio::test]
    async fn a_run_refused_on_its_way_in_ends_the_backfill_with_its_problem() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("pm.db").display());
        let store = crate::store::Store::connect(&url, 1).await.unwrap();
        let mut bad = run("2", RunStatus::Succeeded);
        bad.pipeline = String::new();
        let (send, received) = tokio::sync::mpsc::channel(1);
        send.send(vec![run("1", RunStatus::Succeeded), bad])
            .await
            .unwrap();
        drop(send);
        let err = store_all(&service_on(&store), received, |_| {})
            .await
            .unwrap_err();
        match err {
            super::super::IngestError::Invalid(problems) => {
                assert!(problems[0].field.contains("pipeline"), "{problems:?}")
            }
            other => panic!("{other}"),
        }
        assert_eq!(store.count_runs().await.unwrap(), 0);
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
