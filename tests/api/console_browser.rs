//! The web console in a real browser: headless Chromium driven through
//! chromium-driver with plain WebDriver calls (reqwest). It signs in, opens
//! every page, checks the rendered DOM (the chart's run points, the votes,
//! no script element from CI text) and saves a screenshot of each page
//! under the target directory (`console-screenshots/`).
//!
//! Runs only when `PIPEMEDIC_BROWSER` names the Chromium binary (`.ci/run`
//! sets it after installing Debian's `chromium` and `chromium-driver`);
//! `PIPEMEDIC_CHROMEDRIVER` overrides `/usr/bin/chromedriver`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::console::{seed, APPROVER, SEEDED_RUNS};
use crate::helpers::{spawn_app, Db, READ_TOKEN};

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session in it.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start(chromium: &str) -> Self {
        let driver_path = std::env::var("PIPEMEDIC_CHROMEDRIVER")
            .unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_path}: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        // A guard against a driver that never comes up, not a speed check.
        let mut ready = false;
        for _ in 0..300 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["value"]["ready"].as_bool())
                    == Some(true)
                {
                    ready = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "{driver_path} did not become ready");
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,1400"]
                }
            }}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_string();
        Self {
            driver,
            base,
            session,
            http,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(
            answer["value"].get("error").is_none(),
            "WebDriver {path}: {answer}"
        );
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's address once it ends with `suffix`, or the last one seen
    /// after five seconds: a click's navigation may still be under way when
    /// the click returns.
    async fn wait_for_url(&self, suffix: &str) -> String {
        let mut seen = self.url().await;
        for _ in 0..50 {
            if seen.ends_with(suffix) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            seen = self.url().await;
        }
        seen
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn find(&self, css: &str) -> String {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches {css}"))
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64_decode(data.as_str().expect("screenshot data"));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} is a PNG");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

/// Standard base64 (the screenshot encoding), padding optional.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            other => panic!("not base64: {other}"),
        }
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_renders_in_headless_chromium() {
    let Some(chromium) = std::env::var("PIPEMEDIC_BROWSER")
        .ok()
        .filter(|b| !b.is_empty())
    else {
        eprintln!("PIPEMEDIC_BROWSER not set; the browser test is skipped");
        return;
    };
    let app = spawn_app(Db::Sqlite).await.unwrap();
    let incident = seed(&app).await;
    let browser = Browser::start(&chromium).await;

    // Signed out, every page leads to the sign-in form.
    browser.open(&app.url("/ui/incidents")).await;
    assert!(browser.url().await.ends_with("/ui/login"));
    browser.screenshot("login").await;
    let token = browser.find("#token").await;
    browser
        .call(
            reqwest::Method::POST,
            &format!("/element/{token}/value"),
            Some(json!({"text": READ_TOKEN})),
        )
        .await;
    let submit = browser.find("form.login button").await;
    browser
        .call(
            reqwest::Method::POST,
            &format!("/element/{submit}/click"),
            Some(json!({})),
        )
        .await;
    let landed = browser.wait_for_url("/ui").await;
    assert!(
        landed.ends_with("/ui"),
        "signed in, on the overview: {landed}: {}",
        browser.text("main").await
    );
    assert!(browser.text("header .who").await.contains("read token"));
    assert_eq!(browser.find_all("svg.spark").await.len(), 1);
    assert!(browser.text("main").await.contains("Open incidents (1)"));
    browser.screenshot("overview").await;

    browser.open(&app.url("/ui/pipelines/checkout")).await;
    let points = browser
        .find_all("section[aria-labelledby=charts-h] figure:first-of-type svg circle")
        .await;
    assert_eq!(points.len(), SEEDED_RUNS, "one point per run shown");
    assert_eq!(
        browser.find_all("svg .point.abnormal").await.len(),
        2,
        "duration and tests charts"
    );
    assert!(
        browser.find_all("script").await.is_empty(),
        "CI text made no script element"
    );
    browser.screenshot("pipeline").await;

    browser
        .open(&app.url(&format!("/ui/incidents/{incident}")))
        .await;
    let votes = browser.text("table.votes").await;
    assert!(
        votes.contains(APPROVER) && votes.contains("reaction"),
        "{votes}"
    );
    let plan = browser.text("article.plan").await;
    assert!(plan.contains("Flaky tests → retry"), "{plan}");
    assert!(browser
        .text("ol.timeline")
        .await
        .contains("incident_opened"));
    assert!(browser.find_all("script").await.is_empty());
    assert!(
        browser.find_all("img").await.is_empty(),
        "the audit detail's img stayed text"
    );
    browser.screenshot("incident").await;

    browser.open(&app.url("/ui/incidents")).await;
    assert!(browser.text("main table").await.contains("#1"));
    browser.screenshot("incidents").await;

    browser.open(&app.url("/ui/audit")).await;
    assert!(browser
        .text("table.audit")
        .await
        .contains("incident_opened"));
    browser.screenshot("audit").await;

    // Signing out ends the session in the browser too.
    let out = browser.find("header .who button").await;
    browser
        .call(
            reqwest::Method::POST,
            &format!("/element/{out}/click"),
            Some(json!({})),
        )
        .await;
    let signed_out = browser.wait_for_url("/ui/login").await;
    assert!(
        signed_out.ends_with("/ui/login"),
        "signed out: {signed_out}"
    );
    browser.open(&app.url("/ui")).await;
    assert!(browser.url().await.ends_with("/ui/login"));
}
