//! The CloudWatch Logs and CloudWatch calls of the evidence fetches, made
//! through the SDK clients of [`crate::aws`] (their retry policy and
//! timeouts). CloudWatch Logs speaks awsJson1_1 (`Logs_20140328.GetLogEvents`);
//! the CloudWatch SDK speaks rpcv2Cbor (`POST
//! /service/GraniteServiceVersion20100801/operation/GetMetricData`, CBOR bodies).

use std::collections::HashMap;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::codebuild::{CodeBuildRef, Window};
use super::FetchError;
use crate::domain::ResourceMetrics;

/// Most log events read: `GetLogEvents` returns at most 10,000 events or
/// 1 MB, whichever comes first, so one call bounds what is read.
pub const LOG_EVENTS: i32 = 10_000;

/// Builds per `GetMetricData` call (two queries each; the call takes 500).
pub const BUILDS_PER_CALL: usize = 50;

/// Pages of one `GetMetricData` call followed at most.
const MAX_PAGES: usize = 5;

/// CodeBuild's namespace and the metrics read, with the statistic.
const NAMESPACE: &str = "AWS/CodeBuild";
const CPU_METRIC: &str = "CPUUtilizedPercent";
const MEMORY_METRIC: &str = "MemoryUtilized";

fn fetch_error<E>(error: &SdkError<E, HttpResponse>) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let described = crate::aws::describe(error);
    match error {
        SdkError::ServiceError(e) => {
            FetchError::from_response(e.raw().status().as_u16(), e.err().code(), described)
        }
        SdkError::TimeoutError(_) => FetchError::Failed(format!("timed out: {described}")),
        _ => match crate::aws::classify(error) {
            crate::aws::ErrorClass::Throttling => FetchError::Throttled(described),
            _ => FetchError::Failed(described),
        },
    }
}

/// The tail of the build's log (the last [`LOG_EVENTS`] events, oldest
/// first), one line per event.
pub async fn log_tail(
    client: &aws_sdk_cloudwatchlogs::Client,
    build: &CodeBuildRef,
) -> Result<String, FetchError> {
    let out = client
        .get_log_events()
        .log_group_name(&build.log_group)
        .log_stream_name(&build.log_stream)
        .start_from_head(false)
        .limit(LOG_EVENTS)
        .send()
        .await
        .map_err(|e| fetch_error(&e))?;
    let mut log = String::new();
    for event in out.events() {
        if let Some(message) = event.message() {
            log.push_str(message.trim_end_matches(['\n', '\r']));
            log.push('\n');
        }
    }
    Ok(log)
}

/// The search expression of one metric of one build: CodeBuild publishes
/// build metrics with the dimensions `BuildId`, `BuildNumber` and
/// `ProjectName` together, and the build number is not in the run, so the
/// build is found by its id.
fn search(metric: &str, build_id: &str) -> String {
    let id = build_id.replace(['"', '\'', '\\'], "");
    format!(
        "SEARCH('{{{NAMESPACE},BuildId,BuildNumber,ProjectName}} MetricName=\"{metric}\" BuildId=\"{id}\"', 'Maximum', 60)"
    )
}

/// Peak CPU (percent of the allocation) and memory (MB) of each build, by
/// build id, with one `GetMetricData` call per [`BUILDS_PER_CALL`] builds.
/// A build CloudWatch has no data for yet is left out.
pub async fn usage(
    client: &aws_sdk_cloudwatch::Client,
    builds: &[CodeBuildRef],
    window: Window,
) -> Result<HashMap<String, ResourceMetrics>, FetchError> {
    use aws_sdk_cloudwatch::types::MetricDataQuery;
    let mut out: HashMap<String, ResourceMetrics> = HashMap::new();
    for chunk in builds.chunks(BUILDS_PER_CALL) {
        let mut queries = Vec::with_capacity(chunk.len() * 2);
        for (i, build) in chunk.iter().enumerate() {
            for (prefix, metric) in [("cpu", CPU_METRIC), ("mem", MEMORY_METRIC)] {
                queries.push(
                    MetricDataQuery::builder()
                        .id(format!("{prefix}{i}"))
                        .expression(search(metric, &build.build_id))
                        .return_data(true)
                        .build(),
                );
            }
        }
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut call = client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(aws_smithy_types::DateTime::from_secs(
                    window.start.timestamp(),
                ))
                .end_time(aws_smithy_types::DateTime::from_secs(
                    window.end.timestamp(),
                ));
            if let Some(t) = &token {
                call = call.next_token(t);
            }
            let page = call.send().await.map_err(|e| fetch_error(&e))?;
            for result in page.metric_data_results() {
                let Some(id) = result.id() else { continue };
                let Some(peak) = result.values().iter().copied().reduce(f64::max) else {
                    continue;
                };
                let (kind, index) = id.split_at(3.min(id.len()));
                let Some(build) = index.parse::<usize>().ok().and_then(|i| chunk.get(i)) else {
                    continue;
                };
                let entry = out.entry(build.build_id.clone()).or_default();
                match kind {
                    "cpu" => {
                        entry.cpu_peak_pct = Some(
                            entry
                                .cpu_peak_pct
                                .map_or(peak, |p| p.max(peak))
                                .clamp(0.0, 100.0),
                        )
                    }
                    "mem" => {
                        entry.mem_peak_mb =
                            Some(entry.mem_peak_mb.map_or(peak, |p| p.max(peak)).max(0.0))
                    }
                    _ => {}
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_names_the_build_and_the_metric() {
        assert_eq!(
            search("CPUUtilizedPercent", "web:1234"),
            "SEARCH('{AWS/CodeBuild,BuildId,BuildNumber,ProjectName} MetricName=\"CPUUtilizedPercent\" BuildId=\"web:1234\"', 'Maximum', 60)"
        );
        assert!(!search("MemoryUtilized", "a'b\"c").contains("a'b"));
    }
}
