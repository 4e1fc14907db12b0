//! Test harness: fresh databases (a temp SQLite file, or a fresh schema in
//! the PostgreSQL named by `PIPEMEDIC_TEST_POSTGRES_URL`) and `spawn_app`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use pipemedic::aws::AwsSettings;
use pipemedic::clock::ManualClock;
use pipemedic::config::{self, Env, Loaded, Secret, Secrets};
use pipemedic::startup::Application;
use pipemedic::store::Store;
use tokio_util::sync::CancellationToken;

pub const INGEST_TOKEN: &str = "test-ingest-token";
pub const READ_TOKEN: &str = "test-read-token";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const GITHUB_SECRET: &str = "test-github-secret";
pub const AWS_SECRET: &str = "test-aws-secret";
pub const GITLAB_TOKEN: &str = "test-gitlab-token";
pub const SLACK_SIGNING_SECRET: &str = "test-slack-signing-secret";
/// The PagerDuty routing key and Opsgenie API key of the test secrets
/// (used only when a test turns `[paging]` on).
pub const PAGERDUTY_ROUTING_KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY32";
pub const OPSGENIE_API_KEY: &str = "0p5g3n1e-test-api-key-9f8e7d6c";
/// Seed of the Ed25519 key that signs Discord interactions in tests.
pub const DISCORD_KEY_SEED: [u8; 32] = [7; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A database of its own for one test; the temp dir lives as long as this.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The PostgreSQL server for tests, if configured.
pub fn postgres_url() -> Option<String> {
    std::env::var("PIPEMEDIC_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

impl TestDb {
    /// A fresh database, or `None` for PostgreSQL when it is not configured.
    pub async fn new(db: Db) -> Option<Self> {
        match db {
            Db::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("pipemedic.db").display());
                Some(Self {
                    url,
                    _dir: Some(dir),
                })
            }
            Db::Postgres => {
                let base = postgres_url()?;
                let schema = format!("pm_test_{}", unique_suffix());
                sqlx::any::install_default_drivers();
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&base)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PIPEMEDIC_TEST_POSTGRES_URL is set but unreachable: {e}")
                    });
                sqlx::Executor::execute(&mut conn, format!("CREATE SCHEMA {schema}").as_str())
                    .await
                    .expect("create schema");
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                Some(Self { url, _dir: None })
            }
        }
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.url, 4).await.expect("store connects")
    }
}

pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("test timestamp")
}

/// The default configuration on `listen` with the store at `url`, for tests
/// that build the application themselves (startup refusals, shutdown).
pub fn loaded(url: &str, listen: &str, secrets: Secrets) -> Loaded {
    let mut config = config::from_sources(None, None, &Env::new()).unwrap();
    config.server.listen = listen.into();
    config.server.shutdown_grace_s = 5;
    config.store.url = url.into();
    Loaded {
        config,
        secrets,
        source: None,
    }
}

pub fn test_secrets() -> Secrets {
    Secrets {
        ingest_token: Some(Secret::new(INGEST_TOKEN)),
        read_token: Some(Secret::new(READ_TOKEN)),
        admin_token: Some(Secret::new(ADMIN_TOKEN)),
        github_webhook_secret: Some(Secret::new(GITHUB_SECRET)),
        aws_webhook_secret: Some(Secret::new(AWS_SECRET)),
        gitlab_token: Some(Secret::new(GITLAB_TOKEN)),
        slack_signing_secret: Some(Secret::new(SLACK_SIGNING_SECRET)),
        discord_public_key: Some(Secret::new(hex::encode(
            ed25519_dalek::SigningKey::from_bytes(&DISCORD_KEY_SEED)
                .verifying_key()
                .to_bytes(),
        ))),
        pagerduty_routing_key: Some(Secret::new(PAGERDUTY_ROUTING_KEY)),
        opsgenie_api_key: Some(Secret::new(OPSGENIE_API_KEY)),
        ..Secrets::default()
    }
}

/// AWS client settings for tests: static credentials, a fixed region, fast
/// retries, and nothing read from the host's AWS environment.
pub fn test_aws_settings(aws: &config::AwsConfig) -> AwsSettings {
    let region = if aws.region.is_empty() {
        "us-east-1"
    } else {
        aws.region.as_str()
    };
    let mut settings = AwsSettings::from_config(aws).with_static_credentials(
        aws_credential_types::Credentials::new("AKIDTEST", "test-secret", None, None, "tests"),
        region,
    );
    settings.initial_backoff = std::time::Duration::from_millis(10);
    settings
}

