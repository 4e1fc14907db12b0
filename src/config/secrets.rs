//! Secrets: read from the environment variables the design names, or from a
//! file (`<VAR>_FILE`, or a path in the `[secrets]` section). A [`Secret`]
//! never prints its value: `Debug` and `Display` show `***`.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::{ConfigProblem, Env, SecretFiles};

/// A secret value that never shows itself in logs or debug output.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The raw value; only for verifying signatures and building clients.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Every secret pipemedic may use; `None` when not configured.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    /// `POST /v1/runs` (and `pipemedic check`) only.
    pub ingest_token: Option<Secret>,
    /// The read API: GET routes and `POST /v1/ask`.
    pub read_token: Option<Secret>,
    /// Silence, accept-baseline, approve and reject through the API (and
    /// the CLI commands that call it); it also satisfies the read routes.
    pub admin_token: Option<Secret>,
    pub github_webhook_secret: Option<Secret>,
    pub aws_webhook_secret: Option<Secret>,
    pub gitlab_token: Option<Secret>,
    pub slack_bot_token: Option<Secret>,
    pub slack_app_token: Option<Secret>,
    pub slack_signing_secret: Option<Secret>,
    pub discord_token: Option<Secret>,
    pub discord_public_key: Option<Secret>,
    /// Token for the GitHub REST API (remediation: re-running failed jobs;
    /// evidence: the failing job's log).
    pub github_token: Option<Secret>,
    /// Token for the GitLab REST API (evidence: the failing job's trace;
    /// `read_api`). Not the webhook token.
    pub gitlab_api_token: Option<Secret>,
    /// The routing key of a PagerDuty Events API v2 integration.
    pub pagerduty_routing_key: Option<Secret>,
    /// The API key of an Opsgenie API integration.
    pub opsgenie_api_key: Option<Secret>,
}

/// (variable, the `[secrets]` key for its file, field accessor) for each secret.
type Slot = (
    &'static str,
    &'static str,
    fn(&mut Secrets) -> &mut Option<Secret>,
    fn(&SecretFiles) -> &str,
);

const SLOTS: [Slot; 15] = [
    (
        "PIPEMEDIC_INGEST_TOKEN",
        "secrets.ingest_token_file",
        |s| &mut s.ingest_token,
        |f| &f.ingest_token_file,
    ),
    (
        "PIPEMEDIC_READ_TOKEN",
        "secrets.read_token_file",
        |s| &mut s.read_token,
        |f| &f.read_token_file,
    ),
    (
        "PIPEMEDIC_ADMIN_TOKEN",
        "secrets.admin_token_file",
        |s| &mut s.admin_token,
        |f| &f.admin_token_file,
    ),
    (
        "PIPEMEDIC_GITHUB_WEBHOOK_SECRET",
        "secrets.github_webhook_secret_file",
        |s| &mut s.github_webhook_secret,
        |f| &f.github_webhook_secret_file,
    ),
    (
        "PIPEMEDIC_AWS_WEBHOOK_SECRET",
        "secrets.aws_webhook_secret_file",
        |s| &mut s.aws_webhook_secret,
        |f| &f.aws_webhook_secret_file,
    ),
    (
        "PIPEMEDIC_GITLAB_TOKEN",
        "secrets.gitlab_token_file",
        |s| &mut s.gitlab_token,
        |f| &f.gitlab_token_file,
    ),
    (
        "SLACK_BOT_TOKEN",
        "secrets.slack_bot_token_file",
        |s| &mut s.slack_bot_token,
        |f| &f.slack_bot_token_file,
    ),
    (
        "SLACK_APP_TOKEN",
        "secrets.slack_app_token_file",
        |s| &mut s.slack_app_token,
        |f| &f.slack_app_token_file,
    ),
    (
        "SLACK_SIGNING_SECRET",
        "secrets.slack_signing_secret_file",
        |s| &mut s.slack_signing_secret,
        |f| &f.slack_signing_secret_file,
    ),
    (
        "DISCORD_TOKEN",
        "secrets.discord_token_file",
        |s| &mut s.discord_token,
        |f| &f.discord_token_file,
    ),
    (
        "DISCORD_PUBLIC_KEY",
        "secrets.discord_public_key_file",
        |s| &mut s.discord_public_key,
        |f| &f.discord_public_key_file,
    ),
    (
        "GITHUB_TOKEN",
        "secrets.github_token_file",
        |s| &mut s.github_token,
        |f| &f.github_token_file,
    ),
    (
        "PIPEMEDIC_GITLAB_API_TOKEN",
        "secrets.gitlab_api_token_file",
        |s| &mut s.gitlab_api_token,
        |f| &f.gitlab_api_token_file,
    ),
    (
        "PIPEMEDIC_PAGERDUTY_ROUTING_KEY",
        "secrets.pagerduty_routing_key_file",
        |s| &mut s.pagerduty_routing_key,
        |f| &f.pagerduty_routing_key_file,
    ),
    (
        "PIPEMEDIC_OPSGENIE_API_KEY",
        "secrets.opsgenie_api_key_file",
        |s| &mut s.opsgenie_api_key,
        |f| &f.opsgenie_api_key_file,
    ),
];

