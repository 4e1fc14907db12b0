//! What became of the plans pipemedic offered, as shared vocabulary: a
//! plan step's fate ([`Fate`]), the failure it was offered for
//! ([`Signature`]), one stored outcome ([`OutcomeRow`]), a fix's track
//! record on a pipeline ([`TrackRecord`], built from rows), the sentence
//! people read on a plan card, and whether a fix has earned the right to
//! run without a person ([`AutoAfter`], [`autonomy`]).
//!
//! Pure data and pure derivations: the store records the rows, planners,
//! cards and approvals read the records. Nothing here does I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::verdict::{Direction, MetricDeviation};

/// Where one offered plan step ended up. A step moves forward only:
/// offered → approved → executed → healed / not healed, or offered →
/// rejected / expired / superseded, or approved → failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Waiting for people.
    Offered,
    /// Approved (by people, or automatically); not run yet.
    Approved,
    Rejected,
    /// Nobody approved it in time.
    Expired,
    /// A newer run made it stale before anyone decided.
    Superseded,
    /// It ran; the next run has not decided yet.
    Executed,
    /// Running it failed, or its outcome is unknown.
    Failed,
    /// The next run after it was normal.
    Healed,
    /// The next run after it was still abnormal, or failed.
    NotHealed,
}

impl Fate {
    pub const ALL: [Fate; 9] = [
        Self::Offered,
        Self::Approved,
        Self::Rejected,
        Self::Expired,
        Self::Superseded,
        Self::Executed,
        Self::Failed,
        Self::Healed,
        Self::NotHealed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offered => "offered",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Superseded => "superseded",
            Self::Executed => "executed",
            Self::Failed => "failed",
            Self::Healed => "healed",
            Self::NotHealed => "not_healed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == raw)
    }
}

/// The failure a plan was offered for: the stage and which metrics were
/// off in which direction. Two incidents with the same signature are
/// "the same failure" for the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub stage: Option<String>,
    /// Metric names with their direction, sorted by name.
    pub moves: Vec<(String, Direction)>,
}

impl Signature {
    /// The signature of a run in `stage` whose `deviations` are off.
    pub fn new(stage: Option<&str>, deviations: &[MetricDeviation]) -> Self {
        let mut moves: Vec<(String, Direction)> = deviations
            .iter()
            .filter(|d| d.dismissed.is_none())
            .map(|d| (d.metric.clone(), d.direction))
            .collect();
        moves.sort_by(|a, b| {
            (a.0.as_str(), direction_str(a.1)).cmp(&(b.0.as_str(), direction_str(b.1)))
        });
        moves.dedup();
        Self {
            stage: stage.map(str::to_string).filter(|s| !s.is_empty()),
            moves,
        }
    }

    /// The stored form: `stage|metric:up,metric:down` (empty stage when
    /// unknown). [`Signature::parse`] reads it back.
    pub fn key(&self) -> String {
        let moves: Vec<String> = self
            .moves
            .iter()
            .map(|(m, d)| format!("{m}:{}", direction_str(*d)))
            .collect();
        format!(
            "{}|{}",
            self.stage.as_deref().unwrap_or(""),
            moves.join(",")
        )
    }

    pub fn parse(key: &str) -> Self {
        let (stage, moves) = key.split_once('|').unwrap_or(("", key));
        let moves = moves
            .split(',')
            .filter(|m| !m.is_empty())
            .filter_map(|m| {
                let (metric, dir) = m.rsplit_once(':')?;
                let dir = match dir {
                    "up" => Direction::Up,
                    "down" => Direction::Down,
                    _ => return None,
                };
                Some((metric.to_string(), dir))
            })
            .collect();
        Self {
            stage: Some(stage.to_string()).filter(|s| !s.is_empty()),
            moves,
        }
    }

