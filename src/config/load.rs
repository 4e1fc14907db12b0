//! Loading: built-in defaults, then the TOML file, then
//! `PIPEMEDIC_<SECTION>__<KEY>` environment variables, with unknown keys
//! and wrong types reported by key path ([`from_sources`], [`load`]); the
//! problem and error types every check reports with.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, Secrets};

/// A snapshot of environment variables.
pub type Env = BTreeMap<String, String>;

/// The process environment, read once.
pub fn process_env() -> Env {
    std::env::vars().collect()
}

/// Prefix of every configuration variable.
const ENV_PREFIX: &str = "PIPEMEDIC_";

/// Variables with the prefix that are not configuration keys.
const NON_CONFIG_VARS: [&str; 2] = ["PIPEMEDIC_CONFIG", "PIPEMEDIC_TEST_POSTGRES_URL"];

/// One configuration problem, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where: `server.listen`, `PIPEMEDIC_SERVER__LISTEN`, or the file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found while loading, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "configuration has {} problem{}:",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn single(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![ConfigProblem {
                key: key.into(),
                message: message.into(),
            }],
        }
    }
}

/// The effective configuration with the secrets it resolved and where the
/// file came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub secrets: Secrets,
    pub source: Option<PathBuf>,
}

/// Which file to read: `--config`, else `PIPEMEDIC_CONFIG`, else
/// `./pipemedic.toml` when it exists, else none (built-in defaults).
pub fn resolve_path(flag: Option<&Path>, env: &Env) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = env.get("PIPEMEDIC_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from("pipemedic.toml");
    local.exists().then_some(local)
}

/// Loads defaults, then the file (if any), then the environment; validates
/// everything and resolves secrets. Every problem is reported at once.
pub fn load(path: Option<&Path>, env: &Env) -> Result<Loaded, ConfigError> {
    let file_text = match path {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            ConfigError::single(p.display().to_string(), format!("cannot read: {e}"))
        })?),
        None => None,
    };
    let label = path.map(|p| p.display().to_string());
    let config = from_sources(file_text.as_deref(), label.as_deref(), env)?;
    let secrets =
        Secrets::resolve(&config.secrets, env).map_err(|problems| ConfigError { problems })?;
    Ok(Loaded {
        config,
        secrets,
        source: path.map(Path::to_path_buf),
    })
}

/// Builds the configuration from TOML text (if any) and the environment,
/// without touching the file system.
pub fn from_sources(
    file_text: Option<&str>,
    file_label: Option<&str>,
    env: &Env,
) -> Result<Config, ConfigError> {
    let defaults = toml::Value::try_from(Config::default())
        .map_err(|e| ConfigError::single("defaults", e.to_string()))?;
    let mut merged = defaults.clone();
    let mut problems = Vec::new();

    if let Some(text) = file_text {
        let label = file_label.unwrap_or("pipemedic.toml");
        match text.parse::<toml::Table>() {
            Ok(table) => {
                let value = toml::Value::Table(table);
                unknown_keys(&defaults, &value, "", &mut |key| {
                    problems.push(ConfigProblem {
                        key: key.to_string(),
                        message: format!("unknown key (in {label})"),
                    })
                });
                merge(&mut merged, value);
            }
            Err(e) => problems.push(ConfigProblem {
                key: label.to_string(),
                message: format!("not valid TOML: {}", e.message().trim()),
            }),
        }
    }

    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if NON_CONFIG_VARS.contains(&name.as_str()) || !rest.contains("__") {
            // Secrets (PIPEMEDIC_INGEST_TOKEN ...) and other single-word variables.
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let dotted = path.join(".");
        let Some(default_leaf) = lookup(&defaults, &path) else {
            problems.push(ConfigProblem {
                key: name.clone(),
                message: format!("unknown key {dotted}"),
            });
            continue;
        };
        match env_value(raw, default_leaf) {
            Ok(value) => set(&mut merged, &path, value),
            Err(message) => problems.push(ConfigProblem {
                key: name.clone(),
                message,
            }),
        }
    }

    // Deserialise section by section, so one bad section does not hide the others.
    let mut config = Config::default();
    if let toml::Value::Table(table) = &merged {
        for (section, value) in table {
            if let Err(p) = apply_section(&mut config, section, value.clone()) {
                problems.push(p);
            }
        }
    }
    problems.extend(config.validate());
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError { problems })
    }
}

