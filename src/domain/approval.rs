//! The shared vocabulary of approvals: a person deciding ([`Approver`]),
//! what they chose ([`Choice`]) and how ([`Via`]), one counted [`Vote`],
//! where a request is ([`RequestStatus`]) and what each step needs
//! ([`StepPolicy`], with its [`Risk`] and [`ApprovalPolicy`]). Chat
//! adapters, the store, playbooks and the approval rules all speak it.
//! Pure data; the rules live in `approvals`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A person deciding in chat, as the chat adapter saw them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    /// `slack`, `discord`, `console` ...
    pub platform: String,
    /// The platform's user id.
    pub user: String,
    /// The Slack user groups, Discord roles or configured group names the
    /// person belongs to, as the adapter resolved them.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Other names of the person the adapter knows (the profile's email,
    /// a linked GitHub login), used to recognise the commit's author.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl Approver {
    pub fn new(platform: &str, user: &str) -> Self {
        Self {
            platform: platform.to_string(),
            user: user.to_string(),
            groups: Vec::new(),
            aliases: Vec::new(),
        }
    }

    pub fn with_aliases(mut self, aliases: &[&str]) -> Self {
        self.aliases = aliases.iter().map(|a| (*a).to_string()).collect();
        self
    }

    pub fn with_groups(mut self, groups: &[&str]) -> Self {
        self.groups = groups.iter().map(|g| (*g).to_string()).collect();
        self
    }

    /// The person: `platform:user`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.platform, self.user)
    }

    /// The prefix of a configured group member naming one of this
    /// platform's groups (`slack-group:`, `discord-role:`).
    pub fn group_member_prefix(&self) -> String {
        match self.platform.as_str() {
            "discord" => "discord-role:".to_string(),
            other => format!("{other}-group:"),
        }
    }
}

/// Approve or reject: a vote, a button, a reaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    Approve,
    Reject,
}

impl Choice {
    /// The button label: `Approve` or `Reject`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Approve => "Approve",
            Self::Reject => "Reject",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approve" => Some(Self::Approve),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }
}

/// How a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A ✅ or ❌ reaction.
    Reaction,
    /// The Approve or Reject button.
    Button,
    /// A typed command (`approve N`, a slash command).
    Command,
    /// `pipemedic approve|reject PLAN`, through the admin API.
    Cli,
    /// The admin API (`POST /v1/plans/{id}/approve|reject`) called directly.
    Api,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reaction => "reaction",
            Self::Button => "button",
            Self::Command => "command",
            Self::Cli => "cli",
            Self::Api => "api",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reaction" => Some(Self::Reaction),
            "button" => Some(Self::Button),
            "command" => Some(Self::Command),
            "cli" => Some(Self::Cli),
            "api" => Some(Self::Api),
            _ => None,
        }
    }
}

/// One decision event from chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub approver: Approver,
    /// The platform's id of the event (reaction event id, interaction id);
    /// a redelivery carries the same id.
    pub event_id: String,
    pub choice: Choice,
    pub via: Via,
    pub at: DateTime<Utc>,
}

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for votes.
    Pending,
    /// Enough people approved; execution has not started.
    Approved,
    Rejected,
    /// Nobody decided in time.
    Expired,
    /// A newer run of the pipeline superseded the run the plan is about.
    Stale,
    /// Its steps are running.
    Executing,
    /// Every step succeeded.
    Done,
    /// A step failed, or its outcome is unknown.
    Failed,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Stale => "stale",
            Self::Executing => "executing",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Approved,
            Self::Rejected,
            Self::Expired,
            Self::Stale,
            Self::Executing,
            Self::Done,
            Self::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The approval policy of one step, as stored with the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepPolicy {
    /// 1-based.
    pub step_no: u32,
    /// The action kind (`codepipeline.retry_stage` ...).
    pub kind: String,
    pub risk: Risk,
    pub approval: ApprovalPolicy,
    /// Seconds to wait after approval before the step runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_s: Option<u64>,
}

/// What an action may do to the pipeline if it goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    High,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::High => "high",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "low" => Some(Self::Low),
            "high" => Some(Self::High),
            _ => None,
        }
    }

    /// Approvals needed when a playbook does not say: one person for low
    /// risk, two for high.
    pub fn default_approvals(self) -> u32 {
        match self {
            Self::Low => 1,
            Self::High => 2,
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who must approve an action before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApprovalPolicy {
    /// No approval: allowed only for low-risk actions, and honoured only
    /// when the configuration enables automatic remediation.
    None,
    /// `required` distinct approvers, each matching one of `from`
    /// (`group:NAME` or `user:ID`); an empty `from` means anyone authorised
    /// to approve remediations.
    Required { required: u32, from: Vec<String> },
}

impl ApprovalPolicy {
    /// The default for an action of this risk.
    pub fn for_risk(risk: Risk) -> Self {
        Self::Required {
            required: risk.default_approvals(),
            from: Vec::new(),
        }
    }

    /// Short human form: `none`, `1 of group:sre`, `2 of anyone`.
    pub fn describe(&self) -> String {
        match self {
            Self::None => "none (automatic when enabled)".to_string(),
            Self::Required { required, from } if from.is_empty() => {
                format!("{required} of any approver")
            }
            Self::Required { required, from } => format!("{required} of {}", from.join(", ")),
        }
    }
}
