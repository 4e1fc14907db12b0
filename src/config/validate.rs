//! Validation: the semantic checks types alone cannot express, one
//! function per section, each reporting every problem it finds with its key
//! path; [`Config::validate`] runs them all.

use std::net::SocketAddr;

use super::schema::CHAT_PLATFORMS;
use super::{
    redact_url, AskBackend, Config, ConfigProblem, DetectorBackend, PlannerBackend,
    APPROVER_MEMBER_PREFIXES, MAX_ACTION_TIMEOUT_S, MAX_EXPIRY_MINUTES, MAX_MODEL_CACHE_MIB,
    PAGING_PROVIDERS,
};

impl Config {
    /// Semantic checks that types alone cannot express; every problem listed.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: String| {
            problems.push(ConfigProblem {
                key: key.to_string(),
                message,
            })
        };
        server(self, &mut bad);
        store(self, &mut bad);
        ingest(self, &mut bad);
        codepipeline(self, &mut bad);
        detector(self, &mut bad);
        planner(self, &mut bad);
        ask(self, &mut bad);
        incidents(self, &mut bad);
        chat(self, &mut bad);
        slack(self, &mut bad);
        remediate(self, &mut bad);
        approvals(self, &mut bad);
        api_urls(self, &mut bad);
        paging(self, &mut bad);
        links(self, &mut bad);
        console(self, &mut bad);
        evidence(self, &mut bad);
        problems
    }
}

/// The listen address, the body limit, the timeouts and the limits on
/// connections and webhook requests.
fn server(config: &Config, bad: &mut impl FnMut(&str, String)) {
    if config.server.listen.parse::<SocketAddr>().is_err() {
        bad(
            "server.listen",
            format!(
                "{:?} is not an address:port such as 127.0.0.1:8080",
                config.server.listen
            ),
        );
    }
    if config.server.max_body_bytes < 1024 {
        bad("server.max_body_bytes", "must be at least 1024".into());
    }
    for (key, value) in [
        ("server.header_timeout_s", config.server.header_timeout_s),
        ("server.body_timeout_s", config.server.body_timeout_s),
        ("server.request_timeout_s", config.server.request_timeout_s),
    ] {
        if !(value.is_finite() && (0.01..=3600.0).contains(&value)) {
            bad(key, format!("{value} must be from 0.01 to 3600 seconds"));
        }
    }
    if config.server.max_connections == 0 {
        bad("server.max_connections", "must be at least 1".into());
    }
    if config.server.webhook_rate_per_second == 0 {
        bad(
            "server.webhook_rate_per_second",
            "must be at least 1".into(),
        );
    }
    if config.server.webhook_burst == 0 {
        bad("server.webhook_burst", "must be at least 1".into());
    }
}

/// The database URL and the pool size.
fn store(config: &Config, bad: &mut impl FnMut(&str, String)) {
    let url = config.store.url.as_str();
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        bad(
            "store.url",
            format!(
                "{:?} must start with sqlite:, postgres:// or postgresql://",
                redact_url(url)
            ),
        );
    }
    if config.store.max_connections == 0 {
        bad("store.max_connections", "must be at least 1".into());
    }
    if !(2..=600).contains(&config.store.lease_seconds) {
        bad(
            "store.lease_seconds",
            format!(
                "{} must be between 2 and 600 (a lease is renewed every third of it)",
                config.store.lease_seconds
            ),
        );
    }
    let id = &config.store.replica_id;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if id.len() > 64 || !id.chars().all(allowed) {
        bad(
            "store.replica_id",
            format!("{id:?} must be up to 64 of A-Z, a-z, 0-9, '-', '_', '.', ':'"),
        );
    }
}

/// The batch limit and the retention of processed event ids.
fn ingest(config: &Config, bad: &mut impl FnMut(&str, String)) {
    if config.ingest.max_batch == 0 {
        bad("ingest.max_batch", "must be at least 1".into());
    }
    if !(1..=3650).contains(&config.ingest.processed_event_retention_days) {
        bad(
            "ingest.processed_event_retention_days",
            "must be 1 to 3650 days".into(),
        );
    }
}

