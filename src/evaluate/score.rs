//! The arithmetic of an evaluation: given each run's label and the grade
//! the detector gave it, which problems were found, which were missed,
//! which ordinary runs raised a false alarm, and the totals per scenario.
//!
//! Rules:
//! - a problem run is found when it, or the run right after it, is graded
//!   above 0 (a verdict one run late still reaches the team in time);
//! - an ordinary run graded above 0 is a false alarm, except within the
//!   [`NEW_NORMAL_GRACE`] runs after a declared new normal begins, where it
//!   is not counted at all (neither as an alarm nor as an ordinary run);
//! - recall is found / problems; false alarms are given per 1,000 counted
//!   ordinary runs.
//!
//! Pure: no I/O.

use super::corpus::{History, Label, Scenario, NEW_NORMAL_GRACE};

/// What became of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A problem graded above 0 (itself or the next run).
    Found,
    /// A problem neither it nor the next run was graded above 0 for.
    Missed,
    /// An ordinary run graded above 0.
    FalseAlarm,
    /// An ordinary run graded 0.
    Quiet,
    /// An ordinary run within the grace after a declared new normal.
    Excluded,
}

/// Marks every run. `grades[i]` is the grade of run `i` (a missing grade
/// counts as 0); `new_normal_starts` are the indices where a declared new
/// normal begins: ordinary runs from there up to [`NEW_NORMAL_GRACE`] runs
/// after it are excluded.
pub fn judge(labels: &[Label], new_normal_starts: &[usize], grades: &[f64]) -> Vec<Mark> {
    let alarmed = |i: usize| grades.get(i).is_some_and(|g| *g > 0.0);
    let in_grace = |i: usize| {
        new_normal_starts
            .iter()
            .any(|&s| (s..=s + NEW_NORMAL_GRACE).contains(&i))
    };
    labels
        .iter()
        .enumerate()
        .map(|(i, label)| match label {
            Label::Problem if alarmed(i) || alarmed(i + 1) => Mark::Found,
            Label::Problem => Mark::Missed,
            Label::Ordinary if in_grace(i) => Mark::Excluded,
            Label::Ordinary if alarmed(i) => Mark::FalseAlarm,
            Label::Ordinary => Mark::Quiet,
        })
        .collect()
}

/// Counts over a set of runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub runs: usize,
    pub problems: usize,
    pub found: usize,
    /// Ordinary runs that count (excluded ones are not here).
    pub ordinary: usize,
    pub false_alarms: usize,
    /// Ordinary runs not counted (grace after a new normal).
    pub excluded: usize,
}

impl Tally {
    pub fn of(marks: &[Mark]) -> Self {
        let count = |m: Mark| marks.iter().filter(|x| **x == m).count();
        let found = count(Mark::Found);
        let false_alarms = count(Mark::FalseAlarm);
        Self {
            runs: marks.len(),
            problems: found + count(Mark::Missed),
            found,
            ordinary: false_alarms + count(Mark::Quiet),
            false_alarms,
            excluded: count(Mark::Excluded),
        }
    }

    /// Share of problems found; `None` without problems.
    pub fn recall(&self) -> Option<f64> {
        (self.problems > 0).then(|| self.found as f64 / self.problems as f64)
    }

    /// False alarms per 1,000 counted ordinary runs; `None` without any.
    pub fn false_alarms_per_1000(&self) -> Option<f64> {
        (self.ordinary > 0).then(|| self.false_alarms as f64 * 1000.0 / self.ordinary as f64)
    }

    pub fn add(&mut self, other: &Tally) {
        self.runs += other.runs;
        self.problems += other.problems;
        self.found += other.found;
        self.ordinary += other.ordinary;
        self.false_alarms += other.false_alarms;
        self.excluded += other.excluded;
    }
}

/// One history's marks and counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub marks: Vec<Mark>,
    pub tally: Tally,
}

/// Scores one history from the grades of its runs, in order.
pub fn score_history(history: &History, grades: &[f64]) -> ScenarioResult {
    let marks = judge(&history.labels(), &history.new_normal_starts(), grades);
    ScenarioResult {
        scenario: history.scenario,
        tally: Tally::of(&marks),
        marks,
    }
}

