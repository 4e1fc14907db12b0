//! What healing says in chat, as text: the value of the Approve / Reject
//! buttons, a mention of a person, the steps of a plan as thread lines.
//! Pure formatting; outside text is made inert with the chat cards' helper.

use super::*;

/// The value of the Approve / Reject buttons under a plan.
pub(super) fn button_value(request_id: i64) -> String {
    format!("request:{request_id}")
}

pub(super) fn request_of_value(value: &str) -> Option<i64> {
    value.strip_prefix("request:")?.parse().ok()
}

pub(super) fn mention(platform: Platform, user: &str) -> String {
    match platform {
        Platform::Slack => format!("<@{user}>"),
        Platform::Discord => format!("<@{user}>"),
        _ => user.to_string(),
    }
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
                s.call,
                chat::cards::inert(&s.summary)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
