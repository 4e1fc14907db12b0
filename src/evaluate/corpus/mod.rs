//! A deterministic corpus of labelled CI pipeline histories.
//!
//! Each [`Scenario`] is one pipeline with a few hundred runs on a realistic
//! calendar: a handful of pushes per working day, fewer at weekends, and
//! (for some pipelines) a scheduled nightly build. Ordinary runs carry the
//! noise real CI has: log-normal durations, the odd cold cache, flaky tests
//! (0–3 failures, the run then fails and is often retried as attempt 2),
//! jittery CPU and memory peaks. Into that the scenario writes what happens
//! to pipelines in practice: repeated slow builds, test failure bursts, a
//! lasting step change, slow drift, a memory leak ending in an out-of-memory
//! kill, CPU and memory jumps, hung builds, nightly builds that are
//! legitimately different, noisy-but-healthy pipelines, builds that got
//! faster, and bad deploys.
//!
//! Every run is labelled [`Label::Problem`] (someone should hear about it) or
//! [`Label::Ordinary`]; a run can also mark where a declared new normal
//! begins (a lasting change the team accepts), after which the first
//! [`NEW_NORMAL_GRACE`] runs do not count as false alarms. The labelling
//! rules per scenario are on [`Scenario`]'s variants.
//!
//! Everything here is a pure function of the seed: no I/O, no clock, no
//! global random state ([`SplitMix`] is this module's own generator, so the
//! corpus does not change when the detector's random numbers do).

use chrono::{DateTime, Duration, Utc};

use crate::domain::{DeployMetrics, ResourceMetrics, Run, RunStatus, TestCounts};

/// Ordinary runs after a declared new normal that do not count as false
/// alarms (the detector is allowed this long to learn the new level).
pub const NEW_NORMAL_GRACE: usize = 24;

/// Monday 2026-03-02 00:00 UTC: the first day of every history.
const FIRST_DAY_UNIX: i64 = 1_772_409_600;

/// What a run is, for evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    /// Abnormal in a way the team wants to hear about.
    Problem,
    /// Normal for this pipeline, however noisy.
    Ordinary,
}

/// The kinds of history in the corpus, one pipeline each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// A build 3.5–4.5× slower than usual, three times: twice 20 runs apart,
    /// then once more 60–100 runs later. Each slow run is a problem.
    RepeatedSlowBuild,
    /// Three bursts of 1–3 consecutive runs with 3–15 % of the tests failing
    /// (the run fails). Each burst run is a problem.
    TestFailureBursts,
    /// A lasting step: builds become 1.5–1.8× longer with 25–35 % more
    /// memory and more tests, and stay so. The first 3 runs of the step are
    /// problems and a new normal is declared at its first run.
    StepChange,
    /// Duration, test count and memory grow slowly (+50 %, +300 tests,
    /// +20 % over the history). All ordinary.
    SlowDrift,
    /// Memory grows over 12–18 runs towards the 4 GiB limit, with builds
    /// slowing as it does, until a run is killed out of memory. Ramp runs
    /// 20 % or more above the usual memory, and the out-of-memory run, are
    /// problems; the leak is fixed right after.
    MemoryLeak,
    /// Four single runs, alternating: CPU pegged at 96–100 % (build also
    /// 1.2–1.5× longer), or memory peak 1.8–2.3× the usual. Each is a problem.
    ResourceJumps,
    /// Two builds that hang for hours: killed by the 6 h job timeout, or
    /// cancelled by someone after 2–5 h. Each is a problem.
    HungBuilds,
    /// Nightly builds run the full suite (3× as long, 4× the tests, more CPU
    /// and memory), Sunday's nightly soak 1.5× longer again; all ordinary.
    /// Problems: one daytime build as slow as a nightly, and one nightly with
    /// 4–10 % of its tests failing.
    WeeklyPattern,
    /// A large, noisy, healthy build: wide duration spread, cold caches,
    /// flaky tests, wide CPU and memory swings. All ordinary.
    NoisyButFine,
    /// Builds get 40–55 % faster (remote cache switched on) and stay so.
    /// All ordinary: faster is not a problem.
    GotFaster,
    /// A deploy pipeline reporting error rate and p95 latency; two bad
    /// deploys (error rate 2–8 %, latency 1.6–2.5×) while the pipeline
    /// itself is green. Each bad deploy is a problem.
    BadDeploys,
}

