//! Realistic, deterministic run history for the demo's three sample
//! pipelines: daily and weekly rhythm, noise, the odd genuine failure, and
//! the two problems of the replayed day.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc, Weekday};

use crate::detect::rcf::Rng;
use crate::domain::{DeployMetrics, ResourceMetrics, Run, RunStatus, StageTiming, TestCounts};

/// A sample pipeline: its name, how often it runs and its normal.
#[derive(Debug, Clone)]
pub struct SamplePipeline {
    pub name: &'static str,
    pub runs_per_day: u32,
    /// Normal duration of each stage in seconds (Source, Build, Test, Deploy).
    pub stages: [(&'static str, f64); 4],
    pub tests: u64,
    pub cpu: f64,
    pub mem_mb: f64,
    pub error_rate: f64,
    pub latency_ms: f64,
}

pub const PIPELINES: [SamplePipeline; 3] = [
    SamplePipeline {
        name: "checkout-service",
        runs_per_day: 10,
        stages: [
            ("Source", 6.0),
            ("Build", 210.0),
            ("Test", 185.0),
            ("Deploy", 95.0),
        ],
        tests: 812,
        cpu: 62.0,
        mem_mb: 2050.0,
        error_rate: 0.002,
        latency_ms: 180.0,
    },
    SamplePipeline {
        name: "payments-api",
        runs_per_day: 8,
        stages: [
            ("Source", 5.0),
            ("Build", 160.0),
            ("Test", 240.0),
            ("Deploy", 120.0),
        ],
        tests: 1430,
        cpu: 55.0,
        mem_mb: 1600.0,
        error_rate: 0.001,
        latency_ms: 140.0,
    },
    SamplePipeline {
        name: "search-indexer",
        runs_per_day: 4,
        stages: [
            ("Source", 8.0),
            ("Build", 420.0),
            ("Test", 300.0),
            ("Deploy", 160.0),
        ],
        tests: 390,
        cpu: 78.0,
        mem_mb: 5200.0,
        error_rate: 0.003,
        latency_ms: 320.0,
    },
];

/// What kind of run to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Normal,
    /// Many tests fail at once, intermittently: the Test stage fails.
    FlakyTests,
    /// The deploy went out but raised the error rate and latency.
    DeployRegression,
}

fn noise(rng: &mut Rng, scale: f64) -> f64 {
    // Roughly normal: the sum of three uniforms, centred.
    (rng.next_f64() + rng.next_f64() + rng.next_f64() - 1.5) * scale
}

/// One run of `p` starting at `start`.
pub fn run(p: &SamplePipeline, n: u64, start: DateTime<Utc>, shape: Shape, rng: &mut Rng) -> Run {
    // Busier hours and weekdays build a little slower.
    let busy = if (9..18).contains(&start.hour()) {
        1.04
    } else {
        1.0
    };
    let weekend = matches!(start.weekday(), Weekday::Sat | Weekday::Sun);
    let load = if weekend { 0.97 } else { busy };
    let mut status = RunStatus::Succeeded;
    let mut t = start;
    let mut stages = Vec::new();
    let mut failed_stage = None;
    let mut failed_tests = (rng.next_f64() * 3.0).floor() as u64;
    let mut log = None;
    // A genuine, unremarkable failure now and then.
    let ordinary_failure = shape == Shape::Normal && rng.next_f64() < 0.02;
    for (name, secs) in p.stages {
        let mut d = secs * load * (1.0 + noise(rng, 0.08));
        if name == "Test" && shape == Shape::FlakyTests {
            d *= 0.55;
            failed_tests = p.tests / 22;
            status = RunStatus::Failed;
            failed_stage = Some(name);
            log = Some(format!(
                "[Test] {} tests, {} failed, 4 skipped\n\
                 FAILED CheckoutFlowIT.placesOrder - timed out waiting for element #confirm (flaky on shared runner)\n\
                 FAILED CartIT.appliesCoupon - StaleElementReference\n\
                 FAILED PaymentsClientTest.retriesOn503 - address already in use: 127.0.0.1:8089\n\
                 ... 34 more; 31 of them passed on retry in the previous run",
                p.tests, failed_tests
            ));
        }
        if name == "Test" && ordinary_failure {
            failed_tests = 1;
            status = RunStatus::Failed;
            failed_stage = Some(name);
        }
        let end = t + Duration::milliseconds((d * 1000.0) as i64);
        stages.push(StageTiming {
            job_id: None,
            name: name.to_string(),
            status: Some(if failed_stage == Some(name) {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            }),
            started_at: Some(t),
            finished_at: Some(end),
        });
        t = end;
        if failed_stage.is_some() {
            break;
        }
    }
    let (error_rate, latency) = if shape == Shape::DeployRegression {
        log = Some(
            "[Deploy] canary healthy, promoting to 100%\n\
             [Deploy] 5xx rate 8.1% (threshold 1%) on /v1/charge after promotion\n\
             [Deploy] p95 latency 950ms on /v1/charge"
                .to_string(),
        );
        (0.081, p.latency_ms * 5.3)
    } else {
        (
            (p.error_rate * (1.0 + noise(rng, 0.3))).max(0.0),
            p.latency_ms * (1.0 + noise(rng, 0.06)),
        )
    };
    let mut r = Run::new(p.name, format!("{}-{n:05}", &p.name[..3]), status);
    r.started_at = Some(start);
    r.finished_at = Some(t);
    r.stage = failed_stage
        .map(str::to_string)
        .or_else(|| (shape == Shape::DeployRegression).then(|| "Deploy".to_string()));
    r.commit = Some(format!("{:07x}", (n * 2_654_435_761) % 0xfff_ffff));
    r.commit_author = Some(["dana", "lee", "sam", "ira"][(n % 4) as usize].to_string());
    r.tests = Some(TestCounts {
        total: p.tests,
        failed: failed_tests,
        skipped: 4,
    });
    r.resources = Some(ResourceMetrics {
        cpu_peak_pct: Some((p.cpu * (1.0 + noise(rng, 0.08))).clamp(1.0, 100.0)),
        mem_peak_mb: Some(p.mem_mb * (1.0 + noise(rng, 0.05))),
    });
    if failed_stage.is_none() {
        r.deploy = Some(DeployMetrics {
            error_rate: Some(error_rate.min(1.0)),
            latency_p95_ms: Some(latency),
        });
    }
    r.stages = stages;
    r.log_excerpt = log;
    r.log_url = Some(format!(
        "https://ci.example.com/{}/{}/log",
        p.name, r.run_id
    ));
    r.url = Some(format!("https://ci.example.com/{}/{}", p.name, r.run_id));
    r
}

/// `days` days of normal history for every sample pipeline, ending at `end`,
/// oldest first.
pub fn history(days: i64, end: DateTime<Utc>, seed: u64) -> Vec<Run> {
    let mut rng = Rng::new(seed);
    let mut runs = Vec::new();
    let start = end - Duration::days(days);
    for (pi, p) in PIPELINES.iter().enumerate() {
        let every = Duration::minutes(24 * 60 / i64::from(p.runs_per_day));
        let mut t = start + Duration::minutes(7 * pi as i64);
        let mut n = 0u64;
        while t < end {
            runs.push(run(p, n, t, Shape::Normal, &mut rng));
            n += 1;
            t += every;
        }
    }
    runs.sort_by_key(|r| r.started_at);
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_deterministic_and_valid() {
        let end: DateTime<Utc> = "2026-11-24T00:00:00Z".parse().unwrap();
        let a = history(90, end, 7);
        let b = history(90, end, 7);
        assert_eq!(a, b);
        assert_eq!(a.len(), 90 * (10 + 8 + 4));
        assert!(a
            .iter()
            .all(|r| r.validate("", chrono::Utc::now()).is_empty()));
        let failed = a.iter().filter(|r| r.status == RunStatus::Failed).count();
        assert!(failed > 0 && failed < a.len() / 20, "{failed}");
    }

    #[test]
    fn problem_runs_look_like_their_problem() {
        let mut rng = Rng::new(1);
        let t: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
        let flaky = run(&PIPELINES[0], 1, t, Shape::FlakyTests, &mut rng);
        assert_eq!(flaky.status, RunStatus::Failed);
        assert_eq!(flaky.stage.as_deref(), Some("Test"));
        assert!(flaky.tests.unwrap().failed > 30);
        let deploy = run(&PIPELINES[1], 1, t, Shape::DeployRegression, &mut rng);
        assert!(deploy.deploy.unwrap().error_rate.unwrap() > 0.05);
        assert_eq!(deploy.stage.as_deref(), Some("Deploy"));
    }
}