    /// In words: `test_failure_rate up, duration_s up in stage Test`.
    pub fn describe(&self) -> String {
        let moves = if self.moves.is_empty() {
            "no metric named".to_string()
        } else {
            self.moves
                .iter()
                .map(|(m, d)| format!("{m} {}", direction_str(*d)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.stage {
            Some(stage) => format!("{moves} in stage {stage}"),
            None => moves,
        }
    }
}

fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Up => "up",
        Direction::Down => "down",
    }
}

/// One plan step's outcome as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeRow {
    pub request_id: i64,
    pub step_no: u32,
    pub incident_id: Option<i64>,
    pub pipeline: String,
    pub playbook: String,
    pub action: String,
    /// [`Signature::key`].
    pub signature: String,
    pub fate: Fate,
    /// People (or automatic remediation) approved it at some point.
    pub approved: bool,
    /// It ran without waiting for a person.
    pub automatic: bool,
    /// Why it was rejected, when someone typed a reason.
    pub reason: Option<String>,
    /// From the failure to the normal run that showed it healed.
    pub minutes_to_heal: Option<i64>,
    pub offered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One failure signature's share of a [`TrackRecord`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRecord {
    pub signature: String,
    pub offered: u32,
    pub healed: u32,
    pub not_healed: u32,
}

/// A fix's track record on one pipeline: one playbook action, every plan
/// it was offered in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackRecord {
    pub pipeline: String,
    pub playbook: String,
    pub action: String,
    pub offered: u32,
    pub approved: u32,
    pub rejected: u32,
    pub expired: u32,
    pub superseded: u32,
    pub executed: u32,
    pub failed: u32,
    pub healed: u32,
    pub not_healed: u32,
    pub median_minutes_to_heal: Option<f64>,
    /// Runs without a person (earned or configured autonomy).
    pub automatic: u32,
    /// Heals since the latest not-healed outcome (all of them when none):
    /// what earned autonomy counts.
    pub healed_since_not_healed: u32,
    /// The reasons typed with rejections, newest first.
    pub rejection_reasons: Vec<String>,
    /// The record per failure signature.
    pub signatures: Vec<SignatureRecord>,
}

impl TrackRecord {
    /// The records of `rows`, one per pipeline, playbook and action,
    /// sorted by those. Rows may come in any order.
    pub fn from_rows(rows: &[OutcomeRow]) -> Vec<TrackRecord> {
        let mut groups: BTreeMap<(&str, &str, &str), Vec<&OutcomeRow>> = BTreeMap::new();
        for row in rows {
            groups
                .entry((&row.pipeline, &row.playbook, &row.action))
                .or_default()
                .push(row);
        }
        groups
            .into_iter()
            .map(|((pipeline, playbook, action), mut rows)| {
                rows.sort_by_key(|r| (r.offered_at, r.request_id, r.step_no));
                let mut record = TrackRecord {
                    pipeline: pipeline.to_string(),
                    playbook: playbook.to_string(),
                    action: action.to_string(),
                    ..TrackRecord::default()
                };
                let mut minutes = Vec::new();
                let mut signatures: BTreeMap<&str, SignatureRecord> = BTreeMap::new();
                for row in &rows {
                    record.offered += 1;
                    record.approved += u32::from(row.approved);
                    record.automatic += u32::from(row.automatic);
                    let sig = signatures
                        .entry(&row.signature)
                        .or_insert_with(|| SignatureRecord {
                            signature: row.signature.clone(),
                            ..SignatureRecord::default()
                        });
                    sig.offered += 1;
                    match row.fate {
                        Fate::Offered | Fate::Approved => {}
                        Fate::Rejected => {
                            record.rejected += 1;
                            if let Some(reason) = row.reason.as_deref().map(str::trim) {
                                if !reason.is_empty() {
                                    record.rejection_reasons.insert(0, reason.to_string());
                                }
                            }
                        }
                        Fate::Expired => record.expired += 1,
                        Fate::Superseded => record.superseded += 1,
                        Fate::Executed => record.executed += 1,
                        Fate::Failed => record.failed += 1,
                        Fate::Healed => {
                            record.executed += 1;
                            record.healed += 1;
                            record.healed_since_not_healed += 1;
                            sig.healed += 1;
                            if let Some(m) = row.minutes_to_heal {
                                minutes.push(m);
                            }
                        }
                        Fate::NotHealed => {
                            record.executed += 1;
                            record.not_healed += 1;
                            record.healed_since_not_healed = 0;
                            sig.not_healed += 1;
                        }
                    }
                }
                record.median_minutes_to_heal = median(&mut minutes);
                record.signatures = signatures.into_values().collect();
                record
            })
            .collect()
    }

    /// Healed among the runs the next run judged, in [0, 1]; `None` before
    /// any was judged.
    pub fn heal_rate(&self) -> Option<f64> {
        let judged = self.healed + self.not_healed;
        (judged > 0).then(|| f64::from(self.healed) / f64::from(judged))
    }

