//! Backups of the embedded SQLite store: an online, consistent copy made
//! with `VACUUM INTO` while a server may keep writing (the copy is one
//! read transaction's snapshot), checked with `PRAGMA integrity_check`
//! before it takes the target's name.
//!
//! The source is opened as it is: never created, never migrated, never
//! written. The target appears whole or not at all: the copy is written
//! to a temporary file beside it and renamed into place. PostgreSQL
//! stores are refused with a pointer to `pg_dump`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection, Executor, Row};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "`pipemedic backup` copies the embedded SQLite store, and this store is PostgreSQL ({0}); \
         back it up with PostgreSQL's own tools, e.g. `pg_dump --format=custom --file=pipemedic.dump URL` \
         (restore with `pg_restore`)"
    )]
    Postgres(String),
    #[error("store URL {0:?} is neither sqlite: nor postgres://")]
    UnsupportedUrl(String),
    #[error("the store {0:?} is in memory; there is no file to back up")]
    InMemory(String),
    #[error("no SQLite store at {0} (store.url names it)")]
    NoSource(PathBuf),
    #[error("{0} already exists; pass --force to overwrite it")]
    Exists(PathBuf),
    #[error("{0} is the store itself; back up to another file")]
    SameFile(PathBuf),
    #[error("cannot read the store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("copying {from} to {to} failed: {source}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("the copy failed its integrity check ({detail}); {target} was not written")]
    Integrity { target: PathBuf, detail: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BackupError {
    /// The error is the caller's to fix (wrong store, existing file, bad
    /// path), not a failure while copying.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Postgres(_)
                | Self::UnsupportedUrl(_)
                | Self::InMemory(_)
                | Self::NoSource(_)
                | Self::Exists(_)
                | Self::SameFile(_)
        )
    }
}

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupReport {
    pub source: PathBuf,
    pub target: PathBuf,
    /// Size of the copy.
    pub bytes: u64,
    /// Runs in the copy.
    pub runs: i64,
}

/// The file a `sqlite:` store URL names; errors for PostgreSQL, memory
/// and other schemes. `shown` is the URL as it may be printed.
pub fn sqlite_file(url: &str) -> Result<PathBuf, BackupError> {
    let shown = crate::config::redact_url(url);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(BackupError::Postgres(shown));
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(BackupError::UnsupportedUrl(shown));
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") || url.contains("mode=memory") {
        return Err(BackupError::InMemory(shown));
    }
    Ok(PathBuf::from(path))
}

async fn open(path: &Path, mode: &str) -> Result<AnyConnection, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let options = AnyConnectOptions::from_str(&format!("sqlite://{}?mode={mode}", path.display()))?;
    let mut conn = AnyConnection::connect_with(&options).await?;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    Ok(conn)
}

/// Copies the SQLite store at `url` to `target`, refusing to replace an
/// existing file unless `overwrite`. Safe while a server writes to the
/// store; the copy holds every transaction committed before it began.
pub async fn backup_sqlite(
    url: &str,
    target: &Path,
    overwrite: bool,
) -> Result<BackupReport, BackupError> {
    let source = sqlite_file(url)?;
    if !source.is_file() {
        return Err(BackupError::NoSource(source));
    }
    if target.exists() {
        let same = match (source.canonicalize(), target.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Err(BackupError::SameFile(target.to_path_buf()));
        }
        if !overwrite {
            return Err(BackupError::Exists(target.to_path_buf()));
        }
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    let partial = target.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let result = copy_and_check(&source, &partial, target).await;
    let report = match result {
        Ok(runs) => {
            let placed = sync(&partial).and_then(|()| std::fs::rename(&partial, target));
            placed.map_err(|source| BackupError::Io {
                path: target.to_path_buf(),
                source,
            })?;
            let bytes = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
            Ok(BackupReport {
                source: source.clone(),
                target: target.to_path_buf(),
                bytes,
                runs,
            })
        }
        Err(e) => Err(e),
    };
    if report.is_err() {
        for leftover in [
            partial.clone(),
            PathBuf::from(format!("{}-wal", partial.display())),
            PathBuf::from(format!("{}-shm", partial.display())),
        ] {
            let _ = std::fs::remove_file(leftover);
        }
    }
    report
}

fn sync(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// Writes the copy to `partial` and checks it; returns its run count.
async fn copy_and_check(source: &Path, partial: &Path, target: &Path) -> Result<i64, BackupError> {
    let _ = std::fs::remove_file(partial);
    let mut conn = open(source, "rw").await.map_err(|e| BackupError::Open {
        path: source.to_path_buf(),
        source: e,
    })?;
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(partial.display().to_string())
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    copied.map_err(|e| BackupError::Copy {
        from: source.to_path_buf(),
        to: target.to_path_buf(),
        source: e,
    })?;
    let mut copy = open(partial, "rw").await.map_err(|e| BackupError::Open {
        path: partial.to_path_buf(),
        source: e,
    })?;
    let checked = check(&mut copy).await;
    let _ = copy.close().await;
    match checked {
        Ok(Ok(runs)) => Ok(runs),
        Ok(Err(detail)) => Err(BackupError::Integrity {
            target: target.to_path_buf(),
            detail,
        }),
        Err(e) => Err(BackupError::Integrity {
            target: target.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

/// `Ok(Ok(runs))` when the copy is intact, `Ok(Err(problems))` when not.
async fn check(conn: &mut AnyConnection) -> Result<Result<i64, String>, sqlx::Error> {
    let rows = sqlx::query("PRAGMA integrity_check")
        .fetch_all(&mut *conn)
        .await?;
    let verdict: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
    if verdict != ["ok"] {
        return Ok(Err(verdict.join("; ")));
    }
    let runs: i64 = sqlx::query("SELECT COUNT(*) FROM runs")
        .fetch_one(&mut *conn)
        .await?
        .get(0);
    Ok(Ok(runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_their_file_or_are_refused() {
        assert_eq!(
            sqlite_file("sqlite://pipemedic.db").unwrap(),
            PathBuf::from("pipemedic.db")
        );
        assert_eq!(
            sqlite_file("sqlite:///var/lib/pipemedic/pm.db?mode=rwc").unwrap(),
            PathBuf::from("/var/lib/pipemedic/pm.db")
        );
        assert_eq!(
            sqlite_file("sqlite:data.db").unwrap(),
            PathBuf::from("data.db")
        );
        let pg = sqlite_file("postgres://pm:hunter2@db/pm").unwrap_err();
        assert!(matches!(pg, BackupError::Postgres(_)));
        let text = pg.to_string();
        assert!(text.contains("pg_dump"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(matches!(
            sqlite_file("sqlite::memory:").unwrap_err(),
            BackupError::InMemory(_)
        ));
        assert!(matches!(
            sqlite_file("mysql://x").unwrap_err(),
            BackupError::UnsupportedUrl(_)
        ));
    }
}
