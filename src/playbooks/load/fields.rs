//! Field validation for `when` conditions and approval policies, plus the
//! shared YAML and delay helpers.

use std::time::Duration;

use globset::{Glob, GlobMatcher};
use regex::RegexBuilder;
use serde_norway::Value as Yaml;

use super::parse::{Errors, RawCondition};
use crate::domain::{Direction, RunStatus};
use crate::playbooks::model::{ApprovalPolicy, Condition};

const MAX_REGEX_SIZE: usize = 1 << 20;
const MAX_APPROVERS: u32 = 10;

fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid glob `{pattern}`: {}", e.kind()))
}

pub(super) fn condition(
    path: &str,
    raw: RawCondition,
    errors: &mut Errors<'_>,
) -> Option<Condition> {
    let before = errors.list.len();
    if raw.metric.is_none()
        && raw.status.is_none()
        && raw.stage.is_none()
        && raw.pipeline.is_none()
        && raw.log.is_none()
    {
        errors.push(
            path,
            "a condition needs at least one of metric, status, stage, pipeline, log",
        );
    }
    let mut field_glob = |name: &str, value: Option<String>| -> Option<(String, GlobMatcher)> {
        let value = value?;
        match glob(&value) {
            Ok(m) if !value.trim().is_empty() => Some((value, m)),
            Ok(_) => {
                errors.push(&format!("{path}.{name}"), "must not be empty");
                None
            }
            Err(msg) => {
                errors.push(&format!("{path}.{name}"), msg);
                None
            }
        }
    };
    let metric = field_glob("metric", raw.metric);
    let stage = field_glob("stage", raw.stage);
    let pipeline = field_glob("pipeline", raw.pipeline);
    let direction = match raw.direction.as_deref() {
        None => None,
        Some("up") => Some(Direction::Up),
        Some("down") => Some(Direction::Down),
        Some(other) => {
            errors.push(
                &format!("{path}.direction"),
                format!("`{other}` is not a direction: use up or down"),
            );
            None
        }
    };
    if raw.direction.is_some() && metric.is_none() && errors.list.len() == before {
        errors.push(
            &format!("{path}.direction"),
            "direction needs a metric in the same condition",
        );
    }
    let status = match raw.status.as_deref() {
        None => None,
        Some(s) => match [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
            RunStatus::Running,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        {
            Some(st) => Some(st),
            None => {
                errors.push(
                    &format!("{path}.status"),
                    format!(
                        "`{s}` is not a run status: use succeeded, failed, cancelled or running"
                    ),
                );
                None
            }
        },
    };
    let log = match raw.log {
        None => None,
        Some(pattern) => match RegexBuilder::new(&pattern)
            .size_limit(MAX_REGEX_SIZE)
            .build()
        {
            Ok(re) => Some(re),
            Err(e) => {
                let msg = e.to_string();
                let last = msg.lines().last().unwrap_or_default().trim();
                let last = last.strip_prefix("error: ").unwrap_or(last).to_string();
                errors.push(
                    &format!("{path}.log"),
                    format!("invalid regular expression: {last}"),
                );
                None
            }
        },
    };
    (errors.list.len() == before).then_some(Condition {
        metric,
        direction,
        status,
        stage,
        pipeline,
        log,
    })
}

pub(super) fn approval(y: &Yaml, path: &str, errors: &mut Errors<'_>) -> Option<ApprovalPolicy> {
    match y {
        Yaml::String(s) if s == "none" => Some(ApprovalPolicy::None),
        Yaml::Mapping(map) => {
            let before = errors.list.len();
            let mut required = None;
            let mut from = Vec::new();
            for (k, v) in map {
                match k.as_str() {
                    Some("required") => match v.as_u64() {
                        Some(n) if (1..=u64::from(MAX_APPROVERS)).contains(&n) => {
                            required = u32::try_from(n).ok();
                        }
                        _ => errors.push(
                            &format!("{path}.required"),
                            format!("must be a whole number from 1 to {MAX_APPROVERS}"),
                        ),
                    },
                    Some("from") => match v.as_sequence() {
                        Some(list) => {
                            for (i, item) in list.iter().enumerate() {
                                match item.as_str() {
                                    Some(s) if approver_ok(s) => from.push(s.to_string()),
                                    _ => errors.push(
                                        &format!("{path}.from[{i}]"),
                                        "must be `group:NAME` or `user:ID`",
                                    ),
                                }
                            }
                        }
                        None => errors.push(
                            &format!("{path}.from"),
                            "must be a list of `group:NAME` or `user:ID`",
                        ),
                    },
                    _ => errors.push(
                        path,
                        format!(
                            "unknown field `{}`: approval takes required and from",
                            yaml_key(k)
                        ),
                    ),
                }
            }
            let Some(required) = required else {
                if errors.list.len() == before {
                    errors.push(path, "missing field `required`");
                }
                return None;
            };
            let all_users = !from.is_empty() && from.iter().all(|f| f.starts_with("user:"));
            if all_users && from.len() < required as usize {
                errors.push(
                    &format!("{path}.required"),
                    format!(
                        "{required} approvals can never come from {} listed user(s)",
                        from.len()
                    ),
                );
            }
            (errors.list.len() == before).then_some(ApprovalPolicy::Required { required, from })
        }
        _ => {
            errors.push(
                path,
                "must be `none` or a mapping `{ required: N, from: [...] }`",
            );
            None
        }
    }
}

fn approver_ok(s: &str) -> bool {
    let rest = s.strip_prefix("group:").or_else(|| s.strip_prefix("user:"));
    rest.is_some_and(|r| !r.is_empty() && !r.chars().any(char::is_whitespace))
}

fn yaml_key(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

pub(super) fn yaml_kind(y: &Yaml) -> &'static str {
    match y {
        Yaml::Null => "null",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

pub(super) fn parse_delay(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = raw.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse() {
        assert_eq!(parse_delay("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_delay("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_delay("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_delay("soon"), None);
        assert_eq!(parse_delay("5d"), None);
    }
}
