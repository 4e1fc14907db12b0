//! The demo's CodeBuild build: the failing test run's log in the CloudWatch
//! Logs stand-in and its CPU and memory in the CloudWatch stand-in, so the
//! evidence fetches go through the real SDK clients.

use crate::config::Config;
use crate::domain::Run;
use crate::standin::cloudwatch::{FakeCloudWatch, FakeCloudWatchLogs};

use super::DemoSummary;

/// The CodeBuild project of checkout-service's Test stage.
const PROJECT: &str = "checkout-service-test";

pub(super) struct Evidence {
    logs: FakeCloudWatchLogs,
    cloudwatch: FakeCloudWatch,
}

impl Evidence {
    pub(super) async fn start() -> Self {
        Self {
            logs: FakeCloudWatchLogs::start().await,
            cloudwatch: FakeCloudWatch::start().await,
        }
    }

    pub(super) fn configure(&self, config: &mut Config) {
        config.aws.endpoints.logs = self.logs.url();
        config.aws.endpoints.cloudwatch = self.cloudwatch.url();
    }

    /// Moves the run's log and usage to where CodeBuild keeps them: the run
    /// arrives with only the build's log link, as CodePipeline runs do.
    pub(super) fn move_to_codebuild(&self, run: &mut Run) {
        let stream = format!("{}-5f1e7b9a-2c3d-4e5f", run.run_id);
        let group = format!("/aws/codebuild/{PROJECT}");
        let mut lines: Vec<String> = vec![
            "[Container] Entering phase INSTALL".into(),
            "[Container] Running command npm ci".into(),
            "added 1432 packages in 41s".into(),
            "[Container] Phase complete: INSTALL State: SUCCEEDED".into(),
            "[Container] Entering phase BUILD".into(),
            "[Container] Running command ./gradlew integrationTest".into(),
        ];
        lines.extend((1..=120).map(|i| format!("  PASSED suite {i:03}")));
        if let Some(log) = run.log_excerpt.take() {
            lines.extend(log.lines().map(str::to_string));
        }
        lines.push(
            "[Container] Command did not exit successfully ./gradlew integrationTest exit status 1"
                .into(),
        );
        lines.push("[Container] Phase complete: BUILD State: FAILED".into());
        self.logs.put_log(&group, &stream, &lines);
        if let Some(resources) = run.resources.take() {
            self.cloudwatch.put_usage(
                &format!("{PROJECT}:{stream}"),
                resources.cpu_peak_pct.unwrap_or(0.0),
                resources.mem_peak_mb.unwrap_or(0.0),
            );
        }
        run.log_url = Some(format!(
            "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEvent:group={group};stream={stream}"
        ));
    }

    pub(super) fn count_calls(&self, summary: &mut DemoSummary) {
        for call in self.logs.calls() {
            *summary.logs_calls.entry(call.operation).or_default() += 1;
        }
        for call in self.cloudwatch.calls() {
            *summary.cloudwatch_calls.entry(call.operation).or_default() += 1;
        }
    }
}
