//! Every parser that reads bytes pipemedic does not control, by name: the
//! webhook and event bodies CI systems send, the Slack and Discord payloads,
//! playbook files and the configuration.
//!
//! The fuzz targets in `fuzz/` and the property tests in
//! `src/untrusted/tests.rs` drive exactly these entry points, so a parser
//! added to the product is added here once and is fuzzed from then on.
//! [`Parser::feed`] runs the same steps a request would (parse, then
//! normalise, validate and redact the runs it yields) and must never panic,
//! whatever the input;
//! an `Err` from the parser is the expected answer to garbage.
//!
//! [`Parser::seeds`] turns the examples under `tests/fixtures` into inputs
//! of the shape each parser reads, to start a fuzzing corpus from.

use std::path::{Path, PathBuf};

use crate::chat::discord::interactions;
use crate::chat::slack::events as slack;
use crate::config::Env;
use crate::domain::Run;
use crate::ingest::redaction::redact_run;
use crate::ingest::{aws, generic, github, gitlab};
use crate::playbooks::{parse_playbook, LoadOptions};
use crate::redact::{Redactor, Tally};

/// The event names `X-GitHub-Event` may carry that the GitHub parser knows,
/// plus one it does not: every body is read under each of them.
const GITHUB_EVENTS: &[&str] = &["workflow_run", "workflow_job", "check_run", "ping", "push"];

/// A batch limit as `POST /v1/runs` applies it.
const GENERIC_BATCH: usize = 100;

/// One parser of untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parser {
    /// `POST /v1/webhooks/github`: a body under an `X-GitHub-Event` name.
    Github,
    /// `POST /v1/webhooks/gitlab`: pipeline and job events.
    Gitlab,
    /// `POST /v1/webhooks/aws`: EventBridge events from CodePipeline and
    /// CodeBuild.
    AwsEvent,
    /// `POST /v1/runs`: one normalised run or an array of them.
    GenericRun,
    /// Slack's Events API envelope.
    SlackEvents,
    /// A Slack slash command (a form body).
    SlackCommand,
    /// A Slack interaction (a form with a JSON `payload`).
    SlackInteraction,
    /// A Discord interaction.
    DiscordInteraction,
    /// A playbook file: front matter and body.
    PlaybookFile,
    /// `pipemedic.toml`.
    Config,
}

