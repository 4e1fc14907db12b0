//! Parsing one playbook: the raw YAML shapes, the per-file error collector
//! and [`parse_playbook`], which checks every field and builds a [`Playbook`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_norway::Value as Yaml;

use super::actions::action;
use super::fields::{approval, condition};
use super::front_matter::{split_front_matter, yaml_error};
use super::{LoadOptions, PlaybookError};
use crate::domain::{check_link_template, LinkTemplate};
use crate::playbooks::locate::{locate, path_segments};
use crate::playbooks::model::Playbook;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaybook {
    id: String,
    title: String,
    when: RawWhen,
    #[serde(default)]
    actions: Vec<RawAction>,
    #[serde(default)]
    approval: Option<Yaml>,
    /// Links shown on plans that use this playbook (a runbook, a
    /// dashboard), with incident facts filled in.
    #[serde(default)]
    links: Vec<LinkTemplate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCondition {
    pub(super) metric: Option<String>,
    pub(super) direction: Option<String>,
    pub(super) status: Option<String>,
    pub(super) stage: Option<String>,
    pub(super) pipeline: Option<String>,
    pub(super) log: Option<String>,
}

enum RawWhen {
    One(RawCondition),
    Any(Vec<RawCondition>),
}

impl<'de> Deserialize<'de> for RawWhen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WhenVisitor;
        impl<'de> Visitor<'de> for WhenVisitor {
            type Value = RawWhen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a condition mapping or a list of condition mappings")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawWhen, A::Error> {
                RawCondition::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawWhen::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawWhen, A::Error> {
                Vec::<RawCondition>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(RawWhen::Any)
            }
        }
        deserializer.deserialize_any(WhenVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAction {
    pub(super) id: String,
    pub(super) uses: String,
    #[serde(default)]
    pub(super) with: BTreeMap<String, Yaml>,
    pub(super) risk: Option<String>,
    pub(super) approval: Option<Yaml>,
    pub(super) delay: Option<String>,
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) flags: Vec<String>,
}

/// Collects errors for one file, placing each at its field's line.
pub(super) struct Errors<'a> {
    pub(super) file: &'a Path,
    pub(super) yaml: &'a str,
    pub(super) offset: usize,
    pub(super) list: Vec<PlaybookError>,
}

impl Errors<'_> {
    pub(super) fn push(&mut self, field: &str, message: impl Into<String>) {
        self.list.push(PlaybookError {
            file: self.file.to_path_buf(),
            line: locate(self.yaml, &path_segments(field)) + self.offset,
            field: field.to_string(),
            message: message.into(),
        });
    }
}

/// Parses and validates one playbook file; `file` names it in errors.
pub fn parse_playbook(
    file: &Path,
    text: &str,
    options: &LoadOptions,
) -> Result<Playbook, Vec<PlaybookError>> {
    let front = split_front_matter(text).map_err(|(line, message)| {
        vec![PlaybookError {
            file: file.to_path_buf(),
            line,
            field: "front matter".to_string(),
            message,
        }]
    })?;
    let raw: RawPlaybook =
        serde_norway::from_str(front.yaml).map_err(|e| vec![yaml_error(file, &front, &e)])?;
    let mut errors = Errors {
        file,
        yaml: front.yaml,
        offset: front.offset,
        list: Vec::new(),
    };

    if !valid_id(&raw.id) {
        errors.push(
            "id",
            format!(
                "`{}` is not a valid id: use 1 to 64 lowercase letters, digits and dashes",
                raw.id
            ),
        );
    }
    if raw.title.trim().is_empty() || raw.title.len() > 120 {
        errors.push("title", "must be 1 to 120 characters");
    }

    let when = match raw.when {
        RawWhen::One(c) => vec![("when".to_string(), c)],
        RawWhen::Any(list) => {
            if list.is_empty() {
                errors.push("when", "needs at least one condition");
            }
            list.into_iter()
                .enumerate()
                .map(|(i, c)| (format!("when[{i}]"), c))
                .collect()
        }
    };
    let mut conditions = Vec::new();
    for (path, raw) in when {
        if let Some(c) = condition(&path, raw, &mut errors) {
            conditions.push(c);
        }
    }

    let default_approval = raw
        .approval
        .as_ref()
        .and_then(|y| approval(y, "approval", &mut errors));
    let mut actions = Vec::new();
    let mut action_ids: HashMap<String, usize> = HashMap::new();
    for (i, raw) in raw.actions.into_iter().enumerate() {
        let path = format!("actions[{i}]");
        if !valid_id(&raw.id) {
            errors.push(
                &format!("{path}.id"),
                format!(
                    "`{}` is not a valid action id: use lowercase letters, digits and dashes",
                    raw.id
                ),
            );
        }
        if let Some(first) = action_ids.insert(raw.id.clone(), i) {
            errors.push(
                &format!("{path}.id"),
                format!(
                    "duplicate action id `{}` (also actions[{first}].id)",
                    raw.id
                ),
            );
        }
        if let Some(action) = action(&path, raw, default_approval.as_ref(), options, &mut errors) {
            actions.push(action);
        }
    }

    for (i, link) in raw.links.iter().enumerate() {
        if let Err((field, e)) = check_link_template(link) {
            errors.push(&format!("links[{i}].{field}"), e.to_string());
        }
    }

    if front.body.trim().is_empty() {
        errors.list.push(PlaybookError {
            file: file.to_path_buf(),
            line: front.body_line - 1,
            field: "body".to_string(),
            message: "the runbook text below the front matter is empty".to_string(),
        });
    }

    if errors.list.is_empty() {
        Ok(Playbook {
            id: raw.id,
            title: raw.title,
            when: conditions,
            actions,
            links: raw.links,
            body: front.body.trim().to_string(),
            file: file.to_path_buf(),
        })
    } else {
        Err(errors.list)
    }
}

/// 1 to 64 lowercase letters, digits and dashes, not starting with a dash.
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