impl Scenario {
    pub const ALL: [Scenario; 11] = [
        Scenario::RepeatedSlowBuild,
        Scenario::TestFailureBursts,
        Scenario::StepChange,
        Scenario::SlowDrift,
        Scenario::MemoryLeak,
        Scenario::ResourceJumps,
        Scenario::HungBuilds,
        Scenario::WeeklyPattern,
        Scenario::NoisyButFine,
        Scenario::GotFaster,
        Scenario::BadDeploys,
    ];

    /// Short name (for output and `--scenario`).
    pub fn name(self) -> &'static str {
        match self {
            Self::RepeatedSlowBuild => "repeated-slow-build",
            Self::TestFailureBursts => "test-failure-bursts",
            Self::StepChange => "step-change",
            Self::SlowDrift => "slow-drift",
            Self::MemoryLeak => "memory-leak",
            Self::ResourceJumps => "resource-jumps",
            Self::HungBuilds => "hung-builds",
            Self::WeeklyPattern => "weekly-pattern",
            Self::NoisyButFine => "noisy-but-fine",
            Self::GotFaster => "got-faster",
            Self::BadDeploys => "bad-deploys",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The pipeline this scenario's history belongs to.
    pub fn pipeline(self) -> &'static str {
        match self {
            Self::RepeatedSlowBuild => "shop/checkout-service/build",
            Self::TestFailureBursts => "shop/search-api/test",
            Self::StepChange => "shop/orders-service/build",
            Self::SlowDrift => "shop/web-frontend/build",
            Self::MemoryLeak => "shop/inventory-worker/test",
            Self::ResourceJumps => "shop/image-pipeline/build",
            Self::HungBuilds => "shop/mobile-app/build",
            Self::WeeklyPattern => "shop/platform/integration",
            Self::NoisyButFine => "shop/legacy-monolith/build",
            Self::GotFaster => "shop/notifications/build",
            Self::BadDeploys => "shop/payments-api/deploy",
        }
    }
}

/// One run of a history with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledRun {
    pub run: Run,
    pub label: Label,
    /// A declared new normal begins at this run.
    pub new_normal: bool,
    /// What was written into this run ("" for an ordinary run).
    pub what: &'static str,
}

/// One pipeline's labelled runs, in the order they are posted.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub scenario: Scenario,
    pub pipeline: String,
    pub runs: Vec<LabelledRun>,
}

impl History {
    pub fn labels(&self) -> Vec<Label> {
        self.runs.iter().map(|r| r.label).collect()
    }

    /// Indices of the runs where a declared new normal begins.
    pub fn new_normal_starts(&self) -> Vec<usize> {
        self.runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.new_normal)
            .map(|(i, _)| i)
            .collect()
    }
}

/// The whole corpus for a seed: one history per [`Scenario`], in
/// [`Scenario::ALL`] order.
pub fn corpus(seed: u64) -> Vec<History> {
    Scenario::ALL.iter().map(|s| history(*s, seed)).collect()
}

/// One scenario's history for a seed; the same as its entry in
/// [`corpus`] for that seed.
pub fn history(scenario: Scenario, seed: u64) -> History {
    let stream = (scenario as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F);
    let mut rng = SplitMix::new(SplitMix::new(seed).next_u64() ^ stream);
    let runs = match scenario {
        Scenario::RepeatedSlowBuild => repeated_slow_build(&mut rng),
        Scenario::TestFailureBursts => test_failure_bursts(&mut rng),
        Scenario::StepChange => step_change(&mut rng),
        Scenario::SlowDrift => slow_drift(&mut rng),
        Scenario::MemoryLeak => memory_leak(&mut rng),
        Scenario::ResourceJumps => resource_jumps(&mut rng),
        Scenario::HungBuilds => hung_builds(&mut rng),
        Scenario::WeeklyPattern => weekly_pattern(&mut rng),
        Scenario::NoisyButFine => noisy_but_fine(&mut rng),
        Scenario::GotFaster => got_faster(&mut rng),
        Scenario::BadDeploys => bad_deploys(&mut rng),
    };
    let pipeline = scenario.pipeline().to_string();
    let runs = runs
        .into_iter()
        .map(|mut r| {
            r.run.pipeline.clone_from(&pipeline);
            r
        })
        .collect();
    History {
        scenario,
        pipeline,
        runs,
    }
}

