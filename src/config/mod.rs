//! Layered configuration: built-in defaults, then `pipemedic.toml`, then
//! `PIPEMEDIC_<SECTION>__<KEY>` environment variables. Unknown keys are
//! errors, and every problem (unknown key, wrong type, invalid value) is
//! reported at once with its key path.
//!
//! Secrets never live in the TOML: see [`secrets`]. This module reads the
//! environment only through the [`Env`] snapshot it is given, so tests never
//! mutate the process environment.
//!
//! The section structs and their defaults are in `schema`, loading and
//! layering in `load`, the semantic checks in `validate`; everything is
//! re-exported here, so the rest of the crate names `crate::config::X`.

pub mod detection;
mod load;
mod schema;
pub mod secrets;
mod validate;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use crate::domain::HttpAllowlist;
pub use detection::{
    MetricRule, MetricRuleConfig, PipelineRules, PipelineRulesConfig, ProblemDirection,
};
pub use load::{
    from_sources, load, process_env, resolve_path, ConfigError, ConfigProblem, Env, Loaded,
};
pub use schema::{
    ApprovalsConfig, AskBackend, AskConfig, AwsConfig, AwsEndpoints, ChatConfig, ChatRoute,
    CodePipelineConfig, ConsoleConfig, DefaultRoute, DetectorBackend, DetectorConfig,
    DiscordConfig, EvidenceConfig, GithubConfig, GitlabConfig, IncidentsConfig, IngestConfig,
    OpsgenieConfig, PagerDutyConfig, PagingConfig, PlannerBackend, PlannerConfig, RemediateConfig,
    SecretFiles, ServerConfig, SlackConfig, StoreConfig, UnknownIdentity, APPROVER_MEMBER_PREFIXES,
    DEFAULT_CACHE_MODELS, DEFAULT_MODEL_CACHE_MIB, MAX_ACTION_TIMEOUT_S, MAX_EXPIRY_MINUTES,
    MAX_MODEL_CACHE_MIB, PAGING_PROVIDERS,
};
pub use secrets::{Secret, Secrets};

/// The commented starter file written by `pipemedic init`.
pub const STARTER_TOML: &str = include_str!("starter.toml");

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub ingest: IngestConfig,
    pub codepipeline: CodePipelineConfig,
    pub detector: DetectorConfig,
    pub planner: PlannerConfig,
    pub ask: AskConfig,
    pub incidents: IncidentsConfig,
    pub chat: ChatConfig,
    pub slack: SlackConfig,
    pub discord: DiscordConfig,
    pub github: GithubConfig,
    pub gitlab: GitlabConfig,
    pub aws: AwsConfig,
    pub remediate: RemediateConfig,
    pub approvals: ApprovalsConfig,
    pub paging: PagingConfig,
    pub secrets: SecretFiles,
    pub console: ConsoleConfig,
    pub evidence: EvidenceConfig,
}

impl Config {
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.server.listen.parse().ok()
    }

    /// The effective configuration as TOML, with credentials in every URL
    /// masked: passwords and secret query values ([`redact_url`]); secrets
    /// themselves are never part of [`Config`].
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = match toml::Value::try_from(self) {
            Ok(v) => v,
            Err(e) => return format!("# cannot render: {e}\n"),
        };
        mask_urls_in(&mut shown);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

