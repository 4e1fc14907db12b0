//! What healing says in chat, as text: the plan card with its exact calls
//! and Approve / Reject buttons (and their values), an invalid plan's
//! problems, a mention of a person, the steps of a plan as thread lines.
//! Pure formatting; every value from outside (exact calls, executor
//! summaries, validation messages, user ids) enters as literal text through
//! the chat cards' helper.

use super::*;

/// The card offering a plan for approval: the plan as chat text, the exact
/// calls of its steps, each fix's track record on the pipeline (with a
/// warning for a fix that did not heal this failure twice), and the
/// Approve / Reject buttons unless it runs without approval; a plan that
/// runs on earned autonomy says so, with a Stop automatic runs button.
pub(super) fn plan_card(
    incident_id: i64,
    validated: &crate::plan::ValidatedPlan,
    opened: &crate::approvals::OpenedRequest,
    facts: &crate::plan::IncidentFacts,
) -> ChatMessage {
    let mut text = render_for_chat(validated, opened.expires_at);
    text.push_str("\n**Exact calls:**\n");
    for step in &opened.steps {
        text.push_str(&format!(
            "{}. `{}`\n",
            step.step_no,
            chat::cards::inert(&step.call)
        ));
    }
    let fixes: Vec<chat::cards::FixOnCard<'_>> = validated
        .steps
        .iter()
        .map(|s| chat::cards::FixOnCard {
            playbook: &s.playbook,
            action: &s.action,
            record: facts.record_of(&s.playbook, &s.action),
        })
        .collect();
    text.push('\n');
    text.push_str(&chat::cards::track_record_text(
        &facts.pipeline,
        &facts.signature(),
        &fixes,
    ));
    if let Some(why) = &opened.earned {
        text.push('\n');
        text.push_str(&chat::cards::earned_autonomy_text(&facts.pipeline, why));
    }
    let card = ChatMessage::new(
        format!("Plan for incident #{incident_id}"),
        Severity::Info,
        text,
    );
    if opened.earned.is_some() {
        return card.control_button(chat::ButtonControl::StopAutomatic, button_value(opened.id));
    }
    if opened.automatic {
        return card;
    }
    let value = button_value(opened.id);
    card.button(Choice::Approve, value.clone())
        .button(Choice::Reject, value)
}