/// splitmix64: a small, fast, well-mixed generator; the whole corpus is a
/// function of its seed. Not for cryptography.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [lo, hi); `lo` when the range is empty.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo) as u128;
        lo + ((u128::from(self.next_u64()) * span) >> 64) as usize
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// When a run starts and what kind of trigger started it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    start: DateTime<Utc>,
    /// The scheduled nightly build (02:00).
    nightly: bool,
    /// Sunday (for the weekly soak).
    sunday: bool,
}

/// `n` run start times from the first day on: 2–8 pushes between 08:00 and
/// 19:00 on working days, 0–2 between 10:00 and 22:00 at weekends, and a
/// nightly build at about 02:00 every day when `nightly`.
fn schedule(rng: &mut SplitMix, n: usize, nightly: bool) -> Vec<Slot> {
    let first = DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(FIRST_DAY_UNIX);
    let mut slots = Vec::with_capacity(n);
    let mut day = 0i64;
    while slots.len() < n {
        let midnight = first + Duration::days(day);
        let weekday = day % 7; // 0 = Monday
        let weekend = weekday >= 5;
        if nightly {
            slots.push(Slot {
                start: midnight + Duration::seconds(2 * 3600 + rng.between(0, 600) as i64),
                nightly: true,
                sunday: weekday == 6,
            });
        }
        let (count, from_h, span_h) = if weekend {
            (rng.between(0, 3), 10, 12)
        } else {
            (rng.between(2, 9), 8, 11)
        };
        let mut starts: Vec<i64> = (0..count)
            .map(|_| from_h * 3600 + rng.between(0, span_h * 3600) as i64)
            .collect();
        starts.sort_unstable();
        for s in starts {
            slots.push(Slot {
                start: midnight + Duration::seconds(s),
                nightly: false,
                sunday: weekday == 6,
            });
        }
        day += 1;
    }
    slots.truncate(n);
    slots
}

/// `count` sorted positions in [from, to), at least `min_gap` apart: one
/// in each of `count` equal parts of the range.
fn spaced(rng: &mut SplitMix, count: usize, from: usize, to: usize, min_gap: usize) -> Vec<usize> {
    let part = to.saturating_sub(from) / count.max(1);
    (0..count)
        .map(|k| from + k * part + rng.between(0, part.saturating_sub(min_gap).max(1)))
        .collect()
}

/// The usual shape of a pipeline's runs.
#[derive(Debug, Clone, Copy)]
struct Profile {
    duration_s: f64,
    /// Spread of log(duration).
    sigma: f64,
    tests: u64,
    /// Chance that 1–3 flaky tests fail.
    flaky: f64,
    /// Chance that a flaky failure is retried (attempt 2).
    retry: f64,
    /// Chance of a cold cache (1.2–1.4× longer).
    cold_cache: f64,
    cpu_pct: f64,
    cpu_sd: f64,
    mem_mb: f64,
    /// Spread of log(memory).
    mem_sigma: f64,
    /// Error rate and p95 latency of the deployed service.
    deploy: Option<(f64, f64)>,
}

impl Profile {
    fn build(duration_s: f64, tests: u64, cpu_pct: f64, mem_mb: f64) -> Self {
        Self {
            duration_s,
            sigma: 0.08,
            tests,
            flaky: 0.12,
            retry: 0.5,
            cold_cache: 0.015,
            cpu_pct,
            cpu_sd: 5.0,
            mem_mb,
            mem_sigma: 0.04,
            deploy: None,
        }
    }
}

/// The metrics of one run before it becomes a [`Run`].
#[derive(Debug, Clone)]
struct Sample {
    duration_s: f64,
    tests_total: u64,
    failed: u64,
    /// The run produced a test report.
    tests_reported: bool,
    cpu_pct: f64,
    mem_mb: f64,
    deploy: Option<(f64, f64)>,
    status: RunStatus,
    stage: Option<&'static str>,
    log: Option<&'static str>,
    label: Label,
    new_normal: bool,
    what: &'static str,
}

impl Sample {
    fn problem(&mut self, what: &'static str) {
        self.label = Label::Problem;
        self.what = what;
    }

    fn fail_tests(&mut self, share: f64) {
        self.failed = ((self.tests_total as f64 * share).round() as u64).max(1);
        self.status = RunStatus::Failed;
        self.stage = Some("Test");
    }
}

