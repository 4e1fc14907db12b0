//! Reading playbook files: front matter split, YAML parsing, and every check
//! a playbook must pass before it enters the [`Catalog`], each failure
//! reported with its file, line and field.
//!
//! The loader reads files and builds values; it never runs an action and
//! never consults an incident.
//!
//! This module holds the public entry points ([`load_dir`], [`check_dir`])
//! and the error and report types; `front_matter` splits a file and maps
//! YAML errors to lines, `parse` reads one playbook, `fields` checks
//! conditions and approval policies, `actions` checks actions and their
//! parameters.

mod actions;
mod fields;
mod front_matter;
mod parse;

pub use parse::parse_playbook;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::locate::{locate, path_segments};
use super::model::{Catalog, Playbook};
use front_matter::split_front_matter;

/// The playbooks shipped with pipemedic, used when no directory is given.
const BUNDLED: [(&str, &str); 6] = [
    (
        "flaky-tests.md",
        include_str!("../../../playbooks/flaky-tests.md"),
    ),
    (
        "resource-exhaustion.md",
        include_str!("../../../playbooks/resource-exhaustion.md"),
    ),
    (
        "deploy-regression.md",
        include_str!("../../../playbooks/deploy-regression.md"),
    ),
    (
        "dependency-outage.md",
        include_str!("../../../playbooks/dependency-outage.md"),
    ),
    (
        "hung-stage.md",
        include_str!("../../../playbooks/hung-stage.md"),
    ),
    (
        "build-duration-regression.md",
        include_str!("../../../playbooks/build-duration-regression.md"),
    ),
];

/// What the loader needs from the configuration.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Hosts that `http` actions may call: `hooks.example.com` or
    /// `*.example.com`. Empty: no `http` action is valid.
    pub http_allowed_hosts: Vec<String>,
}

/// One problem in one playbook file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlaybookError {
    pub file: PathBuf,
    /// 1-based line in the file; 0 when the problem is the file itself.
    pub line: usize,
    /// Path of the field in the front matter (`actions[0].with.mode`), or
    /// `front matter` / `body` / `file`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for PlaybookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.message
            )
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file.display(),
                self.line,
                self.field,
                self.message
            )
        }
    }
}

/// Result of checking a directory of playbooks (`pipemedic playbooks check`).
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Playbook files read.
    pub files: usize,
    /// Ids of the valid playbooks, with their files.
    pub valid: Vec<(String, PathBuf)>,
    pub errors: Vec<PlaybookError>,
}

impl CheckReport {
    /// 0 when every playbook is valid, 2 (bad input) otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.errors.is_empty() {
            0
        } else {
            2
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        if self.errors.is_empty() {
            writeln!(f, "{} playbooks OK", self.valid.len())
        } else {
            writeln!(
                f,
                "{} error(s) in {} file(s); {} playbook(s) valid",
                self.errors.len(),
                self.files,
                self.valid.len()
            )
        }
    }
}

/// Checks every `*.md` playbook in `dir` (a `README.md` is documentation
/// and skipped) and reports all problems at once.
pub fn check_dir(dir: &Path, options: &LoadOptions) -> CheckReport {
    check_dir_inner(dir, options).0
}

/// Loads every playbook in `dir`; any error rejects the whole directory.
pub fn load_dir(dir: &Path, options: &LoadOptions) -> Result<Catalog, Vec<PlaybookError>> {
    let (report, playbooks) = check_dir_inner(dir, options);
    if report.errors.is_empty() {
        Ok(catalog(playbooks, options))
    } else {
        Err(report.errors)
    }
}

impl Catalog {
    /// The playbooks shipped with pipemedic.
    pub fn bundled() -> Result<Self, Vec<PlaybookError>> {
        Self::bundled_with(&LoadOptions::default())
    }

    /// The playbooks in `dir` when it exists, the bundled ones otherwise
    /// (no directory configured, or the configured one is absent).
    pub fn load_or_bundled(
        dir: Option<&Path>,
        options: &LoadOptions,
    ) -> Result<Self, Vec<PlaybookError>> {
        match dir.filter(|d| d.is_dir()) {
            Some(dir) => load_dir(dir, options),
            None => Self::bundled_with(options),
        }
    }

    fn bundled_with(options: &LoadOptions) -> Result<Self, Vec<PlaybookError>> {
        let files = BUNDLED
            .iter()
            .map(|(name, text)| (PathBuf::from("playbooks").join(name), text.to_string()))
            .collect();
        let (report, playbooks) = check_files(files, options);
        if report.errors.is_empty() {
            Ok(catalog(playbooks, options))
        } else {
            Err(report.errors)
        }
    }
}

fn catalog(mut playbooks: Vec<Playbook>, options: &LoadOptions) -> Catalog {
    playbooks.sort_by(|a, b| a.id.cmp(&b.id));
    Catalog {
        playbooks,
        http_allowed_hosts: options.http_allowed_hosts.clone(),
    }
}

fn check_dir_inner(dir: &Path, options: &LoadOptions) -> (CheckReport, Vec<Playbook>) {
    let file_error = |file: &Path, message: String| PlaybookError {
        file: file.to_path_buf(),
        line: 0,
        field: "file".to_string(),
        message,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            let report = CheckReport {
                errors: vec![file_error(dir, format!("cannot read directory: {e}"))],
                ..CheckReport::default()
            };
            return (report, Vec::new());
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "md"))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.eq_ignore_ascii_case("README.md"))
        })
        .collect();
    paths.sort();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((path, text)),
            Err(e) => errors.push(file_error(&path, format!("cannot read: {e}"))),
        }
    }
    let (mut report, playbooks) = check_files(files, options);
    report.files += errors.len();
    errors.append(&mut report.errors);
    report.errors = errors;
    (report, playbooks)
}

fn check_files(
    files: Vec<(PathBuf, String)>,
    options: &LoadOptions,
) -> (CheckReport, Vec<Playbook>) {
    let mut report = CheckReport {
        files: files.len(),
        ..CheckReport::default()
    };
    let mut playbooks: Vec<Playbook> = Vec::new();
    let mut seen: HashMap<String, (PathBuf, usize)> = HashMap::new();
    for (path, text) in files {
        match parse_playbook(&path, &text, options) {
            Ok(playbook) => {
                let id_line = id_line(&text);
                if let Some((first, first_line)) = seen.get(&playbook.id) {
                    report.errors.push(PlaybookError {
                        file: path.clone(),
                        line: id_line,
                        field: "id".to_string(),
                        message: format!(
                            "duplicate playbook id `{}`, first defined at {}:{}",
                            playbook.id,
                            first.display(),
                            first_line
                        ),
                    });
                    continue;
                }
                seen.insert(playbook.id.clone(), (path.clone(), id_line));
                report.valid.push((playbook.id.clone(), path));
                playbooks.push(playbook);
            }
            Err(mut errors) => report.errors.append(&mut errors),
        }
    }
    (report, playbooks)
}

fn id_line(text: &str) -> usize {
    match split_front_matter(text) {
        Ok(front) => locate(front.yaml, &path_segments("id")) + front.offset,
        Err(_) => 1,
    }
}
