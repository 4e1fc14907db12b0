//! Exporting pipeline history as training data for SageMaker's built-in
//! Random Cut Forest (`pipemedic export`).
//!
//! Each pipeline's stored runs are replayed, in stored order, through a
//! fresh [`PipelineModel`] exactly as detection learns them; before a run is
//! learned, its normalised, shingled row ([`PipelineModel::shingled_point`],
//! the row the SageMaker backend sends to `InvokeEndpoint`) is taken, so a
//! training row and an inference row of the same run are the same numbers,
//! written by the same [`csv_rows`]. Rows of runs still in warm-up, runs the
//! replay grades abnormal and runs before `--since` are left out (those
//! before still teach the normalisation).
//!
//! Layout under the destination: `rows/<pipeline>.csv` (`text/csv`, no
//! header, one row of [`feature_dim`] values per run; SageMaker reads the
//! whole `rows/` prefix as one training channel) and, written last,
//! `manifest.json` ([`Manifest`]): feature names, shingle size, the
//! normalisation of each pipeline, row counts, time range and the
//! hyperparameters a training job must use.
//!
//! It owns the replay and the writing (S3 `PutObject` or a local
//! directory); it must not change the store or any live model.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::pipeline::{
    pipeline_detector_config, MetricScale, PipelineModel, PIPELINE_SHINGLE, SCALER_WINDOW,
    WARM_UP_RUNS,
};
use super::sagemaker::csv_rows;
use crate::aws::iam::{ArnForm, IamGrant};
use crate::config::DetectorConfig;
use crate::domain::BUILTIN_METRICS;
use crate::store::{Store, StoreError, StoredRun};

/// What an export to S3 needs from IAM: `PutObject` under the export prefix.
pub const IAM: &[IamGrant] = &[IamGrant::new("s3:PutObject", ArnForm::S3ExportObject)];

/// Layout version of an export; bump when the rows or the manifest change.
pub const FORMAT_VERSION: u32 = 1;

/// The folder, under the destination, that holds one CSV per pipeline.
pub const ROWS_DIR: &str = "rows";

/// The manifest's name, under the destination.
pub const MANIFEST: &str = "manifest.json";

/// Values per row: the six modelled metrics of the last four runs.
pub fn feature_dim() -> usize {
    PIPELINE_SHINGLE * BUILTIN_METRICS.len()
}

