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
//!
//! A run polled from CodePipeline (`ingest::codepipeline_poll`) has instead
//! the `externalExecutionUrl` of its CodeBuild action: a link to the build
//! in the CodeBuild console, in one of the forms the console has used,
//! `https://console.aws.amazon.com/codesuite/codebuild/projects/PROJECT/build/PROJECT%3AUUID/log?region=R`
//! (also with the account id after `codebuild/`, or a regional host) and
//! the older `https://console.aws.amazon.com/codebuild/home?region=R#/builds/PROJECT:UUID/view/new`.
//! The build id `PROJECT:UUID` is read from it (percent-decoded), and the
//! log is taken to be where CodeBuild writes it by default: group
//! `/aws/codebuild/PROJECT`, stream `UUID`. A project that logs to a custom
//! group or stream prefix still gets its CPU and memory (the metrics go by
//! build id), but its log fetch finds no such stream and reports the log
//! as missing, once, as a deleted log is reported.

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

/// The run's build, when its log link is a CodeBuild log in CloudWatch or
/// a build in the CodeBuild console.
pub fn codebuild_of(run: &Run) -> Option<CodeBuildRef> {
    let link = run.log_url.as_deref()?;
    match link.split_once("#logEvent:") {
        Some((_, fragment)) => build_of_log_deep_link(fragment, &run.pipeline),
        None => build_of_console_link(link),
    }
}

/// The build of a CodeBuild console link to one build (see the module
/// header for the forms), with its log where CodeBuild puts it by default.
pub fn build_of_console_link(link: &str) -> Option<CodeBuildRef> {
    if !link.contains("/codebuild/") {
        return None;
    }
    let segments: Vec<&str> = link.split(['/', '?', '#', '&']).collect();
    let build_id = segments
        .windows(2)
        .filter(|pair| pair[0] == "build" || pair[0] == "builds")
        .map(|pair| decode(pair[1]))
        .find(|id| is_build_id(id))?;
    let (project, uuid) = build_id.split_once(':')?;
    Some(CodeBuildRef {
        project: project.to_string(),
        log_group: format!("/aws/codebuild/{project}"),
        log_stream: uuid.to_string(),
        build_id: build_id.clone(),
    })
}

/// `PROJECT:UUID`: a project name (letters, digits, `-` and `_`) and a
/// non-empty id without separators.
fn is_build_id(id: &str) -> bool {
    let Some((project, uuid)) = id.split_once(':') else {
        return false;
    };
    let project_ok = !project.is_empty()
        && project
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let uuid_ok = !uuid.is_empty() && uuid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    project_ok && uuid_ok
}

/// The build of a CloudWatch Logs deep link's fragment (after `#logEvent:`).
fn build_of_log_deep_link(fragment: &str, pipeline: &str) -> Option<CodeBuildRef> {
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
        .unwrap_or_else(|| pipeline.to_string());
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

    #[test]
    fn the_build_is_read_from_the_codebuild_console_links_of_a_polled_run() {
        let uuid = "5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b";
        let expected = CodeBuildRef {
            project: "checkout-service-test".into(),
            build_id: format!("checkout-service-test:{uuid}"),
            log_group: "/aws/codebuild/checkout-service-test".into(),
            log_stream: uuid.into(),
        };
        let mut run = Run::new("checkout", "e-1", RunStatus::Failed);
        for link in [
            // The codesuite console, the colon percent-encoded.
            format!("https://console.aws.amazon.com/codesuite/codebuild/projects/checkout-service-test/build/checkout-service-test%3A{uuid}/log?region=eu-west-1"),
            // Lower-case percent-encoding, a regional host and the account id.
            format!("https://eu-west-1.console.aws.amazon.com/codesuite/codebuild/123456789012/projects/checkout-service-test/build/checkout-service-test%3a{uuid}/?region=eu-west-1"),
            // The older console, the build in the fragment.
            format!("https://console.aws.amazon.com/codebuild/home?region=eu-west-1#/builds/checkout-service-test:{uuid}/view/new"),
        ] {
            run.log_url = Some(link.clone());
            assert_eq!(codebuild_of(&run), Some(expected.clone()), "{link}");
        }
    }

    #[test]
    fn links_that_name_no_build_are_not_read_as_one() {
        let mut run = Run::new("checkout", "e-1", RunStatus::Failed);
        for link in [
            "",
            "not a url",
            // The project's page, no build.
            "https://console.aws.amazon.com/codesuite/codebuild/projects/checkout-service-test/history?region=eu-west-1",
            // A build segment without `PROJECT:UUID`.
            "https://console.aws.amazon.com/codesuite/codebuild/projects/p/build/no-colon/log",
            "https://console.aws.amazon.com/codesuite/codebuild/projects/p/build/%3Aabc/log",
            "https://console.aws.amazon.com/codesuite/codebuild/projects/p/build/p%3A/log",
            "https://console.aws.amazon.com/codebuild/home?region=eu-west-1#/builds/",
            "https://console.aws.amazon.com/codebuild/home?region=eu-west-1#/builds/a b:c/view/new",
            // Not CodeBuild's console.
            "https://ci.example.com/build/project:abc",
            "https://console.example/build/1",
        ] {
            run.log_url = Some(link.into());
            assert_eq!(codebuild_of(&run), None, "{link}");
        }
    }
}