impl Secrets {
    /// Resolves each secret: `VAR`, else the file named by `VAR_FILE`, else
    /// the file named in `[secrets]`. Unreadable or empty files are problems.
    pub fn resolve(files: &SecretFiles, env: &Env) -> Result<Self, Vec<ConfigProblem>> {
        let mut secrets = Secrets::default();
        let mut problems = Vec::new();
        for (var, file_key, field, file_of) in SLOTS {
            let file_var = format!("{var}_FILE");
            let value = if let Some(v) = env.get(var).filter(|v| !v.is_empty()) {
                Some(v.clone())
            } else if let Some(path) = env.get(&file_var).filter(|v| !v.is_empty()) {
                read_secret_file(path, &file_var, &mut problems)
            } else if !file_of(files).is_empty() {
                read_secret_file(file_of(files), file_key, &mut problems)
            } else {
                None
            };
            *field(&mut secrets) = value.map(Secret::new);
        }
        if problems.is_empty() {
            Ok(secrets)
        } else {
            Err(problems)
        }
    }

    /// Names of the secrets that are set, and of those that are not, for
    /// `config check` (values never shown).
    pub fn summary(&self) -> Vec<(&'static str, bool)> {
        let mut copy = self.clone();
        SLOTS
            .iter()
            .map(|(var, _, field, _)| (*var, field(&mut copy).is_some()))
            .collect()
    }
}

