//! AWS clients: the one place that builds the SDK clients pipemedic uses
//! (CodePipeline, Bedrock Runtime, SageMaker Runtime, S3; CloudWatch Logs and
//! CloudWatch with the `ci-evidence` feature) from `[aws]` in the
//! configuration, and that classifies their errors as retryable or not.
//!
//! Every client shares one [`SdkConfig`]: the region (`aws.region`, else the
//! standard AWS chain), credentials from the standard AWS chain, a
//! rustls + ring HTTPS client (the SDKs' default client is turned off in
//! this build), standard retries and bounded timeouts. Each service's
//! endpoint can be overridden (`aws.endpoints.*`) for tests, GovCloud or
//! proxies. Tests inject static credentials with
//! [`AwsSettings::with_static_credentials`], which also stops the loader
//! from reading the host's environment and profile files.
//!
//! Loading is lazy and happens once: nothing is read from the host's AWS
//! environment (and no instance-metadata request is made, which the chain
//! does to find a region) until a feature that needs AWS asks for a client
//! ([`AwsSettings::clients`], or a [`LazyClient`] on its first call). A
//! configuration that uses no AWS never loads it.
//!
//! The IAM vocabulary ([`iam`]) names what each call needs; the modules
//! that make the calls declare it.
//!
//! This module builds clients only; it must not call any service.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::{AwsConfig, AwsEndpoints};

pub mod iam;

/// Attempts per call, first one included (the SDK's standard retry mode).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Time allowed to open a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one whole operation, retries included.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// How the AWS clients are built: region, endpoint overrides, credentials,
/// retries and timeouts.
#[derive(Clone)]
pub struct AwsSettings {
    /// Region; `None` lets the standard AWS chain decide.
    pub region: Option<String>,
    /// Per-service endpoint overrides; empty strings mean the SDK default.
    pub endpoints: AwsEndpoints,
    /// Static credentials; `None` uses the standard AWS credential chain.
    pub credentials: Option<Credentials>,
    /// Ignore the host's environment variables and profile files while
    /// loading (tests: nothing outside the settings influences the clients).
    pub isolated: bool,
    pub max_attempts: u32,
    /// First retry delay of the standard retry mode (it grows from there).
    pub initial_backoff: Duration,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    /// The configuration [`AwsSettings::clients`] loaded, shared by clones.
    loaded: Arc<tokio::sync::OnceCell<AwsClients>>,
    /// How many times these settings (or a clone) loaded a configuration.
    loads: Arc<AtomicUsize>,
}

impl fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSettings")
            .field("region", &self.region)
            .field("endpoints", &self.endpoints)
            .field(
                "credentials",
                &if self.credentials.is_some() {
                    "static"
                } else {
                    "chain"
                },
            )
            .field("isolated", &self.isolated)
            .field("max_attempts", &self.max_attempts)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            region: None,
            endpoints: AwsEndpoints::default(),
            credentials: None,
            isolated: false,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: Duration::from_secs(1),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            loaded: Arc::default(),
            loads: Arc::default(),
        }
    }
}

impl AwsSettings {
    /// Settings for production: `[aws]` from the configuration and the
    /// standard AWS credential chain.
    pub fn from_config(config: &AwsConfig) -> Self {
        Self {
            region: Some(config.region.trim().to_string()).filter(|r| !r.is_empty()),
            endpoints: config.endpoints.clone(),
            ..Self::default()
        }
    }

    /// Uses fixed credentials and a fixed region instead of the chain, and
    /// ignores the host's environment and profile files.
    pub fn with_static_credentials(mut self, credentials: Credentials, region: &str) -> Self {
        self.credentials = Some(credentials);
        self.region = Some(region.to_string());
        self.isolated = true;
        self
    }

    /// The client factory, loaded on the first call and shared by every
    /// clone of these settings afterwards (one load per process). Change
    /// the settings' fields before the first call, not after.
    pub async fn clients(&self) -> AwsClients {
        self.loaded.get_or_init(|| self.load()).await.clone()
    }

    /// How many times these settings (or a clone) loaded an SDK
    /// configuration: 0 means nothing was read from the host's AWS
    /// environment and no instance-metadata request was made.
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::Relaxed)
    }

    /// Loads a fresh SDK configuration and returns the client factory
    /// (see [`AwsSettings::clients`] for the shared one). Loading never
    /// calls a service; with the chain it may read the environment,
    /// profile files or instance metadata (for the region).
    pub async fn load(&self) -> AwsClients {
        self.loads.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(settings = ?self, "Loading the AWS configuration.");
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(self.max_attempts.max(1))
                    .with_initial_backoff(self.initial_backoff),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.connect_timeout)
                    .operation_timeout(self.operation_timeout)
                    .build(),
            );
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(credentials) = &self.credentials {
            loader = loader.credentials_provider(credentials.clone());
        }
        if self.isolated {
            loader = loader.empty_test_environment();
        }
        AwsClients {
            sdk: loader.load().await,
            endpoints: self.endpoints.clone(),
        }
    }
}

