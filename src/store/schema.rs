//! The schema: each backend's embedded migrations, applying them at
//! connect time, and comparing what a database has applied with what this
//! build embeds (readiness).
//!
//! On PostgreSQL the migrations run on one dedicated connection that holds
//! a session-level advisory lock for the whole run, keyed by the schema
//! (`current_schema()`), so replicas starting together on an empty
//! database wait for each other and every migration is applied exactly
//! once. SQLite needs no lock: one file belongs to one process.
//!
//! This module must not change data outside `_sqlx_migrations` and the
//! migrations themselves.

use sqlx::any::AnyConnectOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, Connection, Row};

use super::{Backend, Store, StoreError};

static SQLITE: Migrator = sqlx::migrate!("src/store/migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("src/store/migrations/postgres");

/// First key of the two-key advisory lock that guards migrations ("pmmg");
/// the second is a hash of the schema, so schemas migrate independently.
/// sqlx's own migration lock uses the one-key space, which does not
/// overlap with this one.
const MIGRATION_LOCK_CLASS: i32 = 0x706d_6d67;

/// The migrations this build embeds for `backend`.
pub(crate) fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    }
}

/// Applies every pending migration. On PostgreSQL this opens a connection
/// of its own (outside `pool`), takes the migration lock, runs the
/// migrations on that connection, unlocks and closes it; closing ends the
/// session, which releases the lock even when a migration failed.
pub(super) async fn migrate(
    pool: &AnyPool,
    backend: Backend,
    options: &AnyConnectOptions,
    shown_url: &str,
) -> Result<(), StoreError> {
    match backend {
        Backend::Sqlite => Ok(SQLITE.run(pool).await?),
        Backend::Postgres => {
            let mut conn = AnyConnection::connect_with(options)
                .await
                .map_err(|source| StoreError::Connect {
                    url: shown_url.to_string(),
                    source,
                })?;
            let result = migrate_locked(&mut conn).await;
            let closed = conn.close().await;
            result?;
            closed?;
            Ok(())
        }
    }
}

const SCHEMA_KEY: &str = "hashtext(coalesce(current_schema(), ''))";

async fn migrate_locked(conn: &mut AnyConnection) -> Result<(), StoreError> {
    let got: bool = sqlx::query(&format!("SELECT pg_try_advisory_lock($1, {SCHEMA_KEY})"))
        .bind(MIGRATION_LOCK_CLASS)
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    if !got {
        tracing::info!("Another replica is applying migrations; waiting for it.");
        sqlx::query(&format!("SELECT pg_advisory_lock($1, {SCHEMA_KEY})"))
            .bind(MIGRATION_LOCK_CLASS)
            .execute(&mut *conn)
            .await?;
    }
    let ran = POSTGRES.run(&mut *conn).await;
    let unlocked = sqlx::query(&format!("SELECT pg_advisory_unlock($1, {SCHEMA_KEY})"))
        .bind(MIGRATION_LOCK_CLASS)
        .execute(&mut *conn)
        .await;
    ran?;
    unlocked?;
    Ok(())
}

/// How a database's applied migrations compare with this build's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Migrations this build embeds.
    pub embedded: usize,
    /// Embedded migrations the database has not applied (successfully),
    /// by version, ascending.
    pub pending: Vec<i64>,
}

impl SchemaStatus {
    /// Every embedded migration is applied. A database migrated further by
    /// a newer build is current too: migrations only add.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
    }
}

impl Store {
    /// Reads the applied migrations and compares them with the embedded
    /// ones; fails when the store does not answer. Read-only.
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(self.pool())
            .await?;
        let applied: std::collections::BTreeSet<i64> =
            rows.iter().map(|r| r.get::<i64, _>(0)).collect();
        let embedded = migrator(self.backend()).iter();
        let mut status = SchemaStatus {
            embedded: 0,
            pending: Vec::new(),
        };
        for migration in embedded {
            status.embedded += 1;
            if !applied.contains(&migration.version) {
                status.pending.push(migration.version);
            }
        }
        status.pending.sort_unstable();
        Ok(status)
    }
}
