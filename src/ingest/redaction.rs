//! Secrets out of every run before it is stored: the free text a CI
//! system sends (log excerpt, commit message and author, stage and job
//! names, links) goes through the [`Redactor`], and what was hidden is
//! counted in `pipemedic_redactions_total{kind}`.
//!
//! [`super::store_runs`] applies it to every run of every source, so no
//! answer, card, page, export, log or prompt built from the store can show
//! a secret a CI job printed. Identities (pipeline, run id, commit SHA) and
//! numbers are left as they are.

use std::sync::Arc;

use super::aws::ExecutionAssembly;
use crate::domain::Run;
use crate::metrics::Metrics;
use crate::redact::{Redactor, Tally};

/// The redactor ingest applies, with the metrics it counts into.
#[derive(Clone)]
pub struct RunRedaction {
    redactor: Arc<Redactor>,
    metrics: Arc<Metrics>,
}

impl RunRedaction {
    pub fn new(redactor: Arc<Redactor>, metrics: Arc<Metrics>) -> Self {
        Self { redactor, metrics }
    }

    /// Hides the secrets in each run's free text, in place, and counts them.
    /// Idempotent: a run redacted before comes out unchanged.
    pub fn apply(&self, runs: &mut [Run]) {
        let mut tally = Tally::default();
        for run in runs.iter_mut() {
            redact_run(&self.redactor, run, &mut tally);
        }
        for (kind, n) in tally.iter() {
            self.metrics.redactions(kind, n);
        }
    }
}

impl RunRedaction {
    /// Hides the secrets in the free text of a CodePipeline execution being
    /// assembled from EventBridge events, before it is kept in the ingest
    /// state, and counts them.
    pub fn apply_to_assembly(&self, assembly: &mut ExecutionAssembly) {
        let mut tally = Tally::default();
        for value in assembly.free_text_mut() {
            if let std::borrow::Cow::Owned(hidden) = self.redactor.redact_tally(value, &mut tally) {
                *value = hidden;
            }
        }
        for (kind, n) in tally.iter() {
            self.metrics.redactions(kind, n);
        }
    }
}

/// Redacts the free-text fields of one run.
pub fn redact_run(redactor: &Redactor, run: &mut Run, tally: &mut Tally) {
    let mut field = |value: &mut String| {
        if let std::borrow::Cow::Owned(hidden) = redactor.redact_tally(value, tally) {
            *value = hidden;
        }
    };
    for value in [
        run.stage.as_mut(),
        run.commit_message.as_mut(),
        run.commit_author.as_mut(),
        run.log_excerpt.as_mut(),
        run.log_url.as_mut(),
        run.url.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        field(value);
    }
    for stage in &mut run.stages {
        field(&mut stage.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RunStatus, StageTiming};

    #[test]
    fn every_free_text_field_is_redacted_and_identities_kept() {
        let redactor = Redactor::builtin().expect("compiles");
        let token = "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";
        let sha = "3f786850e387550fdab836ed7e6dc881de23001b";
        let mut run = Run {
            pipeline: "leaky-service".into(),
            run_id: "8f1c".into(),
            status: RunStatus::Failed,
            started_at: None,
            finished_at: None,
            stage: Some(format!("Deploy {token}")),
            commit: Some(sha.into()),
            commit_author: Some("Mona Lisa".into()),
            commit_author_email: Some("mona@example.com".into()),
            commit_author_login: Some("octocat".into()),
            commit_message: Some("oops DB_PASS=hunter22 committed".into()),
            attempt: 1,
            tests: None,
            resources: None,
            deploy: None,
            metrics: Default::default(),
            stages: vec![StageTiming {
                job_id: None,
                name: "Build AKIAIOSFODNN7EXAMPLE".into(),
                status: None,
                started_at: None,
                finished_at: None,
            }],
            log_excerpt: Some(format!("push with {token} at {sha}")),
            log_url: Some("https://ci:p@ss/word@ci.example.com/logs/1".into()),
            url: Some("https://ci.example.com/runs/1?token=abc123".into()),
        };
        let mut tally = Tally::default();
        redact_run(&redactor, &mut run, &mut tally);
        let text = serde_json::to_string(&run).expect("serialises");
        for secret in [
            token,
            "hunter22",
            "AKIAIOSFODNN7EXAMPLE",
            "p@ss/word",
            "abc123",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(run.pipeline, "leaky-service");
        assert_eq!(run.run_id, "8f1c");
        assert_eq!(run.commit.as_deref(), Some(sha));
        assert!(run.log_excerpt.as_deref().is_some_and(|l| l.ends_with(sha)));
        assert_eq!(run.commit_author.as_deref(), Some("Mona Lisa"));
        assert_eq!(tally.total(), 6);
        // A second pass finds nothing more.
        let again = run.clone();
        let mut second = Tally::default();
        redact_run(&redactor, &mut run, &mut second);
        assert_eq!(run, again);
        assert!(second.is_empty());
    }
}
