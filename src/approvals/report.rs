//! How approval steps are shown: a stored execution as a [`StepReport`]
//! line for chat, and an executor's error as the audit detail it leaves.
//! Pure formatting of what the store holds; decides nothing.

use serde_json::{json, Value};

use super::service::StepReport;
use crate::remediate::ExecError;
use crate::store::{ExecutionState, StoredExecution};

pub(super) fn error_detail(e: &ExecError) -> Value {
    let (status, code) = match e {
        ExecError::Api { status, code, .. } => (*status, code.clone()),
        _ => (None, None),
    };
    json!({
        "error": e.to_string(),
        "class": e.class().as_str(),
        "retryable": e.retryable(),
        "retry_after_s": e.retry_after().map(|d| d.as_secs_f64()),
        "http_status": status,
        "code": code,
    })
}

pub(super) fn report(e: &StoredExecution) -> StepReport {
    let outcome = e.outcome.as_ref();
    let call = outcome
        .and_then(|o| o.get("call"))
        .and_then(Value::as_str)
        .unwrap_or(&e.dry_run)
        .to_string();
    let summary = match e.status {
        ExecutionState::Planned => {
            "Not run yet (waiting for approval, or for its delay after approval).".to_string()
        }
        ExecutionState::Running => format!(
            "Running (claimed by {}).",
            e.claimed_by.as_deref().unwrap_or("another process")
        ),
        ExecutionState::Succeeded => outcome
            .and_then(|o| o.get("summary"))
            .and_then(Value::as_str)
            .unwrap_or("Succeeded.")
            .to_string(),
        ExecutionState::Failed => {
            if let Some(error) = &e.error {
                let retryable = outcome
                    .and_then(|o| o.get("retryable"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let class = outcome
                    .and_then(|o| o.get("class"))
                    .and_then(Value::as_str)
                    .unwrap_or("permanent");
                let wait = outcome
                    .and_then(|o| o.get("retry_after_s"))
                    .and_then(Value::as_f64)
                    .map(|s| format!(", after {s}s"))
                    .unwrap_or_default();
                if retryable {
                    format!(
                        "Failed: {error}. A later attempt may succeed ({class}{wait}); it is not retried automatically."
                    )
                } else {
                    format!("Failed: {error}. Not retried ({class}).")
                }
            } else {
                outcome
                    .and_then(|o| o.get("summary"))
                    .and_then(Value::as_str)
                    .map(|s| format!("Failed: {s}"))
                    .unwrap_or_else(|| "Failed.".to_string())
            }
        }
        ExecutionState::Unknown => "Unknown: the call was in flight when its process stopped. \
             Check the pipeline before trying again; it is not re-run automatically."
            .to_string(),
        ExecutionState::Skipped => "Not run.".to_string(),
    };
    StepReport {
        request_id: e.request_id,
        step_no: e.step_no,
        kind: e.kind.clone(),
        call,
        status: e.status,
        summary,
    }
}
