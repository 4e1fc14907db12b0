//! `pipemedic score`: the detector as a filter. Reads `timestamp,value[,value…]`
//! CSV rows, writes `timestamp,score,grade,expected…` rows, one per input
//! row, as soon as each is scored. A header row is recognised (its value
//! columns are not numbers) and answered with an output header.

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
) -> Result<usize, FilterError> {
    let mut detector: Option<Detector> = None;
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
                writeln!(output, "{timestamp},score,grade,{}", expected.join(","))?;
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
        writeln!(
            output,
            "{timestamp},{:.6},{:.6},{expected}",
            verdict.score, verdict.grade
        )?;
        rows += 1;
    }
    output.flush()?;
    Ok(rows)
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
        let rows = score_stream(csv.as_bytes(), &mut out, small()).unwrap();
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
        let err = score_stream("t,1\nt,x\n".as_bytes(), Vec::new(), small()).unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        let err = score_stream("t,1,2\nt,3\n".as_bytes(), Vec::new(), small()).unwrap_err();
        assert!(err.to_string().contains("first row had 2"), "{err}");
    }
}
