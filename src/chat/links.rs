//! Links on alert cards: the link templates of a pipeline's chat route
//! (and of the playbooks a plan uses) rendered with the incident's facts
//! into [`ChatLink`]s. The facts are the pipeline, the incident id, the
//! latest abnormal run's id, stage and commit, and a time window as epoch
//! milliseconds for dashboards (`from_ms`: an hour before the run started;
//! `to_ms`: 15 minutes after it finished or the incident was last
//! updated). Templates were checked when the configuration or playbooks
//! loaded; one that still fails to render is left out and logged.

use chrono::Duration;

use crate::chat::ChatLink;
use crate::domain::{render_link, Incident, LinkFacts, LinkTemplate};

/// How far before the run the dashboard window starts.
const WINDOW_BEFORE: Duration = Duration::hours(1);
/// How far after the run (or the incident's last update) it ends.
const WINDOW_AFTER: Duration = Duration::minutes(15);

/// The facts of `incident` that link templates may name.
pub fn incident_facts(incident: &Incident) -> LinkFacts {
    let run = &incident.latest_run;
    let start = run.started_at.unwrap_or(incident.opened_at);
    let end = run.finished_at.unwrap_or(incident.updated_at).max(start);
    let mut facts = LinkFacts::new();
    facts.insert("pipeline", incident.pipeline.clone());
    facts.insert("incident", incident.id.to_string());
    facts.insert("run_id", run.run_id.clone());
    facts.insert("stage", run.stage.clone().unwrap_or_default());
    facts.insert("commit", run.commit.clone().unwrap_or_default());
    facts.insert(
        "from_ms",
        (start - WINDOW_BEFORE).timestamp_millis().to_string(),
    );
    facts.insert("to_ms", (end + WINDOW_AFTER).timestamp_millis().to_string());
    facts
}

/// `templates` rendered with `incident`'s facts, in order.
pub fn render(templates: &[LinkTemplate], incident: &Incident) -> Vec<ChatLink> {
    let facts = incident_facts(incident);
    templates
        .iter()
        .filter_map(|t| match render_link(&t.url, &facts) {
            Ok(url) => Some(ChatLink {
                label: t.label.clone(),
                url,
            }),
            Err(e) => {
                tracing::warn!(incident_id = incident.id, label = %t.label, error = %e, "Link template left out.");
                None
            }
        })
        .collect()
}
