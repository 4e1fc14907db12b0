//! The command line's help and JSON: every argument of every command has
//! help text (the clap command tree is walked), and `--json` on `config
//! check`, `playbooks check`, `plan` and `ingest` prints the documented
//! shapes, run through the real binary.

use std::path::PathBuf;
use std::time::Duration;

use clap::CommandFactory;
use serde_json::Value;

use crate::helpers::{spawn_app, Db};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the real binary from the repository root with `env` added to its
/// environment (never this process's).
fn pipemedic(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"));
    command
        .args(args)
        .current_dir(root())
        .env_remove("PIPEMEDIC_CONFIG")
        .env_remove("PIPEMEDIC_INGEST_TOKEN");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("pipemedic runs")
}

/// The stdout of `out` as one JSON object.
fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn keys(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// Every argument without help text, as `command path: --flag`.
fn missing_help(command: &clap::Command, path: &str, out: &mut Vec<String>) {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let has_help = arg
            .get_help()
            .is_some_and(|h| !h.to_string().trim().is_empty())
            || arg
                .get_long_help()
                .is_some_and(|h| !h.to_string().trim().is_empty());
        if !has_help {
            out.push(format!("{path}: {id}"));
        }
    }
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        if sub.get_about().is_none() {
            out.push(format!("{path} {}: (no about)", sub.get_name()));
        }
        missing_help(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

#[test]
fn every_command_and_argument_has_help_text() {
    let tree = pipemedic::cli::Cli::command();
    tree.clone().debug_assert();
    let mut missing = Vec::new();
    missing_help(&tree, "pipemedic", &mut missing);
    assert!(
        missing.is_empty(),
        "without help text:\n{}",
        missing.join("\n")
    );
    // The walk reaches nested commands and flattened arguments.
    let check = tree.find_subcommand("check").unwrap();
    assert!(check.get_arguments().any(|a| a.get_id() == "tests_failed"));
    let config = tree.find_subcommand("config").unwrap();
    assert!(config.find_subcommand("check").is_some());
}

#[test]
fn config_check_json_shows_the_effective_configuration_without_secret_values() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipemedic.toml");
    std::fs::write(
        &config,
        "[store]\nurl = \"postgres://pm:db-password-123@db.internal/pm\"\n",
    )
    .unwrap();
    let out = pipemedic(
        &[
            "--config",
            config.to_str().unwrap(),
            "config",
            "check",
            "--json",
        ],
        &[("PIPEMEDIC_INGEST_TOKEN", "ingest-token-456")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!text.contains("db-password-123"), "{text}");
    assert!(!text.contains("ingest-token-456"), "{text}");
    let v = json_of(&out);
    assert_eq!(
        keys(&v),
        [
            "config",
            "ok",
            "problems",
            "secrets",
            "source",
            "unauthenticated_routes"
        ]
    );
    assert_eq!(v["ok"], true);
    assert_eq!(v["source"], config.to_str().unwrap());
    assert_eq!(v["problems"], serde_json::json!([]));
    assert_eq!(v["config"]["server"]["listen"], "127.0.0.1:8080");
    let url = v["config"]["store"]["url"].as_str().unwrap();
    assert!(
        url.starts_with("postgres://pm:") && url.ends_with("@db.internal/pm"),
        "{url}"
    );
    assert_eq!(v["secrets"]["PIPEMEDIC_INGEST_TOKEN"], true);
    assert_eq!(v["secrets"]["PIPEMEDIC_ADMIN_TOKEN"], false);
    assert!(v["unauthenticated_routes"].is_array());
}

#[test]
fn config_check_json_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipemedic.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"not an address\"\nno_such_key = 1\n",
    )
    .unwrap();
    let out = pipemedic(
        &[
            "--config",
            config.to_str().unwrap(),
            "config",
            "check",
            "--json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let v = json_of(&out);
    assert_eq!(keys(&v), ["ok", "problems", "source"]);
    assert_eq!(v["ok"], false);
    let problems = v["problems"].as_array().unwrap();
    assert!(!problems.is_empty(), "{v}");
    for p in problems {
        assert_eq!(keys(p), ["key", "message"], "{p}");
    }
    assert!(
        problems
            .iter()
            .any(|p| p["message"].as_str().unwrap().contains("no_such_key")
                || p["key"].as_str().unwrap().contains("no_such_key")),
        "{v}"
    );
}

#[test]
fn playbooks_check_json_reports_valid_playbooks_and_every_error() {
    let out = pipemedic(&["playbooks", "check", "playbooks", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let v = json_of(&out);
    assert_eq!(keys(&v), ["dir", "errors", "files", "ok", "playbooks"]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["playbooks"].as_array().unwrap().len(), 6, "{v}");
    assert!(v["playbooks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == "flaky-tests" && p["file"].as_str().unwrap().ends_with(".md")));

    let out = pipemedic(
        &[
            "playbooks",
            "check",
            "tests/fixtures/playbooks/broken",
            "--json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let v = json_of(&out);
    assert_eq!(v["ok"], false);
    let errors = v["errors"].as_array().unwrap();
    assert!(!errors.is_empty());
    for e in errors {
        assert_eq!(keys(e), ["field", "file", "line", "message"], "{e}");
        assert!(e["line"].is_u64(), "{e}");
    }
}

#[test]
fn ingest_json_summarises_dry_runs_refusals_and_stored_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runs.jsonl");
    std::fs::write(
        &file,
        "{\"pipeline\": \"p\", \"run_id\": \"1\", \"status\": \"succeeded\", \"finished_at\": \"2026-11-20T10:00:00Z\"}\n\
         {\"pipeline\": \"p\", \"run_id\": \"2\", \"status\": \"exploded\", \"finished_at\": \"2026-11-20T11:00:00Z\"}\n\
         {\"pipeline\": \"p\", \"run_id\": \"3\", \"status\": \"failed\", \"finished_at\": \"2026-11-20T12:00:00Z\"}\n",
    )
    .unwrap();
    let config = dir.path().join("pipemedic.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}\"\n",
            dir.path().join("pm.db").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let file = file.to_str().unwrap();
    let shape = [
        "dry_run",
        "duplicates",
        "file",
        "inserted",
        "lines_invalid",
        "lines_valid",
        "problems",
        "stored",
        "updated",
    ];

    let out = pipemedic(
        &["--config", config, "ingest", file, "--dry-run", "--json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let v = json_of(&out);
    assert_eq!(keys(&v), shape);
    assert_eq!(
        (v["dry_run"].clone(), v["stored"].clone()),
        (true.into(), false.into())
    );
    assert_eq!(
        (v["lines_valid"].as_u64(), v["lines_invalid"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(v["problems"][0]["line"], 2, "{v}");
    assert_eq!(v["problems"][0]["field"], "status", "{v}");
    assert!(out.stderr.is_empty() || !String::from_utf8_lossy(&out.stderr).contains("line 2:"));

    let out = pipemedic(&["--config", config, "ingest", file, "--json"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let v = json_of(&out);
    assert_eq!(
        (v["stored"].clone(), v["inserted"].clone()),
        (false.into(), 0.into())
    );

    let out = pipemedic(
        &[
            "--config",
            config,
            "ingest",
            file,
            "--skip-invalid",
            "--json",
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(keys(&v), shape);
    assert_eq!(v["stored"], true);
    assert_eq!(
        (v["inserted"].as_u64(), v["duplicates"].as_u64()),
        (Some(2), Some(0))
    );
    let again = json_of(&pipemedic(
        &[
            "--config",
            config,
            "ingest",
            file,
            "--skip-invalid",
            "--json",
        ],
        &[],
    ));
    assert_eq!(
        (again["inserted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(2))
    );
}

async fn plan_json_prints_the_validated_plan(db: Db) {
    let app = spawn_app(db).await.unwrap();
    crate::planner::flaky_anomaly(&app, crate::planner::FLAKY_LOG).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipemedic.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = {:?}\n[planner]\ngeneric_ci = \"codepipeline\"\n",
            app._db.url
        ),
    )
    .unwrap();
    let mut incident = None;
    for _ in 0..500 {
        incident = app
            .store
            .incidents(true, Some("checkout-service"), 1)
            .await
            .unwrap()
            .pop();
        if incident.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = incident.expect("an incident").id;
    let config = config.to_str().unwrap().to_string();
    let run = |extra: &'static [&'static str]| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let id = id.to_string();
            let mut args = vec!["--config", config.as_str(), "plan", id.as_str(), "--json"];
            args.extend_from_slice(extra);
            pipemedic(&args, &[])
        })
    };
    let out = run(&["--dry-run"]).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(
        keys(&v),
        ["attempts", "errors", "incident", "plan", "plan_id", "planner", "status", "usage"]
    );
    assert_eq!(v["incident"], id);
    assert_eq!(v["plan_id"], Value::Null);
    assert_eq!(v["planner"], "offline");
    assert_eq!(v["status"], "valid");
    assert_eq!(v["errors"], serde_json::json!([]));
    assert_eq!(v["usage"], serde_json::json!({"input": 0, "output": 0}));
    let plan = &v["plan"];
    assert_eq!(plan["rule_based"], true);
    assert_eq!(plan["steps"][0]["playbook"], "flaky-tests");
    assert_eq!(plan["steps"][0]["action"], "rerun-tests-clean");
    assert_eq!(plan["steps"][0]["kind"], "codepipeline.retry_stage");
    assert!(
        plan["summary"].is_string() && plan["risk"].is_string(),
        "{plan}"
    );

    let out = run(&[]).await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v = json_of(&out);
    assert!(v["plan_id"].is_i64(), "stored: {v}");
}

crate::on_both_databases!(plan_json_prints_the_validated_plan);
