//! The AWS permissions pipemedic needs, collected in one place: every
//! module that calls AWS declares its grants beside its calls (`IAM`
//! constants in `remediate::codepipeline`, `ingest::codepipeline_poll`,
//! `bedrock`, `scoring::sagemaker`, `scoring::export` and `evidence`); this module groups them by the
//! feature that turns them on ([`Feature`]), one least-privilege policy
//! file each under `deploy/aws/`.
//!
//! `tests/deploy.rs` checks that each policy file grants exactly its
//! feature's grants, no more and no less, so a new AWS call cannot ship
//! without its permission, and a permission cannot outlive its call. This
//! module only lists; it must not call AWS.

use std::collections::BTreeSet;

use crate::aws::iam::IamGrant;
use crate::config::{AskBackend, Config, DetectorBackend, PlannerBackend};

/// Something pipemedic does that needs AWS permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// Reading pipeline history (`codepipeline.poll_pipelines`).
    CodePipelinePolling,
    /// Running approved `codepipeline.*` playbook actions.
    CodePipelineRemediation,
    /// Drafting plans or answering questions with a Bedrock model
    /// (`planner.backend` or `ask.backend` = `bedrock`).
    Bedrock,
    /// Scoring runs with a SageMaker RCF endpoint (`detector.backend` =
    /// `sagemaker`).
    SageMakerDetector,
    /// Exporting history for training the SageMaker model
    /// (`pipemedic export --to s3://BUCKET/PREFIX`).
    SageMakerExport,
    /// Reading a failing CodeBuild build's log and its CPU and memory for
    /// an abnormal run (`[evidence]`).
    CiEvidence,
}

impl Feature {
    pub const ALL: [Feature; 6] = [
        Self::CodePipelinePolling,
        Self::CodePipelineRemediation,
        Self::Bedrock,
        Self::SageMakerDetector,
        Self::SageMakerExport,
        Self::CiEvidence,
    ];

    /// The grants the feature's calls need, each once.
    pub fn grants(self) -> BTreeSet<IamGrant> {
        match self {
            Self::CodePipelinePolling => crate::ingest::codepipeline_poll::IAM
                .iter()
                .copied()
                .collect(),
            Self::CodePipelineRemediation => crate::remediate::codepipeline::IAM
                .iter()
                .map(|(_, grant)| *grant)
                .collect(),
            Self::Bedrock => crate::bedrock::IAM.iter().copied().collect(),
            Self::SageMakerDetector => crate::scoring::sagemaker::IAM.iter().copied().collect(),
            Self::SageMakerExport => crate::scoring::export::IAM.iter().copied().collect(),
            Self::CiEvidence => crate::evidence::IAM.iter().copied().collect(),
        }
    }

    /// The feature's policy file, relative to the repository.
    pub fn policy_file(self) -> &'static str {
        match self {
            Self::CodePipelinePolling => "deploy/aws/iam-codepipeline-poll.json",
            Self::CodePipelineRemediation => "deploy/aws/iam-codepipeline-remediate.json",
            Self::Bedrock => "deploy/aws/iam-bedrock.json",
            Self::SageMakerDetector => "deploy/aws/iam-sagemaker.json",
            Self::SageMakerExport => "deploy/aws/iam-export.json",
            Self::CiEvidence => "deploy/aws/iam-ci-evidence.json",
        }
    }

    /// Whether `config` turns the feature on. Remediation is on whenever
    /// a playbook declares a `codepipeline.*` action, which the
    /// configuration alone does not say, so it is reported as on. The
    /// export is run by hand, to feed the SageMaker backend, so it goes
    /// with that backend.
    pub fn enabled_by(self, config: &Config) -> bool {
        match self {
            Self::CodePipelinePolling => !config.codepipeline.poll_pipelines.is_empty(),
            Self::CodePipelineRemediation => true,
            Self::Bedrock => {
                config.planner.backend == PlannerBackend::Bedrock
                    || config.ask.backend == AskBackend::Bedrock
            }
            Self::SageMakerDetector | Self::SageMakerExport => {
                config.detector.backend == DetectorBackend::Sagemaker
            }
            Self::CiEvidence => config.evidence.fetch_logs || config.evidence.codebuild_usage,
        }
    }
}

/// Every grant of every feature, each once.
pub fn all_grants() -> BTreeSet<IamGrant> {
    Feature::ALL.into_iter().flat_map(Feature::grants).collect()
}

/// The features `config` turns on, in [`Feature::ALL`] order.
pub fn needed(config: &Config) -> Vec<Feature> {
    Feature::ALL
        .into_iter()
        .filter(|f| f.enabled_by(config))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::iam::ArnForm;

    #[test]
    fn stage_operations_are_granted_on_stages_and_nothing_on_a_wildcard() {
        let all = all_grants();
        for grant in &all {
            let on_stage = matches!(
                grant.action,
                "codepipeline:RetryStageExecution" | "codepipeline:RollbackStage"
            );
            assert_eq!(
                grant.resource == ArnForm::CodePipelineStage,
                on_stage,
                "{grant}"
            );
            assert!(!grant.action.contains('*'), "{grant}");
        }
        assert!(all.contains(&IamGrant::new(
            "bedrock:InvokeModel",
            ArnForm::BedrockFoundationModel
        )));
    }

    #[test]
    fn the_configuration_says_which_features_are_on() {
        let mut config = Config::default();
        assert_eq!(
            needed(&config),
            [Feature::CodePipelineRemediation, Feature::CiEvidence]
        );
        config.codepipeline.poll_pipelines = vec!["checkout-service".into()];
        config.ask.backend = AskBackend::Bedrock;
        config.detector.backend = DetectorBackend::Sagemaker;
        assert_eq!(needed(&config), Feature::ALL);
    }
}