impl Parser {
    /// Every parser, in a fixed order.
    pub const ALL: &'static [Parser] = &[
        Parser::Github,
        Parser::Gitlab,
        Parser::AwsEvent,
        Parser::GenericRun,
        Parser::SlackEvents,
        Parser::SlackCommand,
        Parser::SlackInteraction,
        Parser::DiscordInteraction,
        Parser::PlaybookFile,
        Parser::Config,
    ];

    /// The name of its fuzz target (`cargo fuzz run <name>`).
    pub fn name(self) -> &'static str {
        match self {
            Parser::Github => "github",
            Parser::Gitlab => "gitlab",
            Parser::AwsEvent => "aws_event",
            Parser::GenericRun => "generic_run",
            Parser::SlackEvents => "slack_events",
            Parser::SlackCommand => "slack_command",
            Parser::SlackInteraction => "slack_interaction",
            Parser::DiscordInteraction => "discord_interaction",
            Parser::PlaybookFile => "playbook",
            Parser::Config => "config",
        }
    }

    /// The parser a fuzz target name stands for.
    pub fn from_name(name: &str) -> Option<Parser> {
        Parser::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// Whether the parser reads JSON (so structured JSON mutations reach
    /// past its syntax check).
    pub fn reads_json(self) -> bool {
        matches!(
            self,
            Parser::Github
                | Parser::Gitlab
                | Parser::AwsEvent
                | Parser::GenericRun
                | Parser::SlackEvents
                | Parser::DiscordInteraction
        )
    }

    /// Feeds `data` to the parser the way a request or a file would reach
    /// it. Returns how many things it accepted (runs, events, one
    /// playbook, one configuration); 0 when it refused the input.
    pub fn feed(self, data: &[u8]) -> usize {
        match self {
            Parser::Github => GITHUB_EVENTS
                .iter()
                .map(|event| match github::parse_github(event, data) {
                    Ok(parsed) => runs_of(parsed.into_run().into_iter().collect()),
                    Err(_) => 0,
                })
                .sum(),
            Parser::Gitlab => gitlab::parse_gitlab(data)
                .map(|parsed| runs_of(parsed.into_run().into_iter().collect()))
                .unwrap_or(0),
            Parser::AwsEvent => aws::parse_eventbridge(data).map(|_| 1).unwrap_or(0),
            Parser::GenericRun => generic::parse_runs(data, GENERIC_BATCH, fixed_now())
                .map(runs_of)
                .unwrap_or(0),
            Parser::SlackEvents => slack::parse_events_api(data, None).map(|_| 1).unwrap_or(0),
            Parser::SlackCommand => slack::parse_slash_command(data).map(|_| 1).unwrap_or(0),
            Parser::SlackInteraction => slack::parse_interaction(data)
                .map(|events| events.len())
                .unwrap_or(0),
            Parser::DiscordInteraction => interactions::parse(data, "http://127.0.0.1:9/api/v10")
                .map(|_| 1)
                .unwrap_or(0),
            Parser::PlaybookFile => {
                let text = String::from_utf8_lossy(data);
                parse_playbook(Path::new("fuzzed.md"), &text, &LoadOptions::default())
                    .map(|_| 1)
                    .unwrap_or(0)
            }
            Parser::Config => {
                let text = String::from_utf8_lossy(data);
                crate::config::from_sources(Some(&text), Some("fuzzed.toml"), &Env::new())
                    .map(|_| 1)
                    .unwrap_or(0)
            }
        }
    }

    /// The fixture directories (under `tests/fixtures`) and files whose
    /// contents start this parser's corpus.
    fn fixture_dirs(self) -> &'static [&'static str] {
        match self {
            Parser::Github => &["github"],
            Parser::Gitlab => &["gitlab"],
            Parser::AwsEvent => &["aws"],
            Parser::GenericRun => &["runs"],
            Parser::SlackEvents => &["slack"],
            Parser::SlackCommand => &["slack"],
            Parser::SlackInteraction => &["slack"],
            Parser::DiscordInteraction => &["discord"],
            Parser::PlaybookFile => &["playbooks/valid", "playbooks/broken"],
            Parser::Config => &["config"],
        }
    }

    /// Seed inputs for this parser from `fixtures` (the `tests/fixtures`
    /// directory), in the shape the parser reads: Slack interaction JSON is
    /// wrapped in its form, the configuration adds `config/*.toml` and the
    /// starter file. Missing directories give no seeds.
    pub fn seeds(self, fixtures: &Path) -> Vec<Vec<u8>> {
        let mut seeds = Vec::new();
        for dir in self.fixture_dirs() {
            for path in files_in(&fixtures.join(dir)) {
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let is_form = path.extension().is_some_and(|e| e == "form");
                match self {
                    Parser::SlackCommand if !is_form => {}
                    Parser::SlackEvents if is_form => {}
                    Parser::SlackInteraction if is_form => {}
                    Parser::SlackInteraction => {
                        let json = String::from_utf8_lossy(&bytes);
                        let form = format!("payload={}", urlencoding::encode(&json));
                        seeds.push(form.into_bytes());
                    }
                    _ => seeds.push(bytes),
                }
            }
        }
        if self == Parser::Config {
            seeds.push(crate::config::STARTER_TOML.as_bytes().to_vec());
        }
        // Inputs that once crashed it, as they were found.
        let saved = fixtures.join("fuzz-regressions").join(self.name());
        seeds.extend(
            files_in(&saved)
                .iter()
                .filter_map(|p| std::fs::read(p).ok()),
        );
        seeds
    }
}

/// Takes each run through the steps ingest applies after parsing
/// (normalise, validate, derive the metric samples) and counts them.
/// The clock runs are validated against: fixed, so that a crashing input
/// stays reproducible.
fn fixed_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

fn runs_of(runs: Vec<Run>) -> usize {
    let count = runs.len();
    let now = fixed_now();
    // Built once: compiling the patterns would dwarf each fuzzed input.
    static REDACTOR: std::sync::OnceLock<Redactor> = std::sync::OnceLock::new();
    let redactor = REDACTOR.get_or_init(Redactor::builtin_or_hide_all);
    for mut run in runs {
        run.normalise();
        let _problems = run.validate("", now);
        redact_run(redactor, &mut run, &mut Tally::default());
        let _samples = run.metric_samples();
    }
    count
}

/// The directories directly in `dir`, sorted; none when it is missing.
#[cfg(test)]
fn dirs_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The regular files directly in `dir`, sorted; none when it is missing.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests;