fn apply_section(
    config: &mut Config,
    section: &str,
    value: toml::Value,
) -> Result<(), ConfigProblem> {
    fn parse<T: serde::de::DeserializeOwned>(
        section: &str,
        value: toml::Value,
    ) -> Result<T, ConfigProblem> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let inner = e.path().to_string();
            let key = if inner == "." || inner.is_empty() {
                section.to_string()
            } else {
                format!("{section}.{inner}")
            };
            ConfigProblem {
                key,
                message: e.into_inner().to_string(),
            }
        })
    }
    match section {
        "server" => config.server = parse(section, value)?,
        "store" => config.store = parse(section, value)?,
        "ingest" => config.ingest = parse(section, value)?,
        "codepipeline" => config.codepipeline = parse(section, value)?,
        "detector" => config.detector = parse(section, value)?,
        "planner" => config.planner = parse(section, value)?,
        "ask" => config.ask = parse(section, value)?,
        "incidents" => config.incidents = parse(section, value)?,
        "chat" => config.chat = parse(section, value)?,
        "slack" => config.slack = parse(section, value)?,
        "discord" => config.discord = parse(section, value)?,
        "github" => config.github = parse(section, value)?,
        "gitlab" => config.gitlab = parse(section, value)?,
        "aws" => config.aws = parse(section, value)?,
        "remediate" => config.remediate = parse(section, value)?,
        "approvals" => config.approvals = parse(section, value)?,
        "paging" => config.paging = parse(section, value)?,
        "secrets" => config.secrets = parse(section, value)?,
        "console" => config.console = parse(section, value)?,
        "evidence" => config.evidence = parse(section, value)?,
        // Unknown sections were already reported by `unknown_keys`.
        _ => {}
    }
    Ok(())
}

/// Reports every key of `given` that has no counterpart in `known`.
fn unknown_keys(
    known: &toml::Value,
    given: &toml::Value,
    prefix: &str,
    report: &mut impl FnMut(&str),
) {
    let (toml::Value::Table(known), toml::Value::Table(given)) = (known, given) else {
        return;
    };
    for (key, value) in given {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if path == "approvals.groups" || path == "approvals.identities" {
            // Group names and chat users are the user's own; their shape is
            // checked by validate().
            continue;
        }
        match known.get(key) {
            None => report(&path),
            Some(k) => unknown_keys(k, value, &path, report),
        }
    }
}

fn merge(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(base), toml::Value::Table(overlay)) => {
            for (k, v) in overlay {
                match base.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

fn lookup<'a>(value: &'a toml::Value, path: &[String]) -> Option<&'a toml::Value> {
    path.iter().try_fold(value, |v, key| v.as_table()?.get(key))
}

fn set(value: &mut toml::Value, path: &[String], leaf: toml::Value) {
    let mut cur = value;
    for key in &path[..path.len() - 1] {
        let toml::Value::Table(t) = cur else { return };
        cur = t
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    if let (toml::Value::Table(t), Some(last)) = (cur, path.last()) {
        t.insert(last.clone(), leaf);
    }
}

/// Interprets an environment value by the type of the key's default.
fn env_value(raw: &str, default: &toml::Value) -> Result<toml::Value, String> {
    let raw = raw.trim();
    Ok(match default {
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.parse()
                .map_err(|_| format!("expected an integer, got {raw:?}"))?,
        ),
        toml::Value::Float(_) => toml::Value::Float(
            raw.parse()
                .map_err(|_| format!("expected a number, got {raw:?}"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(format!("expected true or false, got {raw:?}")),
        }),
        toml::Value::Array(_) => {
            if raw.starts_with('[') {
                let t: toml::Table = format!("v = {raw}")
                    .parse()
                    .map_err(|_| format!("expected a TOML array, got {raw:?}"))?;
                t.get("v").cloned().unwrap_or(toml::Value::Array(vec![]))
            } else {
                toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_string()))
                        .collect(),
                )
            }
        }
        toml::Value::Table(_) => return Err("this key is a section; set its keys instead".into()),
        toml::Value::Datetime(_) => toml::Value::String(raw.to_string()),
    })
}