/// The poll interval.
fn codepipeline(config: &Config, bad: &mut impl FnMut(&str, String)) {
    if config.codepipeline.poll_interval_s == 0 {
        bad("codepipeline.poll_interval_s", "must be at least 1".into());
    }
}

/// Sensitivity, the materiality rules, the model cache and SageMaker.
fn detector(config: &Config, bad: &mut impl FnMut(&str, String)) {
    if !(config.detector.sensitivity > 0.0 && config.detector.sensitivity <= 10.0) {
        bad("detector.sensitivity", "must be in (0, 10]".into());
    }
    for (key, message) in config.detector.rule_problems() {
        bad(&key, message);
    }
    if config.detector.cache_models == 0 {
        bad("detector.cache_models", "must be at least 1".into());
    }
    if !(1..=MAX_MODEL_CACHE_MIB).contains(&config.detector.model_cache_mib) {
        bad(
            "detector.model_cache_mib",
            format!(
                "must be between 1 and {MAX_MODEL_CACHE_MIB} MiB, not {}",
                config.detector.model_cache_mib
            ),
        );
    }
    if config.detector.backend == DetectorBackend::Sagemaker
        && config.detector.sagemaker_endpoint.is_empty()
    {
        bad(
            "detector.sagemaker_endpoint",
            "is required when detector.backend = \"sagemaker\"".into(),
        );
    }
    if config.detector.sagemaker_max_failures == 0 {
        bad(
            "detector.sagemaker_max_failures",
            "must be at least 1".into(),
        );
    }
    if !(1..=86_400).contains(&config.detector.sagemaker_retry_after_s) {
        bad(
            "detector.sagemaker_retry_after_s",
            "must be in [1, 86400]".into(),
        );
    }
}

/// The model, its limits, the redaction patterns and the allowed hosts.
fn planner(config: &Config, bad: &mut impl FnMut(&str, String)) {
    if config.planner.backend == PlannerBackend::Bedrock && config.planner.model_id.is_empty() {
        bad(
            "planner.model_id",
            "is required when planner.backend = \"bedrock\"".into(),
        );
    }
    if !(0.0..=1.0).contains(&config.planner.temperature) {
        bad("planner.temperature", "must be in [0, 1]".into());
    }
    if config.planner.max_tokens == 0 {
        bad("planner.max_tokens", "must be at least 1".into());
    }
    if config.planner.timeout_s == 0 {
        bad("planner.timeout_s", "must be at least 1".into());
    }
    if !(1..=5).contains(&config.planner.max_attempts) {
        bad("planner.max_attempts", "must be 1 to 5".into());
    }
    for (i, pattern) in config.planner.redact_patterns.iter().enumerate() {
        if let Err(e) = crate::redact::Redactor::new(std::slice::from_ref(pattern)) {
            let message = match e {
                crate::redact::RedactError::Pattern { message, .. } => message,
            };
            bad(
                &format!("planner.redact_patterns[{i}]"),
                format!("{pattern:?} is not a valid regular expression: {message}"),
            );
        }
    }
    if !config.planner.http_allowed_hosts.is_empty() {
        bad(
            "planner.http_allowed_hosts",
            "moved: http actions have one allowlist now; put these entries in remediate.http_allowlist and remove this key".to_string(),
        );
    }
}

/// The model and the per-question limits.
fn ask(config: &Config, bad: &mut impl FnMut(&str, String)) {
    if config.ask.backend == AskBackend::Bedrock
        && config.ask.effective_model_id(&config.planner).is_empty()
    {
        bad(
            "ask.model_id",
            "is required when ask.backend = \"bedrock\" (or set planner.model_id)".into(),
        );
    }
    if !(1..=32).contains(&config.ask.max_tool_calls) {
        bad("ask.max_tool_calls", "must be 1 to 32".into());
    }
    if !(1_000..=1_000_000).contains(&config.ask.max_tokens) {
        bad("ask.max_tokens", "must be 1000 to 1000000".into());
    }
}