/// Column names of a row, oldest run first: `duration_s@t-3` … `latency_p95_ms@t`.
pub fn feature_names() -> Vec<String> {
    (0..PIPELINE_SHINGLE)
        .rev()
        .flat_map(|age| {
            BUILTIN_METRICS.iter().map(move |m| match age {
                0 => format!("{m}@t"),
                n => format!("{m}@t-{n}"),
            })
        })
        .collect()
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `--to` is not an `s3://BUCKET/PREFIX`, `file:DIR` or directory.
    #[error("--to {raw:?}: {reason}")]
    BadDestination { raw: String, reason: String },
    #[error("S3 bucket {bucket:?} does not exist (or is in another partition)")]
    NoSuchBucket { bucket: String },
    #[error("access denied writing s3://{bucket}/{key}: {message} (the export needs s3:PutObject on arn:aws:s3:::{bucket}/PREFIX/*, see deploy/aws/iam-export.json)")]
    AccessDenied {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("writing s3://{bucket}/{key} failed: {message}")]
    Upload {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("writing {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no runs stored for pipeline {0:?}")]
    UnknownPipeline(String),
    #[error("encoding the manifest failed: {0}")]
    Manifest(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where an export goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `s3://BUCKET/PREFIX` (the prefix without its slashes; may be empty).
    S3 { bucket: String, prefix: String },
    /// A local directory (`file:DIR`, `file://DIR` or a plain path), for
    /// air-gapped hosts: copy it to S3 by other means.
    Dir(PathBuf),
}

impl Destination {
    /// Reads `--to`.
    pub fn parse(raw: &str) -> Result<Self, ExportError> {
        let bad = |reason: &str| ExportError::BadDestination {
            raw: raw.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(bad("empty; expected s3://BUCKET/PREFIX or a directory"));
        }
        if let Some(rest) = trimmed.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !valid_bucket(bucket) {
                return Err(bad(
                    "the bucket name must be 3 to 63 lower-case letters, digits, dots or hyphens, starting and ending with a letter or digit",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.contains("//") || prefix.split('/').any(|p| p == "." || p == "..") {
                return Err(bad("the prefix has an empty, `.` or `..` part"));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        let path = match trimmed.strip_prefix("file:") {
            Some(rest) => rest.strip_prefix("//").unwrap_or(rest),
            None if trimmed.contains("://") => {
                return Err(bad("only s3://, file: and plain directories are supported"))
            }
            None => trimmed,
        };
        if path.is_empty() {
            return Err(bad("no directory after file:"));
        }
        Ok(Self::Dir(PathBuf::from(path)))
    }

    /// Where an object named `name` (`rows/x.csv`, `manifest.json`) goes.
    pub fn location_of(&self, name: &str) -> String {
        match self {
            Self::S3 { bucket, prefix } => format!("s3://{bucket}/{}", key(prefix, name)),
            Self::Dir(dir) => dir.join(name).display().to_string(),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// S3's rules for bucket names (general purpose buckets).
fn valid_bucket(name: &str) -> bool {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&name.len())
        && ok_chars
        && ends_ok(name.bytes().next())
        && ends_ok(name.bytes().last())
        && !name.contains("..")
}

fn key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// The object name of a pipeline's rows: `rows/<name>.csv`, with every
/// byte other than ASCII letters, digits, `_` and `-` written `%XX`, so any
/// pipeline name is one safe file name and one S3 key segment.
pub fn rows_name(pipeline: &str) -> String {
    let mut out = format!("{ROWS_DIR}/");
    for b in pipeline.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(".csv");
    out
}

/// One pipeline's training rows and what the replay learned.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRows {
    pub pipeline: String,
    /// The rows as `text/csv` (no header).
    pub csv: String,
    pub rows: usize,
    /// Runs replayed (every stored finished run).
    pub runs: usize,
    pub skipped_before_since: usize,
    pub skipped_warm_up: usize,
    pub skipped_abnormal: usize,
    /// Runs that gave no row: they report none of the modelled metrics, or
    /// fewer runs than a shingle had been seen.
    pub without_row: usize,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    /// The normalisation after the last run: what scores the next run.
    pub normalisation: Vec<MetricScale>,
}

/// Replays `history` (a pipeline's stored runs, in stored order) as
/// detection learns it and keeps the row of each exported run. Pure.
pub fn pipeline_rows(
    pipeline: &str,
    history: &[StoredRun],
    config: &DetectorConfig,
    since: Option<DateTime<Utc>>,
    mut progress: impl FnMut(usize),
) -> PipelineRows {
    let rules = config.rules_for(pipeline);
    let mut model = PipelineModel::new(pipeline, config.sensitivity);
    let mut rows = Vec::new();
    let mut out = PipelineRows {
        pipeline: pipeline.to_string(),
        csv: String::new(),
        rows: 0,
        runs: history.len(),
        skipped_before_since: 0,
        skipped_warm_up: 0,
        skipped_abnormal: 0,
        without_row: 0,
        first_at: None,
        last_at: None,
        normalisation: Vec::new(),
    };
    for (i, stored) in history.iter().enumerate() {
        let row = model.shingled_point(&stored.run, &rules);
        let verdict = model.observe(&stored.run, &rules);
        model.last_run_pk = model.last_run_pk.max(stored.pk);
        progress(i + 1);
        let at = stored.run.event_time().unwrap_or(stored.ingested_at);
        if since.is_some_and(|s| at < s) {
            out.skipped_before_since += 1;
            continue;
        }
        let Some(row) = row else {
            out.without_row += 1;
            continue;
        };
        if verdict.warming_up {
            out.skipped_warm_up += 1;
        } else if verdict.is_anomalous() {
            out.skipped_abnormal += 1;
        } else {
            rows.push(row);
            out.first_at = Some(out.first_at.map_or(at, |f| f.min(at)));
            out.last_at = Some(out.last_at.map_or(at, |l| l.max(at)));
        }
    }
    out.rows = rows.len();
    out.csv = csv_rows(&rows);
    out.normalisation = model.normalisation();
    out
}

/// Training settings a SageMaker RCF job must use for its scores to fit
/// the rows (the embedded forest's size).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hyperparameters {
    pub feature_dim: usize,
    pub num_samples_per_tree: usize,
    pub num_trees: usize,
}

/// Fewest trees SageMaker's RCF accepts (`num_trees` is 50 to 1,000).
pub const SAGEMAKER_MIN_TREES: usize = 50;

impl Hyperparameters {
    /// The embedded forest's size, with at least [`SAGEMAKER_MIN_TREES`]
    /// trees: a score is a mean over trees, so more trees keep its scale.
    pub fn of_pipeline_models() -> Self {
        let c = pipeline_detector_config(1.0, 0);
        Self {
            feature_dim: feature_dim(),
            num_samples_per_tree: c.sample_size,
            num_trees: c.trees.max(SAGEMAKER_MIN_TREES),
        }
    }
}

/// How rows are normalised (the same for every pipeline; each pipeline's
/// current values are in [`ManifestPipeline::normalisation`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NormalisationMethod {
    pub method: &'static str,
    /// Longest exponential window of the running mean and deviation, in runs.
    pub window_runs: f64,
    /// Runs each pipeline learns before its rows are exported.
    pub warm_up_runs: u64,
    /// A metric a run does not report.
    pub missing: &'static str,
}

/// One pipeline in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestPipeline {
    pub pipeline: String,
    /// Object name under the destination (`rows/<name>.csv`).
    pub object: String,
    pub rows: usize,
    pub runs: usize,
    pub skipped_before_since: usize,
    pub skipped_warm_up: usize,
    pub skipped_abnormal: usize,
    pub without_row: usize,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    pub normalisation: Vec<MetricScale>,
}

/// `manifest.json`: what the rows are, so a model trained on them scores
/// what pipemedic sends at inference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub format_version: u32,
    pub pipemedic_version: &'static str,
    pub created_at: DateTime<Utc>,
    pub destination: String,
    pub content_type: &'static str,
    pub header: bool,
    pub shingle_size: usize,
    pub metrics: Vec<&'static str>,
    pub features: Vec<String>,
    pub hyperparameters: Hyperparameters,
    pub normalisation: NormalisationMethod,
    pub since: Option<DateTime<Utc>>,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    pub rows: usize,
    pub pipelines: Vec<ManifestPipeline>,
}

impl Manifest {
    fn new(destination: &Destination, since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            pipemedic_version: env!("CARGO_PKG_VERSION"),
            created_at: now,
            destination: destination.to_string(),
            content_type: "text/csv",
            header: false,
            shingle_size: PIPELINE_SHINGLE,
            metrics: BUILTIN_METRICS.to_vec(),
            features: feature_names(),
            hyperparameters: Hyperparameters::of_pipeline_models(),
            normalisation: NormalisationMethod {
                method: "per pipeline: (value - running mean) / max(running deviation, floor_abs, floor_rel * |mean|), learned from runs judged normal, in stored order",
                window_runs: SCALER_WINDOW,
                warm_up_runs: WARM_UP_RUNS,
                missing: "the metric's last reported value; 0 before it was ever reported",
            },
            since,
            first_at: None,
            last_at: None,
            rows: 0,
            pipelines: Vec::new(),
        }
    }

    fn add(&mut self, p: PipelineRows) {
        self.rows += p.rows;
        self.first_at = [self.first_at, p.first_at].into_iter().flatten().min();
        self.last_at = [self.last_at, p.last_at].into_iter().flatten().max();
        self.pipelines.push(ManifestPipeline {
            object: rows_name(&p.pipeline),
            pipeline: p.pipeline,
            rows: p.rows,
            runs: p.runs,
            skipped_before_since: p.skipped_before_since,
            skipped_warm_up: p.skipped_warm_up,
            skipped_abnormal: p.skipped_abnormal,
            without_row: p.without_row,
            first_at: p.first_at,
            last_at: p.last_at,
            normalisation: p.normalisation,
        });
    }
}

/// Writes the objects of an export.
pub enum Sink {
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
    },
    Dir(PathBuf),
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, prefix, .. } => write!(f, "Sink::S3(s3://{bucket}/{prefix})"),
            Self::Dir(dir) => write!(f, "Sink::Dir({})", dir.display()),
        }
    }
}

