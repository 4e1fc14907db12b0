//! Draws the chart of the README's "How detection decides": one pipeline's
//! build durations through a real [`PipelineModel`] with the product's
//! default rules, with its usual value, the materiality floor, and each
//! run's verdict.
//!
//! ```text
//! cargo run --release --example detection_chart [OUT.png]   # default docs/detection.png
//! ```
//!
//! The history is fixed (no randomness): ordinary builds of about 7 minutes,
//! a build four times slower, the same again 20 runs later, a faster build,
//! a slightly slower one, a lasting move to 10 minutes, and a hung build on
//! the new level.

use plotters::prelude::*;

use pipemedic::config::PipelineRules;
use pipemedic::domain::{Run, RunStatus, TestCounts};
use pipemedic::scoring::PipelineModel;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 420;

/// What happened to one run.
#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    Normal,
    Abnormal,
    Dismissed,
    NewNormal,
}

/// Deterministic jitter in [-1, 1).
fn jitter(i: u32) -> f64 {
    f64::from((i.wrapping_mul(2_654_435_761) >> 7) % 1000) / 500.0 - 1.0
}

/// The duration of run `i`, in seconds.
fn duration(i: u32) -> f64 {
    let base = if i >= 200 { 600.0 } else { 420.0 };
    match i {
        120 | 140 => 1680.0,
        160 => 250.0,
        180 => 462.0,
        240 => 1900.0,
        _ => base + 20.0 * jitter(i),
    }
}

fn run(i: u32) -> Run {
    let start = chrono::DateTime::parse_from_rfc3339("2026-09-01T09:00:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default()
        + chrono::Duration::hours(i64::from(i) * 3);
    let mut run = Run::new("checkout-service", i.to_string(), RunStatus::Succeeded);
    run.started_at = Some(start);
    run.finished_at = Some(start + chrono::Duration::milliseconds((duration(i) * 1000.0) as i64));
    run.tests = Some(TestCounts {
        total: 800,
        failed: u64::from(i % 4 == 0),
        skipped: 0,
    });
    run
}

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "docs/detection.png".to_string());
    let rules = PipelineRules::default();
    let mut model = PipelineModel::new("checkout-service", 1.0);
    let mut rows = Vec::new();
    for i in 0..260u32 {
        let r = run(i);
        let usual = model.usual("duration_s", &r, &rules);
        let v = model.observe(&r, &rules);
        let outcome = if v.is_anomalous() {
            Outcome::Abnormal
        } else if !v.new_normal.is_empty() {
            Outcome::NewNormal
        } else if !v.dismissed.is_empty() {
            Outcome::Dismissed
        } else {
            Outcome::Normal
        };
        if outcome != Outcome::Normal {
            println!("run {i}: {}", v.why().join("; "));
        }
        rows.push((i, duration(i) / 60.0, usual.map(|u| u / 60.0), outcome));
    }

    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").ok();
    if let Some(bytes) = font {
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| anyhow::anyhow!("cannot register the font"))?;
    }
    let root = BitMapBackend::new(&out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "checkout-service: build duration (minutes) and what pipemedic said",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(0u32..260u32, 0.0f64..34.0)?;
    chart
        .configure_mesh()
        .x_desc("run")
        .y_desc("minutes")
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    // Below the line "usual + 20%" a slower build is too small a change to
    // be a problem (the default rule for duration).
    let floor: Vec<(u32, f64)> = rows
        .iter()
        .filter_map(|(i, _, u, _)| u.map(|u| (*i, u * 1.2)))
        .collect();
    let usual: Vec<(u32, f64)> = rows
        .iter()
        .filter_map(|(i, _, u, _)| u.map(|u| (*i, u)))
        .collect();
    chart
        .draw_series(AreaSeries::new(
            floor.iter().copied(),
            0.0,
            RGBColor(220, 235, 245).filled(),
        ))?
        .label("usual + 20%: smaller slowdowns do not matter")
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 5), (x + 16, y + 5)],
                RGBColor(220, 235, 245).filled(),
            )
        });
    chart
        .draw_series(LineSeries::new(
            usual,
            RGBColor(33, 102, 172).stroke_width(2),
        ))?
        .label("the usual duration (learned from normal runs only)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RGBColor(33, 102, 172)));
    let style = |o: Outcome| match o {
        Outcome::Normal => (RGBColor(120, 120, 120), 2),
        Outcome::Abnormal => (RGBColor(213, 94, 0), 6),
        Outcome::Dismissed => (RGBColor(0, 158, 115), 6),
        Outcome::NewNormal => (RGBColor(204, 121, 167), 7),
    };
    for (outcome, label) in [
        (Outcome::Normal, "normal run"),
        (Outcome::Abnormal, "abnormal: alert (each repeat too)"),
        (Outcome::Dismissed, "unusual but not a problem (faster)"),
        (
            Outcome::NewNormal,
            "5th run off the same way: the new normal",
        ),
    ] {
        let (colour, size) = style(outcome);
        chart
            .draw_series(
                rows.iter()
                    .filter(|r| r.3 == outcome)
                    .map(|(i, d, _, _)| Circle::new((*i, *d), size, colour.filled())),
            )?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    println!("wrote {out}");
    Ok(())
}