/// The grouping window and the chart limits.
fn incidents(config: &Config, bad: &mut impl FnMut(&str, String)) {
    if config.incidents.group_window_h == 0 {
        bad("incidents.group_window_h", "must be at least 1".into());
    }
    if config.incidents.chart_days == 0 || config.incidents.chart_runs < 2 {
        bad(
            "incidents.chart_days",
            "chart_days must be at least 1 and chart_runs at least 2".into(),
        );
    }
}

/// Open channels, the outbox poll and the routes.
fn chat(config: &Config, bad: &mut impl FnMut(&str, String)) {
    for (i, channel) in config.chat.open_channels.iter().enumerate() {
        if channel.trim().is_empty() || channel.contains(char::is_whitespace) {
            bad(
                &format!("chat.open_channels[{i}]"),
                format!("{channel:?} must be a channel id or \"dm\""),
            );
        }
    }
    if config.chat.outbox_poll_ms == 0 {
        bad("chat.outbox_poll_ms", "must be at least 1".into());
    }
    const ADMIN_PREFIXES: [&str; 6] = [
        "slack:",
        "discord:",
        "console:",
        "slack-group:",
        "discord-role:",
        "group:",
    ];
    for (i, entry) in config.chat.admins.iter().enumerate() {
        let known = ADMIN_PREFIXES
            .iter()
            .find_map(|p| entry.strip_prefix(p))
            .is_some_and(|rest| !rest.trim().is_empty());
        if !known {
            bad(
                &format!("chat.admins[{i}]"),
                format!("{entry:?} must be slack:USER, discord:USER, console:NAME, slack-group:ID, discord-role:ID or group:NAME"),
            );
        } else if let Some(name) = entry.strip_prefix("group:") {
            if !config.approvals.groups.contains_key(name) {
                bad(
                    &format!("chat.admins[{i}]"),
                    format!("{entry:?} names no group of [approvals.groups]"),
                );
            }
        }
    }
    for (i, route) in config.chat.routes.iter().enumerate() {
        if let Err(e) = globset::Glob::new(&route.pipelines) {
            bad(
                &format!("chat.routes[{i}].pipelines"),
                format!("{:?} is not a valid glob: {e}", route.pipelines),
            );
        }
        if !CHAT_PLATFORMS.contains(&route.platform.as_str()) {
            bad(
                &format!("chat.routes[{i}].platform"),
                format!(
                    "{:?} must be \"slack\", \"discord\" or \"console\"",
                    route.platform
                ),
            );
        }
        if route.channel.trim().is_empty() {
            bad(
                &format!("chat.routes[{i}].channel"),
                "must name a channel".into(),
            );
        }
    }
    let default = &config.chat.default_route;
    if !default.platform.is_empty() || !default.channel.is_empty() {
        if !CHAT_PLATFORMS.contains(&default.platform.as_str()) {
            bad(
                "chat.default_route.platform",
                format!(
                    "{:?} must be \"slack\", \"discord\" or \"console\"",
                    default.platform
                ),
            );
        }
        if default.channel.trim().is_empty() {
            bad("chat.default_route.channel", "must name a channel".into());
        }
    }
}

/// The connection mode.
fn slack(config: &Config, bad: &mut impl FnMut(&str, String)) {
    if !matches!(config.slack.mode.as_str(), "socket" | "events") {
        bad(
            "slack.mode",
            format!("{:?} must be \"socket\" or \"events\"", config.slack.mode),
        );
    }
}

/// Action timeouts and the allowlists.
fn remediate(config: &Config, bad: &mut impl FnMut(&str, String)) {
    for (key, value) in [
        ("remediate.http_timeout_s", config.remediate.http_timeout_s),
        (
            "remediate.shell_timeout_s",
            config.remediate.shell_timeout_s,
        ),
    ] {
        if !(1..=MAX_ACTION_TIMEOUT_S).contains(&value) {
            bad(key, format!("must be between 1 and {MAX_ACTION_TIMEOUT_S}"));
        }
    }
    for (i, host) in config.remediate.http_allowlist.iter().enumerate() {
        if let Err(message) = crate::domain::check_allowlist_entry(host) {
            bad(&format!("remediate.http_allowlist[{i}]"), message);
        }
    }
    for (i, name) in config.remediate.shell_env_allowlist.iter().enumerate() {
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            bad(
                &format!("remediate.shell_env_allowlist[{i}]"),
                format!("{name:?} is not an environment variable name"),
            );
        }
    }
}