/// The sum of the results' counts.
pub fn total(results: &[ScenarioResult]) -> Tally {
    results.iter().fold(Tally::default(), |mut t, r| {
        t.add(&r.tally);
        t
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Label::{Ordinary as O, Problem as P};

    #[test]
    fn a_problem_is_found_by_its_own_grade_or_the_next_runs() {
        let labels = [O, P, O, P, O, P, P];
        let grades = [0.0, 0.0, 0.4, 0.0, 0.0, 0.0, 0.0];
        let marks = judge(&labels, &[], &grades);
        assert_eq!(
            marks,
            [
                Mark::Quiet,
                Mark::Found, // the next run was graded
                Mark::FalseAlarm,
                Mark::Missed,
                Mark::Quiet,
                Mark::Missed,
                Mark::Missed, // last run: no next one, and grades may be short
            ]
        );
        let t = Tally::of(&marks);
        assert_eq!(
            t,
            Tally {
                runs: 7,
                problems: 4,
                found: 1,
                ordinary: 3,
                false_alarms: 1,
                excluded: 0
            }
        );
        assert_eq!(t.recall(), Some(0.25));
        assert!((t.false_alarms_per_1000().unwrap_or(0.0) - 333.333).abs() < 0.01);
    }

    #[test]
    fn a_grade_of_exactly_zero_is_not_an_alarm() {
        let marks = judge(&[P, O], &[], &[0.0, 0.0]);
        assert_eq!(marks, [Mark::Missed, Mark::Quiet]);
        let marks = judge(&[P, O], &[], &[1e-9, 0.0]);
        assert_eq!(marks, [Mark::Found, Mark::Quiet]);
    }

    #[test]
    fn the_grace_after_a_new_normal_covers_24_runs_after_its_start() {
        let mut labels = vec![O; 40];
        labels[5] = P;
        labels[6] = P;
        let grades = vec![0.5; 40];
        let marks = judge(&labels, &[5], &grades);
        assert_eq!(marks[4], Mark::FalseAlarm, "before the new normal");
        assert_eq!(marks[5], Mark::Found);
        assert_eq!(marks[6], Mark::Found);
        assert!(marks[7..=29].iter().all(|m| *m == Mark::Excluded));
        assert_eq!(marks[30], Mark::FalseAlarm, "25 runs after its start");
        let t = Tally::of(&marks);
        assert_eq!((t.problems, t.found, t.excluded), (2, 2, 23));
        assert_eq!(t.ordinary, 40 - 2 - 23);
        assert_eq!(t.false_alarms, t.ordinary);
        assert_eq!(t.false_alarms_per_1000(), Some(1000.0));
    }

    #[test]
    fn totals_add_up_and_empty_counts_have_no_rates() {
        let a = Tally::of(&judge(&[P, O, O], &[], &[1.0, 0.0, 0.0]));
        let b = Tally::of(&judge(&[O, O, O, P], &[], &[0.0, 0.2, 0.0, 0.0]));
        let results = [
            ScenarioResult {
                scenario: Scenario::HungBuilds,
                marks: vec![],
                tally: a,
            },
            ScenarioResult {
                scenario: Scenario::SlowDrift,
                marks: vec![],
                tally: b,
            },
        ];
        let t = total(&results);
        assert_eq!((t.runs, t.problems, t.found), (7, 2, 1));
        assert_eq!((t.ordinary, t.false_alarms), (5, 1));
        assert_eq!(t.recall(), Some(0.5));
        assert_eq!(t.false_alarms_per_1000(), Some(200.0));
        let none = Tally::default();
        assert_eq!(none.recall(), None);
        assert_eq!(none.false_alarms_per_1000(), None);
    }

    #[test]
    fn scoring_a_generated_history_counts_its_labels() {
        let h = crate::evaluate::corpus::history(Scenario::StepChange, 1);
        let quiet = score_history(&h, &[]);
        assert_eq!(quiet.tally.problems, 3);
        assert_eq!(quiet.tally.found, 0);
        assert_eq!(quiet.tally.false_alarms, 0);
        assert!(quiet.tally.excluded >= 20);
        assert_eq!(
            quiet.tally.ordinary + quiet.tally.excluded + 3,
            h.runs.len()
        );
        let loud = score_history(&h, &vec![1.0; h.runs.len()]);
        assert_eq!(loud.tally.recall(), Some(1.0));
        assert_eq!(loud.tally.false_alarms, loud.tally.ordinary);
    }
}
