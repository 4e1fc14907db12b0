//! Read-only queries of the web console that the other capabilities do not
//! need: a page of a pipeline's runs with their grades, incident and audit
//! listings with filters and offsets, and counts of abnormal runs. Reads
//! only; nothing here writes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{audit_from_row, ms, stored_from_row, AuditEntry, Store, StoreError, StoredRun};
use crate::domain::Incident;

/// A stored run with the anomaly grade detection gave it (`None`: not
/// scored yet).
#[derive(Debug, Clone, PartialEq)]
pub struct GradedRun {
    pub stored: StoredRun,
    pub grade: Option<f64>,
}

impl GradedRun {
    pub fn is_abnormal(&self) -> bool {
        self.grade.is_some_and(|g| g > 0.0)
    }
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
            "SELECT id, source, ingested_at_ms, body, grade FROM runs WHERE pipeline = $1 \
             ORDER BY event_time_ms DESC, id DESC LIMIT $2 OFFSET $3",
        )
        .bind(pipeline)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(GradedRun {
                    stored: stored_from_row(r)?,
                    grade: r.get::<Option<f64>, _>(4),
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

    /// Per pipeline, how many runs since `since` detection graded abnormal
    /// (pipelines without any are absent).
    pub async fn abnormal_counts_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<HashMap<String, u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT pipeline, COUNT(*) FROM runs WHERE event_time_ms >= $1 AND grade > 0 \
             GROUP BY pipeline",
        )
        .bind(ms(since))
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

    /// Incidents newest first, filtered, `limit` after skipping `offset`,
    /// and how many match in all.
    pub async fn incidents_page(
        &self,
        filter: IncidentFilter<'_>,
        pipeline: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Incident>, i64), StoreError> {
        let (mode, status) = match filter {
            IncidentFilter::All => (0i64, ""),
            IncidentFilter::Active => (1, ""),
            IncidentFilter::Status(s) => (2, s),
        };
        let filter_sql = "($1 = 0 OR ($1 = 1 AND status NOT IN ('resolved', 'dismissed')) \
             OR ($1 = 2 AND status = $2)) AND ($3 = '' OR pipeline = $3)";
        let ids = sqlx::query(&format!(
            "SELECT id FROM incidents WHERE {filter_sql} ORDER BY id DESC LIMIT $4 OFFSET $5"
        ))
        .bind(mode)
        .bind(status)
        .bind(pipeline.unwrap_or(""))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        let total = sqlx::query(&format!(
            "SELECT COUNT(*) FROM incidents WHERE {filter_sql}"
        ))
        .bind(mode)
        .bind(status)
        .bind(pipeline.unwrap_or(""))
        .fetch_one(self.pool())
        .await?
        .get::<i64, _>(0);
        let mut incidents = Vec::with_capacity(ids.len());
        for row in &ids {
            if let Some(incident) = self.incident(row.get::<i64, _>(0)).await? {
                incidents.push(incident);
            }
        }
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