/// The approval window, the approver groups and the default approvers.
fn approvals(config: &Config, bad: &mut impl FnMut(&str, String)) {
    if !(1..=MAX_EXPIRY_MINUTES).contains(&config.approvals.expiry_minutes) {
        bad(
            "approvals.expiry_minutes",
            format!("must be between 1 and {MAX_EXPIRY_MINUTES}"),
        );
    }
    for (name, members) in &config.approvals.groups {
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            bad(
                &format!("approvals.groups.{name}"),
                "a group name uses only letters, digits, '-', '_' and '.'".into(),
            );
        }
        for (i, member) in members.iter().enumerate() {
            let ok = APPROVER_MEMBER_PREFIXES.iter().any(|p| {
                member
                    .strip_prefix(p)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
            });
            if !ok {
                bad(
                    &format!("approvals.groups.{name}[{i}]"),
                    format!(
                        "{member:?} must be slack:USER, discord:USER, console:NAME, slack-group:ID or discord-role:ID"
                    ),
                );
            }
        }
    }
    for (i, entry) in config.approvals.default_from.iter().enumerate() {
        let ok = ["group:", "user:"].iter().any(|p| {
            entry
                .strip_prefix(p)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
        });
        if !ok {
            bad(
                &format!("approvals.default_from[{i}]"),
                format!("{entry:?} must be group:NAME or user:ID"),
            );
        }
    }
    identities(config, bad);
}

/// `approvals.identities`: `slack:USER`, `discord:USER` or `console:NAME`
/// to at least one email or login, none blank.
fn identities(config: &Config, bad: &mut impl FnMut(&str, String)) {
    for (who, ids) in &config.approvals.identities {
        let who_ok = ["slack:", "discord:", "console:"].iter().any(|p| {
            who.strip_prefix(p)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
        });
        if !who_ok {
            bad(
                &format!("approvals.identities.{who}"),
                format!("{who:?} must be slack:USER_ID, discord:USER_ID or console:NAME"),
            );
        }
        if ids.is_empty() {
            bad(
                &format!("approvals.identities.{who}"),
                "list at least one email or CI login".into(),
            );
        }
        for (i, id) in ids.iter().enumerate() {
            if id.trim().is_empty() || id.trim().contains(char::is_whitespace) {
                bad(
                    &format!("approvals.identities.{who}[{i}]"),
                    format!("{id:?} must be an email or a login, without spaces"),
                );
            }
        }
    }
}

/// The API base URLs of Slack, Discord, GitHub and GitLab, and the AWS endpoint overrides.
fn api_urls(config: &Config, bad: &mut impl FnMut(&str, String)) {
    for (key, value) in [
        ("slack.api_url", &config.slack.api_url),
        ("discord.api_url", &config.discord.api_url),
        ("github.api_url", &config.github.api_url),
        ("gitlab.api_url", &config.gitlab.api_url),
        ("aws.endpoints.bedrock", &config.aws.endpoints.bedrock),
        ("aws.endpoints.sagemaker", &config.aws.endpoints.sagemaker),
        (
            "aws.endpoints.codepipeline",
            &config.aws.endpoints.codepipeline,
        ),
        ("aws.endpoints.s3", &config.aws.endpoints.s3),
        ("aws.endpoints.logs", &config.aws.endpoints.logs),
        ("aws.endpoints.cloudwatch", &config.aws.endpoints.cloudwatch),
    ] {
        let optional = key.starts_with("aws.");
        let is_http = value.starts_with("http://") || value.starts_with("https://");
        let may_be_empty = optional && value.is_empty();
        if !(is_http || may_be_empty) {
            bad(
                key,
                format!("{:?} must be an http:// or https:// URL", redact_url(value)),
            );
        }
    }
}

