//! IAM vocabulary: what one AWS call needs to be allowed ([`IamGrant`]: an
//! IAM action on a resource of one [`ArnForm`]).
//!
//! Each module that calls AWS declares, next to the calls, the grants
//! those calls need (`IAM` constants); `crate::iam` collects them into the
//! policies that `deploy/aws/` ships, and a test checks that the policy
//! files grant exactly that. This module only names things: it must not
//! call AWS or read the configuration.

use std::fmt;

/// The shape of a resource ARN an IAM statement names, with the
/// placeholders a deployment fills in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ArnForm {
    /// A pipeline: `arn:aws:codepipeline:REGION:ACCOUNT:PIPELINE`.
    CodePipelinePipeline,
    /// A stage of a pipeline: `arn:aws:codepipeline:REGION:ACCOUNT:PIPELINE/STAGE`
    /// (IAM defines the stage actions, such as `RetryStageExecution` and
    /// `RollbackStage`, on this resource, not on the pipeline).
    CodePipelineStage,
    /// A Bedrock foundation model: `arn:aws:bedrock:REGION::foundation-model/MODEL_ID`
    /// (foundation models have no account in their ARN).
    BedrockFoundationModel,
    /// A SageMaker endpoint: `arn:aws:sagemaker:REGION:ACCOUNT:endpoint/ENDPOINT_NAME`
    /// (IAM sees the endpoint name in lower case).
    SageMakerEndpoint,
    /// An object under the export prefix of a bucket:
    /// `arn:aws:s3:::BUCKET/PREFIX/*` (S3 ARNs have no region or account).
    S3ExportObject,
    /// A CloudWatch Logs log group: `arn:aws:logs:REGION:ACCOUNT:log-group:LOG_GROUP`
    /// (CodeBuild writes to `/aws/codebuild/PROJECT` unless told otherwise).
    LogGroup,
    /// Any resource: actions that IAM does not scope to a resource, such as
    /// `cloudwatch:GetMetricData`.
    Any,
}

impl ArnForm {
    /// Every form, in a fixed order.
    pub const ALL: [ArnForm; 7] = [
        Self::CodePipelinePipeline,
        Self::CodePipelineStage,
        Self::BedrockFoundationModel,
        Self::SageMakerEndpoint,
        Self::S3ExportObject,
        Self::LogGroup,
        Self::Any,
    ];

    /// The ARN with upper-case placeholders (`REGION`, `ACCOUNT`,
    /// `PIPELINE`, `STAGE`, `MODEL_ID`, `ENDPOINT_NAME`, `BUCKET`, `PREFIX`), as the policy
    /// files under `deploy/aws/` write it.
    pub const fn template(self) -> &'static str {
        match self {
            Self::CodePipelinePipeline => "arn:aws:codepipeline:REGION:ACCOUNT:PIPELINE",
            Self::CodePipelineStage => "arn:aws:codepipeline:REGION:ACCOUNT:PIPELINE/STAGE",
            Self::BedrockFoundationModel => "arn:aws:bedrock:REGION::foundation-model/MODEL_ID",
            Self::SageMakerEndpoint => "arn:aws:sagemaker:REGION:ACCOUNT:endpoint/ENDPOINT_NAME",
            Self::S3ExportObject => "arn:aws:s3:::BUCKET/PREFIX/*",
            Self::LogGroup => "arn:aws:logs:REGION:ACCOUNT:log-group:LOG_GROUP",
            Self::Any => "*",
        }
    }

    /// The form whose template is `arn` exactly.
    pub fn from_template(arn: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.template() == arn)
    }
}

impl fmt::Display for ArnForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.template())
    }
}

/// One permission an AWS call needs: an IAM action (`service:Operation`)
/// on resources of one form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IamGrant {
    pub action: &'static str,
    pub resource: ArnForm,
}

impl IamGrant {
    pub const fn new(action: &'static str, resource: ArnForm) -> Self {
        Self { action, resource }
    }

    /// The IAM service prefix (`codepipeline` of `codepipeline:RollbackStage`).
    pub fn service(&self) -> &'static str {
        self.action.split_once(':').map_or(self.action, |(s, _)| s)
    }
}

impl fmt::Display for IamGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_their_form_and_nothing_else() {
        for form in ArnForm::ALL {
            assert_eq!(ArnForm::from_template(form.template()), Some(form));
        }
        assert_eq!(
            ArnForm::from_template("arn:aws:codepipeline:REGION:ACCOUNT:*"),
            None
        );
        assert_eq!(ArnForm::from_template("*"), Some(ArnForm::Any));
    }

    #[test]
    fn a_grant_names_its_service() {
        let g = IamGrant::new("codepipeline:RollbackStage", ArnForm::CodePipelineStage);
        assert_eq!(g.service(), "codepipeline");
        assert_eq!(
            g.to_string(),
            "codepipeline:RollbackStage on arn:aws:codepipeline:REGION:ACCOUNT:PIPELINE/STAGE"
        );
    }
}
