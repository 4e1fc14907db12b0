//! `pipemedic score`: the detector as a filter. Reads `timestamp,value[,value…]`
//! CSV rows, writes `timestamp,score,grade,expected…` rows, one per input
//! row, as soon as each is scored. A header row is recognised (its value
//! columns are not numbers) and answered with an output header. With
//! `explain`, a last `why` column says in words what was off in an
//! anomalous row (the value that drove the score against what was expected).

use std::io::{BufRead, Write};

use crate::detect::{Detector, DetectorConfig};

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("line {line}: {message}")]
    Input { line: usize, message: String },
    #[error("cannot read or write: {0}")]
    Io(#[from] std::io::Error),
}

/// Scores every row of `input` and writes the result to `output`; returns
/// the number of rows scored. The number of values per row is fixed by the
/// first data row.
pub fn score_stream(
    input: impl BufRead,
    mut output: impl Write,
    mut config: DetectorConfig,
    explain: bool,
) -> Result<usize, FilterError> {
    let mut detector: Option<Detector> = None;
    let mut names: Vec<String> = Vec::new();
    let mut rows = 0;
    for (i, line) in input.lines().enumerate() {
        let line_no = i + 1;
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut cells = line.split(',').map(str::trim);
        let timestamp = cells.next().unwrap_or_default();
        let raw: Vec<&str> = cells.collect();
        if raw.is_empty() {
            return Err(FilterError::Input {
                line: line_no,
                message: "expected timestamp,value[,value...]".into(),
            });
        }
        let values: Result<Vec<f64>, _> = raw.iter().map(|v| v.parse::<f64>()).collect();
        let values = match values {
            Ok(v) if v.iter().all(|x| x.is_finite()) => v,
            _ if rows == 0 && detector.is_none() => {
                // A header: answer with ours.
                let expected: Vec<String> =
                    raw.iter().map(|name| format!("expected_{name}")).collect();
                let why = if explain { ",why" } else { "" };
                writeln!(
                    output,
                    "{timestamp},score,grade,{}{why}",
                    expected.join(",")
                )?;
                names = raw.iter().map(|n| n.to_string()).collect();
                continue;
            }
            _ => {
                return Err(FilterError::Input {
                    line: line_no,
                    message: format!("values must be finite numbers, got {:?}", raw.join(",")),
                })
            }
        };
        let detector = detector.get_or_insert_with(|| {
            config.dimensions = values.len();
            Detector::new(config.clone())
        });
        if values.len() != detector.config().dimensions {
            return Err(FilterError::Input {
                line: line_no,
                message: format!(
                    "{} values, but the first row had {}",
                    values.len(),
                    detector.config().dimensions
                ),
            });
        }
        let verdict = detector.process(&values);
        let expected = match &verdict.expected {
            Some(e) => e
                .iter()
                .map(|v| format!("{v:.6}"))
                .collect::<Vec<_>>()
                .join(","),
            None => vec![""; values.len()].join(","),
        };
        let why = if explain {
            format!(",{}", why(&verdict, &values, &names))
        } else {
            String::new()
        };
        writeln!(
            output,
            "{timestamp},{:.6},{:.6},{expected}{why}",
            verdict.score, verdict.grade
        )?;
        rows += 1;
    }
    output.flush()?;
    Ok(rows)
}

/// What was off in an anomalous row, in words without commas: the value
/// that drove most of the score against what was expected of it. Empty for
/// normal rows.
fn why(verdict: &crate::detect::Verdict, values: &[f64], names: &[String]) -> String {
    let Some(expected) = verdict.expected.as_ref().filter(|_| verdict.grade > 0.0) else {
        return String::new();
    };
    let top = (0..values.len())
        .max_by(|a, b| {
            let share = |i: usize| verdict.attribution.get(i).copied().unwrap_or(0.0);
            share(*a).total_cmp(&share(*b))
        })
        .unwrap_or(0);
    let name = names
        .get(top)
        .cloned()
        .unwrap_or_else(|| format!("value {}", top + 1));
    let (x, e) = (values[top], expected.get(top).copied().unwrap_or(0.0));
    let change = if e.abs() > f64::EPSILON && x / e >= 2.0 {
        format!("{:.1}× the expected {e:.4}", x / e)
    } else if e.abs() > f64::EPSILON {
        let pct = (x / e - 1.0) * 100.0;
        let side = if pct >= 0.0 { "above" } else { "below" };
        format!("{:.0}% {side} the expected {e:.4}", pct.abs())
    } else {
        format!("against the expected {e:.4}")
    };
    format!("{name} {x} is {change}").replace(',', ";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> DetectorConfig {
        DetectorConfig {
            shingle_size: 4,
            trees: 30,
            sample_size: 128,
            warm_up: 16,
            ..DetectorConfig::default()
        }
    }

    #[test]
    fn grades_an_injected_spike_and_leaves_the_calm_series_at_zero() {
        let mut csv = String::from("timestamp,value\n");
        for i in 0..400 {
            let v = if i == 300 {
                60.0
            } else {
                10.0 + (i as f64 / 8.0).sin()
            };
            csv.push_str(&format!("t{i},{v}\n"));
        }
        let mut out = Vec::new();
        let rows = score_stream(csv.as_bytes(), &mut out, small(), false).unwrap();
        assert_eq!(rows, 400);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "timestamp,score,grade,expected_value");
        let grade = |i: usize| -> f64 { lines[i + 1].split(',').nth(2).unwrap().parse().unwrap() };
        assert!(grade(300) > 0.0, "{}", lines[301]);
        let calm_flagged = (100..290)
            .chain(310..400)
            .filter(|i| grade(*i) > 0.0)
            .count();
        assert_eq!(calm_flagged, 0, "calm points graded above zero");
        let expected: f64 = lines[301].split(',').nth(3).unwrap().parse().unwrap();
        assert!(
            (expected - 10.0).abs() < 3.0,
            "expected near normal, got {expected}"
        );
    }

    #[test]
    fn bad_rows_name_their_line() {
        let err = score_stream("t,1\nt,x\n".as_bytes(), Vec::new(), small(), false).unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        let err = score_stream("t,1,2\nt,3\n".as_bytes(), Vec::new(), small(), false).unwrap_err();
        assert!(err.to_string().contains("first row had 2"), "{err}");
    }

    #[test]
    fn explain_says_which_value_was_off_and_by_how_much() {
        let mut csv = String::from("timestamp,cpu,mem\n");
        for i in 0..400 {
            let cpu = if i == 300 {
                95.0
            } else {
                40.0 + (i as f64 / 8.0).sin()
            };
            csv.push_str(&format!("t{i},{cpu},{}\n", 2000.0 + (i % 5) as f64));
        }
        let mut out = Vec::new();
        score_stream(csv.as_bytes(), &mut out, small(), true).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "timestamp,score,grade,expected_cpu,expected_mem,why"
        );
        let spike: Vec<&str> = lines[301].split(',').collect();
        assert_eq!(spike.len(), 6, "{}", lines[301]);
        assert!(spike[5].starts_with("cpu 95 is 2."), "{}", lines[301]);
        let expected: f64 = spike[5]
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!((expected - 40.0).abs() < 3.0, "{}", lines[301]);
        let calm: Vec<&str> = lines[200].split(',').collect();
        assert_eq!(calm.len(), 6);
        assert_eq!(calm[5], "");
    }
}
