//! Evaluates pipemedic's detection on CI-shaped pipeline histories.
//!
//! ```text
//! cargo run --release --example ci_eval -- [--seed N] [--show] [--show-problems] [--scenario NAME]...
//! ```
//!
//! Starts the application in-process (product default settings, a fresh
//! SQLite store in a temporary directory, 127.0.0.1 on a free port), posts
//! every run of the seeded corpus (`pipemedic::evaluate::corpus`) through
//! `POST /v1/runs`, one run per request, reads the verdicts and prints one
//! line per scenario and a total. `--show` also lists each missed problem
//! and each false alarm with its verdict, `--show-problems` every problem
//! run with its verdict and the next run's.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use pipemedic::config::{self, Env, Loaded, Secret, Secrets};
use pipemedic::domain::Verdict;
use pipemedic::evaluate::corpus::{self, History, LabelledRun, Scenario};
use pipemedic::evaluate::drive::{grades, Driver};
use pipemedic::evaluate::score::{self, Mark, ScenarioResult, Tally};
use pipemedic::startup::Application;

const USAGE: &str = "\
usage: ci_eval [--seed N] [--show] [--show-problems] [--scenario NAME]...

Runs the labelled CI corpus through a pipemedic started in-process (default
settings, temporary SQLite store), one run per POST /v1/runs, and prints per
scenario: runs, problems, found, recall, ordinary runs, false alarms and false
alarms per 1,000 ordinary runs.

A problem counts as found when it or the next run is graded above 0. Ordinary
runs in the 24 runs after a declared new normal are not counted.

options:
  --seed N         corpus seed (default 1)
  --show           also list missed problems and false alarms with their verdicts
  --show-problems  also list every problem run (found or not) with its verdict
                   and the next run's
  --scenario NAME  only this scenario (repeatable); one of:
                   ";

