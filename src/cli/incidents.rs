//! Incidents: `pipemedic plan` (drafting a remediation plan for a stored
//! incident), `pipemedic incidents` (listing them from the store) and
//! `pipemedic approve|reject PLAN` (deciding a plan through the admin API
//! of a running server, for when chat is down).

use std::path::Path;

use super::{load_config, open_store, DecideArgs, Exit};
use crate::config::{self, Env};
use crate::domain::{Choice, IncidentStatus};

/// What `pipemedic plan --json` prints (the shape is in the command's help
/// and the README).
fn plan_json(id: i64, drafted: &crate::plan::DraftedPlan) -> serde_json::Value {
    use crate::plan::PlanOutcome;
    let (status, plan, errors) = match &drafted.outcome {
        PlanOutcome::Valid { validated, .. } => (
            "valid",
            serde_json::to_value(validated).unwrap_or(serde_json::Value::Null),
            Vec::new(),
        ),
        PlanOutcome::Invalid { errors, .. } => ("invalid", serde_json::Value::Null, errors.clone()),
    };
    serde_json::json!({
        "incident": id,
        "plan_id": drafted.id,
        "planner": drafted.backend,
        "status": status,
        "plan": plan,
        "errors": errors,
        "attempts": drafted.attempts.len(),
        "usage": {"input": drafted.usage.input, "output": drafted.usage.output},
    })
}

/// `pipemedic plan INCIDENT [--dry-run] [--json]`: drafts a plan with the
/// configured planner and prints it; exit 1 when no valid plan came out.
pub(super) async fn plan(
    path: Option<&Path>,
    env: &Env,
    incident: &str,
    dry_run: bool,
    json: bool,
) -> Result<(), Exit> {
    use crate::plan::{PlanService, PlanServiceError};
    let id: i64 = incident
        .trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|_| Exit::BadInput(format!("{incident:?} is not an incident number")))?;
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let bedrock = if loaded.config.planner.backend == config::PlannerBackend::Bedrock {
        let aws = crate::aws::AwsSettings::from_config(&loaded.config.aws)
            .clients()
            .await;
        Some(aws.bedrock())
    } else {
        None
    };
    let service = PlanService::from_config(
        &loaded.config,
        store.clone(),
        std::sync::Arc::new(crate::metrics::Metrics::new()),
        std::sync::Arc::new(crate::clock::SystemClock),
        bedrock,
    )
    .map_err(|e| Exit::BadInput(e.to_string()))?;
    let incident = match store.incident(id).await {
        Ok(Some(incident)) => incident,
        Ok(None) => {
            store.close().await;
            return Err(Exit::BadInput(format!(
                "no incident #{id} (`GET /v1/incidents` lists them)"
            )));
        }
        Err(e) => {
            store.close().await;
            return Err(Exit::Failure(e.into()));
        }
    };
    let drafted = service
        .draft_for_incident(&incident, incident.last_run_pk, &incident.verdict, !dry_run)
        .await;
    store.close().await;
    let drafted = drafted.map_err(|e| match e {
        PlanServiceError::UnknownAnomaly(_) | PlanServiceError::NoAnomaly(_) => {
            Exit::BadInput(e.to_string())
        }
        other => Exit::Failure(other.into()),
    })?;
    if json {
        let text = serde_json::to_string_pretty(&plan_json(id, &drafted))
            .map_err(|e| Exit::Failure(e.into()))?;
        println!("{text}");
    } else {
        print!("{}", crate::plan::render_report(&drafted));
    }
    if drafted.outcome.is_valid() {
        Ok(())
    } else {
        Err(Exit::Failure(anyhow::anyhow!(
            "no valid plan for incident {id}; nothing is offered for approval"
        )))
    }
}