fn ordinary(rng: &mut SplitMix, p: &Profile) -> Sample {
    let mut duration_s = p.duration_s * (p.sigma * rng.normal()).exp();
    if rng.chance(p.cold_cache) {
        duration_s *= rng.range(1.2, 1.4);
    }
    let failed = if rng.chance(p.flaky) {
        1 + rng.between(0, 3) as u64
    } else {
        0
    };
    let deploy = p.deploy.map(|(error_rate, latency)| {
        (
            error_rate * (0.35 * rng.normal()).exp(),
            latency * (0.06 * rng.normal()).exp(),
        )
    });
    Sample {
        duration_s,
        tests_total: p.tests,
        failed,
        tests_reported: true,
        cpu_pct: (p.cpu_pct + p.cpu_sd * rng.normal()).clamp(5.0, 100.0),
        mem_mb: p.mem_mb * (p.mem_sigma * rng.normal()).exp(),
        deploy,
        status: if failed > 0 {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        },
        stage: (failed > 0).then_some("Test"),
        log: None,
        label: Label::Ordinary,
        new_normal: false,
        what: "",
    }
}

fn hex7(rng: &mut SplitMix) -> String {
    format!("{:07x}", rng.next_u64() & 0x0fff_ffff)
}

fn to_run(run_id: u64, attempt: u32, commit: &str, start: DateTime<Utc>, s: &Sample) -> Run {
    let finished = start + Duration::milliseconds((s.duration_s * 1000.0).round() as i64);
    Run {
        pipeline: String::new(),
        run_id: run_id.to_string(),
        status: s.status,
        started_at: Some(start),
        finished_at: Some(finished),
        stage: s.stage.map(str::to_string),
        commit: Some(commit.to_string()),
        commit_author: None,
        commit_author_email: None,
        commit_author_login: None,
        commit_message: None,
        attempt,
        tests: s.tests_reported.then_some(TestCounts {
            total: s.tests_total,
            failed: s.failed.min(s.tests_total),
            skipped: 0,
        }),
        resources: Some(ResourceMetrics {
            cpu_peak_pct: Some((s.cpu_pct * 10.0).round() / 10.0),
            mem_peak_mb: Some(s.mem_mb.round()),
        }),
        deploy: s.deploy.map(|(error_rate, latency)| DeployMetrics {
            error_rate: Some(error_rate),
            latency_p95_ms: Some(latency.round()),
        }),
        metrics: Default::default(),
        stages: Vec::new(),
        log_excerpt: s.log.map(str::to_string),
        log_url: None,
        url: None,
    }
}

/// Runs on the given slots: an ordinary sample per slot, changed by
/// `tweak(index, slot, sample, rng)`, and an ordinary flaky failure
/// sometimes followed by its retry (attempt 2, same commit, tests pass;
/// the tweak for the same index applies to it, so it shares any level
/// change in force).
fn runs_on(
    rng: &mut SplitMix,
    slots: &[Slot],
    profile: &Profile,
    mut tweak: impl FnMut(usize, &Slot, &mut Sample, &mut SplitMix),
) -> Vec<LabelledRun> {
    let first_id = 1000 + rng.between(0, 9000) as u64;
    let mut out = Vec::with_capacity(slots.len() + slots.len() / 10);
    for ((i, slot), run_id) in slots.iter().enumerate().zip(first_id..) {
        let mut s = ordinary(rng, profile);
        tweak(i, slot, &mut s, rng);
        let commit = hex7(rng);
        let run = to_run(run_id, 1, &commit, slot.start, &s);
        let retry = s.label == Label::Ordinary
            && s.status == RunStatus::Failed
            && rng.chance(profile.retry);
        let finished = run.finished_at.unwrap_or(slot.start);
        out.push(LabelledRun {
            run,
            label: s.label,
            new_normal: s.new_normal,
            what: s.what,
        });
        if retry {
            let mut r = ordinary(rng, profile);
            tweak(i, slot, &mut r, rng);
            r.failed = 0;
            r.status = RunStatus::Succeeded;
            r.stage = None;
            let start = finished + Duration::seconds(60 + rng.between(0, 300) as i64);
            out.push(LabelledRun {
                run: to_run(run_id, 2, &commit, start, &r),
                label: Label::Ordinary,
                new_normal: false,
                what: "",
            });
        }
    }
    out
}

