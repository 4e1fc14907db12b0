//! Setting up: `pipemedic init` (the starter file), `pipemedic config
//! check` and `pipemedic playbooks check`, each as text or (`--json`) as
//! one JSON object whose shape the command's help documents.

use std::path::{Path, PathBuf};

use super::{load_config, Exit};
use crate::config::{self, Env};

pub(super) fn init(path: &Path, force: bool) -> Result<(), Exit> {
    if path.exists() && !force {
        return Err(Exit::BadInput(format!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        )));
    }
    std::fs::write(path, config::STARTER_TOML)
        .map_err(|e| Exit::Failure(anyhow::anyhow!("cannot write {}: {e}", path.display())))?;
    println!(
        "Wrote {}. Check it with `pipemedic config check`.",
        path.display()
    );
    Ok(())
}

/// Prints one JSON object on stdout.
fn print_json(value: &serde_json::Value) -> Result<(), Exit> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Exit::Failure(e.into()))?;
    println!("{text}");
    Ok(())
}

/// `pipemedic config check --json`: the result as one object; with
/// problems, `ok` is false, `problems` lists them all and the exit is 2.
fn config_check_json(path: Option<&Path>, env: &Env) -> Result<(), Exit> {
    let file = config::resolve_path(path, env);
    let source = file.as_ref().map(|p| p.display().to_string());
    let loaded = match config::load(file.as_deref(), env) {
        Ok(loaded) => loaded,
        Err(e) => {
            let problems: Vec<serde_json::Value> = e
                .problems
                .iter()
                .map(|p| serde_json::json!({"key": p.key, "message": p.message}))
                .collect();
            print_json(&serde_json::json!({
                "ok": false,
                "source": source,
                "problems": problems,
            }))?;
            return Err(Exit::BadInput(e.to_string()));
        }
    };
    // The redacted TOML is the one rendering that masks every secret-bearing
    // value; the JSON is made from it so both show the same.
    let shown: toml::Value = toml::from_str(&loaded.config.to_redacted_toml())
        .map_err(|e| Exit::Failure(anyhow::anyhow!("cannot render the configuration: {e}")))?;
    if let Err(e) = crate::http::console::templates::Templates::from_config(&loaded.config) {
        print_json(&serde_json::json!({
            "ok": false,
            "source": source,
            "problems": [{"key": "console.templates_dir", "message": e.to_string()}],
        }))?;
        return Err(Exit::BadInput(format!("console.templates_dir: {e}")));
    }
    let secrets: serde_json::Map<String, serde_json::Value> = loaded
        .secrets
        .summary()
        .into_iter()
        .map(|(name, set)| (name.to_string(), serde_json::Value::Bool(set)))
        .collect();
    print_json(&serde_json::json!({
        "ok": true,
        "source": loaded.source.as_ref().map(|p| p.display().to_string()),
        "config": serde_json::to_value(&shown).map_err(|e| Exit::Failure(e.into()))?,
        "secrets": secrets,
        "unauthenticated_routes": crate::startup::unauthenticated_routes(&loaded),
        "problems": [],
    }))
}

pub(super) fn config_check(path: Option<&Path>, env: &Env, json: bool) -> Result<(), Exit> {
    if json {
        return config_check_json(path, env);
    }
    let loaded = load_config(path, env)?;
    crate::http::console::templates::Templates::from_config(&loaded.config)
        .map_err(|e| Exit::BadInput(format!("console.templates_dir: {e}")))?;
    println!(
        "# effective configuration (source: {})",
        loaded
            .source
            .as_ref()
            .map_or("built-in defaults".to_string(), |p| p.display().to_string())
    );
    print!("{}", loaded.config.to_redacted_toml());
    println!("\n# secrets (values never shown)");
    for (name, set) in loaded.secrets.summary() {
        println!("# {name} = {}", if set { "set" } else { "not set" });
    }
    let open = crate::startup::unauthenticated_routes(&loaded);
    if !open.is_empty() {
        println!(
            "\n# note: without these secrets `serve` only listens on loopback: {}",
            open.join(", ")
        );
    }
    Ok(())
}

/// `pipemedic playbooks check [DIR]`: every problem with its file, line and
/// field on stdout; exit 2 when there is any.
pub(super) fn playbooks_check(
    path: Option<&Path>,
    env: &Env,
    dir: Option<&Path>,
    json: bool,
) -> Result<(), Exit> {
    let loaded = load_config(path, env)?;
    let dir = dir.map_or_else(
        || PathBuf::from(&loaded.config.planner.playbooks_dir),
        Path::to_path_buf,
    );
    let options = crate::playbooks::LoadOptions {
        http_allowed_hosts: loaded.config.remediate.http_allowlist.clone(),
    };
    let report = crate::playbooks::check_dir(&dir, &options);
    if json {
        let playbooks: Vec<serde_json::Value> = report
            .valid
            .iter()
            .map(|(id, file)| serde_json::json!({"id": id, "file": file.display().to_string()}))
            .collect();
        let errors: Vec<serde_json::Value> = report
            .errors
            .iter()
            .map(|e| {
                serde_json::json!({
                    "file": e.file.display().to_string(),
                    "line": e.line,
                    "field": e.field,
                    "message": e.message,
                })
            })
            .collect();
        print_json(&serde_json::json!({
            "ok": report.errors.is_empty(),
            "dir": dir.display().to_string(),
            "files": report.files,
            "playbooks": playbooks,
            "errors": errors,
        }))?;
    } else {
        for e in &report.errors {
            println!("{e}");
        }
    }
    if report.errors.is_empty() {
        if !json {
            println!("{}: {} playbooks OK", dir.display(), report.valid.len());
        }
        Ok(())
    } else {
        Err(Exit::BadInput(format!(
            "{}: {} error(s) in {} file(s); {} playbook(s) valid",
            dir.display(),
            report.errors.len(),
            report.files,
            report.valid.len()
        )))
    }
}
