//! Inline SVG charts for the console: a sparkline and a history chart with
//! the expected band (what detection expected at each run, or failing
//! that the percentiles of the runs shown, labelled as such) and abnormal
//! runs marked. Pure text building: every
//! label goes through [`escape`], colours come from classes the stylesheet
//! defines (so the dark scheme applies), and no chart draws more than
//! [`MAX_POINTS`] points, which keeps pages small.

use std::fmt::Write;

/// Most points one chart draws; callers pass at most this many.
pub const MAX_POINTS: usize = 500;

/// One point of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Position along the x axis (any unit, e.g. milliseconds).
    pub x: f64,
    pub y: f64,
    pub abnormal: bool,
    /// Shown on hover and read by screen readers (escaped here).
    pub label: String,
}

/// `text` safe inside SVG/HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Maps values in `[lo, hi]` onto `[0, size]` (flipped for y by callers).
fn scale(v: f64, lo: f64, hi: f64, size: f64) -> f64 {
    if hi > lo {
        (v - lo) / (hi - lo) * size
    } else {
        size / 2.0
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// A small line of `values` (oldest first) with abnormal points dotted; an
/// empty string when there is nothing to draw.
pub fn sparkline(points: &[Point], title: &str) -> String {
    let points = &points[points.len().saturating_sub(MAX_POINTS)..];
    let (w, h, pad) = (120.0, 28.0, 3.0);
    let (Some((x0, x1)), Some((y0, y1))) = (
        bounds(points.iter().map(|p| p.x)),
        bounds(points.iter().map(|p| p.y)),
    ) else {
        return String::new();
    };
    let at = |p: &Point| {
        (
            pad + scale(p.x, x0, x1, w - 2.0 * pad),
            h - pad - scale(p.y, y0, y1, h - 2.0 * pad),
        )
    };
    let mut svg = format!(
        "<svg class=\"spark\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title><polyline class=\"line\" points=\"",
        t = escape(title)
    );
    for p in points {
        let (x, y) = at(p);
        let _ = write!(svg, "{x:.1},{y:.1} ");
    }
    svg.push_str("\"/>");
    for p in points.iter().filter(|p| p.abnormal) {
        let (x, y) = at(p);
        let _ = write!(
            svg,
            "<circle class=\"abnormal\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\"/>"
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The band a history chart shades.
#[derive(Debug, Clone, PartialEq)]
pub enum Band {
    /// What detection expected at each point, `(low, high)`, aligned with
    /// the points (`None` where a run has no kept expectation).
    Expected(Vec<Option<(f64, f64)>>),
    /// A fallback when no point has one: the 5th to 95th percentile of the
    /// points shown.
    Percentiles(f64, f64),
}

impl Band {
    /// The points' expectations when any has one, else their percentiles
    /// (at least five normal points needed), else nothing.
    pub fn of(points: &[Point], expected: Vec<Option<(f64, f64)>>) -> Option<Self> {
        if expected.iter().any(Option::is_some) {
            return Some(Self::Expected(expected));
        }
        let normal: Vec<f64> = points.iter().filter(|p| !p.abnormal).map(|p| p.y).collect();
        if normal.len() < 5 {
            return None;
        }
        Some(Self::Percentiles(
            crate::health::percentile(&normal, 0.05)?,
            crate::health::percentile(&normal, 0.95)?,
        ))
    }

    fn values(&self) -> Vec<f64> {
        match self {
            Self::Expected(e) => e.iter().flatten().flat_map(|(a, b)| [*a, *b]).collect(),
            Self::Percentiles(a, b) => vec![*a, *b],
        }
    }
}

/// What a history chart shows.
#[derive(Debug, Clone)]
pub struct History<'a> {
    pub title: &'a str,
    /// How values are written on the axis ("12.5 s").
    pub unit: &'a str,
    /// Oldest first.
    pub points: &'a [Point],
    /// The shaded range.
    pub band: Option<Band>,
}

/// A chart of `history`: the band, a line through the points, one circle
/// per point (abnormal ones in their own class, square-marked so colour is
/// not the only cue), the y range written at the side and, under the plot,
/// what the band is.
pub fn history(history: &History<'_>) -> String {
    let cut = history.points.len().saturating_sub(MAX_POINTS);
    let points = &history.points[cut..];
    let band = match &history.band {
        Some(Band::Expected(e)) => Some(Band::Expected(
            e.iter()
                .skip(cut)
                .copied()
                .chain(std::iter::repeat(None))
                .take(points.len())
                .collect(),
        )),
        other => other.clone(),
    };
    let (w, h) = (720.0, 220.0);
    let (left, right, top, bottom) = (64.0, 12.0, 12.0, 24.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let ys = points
        .iter()
        .map(|p| p.y)
        .chain(band.iter().flat_map(Band::values));
    let (Some((x0, x1)), Some((y_lo, y_hi))) = (bounds(points.iter().map(|p| p.x)), bounds(ys))
    else {
        return format!(
            "<p class=\"empty\">{}: no data to chart.</p>",
            escape(history.title)
        );
    };
    let (y0, y1) = (y_lo.min(0.0), if y_hi > 0.0 { y_hi * 1.05 } else { 1.0 });
    let px = |x: f64| left + scale(x, x0, x1, pw);
    let py = |y: f64| top + ph - scale(y, y0, y1, ph);
    let title = escape(history.title);
    let abnormal = points.iter().filter(|p| p.abnormal).count();
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{title}: {} runs, {abnormal} abnormal\"><title>{title}</title>",
        points.len()
    );
    let _ = write!(
        svg,
        "<rect class=\"frame\" x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\"/>"
    );
    let unit = escape(history.unit);
    match &band {
        Some(Band::Expected(expected)) => {
            // One shape per stretch of consecutive points that have one.
            let mut stretch: Vec<(f64, f64, f64)> = Vec::new();
            for (p, e) in points.iter().zip(expected).map(|(p, e)| (p, *e)) {
                if let Some((lo, hi)) = e {
                    stretch.push((px(p.x), py(lo), py(hi)));
                    continue;
                }
                expected_shape(&mut svg, &stretch);
                stretch.clear();
            }
            expected_shape(&mut svg, &stretch);
            let missing = expected.iter().filter(|e| e.is_none()).count();
            let _ = write!(
                svg,
                "<text class=\"legend\" x=\"{left}\" y=\"{:.1}\">Shaded: the range detection expected at each run{}</text>",
                h - 6.0,
                if missing > 0 {
                    format!(" ({missing} of these runs were scored without one)")
                } else {
                    String::new()
                }
            );
        }
        Some(Band::Percentiles(lo, hi)) => {
            let _ = write!(
                svg,
                "<rect class=\"band usual\" x=\"{left}\" y=\"{:.1}\" width=\"{pw}\" height=\"{:.1}\"><title>5th to 95th percentile of these runs: {} to {} {unit}</title></rect>\
                 <text class=\"legend\" x=\"{left}\" y=\"{:.1}\">Shaded: 5th to 95th percentile of these runs (detection kept no expected range for them)</text>",
                py(*hi),
                (py(*lo) - py(*hi)).max(1.0),
                fmt_num(*lo),
                fmt_num(*hi),
                h - 6.0
            );
        }
        None => {}
    }
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} {unit}</text>\
         <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} {unit}</text>",
        left - 6.0,
        top + 10.0,
        fmt_num(y1),
        left - 6.0,
        top + ph,
        fmt_num(y0),
    );
    svg.push_str("<polyline class=\"line\" points=\"");
    for p in points {
        let _ = write!(svg, "{:.1},{:.1} ", px(p.x), py(p.y));
    }
    svg.push_str("\"/>");
    for p in points {
        let (x, y) = (px(p.x), py(p.y));
        if p.abnormal {
            let _ = write!(
                svg,
                "<rect class=\"mark\" x=\"{:.1}\" y=\"{:.1}\" width=\"9\" height=\"9\"/>",
                x - 4.5,
                y - 4.5
            );
        }
        let _ =
            write!(
            svg,
            "<circle class=\"{}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\"><title>{}</title></circle>",
            if p.abnormal { "point abnormal" } else { "point" },
            escape(&p.label)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The expected band over one stretch of points, `(x, y of low, y of
/// high)`: a polygon along the highs and back along the lows (a thin bar
/// for a stretch of one).
fn expected_shape(svg: &mut String, stretch: &[(f64, f64, f64)]) {
    match stretch {
        [] => {}
        [(x, lo, hi)] => {
            let _ = write!(
                svg,
                "<rect class=\"band expected\" x=\"{:.1}\" y=\"{hi:.1}\" width=\"4\" height=\"{:.1}\"/>",
                x - 2.0,
                (lo - hi).max(1.0)
            );
        }
        _ => {
            svg.push_str("<polygon class=\"band expected\" points=\"");
            for (x, _, hi) in stretch {
                let _ = write!(svg, "{x:.1},{hi:.1} ");
            }
            for (x, lo, _) in stretch.iter().rev() {
                let _ = write!(svg, "{x:.1},{lo:.1} ");
            }
            svg.push_str("\"/>");
        }
    }
}

/// A number with at most three significant figures' worth of decimals.
pub fn fmt_num(v: f64) -> String {
    let text = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f64, y: f64, abnormal: bool, label: &str) -> Point {
        Point {
            x,
            y,
            abnormal,
            label: label.into(),
        }
    }

    #[test]
    fn a_history_has_one_circle_per_point_and_escapes_labels() {
        let points = [
            point(0.0, 10.0, false, "run 1"),
            point(1.0, 12.0, false, "run <2>"),
            point(2.0, 40.0, true, "run \"3\""),
        ];
        let svg = history(&History {
            title: "duration & more",
            unit: "s",
            points: &points,
            band: Some(Band::Percentiles(9.0, 13.0)),
        });
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(svg.matches("class=\"point abnormal\"").count(), 1);
        assert!(svg.contains("run &lt;2&gt;") && svg.contains("run &quot;3&quot;"));
        assert!(svg.contains("duration &amp; more"));
        assert!(svg.contains("class=\"band usual\""));
        assert!(svg.contains("5th to 95th percentile of these runs"));
        assert!(!svg.contains("<2>"));
    }

    #[test]
    fn the_expected_band_follows_each_point_and_skips_runs_without_one() {
        let points: Vec<Point> = (0..5).map(|i| point(i as f64, 40.0, false, "r")).collect();
        // y runs from 0 to 100 × 1.05; the plot is 184 high from y = 12.
        let band = Band::of(
            &points,
            vec![
                Some((20.0, 100.0)),
                Some((20.0, 100.0)),
                None,
                Some((0.0, 50.0)),
                Some((0.0, 50.0)),
            ],
        );
        let svg = history(&History {
            title: "t",
            unit: "s",
            points: &points,
            band,
        });
        let py = |y: f64| format!("{:.1}", 12.0 + 184.0 - y / 105.0 * 184.0);
        let shapes: Vec<&str> = svg
            .match_indices("<polygon class=\"band expected\"")
            .map(|(i, _)| &svg[i..])
            .collect();
        assert_eq!(shapes.len(), 2, "{svg}");
        assert!(shapes[0].starts_with(&format!(
            "<polygon class=\"band expected\" points=\"64.0,{hi} 225.0,{hi} 225.0,{lo} 64.0,{lo} \"",
            hi = py(100.0),
            lo = py(20.0)
        )), "{svg}");
        assert!(shapes[1].contains(&format!(
            "547.0,{hi} 708.0,{hi} 708.0,{lo}",
            hi = py(50.0),
            lo = py(0.0)
        )));
        assert!(svg.contains("the range detection expected at each run (1 of these runs"));
        assert!(!svg.contains("percentile"));
        // Without any expectation the percentiles are drawn, and say so.
        let fallback = Band::of(&points, vec![None; 5]);
        assert_eq!(fallback, Some(Band::Percentiles(40.0, 40.0)));
    }

    #[test]
    fn charts_cap_their_points_and_survive_no_data() {
        let many: Vec<Point> = (0..2000)
            .map(|i| point(i as f64, (i % 7) as f64, false, "r"))
            .collect();
        let svg = history(&History {
            title: "t",
            unit: "s",
            points: &many,
            band: None,
        });
        assert_eq!(svg.matches("<circle").count(), MAX_POINTS);
        assert!(history(&History {
            title: "t",
            unit: "s",
            points: &[],
            band: None
        })
        .contains("no data"));
        assert_eq!(sparkline(&[], "x"), "");
        let one = sparkline(&[point(1.0, 1.0, true, "")], "x");
        assert_eq!(one.matches("<circle").count(), 1);
        assert!(!one.contains("NaN"));
    }
}
