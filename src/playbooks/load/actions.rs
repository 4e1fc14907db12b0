//! Field validation for actions: `uses`, risk, approval, delay and each
//! parameter against its declared type.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use serde_norway::Value as Yaml;

use super::fields::{approval, parse_delay, yaml_kind};
use super::parse::{Errors, RawAction};
use super::LoadOptions;
use crate::playbooks::locate::{locate, path_segments};
use crate::playbooks::model::{
    escape_for, leading_fact, render_template_escaped, sample_template_context, url_allowed,
    ActionDecl, ActionKind, ApprovalPolicy, AutoAfter, ParamSpec, ParamType, Risk, TemplateEscape,
    TEMPLATE_FACTS,
};

const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);
const SHELLS: [&str; 10] = [
    "sh",
    "bash",
    "zsh",
    "dash",
    "ksh",
    "fish",
    "csh",
    "tcsh",
    "pwsh",
    "powershell",
];

pub(super) fn action(
    path: &str,
    raw: RawAction,
    default_approval: Option<&ApprovalPolicy>,
    options: &LoadOptions,
    errors: &mut Errors<'_>,
) -> Option<ActionDecl> {
    let before = errors.list.len();
    let kind = ActionKind::parse(&raw.uses);
    if kind.is_none() {
        let known: Vec<&str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
        errors.push(
            &format!("{path}.uses"),
            format!(
                "unknown action kind `{}`; known kinds: {}",
                raw.uses,
                known.join(", ")
            ),
        );
    }
    let risk = match raw.risk.as_deref() {
        None => {
            errors.push(&format!("{path}.risk"), "missing: low or high");
            None
        }
        Some(r) => match Risk::parse(r) {
            Some(risk) => Some(risk),
            None => {
                errors.push(
                    &format!("{path}.risk"),
                    format!("`{r}` is not a risk level: use low or high"),
                );
                None
            }
        },
    };
    let own_approval = raw
        .approval
        .as_ref()
        .and_then(|y| approval(y, &format!("{path}.approval"), errors));
    let delay = match raw.delay.as_deref() {
        None => None,
        Some(d) => match parse_delay(d) {
            Some(delay) if delay <= MAX_DELAY => Some(delay),
            _ => {
                errors.push(
                    &format!("{path}.delay"),
                    format!("`{d}` is not a delay: use a number with s, m or h, at most 24h"),
                );
                None
            }
        },
    };
    let mut with = BTreeMap::new();
    if let Some(kind) = kind {
        for (name, value) in &raw.with {
            let field = format!("{path}.with.{name}");
            let Some(spec) = kind.param(name) else {
                let accepted: Vec<&str> = kind.params().iter().map(|p| p.name).collect();
                errors.push(
                    &field,
                    format!(
                        "`{}` takes no parameter `{name}`; it accepts: {}",
                        kind,
                        if accepted.is_empty() {
                            "none".to_string()
                        } else {
                            accepted.join(", ")
                        }
                    ),
                );
                continue;
            };
            if let Some(v) = param_value(kind, spec, value, &field, options, errors) {
                with.insert(name.clone(), v);
            }
        }
        for spec in kind.params() {
            if spec.required && spec.default.is_none() && !raw.with.contains_key(spec.name) {
                errors.push(
                    &format!("{path}.with"),
                    format!(
                        "`{}` needs parameter `{}` ({})",
                        kind, spec.name, spec.description
                    ),
                );
            }
        }
    }
    if let Some(kind) = kind {
        flag_checks(path, kind, &raw, errors);
    }
    let auto_after = raw
        .auto_after
        .as_ref()
        .and_then(|y| auto_after(y, &format!("{path}.auto_after"), risk, errors));
    let (kind, risk) = (kind?, risk?);
    let approval = own_approval
        .or_else(|| default_approval.cloned())
        .unwrap_or_else(|| ApprovalPolicy::for_risk(risk));
    if approval == ApprovalPolicy::None && risk != Risk::Low {
        let field = if raw.approval.is_some() {
            format!("{path}.approval")
        } else {
            "approval".to_string()
        };
        errors.push(
            &field,
            format!(
                "`approval: none` is allowed only for low-risk actions; `{}` is {risk} risk",
                raw.id
            ),
        );
    }
    (errors.list.len() == before).then(|| ActionDecl {
        line: locate(errors.yaml, &path_segments(path)) + errors.offset,
        id: raw.id,
        kind,
        with,
        risk,
        approval,
        delay,
        description: raw.description,
        flags: raw.flags,
        auto_after,
    })
}