/// The loaded SDK configuration; hands out one client per service, each
/// with its endpoint override applied.
#[derive(Clone, Debug)]
pub struct AwsClients {
    sdk: SdkConfig,
    endpoints: AwsEndpoints,
}

fn endpoint(raw: &str) -> Option<&str> {
    Some(raw.trim()).filter(|e| !e.is_empty())
}

impl AwsClients {
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    /// The region the clients sign for, if any was found.
    pub fn region(&self) -> Option<&str> {
        self.sdk.region().map(|r| r.as_ref())
    }

    pub fn codepipeline(&self) -> aws_sdk_codepipeline::Client {
        let mut builder = aws_sdk_codepipeline::config::Builder::from(&self.sdk);
        if let Some(url) = endpoint(&self.endpoints.codepipeline) {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_codepipeline::Client::from_conf(builder.build())
    }

    pub fn bedrock(&self) -> aws_sdk_bedrockruntime::Client {
        let mut builder = aws_sdk_bedrockruntime::config::Builder::from(&self.sdk);
        if let Some(url) = endpoint(&self.endpoints.bedrock) {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_bedrockruntime::Client::from_conf(builder.build())
    }

    pub fn sagemaker(&self) -> aws_sdk_sagemakerruntime::Client {
        let mut builder = aws_sdk_sagemakerruntime::config::Builder::from(&self.sdk);
        if let Some(url) = endpoint(&self.endpoints.sagemaker) {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_sagemakerruntime::Client::from_conf(builder.build())
    }

    /// An S3 client; with an endpoint override, buckets are addressed
    /// path-style (`ENDPOINT/BUCKET/KEY`), as S3-compatible stores expect.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let mut builder = aws_sdk_s3::config::Builder::from(&self.sdk);
        if let Some(url) = endpoint(&self.endpoints.s3) {
            builder = builder.endpoint_url(url).force_path_style(true);
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }

    #[cfg(feature = "ci-evidence")]
    pub fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        let mut builder = aws_sdk_cloudwatchlogs::config::Builder::from(&self.sdk);
        if let Some(url) = endpoint(&self.endpoints.logs) {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_cloudwatchlogs::Client::from_conf(builder.build())
    }

    #[cfg(feature = "ci-evidence")]
    pub fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        let mut builder = aws_sdk_cloudwatch::config::Builder::from(&self.sdk);
        if let Some(url) = endpoint(&self.endpoints.cloudwatch) {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_cloudwatch::Client::from_conf(builder.build())
    }
}

/// A client built on its first use, from settings whose configuration is
/// loaded only then ([`AwsSettings::clients`]); cheap to clone, and clones
/// share the client.
#[derive(Clone)]
pub struct LazyClient<C> {
    settings: AwsSettings,
    build: fn(&AwsClients) -> C,
    client: Arc<tokio::sync::OnceCell<C>>,
}

impl<C> fmt::Debug for LazyClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyClient")
            .field("built", &self.client.initialized())
            .finish()
    }
}

impl<C: Clone> LazyClient<C> {
    /// A client that `build` makes from `settings` when first needed, e.g.
    /// `LazyClient::new(&settings, AwsClients::codepipeline)`.
    pub fn new(settings: &AwsSettings, build: fn(&AwsClients) -> C) -> Self {
        Self {
            settings: settings.clone(),
            build,
            client: Arc::default(),
        }
    }

    /// A client built now from configuration already loaded.
    pub fn from_clients(clients: &AwsClients, build: fn(&AwsClients) -> C) -> Self {
        Self {
            settings: AwsSettings::default(),
            build,
            client: Arc::new(tokio::sync::OnceCell::new_with(Some(build(clients)))),
        }
    }

    /// The client, loading the configuration and building it on first use.
    pub async fn get(&self) -> C {
        self.client
            .get_or_init(|| async { (self.build)(&self.settings.clients().await) })
            .await
            .clone()
    }

    /// Whether the client exists yet (nothing was loaded before).
    pub fn is_built(&self) -> bool {
        self.client.initialized()
    }
}

/// Error codes AWS services use for throttling.
const THROTTLING_CODES: [&str; 9] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "SlowDown",
];

/// Error codes of transient service-side failures.
const TRANSIENT_CODES: [&str; 5] = [
    "InternalFailure",
    "InternalServerError",
    "InternalServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// What kind of failure an AWS call ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The service asked to slow down (throttling codes, HTTP 429).
    Throttling,
    /// Worth trying again later: timeouts, connection failures, HTTP 5xx,
    /// unparseable responses.
    Transient,
    /// Retrying the same request will fail the same way (bad input, access
    /// denied, not found).
    Permanent,
}

impl ErrorClass {
    pub fn is_retryable(self) -> bool {
        !matches!(self, Self::Permanent)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttling => "throttling",
            Self::Transient => "transient",
            Self::Permanent => "permanent",
        }
    }
}