    /// How many times this fix did not heal the pipeline for `signature`.
    pub fn not_healed_for(&self, signature: &Signature) -> u32 {
        let key = signature.key();
        self.signatures
            .iter()
            .find(|s| s.signature == key)
            .map_or(0, |s| s.not_healed)
    }

    /// The record in one sentence, as a plan card shows it: "healed 4 of 5
    /// times on checkout-service, median 22 min; rejected once: 'not
    /// flaky'". Reasons are quoted as typed; callers make the sentence
    /// inert for their medium.
    pub fn sentence(&self) -> String {
        let judged = self.healed + self.not_healed;
        let mut parts = Vec::new();
        if judged == 0 {
            parts.push(format!(
                "offered {} on {}, never verified yet",
                times(self.offered),
                self.pipeline
            ));
        } else {
            let mut healed = format!(
                "healed {} of {} time{} on {}",
                self.healed,
                judged,
                if judged == 1 { "" } else { "s" },
                self.pipeline
            );
            if let Some(m) = self.median_minutes_to_heal {
                healed.push_str(&format!(", median {} min", minutes_text(m)));
            }
            parts.push(healed);
        }
        if self.rejected > 0 {
            let mut rejected = format!("rejected {}", times(self.rejected));
            let reasons: Vec<String> = self
                .rejection_reasons
                .iter()
                .take(2)
                .map(|r| format!("'{}'", super::truncate(r, 120)))
                .collect();
            if !reasons.is_empty() {
                rejected.push_str(&format!(": {}", reasons.join(", ")));
            }
            parts.push(rejected);
        }
        if self.expired > 0 {
            parts.push(format!("expired unapproved {}", times(self.expired)));
        }
        if self.failed > 0 {
            parts.push(format!("failed to run {}", times(self.failed)));
        }
        parts.join("; ")
    }
}

/// "once", "twice", "3 times".
pub fn times(n: u32) -> String {
    match n {
        1 => "once".to_string(),
        2 => "twice".to_string(),
        n => format!("{n} times"),
    }
}

fn minutes_text(m: f64) -> String {
    if m.fract() == 0.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    }
}

fn median(values: &mut [i64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid] as f64
    } else {
        (values[mid - 1] + values[mid]) as f64 / 2.0
    })
}

/// When a playbook action may run without a person on a pipeline
/// (`auto_after: {healed: 5, rate: 0.9}`): after `healed` heals since its
/// latest not-healed outcome, with at least `rate` of all its verified
/// runs healed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoAfter {
    pub healed: u32,
    pub rate: f64,
}

/// Whether a fix has earned autonomy on a pipeline, and why in words (the
/// words go to the thread and the audit log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "earned", rename_all = "snake_case")]
pub enum Autonomy {
    Earned { why: String },
    NotYet { why: String },
}

impl Autonomy {
    pub fn is_earned(&self) -> bool {
        matches!(self, Self::Earned { .. })
    }

    pub fn why(&self) -> &str {
        match self {
            Self::Earned { why } | Self::NotYet { why } => why,
        }
    }
}