/// Most heals `auto_after` may ask for.
const MAX_AUTO_AFTER_HEALED: u64 = 1000;

/// `auto_after: {healed: N, rate: R}`: N whole heals (1 to 1000) and a
/// rate in (0, 1]; only on a low-risk action.
fn auto_after(
    value: &Yaml,
    field: &str,
    risk: Option<Risk>,
    errors: &mut Errors<'_>,
) -> Option<AutoAfter> {
    let Some(map) = value.as_mapping() else {
        errors.push(
            field,
            format!(
                "expected a mapping like {{healed: 5, rate: 0.9}}, found {}",
                yaml_kind(value)
            ),
        );
        return None;
    };
    let before = errors.list.len();
    for key in map.keys() {
        match key.as_str() {
            Some("healed" | "rate") => {}
            Some(other) => errors.push(
                &format!("{field}.{other}"),
                format!("unknown key `{other}`; auto_after takes healed and rate"),
            ),
            None => errors.push(field, "keys must be healed and rate"),
        }
    }
    let healed = match map.get("healed") {
        None => {
            errors.push(
                field,
                "missing `healed`: how many heals earn autonomy (1 to 1000)",
            );
            None
        }
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_AUTO_AFTER_HEALED).contains(&n) => u32::try_from(n).ok(),
            _ => {
                errors.push(
                    &format!("{field}.healed"),
                    format!(
                        "expected a whole number 1 to {MAX_AUTO_AFTER_HEALED}, found {}",
                        yaml_text(v)
                    ),
                );
                None
            }
        },
    };
    let rate = match map.get("rate") {
        None => {
            errors.push(
                field,
                "missing `rate`: the share of verified runs that must have healed, in (0, 1]",
            );
            None
        }
        Some(v) => match v.as_f64() {
            Some(r) if r > 0.0 && r <= 1.0 => Some(r),
            _ => {
                errors.push(
                    &format!("{field}.rate"),
                    format!(
                        "expected a number greater than 0 and at most 1, found {}",
                        yaml_text(v)
                    ),
                );
                None
            }
        },
    };
    if risk == Some(Risk::High) {
        errors.push(
            field,
            "only low-risk actions may earn autonomy; this action is high risk",
        );
    }
    if errors.list.len() != before {
        return None;
    }
    Some(AutoAfter {
        healed: healed?,
        rate: rate?,
    })
}

fn yaml_text(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => format!("`{s}`"),
        Yaml::Number(n) => n.to_string(),
        other => yaml_kind(other).to_string(),
    }
}

/// `flags:` names incident facts that start an argument of a `shell`
/// action's `argv`; other actions take no flags.
fn flag_checks(path: &str, kind: ActionKind, raw: &RawAction, errors: &mut Errors<'_>) {
    if raw.flags.is_empty() {
        return;
    }
    let field = format!("{path}.flags");
    if kind != ActionKind::Shell {
        errors.push(
            &field,
            format!("only `shell` actions take flags; `{kind}` does not"),
        );
        return;
    }
    let leading: Vec<&str> = raw
        .with
        .get("argv")
        .and_then(Yaml::as_sequence)
        .map(|items| {
            items
                .iter()
                .filter_map(Yaml::as_str)
                .filter_map(leading_fact)
                .collect()
        })
        .unwrap_or_default();
    for (i, fact) in raw.flags.iter().enumerate() {
        if !TEMPLATE_FACTS.contains(&fact.as_str()) {
            errors.push(
                &format!("{field}[{i}]"),
                format!(
                    "`{fact}` is not an incident fact; use one of {}",
                    TEMPLATE_FACTS.join(", ")
                ),
            );
        } else if !leading.contains(&fact.as_str()) {
            errors.push(
                &format!("{field}[{i}]"),
                format!("no argument of `argv` starts with `{{{{{fact}}}}}`, so `{fact}` cannot fill a flag"),
            );
        }
    }
}