impl Sink {
    /// The sink of `destination`; `s3` makes the S3 client (only called
    /// for an S3 destination, so a local export never loads AWS).
    pub async fn open<F, Fut>(destination: &Destination, s3: F) -> Self
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = aws_sdk_s3::Client>,
    {
        match destination {
            Destination::S3 { bucket, prefix } => Self::S3 {
                client: s3().await,
                bucket: bucket.clone(),
                prefix: prefix.clone(),
            },
            Destination::Dir(dir) => Self::Dir(dir.clone()),
        }
    }

    /// Writes one whole object (S3 `PutObject`; a file written beside its
    /// name and renamed into place, so no file is ever half-written).
    #[tracing::instrument(skip(self, body), fields(bytes = body.len()))]
    pub async fn put(
        &self,
        name: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ExportError> {
        match self {
            Self::S3 {
                client,
                bucket,
                prefix,
            } => {
                let key = key(prefix, name);
                client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .content_type(content_type)
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .map_err(|e| upload_error(bucket, &key, e))?;
                tracing::debug!(bucket = %bucket, key = %key, "Object written.");
                Ok(())
            }
            Self::Dir(dir) => write_file(&dir.join(name), &body).await,
        }
    }
}

fn upload_error(
    bucket: &str,
    key: &str,
    error: aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::put_object::PutObjectError>,
) -> ExportError {
    let code = error.code().map(str::to_string);
    let message = crate::aws::describe(&error);
    match code.as_deref() {
        Some("NoSuchBucket") => ExportError::NoSuchBucket {
            bucket: bucket.to_string(),
        },
        Some(
            "AccessDenied" | "AllAccessDisabled" | "InvalidAccessKeyId" | "SignatureDoesNotMatch",
        ) => ExportError::AccessDenied {
            bucket: bucket.to_string(),
            key: key.to_string(),
            message,
        },
        _ => ExportError::Upload {
            bucket: bucket.to_string(),
            key: key.to_string(),
            message,
        },
    }
}

async fn write_file(path: &Path, body: &[u8]) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    tokio::fs::write(&partial, body).await.map_err(io)?;
    tokio::fs::rename(&partial, path).await.map_err(io)
}

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// These pipelines; every stored pipeline when empty.
    pub pipelines: Vec<String>,
    /// Rows of runs from here on (earlier runs still teach the
    /// normalisation); all history when `None`.
    pub since: Option<DateTime<Utc>>,
    pub destination: Destination,
    /// When the export was made (recorded in the manifest).
    pub now: DateTime<Utc>,
}

