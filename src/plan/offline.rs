//! The rule-based planner, used when no model is configured: it ranks the
//! matching playbooks and builds a plan from the best one's actions with
//! their default parameters, saying plainly that no model was involved.
//!
//! Matching playbooks are ranked by how well they fit, moved up or down by
//! their fixes' track record on the pipeline ([`record_bonus`]): a fix
//! that healed it before rises, one that did not falls, and one that did
//! not heal this same failure twice falls far.
//!
//! Deterministic and pure: the same incident, record and catalog always
//! give the same plan. Its plan goes through [`Plan::validate`] like any
//! other.

use std::collections::BTreeMap;

use super::types::{IncidentFacts, Plan, PlanError, PlanStep, ValidatedPlan};
use super::validate::resolve_step;
use crate::playbooks::{Catalog, ParamSetter, Playbook, PlaybookMatch, Risk};

/// Opening words of every rule-based summary.
const RULE_BASED: &str = "Rule-based plan (no language model)";

/// A rule-based plan, with the ranking it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflinePlan {
    pub plan: Plan,
    pub validated: ValidatedPlan,
    /// Matching playbooks, best first, with their scores.
    pub ranking: Vec<(String, f64)>,
}

/// Drafts a plan without a model.
pub fn offline_plan(
    catalog: &Catalog,
    facts: &IncidentFacts,
) -> Result<OfflinePlan, Vec<PlanError>> {
    let mut ranked: Vec<(f64, PlaybookMatch<'_>)> = catalog
        .matching(&facts.match_subject())
        .into_iter()
        .map(|m| (m.score + record_bonus(facts, m.playbook), m))
        .collect();
    // Stable: equal scores keep the matcher's order.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let ranking = ranked
        .iter()
        .map(|(score, m)| (m.playbook.id.clone(), *score))
        .collect();
    let matches: Vec<PlaybookMatch<'_>> = ranked.into_iter().map(|(_, m)| m).collect();
    let plan = draft(catalog, facts, &matches);
    let mut validated = plan.validate(catalog, facts)?;
    validated.rule_based = true;
    Ok(OfflinePlan {
        plan,
        validated,
        ranking,
    })
}

/// How much a playbook's record on the incident's pipeline moves it in
/// the ranking: half a point per heal, minus one per failure to heal (at
/// most two either way), and three less when one of its fixes did not heal
/// this same failure twice or more.
pub fn record_bonus(facts: &IncidentFacts, playbook: &Playbook) -> f64 {
    let signature = facts.signature();
    let mut healed = 0u32;
    let mut not_healed = 0u32;
    let mut repeated_failure = false;
    for action in &playbook.actions {
        if let Some(record) = facts.record_of(&playbook.id, &action.id) {
            healed += record.healed;
            not_healed += record.not_healed;
            repeated_failure |= record.not_healed_for(&signature) >= 2;
        }
    }
    let bonus = (f64::from(healed) * 0.5 - f64::from(not_healed)).clamp(-2.0, 2.0);
    if repeated_failure {
        bonus - 3.0
    } else {
        bonus
    }
}

fn confidence(score: f64) -> f64 {
    let c = (score / (score + 2.0)).min(0.9);
    (c * 100.0).round() / 100.0
}

fn draft(catalog: &Catalog, facts: &IncidentFacts, matches: &[PlaybookMatch<'_>]) -> Plan {
    let Some(top) = matches.first() else {
        return Plan {
            summary: format!(
                "{RULE_BASED}: no playbook matches this incident, so nothing is proposed."
            ),
            suspected_cause: "Unknown: no playbook's conditions fit this run. A person should look at the run's log and the commits since the last normal run.".to_string(),
            confidence: 0.0,
            steps: Vec::new(),
            risk: Risk::Low,
        };
    };
    // The best playbook that either prescribes no action on purpose or has
    // at least one action that can act on this incident.
    let mut skipped = Vec::new();
    for m in matches {
        let playbook = m.playbook;
        let mut steps = Vec::new();
        let mut risk = Risk::Low;
        for action in &playbook.actions {
            let Ok(resolved) = resolve_step(1, catalog, playbook, action, &BTreeMap::new(), facts)
            else {
                continue;
            };
            let params = action
                .kind
                .params()
                .iter()
                .filter(|p| p.setter == ParamSetter::Plan)
                .filter_map(|p| {
                    resolved
                        .params
                        .get(p.name)
                        .map(|v| (p.name.to_string(), v.clone()))
                })
                .collect();
            risk = risk.max(action.risk);
            steps.push(PlanStep {
                playbook: playbook.id.clone(),
                action: action.id.clone(),
                params,
                why: format!(
                    "{} (playbook `{}`: {}).",
                    action
                        .description
                        .clone()
                        .unwrap_or_else(|| action.kind.description().to_string())
                        .trim_end_matches('.'),
                    playbook.id,
                    m.reasons.join("; ")
                ),
            });
        }
        if playbook.actions.is_empty() {
            return explain_only(facts, m, &skipped);
        }
        if steps.is_empty() {
            skipped.push(playbook.id.clone());
            continue;
        }
        let names: Vec<&str> = steps.iter().map(|s| s.action.as_str()).collect();
        return Plan {
            summary: format!(
                "{RULE_BASED}: playbook `{}` ({}) fits best; proposed: {}.",
                playbook.id,
                playbook.title,
                names.join(", then ")
            ),
            suspected_cause: format!(
                "{}: {}.{}{}",
                playbook.title,
                m.reasons.join("; "),
                log_quote(facts),
                skipped_note(&skipped)
            ),
            confidence: confidence(m.score),
            steps,
            risk,
        };
    }
    Plan {
        summary: format!(
            "{RULE_BASED}: playbook `{}` ({}) fits best, but none of the matching playbooks' actions can act on this incident, so nothing is proposed.",
            top.playbook.id, top.playbook.title
        ),
        suspected_cause: format!("{}: {}.", top.playbook.title, top.reasons.join("; ")),
        confidence: confidence(top.score),
        steps: Vec::new(),
        risk: Risk::Low,
    }
}

/// Longest log line quoted in a suspected cause.
const MAX_QUOTE_CHARS: usize = 240;

/// The log's most telling error line, quoted (` The log says: "…".`), or
/// nothing when the run has no log excerpt or no line looks like an error.
fn log_quote(facts: &IncidentFacts) -> String {
    facts
        .log_excerpt
        .as_deref()
        .and_then(crate::domain::most_relevant_line)
        .map(|line| {
            let line = crate::domain::truncate(&line.replace(['"', '`'], "'"), MAX_QUOTE_CHARS);
            format!(" The log says: \"{line}\".")
        })
        .unwrap_or_default()
}

fn skipped_note(skipped: &[String]) -> String {
    if skipped.is_empty() {
        String::new()
    } else {
        format!(
            " Better-ranked playbooks with no action applicable here: {}.",
            skipped.join(", ")
        )
    }
}

/// A playbook that prescribes no action: explain, and point at the commits
/// since the last normal run.
fn explain_only(facts: &IncidentFacts, m: &PlaybookMatch<'_>, skipped: &[String]) -> Plan {
    let commits = match (&facts.last_normal, &facts.commit) {
        (Some(last), Some(commit)) => match &last.commit {
            Some(from) => format!(
                " Look at the commits since the last normal run {} ({from}..{commit}).",
                last.run_id
            ),
            None => format!(
                " Look at the commits since the last normal run {} up to {commit}.",
                last.run_id
            ),
        },
        (Some(last), None) => format!(
            " Look at the commits since the last normal run {}.",
            last.run_id
        ),
        (None, Some(commit)) => format!(
            " No normal run is on record; start from commit {commit} and the ones before it."
        ),
        (None, None) => " No normal run is on record to compare with.".to_string(),
    };
    Plan {
        summary: format!(
            "{RULE_BASED}: playbook `{}` ({}) fits best; it prescribes no automatic action.{commits}",
            m.playbook.id, m.playbook.title
        ),
        suspected_cause: format!(
            "{}: {}.{}{}",
            m.playbook.title,
            m.reasons.join("; "),
            log_quote(facts),
            skipped_note(skipped)
        ),
        confidence: confidence(m.score),
        steps: Vec::new(),
        risk: Risk::Low,
    }
}
