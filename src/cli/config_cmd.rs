//! Setting up: `pipemedic init` (the starter file), `pipemedic config
//! check` and `pipemedic playbooks check`.

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

pub(super) fn config_check(path: Option<&Path>, env: &Env) -> Result<(), Exit> {
    let loaded = load_config(path, env)?;
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
    for e in &report.errors {
        println!("{e}");
    }
    if report.errors.is_empty() {
        println!("{}: {} playbooks OK", dir.display(), report.valid.len());
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
