//! Argument parsing shared by the examples that take a time decay.

/// A time decay written as a number (`0.0015625`) or a quotient (`0.1/64`).
pub fn parse_decay(d: &str) -> f64 {
    match d.split_once('/') {
        Some((a, b)) => {
            a.parse::<f64>().expect("DECAY numerator") / b.parse::<f64>().expect("DECAY divisor")
        }
        None => d.parse().expect("DECAY is a number or a quotient"),
    }
}
