//! Versioned migrations, tracked in `schema_migrations`. Every statement is written for
//! ClickHouse 18.16 (the oldest server secpipe supports) and runs unchanged on current versions.
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::cluster::ClusterDdl;
use super::ClickHouseConfig;
use crate::SinkError;

/// One migration: a version, a name, and its SQL statements (separated by `;` lines).
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "scan_results",
        sql: include_str!("migrations/0001_scan_results.sql"),
    },
    Migration {
        version: 2,
        name: "scan_results_team",
        sql: include_str!("migrations/0002_scan_results_team.sql"),
    },
    Migration {
        version: 3,
        name: "notification_deliveries",
        sql: include_str!("migrations/0003_notification_deliveries.sql"),
    },
    Migration {
        version: 4,
        name: "analytics_tables",
        sql: include_str!("migrations/0004_analytics_tables.sql"),
    },
    Migration {
        version: 5,
        name: "analyst_views",
        sql: include_str!("migrations/0005_analyst_views.sql"),
    },
    Migration {
        version: 6,
        name: "scan_results_origin",
        sql: include_str!("migrations/0006_scan_results_origin.sql"),
    },
    Migration {
        version: 7,
        name: "repository_identity",
        sql: include_str!("migrations/0007_repository_identity.sql"),
    },
    Migration {
        version: 8,
        name: "admin_events_rhacs",
        sql: include_str!("migrations/0008_admin_events_rhacs.sql"),
    },
    Migration {
        version: 9,
        name: "notification_state",
        sql: include_str!("migrations/0009_notification_state.sql"),
    },
];

#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
struct Applied {
    version: u32,
    name: String,
    applied_at: u32,
}

/// The statements of a migration: comment lines dropped first (they may contain `;`), then
/// split on `;`.
pub fn statements(sql: &str) -> Vec<String> {
    let code: Vec<&str> = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    code.join("\n")
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The table of applied migrations (rewritten like a migration in cluster mode).
pub const SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
     (version UInt32, name String, applied_at DateTime) \
     ENGINE = MergeTree ORDER BY version";

/// Creates the database if needed and applies every migration not yet recorded. Safe to rerun.
/// Returns the migrations applied by this call. In cluster mode (`[clickhouse] cluster`) every
/// statement is rewritten for the cluster first (see `cluster.rs`); the rewriter reads the
/// applied migrations too, to know the tables they made.
pub async fn migrate(cfg: &ClickHouseConfig) -> Result<Vec<&'static Migration>, SinkError> {
    let mut cluster =
        (!cfg.cluster.is_empty()).then(|| ClusterDdl::new(&cfg.cluster, &cfg.database));
    let create_db = match &cluster {
        Some(ddl) => ddl.create_database(),
        None => format!("CREATE DATABASE IF NOT EXISTS `{}`", cfg.database),
    };
    cfg.server_client()
        .query(&create_db)
        .execute()
        .await
        .map_err(super::classify)?;
    let db = cfg.client();
    let mut rewrite = |stmt: &str| -> Result<Vec<String>, String> {
        match cluster.as_mut() {
            Some(ddl) => ddl.rewrite(stmt),
            None => Ok(vec![stmt.to_string()]),
        }
    };
    for stmt in rewrite(SCHEMA_MIGRATIONS).map_err(SinkError::Rejected)? {
        db.query(&stmt).execute().await.map_err(super::classify)?;
    }
    let done: Vec<u32> = db
        .query("SELECT version FROM schema_migrations")
        .fetch_all::<u32>()
        .await
        .map_err(super::classify)?;
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let mut run = Vec::new();
        for stmt in statements(m.sql) {
            run.extend(rewrite(&stmt).map_err(|e| {
                SinkError::Rejected(format!("migration {} ({}): {e}", m.version, m.name))
            })?);
        }
        if done.contains(&m.version) {
            continue;
        }
        for stmt in run {
            db.query(&stmt).execute().await.map_err(|e| {
                SinkError::Rejected(format!("migration {} ({}): {e}", m.version, m.name))
            })?;
        }
        let mut insert = db
            .insert::<Applied>("schema_migrations")
            .await
            .map_err(super::classify)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        insert
            .write(&Applied {
                version: m.version,
                name: m.name.to_string(),
                applied_at: now,
            })
            .await
            .map_err(super::classify)?;
        insert.end().await.map_err(super::classify)?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        applied.push(m);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_on_semicolons_and_drop_comments() {
        let s = statements(
            "-- c; with a semicolon\nCREATE TABLE a (x UInt8) ENGINE = Log;\n\n-- d\nSELECT 1;\n",
        );
        assert_eq!(s, vec!["CREATE TABLE a (x UInt8) ENGINE = Log", "SELECT 1"]);
    }

    #[test]
    fn migration_versions_are_strictly_increasing() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
    }
}

/// One migration's state in a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub version: u32,
    pub name: &'static str,
    /// When it was applied (seconds since the Unix epoch), or `None` if it is pending.
    pub applied_at: Option<u32>,
}

/// Every migration this build knows, applied or pending, without changing anything. A database
/// that does not exist yet has every migration pending.
pub async fn status(cfg: &ClickHouseConfig) -> Result<Vec<MigrationStatus>, SinkError> {
    let exists: u8 = cfg
        .server_client()
        .query("SELECT count() > 0 FROM system.tables WHERE database = ? AND name = 'schema_migrations'")
        .bind(&cfg.database)
        .fetch_one()
        .await
        .map_err(super::classify)?;
    let applied: Vec<Applied> = if exists == 1 {
        cfg.client()
            .query(
                "SELECT version, name, toUInt32(applied_at) AS applied_at FROM schema_migrations",
            )
            .fetch_all()
            .await
            .map_err(super::classify)?
    } else {
        Vec::new()
    };
    Ok(MIGRATIONS
        .iter()
        .map(|m| MigrationStatus {
            version: m.version,
            name: m.name,
            applied_at: applied
                .iter()
                .find(|a| a.version == m.version)
                .map(|a| a.applied_at),
        })
        .collect())
}
