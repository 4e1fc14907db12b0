//! Read-only queries of the web console that the other capabilities do not
//! need: a page of a pipeline's runs with their grades, incident and audit
//! listings with filters and offsets, and counts of abnormal runs. Reads
//! only; nothing here writes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::incidents::{incident_from_row, INCIDENT_COLUMNS};
use super::{
    audit_from_row, ms, stored_from_row, summary_from_row, AuditEntry, RunSummary, Store,
    StoreError, StoredRun,
};
use crate::domain::{Expectation, Incident, Verdict};

/// A stored run with the anomaly grade detection gave it (`None`: not
/// scored yet) and what detection expected of its metrics (empty when not
/// scored, or scored before expectations were kept).
#[derive(Debug, Clone, PartialEq)]
pub struct GradedRun {
    pub stored: StoredRun,
    pub grade: Option<f64>,
    pub expected: Vec<Expectation>,
}

impl GradedRun {
    pub fn is_abnormal(&self) -> bool {
        self.grade.is_some_and(|g| g > 0.0)
    }
}

/// A run's summary and detection's grade (`None`: not scored yet).
#[derive(Debug, Clone, PartialEq)]
pub struct GradedSummary {
    pub summary: RunSummary,
    pub grade: Option<f64>,
}

/// One pipeline's runs as the overview sees them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverviewRuns {
    /// Since the overview's window start, newest first.
    pub recent: Vec<GradedSummary>,
    /// The latest run, whatever its age.
    pub latest: Option<GradedSummary>,
}

/// Which incidents a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentFilter<'a> {
    All,
    /// Not resolved or dismissed.
    Active,
    /// Exactly this status (`open`, `resolved` ...).
    Status(&'a str),
}

/// Which incidents a listing shows: by status, pipeline and when they
/// were opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncidentSelection<'a> {
    pub status: IncidentFilter<'a>,
    /// Only this pipeline's.
    pub pipeline: Option<&'a str>,
    /// Opened at or after this.
    pub opened_since: Option<DateTime<Utc>>,
    /// Opened before this.
    pub opened_before: Option<DateTime<Utc>>,
}

impl<'a> IncidentSelection<'a> {
    /// Incidents of any pipeline and time with `status`.
    pub fn status(status: IncidentFilter<'a>) -> Self {
        Self {
            status,
            pipeline: None,
            opened_since: None,
            opened_before: None,
        }
    }
}

/// Which audit entries a listing shows; empty strings match everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditFilter<'a> {
    pub kind: &'a str,
    /// Subjects starting with this (`incident/7`, `approval_request:`).
    pub subject: &'a str,
    pub actor: &'a str,
    /// At or after this.
    pub since: Option<DateTime<Utc>>,
}