/// A running application and what tests need to talk to it.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Store,
    pub clock: Arc<ManualClock>,
    pub shutdown: CancellationToken,
    /// Where detection would hand scored runs.
    pub incidents: pipemedic::incidents::IncidentService,
    /// The healing loop (tests run its sweep when they move the clock).
    pub healing: pipemedic::healing::HealingService,
    /// The server task: it ends once every background task has stopped and
    /// the store is closed.
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    pub _db: TestDb,
}

impl TestApp {
    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Moves the app's clock forward.
    pub fn clock_advance_minutes(&self, minutes: i64) {
        self.clock.advance(chrono::Duration::minutes(minutes));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` with the read token, as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.http
            .get(self.url(path))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("a JSON answer")
    }

    pub async fn post_runs(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url("/v1/runs"))
            .bearer_auth(INGEST_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }
}

impl TestApp {
    /// Shuts the server down and waits until it has stopped: no task of
    /// it holds a connection to the store any more (what stopping the
    /// process gives an operator).
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        (&mut self.server)
            .await
            .expect("the server task ends")
            .expect("the server stops cleanly");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the real application on 127.0.0.1:0 with a fresh database.
pub async fn spawn_app(db: Db) -> Option<TestApp> {
    spawn_app_with(db, |_| {}).await
}

/// Like [`spawn_app`], with a chance to adjust the configuration.
pub async fn spawn_app_with(db: Db, adjust: impl FnOnce(&mut config::Config)) -> Option<TestApp> {
    spawn_app_full(db, adjust, None).await
}

/// Like [`spawn_app`], handing inbound chat events to `sink`.
pub async fn spawn_app_with_chat_sink(
    db: Db,
    sink: Arc<dyn pipemedic::chat::ChatEventSink>,
) -> Option<TestApp> {
    spawn_app_full(db, |_| {}, Some(sink)).await
}

async fn spawn_app_full(
    db: Db,
    adjust: impl FnOnce(&mut config::Config),
    sink: Option<Arc<dyn pipemedic::chat::ChatEventSink>>,
) -> Option<TestApp> {
    spawn_app_with_secrets(db, adjust, |_| {}, sink).await
}

/// Like [`spawn_app_with`], with a chance to add secrets (chat tokens) to
/// the test secrets, and an optional chat sink replacing pipemedic's own.
pub async fn spawn_app_with_secrets(
    db: Db,
    adjust: impl FnOnce(&mut config::Config),
    adjust_secrets: impl FnOnce(&mut Secrets),
    sink: Option<Arc<dyn pipemedic::chat::ChatEventSink>>,
) -> Option<TestApp> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let test_db = TestDb::new(db).await?;
    let mut config = config::from_sources(None, None, &Env::new()).expect("default config");
    config.server.listen = "127.0.0.1:0".into();
    config.server.max_body_bytes = 64 * 1024;
    config.server.shutdown_grace_s = 2;
    config.store.url = test_db.url.clone();
    // Each layer is tested on its own; the healing tests turn planning on.
    config.planner.plan_incidents = false;
    // No test reaches AWS: evidence is tested against its stand-ins.
    config.evidence.fetch_logs = false;
    config.evidence.codebuild_usage = false;
    adjust(&mut config);
    let aws = test_aws_settings(&config.aws);
    let mut secrets = test_secrets();
    adjust_secrets(&mut secrets);
    let loaded = Loaded {
        config,
        secrets,
        source: None,
    };
    let clock = Arc::new(ManualClock::new(t("2026-11-25T12:00:00Z")));
    let mut app = Application::build_with(loaded, clock.clone(), aws)
        .await
        .expect("application builds");
    if let Some(sink) = sink {
        app.set_chat_sink(sink);
    }
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.state().store.clone();
    let shutdown = app.shutdown_token();
    let incidents = app.state().incidents.clone();
    let healing = app.state().healing.clone();
    let server = tokio::spawn(app.run_until_stopped());
    Some(TestApp {
        base,
        http: reqwest::Client::new(),
        store,
        clock,
        shutdown,
        incidents,
        healing,
        server,
        _db: test_db,
    })
}

/// Runs a test body against SQLite and, when configured, PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::helpers::postgres_url().is_none() {
                        eprintln!("PIPEMEDIC_TEST_POSTGRES_URL not set; PostgreSQL variant skipped");
                        return;
                    }
                    super::$name($crate::helpers::Db::Postgres).await;
                }
            )*
        }
    };
}
