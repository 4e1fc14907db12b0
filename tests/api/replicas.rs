//! Several replicas on one PostgreSQL database: two real `pipemedic serve`
//! processes started together on a fresh schema both become ready, and
//! every migration is applied exactly once (they take turns under the
//! migration lock).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{Db, TestDb};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `pipemedic serve` child process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `pipemedic --config FILE serve` with `config_toml` (which
    /// must listen on `port`), its log (stderr) piped.
    pub fn start(dir: &std::path::Path, name: &str, port: u16, config_toml: &str) -> Self {
        Self::start_with(dir, name, port, config_toml, |_| {})
    }

    /// Like [`Server::start`], with a chance to set the child's environment.
    pub fn start_with(
        dir: &std::path::Path,
        name: &str,
        port: u16,
        config_toml: &str,
        env: impl FnOnce(&mut Command),
    ) -> Self {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, config_toml).expect("config written");
        let mut command = Command::new(env!("CARGO_BIN_EXE_pipemedic"));
        command
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("PIPEMEDIC_CONFIG")
            .env_remove("PIPEMEDIC_INGEST_TOKEN")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        env(&mut command);
        let child = command.spawn().expect("pipemedic serve starts");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits until `GET /readyz` answers 200; panics with the log if the
    /// process exits first or never gets ready.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
        for _ in 0..1200 {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("pipemedic serve exited ({status}): {}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let base = self.base.clone();
        panic!("{base} never became ready: {}", self.stderr());
    }

    /// Stops the process and returns its log.
    pub fn stderr(&mut self) -> String {
        use std::io::Read;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut out = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut out);
        }
        out
    }
}

fn replica_config(port: u16, url: &str) -> String {
    format!("[server]\nlisten = \"127.0.0.1:{port}\"\n\n[store]\nurl = \"{url}\"\nmax_connections = 4\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_starting_together_on_an_empty_database_migrate_once_and_become_ready() {
    let Some(db) = TestDb::new(Db::Postgres).await else {
        eprintln!("PIPEMEDIC_TEST_POSTGRES_URL not set; skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a_port, b_port) = (free_port(), free_port());
    let mut a = Server::start(dir.path(), "a", a_port, &replica_config(a_port, &db.url));
    let mut b = Server::start(dir.path(), "b", b_port, &replica_config(b_port, &db.url));
    let http = reqwest::Client::new();
    a.wait_ready(&http).await;
    b.wait_ready(&http).await;

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let rows = sqlx::query(
        "SELECT version, COUNT(*), SUM(CASE WHEN success THEN 1 ELSE 0 END) \
         FROM _sqlx_migrations GROUP BY version ORDER BY version",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    let applied: Vec<(i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            use sqlx::Row;
            (r.get(0), r.get(1), r.get(2))
        })
        .collect();
    let store = db.store().await;
    let schema = store.schema_status().await.unwrap();
    store.close().await;
    assert!(schema.is_current(), "{schema:?}");
    assert_eq!(applied.len(), schema.embedded, "{applied:?}");
    for (version, count, succeeded) in &applied {
        assert_eq!(
            (*count, *succeeded),
            (1, 1),
            "migration {version} recorded {count} times"
        );
    }
    // Both stay ready after the other finished starting.
    for server in [&a, &b] {
        assert_eq!(
            http.get(format!("{}/readyz", server.base))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}