impl Store {
    /// Runs of `pipeline`, newest first, `limit` of them after skipping
    /// `offset`, with their grades.
    pub async fn runs_page(
        &self,
        pipeline: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<GradedRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, source, ingested_at_ms, body, grade, verdict FROM runs WHERE pipeline = $1 \
             ORDER BY event_time_ms DESC, id DESC LIMIT $2 OFFSET $3",
        )
        .bind(pipeline)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let expected = match r.get::<Option<String>, _>(5) {
                    Some(text) => {
                        serde_json::from_str::<Verdict>(&text)
                            .map_err(|e| StoreError::Corrupt {
                                what: "runs.verdict".into(),
                                detail: e.to_string(),
                            })?
                            .expected
                    }
                    None => Vec::new(),
                };
                Ok(GradedRun {
                    stored: stored_from_row(r)?,
                    grade: r.get::<Option<f64>, _>(4),
                    expected,
                })
            })
            .collect()
    }

    /// How many runs `pipeline` has.
    pub async fn count_pipeline_runs(&self, pipeline: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM runs WHERE pipeline = $1")
            .bind(pipeline)
            .fetch_one(self.pool())
            .await?;
        Ok(row.get::<i64, _>(0))
    }

    /// For every pipeline whose name is in `[first, last]`: its runs since
    /// `since`, newest first, and its latest run whatever its age. Two
    /// queries for the whole range (the overview's page of pipelines), not
    /// some per pipeline.
    pub async fn overview_runs(
        &self,
        first: &str,
        last: &str,
        since: DateTime<Utc>,
    ) -> Result<HashMap<String, OverviewRuns>, StoreError> {
        const COLUMNS: &str =
            "r.run_id, r.attempt, r.status, r.event_time_ms, r.duration_s, r.stage, r.commit_sha, \
             r.pipeline, r.grade, r.id";
        let recent = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM runs r WHERE r.pipeline >= $1 AND r.pipeline <= $2 \
             AND r.event_time_ms >= $3 ORDER BY r.pipeline, r.event_time_ms DESC, r.id DESC"
        ))
        .bind(first)
        .bind(last)
        .bind(ms(since))
        .fetch_all(self.pool())
        .await?;
        let latest = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM runs r JOIN (SELECT pipeline, MAX(event_time_ms) AS t \
             FROM runs WHERE pipeline >= $1 AND pipeline <= $2 GROUP BY pipeline) m \
             ON r.pipeline = m.pipeline AND r.event_time_ms = m.t ORDER BY r.id"
        ))
        .bind(first)
        .bind(last)
        .fetch_all(self.pool())
        .await?;
        let graded = |r: &sqlx::any::AnyRow| -> Result<(String, GradedSummary), StoreError> {
            Ok((
                r.get::<String, _>(7),
                GradedSummary {
                    summary: summary_from_row(r)?,
                    grade: r.get::<Option<f64>, _>(8),
                },
            ))
        };
        let mut out: HashMap<String, OverviewRuns> = HashMap::new();
        for r in &recent {
            let (pipeline, run) = graded(r)?;
            out.entry(pipeline).or_default().recent.push(run);
        }
        // Ties on the latest time: the last stored wins (ordered by id).
        for r in &latest {
            let (pipeline, run) = graded(r)?;
            out.entry(pipeline).or_default().latest = Some(run);
        }
        Ok(out)
    }

    /// Incidents not resolved or dismissed, per pipeline whose name is in
    /// `[first, last]` (pipelines without any are absent).
    pub async fn active_incident_counts(
        &self,
        first: &str,
        last: &str,
    ) -> Result<HashMap<String, u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT pipeline, COUNT(*) FROM incidents WHERE pipeline >= $1 AND pipeline <= $2 \
             AND status NOT IN ('resolved', 'dismissed') GROUP BY pipeline",
        )
        .bind(first)
        .bind(last)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let n: i64 = r.get(1);
                (r.get::<String, _>(0), u64::try_from(n).unwrap_or(0))
            })
            .collect())
    }

    /// Incidents newest first, selected, `limit` after skipping `offset`,
    /// and how many match in all.
    pub async fn incidents_page(
        &self,
        selection: IncidentSelection<'_>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Incident>, i64), StoreError> {
        let (mode, status) = match selection.status {
            IncidentFilter::All => (0i64, ""),
            IncidentFilter::Active => (1, ""),
            IncidentFilter::Status(s) => (2, s),
        };
        let pipeline = selection.pipeline.unwrap_or("");
        let since = selection.opened_since.map_or(i64::MIN, ms);
        let before = selection.opened_before.map_or(i64::MAX, ms);
        let filter_sql = "($1 = 0 OR ($1 = 1 AND status NOT IN ('resolved', 'dismissed')) \
             OR ($1 = 2 AND status = $2)) AND ($3 = '' OR pipeline = $3) \
             AND opened_at_ms >= $4 AND opened_at_ms < $5";
        let rows = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE {filter_sql} \
             ORDER BY id DESC LIMIT $6 OFFSET $7"
        ))
        .bind(mode)
        .bind(status)
        .bind(pipeline)
        .bind(since)
        .bind(before)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        let total = sqlx::query(&format!(
            "SELECT COUNT(*) FROM incidents WHERE {filter_sql}"
        ))
        .bind(mode)
        .bind(status)
        .bind(pipeline)
        .bind(since)
        .bind(before)
        .fetch_one(self.pool())
        .await?
        .get::<i64, _>(0);
        let incidents = rows
            .iter()
            .map(incident_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((incidents, total))
    }

    /// Audit entries newest first, filtered, `limit` after skipping
    /// `offset`.
    pub async fn audit_page(
        &self,
        filter: AuditFilter<'_>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, kind, subject, actor, detail FROM audit_log \
             WHERE ($1 = '' OR kind = $1) AND ($2 = '' OR substr(subject, 1, length($2)) = $2) \
             AND ($3 = '' OR actor = $3) AND at_ms >= $4 \
             ORDER BY id DESC LIMIT $5 OFFSET $6",
        )
        .bind(filter.kind)
        .bind(filter.subject)
        .bind(filter.actor)
        .bind(filter.since.map_or(i64::MIN, ms))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(audit_from_row).collect()
    }
}
