//! Plans as text: the Markdown a chat thread shows ([`render_for_chat`])
//! and the report `pipemedic plan` prints ([`render_report`]).
//!
//! Pure formatting. Only a [`ValidatedPlan`] is ever rendered as something
//! to approve; an invalid plan is rendered as a report of its problems,
//! with no step and no way to approve.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::bedrock::PlanOutcome;
use super::service::DraftedPlan;
use super::types::{ValidatedPlan, ValidatedStep};
use crate::chat::cards::inert;
use crate::playbooks::ApprovalPolicy;

fn percent(confidence: f64) -> String {
    format!("{:.0}%", (confidence * 100.0).clamp(0.0, 100.0))
}

fn params_line(step: &ValidatedStep) -> String {
    step.params
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Who must approve a step, in words.
fn approvers(policy: &ApprovalPolicy) -> String {
    match policy {
        ApprovalPolicy::None => "no approval needed (runs automatically when enabled)".to_string(),
        ApprovalPolicy::Required { required, from } if from.is_empty() => format!(
            "{required} approver{} with remediation rights",
            if *required == 1 { "" } else { "s" }
        ),
        ApprovalPolicy::Required { required, from } => {
            format!("{required} of {}", inert(&from.join(", ")))
        }
    }
}

/// The plan as a chat message for the incident's thread: summary, suspected
/// cause, steps with their risk, who must approve, how to approve (✅
/// reaction or the Approve button) and when the offer expires. What the
/// model wrote (summary, cause, reasons), names and parameter values are
/// literal text in the chat markup: they cannot mention anyone, link or
/// format on any platform.
pub fn render_for_chat(plan: &ValidatedPlan, expires_at: DateTime<Utc>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "**Remediation plan for incident {}**",
        plan.incident_id
    );
    if plan.rule_based {
        let _ = writeln!(
            out,
            "_Rule-based plan: drafted from the playbooks without a language model._"
        );
    }
    let _ = writeln!(out, "**Summary:** {}", inert(&plan.summary));
    let _ = writeln!(
        out,
        "**Suspected cause:** {} (confidence {})",
        inert(&plan.suspected_cause),
        percent(plan.confidence)
    );
    if plan.steps.is_empty() {
        let _ = writeln!(
            out,
            "**Steps:** none. No playbook action fits this incident, so there is nothing to approve."
        );
        return out;
    }
    let _ = writeln!(out, "**Steps** (overall risk: {}):", plan.risk);
    for (i, step) in plan.steps.iter().enumerate() {
        let _ = write!(
            out,
            "{}. `{}` from playbook `{}` ({}), risk **{}**",
            i + 1,
            inert(&step.action),
            inert(&step.playbook),
            step.kind,
            step.risk
        );
        let params = inert(&params_line(step));
        if !params.is_empty() {
            let _ = write!(out, ": {params}");
        }
        if let Some(delay) = step.delay_s {
            let _ = write!(out, "; runs {delay}s after approval");
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "   Why: {}", inert(&step.why));
        let _ = writeln!(out, "   Approval: {}", approvers(&step.approval));
    }
    let _ = writeln!(
        out,
        "**To approve:** react with ✅ or press **Approve**; ❌ or **Reject** declines. Nothing runs without the approvals above."
    );
    let _ = writeln!(
        out,
        "**Expires:** {} (unapproved plans lapse then).",
        expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    out
}

/// The plan as `pipemedic plan` prints it: the incident, the plan (or why
/// it is invalid), each step with playbook, action, parameters, risk,
/// approval and reason, and the tokens used.
pub fn render_report(drafted: &DraftedPlan) -> String {
    let mut out = String::new();
    let f = &drafted.facts;
    let _ = writeln!(
        out,
        "Incident {} — pipeline {}, run {} ({}{}), grade {:.2}",
        f.incident_id,
        f.pipeline,
        f.run_id,
        f.status.as_str(),
        f.stage
            .as_deref()
            .map(|s| format!(" at {s}"))
            .unwrap_or_default(),
        f.grade
    );
    let _ = writeln!(
        out,
        "Planner: {}{}",
        drafted.backend,
        match drafted.id {
            Some(id) => format!(", stored as plan {id}"),
            None => " (dry run: not stored)".to_string(),
        }
    );
    match &drafted.outcome {
        PlanOutcome::Valid { validated, .. } => {
            if validated.rule_based {
                let _ = writeln!(
                    out,
                    "rule-based: drafted from the playbooks without a language model"
                );
            }
            let _ = writeln!(out, "Status: valid");
            let _ = writeln!(out, "Summary: {}", validated.summary);
            let _ = writeln!(out, "Suspected cause: {}", validated.suspected_cause);
            let _ = writeln!(out, "Confidence: {}", percent(validated.confidence));
            let _ = writeln!(out, "Risk: {}", validated.risk);
            if validated.steps.is_empty() {
                let _ = writeln!(out, "Steps: none");
            }
            for (i, s) in validated.steps.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "Step {}: {}/{} ({})",
                    i + 1,
                    s.playbook,
                    s.action,
                    s.kind
                );
                let _ = writeln!(out, "  params: {}", params_line(s));
                let _ = writeln!(out, "  risk: {}", s.risk);
                let _ = writeln!(out, "  approval: {}", s.approval.describe());
                if let Some(delay) = s.delay_s {
                    let _ = writeln!(out, "  delay: {delay}s");
                }
                let _ = writeln!(out, "  why: {}", s.why);
            }
        }
        PlanOutcome::Invalid { errors, .. } => {
            let _ = writeln!(
                out,
                "Status: INVALID after {} attempt(s); it is not offered for approval and nothing runs.",
                drafted.attempts.len()
            );
            for e in errors {
                let _ = writeln!(out, "  - {e}");
            }
        }
    }
    let _ = writeln!(
        out,
        "Tokens: {} input, {} output ({} attempt(s))",
        drafted.usage.input,
        drafted.usage.output,
        drafted.attempts.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{StepTarget, ValidatedStep};
    use crate::playbooks::{ActionKind, CiSystem, Risk};

    fn plan() -> ValidatedPlan {
        ValidatedPlan {
            incident_id: "42".into(),
            summary: "Flaky coupon test; rerun the test stage clean.".into(),
            suspected_cause: "A timing-dependent UI test.".into(),
            confidence: 0.7,
            steps: vec![ValidatedStep {
                playbook: "flaky-tests".into(),
                playbook_title: "Rerun tests in a clean environment".into(),
                action: "rerun-tests-clean".into(),
                kind: ActionKind::CodepipelineRetryStage,
                target: StepTarget {
                    ci: CiSystem::Codepipeline,
                    pipeline: "checkout".into(),
                    execution_id: Some("e-1".into()),
                },
                params: [
                    ("stage".to_string(), serde_json::json!("Test")),
                    ("mode".to_string(), serde_json::json!("ALL_ACTIONS")),
                ]
                .into_iter()
                .collect(),
                risk: Risk::Low,
                approval: ApprovalPolicy::Required {
                    required: 1,
                    from: vec!["group:sre".into()],
                },
                delay_s: None,
                auto_after: None,
                why: "not touched by the commit".into(),
            }],
            risk: Risk::Low,
            stated_risk: Risk::Low,
            rule_based: false,
        }
    }

    #[test]
    fn chat_text_has_cause_steps_risk_approvers_how_and_expiry() {
        let expires: DateTime<Utc> = "2026-11-25T14:00:00Z".parse().unwrap();
        let text = render_for_chat(&plan(), expires);
        for needle in [
            "incident 42",
            "Suspected cause:** A timing-dependent UI test. (confidence 70%)",
            "1. `rerun-tests-clean` from playbook `flaky-tests`",
            "risk **low**: mode=ALL\\_ACTIONS, stage=Test",
            "Approval: 1 of group:sre",
            "react with ✅ or press **Approve**",
            "2026-11-25T14:00:00Z",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        assert!(!text.contains("Rule-based"));
        let mut offline = plan();
        offline.rule_based = true;
        offline.steps.clear();
        let text = render_for_chat(&offline, expires);
        assert!(text.contains("Rule-based plan"), "{text}");
        assert!(text.contains("nothing to approve"), "{text}");
        assert!(!text.contains("To approve"), "{text}");
    }

    #[test]
    fn what_the_model_wrote_cannot_mention_anyone() {
        let expires: DateTime<Utc> = "2026-11-25T14:00:00Z".parse().unwrap();
        let mut hostile = plan();
        hostile.summary = "<!channel> roll back now".into();
        hostile.steps[0].why = "ask <@U0ADMIN> and <@&123> and @here".into();
        hostile.steps[0]
            .params
            .insert("stage".into(), serde_json::json!("<!here>"));
        hostile.suspected_cause = "@everyone see [docs](http://evil.example) **now**".into();
        let text = render_for_chat(&hostile, expires);
        let links = crate::chat::markup::LinkPolicy::default();
        crate::chat::markup::tests::assert_inert_slack(&crate::chat::markup::to_slack(
            &text, &links,
        ));
        crate::chat::markup::tests::assert_inert_discord(&crate::chat::markup::to_discord(
            &text, &links,
        ));
        let plain = crate::chat::markup::to_plain(&text);
        assert!(plain.contains("<!channel> roll back now"), "{plain}");
        assert!(
            plain.contains("see [docs](http:\u{200b}//evil.example) **now**"),
            "{plain}"
        );
    }
}