fn repeated_slow_build(rng: &mut SplitMix) -> Vec<LabelledRun> {
    let p = Profile::build(420.0, 900, 68.0, 1800.0);
    let slots = schedule(rng, 420, false);
    let first = rng.between(140, 200);
    let spikes = [first, first + 20, first + 40 + rng.between(20, 60)];
    runs_on(rng, &slots, &p, |i, _, s, rng| {
        if spikes.contains(&i) {
            s.duration_s *= rng.range(3.5, 4.5);
            s.problem("build 3.5-4.5x slower");
        }
    })
}

fn test_failure_bursts(rng: &mut SplitMix) -> Vec<LabelledRun> {
    let p = Profile {
        sigma: 0.1,
        ..Profile::build(300.0, 1500, 75.0, 2600.0)
    };
    let slots = schedule(rng, 420, false);
    let bursts: Vec<(usize, usize)> = spaced(rng, 3, 120, 410, 40)
        .into_iter()
        .map(|at| (at, rng.between(1, 4)))
        .collect();
    runs_on(rng, &slots, &p, |i, _, s, rng| {
        if bursts.iter().any(|&(at, len)| (at..at + len).contains(&i)) {
            s.fail_tests(rng.range(0.03, 0.15));
            s.duration_s *= rng.range(0.85, 1.0);
            s.problem("3-15% of tests failing");
        }
    })
}

fn step_change(rng: &mut SplitMix) -> Vec<LabelledRun> {
    let p = Profile::build(600.0, 1100, 70.0, 2200.0);
    let slots = schedule(rng, 420, false);
    let at = rng.between(180, 240);
    let duration = rng.range(1.5, 1.8);
    let memory = rng.range(1.25, 1.35);
    runs_on(rng, &slots, &p, |i, _, s, _| {
        if i >= at {
            s.duration_s *= duration;
            s.mem_mb *= memory;
            s.tests_total += 350;
        }
        if i == at {
            s.new_normal = true;
        }
        if (at..at + 3).contains(&i) {
            s.problem("first runs of a lasting step (1.5-1.8x duration, +30% memory)");
        }
    })
}

fn slow_drift(rng: &mut SplitMix) -> Vec<LabelledRun> {
    let n = 440;
    let p = Profile {
        sigma: 0.09,
        ..Profile::build(360.0, 800, 64.0, 1500.0)
    };
    let slots = schedule(rng, n, true);
    runs_on(rng, &slots, &p, |i, _, s, _| {
        let x = i as f64 / n as f64;
        s.duration_s *= 1.0 + 0.5 * x;
        s.tests_total += (300.0 * x) as u64;
        s.mem_mb *= 1.0 + 0.2 * x;
    })
}

fn memory_leak(rng: &mut SplitMix) -> Vec<LabelledRun> {
    const LIMIT_MB: f64 = 4096.0;
    let p = Profile::build(480.0, 1300, 65.0, 1900.0);
    let slots = schedule(rng, 420, false);
    let start = rng.between(200, 280);
    let len = rng.between(12, 19);
    let top = (LIMIT_MB / p.mem_mb - 1.0) * 0.92;
    runs_on(rng, &slots, &p, |i, _, s, rng| {
        if !(start..=start + len).contains(&i) {
            return;
        }
        let j = i - start;
        if j < len {
            let progress = (j + 1) as f64 / len as f64;
            let growth = 1.0 + top * progress;
            s.mem_mb = (s.mem_mb * growth).min(LIMIT_MB * 0.97);
            s.duration_s *= 1.0 + 0.25 * progress;
            if growth >= 1.2 {
                s.problem("memory leak: 20% or more above the usual peak");
            }
        } else {
            s.mem_mb = LIMIT_MB * rng.range(0.985, 1.0);
            s.duration_s *= rng.range(0.35, 0.7);
            s.status = RunStatus::Failed;
            s.tests_reported = false;
            s.stage = Some("Test");
            s.log = Some("java.lang.OutOfMemoryError: Java heap space\nKilled (exit code 137)");
            s.problem("killed out of memory");
        }
    })
}

fn resource_jumps(rng: &mut SplitMix) -> Vec<LabelledRun> {
    let p = Profile::build(540.0, 600, 58.0, 3000.0);
    let slots = schedule(rng, 420, false);
    let events = spaced(rng, 4, 100, 410, 40);
    let cpu_first = rng.chance(0.5);
    runs_on(rng, &slots, &p, |i, _, s, rng| {
        if let Some(k) = events.iter().position(|&e| e == i) {
            if (k % 2 == 0) == cpu_first {
                s.cpu_pct = rng.range(96.0, 100.0);
                s.duration_s *= rng.range(1.2, 1.5);
                s.problem("CPU pegged at 96-100%");
            } else {
                s.mem_mb *= rng.range(1.8, 2.3);
                s.problem("memory peak 1.8-2.3x");
            }
        }
    })
}