fn read_secret_file(path: &str, key: &str, problems: &mut Vec<ConfigProblem>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let value = text.trim_end_matches(['\n', '\r']).to_string();
            if value.is_empty() {
                problems.push(ConfigProblem {
                    key: key.to_string(),
                    message: format!("secret file {path} is empty"),
                });
                None
            } else {
                Some(value)
            }
        }
        Err(e) => {
            problems.push(ConfigProblem {
                key: key.to_string(),
                message: format!("cannot read secret file {path}: {e}"),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_then_file_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gh");
        std::fs::write(&path, "from-file\n").unwrap();
        let env: Env = [
            ("PIPEMEDIC_INGEST_TOKEN".to_string(), "tok-123".to_string()),
            (
                "PIPEMEDIC_GITHUB_WEBHOOK_SECRET_FILE".to_string(),
                path.display().to_string(),
            ),
        ]
        .into_iter()
        .collect();
        let s = Secrets::resolve(&SecretFiles::default(), &env).unwrap();
        assert_eq!(s.ingest_token.as_ref().unwrap().expose(), "tok-123");
        assert_eq!(
            s.github_webhook_secret.as_ref().unwrap().expose(),
            "from-file"
        );
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("tok-123") && !debug.contains("from-file"),
            "{debug}"
        );
        assert!(s.slack_bot_token.is_none());
    }

    #[test]
    fn github_token_from_its_file_variable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "ghp_example\n").unwrap();
        let env: Env = [("GITHUB_TOKEN_FILE".to_string(), path.display().to_string())]
            .into_iter()
            .collect();
        let s = Secrets::resolve(&SecretFiles::default(), &env).unwrap();
        assert_eq!(s.github_token.as_ref().unwrap().expose(), "ghp_example");
        assert!(!format!("{s:?}").contains("ghp_example"));
        assert!(s.summary().contains(&("GITHUB_TOKEN", true)));
    }

    #[test]
    fn read_and_admin_tokens_are_their_own_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin");
        std::fs::write(&path, "adm-file\n").unwrap();
        let env: Env = [
            ("PIPEMEDIC_READ_TOKEN".to_string(), "rd-123".to_string()),
            (
                "PIPEMEDIC_ADMIN_TOKEN_FILE".to_string(),
                path.display().to_string(),
            ),
        ]
        .into_iter()
        .collect();
        let s = Secrets::resolve(&SecretFiles::default(), &env).unwrap();
        assert_eq!(s.read_token.as_ref().unwrap().expose(), "rd-123");
        assert_eq!(s.admin_token.as_ref().unwrap().expose(), "adm-file");
        assert!(s.ingest_token.is_none());
        let summary = s.summary();
        assert!(summary.contains(&("PIPEMEDIC_READ_TOKEN", true)));
        assert!(summary.contains(&("PIPEMEDIC_ADMIN_TOKEN", true)));
        assert!(summary.contains(&("PIPEMEDIC_INGEST_TOKEN", false)));
        let debug = format!("{s:?}");
        assert!(!debug.contains("rd-123") && !debug.contains("adm-file"));
    }

    #[test]
    fn paging_keys_from_the_environment_or_files_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("og");
        std::fs::write(&path, "og-key-from-file\n").unwrap();
        let env: Env = [
            (
                "PIPEMEDIC_PAGERDUTY_ROUTING_KEY".to_string(),
                "pd-routing-key".to_string(),
            ),
            (
                "PIPEMEDIC_OPSGENIE_API_KEY_FILE".to_string(),
                path.display().to_string(),
            ),
        ]
        .into_iter()
        .collect();
        let s = Secrets::resolve(&SecretFiles::default(), &env).unwrap();
        assert_eq!(
            s.pagerduty_routing_key.as_ref().unwrap().expose(),
            "pd-routing-key"
        );
        assert_eq!(
            s.opsgenie_api_key.as_ref().unwrap().expose(),
            "og-key-from-file"
        );
        let debug = format!("{s:?}");
        assert!(!debug.contains("pd-routing-key") && !debug.contains("og-key-from-file"));
        assert!(s
            .summary()
            .contains(&("PIPEMEDIC_PAGERDUTY_ROUTING_KEY", true)));
        assert!(s.summary().contains(&("PIPEMEDIC_OPSGENIE_API_KEY", true)));
    }

    #[test]
    fn gitlab_api_token_is_apart_from_the_webhook_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gitlab-api");
        std::fs::write(&path, "glpat-from-file\n").unwrap();
        let files = SecretFiles {
            gitlab_api_token_file: path.display().to_string(),
            ..SecretFiles::default()
        };
        let env: Env = [(
            "PIPEMEDIC_GITLAB_TOKEN".to_string(),
            "webhook-token".to_string(),
        )]
        .into_iter()
        .collect();
        let s = Secrets::resolve(&files, &env).unwrap();
        assert_eq!(
            s.gitlab_api_token.as_ref().unwrap().expose(),
            "glpat-from-file"
        );
        assert_eq!(s.gitlab_token.as_ref().unwrap().expose(), "webhook-token");
        assert!(!format!("{s:?}").contains("glpat-from-file"));
        assert!(s.summary().contains(&("PIPEMEDIC_GITLAB_API_TOKEN", true)));
    }

    #[test]
    fn missing_files_are_problems_with_their_key() {
        let files = SecretFiles {
            gitlab_token_file: "/nonexistent/gitlab".into(),
            ..SecretFiles::default()
        };
        let problems = Secrets::resolve(&files, &Env::new()).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "secrets.gitlab_token_file");
    }
}
