//! Quiet, lazy AWS: a configuration that uses no AWS never loads the AWS
//! configuration, so no instance-metadata (IMDS) request is made and no
//! IMDS warning is logged; a feature that needs AWS loads it once.
//!
//! In process, the application's [`AwsSettings::loads`] counts loads. In a
//! real `pipemedic serve` child, the IMDS endpoint is pointed at a local
//! listener that counts connections (the child's environment only; this
//! process's environment is never changed).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pipemedic::aws::AwsSettings;
use pipemedic::clock::ManualClock;
use pipemedic::config::PlannerBackend;
use pipemedic::startup::Application;

use crate::helpers::{loaded, t, test_aws_settings, test_secrets, Db, TestDb};
use crate::replicas::{free_port, Server};

async fn loads_at_start(adjust: impl FnOnce(&mut pipemedic::config::Config)) -> usize {
    let db = TestDb::new(Db::Sqlite).await.unwrap();
    let mut loaded = loaded(&db.url, "127.0.0.1:0", test_secrets());
    adjust(&mut loaded.config);
    let aws: AwsSettings = test_aws_settings(&loaded.config.aws);
    let app = Application::build_with(
        loaded,
        Arc::new(ManualClock::new(t("2026-11-25T12:00:00Z"))),
        aws,
    )
    .await
    .expect("application builds");
    let settings = app.state().aws.clone();
    let stop = app.shutdown_token();
    let port = app.port();
    let server = tokio::spawn(app.run_until_stopped());
    // Serving (and every background task started) before counting.
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let loads = settings.loads();
    stop.cancel();
    let _ = server.await;
    loads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_without_aws_features_never_loads_aws() {
    assert_eq!(loads_at_start(|_| {}).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bedrock_planner_loads_aws_once_at_start() {
    let loads = loads_at_start(|c| {
        c.planner.backend = PlannerBackend::Bedrock;
        c.aws.endpoints.bedrock = "http://127.0.0.1:9".into();
    })
    .await;
    assert_eq!(loads, 1);
}

/// A TCP listener that counts the connections made to it and closes them.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, count)
}

/// Starts `pipemedic serve` with `extra` TOML, an AWS environment with no
/// region and no credentials, and IMDS on a counting listener; returns the
/// IMDS connections made by the time it is ready, and its log.
async fn serve_and_count_imds(extra: &str) -> (usize, String) {
    let (imds_port, imds) = counting_listener().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[store]\nurl = \"sqlite://{}\"\n\n{extra}",
        dir.path().join("pm.db").display()
    );
    let missing = dir.path().join("no-such-aws-file");
    let mut server = Server::start_with(dir.path(), "serve", port, &config, |c| {
        for var in [
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_PROFILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_EC2_METADATA_DISABLED",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ] {
            c.env_remove(var);
        }
        c.env("AWS_CONFIG_FILE", &missing)
            .env("AWS_SHARED_CREDENTIALS_FILE", &missing)
            .env(
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                format!("http://127.0.0.1:{imds_port}"),
            );
    });
    server.wait_ready(&reqwest::Client::new()).await;
    let connections = imds.load(Ordering::SeqCst);
    (connections, server.stderr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_aws_features_makes_no_imds_call_and_logs_no_imds_warning() {
    let (connections, log) = serve_and_count_imds("").await;
    assert_eq!(connections, 0, "{log}");
    assert!(!log.to_lowercase().contains("imds"), "{log}");
    assert!(log.contains("Listening."), "the log was captured: {log}");
}

/// The control: the same child with the Bedrock planner looks for its
/// region in instance metadata, so the listener above would see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_the_bedrock_planner_asks_imds_for_a_region() {
    let (connections, log) = serve_and_count_imds("[planner]\nbackend = \"bedrock\"\n").await;
    assert!(connections > 0, "{log}");
}