/// Exports what `request` names through `sink`: one CSV per pipeline,
/// then the manifest. `progress` is called with the runs replayed so far;
/// `written` with each pipeline's entry once its rows are written. A
/// pipeline named in the request with no stored runs is an error.
pub async fn export(
    store: &Store,
    config: &DetectorConfig,
    request: &ExportRequest,
    sink: &Sink,
    mut progress: impl FnMut(u64),
    mut written: impl FnMut(&ManifestPipeline),
) -> Result<Manifest, ExportError> {
    let ExportRequest {
        pipelines,
        since,
        destination,
        now,
    } = request;
    let (since, now) = (*since, *now);
    let names = if pipelines.is_empty() {
        store.pipelines().await?
    } else {
        pipelines.clone()
    };
    let mut manifest = Manifest::new(destination, since, now);
    let mut done = 0u64;
    for name in &names {
        let history = store.history(name).await?;
        if history.is_empty() {
            if pipelines.is_empty() {
                continue;
            }
            return Err(ExportError::UnknownPipeline(name.clone()));
        }
        let before = done;
        let rows = pipeline_rows(name, &history, config, since, |n| {
            progress(before + n as u64)
        });
        done = before + history.len() as u64;
        let csv = rows.csv.clone().into_bytes();
        sink.put(&rows_name(name), csv, "text/csv").await?;
        manifest.add(rows);
        if let Some(last) = manifest.pipelines.last() {
            written(last);
        }
        tracing::info!(pipeline = %name, rows = manifest.pipelines.last().map_or(0, |p| p.rows), "Pipeline exported.");
    }
    let body = serde_json::to_vec_pretty(&manifest)?;
    sink.put(MANIFEST, body, "application/json").await?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_read_or_refused_with_the_reason() {
        assert_eq!(
            Destination::parse("s3://pm-exports/rcf/2026/").unwrap(),
            Destination::S3 {
                bucket: "pm-exports".into(),
                prefix: "rcf/2026".into()
            }
        );
        assert_eq!(
            Destination::parse("s3://pm-exports").unwrap(),
            Destination::S3 {
                bucket: "pm-exports".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Destination::parse("file:/tmp/x").unwrap(),
            Destination::Dir("/tmp/x".into())
        );
        assert_eq!(
            Destination::parse("file:///tmp/x").unwrap(),
            Destination::Dir("/tmp/x".into())
        );
        assert_eq!(
            Destination::parse("exports").unwrap(),
            Destination::Dir("exports".into())
        );
        for bad in [
            "",
            "s3://",
            "s3://Upper/x",
            "s3://ab/x",
            "s3://-bucket/x",
            "s3://my_bucket/x",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
            "gs://bucket/x",
            "file:",
        ] {
            let e = Destination::parse(bad).unwrap_err();
            assert!(
                matches!(e, ExportError::BadDestination { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn objects_are_named_safely_under_the_prefix() {
        assert_eq!(rows_name("checkout-service"), "rows/checkout-service.csv");
        assert_eq!(rows_name("a/b c.."), "rows/a%2Fb%20c%2E%2E.csv");
        let d = Destination::parse("s3://b-1/p/q").unwrap();
        assert_eq!(d.location_of(MANIFEST), "s3://b-1/p/q/manifest.json");
        assert_eq!(d.to_string(), "s3://b-1/p/q");
    }

    #[test]
    fn features_name_every_column_oldest_first() {
        let names = feature_names();
        assert_eq!(names.len(), feature_dim());
        assert_eq!(feature_dim(), 24);
        assert_eq!(names[0], "duration_s@t-3");
        assert_eq!(names[23], "latency_p95_ms@t");
        let h = Hyperparameters::of_pipeline_models();
        assert_eq!(h.feature_dim, 24);
        assert!((50..=1000).contains(&h.num_trees), "{h:?}");
        assert!((1..=2048).contains(&h.num_samples_per_tree), "{h:?}");
    }
}
