//! Which CodeBuild build a run is about, read from the run's log link (pure).
//!
//! CodeBuild's "Build State Change" event names the build's log in
//! `additional-information.logs`: `group-name`, `stream-name` and a
//! CloudWatch console `deep-link` of the form
//! `https://console.aws.amazon.com/cloudwatch/home?region=R#logEvent:group=G;stream=S`,
//! which ingest keeps as the run's `log_url`. The stream is the build's
//! uuid, and the build id CloudWatch's `BuildId` dimension uses is
//! `PROJECT:UUID`, with the project from the default group name
//! `/aws/codebuild/PROJECT` (else the run's pipeline for a standalone build).

use chrono::{DateTime, Duration, Utc};

use crate::domain::Run;

/// One CodeBuild build and where its log is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeBuildRef {
    pub project: String,
    /// `PROJECT:UUID`.
    pub build_id: String,
    pub log_group: String,
    pub log_stream: String,
}

/// The time range a build's metrics are looked for in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The run's build, when its log link is a CodeBuild log in CloudWatch.
pub fn codebuild_of(run: &Run) -> Option<CodeBuildRef> {
    let link = run.log_url.as_deref()?;
    let fragment = link.split_once("#logEvent:")?.1;
    let mut group = None;
    let mut stream = None;
    for part in fragment.split(';') {
        if let Some(g) = part.strip_prefix("group=") {
            group = Some(decode(g));
        } else if let Some(s) = part.strip_prefix("stream=") {
            stream = Some(decode(s));
        }
    }
    let (log_group, log_stream) = (group?, stream?);
    if log_group.is_empty() || log_stream.is_empty() {
        return None;
    }
    let project = log_group
        .strip_prefix("/aws/codebuild/")
        .filter(|p| !p.is_empty() && !p.contains('/'))
        .map(str::to_string)
        .unwrap_or_else(|| run.pipeline.clone());
    // A stream may be `PREFIX/UUID` when the project sets a stream prefix.
    let uuid = log_stream.rsplit('/').next().unwrap_or(&log_stream);
    Some(CodeBuildRef {
        build_id: format!("{project}:{uuid}"),
        project,
        log_group,
        log_stream,
    })
}

fn decode(raw: &str) -> String {
    urlencoding::decode(raw)
        .map(|s| s.into_owned())
        .unwrap_or_else(|_| raw.to_string())
}

/// Where to look for the run's build metrics: from a minute before it
/// started to five minutes after it ended (CloudWatch publishes them with
/// a delay); the last hour when the run has no times.
pub fn window_of(run: &Run) -> Window {
    let end = run.finished_at.or(run.started_at).unwrap_or_else(Utc::now) + Duration::minutes(5);
    let start = run
        .started_at
        .map(|s| s - Duration::minutes(1))
        .unwrap_or(end - Duration::hours(1));
    Window { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunStatus;

    #[test]
    fn the_build_is_read_from_the_deep_link_of_the_codebuild_event() {
        let mut run = Run::new("checkout-service", "e-1", RunStatus::Failed);
        run.log_url = Some("https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEvent:group=/aws/codebuild/checkout-service-test;stream=5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b".into());
        let build = codebuild_of(&run).unwrap();
        assert_eq!(build.project, "checkout-service-test");
        assert_eq!(
            build.build_id,
            "checkout-service-test:5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
        );
        assert_eq!(build.log_group, "/aws/codebuild/checkout-service-test");
        assert_eq!(build.log_stream, "5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b");

        run.log_url = Some("https://ci.example.com/checkout/1/log".into());
        assert_eq!(codebuild_of(&run), None);
        run.log_url = Some("https://x#logEvent:group=custom-group;stream=pre/abc".into());
        let build = codebuild_of(&run).unwrap();
        assert_eq!(build.build_id, "checkout-service:abc");
    }
}