/// Whether `record` (the fix's record on the pipeline, `None` when it has
/// none) meets `rule`. A not-healed outcome restarts the count of heals,
/// so any not-healed outcome revokes autonomy until it is earned again.
pub fn autonomy(record: Option<&TrackRecord>, rule: &AutoAfter) -> Autonomy {
    let Some(record) = record else {
        return Autonomy::NotYet {
            why: format!("no record yet; needs {} heals", rule.healed),
        };
    };
    let fix = format!("{}/{}", record.playbook, record.action);
    let rate = record.heal_rate().unwrap_or(0.0);
    let since = record.healed_since_not_healed;
    if since >= rule.healed.max(1) && rate + 1e-9 >= rule.rate {
        Autonomy::Earned {
            why: format!(
                "{fix} healed {} of {} runs on {} ({:.0}% healed; {since} in a row since the last failure to heal), which meets auto_after {{healed: {}, rate: {}}}",
                record.healed,
                record.healed + record.not_healed,
                record.pipeline,
                rate * 100.0,
                rule.healed,
                rule.rate
            ),
        }
    } else if record.not_healed > 0 && since < rule.healed {
        Autonomy::NotYet {
            why: format!(
                "{fix} did not heal {} {}; {since} heals since then, needs {}",
                record.pipeline,
                times(record.not_healed),
                rule.healed
            ),
        }
    } else {
        Autonomy::NotYet {
            why: format!(
                "{fix} healed {} of {} runs on {} ({:.0}%); needs {} heals and {:.0}%",
                record.healed,
                record.healed + record.not_healed,
                record.pipeline,
                rate * 100.0,
                rule.healed,
                rule.rate * 100.0
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn row(request_id: i64, fate: Fate, minutes: Option<i64>, reason: Option<&str>) -> OutcomeRow {
        let at = Utc
            .timestamp_opt(1_700_000_000 + request_id * 60, 0)
            .single()
            .expect("time");
        OutcomeRow {
            request_id,
            step_no: 1,
            incident_id: Some(request_id),
            pipeline: "checkout-service".into(),
            playbook: "flaky-tests".into(),
            action: "rerun-tests-clean".into(),
            signature: "Test|test_failure_rate:up".into(),
            fate,
            approved: matches!(
                fate,
                Fate::Approved | Fate::Executed | Fate::Healed | Fate::NotHealed | Fate::Failed
            ),
            automatic: false,
            reason: reason.map(str::to_string),
            minutes_to_heal: minutes,
            offered_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn the_card_sentence_reads_like_the_example() {
        let rows = vec![
            row(1, Fate::Healed, Some(20), None),
            row(2, Fate::Healed, Some(22), None),
            row(3, Fate::NotHealed, None, None),
            row(4, Fate::Healed, Some(25), None),
            row(5, Fate::Healed, Some(30), None),
            row(6, Fate::Rejected, None, Some("not flaky")),
        ];
        let records = TrackRecord::from_rows(&rows);
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].sentence(),
            "healed 4 of 5 times on checkout-service, median 23.5 min; rejected once: 'not flaky'"
        );
        assert_eq!(records[0].healed_since_not_healed, 2);
        assert_eq!(records[0].approved, 5);
    }

    #[test]
    fn signatures_round_trip_and_ignore_order() {
        let devs = |names: &[(&str, Direction)]| -> Vec<MetricDeviation> {
            names
                .iter()
                .map(|(m, d)| MetricDeviation {
                    metric: m.to_string(),
                    direction: *d,
                    ..MetricDeviation::default()
                })
                .collect()
        };
        let a = Signature::new(
            Some("Test"),
            &devs(&[("b", Direction::Up), ("a", Direction::Down)]),
        );
        let b = Signature::new(
            Some("Test"),
            &devs(&[("a", Direction::Down), ("b", Direction::Up)]),
        );
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key(), "Test|a:down,b:up");
        assert_eq!(Signature::parse(&a.key()), a);
        assert_eq!(Signature::parse("|x:up").stage, None);
    }

    #[test]
    fn autonomy_is_earned_at_the_threshold_not_before_and_revoked_by_not_healed() {
        let rule = AutoAfter {
            healed: 3,
            rate: 0.9,
        };
        let mut rows: Vec<OutcomeRow> = (1..=2)
            .map(|i| row(i, Fate::Healed, Some(10), None))
            .collect();
        let record = |rows: &[OutcomeRow]| TrackRecord::from_rows(rows).pop();
        assert!(!autonomy(record(&rows).as_ref(), &rule).is_earned());
        rows.push(row(3, Fate::Healed, Some(10), None));
        assert!(autonomy(record(&rows).as_ref(), &rule).is_earned());
        rows.push(row(4, Fate::NotHealed, None, None));
        let revoked = autonomy(record(&rows).as_ref(), &rule);
        assert!(!revoked.is_earned());
        assert!(revoked.why().contains("did not heal"), "{}", revoked.why());
        assert!(!autonomy(None, &rule).is_earned());
    }

    #[test]
    fn not_healed_is_counted_per_signature() {
        let mut rows = vec![
            row(1, Fate::NotHealed, None, None),
            row(2, Fate::NotHealed, None, None),
        ];
        rows[1].signature = "Build|duration_s:up".into();
        let record = TrackRecord::from_rows(&rows).pop().expect("record");
        assert_eq!(
            record.not_healed_for(&Signature::parse("Test|test_failure_rate:up")),
            1
        );
        assert_eq!(
            record.not_healed_for(&Signature::parse("Build|duration_s:up")),
            1
        );
        assert_eq!(
            record.not_healed_for(&Signature::parse("Deploy|error_rate:up")),
            0
        );
    }
}