/// Why a drafted plan is not offered: its validation problems, one a line.
pub(super) fn invalid_plan_text(backend: &str, errors: &[String]) -> String {
    format!(
        "The {} planner's plan was invalid, so nothing is offered for approval:\n{}",
        backend,
        errors
            .iter()
            .map(|e| format!("- {}", chat::cards::inert(e)))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// The value of the Approve / Reject buttons under a plan.
pub(super) fn button_value(request_id: i64) -> String {
    format!("request:{request_id}")
}

pub(super) fn request_of_value(value: &str) -> Option<i64> {
    value.strip_prefix("request:")?.parse().ok()
}

/// A person named in a thread line. Chat output never carries a live
/// mention (the adapters neutralise every one), so this is the user id as
/// text.
pub(super) fn mention(_platform: Platform, user: &str) -> String {
    chat::cards::inert(user)
}

/// The steps as thread lines: number, kind, status and what happened (what
/// an executor reported, from outside, is made inert).
pub(super) fn steps_text(steps: &[StepReport]) -> String {
    steps
        .iter()
        .map(|s| {
            format!(
                "{}. `{}` **{}**: `{}`\n   {}",
                s.step_no,
                s.kind,
                s.status.as_str(),
                chat::cards::inert(&s.call),
                chat::cards::inert(&s.summary)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card_for(records: Vec<crate::domain::TrackRecord>, earned: Option<&str>) -> ChatMessage {
        use crate::plan::{offline_plan, IncidentFacts};
        let facts: IncidentFacts = serde_json::from_value(serde_json::json!({
            "incident_id": "7", "pipeline": "checkout-service", "run_id": "e-1",
            "status": "failed", "stage": "Test", "attempt": 1, "execution_id": "e-1",
            "ci": "codepipeline", "source": "aws", "grade": 0.8,
            "metrics": [{"metric": "test_failure_rate", "observed": 0.05, "expected": 0.001,
                         "direction": "up", "attribution": 1.0}],
        }))
        .expect("facts");
        let facts = IncidentFacts {
            track_record: records,
            ..facts
        };
        let catalog = crate::playbooks::Catalog::bundled().expect("bundled");
        let validated = offline_plan(&catalog, &facts).expect("plan").validated;
        let opened = crate::approvals::OpenedRequest {
            id: 12,
            automatic: earned.is_some(),
            expires_at: chrono::Utc::now(),
            steps: Vec::new(),
            earned: earned.map(str::to_string),
        };
        plan_card(7, &validated, &opened, &facts)
    }

    fn rows(
        fates: &[(crate::domain::Fate, Option<i64>, Option<&str>)],
    ) -> Vec<crate::domain::OutcomeRow> {
        let at = chrono::Utc::now();
        fates
            .iter()
            .enumerate()
            .map(|(i, (fate, minutes, reason))| crate::domain::OutcomeRow {
                request_id: i as i64,
                step_no: 1,
                incident_id: Some(i as i64),
                pipeline: "checkout-service".into(),
                playbook: "flaky-tests".into(),
                action: "rerun-tests-clean".into(),
                signature: "Test|test_failure_rate:up".into(),
                fate: *fate,
                approved: true,
                automatic: false,
                reason: reason.map(str::to_string),
                minutes_to_heal: *minutes,
                offered_at: at + chrono::Duration::seconds(i as i64),
                updated_at: at,
            })
            .collect()
    }

    #[test]
    fn the_plan_card_shows_the_track_record_and_warns_after_two_failures() {
        use crate::domain::{Fate, TrackRecord};
        let none = card_for(Vec::new(), None);
        assert!(
            none.text.contains(
                "`flaky-tests/rerun-tests-clean`: never offered on checkout-service before"
            ),
            "{}",
            none.text
        );
        let record = TrackRecord::from_rows(&rows(&[
            (Fate::Healed, Some(20), None),
            (Fate::Healed, Some(22), None),
            (Fate::Healed, Some(22), None),
            (Fate::NotHealed, None, None),
            (Fate::Healed, Some(30), None),
            (Fate::Rejected, None, Some("not flaky")),
        ]));
        let card = card_for(record, None);
        assert!(
            card.text.contains("healed 4 of 5 times on checkout-service, median 22 min; rejected once: 'not flaky'"),
            "{}",
            card.text
        );
        assert!(!card.text.contains("Warning"), "one failure is no pattern");
        assert_eq!(card.buttons.len(), 2, "Approve and Reject");

        let twice = TrackRecord::from_rows(&rows(&[
            (Fate::NotHealed, None, None),
            (Fate::NotHealed, None, None),
        ]));
        let card = card_for(twice, None);
        assert!(
            card.text.contains("**Warning:** `flaky-tests/rerun-tests-clean` did not heal checkout-service twice before for this same failure (test\\_failure\\_rate up in stage Test)"),
            "{}",
            card.text
        );
        assert_eq!(card.buttons.len(), 2, "still offered, with the warning");
    }

    #[test]
    fn a_plan_on_earned_autonomy_says_so_with_a_stop_button() {
        let card = card_for(
            Vec::new(),
            Some("flaky-tests/rerun-tests-clean healed 5 of 5 runs"),
        );
        assert!(
            card.text.contains("Running without waiting for approval"),
            "{}",
            card.text
        );
        assert!(
            card.text.contains("/medic stop-auto checkout-service"),
            "{}",
            card.text
        );
        assert_eq!(card.buttons.len(), 1);
        assert_eq!(card.buttons[0].label(), "Stop automatic runs");
        assert_eq!(
            card.buttons[0].action_id(),
            crate::chat::STOP_AUTOMATIC_ACTION_ID
        );
        assert_eq!(request_of_value(&card.buttons[0].value), Some(12));
    }

    #[test]
    fn button_values_name_their_request() {
        assert_eq!(request_of_value(&button_value(42)), Some(42));
        assert_eq!(request_of_value("request:x"), None);
        assert_eq!(request_of_value("42"), None);
    }
}
