//! Sending runs: `pipemedic ingest` (backfill from a file) and
//! `pipemedic check` (one build's metrics to a server, with its verdict).

use std::path::Path;

use chrono::Utc;

use super::{load_config, open_store, CheckArgs, Exit};
use crate::config::Env;

/// How `pipemedic ingest` runs.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct IngestOptions {
    /// Validate and report, store nothing.
    pub dry_run: bool,
    /// Store the valid lines even when some are invalid.
    pub skip_invalid: bool,
    /// One JSON object on stdout instead of text and a progress bar.
    pub json: bool,
}

/// What `pipemedic ingest --json` prints (the shape is in the command's
/// help and the README).
#[derive(Debug, serde::Serialize)]
struct IngestReport<'a> {
    file: String,
    dry_run: bool,
    stored: bool,
    lines_valid: usize,
    lines_invalid: usize,
    inserted: usize,
    updated: usize,
    duplicates: usize,
    problems: Vec<Problem<'a>>,
}

#[derive(Debug, serde::Serialize)]
struct Problem<'a> {
    line: usize,
    field: &'a str,
    message: &'a str,
}

impl IngestReport<'_> {
    fn print(&self) -> Result<(), Exit> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Exit::Failure(e.into()))?;
        println!("{text}");
        Ok(())
    }
}

/// Problems kept for the report; the count of bad lines stays exact
/// beyond it.
const MAX_PROBLEMS_KEPT: usize = 10_000;

/// Opens the backfill file for reading, buffered.
fn open_file(file: &Path) -> Result<std::io::BufReader<std::fs::File>, Exit> {
    std::fs::File::open(file)
        .map(|f| std::io::BufReader::with_capacity(1 << 20, f))
        .map_err(|e| Exit::BadInput(format!("cannot read {}: {e}", file.display())))
}

/// A progress bar with `template`, hidden for `--json`.
fn bar(json: bool, len: u64, template: &str) -> indicatif::ProgressBar {
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(len)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// The first pass over a backfill file: every line parsed and validated,
/// nothing kept but the count of valid runs and the problems.
struct Checked {
    valid: usize,
    bad_lines: usize,
    problems: Vec<crate::ingest::backfill::LineError>,
}

fn check_file(
    file: &Path,
    format: crate::ingest::backfill::Format,
    now: chrono::DateTime<Utc>,
    bar: &indicatif::ProgressBar,
) -> Result<Checked, Exit> {
    let mut checked = Checked {
        valid: 0,
        bad_lines: 0,
        problems: Vec::new(),
    };
    let mut last_bad = 0;
    for chunk in crate::ingest::backfill::Chunks::new(open_file(file)?, format, now) {
        let chunk =
            chunk.map_err(|e| Exit::BadInput(format!("cannot read {}: {e}", file.display())))?;
        checked.valid += chunk.runs.len();
        for e in chunk.errors {
            if e.line != last_bad {
                checked.bad_lines += 1;
                last_bad = e.line;
            }
            if checked.problems.len() < MAX_PROBLEMS_KEPT {
                checked.problems.push(e);
            }
        }
        bar.set_position(chunk.bytes_read);
    }
    Ok(checked)
}

pub(super) async fn ingest(
    path: Option<&Path>,
    env: &Env,
    file: &Path,
    options: IngestOptions,
) -> Result<(), Exit> {
    use crate::ingest::backfill::{self, Format};
    let clock = std::sync::Arc::new(crate::clock::SystemClock);
    let now = crate::clock::Clock::now(clock.as_ref());
    let format = Format::of(file);
    let size = std::fs::metadata(file)
        .map_err(|e| Exit::BadInput(format!("cannot read {}: {e}", file.display())))?
        .len();
    // First pass: validate the whole file, keeping no run.
    let checking = bar(
        options.json,
        size,
        "{spinner} checking runs [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    );
    let checked = {
        let (file, checking) = (file.to_path_buf(), checking.clone());
        tokio::task::spawn_blocking(move || check_file(&file, format, now, &checking))
            .await
            .map_err(|e| Exit::Failure(e.into()))??
    };
    checking.finish_and_clear();
    const SHOWN: usize = 50;
    if !options.json {
        for e in checked.problems.iter().take(SHOWN) {
            eprintln!("{}:{e}", file.display());
        }
        if checked.bad_lines > 0 && checked.problems.len() > SHOWN {
            eprintln!(
                "... and more problems: {} invalid lines in all",
                checked.bad_lines
            );
        }
    }
    let bad_lines = checked.bad_lines;
    let mut report = IngestReport {
        file: file.display().to_string(),
        dry_run: options.dry_run,
        stored: false,
        lines_valid: checked.valid,
        lines_invalid: bad_lines,
        inserted: 0,
        updated: 0,
        duplicates: 0,
        problems: checked
            .problems
            .iter()
            .map(|e| Problem {
                line: e.line,
                field: &e.error.field,
                message: &e.error.message,
            })
            .collect(),
    };
    if options.dry_run {
        if options.json {
            report.print()?;
        } else {
            println!(
                "dry run: {} valid runs, {bad_lines} invalid lines, nothing stored",
                checked.valid
            );
        }
        return if bad_lines == 0 {
            Ok(())
        } else {
            Err(Exit::BadInput(format!(
                "{} has {bad_lines} invalid lines",
                file.display()
            )))
        };
    }
    if bad_lines > 0 && !options.skip_invalid {
        if options.json {
            report.print()?;
        }
        return Err(Exit::BadInput(format!(
            "{} has {bad_lines} invalid lines; nothing stored (fix them, or pass --skip-invalid to store the valid ones)",
            file.display()
        )));
    }
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let redactor = crate::redact::Redactor::new(&loaded.config.planner.redact_patterns)
        .map_err(|e| Exit::BadInput(format!("planner.redact_patterns: {e}")))?;
    let service = crate::ingest::IngestService::with_redactor(
        store.clone(),
        std::sync::Arc::new(crate::metrics::Metrics::new()),
        clock,
        None,
        std::sync::Arc::new(redactor),
    );
    let storing = bar(
        options.json,
        checked.valid as u64,
        "{spinner} storing runs [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
    );
    let started = std::time::Instant::now();
    // Second pass: parse again, a chunk at a time, while the writer
    // stores the chunk before.
    let (chunks, received) = tokio::sync::mpsc::channel(2);
    let reader = {
        let file = file.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<(), Exit> {
            for chunk in backfill::Chunks::new(open_file(&file)?, format, now) {
                let chunk = chunk
                    .map_err(|e| Exit::BadInput(format!("cannot read {}: {e}", file.display())))?;
                let runs = chunk.runs.into_iter().map(|(_, run)| run).collect();
                if chunks.blocking_send(runs).is_err() {
                    // The writer stopped; its error is reported.
                    break;
                }
            }
            Ok(())
        })
    };
    let stored =
        backfill::store_all(&service, received, |done| storing.set_position(done as u64)).await;
    let read = reader.await.map_err(|e| Exit::Failure(e.into()))?;
    let mut summary = stored.map_err(|e| Exit::Failure(e.into()))?;
    read?;
    storing.finish_and_clear();
    summary.lines_invalid = bad_lines;
    store.close().await;
    if options.json {
        report.stored = true;
        report.lines_valid = summary.lines_valid;
        report.inserted = summary.inserted;
        report.updated = summary.updated;
        report.duplicates = summary.duplicates;
        return report.print();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}: {} runs read, {} inserted, {} updated, {} already stored, {} invalid lines skipped; stored in {seconds:.1} s ({:.0} runs/s)",
        file.display(),
        summary.lines_valid,
        summary.inserted,
        summary.updated,
        summary.duplicates,
        summary.lines_invalid,
        summary.lines_valid as f64 / seconds.max(1e-9)
    );
    Ok(())
}

