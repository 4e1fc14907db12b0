//! Store operations of planning: the facts a plan is drafted from (an
//! anomaly's latest run, the pipeline's last normal run) and the plans
//! themselves. Plans are written once and never changed here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::write::WriteTx;
use super::{from_ms, ms, Store, StoreError, StoredRun};

/// Whether a stored plan passed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Validated: may be offered for approval.
    Valid,
    /// Rejected after every attempt: reported only.
    Invalid,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
        }
    }
}

/// A plan to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPlan {
    pub anomaly_id: i64,
    pub incident_id: Option<i64>,
    /// `offline` or `bedrock`.
    pub backend: String,
    /// The plan as drafted (the model's tool input), when there was one.
    pub plan: Option<serde_json::Value>,
    /// Present exactly when the plan is valid: the plan service's
    /// validated plan as JSON (the store does not read it).
    pub validated: Option<serde_json::Value>,
    /// Why it is invalid (empty when valid).
    pub errors: Vec<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl NewPlan {
    pub fn status(&self) -> PlanStatus {
        if self.validated.is_some() {
            PlanStatus::Valid
        } else {
            PlanStatus::Invalid
        }
    }
}

/// A stored plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredPlan {
    pub id: i64,
    pub anomaly_id: i64,
    pub incident_id: Option<i64>,
    pub backend: String,
    pub status: PlanStatus,
    pub plan: Option<serde_json::Value>,
    /// The validated plan as JSON, when valid.
    pub validated: Option<serde_json::Value>,
    pub errors: Vec<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub created_at: DateTime<Utc>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: e.to_string(),
    }
}

fn json_text<T: Serialize>(what: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| corrupt(what, e))
}

const PLAN_COLUMNS: &str = "id, anomaly_id, incident_id, backend, status, plan, validated, \
     errors, input_tokens, output_tokens, created_at_ms";

fn plan_from_row(r: &sqlx::any::AnyRow) -> Result<StoredPlan, StoreError> {
    let status: String = r.get(4);
    let plan: Option<String> = r.get(5);
    let validated: Option<String> = r.get(6);
    let errors: String = r.get(7);
    let tokens = |i: usize| u64::try_from(r.get::<i64, _>(i)).unwrap_or(0);
    Ok(StoredPlan {
        id: r.get(0),
        anomaly_id: r.get(1),
        incident_id: r.get(2),
        backend: r.get(3),
        status: match status.as_str() {
            "valid" => PlanStatus::Valid,
            "invalid" => PlanStatus::Invalid,
            other => return Err(corrupt("plans.status", other)),
        },
        plan: plan
            .map(|p| serde_json::from_str(&p))
            .transpose()
            .map_err(|e| corrupt("plans.plan", e))?,
        validated: validated
            .map(|v| serde_json::from_str(&v))
            .transpose()
            .map_err(|e| corrupt("plans.validated", e))?,
        errors: serde_json::from_str(&errors).map_err(|e| corrupt("plans.errors", e))?,
        input_tokens: tokens(8),
        output_tokens: tokens(9),
        created_at: from_ms(r.get(10)),
    })
}

impl Store {
    /// The latest run of an anomaly (the one plans are drafted for).
    pub async fn anomaly_last_run(&self, anomaly_id: i64) -> Result<Option<StoredRun>, StoreError> {
        let row = sqlx::query(
            "SELECT r.id, r.source, r.ingested_at_ms, r.body FROM anomalies a \
             JOIN runs r ON r.id = a.last_run_pk WHERE a.id = $1",
        )
        .bind(anomaly_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(super::stored_from_row).transpose()
    }

    /// The pipeline's latest run before `before` that detection judged
    /// normal (grade 0).
    pub async fn last_normal_run(
        &self,
        pipeline: &str,
        before: DateTime<Utc>,
    ) -> Result<Option<StoredRun>, StoreError> {
        let row = sqlx::query(
            "SELECT id, source, ingested_at_ms, body FROM runs \
             WHERE pipeline = $1 AND event_time_ms < $2 AND verdict IS NOT NULL AND grade = 0 \
             ORDER BY event_time_ms DESC, id DESC LIMIT 1",
        )
        .bind(pipeline)
        .bind(ms(before))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(super::stored_from_row).transpose()
    }

    pub async fn plan(&self, id: i64) -> Result<Option<StoredPlan>, StoreError> {
        let row = sqlx::query(&format!("SELECT {PLAN_COLUMNS} FROM plans WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(plan_from_row).transpose()
    }

    /// Every plan drafted for an anomaly, oldest first.
    pub async fn plans_for_anomaly(&self, anomaly_id: i64) -> Result<Vec<StoredPlan>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PLAN_COLUMNS} FROM plans WHERE anomaly_id = $1 ORDER BY id"
        ))
        .bind(anomaly_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(plan_from_row).collect()
    }

    /// Every plan drafted for an incident, oldest first: those drafted for
    /// it, and those of its (latest) anomaly drafted for no incident in
    /// particular (`pipemedic plan` before incidents were kept).
    pub async fn plans_for_incident(
        &self,
        incident: &crate::domain::Incident,
    ) -> Result<Vec<StoredPlan>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PLAN_COLUMNS} FROM plans WHERE incident_id = $1 \
             OR (incident_id IS NULL AND anomaly_id = $2) ORDER BY id"
        ))
        .bind(incident.id)
        .bind(incident.anomaly_id.unwrap_or(-1))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(plan_from_row).collect()
    }
}

impl WriteTx {
    /// Stores a plan; returns its id.
    pub async fn insert_plan(
        &mut self,
        plan: &NewPlan,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let drafted = plan
            .plan
            .as_ref()
            .map(|p| json_text("plan", p))
            .transpose()?;
        let validated = plan
            .validated
            .as_ref()
            .map(|v| json_text("validated plan", v))
            .transpose()?;
        let row = sqlx::query(
            "INSERT INTO plans (anomaly_id, incident_id, backend, status, plan, validated, errors, \
             input_tokens, output_tokens, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(plan.anomaly_id)
        .bind(plan.incident_id)
        .bind(&plan.backend)
        .bind(plan.status().as_str())
        .bind(drafted)
        .bind(validated)
        .bind(json_text("plan errors", &plan.errors)?)
        .bind(i64::try_from(plan.input_tokens).unwrap_or(i64::MAX))
        .bind(i64::try_from(plan.output_tokens).unwrap_or(i64::MAX))
        .bind(ms(now))
        .fetch_one(self.conn())
        .await?;
        Ok(row.get(0))
    }
}
