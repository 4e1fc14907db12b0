//! PNG charts for chat: a metric's recent history with its normal band and
//! the run that is off marked in red. Pure rendering (numbers in, PNG bytes
//! out); posting belongs to the chat adapters.
//!
//! Labels need a TrueType font. pipemedic looks for DejaVu Sans or
//! Liberation Sans in the usual system places (or the file named by
//! `PIPEMEDIC_CHART_FONT`); without one the chart is drawn without text and
//! the message around it carries the numbers.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use plotters::prelude::*;

/// Where fonts usually are.
const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
];

const WIDTH: u32 = 800;
const HEIGHT: u32 = 360;

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("nothing to draw: the series is empty")]
    Empty,
    #[error("cannot draw the chart: {0}")]
    Draw(String),
    #[error("cannot encode the PNG: {0}")]
    Encode(String),
}

/// What to draw.
#[derive(Debug, Clone)]
pub struct HistoryChart<'a> {
    pub title: &'a str,
    /// Points oldest first.
    pub points: &'a [(DateTime<Utc>, f64)],
    /// The normal band (low, high), drawn as a shaded area.
    pub band: Option<(f64, f64)>,
    /// The run that is off.
    pub marked: Option<(DateTime<Utc>, f64)>,
}

/// The normal band of a history: the 5th to 95th percentile of the points
/// before `before` (at least five points needed).
pub fn normal_band(points: &[(DateTime<Utc>, f64)], before: DateTime<Utc>) -> Option<(f64, f64)> {
    let earlier: Vec<f64> = points
        .iter()
        .filter(|(t, _)| *t < before)
        .map(|(_, v)| *v)
        .collect();
    if earlier.len() < 5 {
        return None;
    }
    Some((
        crate::health::percentile(&earlier, 0.05)?,
        crate::health::percentile(&earlier, 0.95)?,
    ))
}

fn font_available() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        let configured = std::env::var("PIPEMEDIC_CHART_FONT").ok();
        let paths = configured.iter().map(String::as_str).chain(FONT_CANDIDATES);
        for path in paths {
            if let Ok(bytes) = std::fs::read(path) {
                // Registered once for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        tracing::warn!("No TrueType font found; charts are drawn without labels.");
        false
    })
}

/// Renders the chart as PNG bytes.
pub fn render_png(chart: &HistoryChart<'_>) -> Result<Vec<u8>, ChartError> {
    let (first, last) = match (chart.points.first(), chart.points.last()) {
        (Some(f), Some(l)) => (f.0, l.0),
        _ => return Err(ChartError::Empty),
    };
    let labels = font_available();
    let mut lo = chart
        .points
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min);
    let mut hi = chart
        .points
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    if let Some((a, b)) = chart.band {
        lo = lo.min(a);
        hi = hi.max(b);
    }
    let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(1e-9);
    let (lo, hi) = (lo - pad, hi + pad);
    let (x0, x1) = if first == last {
        (
            first - chrono::Duration::hours(1),
            last + chrono::Duration::hours(1),
        )
    } else {
        (first, last)
    };

    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let draw_err = |e: &dyn std::fmt::Display| ChartError::Draw(e.to_string());
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(&e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(12);
        if labels {
            builder
                .caption(chart.title, ("sans-serif", 20))
                .x_label_area_size(30)
                .y_label_area_size(60);
        }
        let mut ctx = builder
            .build_cartesian_2d(x0..x1, lo..hi)
            .map_err(|e| draw_err(&e))?;
        let mut mesh = ctx.configure_mesh();
        mesh.light_line_style(RGBColor(235, 235, 235));
        if labels {
            mesh.x_labels(6)
                .y_labels(6)
                .x_label_formatter(&|t: &DateTime<Utc>| t.format("%m-%d %H:%M").to_string());
        } else {
            mesh.disable_x_axis().disable_y_axis();
        }
        mesh.draw().map_err(|e| draw_err(&e))?;
        if let Some((a, b)) = chart.band {
            ctx.draw_series(std::iter::once(Rectangle::new(
                [(x0, a), (x1, b)],
                RGBColor(200, 230, 201).filled(),
            )))
            .map_err(|e| draw_err(&e))?;
        }
        ctx.draw_series(LineSeries::new(
            chart.points.iter().copied(),
            RGBColor(33, 102, 172).stroke_width(2),
        ))
        .map_err(|e| draw_err(&e))?;
        ctx.draw_series(
            chart
                .points
                .iter()
                .map(|p| Circle::new(*p, 2, RGBColor(33, 102, 172).filled())),
        )
        .map_err(|e| draw_err(&e))?;
        if let Some(m) = chart.marked {
            ctx.draw_series(std::iter::once(Circle::new(m, 7, RED.filled())))
                .map_err(|e| draw_err(&e))?;
        }
        root.present().map_err(|e| draw_err(&e))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, WIDTH, HEIGHT, image::ColorType::Rgb8)
        .map_err(|e| ChartError::Encode(e.to_string()))?;
    Ok(png)
}

use image::ImageEncoder;

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Vec<(DateTime<Utc>, f64)> {
        let start: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
        (0..40)
            .map(|i| {
                (
                    start + chrono::Duration::hours(6 * i),
                    420.0 + (i % 5) as f64 * 4.0,
                )
            })
            .collect()
    }

    #[test]
    fn renders_a_png_with_band_and_marker() {
        let mut points = series();
        let spike = (points.last().unwrap().0 + chrono::Duration::hours(6), 910.0);
        points.push(spike);
        let band = normal_band(&points, spike.0).unwrap();
        assert!(band.0 >= 420.0 && band.1 <= 436.0, "{band:?}");
        let png = render_png(&HistoryChart {
            title: "checkout-service duration_s",
            points: &points,
            band: Some(band),
            marked: Some(spike),
        })
        .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        if let Ok(path) = std::env::var("PIPEMEDIC_WRITE_TEST_CHART") {
            std::fs::write(path, &png).unwrap();
        }
        assert!(png.len() > 2000);
    }

    #[test]
    fn empty_series_is_an_error_and_short_history_has_no_band() {
        let err = render_png(&HistoryChart {
            title: "x",
            points: &[],
            band: None,
            marked: None,
        });
        assert!(matches!(err, Err(ChartError::Empty)));
        let pts = series();
        assert_eq!(normal_band(&pts[..3], pts[3].0), None);
    }
}
