//! What people can ask pipemedic in chat: `/medic …` slash commands and the
//! text of mentions and direct messages, parsed into a [`Command`]. A
//! mention or direct message that is not a command is a question
//! ([`parse_message`]). Pure parsing; the chat service carries commands out.

use chrono::Duration;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `health [pipeline]`
    Health(Option<String>),
    /// `incidents`
    Incidents,
    /// `incident ID`
    Incident(i64),
    /// `silence PIPELINE DURATION`
    Silence {
        pipeline: String,
        duration: Duration,
    },
    /// `unsilence PIPELINE`
    Unsilence(String),
    /// `accept-baseline PIPELINE [METRIC]`
    AcceptBaseline {
        pipeline: String,
        metric: Option<String>,
    },
    /// `stop-auto PIPELINE`: no more automatic runs (earned autonomy) on it.
    StopAuto(String),
    /// `resume-auto PIPELINE`: fixes that earned autonomy may run on it again.
    ResumeAuto(String),
    /// `ask QUESTION`, or a mention or direct message that is no command.
    Ask(String),
    /// `help`
    Help,
    /// Anything else, with a hint of what was wrong.
    Unknown(String),
}

/// The help text, in the port's simple Markdown.
pub const HELP: &str = "**pipemedic commands** (as `/medic …` or by mentioning the bot)\n\
- `health [pipeline]`: runs, success rate and durations (7 and 30 days)\n\
- `incidents`: incidents that are not resolved\n\
- `incident ID`: one incident in detail\n\
- `silence PIPELINE DURATION`: post no alerts for a pipeline (glob) for a while, e.g. `silence payments-* 2h`\n\
- `unsilence PIPELINE`: end that silence\n\
- `accept-baseline PIPELINE [METRIC]`: the current level is the new normal\n\
- `stop-auto PIPELINE`: stop fixes that earned autonomy from running on a pipeline without approval\n\
- `resume-auto PIPELINE`: let them run on their own again\n\
- `ask QUESTION`: a plain-language question, e.g. `ask which pipelines got slower this week?` (or just mention the bot with it)\n\
- `help`: this text\n\
Answers cover the pipelines routed to this channel. `silence`, `unsilence`, `accept-baseline` and `resume-auto` are for the admins named in `chat.admins`.\n\
React ✅ or ❌ on an incident's plan to approve or reject it.";

/// Parses `30m`, `2h`, `1d`, `1w` (a positive whole number and a unit).
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = raw.split_at(split);
    let n: i64 = digits.parse().ok().filter(|n| *n > 0 && *n <= 100_000)?;
    match unit {
        "m" | "min" => Some(Duration::minutes(n)),
        "h" => Some(Duration::hours(n)),
        "d" => Some(Duration::days(n)),
        "w" => Some(Duration::weeks(n)),
        _ => None,
    }
}

/// Parses what follows `/medic` (or a mention); a leading `/medic` or
/// `medic` is accepted too.
pub fn parse(text: &str) -> Command {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    if matches!(words.first(), Some(&"/medic") | Some(&"medic")) {
        words.remove(0);
    }
    let Some((head, args)) = words.split_first() else {
        return Command::Help;
    };
    match (head.to_ascii_lowercase().as_str(), args) {
        ("help", _) => Command::Help,
        ("health", []) => Command::Health(None),
        ("health", [pipeline]) => Command::Health(Some(pipeline.to_string())),
        ("incidents", []) => Command::Incidents,
        ("incident", [id]) => match id.trim_start_matches('#').parse() {
            Ok(id) => Command::Incident(id),
            Err(_) => Command::Unknown(format!("`{id}` is not an incident number.")),
        },
        ("silence", [pipeline, duration]) => match parse_duration(duration) {
            Some(duration) => Command::Silence {
                pipeline: pipeline.to_string(),
                duration,
            },
            None => Command::Unknown(format!(
                "`{duration}` is not a duration such as `30m`, `2h` or `1d`."
            )),
        },
        ("unsilence", [pipeline]) => Command::Unsilence(pipeline.to_string()),
        ("stop-auto", [pipeline]) => Command::StopAuto(pipeline.to_string()),
        ("resume-auto", [pipeline]) => Command::ResumeAuto(pipeline.to_string()),
        ("ask", []) => Command::Unknown(
            "`ask` needs a question, e.g. `ask how is checkout-service doing?`".to_string(),
        ),
        ("ask", question) => Command::Ask(question.join(" ")),
        ("accept-baseline", [pipeline]) => Command::AcceptBaseline {
            pipeline: pipeline.to_string(),
            metric: None,
        },
        ("accept-baseline", [pipeline, metric]) => Command::AcceptBaseline {
            pipeline: pipeline.to_string(),
            metric: Some(metric.to_string()),
        },
        (
            "health" | "incidents" | "incident" | "silence" | "unsilence" | "accept-baseline"
            | "stop-auto" | "resume-auto",
            _,
        ) => Command::Unknown(format!("`{head}` takes other arguments.")),
        _ => Command::Unknown(format!("I don't know `{}`.", words.join(" "))),
    }
}

