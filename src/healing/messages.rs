//! What healing says in chat, as text: the plan card with its exact calls
//! and Approve / Reject buttons (and their values), an invalid plan's
//! problems, a mention of a person, the steps of a plan as thread lines.
//! Pure formatting; every value from outside (exact calls, executor
//! summaries, validation messages, user ids) enters as literal text through
//! the chat cards' helper.

use super::*;

/// The card offering a plan for approval: the plan as chat text, the exact
/// calls of its steps, and the Approve / Reject buttons unless it runs
/// without approval.
pub(super) fn plan_card(
    incident_id: i64,
    validated: &crate::plan::ValidatedPlan,
    opened: &crate::approvals::OpenedRequest,
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
    let card = ChatMessage::new(
        format!("Plan for incident #{incident_id}"),
        Severity::Info,
        text,
    );
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

    #[test]
    fn button_values_name_their_request() {
        assert_eq!(request_of_value(&button_value(42)), Some(42));
        assert_eq!(request_of_value("request:x"), None);
        assert_eq!(request_of_value("42"), None);
    }
}