/// Checks one `with:` value against its schema and returns it as JSON.
fn param_value(
    kind: ActionKind,
    spec: &ParamSpec,
    value: &Yaml,
    field: &str,
    options: &LoadOptions,
    errors: &mut Errors<'_>,
) -> Option<Value> {
    let expected = |errors: &mut Errors<'_>, what: &str| {
        let hint = if matches!(value, Yaml::Mapping(_)) && what.contains("string") {
            "; quote templates: \"{{stage}}\""
        } else {
            ""
        };
        errors.push(
            field,
            format!("expected {what}, found {}{hint}", yaml_kind(value)),
        );
        None
    };
    let sample = sample_template_context();
    let check_template = |errors: &mut Errors<'_>, field: &str, s: &str| -> Option<String> {
        match render_template_escaped(s, &sample, escape_for(kind, spec, s)) {
            Ok(rendered) => Some(rendered),
            Err(msg) => {
                errors.push(field, format!("template does not render: {msg}"));
                None
            }
        }
    };
    match spec.ty {
        ParamType::String => {
            let Some(s) = value.as_str() else {
                return expected(errors, "a string");
            };
            let rendered = check_template(errors, field, s)?;
            if escape_for(kind, spec, s) == TemplateEscape::JsonString
                && serde_json::from_str::<Value>(&rendered).is_err()
            {
                errors.push(field, "looks like JSON but is not valid JSON once rendered");
                return None;
            }
            Some(Value::from(s))
        }
        ParamType::Enum(allowed) => {
            let Some(s) = value.as_str() else {
                return expected(errors, &format!("a string, one of {}", allowed.join(", ")));
            };
            if allowed.contains(&s) {
                Some(Value::from(s))
            } else {
                errors.push(
                    field,
                    format!("`{s}` is not allowed; use one of {}", allowed.join(", ")),
                );
                None
            }
        }
        ParamType::Bool => match value.as_bool() {
            Some(b) => Some(Value::Bool(b)),
            None => expected(errors, "a boolean (true or false)"),
        },
        ParamType::Integer { min, max } => match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => Some(Value::from(n)),
            Some(n) => {
                errors.push(field, format!("{n} is out of range {min}..={max}"));
                None
            }
            None => expected(errors, &format!("an integer {min}..={max}")),
        },
        ParamType::Url => {
            let Some(s) = value.as_str() else {
                return expected(errors, "a URL string");
            };
            if let Err(msg) = url_allowed(s, &options.http_allowed_hosts) {
                errors.push(field, msg);
                return None;
            }
            let rendered = check_template(errors, field, s)?;
            if let Err(msg) = url_allowed(&rendered, &options.http_allowed_hosts) {
                errors.push(field, msg);
                return None;
            }
            Some(Value::from(s))
        }
        ParamType::StringList | ParamType::EnvNames => {
            let Some(list) = value.as_sequence() else {
                return expected(errors, "a list of strings");
            };
            let mut out = Vec::new();
            for (i, item) in list.iter().enumerate() {
                let item_field = format!("{field}[{i}]");
                let Some(s) = item.as_str() else {
                    errors.push(
                        &item_field,
                        format!("expected a string, found {}", yaml_kind(item)),
                    );
                    continue;
                };
                if spec.ty == ParamType::EnvNames {
                    let ok = s
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                        && s.chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                    if !ok {
                        errors.push(
                            &item_field,
                            format!("`{s}` is not an environment variable name (A-Z, 0-9, _)"),
                        );
                        continue;
                    }
                } else if check_template(errors, &item_field, s).is_none() {
                    continue;
                }
                out.push(Value::from(s));
            }
            if spec.name == "argv" {
                argv_checks(list, field, errors);
            }
            Some(Value::Array(out))
        }
    }
}

fn argv_checks(list: &[Yaml], field: &str, errors: &mut Errors<'_>) {
    let Some(program) = list.first().and_then(Yaml::as_str) else {
        if list.is_empty() {
            errors.push(field, "needs at least the program to run");
        }
        return;
    };
    if program.contains("{{") {
        errors.push(
            &format!("{field}[0]"),
            "the program must be written out, not templated",
        );
    }
    let base = program.rsplit('/').next().unwrap_or(program);
    if SHELLS.contains(&base) {
        errors.push(
            &format!("{field}[0]"),
            format!("`{program}` is a shell; write the command itself as argv, without a shell"),
        );
    }
}