/// The paging provider and its endpoints (whose credentials are secrets,
/// checked at start).
fn paging(config: &Config, bad: &mut impl FnMut(&str, String)) {
    let paging = &config.paging;
    if !(paging.provider.is_empty() || PAGING_PROVIDERS.contains(&paging.provider.as_str())) {
        bad(
            "paging.provider",
            format!(
                "{:?} must be one of {} (or empty: nobody is paged)",
                paging.provider,
                PAGING_PROVIDERS.join(", ")
            ),
        );
    }
    for (key, value) in [
        ("paging.pagerduty.events_url", &paging.pagerduty.events_url),
        ("paging.opsgenie.api_url", &paging.opsgenie.api_url),
    ] {
        if !(value.starts_with("http://") || value.starts_with("https://")) {
            bad(
                key,
                format!("{:?} must be an http:// or https:// URL", redact_url(value)),
            );
        }
    }
}

/// Link templates of the chat routes: a label, and an absolute http(s) URL
/// once sample incident facts are filled in.
fn links(config: &Config, bad: &mut impl FnMut(&str, String)) {
    let routes = config
        .chat
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("chat.routes[{i}].links"), &r.links))
        .chain(std::iter::once((
            "chat.default_route.links".to_string(),
            &config.chat.default_route.links,
        )));
    for (prefix, links) in routes {
        for (j, link) in links.iter().enumerate() {
            if let Err((field, e)) = crate::domain::check_link_template(link) {
                bad(&format!("{prefix}[{j}].{field}"), e.to_string());
            }
        }
    }
}

/// The console's session lifetime and trusted-proxy settings.
fn console(config: &Config, bad: &mut impl FnMut(&str, String)) {
    let console = &config.console;
    if !(1..=168).contains(&console.session_hours) {
        bad("console.session_hours", "must be 1 to 168".into());
    }
    for (i, entry) in console.trusted_proxies.iter().enumerate() {
        let entry = entry.trim();
        let parses =
            entry.parse::<ipnet::IpNet>().is_ok() || entry.parse::<std::net::IpAddr>().is_ok();
        if !parses {
            bad(
                &format!("console.trusted_proxies[{i}]"),
                format!("{entry:?} is not an address or CIDR range (10.0.0.0/8)"),
            );
        }
    }
    let header = console.trusted_proxy_header.trim();
    if !header.is_empty() {
        if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            bad(
                "console.trusted_proxy_header",
                format!("{header:?} is not a valid header name"),
            );
        }
        if console.trusted_proxies.is_empty() {
            bad(
                "console.trusted_proxies",
                "is required when console.trusted_proxy_header is set (the proxies' addresses)"
                    .into(),
            );
        }
    }
}

/// The bounds of the evidence fetches.
fn evidence(config: &Config, bad: &mut impl FnMut(&str, String)) {
    let e = &config.evidence;
    if !(1..=120).contains(&e.timeout_s) {
        bad(
            "evidence.timeout_s",
            format!("{} is out of range (1 to 120 seconds)", e.timeout_s),
        );
    }
    if !(512..=crate::domain::MAX_LOG_EXCERPT).contains(&e.max_excerpt_bytes) {
        bad(
            "evidence.max_excerpt_bytes",
            format!(
                "{} is out of range (512 to {} bytes)",
                e.max_excerpt_bytes,
                crate::domain::MAX_LOG_EXCERPT
            ),
        );
    }
    if e.resource_wait_s > 3600 {
        bad(
            "evidence.resource_wait_s",
            format!(
                "{} is out of range (0 to 3600 seconds; 0 scores CodeBuild runs without waiting for CloudWatch)",
                e.resource_wait_s
            ),
        );
    }
    if !(1..=600).contains(&e.resource_poll_s) {
        bad(
            "evidence.resource_poll_s",
            format!("{} is out of range (1 to 600 seconds)", e.resource_poll_s),
        );
    }
    if !(1..=100_000).contains(&e.resource_max_held) {
        bad(
            "evidence.resource_max_held",
            format!("{} is out of range (1 to 100000 runs)", e.resource_max_held),
        );
    }
}
