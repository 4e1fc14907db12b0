//! Time as a dependency: the system clock in production, a settable clock in
//! tests so expiry and windows are tested without sleeping; and how a point
//! in time is written by people (`7d` ago, a date, an RFC 3339 time).

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(start))
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A point in time as people write it: `90d`, `12h`, `30m`, `2w` before
/// `now`, a date (`2026-11-01`, midnight UTC) or an RFC 3339 time. The
/// error says what was expected (callers prefix the field's name).
pub fn parse_point(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or(now));
    }
    let (num, unit) = raw.split_at(raw.len().saturating_sub(1));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{raw:?}: expected like 90d, 12h, 30m, 2w or an RFC 3339 time"))?;
    let d = match unit {
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        "w" => Duration::try_weeks(n),
        _ => return Err(format!("{raw:?}: unit must be m, h, d or w")),
    };
    d.and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| format!("{raw:?}: too far from now"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_in_time_as_written() {
        let now: DateTime<Utc> = "2026-11-25T12:00:00Z".parse().unwrap();
        assert_eq!(parse_point("90d", now).unwrap(), now - Duration::days(90));
        assert_eq!(parse_point(" 2w ", now).unwrap(), now - Duration::weeks(2));
        assert_eq!(
            parse_point("2026-11-01", now).unwrap(),
            "2026-11-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_point("soon", now)
            .unwrap_err()
            .contains("expected like 90d"));
        assert!(parse_point("5y", now).unwrap_err().contains("unit must be"));
        assert!(parse_point("99999999999999d", now)
            .unwrap_err()
            .contains("too far"));
    }
}
