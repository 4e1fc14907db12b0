//! The HTTP edge under a hostile network: header, body and idle timeouts,
//! the connection cap under a small open-file limit, the webhook rate
//! limit, content types, and one JSON error shape for every refusal.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app_with, Db, TestApp, GITLAB_TOKEN, INGEST_TOKEN, READ_TOKEN};

/// Generous guard against a hang; no test relies on it being short.
const GUARD: Duration = Duration::from_secs(60);

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connects")
}

/// Reads until the server closes the connection (a reset counts as
/// closed); what it sent before is returned.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(GUARD, stream.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open; saw {seen:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one whole HTTP response with a `Content-Length` body.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if seen.len() >= head_end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(GUARD, stream.read(&mut buf))
            .await
            .expect("an answer")
            .expect("readable");
        assert!(n > 0, "closed before a full answer: {text}");
        seen.extend_from_slice(&buf[..n]);
    }
}

/// The JSON body of a raw response.
fn body_of(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let app = spawn_app_with(Db::Sqlite, |c| c.server.header_timeout_s = 0.3)
        .await
        .unwrap();
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: pipemedic\r\nX-Slow: ")
        .await
        .unwrap();
    let seen = read_until_closed(&mut stream).await;
    assert!(
        !String::from_utf8_lossy(&seen).contains("200 OK"),
        "{seen:?}"
    );
    // The server itself is fine.
    let ok = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let app = spawn_app_with(Db::Sqlite, |c| c.server.header_timeout_s = 0.3)
        .await
        .unwrap();
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: pipemedic\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Kept alive, then idle: the server ends it.
    let rest = read_until_closed(&mut stream).await;
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn a_body_that_stalls_gets_a_json_408() {
    let app = spawn_app_with(Db::Sqlite, |c| c.server.body_timeout_s = 0.3)
        .await
        .unwrap();
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /v1/runs HTTP/1.1\r\nHost: pipemedic\r\nAuthorization: Bearer {INGEST_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"pipeline\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert_eq!(body_of(&response)["code"], "timeout");
    assert_eq!(app.store.count_runs().await.unwrap(), 0);
}

#[tokio::test]
async fn a_full_connection_cap_queues_new_clients_until_one_frees() {
    let app = spawn_app_with(Db::Sqlite, |c| {
        c.server.max_connections = 8;
        c.server.header_timeout_s = 120.0;
    })
    .await
    .unwrap();
    // Eight kept-alive connections, each known to be served.
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut stream = connect(&app).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: pipemedic\r\n\r\n")
            .await
            .unwrap();
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    // A ninth client waits in the backlog instead of failing.
    let url = app.url("/healthz");
    let waiting = tokio::spawn(async move { reqwest::Client::new().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the cap did not hold");
    // One held connection ends; the waiting client is served.
    drop(held.pop());
    let answer = tokio::time::timeout(GUARD, waiting)
        .await
        .expect("served after a connection freed")
        .unwrap()
        .expect("answered");
    assert_eq!(answer.status(), 200);
}

/// A free port on loopback for a child server.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The finding: 1,100 idle connections against a 1,024 open-file limit made
/// `/healthz` fail. A real `pipemedic serve` whose soft and hard limits are
/// both 1,024 keeps its connections below the limit, and the header timeout
/// frees the idle ones, so `/healthz` answers while they are all held.
#[tokio::test]
async fn healthz_answers_while_more_idle_connections_than_files_are_held() {
    use std::os::unix::process::CommandExt;

    const FILES: u64 = 1024;
    const IDLE: usize = 1100;
    // This process holds the idle connections: it needs the files.
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if soft < (IDLE as u64) + 256 {
        eprintln!("open-file limit {soft} too low to hold {IDLE} connections; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("pipemedic.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nheader_timeout_s = 0.5\n\n\
             [store]\nurl = \"sqlite://{}\"\n",
            dir.path().join("pm.db").display()
        ),
    )
    .unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"));
    command
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env_remove("PIPEMEDIC_INGEST_TOKEN")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only setrlimit runs between fork and exec.
    unsafe {
        command.pre_exec(|| rlimit::setrlimit(rlimit::Resource::NOFILE, FILES, FILES));
    }
    let mut child = command.spawn().expect("pipemedic serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..300 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "pipemedic serve did not come up");

    let mut held = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        held.push(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("the backlog takes it"),
        );
    }
    let answer = tokio::time::timeout(
        GUARD,
        reqwest::Client::new().get(format!("{base}/healthz")).send(),
    )
    .await
    .expect("healthz answered while the idle connections are held")
    .expect("answered");
    assert_eq!(answer.status(), 200);
    assert!(child.try_wait().unwrap().is_none(), "the server died");
    drop(held);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn every_refusal_has_the_json_error_shape() {
    let app = spawn_app_with(Db::Sqlite, |_| {}).await.unwrap();
    let cases = [
        (reqwest::Method::GET, "/no/such/route", 404, "not_found"),
        (
            reqwest::Method::DELETE,
            "/v1/runs",
            405,
            "method_not_allowed",
        ),
        (reqwest::Method::GET, "/v1/ask", 405, "method_not_allowed"),
        (
            reqwest::Method::GET,
            "/v1/incidents/abc",
            400,
            "invalid_parameter",
        ),
        (
            reqwest::Method::GET,
            "/v1/incidents?limit=many",
            400,
            "invalid_parameter",
        ),
        (
            reqwest::Method::GET,
            "/v1/incidents?active=perhaps",
            400,
            "invalid_parameter",
        ),
        (reqwest::Method::GET, "/v1/incidents/99", 404, "not_found"),
    ];
    for (method, path, status, code) in cases {
        let response = app
            .http
            .request(method.clone(), app.url(path))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{method} {path}");
        let allow = response.headers().get("allow").cloned();
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{method} {path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        if status == 405 {
            assert!(allow.is_some(), "{method} {path} names the allowed methods");
        }
    }
    let body: Value = app
        .http
        .get(app.url("/v1/incidents/abc"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("abc"),
        "says what is wrong: {body}"
    );
}

#[tokio::test]
async fn json_routes_refuse_other_content_types() {
    let app = spawn_app_with(Db::Sqlite, |_| {}).await.unwrap();
    let run = r#"{"pipeline": "p", "run_id": "1", "status": "succeeded"}"#;
    for path in [
        "/v1/runs",
        "/v1/ask",
        "/v1/webhooks/github",
        "/v1/webhooks/gitlab",
        "/v1/webhooks/aws",
        "/discord/interactions",
    ] {
        let response = app
            .http
            .post(app.url(path))
            .bearer_auth(if path == "/v1/ask" {
                READ_TOKEN
            } else {
                INGEST_TOKEN
            })
            .header("x-gitlab-token", GITLAB_TOKEN)
            .header("x-pipemedic-secret", crate::helpers::AWS_SECRET)
            .header("content-type", "text/plain")
            .body(run)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unsupported_media_type", "{path}: {body}");
    }
    assert_eq!(app.store.count_runs().await.unwrap(), 0);
    // JSON with a charset, and no Content-Type at all, are still read.
    let ok = app
        .http
        .post(app.url("/v1/runs"))
        .bearer_auth(INGEST_TOKEN)
        .header("content-type", "application/json; charset=utf-8")
        .body(run)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok = app
        .http
        .post(app.url("/v1/runs"))
        .bearer_auth(INGEST_TOKEN)
        .body(run)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn webhook_routes_are_rate_limited_per_source_with_a_json_429() {
    let app = spawn_app_with(Db::Sqlite, |c| {
        c.server.webhook_rate_per_second = 1;
        c.server.webhook_burst = 3;
    })
    .await
    .unwrap();
    let mut statuses = Vec::new();
    let mut refusal = None;
    for _ in 0..8 {
        let response = app
            .http
            .post(app.url("/v1/webhooks/gitlab"))
            .header("x-gitlab-token", "wrong")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 && refusal.is_none() {
            let retry_after = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap();
            assert!(retry_after >= 1);
            let body: Value = response.json().await.unwrap();
            refusal = Some(body);
        }
    }
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(refusal.unwrap()["code"], "rate_limited");
    // Authenticated and health routes are not limited by it.
    for _ in 0..5 {
        let ok = app.http.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
    }
}