pub(super) async fn check(args: Box<CheckArgs>, env: &Env) -> Result<(), Exit> {
    use crate::check::{self, BuildFacts, CheckOutcome};
    let args = *args;
    let facts = BuildFacts {
        pipeline: args.pipeline.clone(),
        run_id: args.run_id,
        status: args.status,
        duration_s: args.duration_s,
        started_at: args.started_at,
        finished_at: args.finished_at,
        stage: args.stage,
        commit: args.commit,
        tests_total: args.tests_total,
        tests_failed: args.tests_failed,
        tests_skipped: args.tests_skipped,
        cpu_peak_pct: args.cpu_peak_pct,
        mem_peak_mb: args.mem_peak_mb,
        error_rate: args.error_rate,
        latency_p95_ms: args.latency_p95_ms,
        metrics: args.metrics,
        log_url: args.log_url,
    };
    let run = check::build_run(&facts, env, Utc::now())
        .map_err(|problems| Exit::BadInput(problems.join("\n")))?;
    let outcome = check::check(
        &args.server,
        args.token.as_deref(),
        &run,
        std::time::Duration::from_secs(args.timeout_s),
    )
    .await;
    let print = |v: &crate::domain::Verdict| {
        if args.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            println!("{}", check::explain(&args.pipeline, v));
        }
    };
    match outcome {
        CheckOutcome::Normal(Some(v)) => {
            print(&v);
            Ok(())
        }
        CheckOutcome::Normal(None) => {
            println!("normal: the run was stored; the server gave no verdict");
            Ok(())
        }
        CheckOutcome::Anomalous(v) => {
            print(&v);
            Err(Exit::Anomalous)
        }
        CheckOutcome::Refused(msg) => Err(Exit::BadInput(msg)),
        CheckOutcome::Unavailable(msg) if args.strict => Err(Exit::Failure(anyhow::anyhow!(msg))),
        CheckOutcome::Unavailable(msg) => {
            eprintln!("warning: {msg}; not blocking the build (use --strict to fail instead)");
            Ok(())
        }
    }
}