/// Which incidents `pipemedic incidents` lists.
fn status_filter(raw: &str) -> Result<Option<Vec<IncidentStatus>>, Exit> {
    match raw {
        "active" => Ok(Some(
            IncidentStatus::ALL
                .into_iter()
                .filter(|s| !matches!(s, IncidentStatus::Resolved | IncidentStatus::Dismissed))
                .collect(),
        )),
        "all" => Ok(None),
        other => match IncidentStatus::parse(&other.replace([' ', '-'], "_")) {
            Some(s) => Ok(Some(vec![s])),
            None => Err(Exit::BadInput(format!(
                "--status {other:?}: expected active, all or one of {}",
                IncidentStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}

/// `pipemedic incidents [--status S] [--pipeline P] [--json]`: incidents
/// from the store, newest first, each with its plans (the ids
/// `pipemedic approve|reject` takes).
pub(super) async fn incidents(
    path: Option<&Path>,
    env: &Env,
    status: &str,
    pipeline: Option<&str>,
    limit: i64,
    json: bool,
) -> Result<(), Exit> {
    let wanted = status_filter(status)?;
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let listed = list_incidents(&store, wanted.as_deref(), pipeline, limit).await;
    store.close().await;
    let listed = listed.map_err(|e| Exit::Failure(e.into()))?;
    if json {
        let out = serde_json::to_string_pretty(&serde_json::json!({ "incidents": listed }))
            .map_err(|e| Exit::Failure(e.into()))?;
        println!("{out}");
        return Ok(());
    }
    if listed.is_empty() {
        println!("No incidents with status {status}.");
        return Ok(());
    }
    println!(
        "{:>6}  {:<18}  {:<9}  {:>4}  {:<17}  {:<32}  plans",
        "id", "status", "severity", "runs", "opened", "pipeline"
    );
    for item in &listed {
        let plans = item
            .plans
            .iter()
            .map(|p| format!("{} ({})", p.id, p.state))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{:>6}  {:<18}  {:<9}  {:>4}  {:<17}  {:<32}  {}",
            item.id,
            item.status,
            item.severity,
            item.runs,
            item.opened_at.format("%Y-%m-%d %H:%M"),
            item.pipeline,
            if plans.is_empty() {
                "-"
            } else {
                plans.as_str()
            }
        );
    }
    Ok(())
}

/// One listed incident.
#[derive(Debug, serde::Serialize)]
struct Listed {
    id: i64,
    pipeline: String,
    status: String,
    severity: String,
    runs: i64,
    opened_at: chrono::DateTime<chrono::Utc>,
    plans: Vec<ListedPlan>,
}

/// A plan of a listed incident and where its approval stands.
#[derive(Debug, serde::Serialize)]
struct ListedPlan {
    id: i64,
    /// The approval request's status (`pending`, `approved` ...), else the
    /// plan's own (`invalid` ...).
    state: String,
}

async fn list_incidents(
    store: &crate::store::Store,
    wanted: Option<&[IncidentStatus]>,
    pipeline: Option<&str>,
    limit: i64,
) -> Result<Vec<Listed>, crate::store::StoreError> {
    let only_active = wanted.is_some_and(|w| {
        !w.iter()
            .any(|s| matches!(s, IncidentStatus::Resolved | IncidentStatus::Dismissed))
    });
    let mut out = Vec::new();
    // Filtered here, so read more than shown.
    for incident in store.incidents(only_active, pipeline, 500).await? {
        if wanted.is_some_and(|w| !w.contains(&incident.status)) {
            continue;
        }
        if out.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
            break;
        }
        let requests = store
            .approval_requests_for_incident(&incident.id.to_string())
            .await?;
        let plans = store
            .plans_for_incident(&incident)
            .await?
            .into_iter()
            .map(|p| {
                let request = requests
                    .iter()
                    .filter(|r| r.plan_ref.as_deref() == Some(p.id.to_string().as_str()))
                    .max_by_key(|r| r.id);
                ListedPlan {
                    id: p.id,
                    state: request.map_or_else(
                        || p.status.as_str().to_string(),
                        |r| r.status.as_str().to_string(),
                    ),
                }
            })
            .collect();
        out.push(Listed {
            id: incident.id,
            pipeline: incident.pipeline.clone(),
            status: incident.status.as_str().to_string(),
            severity: incident.severity.as_str().to_string(),
            runs: incident.run_count,
            opened_at: incident.opened_at,
            plans,
        });
    }
    Ok(out)
}

/// `pipemedic approve|reject PLAN`: a vote through the admin API of a
/// running server, audited as `via cli` under `cli:NAME`.
pub(super) async fn decide(args: &DecideArgs, choice: Choice, env: &Env) -> Result<(), Exit> {
    let plan: i64 = args
        .plan
        .trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|_| Exit::BadInput(format!("{:?} is not a plan number", args.plan)))?;
    let operator = args
        .operator
        .clone()
        .or_else(|| env.get("USER").cloned())
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            Exit::BadInput("say who decides with --as NAME ($USER is not set)".to_string())
        })?;
    let token = args
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Exit::BadInput(
                "the admin token is needed: set PIPEMEDIC_ADMIN_TOKEN or pass --token".to_string(),
            )
        })?;
    let url = format!(
        "{}/v1/plans/{plan}/{}",
        args.server.trim_end_matches('/'),
        choice.as_str()
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(args.timeout_s))
        .build()
        .map_err(|e| Exit::Failure(e.into()))?;
    let response = client
        .post(&url)
        .bearer_auth(token)
        .json(&serde_json::json!({"as": operator, "reason": args.reason, "via": "cli"}))
        .send()
        .await
        .map_err(|e| Exit::Failure(anyhow::anyhow!("cannot reach {}: {e}", args.server)))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let message = body
            .get("message")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("no reason given");
        let text = format!("the server refused ({status}): {message}");
        return Err(if status.is_client_error() {
            Exit::BadInput(text)
        } else {
            Exit::Failure(anyhow::anyhow!(text))
        });
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    } else {
        println!(
            "plan {plan} (incident #{}), {} via cli: {}",
            body.get("incident_id")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or_default(),
            body.get("voter")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default(),
            body.get("explanation")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
        );
        for step in body
            .get("steps")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
        {
            println!(
                "  step {}: {} — {}",
                step.get("step_no")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or_default(),
                step.get("call")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default(),
                step.get("summary")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
            );
        }
    }
    let counted = matches!(
        body.pointer("/ruling/decision")
            .and_then(serde_json::Value::as_str),
        Some("counted" | "approved" | "rejected")
    );
    if counted {
        Ok(())
    } else {
        Err(Exit::Failure(anyhow::anyhow!(
            "the decision had no effect: {}",
            body.get("explanation")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
        )))
    }
}