struct Args {
    seed: u64,
    show: bool,
    show_problems: bool,
    only: Vec<Scenario>,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut parsed = Args {
        seed: 1,
        show: false,
        show_problems: false,
        only: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--show" => parsed.show = true,
            "--show-problems" => parsed.show_problems = true,
            "--seed" => {
                let v = value("--seed")?;
                parsed.seed = v
                    .parse()
                    .map_err(|_| format!("--seed {v:?} is not a whole number"))?;
            }
            "--scenario" => {
                let v = value("--scenario")?;
                parsed
                    .only
                    .push(Scenario::parse(&v).ok_or_else(|| format!("no scenario named {v:?}"))?);
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(Parsed::Run(parsed))
}

fn usage() -> String {
    let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
    format!("{USAGE}{}\n", names.join(", "))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ci_eval: {e}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ci_eval: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ci_eval: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The application with product defaults, on a free loopback port, storing
/// in `store_url`; its base URL, shutdown token and running task.
async fn start_app(
    store_url: String,
    token: &str,
) -> anyhow::Result<(
    String,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let mut config = config::from_sources(None, None, &Env::new()).context("default config")?;
    config.server.listen = "127.0.0.1:0".into();
    config.store.url = store_url;
    // Verdicts do not depend on plans; drafting one per alert would only
    // add load to the measurement.
    config.planner.plan_incidents = false;
    let secrets = Secrets {
        ingest_token: Some(Secret::new(token)),
        ..Secrets::default()
    };
    let loaded = Loaded {
        config,
        secrets,
        source: None,
    };
    let app = Application::build(loaded)
        .await
        .context("starting pipemedic")?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    Ok((base, shutdown, server))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let histories: Vec<History> = corpus::corpus(args.seed)
        .into_iter()
        .filter(|h| args.only.is_empty() || args.only.contains(&h.scenario))
        .collect();
    let dir = tempfile::tempdir().context("temporary directory")?;
    let store_url = format!("sqlite://{}", dir.path().join("ci_eval.db").display());
    let token = format!("ci-eval-{}", std::process::id());
    let (base, shutdown, server) = start_app(store_url, &token).await?;

    let started = Instant::now();
    let driver = Driver::new(reqwest::Client::new(), &base, &token);
    let verdicts = driver.grade_all(&histories).await;
    shutdown.cancel();
    // Let the server finish (it saves the models on the way out).
    server
        .await
        .context("the server task")?
        .context("the server")?;
    let verdicts = verdicts?;
    let elapsed = started.elapsed();

    let results: Vec<ScenarioResult> = histories
        .iter()
        .zip(&verdicts)
        .map(|(h, v)| score::score_history(h, &grades(v)))
        .collect();
    let missing: usize = verdicts.iter().flatten().filter(|v| v.is_none()).count();

    println!(
        "seed {}: {} runs in {:.1} s over HTTP, one per request",
        args.seed,
        histories.iter().map(|h| h.runs.len()).sum::<usize>(),
        elapsed.as_secs_f64()
    );
    println!(
        "{:<20} {:>5} {:>8} {:>5} {:>7} {:>8} {:>12} {:>7}",
        "scenario", "runs", "problems", "found", "recall", "ordinary", "false_alarms", "FA/1000"
    );
    for r in &results {
        println!("{}", line(r.scenario.name(), &r.tally));
    }
    println!("{}", line("total", &score::total(&results)));
    if missing > 0 {
        println!("note: {missing} runs came back without a verdict (counted as grade 0)");
    }
    if args.show || args.show_problems {
        for (h, (r, v)) in histories.iter().zip(results.iter().zip(&verdicts)) {
            show(h, r, v, &args);
        }
    }
    Ok(())
}

fn line(name: &str, t: &Tally) -> String {
    let recall = t
        .recall()
        .map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0));
    let fa = t
        .false_alarms_per_1000()
        .map_or_else(|| "-".to_string(), |r| format!("{r:.1}"));
    format!(
        "{:<20} {:>5} {:>8} {:>5} {:>7} {:>8} {:>12} {:>7}",
        name, t.runs, t.problems, t.found, recall, t.ordinary, t.false_alarms, fa
    )
}

/// Lists a history's missed problems and false alarms (`--show`), or
/// every problem (`--show-problems`), or both.
fn show(h: &History, r: &ScenarioResult, verdicts: &[Option<Verdict>], args: &Args) {
    for (i, mark) in r.marks.iter().enumerate() {
        let kind = match mark {
            Mark::Missed if args.show || args.show_problems => "MISSED",
            Mark::FalseAlarm if args.show => "FALSE ALARM",
            Mark::Found if args.show_problems => "found",
            _ => continue,
        };
        let run = &h.runs[i];
        println!(
            "{} #{i} {kind}: {}{}",
            h.scenario.name(),
            describe(run),
            if run.what.is_empty() {
                String::new()
            } else {
                format!(" [{}]", run.what)
            }
        );
        println!("    verdict: {}", verdict_text(verdicts[i].as_ref()));
        if matches!(mark, Mark::Missed | Mark::Found) {
            let next = verdicts.get(i + 1).and_then(Option::as_ref);
            println!("    next run's verdict: {}", verdict_text(next));
        }
    }
}

fn describe(l: &LabelledRun) -> String {
    let r = &l.run;
    let mut parts = vec![format!(
        "run {}/{} {} {}",
        r.run_id,
        r.attempt,
        r.status,
        r.started_at
            .map(|t| t.format("%a %F %R").to_string())
            .unwrap_or_default()
    )];
    if let Some(d) = r.duration_s() {
        parts.push(format!("duration_s={d:.0}"));
    }
    if let Some(t) = r.tests {
        parts.push(format!("tests={}/{} failed", t.failed, t.total));
    }
    if let Some(res) = r.resources {
        if let Some(c) = res.cpu_peak_pct {
            parts.push(format!("cpu={c:.0}%"));
        }
        if let Some(m) = res.mem_peak_mb {
            parts.push(format!("mem={m:.0}MB"));
        }
    }
    if let Some(d) = r.deploy {
        if let Some(e) = d.error_rate {
            parts.push(format!("error_rate={e:.4}"));
        }
        if let Some(l) = d.latency_p95_ms {
            parts.push(format!("p95={l:.0}ms"));
        }
    }
    parts.join(" ")
}

fn verdict_text(v: Option<&Verdict>) -> String {
    let Some(v) = v else {
        return "none".into();
    };
    let mut s = format!(
        "score {:.2} grade {:.2}{}",
        v.score,
        v.grade,
        if v.warming_up { " (warming up)" } else { "" }
    );
    for d in &v.deviations {
        s.push_str(&format!(
            "; {} {:.4} expected {:.4} ({:.0}%)",
            d.metric,
            d.observed,
            d.expected,
            d.attribution * 100.0
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let Ok(Parsed::Run(a)) = parse(&[]) else {
            panic!("defaults")
        };
        assert_eq!((a.seed, a.show, a.only.len()), (1, false, 0));
        let Ok(Parsed::Run(a)) = parse(&[
            "--seed",
            "7",
            "--show",
            "--show-problems",
            "--scenario=hung-builds",
        ]) else {
            panic!("all options")
        };
        assert_eq!((a.seed, a.show, a.show_problems), (7, true, true));
        assert_eq!(a.only, [Scenario::HungBuilds]);
        assert!(matches!(parse(&["--help"]), Ok(Parsed::Help)));
        assert!(parse(&["--seed"]).is_err());
        assert!(parse(&["--seed", "x"]).is_err());
        assert!(parse(&["--scenario", "nope"]).is_err());
        assert!(parse(&["extra"]).is_err());
    }
}