fn mask_urls_in(value: &mut toml::Value) {
    match value {
        toml::Value::String(s) => {
            if let std::borrow::Cow::Owned(masked) = crate::redact::mask_url(s, "***") {
                *s = masked;
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(mask_urls_in),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| mask_urls_in(v)),
        _ => {}
    }
}

/// `url` with its password (`scheme://user:***@host`, also when the
/// password holds `@` or `/`) and the values of query parameters named
/// like a secret (`?password=***`, `sslpassword`, `token`, ...) masked.
pub fn redact_url(url: &str) -> String {
    crate::redact::mask_url(url, "***").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbooks::CiSystem;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_any_file() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.store.url, "sqlite://pipemedic.db");
        assert_eq!(c.planner.backend, PlannerBackend::Offline);
        assert_eq!(c.detector.backend, DetectorBackend::Embedded);
    }

    #[test]
    fn file_then_environment_override() {
        let text = "[server]\nlisten = \"127.0.0.1:9000\"\n[store]\nurl = \"sqlite://x.db\"\n";
        let c = from_sources(
            Some(text),
            None,
            &env(&[
                ("PIPEMEDIC_SERVER__LISTEN", "127.0.0.1:9100"),
                ("PIPEMEDIC_AWS__ENDPOINTS__BEDROCK", "http://127.0.0.1:4000"),
                ("PIPEMEDIC_CODEPIPELINE__POLL_PIPELINES", "a, b"),
                ("PIPEMEDIC_INGEST_TOKEN", "not-a-config-key"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9100");
        assert_eq!(c.store.url, "sqlite://x.db");
        assert_eq!(c.aws.endpoints.bedrock, "http://127.0.0.1:4000");
        assert_eq!(c.codepipeline.poll_pipelines, ["a", "b"]);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key() {
        let text = "[server]\nlisten = \"nowhere\"\ncolour = 3\n[store]\nmax_connections = \"many\"\n[bogus]\nx = 1\n";
        let err = from_sources(
            Some(text),
            Some("pipemedic.toml"),
            &env(&[
                ("PIPEMEDIC_PLANNER__TEMPERATURE", "warm"),
                ("PIPEMEDIC_SLACK__NOPE", "x"),
            ]),
        )
        .unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for expected in [
            "server.colour",
            "bogus",
            "PIPEMEDIC_PLANNER__TEMPERATURE",
            "PIPEMEDIC_SLACK__NOPE",
            "store.max_connections",
        ] {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
        // server.listen is only checked once its section deserialises; the
        // unknown key in the same section is reported alongside.
        assert!(err.to_string().contains("problems"));
    }

    #[test]
    fn semantic_problems_are_all_listed() {
        let text = "[server]\nlisten = \"nowhere\"\n[store]\nurl = \"mysql://x\"\n[detector]\nbackend = \"sagemaker\"\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["server.listen", "store.url", "detector.sagemaker_endpoint"]
        );
    }

    #[test]
    fn replica_lease_settings_have_defaults_and_are_validated() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(c.store.lease_seconds, 15);
        assert_eq!(c.store.replica_id, "");
        let ok = "[store]\nlease_seconds = 2\nreplica_id = \"pm-a.eu-1:7\"\n";
        let c = from_sources(Some(ok), None, &Env::new()).unwrap();
        assert_eq!(
            (c.store.lease_seconds, c.store.replica_id.as_str()),
            (2, "pm-a.eu-1:7")
        );
        let text = "[store]\nlease_seconds = 1\nreplica_id = \"a b\"\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["store.lease_seconds", "store.replica_id"]);
    }

    #[test]
    fn sagemaker_fallback_settings_have_defaults_and_are_validated() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(c.detector.sagemaker_max_failures, 3);
        assert_eq!(c.detector.sagemaker_retry_after_s, 300);
        let text = "[detector]\nsagemaker_max_failures = 0\nsagemaker_retry_after_s = 0\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "detector.sagemaker_max_failures",
                "detector.sagemaker_retry_after_s"
            ]
        );
    }

    #[test]
    fn the_model_cache_budget_has_a_default_and_is_validated() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(c.detector.model_cache_mib, 1024);
        assert_eq!(c.detector.cache_models, 10_000);
        let mut env = Env::new();
        env.insert("PIPEMEDIC_DETECTOR__MODEL_CACHE_MIB".into(), "64".into());
        let c = from_sources(None, None, &env).unwrap();
        assert_eq!(c.detector.model_cache_mib, 64);
        for bad in ["0", "1048577"] {
            let text = format!("[detector]\nmodel_cache_mib = {bad}\n");
            let err = from_sources(Some(&text), None, &Env::new()).unwrap_err();
            let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys, ["detector.model_cache_mib"], "{bad}");
            assert!(err.problems[0].message.contains(bad), "{err:?}");
        }
    }

    #[test]
    fn remediate_limits_are_validated() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert!(c.remediate.http_allowlist.is_empty());
        assert_eq!(c.remediate.shell_env_allowlist, ["PATH", "HOME"]);
        assert_eq!(c.remediate.http_timeout_s, 30);
        assert_eq!(c.remediate.shell_timeout_s, 300);

        let c = from_sources(
            Some("[remediate]\nhttp_allowlist = [\"hooks.internal.example\", \"*.ops.example\", \"10.0.0.0/8\", \"127.0.0.1\"]\n"),
            None,
            &env(&[("PIPEMEDIC_REMEDIATE__SHELL_ENV_ALLOWLIST", "PATH, LANG")]),
        )
        .unwrap();
        assert_eq!(
            c.remediate.http_allowlist,
            [
                "hooks.internal.example",
                "*.ops.example",
                "10.0.0.0/8",
                "127.0.0.1"
            ]
        );
        assert_eq!(c.remediate.shell_env_allowlist, ["PATH", "LANG"]);

        let text = "[remediate]\nhttp_allowlist = [\"https://x.example/path\", \"ok.example\"]\nshell_env_allowlist = [\"A=B\"]\nhttp_timeout_s = 0\nshell_timeout_s = 100000\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "remediate.http_timeout_s",
                "remediate.shell_timeout_s",
                "remediate.http_allowlist[0]",
                "remediate.shell_env_allowlist[0]",
            ]
        );
    }

    #[test]
    fn the_wait_for_codebuild_figures_is_read_and_checked() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(
            (
                c.evidence.resource_wait_s,
                c.evidence.resource_poll_s,
                c.evidence.resource_max_held
            ),
            (300, 30, 5000)
        );
        let text = "[evidence]\nresource_wait_s = 0\nresource_poll_s = 5\n";
        let c = from_sources(Some(text), None, &Env::new()).unwrap();
        assert_eq!(
            (c.evidence.resource_wait_s, c.evidence.resource_poll_s),
            (0, 5)
        );
        let bad =
            "[evidence]\nresource_wait_s = 7200\nresource_poll_s = 0\nresource_max_held = 0\n";
        let err = from_sources(Some(bad), None, &Env::new()).unwrap_err();
        let problems: Vec<_> = err
            .problems
            .iter()
            .map(|p| (p.key.as_str(), p.message.as_str()))
            .collect();
        let keys: Vec<_> = problems.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "evidence.resource_wait_s",
                "evidence.resource_poll_s",
                "evidence.resource_max_held"
            ]
        );
        assert!(problems[0].1.contains("0 to 3600"), "{problems:?}");
    }

    #[test]
    fn chat_routes_are_read_and_checked() {
        let text = "[incidents]\ngroup_window_h = 2\n[chat.default_route]\nplatform = \"discord\"\nchannel = \"42\"\n\
                    [[chat.routes]]\npipelines = \"payments-*\"\nplatform = \"slack\"\nchannel = \"C0123\"\n";
        let c = from_sources(Some(text), None, &Env::new()).unwrap();
        assert_eq!(c.incidents.group_window_h, 2);
        assert_eq!(c.chat.routes[0].pipelines, "payments-*");
        assert_eq!(c.chat.default_route.channel, "42");
        let bad = "[[chat.routes]]\npipelines = \"a[\"\nplatform = \"teams\"\nchannel = \"\"\n";
        let err = from_sources(Some(bad), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "chat.routes[0].pipelines",
                "chat.routes[0].platform",
                "chat.routes[0].channel"
            ]
        );
    }

    #[test]
    fn planner_keys_are_validated() {
        let text = "[planner]\nredact_patterns = [\"ok-[0-9]+\", \"(unclosed\"]\nmax_attempts = 0\nhttp_allowed_hosts = [\"https://x\"]\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "planner.max_attempts",
                "planner.redact_patterns[1]",
                "planner.http_allowed_hosts"
            ]
        );
        let moved = err
            .problems
            .iter()
            .find(|p| p.key == "planner.http_allowed_hosts")
            .unwrap();
        assert!(
            moved.message.contains("remediate.http_allowlist"),
            "{}",
            moved.message
        );
        let c = from_sources(
            Some("[planner]\ngeneric_ci = \"codepipeline\"\n"),
            None,
            &env(&[("PIPEMEDIC_PLANNER__REDACT_PATTERNS", "ACME-[0-9]{6}")]),
        )
        .unwrap();
        assert_eq!(c.planner.generic_ci, CiSystem::Codepipeline);
        assert_eq!(c.planner.redact_patterns, ["ACME-[0-9]{6}"]);
        assert_eq!(c.planner.max_attempts, 2);
    }

    #[test]
    fn approvals_settings_are_validated() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(c.approvals.expiry_minutes, 30);
        assert!(!c.approvals.commit_author_may_approve);
        assert!(!c.approvals.auto_remediation);
        assert!(c.approvals.groups.is_empty());

        let text = "[approvals]\nexpiry_minutes = 45\nauto_remediation = true\n[approvals.groups]\nsre = [\"slack:U123\", \"discord:456\", \"slack-group:S0SRE\"]\n";
        let c = from_sources(
            Some(text),
            None,
            &env(&[("PIPEMEDIC_APPROVALS__COMMIT_AUTHOR_MAY_APPROVE", "true")]),
        )
        .unwrap();
        assert_eq!(c.approvals.expiry_minutes, 45);
        assert!(c.approvals.auto_remediation);
        assert!(c.approvals.commit_author_may_approve);
        assert_eq!(
            c.approvals.groups["sre"],
            ["slack:U123", "discord:456", "slack-group:S0SRE"]
        );

        let text = "[approvals]\nexpiry_minutes = 0\ndefault_from = [\"sre\"]\n[approvals.groups]\n\"bad name\" = [\"U123\"]\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "approvals.expiry_minutes",
                "approvals.groups.bad name",
                "approvals.groups.bad name[0]",
                "approvals.default_from[0]",
            ]
        );
    }

    #[test]
    fn approver_identities_are_read_and_validated() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(c.approvals.unknown_identity, UnknownIdentity::Refuse);
        assert!(c.approvals.identities.is_empty());

        let text = "[approvals]\nunknown_identity = \"allow\"\n[approvals.identities]\n\"discord:123456\" = [\"mona@example.com\", \"octocat\"]\n";
        let c = from_sources(Some(text), None, &Env::new()).unwrap();
        assert_eq!(c.approvals.unknown_identity, UnknownIdentity::Allow);
        assert_eq!(
            c.approvals.identities["discord:123456"],
            ["mona@example.com", "octocat"]
        );

        let text = "[approvals.identities]\n\"U123\" = [\"a@b.c\"]\n\"slack:U1\" = []\n\"discord:9\" = [\"two words\"]\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "approvals.identities.U123",
                "approvals.identities.discord:9[0]",
                "approvals.identities.slack:U1",
            ]
        );
        let text = "[approvals]\nunknown_identity = \"maybe\"\n";
        assert!(from_sources(Some(text), None, &Env::new()).is_err());
        let c = from_sources(
            None,
            None,
            &env(&[("PIPEMEDIC_APPROVALS__UNKNOWN_IDENTITY", "allow")]),
        )
        .unwrap();
        assert_eq!(c.approvals.unknown_identity, UnknownIdentity::Allow);
    }

    #[test]
    fn ask_keys_have_defaults_and_are_validated() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(c.ask.backend, AskBackend::Offline);
        assert_eq!(c.ask.max_tool_calls, 8);
        assert_eq!(c.ask.max_tokens, 20_000);
        assert_eq!(c.ask.effective_model_id(&c.planner), c.planner.model_id);
        assert!(c.chat.open_channels.is_empty());
        let c = from_sources(
            Some("[ask]\nbackend = \"bedrock\"\nmodel_id = \"m1\"\n[chat]\nopen_channels = [\"C1\", \"dm\"]\n"),
            None,
            &env(&[("PIPEMEDIC_ASK__MAX_TOOL_CALLS", "4")]),
        )
        .unwrap();
        assert_eq!(c.ask.backend, AskBackend::Bedrock);
        assert_eq!(c.ask.effective_model_id(&c.planner), "m1");
        assert_eq!(c.ask.max_tool_calls, 4);
        assert_eq!(c.chat.open_channels, ["C1", "dm"]);
        let text = "[ask]\nmax_tool_calls = 0\nmax_tokens = 5\n[chat]\nopen_channels = [\" \"]\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ask.max_tool_calls",
                "ask.max_tokens",
                "chat.open_channels[0]"
            ]
        );
    }

    #[test]
    fn chat_admins_are_read_and_checked() {
        let c = from_sources(
            Some("[approvals.groups]\nsre = [\"slack:U1\"]\n"),
            None,
            &env(&[(
                "PIPEMEDIC_CHAT__ADMINS",
                "slack-group:S0OPS, discord-role:42, group:sre",
            )]),
        )
        .unwrap();
        assert_eq!(
            c.chat.admins,
            ["slack-group:S0OPS", "discord-role:42", "group:sre"]
        );
        let text = "[chat]\nadmins = [\"U123\", \"slack:\", \"group:nobody\", \"console:me\"]\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["chat.admins[0]", "chat.admins[1]", "chat.admins[2]"]);
    }

    #[test]
    fn paging_keys_have_defaults_and_are_validated() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(c.paging.provider, "");
        assert!(c.paging.on_expiry);
        assert_eq!(c.paging.not_healed_times, 2);
        assert_eq!(
            c.paging.pagerduty.events_url,
            "https://events.pagerduty.com"
        );
        assert_eq!(c.paging.opsgenie.api_url, "https://api.opsgenie.com");
        let c = from_sources(
            Some("[paging]\nprovider = \"opsgenie\"\n[paging.opsgenie]\napi_url = \"https://api.eu.opsgenie.com\"\n"),
            None,
            &env(&[("PIPEMEDIC_PAGING__PAGERDUTY__EVENTS_URL", "http://127.0.0.1:9")]),
        )
        .unwrap();
        assert_eq!(c.paging.provider, "opsgenie");
        assert_eq!(c.paging.opsgenie.api_url, "https://api.eu.opsgenie.com");
        assert_eq!(c.paging.pagerduty.events_url, "http://127.0.0.1:9");
        let text = "[paging]\nprovider = \"pagertree\"\n[paging.pagerduty]\nevents_url = \"events.pagerduty.com\"\n";
        let err = from_sources(Some(text), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["paging.provider", "paging.pagerduty.events_url"]);
        let bad = "[paging]\nrouting_key = \"abc\"\n";
        assert!(from_sources(Some(bad), None, &Env::new()).is_err());
    }

    #[test]
    fn gitlab_api_url_has_a_default_an_env_form_and_is_validated() {
        let c = from_sources(None, None, &Env::new()).unwrap();
        assert_eq!(c.gitlab.api_url, "https://gitlab.com");
        let c = from_sources(
            None,
            None,
            &env(&[("PIPEMEDIC_GITLAB__API_URL", "https://gitlab.example.com")]),
        )
        .unwrap();
        assert_eq!(c.gitlab.api_url, "https://gitlab.example.com");
        assert!(c.to_redacted_toml().contains("[gitlab]"));
        let err = from_sources(
            Some("[gitlab]\napi_url = \"gitlab.com\"\n"),
            None,
            &Env::new(),
        )
        .unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["gitlab.api_url"]);
        let err = from_sources(Some("[gitlab]\ntoken = \"x\"\n"), None, &Env::new()).unwrap_err();
        assert_eq!(err.problems[0].key, "gitlab.token", "no token in the TOML");
    }

    #[test]
    fn link_templates_are_checked_with_sample_facts() {
        let text = "[[chat.routes]]\npipelines = \"*\"\nplatform = \"slack\"\nchannel = \"C1\"\n\
                    links = [{ label = \"Dashboard\", url = \"https://grafana.example/d/ci?var-p={{pipeline}}&from={{from_ms}}&to={{to_ms}}\" }]\n";
        let c = from_sources(Some(text), None, &Env::new()).unwrap();
        assert_eq!(c.chat.routes[0].links[0].label, "Dashboard");
        let bad = "[[chat.routes]]\npipelines = \"*\"\nplatform = \"slack\"\nchannel = \"C1\"\n\
                   links = [{ label = \"ok\", url = \"https://x.example/{{pipeline}}\" }, { label = \"Dash\", url = \"grafana/d/{{pipeline}}\" }]\n\
                   [chat.default_route]\nplatform = \"slack\"\nchannel = \"C2\"\n\
                   links = [{ label = \"\", url = \"https://x.example/\" }, { label = \"x\", url = \"https://{{pipeline}}.example/\" }]\n";
        let err = from_sources(Some(bad), None, &Env::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "chat.routes[0].links[1].url",
                "chat.default_route.links[0].label",
                "chat.default_route.links[1].url",
            ]
        );
        assert!(err.problems[0].message.contains("not an absolute http"));
    }

    #[test]
    fn starter_file_is_valid() {
        from_sources(Some(STARTER_TOML), Some("starter"), &Env::new()).unwrap();
    }

    #[test]
    fn effective_config_renders_with_routes() {
        let mut c = Config::default();
        c.chat.routes.push(ChatRoute {
            pipelines: "payments-*".into(),
            platform: "slack".into(),
            channel: "C1".into(),
            links: Vec::new(),
        });
        let text = c.to_redacted_toml();
        assert!(!text.starts_with("# cannot render"), "{text}");
        let back = from_sources(Some(&text), None, &Env::new()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn config_check_masks_every_url_password_and_secret_query_value() {
        let mut c = Config::default();
        c.store.url = "postgres://app@db/pm?password=hunter2".into();
        c.slack.api_url = "https://proxy:p@ss/w0rd@slack-proxy.internal/api".into();
        let text = c.to_redacted_toml();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("p@ss/w0rd"), "{text}");
        assert!(text.contains("postgres://app@db/pm?password=***"), "{text}");
        assert!(
            text.contains("https://proxy:***@slack-proxy.internal/api"),
            "{text}"
        );
        assert_eq!(
            redact_url("postgres://app:p@ss/word@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
        let mut c = Config::default();
        c.store.url = "postgres://app:s3cret@db/x".into();
        assert!(!c.to_redacted_toml().contains("s3cret"));
    }
}