/// Classifies from an HTTP status and an AWS error code (pure).
pub fn classify_response(status: u16, code: Option<&str>) -> ErrorClass {
    if status == 429 || code.is_some_and(|c| THROTTLING_CODES.contains(&c)) {
        ErrorClass::Throttling
    } else if (500..600).contains(&status) || code.is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
        ErrorClass::Transient
    } else {
        ErrorClass::Permanent
    }
}

/// Classifies an SDK error: what the SDK already retried, and whether the
/// next scheduled attempt (the next poll, the next execution pass) may
/// succeed.
pub fn classify<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> ErrorClass {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => ErrorClass::Transient,
        SdkError::ResponseError(e) => {
            let status = e.raw().status().as_u16();
            match classify_response(status, None) {
                ErrorClass::Permanent => ErrorClass::Transient,
                other => other,
            }
        }
        SdkError::ServiceError(e) => classify_response(e.raw().status().as_u16(), e.err().code()),
        // Construction failures (and any future kinds) will not fix themselves.
        _ => ErrorClass::Permanent,
    }
}

/// Whether an SDK error is worth retrying later (throttling, 429, 5xx,
/// timeouts, connection failures).
pub fn is_retryable<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    classify(error).is_retryable()
}

/// A one-line description of an SDK error for logs and reports: the error
/// code and message when the service sent them, else the failure's chain.
pub fn describe<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(e) = error {
        let meta = e.err();
        let status = e.raw().status().as_u16();
        return match (meta.code(), meta.message()) {
            (Some(code), Some(message)) => format!("{code} (HTTP {status}): {message}"),
            (Some(code), None) => format!("{code} (HTTP {status})"),
            _ => format!("HTTP {status}: {}", error_chain(error)),
        };
    }
    error_chain(error)
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_429_and_5xx_are_retryable() {
        assert_eq!(
            classify_response(400, Some("ThrottlingException")),
            ErrorClass::Throttling
        );
        assert_eq!(classify_response(429, None), ErrorClass::Throttling);
        assert_eq!(classify_response(500, None), ErrorClass::Transient);
        assert_eq!(classify_response(503, Some("x")), ErrorClass::Transient);
        assert_eq!(
            classify_response(400, Some("PipelineNotFoundException")),
            ErrorClass::Permanent
        );
        assert_eq!(
            classify_response(403, Some("AccessDeniedException")),
            ErrorClass::Permanent
        );
        assert!(ErrorClass::Throttling.is_retryable());
        assert!(ErrorClass::Transient.is_retryable());
        assert!(!ErrorClass::Permanent.is_retryable());
    }

    #[test]
    fn settings_from_config_use_the_chain_and_keep_endpoints() {
        let mut config = AwsConfig::default();
        config.endpoints.codepipeline = "http://127.0.0.1:4566".into();
        let s = AwsSettings::from_config(&config);
        assert_eq!(s.region, None);
        assert!(s.credentials.is_none());
        assert!(!s.isolated);
        assert_eq!(s.max_attempts, 3);
        assert_eq!(s.connect_timeout, Duration::from_secs(5));
        assert_eq!(s.operation_timeout, Duration::from_secs(30));
        config.region = "eu-west-1".into();
        assert_eq!(
            AwsSettings::from_config(&config).region.as_deref(),
            Some("eu-west-1")
        );
    }

    #[test]
    fn debug_never_shows_credentials() {
        let s = AwsSettings::default().with_static_credentials(
            Credentials::new("AKIDEXAMPLE", "very-secret-key", None, None, "test"),
            "us-east-1",
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("very-secret-key"), "{shown}");
        assert!(!shown.contains("AKIDEXAMPLE"), "{shown}");
    }

    #[tokio::test]
    async fn static_settings_build_every_client_with_overrides() {
        let mut s = AwsSettings::default().with_static_credentials(
            Credentials::new("AKIDTEST", "test-secret", None, None, "tests"),
            "eu-central-1",
        );
        s.endpoints.codepipeline = "http://127.0.0.1:9".into();
        let clients = s.load().await;
        assert_eq!(clients.region(), Some("eu-central-1"));
        let cp = clients.codepipeline();
        assert_eq!(
            cp.config().region().map(|r| r.as_ref()),
            Some("eu-central-1")
        );
        let _ = clients.bedrock();
        let _ = clients.sagemaker();
        let _ = clients.s3();
    }

    #[tokio::test]
    async fn nothing_loads_until_a_client_is_used_and_then_once() {
        let settings = AwsSettings::default().with_static_credentials(
            Credentials::new("AKIDTEST", "test-secret", None, None, "tests"),
            "eu-west-1",
        );
        let lazy = LazyClient::new(&settings, AwsClients::codepipeline);
        let copy = lazy.clone();
        assert_eq!(settings.loads(), 0);
        assert!(!lazy.is_built());
        let client = lazy.get().await;
        assert_eq!(
            client.config().region().map(|r| r.as_ref()),
            Some("eu-west-1")
        );
        let _ = copy.get().await;
        let _ = settings.clients().await;
        let _ = settings.clone().clients().await;
        assert_eq!(settings.loads(), 1, "one load shared by every clone");
        assert!(copy.is_built());
    }
}