/// Parses the text of a mention or direct message: a command when it is
/// one, otherwise a question. A read-only command with other words
/// (`health checkout this week`) is a question too; a command that changes
/// something (`silence`, `unsilence`, `accept-baseline`) with bad
/// arguments gets its error, never a guess.
pub fn parse_message(text: &str) -> Command {
    let command = parse(text);
    let Command::Unknown(_) = &command else {
        return command;
    };
    let mut words: Vec<&str> = text.split_whitespace().collect();
    if matches!(words.first(), Some(&"/medic") | Some(&"medic")) {
        words.remove(0);
    }
    let head = words.first().map(|w| w.to_ascii_lowercase());
    match head.as_deref() {
        Some("silence" | "unsilence" | "accept-baseline" | "stop-auto" | "resume-auto" | "ask") => {
            command
        }
        Some(_) => Command::Ask(words.join(" ")),
        None => Command::Help,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_that_are_no_command_are_questions() {
        assert_eq!(parse_message("incidents"), Command::Incidents);
        assert_eq!(
            parse_message("is checkout healthy?"),
            Command::Ask("is checkout healthy?".into())
        );
        assert_eq!(
            parse_message("health checkout-service this week"),
            Command::Ask("health checkout-service this week".into())
        );
        assert_eq!(
            parse_message("ask why did payments fail?"),
            Command::Ask("why did payments fail?".into())
        );
        assert!(matches!(
            parse_message("silence x soon"),
            Command::Unknown(_)
        ));
        assert!(matches!(parse_message("ask"), Command::Unknown(_)));
        assert_eq!(parse_message(""), Command::Help);
        // Slash commands keep their strict reading.
        assert!(matches!(parse("is checkout healthy?"), Command::Unknown(_)));
        assert_eq!(parse("ask is it up"), Command::Ask("is it up".into()));
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse("health"), Command::Health(None));
        assert_eq!(
            parse("/medic health checkout-service"),
            Command::Health(Some("checkout-service".into()))
        );
        assert_eq!(parse("  incidents "), Command::Incidents);
        assert_eq!(parse("incident #12"), Command::Incident(12));
        assert_eq!(
            parse("silence payments-* 2h"),
            Command::Silence {
                pipeline: "payments-*".into(),
                duration: Duration::hours(2)
            }
        );
        assert_eq!(parse("unsilence x"), Command::Unsilence("x".into()));
        assert_eq!(
            parse("/medic stop-auto checkout-service"),
            Command::StopAuto("checkout-service".into())
        );
        assert!(matches!(parse("stop-auto"), Command::Unknown(_)));
        assert_eq!(parse("resume-auto x"), Command::ResumeAuto("x".into()));
        assert_eq!(
            parse("accept-baseline x duration_s"),
            Command::AcceptBaseline {
                pipeline: "x".into(),
                metric: Some("duration_s".into())
            }
        );
        assert_eq!(parse(""), Command::Help);
        assert_eq!(parse("HELP"), Command::Help);
        assert!(matches!(parse("silence x soon"), Command::Unknown(_)));
        assert!(matches!(parse("incident abc"), Command::Unknown(_)));
        assert!(matches!(parse("make coffee"), Command::Unknown(_)));
        assert!(matches!(parse("health a b"), Command::Unknown(_)));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30m"), Some(Duration::minutes(30)));
        assert_eq!(parse_duration("1d"), Some(Duration::days(1)));
        assert_eq!(parse_duration("1w"), Some(Duration::weeks(1)));
        assert_eq!(parse_duration("0h"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("2y"), None);
    }
}
