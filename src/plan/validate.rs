//! Plan validation against the playbooks, and the list of actions (with
//! parameter schemas) a plan for one incident may use.
//!
//! Pure: the same plan, catalog and facts always give the same answer. A
//! step is valid only when its playbook matches the incident, the playbook
//! declares the action, the action can act on the incident's CI system, the
//! plan sets only parameters a plan may choose (to allowed values), and
//! every templated value renders from incident facts alone. Nothing here
//! runs, schedules or approves anything.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{json, Value};

use super::types::{
    plan_json_schema, IncidentFacts, Plan, PlanError, StepTarget, ValidatedPlan, ValidatedStep,
    MAX_STEPS, MAX_TEXT,
};
use crate::playbooks::{
    escape_for, fact_flag_refusal, render_template, render_template_escaped, ActionDecl,
    ActionKind, ApprovalPolicy, Catalog, ParamSetter, ParamSpec, ParamType, Playbook, Risk,
};

/// CodePipeline's limit on a stop reason.
const MAX_STOP_REASON: usize = 200;

impl Plan {
    /// Checks every step against `catalog` for the incident in `facts` and
    /// resolves it into something runnable; every problem is reported.
    pub fn validate(
        &self,
        catalog: &Catalog,
        facts: &IncidentFacts,
    ) -> Result<ValidatedPlan, Vec<PlanError>> {
        let mut errors = Vec::new();
        for (field, text) in [
            ("summary", &self.summary),
            ("suspected_cause", &self.suspected_cause),
        ] {
            if text.trim().is_empty() || text.chars().count() > MAX_TEXT {
                errors.push(PlanError::Text {
                    field: field.to_string(),
                    max: MAX_TEXT,
                });
            }
        }
        if !self.confidence.is_finite() || !(0.0..=1.0).contains(&self.confidence) {
            errors.push(PlanError::Confidence(self.confidence));
        }
        if self.steps.len() > MAX_STEPS {
            errors.push(PlanError::TooManySteps {
                max: MAX_STEPS,
                got: self.steps.len(),
            });
        }
        let matched: BTreeSet<&str> = catalog
            .matching(&facts.match_subject())
            .into_iter()
            .map(|m| m.playbook.id.as_str())
            .collect();
        let mut seen = BTreeSet::new();
        let mut steps = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let n = i + 1;
            let Some(playbook) = catalog.get(&step.playbook) else {
                errors.push(PlanError::UnknownPlaybook {
                    step: n,
                    playbook: step.playbook.clone(),
                });
                continue;
            };
            if !matched.contains(playbook.id.as_str()) {
                errors.push(PlanError::PlaybookNotMatched {
                    step: n,
                    playbook: step.playbook.clone(),
                });
                continue;
            }
            let Some(action) = playbook.action(&step.action) else {
                errors.push(PlanError::UnknownAction {
                    step: n,
                    playbook: step.playbook.clone(),
                    action: step.action.clone(),
                });
                continue;
            };
            if !seen.insert((playbook.id.as_str(), action.id.as_str())) {
                errors.push(PlanError::DuplicateStep {
                    step: n,
                    playbook: playbook.id.clone(),
                    action: action.id.clone(),
                });
            }
            if step.why.trim().is_empty() || step.why.chars().count() > MAX_TEXT {
                errors.push(PlanError::EmptyWhy { step: n });
            }
            match resolve_step(n, catalog, playbook, action, &step.params, facts) {
                Ok(mut resolved) => {
                    resolved.why = step.why.trim().to_string();
                    steps.push(resolved);
                }
                Err(mut errs) => errors.append(&mut errs),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let risk = steps.iter().map(|s| s.risk).max().unwrap_or(Risk::Low);
        Ok(ValidatedPlan {
            incident_id: facts.incident_id.clone(),
            summary: self.summary.trim().to_string(),
            suspected_cause: self.suspected_cause.trim().to_string(),
            confidence: self.confidence,
            steps,
            risk,
            stated_risk: self.risk,
            rule_based: false,
        })
    }
}

/// Renders a playbook value: strings (and string lists) are templates over
/// the incident facts.
fn render_value(
    kind: ActionKind,
    spec: &ParamSpec,
    value: &Value,
    ctx: &Value,
) -> Result<Value, String> {
    match (spec.ty, value) {
        (ParamType::String | ParamType::Url, Value::String(s)) => {
            render_template_escaped(s, ctx, escape_for(kind, spec, s)).map(Value::from)
        }
        (ParamType::StringList, Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => render_template(s, ctx).map(Value::from),
                other => Ok(other.clone()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (_, other) => Ok(other.clone()),
    }
}

/// A `shell` argument that a fact made start with `-` is refused unless
/// the action declares that fact in `flags`.
fn check_fact_flags(
    kind: ActionKind,
    spec: &ParamSpec,
    template: &Value,
    rendered: &Value,
    flags: &[String],
) -> Result<(), String> {
    if kind != ActionKind::Shell || spec.name != "argv" {
        return Ok(());
    }
    let (Value::Array(templates), Value::Array(values)) = (template, rendered) else {
        return Ok(());
    };
    for (i, (t, v)) in templates.iter().zip(values).enumerate() {
        if let (Some(t), Some(v)) = (t.as_str(), v.as_str()) {
            if let Some(reason) = fact_flag_refusal(t, v, flags) {
                return Err(format!("argv[{i}]: {reason}"));
            }
        }
    }
    Ok(())
}

/// Resolves one step: checks the plan's parameters and renders the rest.
pub(crate) fn resolve_step(
    n: usize,
    catalog: &Catalog,
    playbook: &Playbook,
    action: &ActionDecl,
    params: &BTreeMap<String, Value>,
    facts: &IncidentFacts,
) -> Result<ValidatedStep, Vec<PlanError>> {
    let kind = action.kind;
    let mut errors = Vec::new();
    if !kind.applies_to(facts.ci) {
        errors.push(PlanError::NotApplicable {
            step: n,
            action: action.id.clone(),
            kind,
            ci: facts.ci,
        });
        return Err(errors);
    }
    if kind.needs_execution_id() && facts.execution_id.as_deref().is_none_or(str::is_empty) {
        errors.push(PlanError::MissingExecutionId {
            step: n,
            action: action.id.clone(),
        });
    }
    let ctx = facts.template_context();
    let mut rendered = BTreeMap::new();
    let mut unrenderable = BTreeSet::new();
    for spec in kind.params() {
        let Some(configured) = action.configured(spec) else {
            continue;
        };
        match render_value(kind, spec, &configured, &ctx)
            .and_then(|v| check_fact_flags(kind, spec, &configured, &v, &action.flags).map(|()| v))
        {
            Ok(v) => {
                rendered.insert(spec.name, v);
            }
            Err(message) => {
                unrenderable.insert(spec.name);
                errors.push(PlanError::ParamInvalid {
                    step: n,
                    param: spec.name.to_string(),
                    message,
                });
            }
        }
    }
    let mut out: BTreeMap<String, Value> = rendered
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    for (name, value) in params {
        let Some(spec) = kind.param(name) else {
            errors.push(PlanError::UnknownParam {
                step: n,
                kind,
                param: name.clone(),
            });
            continue;
        };
        match spec.setter {
            ParamSetter::PlaybookOnly => errors.push(PlanError::ParamNotSettable {
                step: n,
                param: name.clone(),
            }),
            ParamSetter::Plan => {
                let allowed = spec.ty.allowed_values();
                if allowed.contains(value) {
                    out.insert(name.clone(), value.clone());
                } else {
                    errors.push(PlanError::ParamNotAllowed {
                        step: n,
                        param: name.clone(),
                        value: show(value),
                        allowed: allowed.iter().map(show).collect::<Vec<_>>().join(", "),
                    });
                }
            }
            ParamSetter::Playbook => match rendered.get(spec.name) {
                Some(expected) if expected == value => {}
                Some(expected) => errors.push(PlanError::ParamNotAllowed {
                    step: n,
                    param: name.clone(),
                    value: show(value),
                    allowed: format!("only the playbook's value {}", show(expected)),
                }),
                // Could not render; already reported.
                None => {}
            },
        }
    }
    for spec in kind.params() {
        let Some(value) = out.get(spec.name) else {
            if spec.required && !unrenderable.contains(spec.name) {
                errors.push(PlanError::ParamInvalid {
                    step: n,
                    param: spec.name.to_string(),
                    message: "has no value".to_string(),
                });
            }
            continue;
        };
        if let Err(message) = check_rendered(spec, kind, value, catalog) {
            errors.push(PlanError::ParamInvalid {
                step: n,
                param: spec.name.to_string(),
                message,
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ValidatedStep {
        playbook: playbook.id.clone(),
        playbook_title: playbook.title.clone(),
        action: action.id.clone(),
        kind,
        target: StepTarget {
            ci: facts.ci,
            pipeline: facts.pipeline.clone(),
            execution_id: facts
                .execution_id
                .clone()
                .filter(|_| kind.needs_execution_id()),
        },
        params: out,
        risk: action.risk,
        approval: action.approval.clone(),
        delay_s: action.delay.map(|d| d.as_secs()),
        auto_after: action.auto_after,
        why: String::new(),
    })
}

/// Checks a final, rendered value against its schema.
fn check_rendered(
    spec: &ParamSpec,
    kind: ActionKind,
    value: &Value,
    catalog: &Catalog,
) -> Result<(), String> {
    match (spec.ty, value) {
        (ParamType::String, Value::String(s)) => {
            if spec.required && s.trim().is_empty() {
                return Err("renders to an empty string".to_string());
            }
            if kind == ActionKind::CodepipelineStopExecution
                && spec.name == "reason"
                && s.chars().count() > MAX_STOP_REASON
            {
                return Err(format!("is longer than {MAX_STOP_REASON} characters"));
            }
            Ok(())
        }
        (ParamType::Url, Value::String(s)) => catalog.url_allowed(s),
        (ParamType::Enum(allowed), Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        (ParamType::Bool, Value::Bool(_)) => Ok(()),
        (ParamType::Integer { min, max }, Value::Number(n))
            if n.as_i64().is_some_and(|i| (min..=max).contains(&i)) =>
        {
            Ok(())
        }
        (ParamType::StringList | ParamType::EnvNames, Value::Array(items))
            if items.iter().all(Value::is_string) =>
        {
            if spec.name == "argv" && items.iter().any(|i| i.as_str() == Some("")) {
                return Err("an argument renders to an empty string".to_string());
            }
            Ok(())
        }
        (ty, other) => Err(format!("expected {}, got {}", ty.describe(), show(other))),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

/// One parameter of an [`AllowedAction`], as the prompt shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllowedParam {
    pub name: String,
    /// Human form of the type (`one of FAILED_ACTIONS|ALL_ACTIONS`).
    pub ty: String,
    pub setter: ParamSetter,
    /// The value the step gets unless the plan chooses another (rendered).
    pub value: Value,
    /// Values a plan may choose (empty: the plan may not change it).
    pub allowed: Vec<Value>,
    pub description: String,
    /// JSON schema of the value.
    pub schema: Value,
}

/// An action a plan for this incident may use: declared by a matching
/// playbook, applicable to the incident's CI system, and resolvable from
/// its facts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllowedAction {
    pub playbook: String,
    pub action: String,
    pub kind: ActionKind,
    pub description: String,
    pub risk: Risk,
    pub approval: ApprovalPolicy,
    pub delay_s: Option<u64>,
    pub params: Vec<AllowedParam>,
}

/// The actions a plan for `facts` may use, in playbook rank order.
pub fn allowed_actions(catalog: &Catalog, facts: &IncidentFacts) -> Vec<AllowedAction> {
    let mut out = Vec::new();
    for m in catalog.matching(&facts.match_subject()) {
        for action in &m.playbook.actions {
            let Ok(step) = resolve_step(1, catalog, m.playbook, action, &BTreeMap::new(), facts)
            else {
                continue;
            };
            let params = action
                .kind
                .params()
                .iter()
                .filter_map(|spec| {
                    let value = step.params.get(spec.name)?.clone();
                    let allowed = if spec.setter == ParamSetter::Plan {
                        spec.ty.allowed_values()
                    } else {
                        Vec::new()
                    };
                    Some(AllowedParam {
                        name: spec.name.to_string(),
                        ty: spec.ty.describe(),
                        setter: spec.setter,
                        value,
                        allowed,
                        description: spec.description.to_string(),
                        schema: spec.ty.json_schema(),
                    })
                })
                .collect();
            out.push(AllowedAction {
                playbook: m.playbook.id.clone(),
                action: action.id.clone(),
                kind: action.kind,
                description: action
                    .description
                    .clone()
                    .unwrap_or_else(|| action.kind.description().to_string()),
                risk: action.risk,
                approval: action.approval.clone(),
                delay_s: step.delay_s,
                params,
            });
        }
    }
    out
}

/// The Bedrock tool schema for one incident: [`plan_json_schema`] with each
/// step narrowed to one of the allowed actions and the parameters a plan may
/// choose for it. With no allowed action, `steps` must be empty.
pub fn plan_tool_schema(allowed: &[AllowedAction]) -> Value {
    let mut schema = plan_json_schema();
    let variants: Vec<Value> = allowed
        .iter()
        .map(|a| {
            let mut props = serde_json::Map::new();
            for p in a.params.iter().filter(|p| p.setter == ParamSetter::Plan) {
                props.insert(
                    p.name.clone(),
                    json!({"enum": p.allowed, "description": p.description}),
                );
            }
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["playbook", "action", "params", "why"],
                "properties": {
                    "playbook": {"type": "string", "enum": [a.playbook]},
                    "action": {"type": "string", "enum": [a.action]},
                    "params": {"type": "object", "additionalProperties": false, "properties": props},
                    "why": {"type": "string", "maxLength": MAX_TEXT}
                }
            })
        })
        .collect();
    if let Some(steps) = schema.pointer_mut("/properties/steps") {
        if variants.is_empty() {
            steps["maxItems"] = json!(0);
            steps["items"] = json!({"type": "object"});
        } else {
            steps["items"] = json!({"anyOf": variants});
        }
    }
    schema
}
