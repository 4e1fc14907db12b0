//! `pipemedic backup FILE [--force]`: an online, consistent copy of the
//! embedded SQLite store named by `store.url`, made while a server may keep
//! writing to it. The copying itself is the store's
//! ([`crate::store::backup`]); this maps its outcome to exit codes.

use std::path::Path;

use super::{load_config, Exit};
use crate::config::Env;

pub(super) async fn backup(
    path: Option<&Path>,
    env: &Env,
    file: &Path,
    force: bool,
) -> Result<(), Exit> {
    let loaded = load_config(path, env)?;
    let report = crate::store::backup::backup_sqlite(&loaded.config.store.url, file, force)
        .await
        .map_err(|e| {
            if e.is_bad_input() {
                Exit::BadInput(e.to_string())
            } else {
                Exit::Failure(e.into())
            }
        })?;
    println!(
        "Backed up {} to {}: {} runs, {} bytes, integrity ok.",
        report.source.display(),
        report.target.display(),
        report.runs,
        report.bytes
    );
    Ok(())
}
