//! Pipeline health summaries: runs, success rate and duration percentiles
//! over 7 and 30 days, a trend against the week before, and the last run.
//! The same [`PipelineHealth`] backs `pipemedic health`, the HTTP route and
//! the chat answer, so every surface shows the same numbers.
//!
//! Definitions: a window is `[now - N days, now)` by run event time (finish,
//! else start). Runs still running are not counted. The success rate is
//! succeeded / (succeeded + failed); cancelled runs count as runs but are
//! neither. Percentiles interpolate linearly between closest ranks over the
//! durations of succeeded and failed runs.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::RunStatus;
use crate::store::{RunSummary, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    pub run_id: String,
    pub status: RunStatus,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineHealth {
    pub pipeline: String,
    pub runs_7d: u64,
    pub runs_30d: u64,
    pub success_rate_7d: Option<f64>,
    pub success_rate_30d: Option<f64>,
    pub duration_p50_s_7d: Option<f64>,
    pub duration_p95_s_7d: Option<f64>,
    pub last_run: Option<LastRun>,
    pub open_incidents: u64,
    /// `slower`, `faster` or `steady`: this week's median duration against
    /// the week before (10% either way), `unknown` without both.
    pub duration_trend: String,
    /// `better`, `worse` or `steady`: this week's success rate against the
    /// week before (5 points either way), `unknown` without both.
    pub success_trend: String,
    /// Whether detection's expected values follow the weekly rhythm yet
    /// (it needs `detector.seasonality_after_days` of history).
    #[serde(default)]
    pub weekly_rhythm_learned: bool,
    /// Why the latest scored run was judged as it was, in words (empty
    /// when nothing about it stood out).
    #[serde(default)]
    pub last_verdict_why: Vec<String>,
}

/// Linear-interpolated percentile (`q` in [0, 1]) of unsorted values.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

/// Counts of one window of runs, by the definitions above.
pub(crate) struct WindowStats {
    pub(crate) runs: u64,
    pub(crate) success_rate: Option<f64>,
    /// Durations of the succeeded and failed runs.
    pub(crate) durations: Vec<f64>,
}

pub(crate) fn window_stats<'a>(runs: impl Iterator<Item = &'a RunSummary>) -> WindowStats {
    let (mut count, mut ok, mut decided) = (0u64, 0u64, 0u64);
    let mut durations = Vec::new();
    for r in runs {
        if !r.status.is_final() {
            continue;
        }
        count += 1;
        match r.status {
            RunStatus::Succeeded => {
                ok += 1;
                decided += 1;
            }
            RunStatus::Failed => decided += 1,
            _ => {}
        }
        if matches!(r.status, RunStatus::Succeeded | RunStatus::Failed) {
            if let Some(d) = r.duration_s {
                durations.push(d);
            }
        }
    }
    WindowStats {
        runs: count,
        success_rate: (decided > 0).then(|| round4(ok as f64 / decided as f64)),
        durations,
    }
}

pub(crate) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `slower`, `faster` or `steady`: a median duration against the one of the
/// window before (10% either way); `unknown` without both.
pub fn duration_trend(p50: Option<f64>, before: Option<f64>) -> &'static str {
    match (p50, before) {
        (Some(now), Some(before)) if before > 0.0 => {
            if now > before * 1.1 {
                "slower"
            } else if now < before * 0.9 {
                "faster"
            } else {
                "steady"
            }
        }
        _ => "unknown",
    }
}

/// `better`, `worse` or `steady`: a success rate against the one of the
/// window before (5 points either way); `unknown` without both.
pub fn success_trend(rate: Option<f64>, before: Option<f64>) -> &'static str {
    match (rate, before) {
        (Some(now), Some(before)) => {
            if now > before + 0.05 {
                "better"
            } else if now < before - 0.05 {
                "worse"
            } else {
                "steady"
            }
        }
        _ => "unknown",
    }
}

/// Computes the health of one pipeline at `now`. `open_incidents` is
/// supplied by the caller (the incident store).
pub async fn pipeline_health(
    store: &Store,
    pipeline: &str,
    now: DateTime<Utc>,
    open_incidents: u64,
) -> Result<Option<PipelineHealth>, StoreError> {
    let Some(last) = store.last_run(pipeline).await? else {
        return Ok(None);
    };
    let runs = store
        .run_summaries(
            pipeline,
            now - Duration::days(30),
            now + Duration::milliseconds(1),
        )
        .await?;
    let in_window = |days: i64| {
        let from = now - Duration::days(days);
        runs.iter().filter(move |r| r.event_time >= from)
    };
    let week_before_from = now - Duration::days(14);
    let week_from = now - Duration::days(7);
    let w7 = window_stats(in_window(7));
    let w30 = window_stats(in_window(30));
    let prev = window_stats(
        runs.iter()
            .filter(|r| r.event_time >= week_before_from && r.event_time < week_from),
    );
    let p50 = percentile(&w7.durations, 0.5);
    let prev_p50 = percentile(&prev.durations, 0.5);
    let duration_trend = duration_trend(p50, prev_p50);
    let success_trend = success_trend(w7.success_rate, prev.success_rate);
    let verdict = store.latest_verdict(pipeline).await?;
    Ok(Some(PipelineHealth {
        pipeline: pipeline.to_string(),
        runs_7d: w7.runs,
        runs_30d: w30.runs,
        success_rate_7d: w7.success_rate,
        success_rate_30d: w30.success_rate,
        duration_p50_s_7d: p50.map(round1),
        duration_p95_s_7d: percentile(&w7.durations, 0.95).map(round1),
        last_run: Some(LastRun {
            run_id: last.run_id,
            status: last.status,
            finished_at: last.event_time,
        }),
        open_incidents,
        duration_trend: duration_trend.to_string(),
        success_trend: success_trend.to_string(),
        weekly_rhythm_learned: verdict.as_ref().is_some_and(|v| v.seasonal),
        last_verdict_why: verdict.map(|v| v.why()).unwrap_or_default(),
    }))
}

/// Renders health summaries as a terminal table.
pub fn render_table(rows: &[PipelineHealth]) -> String {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}s"));
    let mut table = vec![[
        "PIPELINE".to_string(),
        "RUNS 7D/30D".into(),
        "SUCCESS 7D".into(),
        "SUCCESS 30D".into(),
        "P50 7D".into(),
        "P95 7D".into(),
        "TREND".into(),
        "LAST RUN".into(),
        "INCIDENTS".into(),
    ]];
    for h in rows {
        let last = h.last_run.as_ref().map_or("-".to_string(), |l| {
            format!(
                "{} {} {}",
                l.run_id,
                l.status,
                l.finished_at.format("%Y-%m-%d %H:%M")
            )
        });
        table.push([
            h.pipeline.clone(),
            format!("{}/{}", h.runs_7d, h.runs_30d),
            pct(h.success_rate_7d),
            pct(h.success_rate_30d),
            secs(h.duration_p50_s_7d),
            secs(h.duration_p95_s_7d),
            format!("{}, {}", h.duration_trend, h.success_trend),
            last,
            h.open_incidents.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for h in rows {
        if !h.weekly_rhythm_learned {
            out.push_str(&format!(
                "{}: weekly rhythm not learned yet (expected values are the same for every hour and day)\n",
                h.pipeline
            ));
        }
        for line in &h.last_verdict_why {
            out.push_str(&format!("{}: last run: {line}\n", h.pipeline));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), Some(2.5));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 1.0), Some(4.0));
        assert!((percentile(&v, 0.95).unwrap() - 3.85).abs() < 1e-9);
        assert_eq!(percentile(&[], 0.5), None);
    }
}