fn hung_builds(rng: &mut SplitMix) -> Vec<LabelledRun> {
    let p = Profile {
        sigma: 0.1,
        ..Profile::build(900.0, 400, 80.0, 5000.0)
    };
    let slots = schedule(rng, 420, true);
    let events = spaced(rng, 2, 120, 410, 60);
    runs_on(rng, &slots, &p, |i, _, s, rng| {
        if events.contains(&i) {
            if rng.chance(0.5) {
                s.duration_s = 6.0 * 3600.0 + rng.range(0.0, 30.0);
                s.status = RunStatus::Failed;
                s.log = Some("The job exceeded the maximum execution time of 6h0m0s");
                s.problem("hung until the 6 h timeout");
            } else {
                s.duration_s = rng.range(2.0, 5.0) * 3600.0;
                s.status = RunStatus::Cancelled;
                s.problem("hung for hours, then cancelled");
            }
            s.failed = 0;
            s.tests_reported = false;
            s.stage = Some("Build");
        }
    })
}

fn weekly_pattern(rng: &mut SplitMix) -> Vec<LabelledRun> {
    let p = Profile::build(720.0, 2000, 72.0, 3500.0);
    let slots = schedule(rng, 440, true);
    let from_day = rng.between(150, 250);
    let slow_day = (from_day..slots.len())
        .find(|&i| !slots[i].nightly)
        .unwrap_or(from_day);
    let from_night = rng.between(290, 400);
    let bad_night = (from_night..slots.len())
        .find(|&i| slots[i].nightly)
        .unwrap_or(from_night);
    runs_on(rng, &slots, &p, |i, slot, s, rng| {
        if slot.nightly {
            s.duration_s *= 3.0;
            if slot.sunday {
                s.duration_s *= 1.5;
            }
            s.tests_total *= 4;
            s.cpu_pct = (s.cpu_pct + 18.0).min(100.0);
            s.mem_mb *= 1.45;
        }
        if i == slow_day {
            s.duration_s *= rng.range(2.8, 3.2);
            s.problem("daytime build as slow as the nightly");
        }
        if i == bad_night {
            s.fail_tests(rng.range(0.04, 0.10));
            s.problem("nightly with 4-10% of tests failing");
        }
    })
}

fn noisy_but_fine(rng: &mut SplitMix) -> Vec<LabelledRun> {
    let p = Profile {
        sigma: 0.22,
        flaky: 0.35,
        retry: 0.6,
        cold_cache: 0.05,
        cpu_sd: 12.0,
        mem_sigma: 0.1,
        ..Profile::build(1500.0, 5000, 70.0, 6000.0)
    };
    let slots = schedule(rng, 440, true);
    runs_on(rng, &slots, &p, |_, _, _, _| {})
}

fn got_faster(rng: &mut SplitMix) -> Vec<LabelledRun> {
    let p = Profile::build(480.0, 700, 66.0, 1700.0);
    let slots = schedule(rng, 420, false);
    let at = rng.between(180, 260);
    let faster = rng.range(0.45, 0.6);
    runs_on(rng, &slots, &p, |i, _, s, _| {
        if i >= at {
            s.duration_s *= faster;
            s.cpu_pct = (s.cpu_pct - 8.0).max(5.0);
            s.mem_mb *= 0.95;
        }
    })
}

fn bad_deploys(rng: &mut SplitMix) -> Vec<LabelledRun> {
    let p = Profile {
        sigma: 0.07,
        deploy: Some((0.0015, 210.0)),
        ..Profile::build(360.0, 500, 45.0, 1200.0)
    };
    let slots = schedule(rng, 420, false);
    let events = spaced(rng, 2, 150, 410, 60);
    runs_on(rng, &slots, &p, |i, _, s, rng| {
        if events.contains(&i) {
            if let Some((error_rate, latency)) = s.deploy.as_mut() {
                *error_rate = rng.range(0.02, 0.08);
                *latency *= rng.range(1.6, 2.5);
            }
            s.problem("bad deploy: error rate 2-8%, p95 latency 1.6-2.5x");
        }
    })
}

#[cfg(test)]
mod tests;
