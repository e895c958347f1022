//! Expiry of old data. Tables are expired by dropping whole partitions older than their
//! retention, which works on every server version (ClickHouse 18.16 has no table TTL): a day
//! partition (`YYYYMMDD`) once its day is, a month partition (`YYYYMM`: `host_packages` and the
//! notifier's tables) once its whole month is, so those keep up to a month more.
//! On servers with TTL (19.6 and later) the tables also get an equivalent TTL, so they expire
//! between runs as well. Admin events are the exception: their retention can change at run time
//! and applies to existing events, so each run deletes the versions last seen longer ago than the
//! retention in force then (a mutation, available on 18.16 too) instead of dropping partitions
//! by the expiry stored at emission.
//! In cluster mode the partitions are those of the replicated `_local` tables of every shard
//! (`cluster()` over `system.parts`), dropped `ON CLUSTER`.
use serde::{Deserialize, Serialize};

use super::{classify, ClickHouseConfig};
use crate::SinkError;

/// Retention of the analytics tables (section `[retention]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// How often the loader runs the retention job, in seconds; 0 turns it off. Default 3600.
    pub interval_secs: u64,
    /// Days of `telemetry_events`. Default 30.
    pub telemetry_days: u32,
    /// Days of `heartbeat_rollups`. Default 90.
    pub heartbeat_days: u32,
    /// Days of `scan_failures`. Default 30.
    pub scan_failures_days: u32,
    /// Days of `host_packages` (month partitions). Default 30.
    pub host_packages_days: u32,
    /// Days of the notifier's attempts and outbox (`notification_deliveries`,
    /// `notification_outbox`; month partitions). Default 90. A restart resumes deliveries
    /// queued within `notify.resume_within_hours`, far less.
    pub notifications_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            interval_secs: 3600,
            telemetry_days: 30,
            heartbeat_days: 90,
            scan_failures_days: 30,
            host_packages_days: 30,
            notifications_days: 90,
        }
    }
}

/// One table's rule: partitions (`YYYYMMDD` or `YYYYMM`) wholly older than `keep_days` days
/// before today go.
struct Rule {
    table: &'static str,
    keep_days: u32,
    /// The TTL clause for servers that have it.
    ttl: String,
}

fn rules(cfg: &RetentionConfig) -> Vec<Rule> {
    vec![
        Rule {
            table: "telemetry_events",
            keep_days: cfg.telemetry_days,
            ttl: format!("event_time + INTERVAL {} DAY", cfg.telemetry_days),
        },
        Rule {
            table: "heartbeat_rollups",
            keep_days: cfg.heartbeat_days,
            ttl: format!("minute + INTERVAL {} DAY", cfg.heartbeat_days),
        },
        Rule {
            table: "scan_failures",
            keep_days: cfg.scan_failures_days,
            ttl: format!("occurred_at + INTERVAL {} DAY", cfg.scan_failures_days),
        },
        Rule {
            table: "host_packages",
            keep_days: cfg.host_packages_days,
            ttl: format!("observed_at + INTERVAL {} DAY", cfg.host_packages_days),
        },
        Rule {
            table: "notification_deliveries",
            keep_days: cfg.notifications_days,
            ttl: format!("at_time + INTERVAL {} DAY", cfg.notifications_days),
        },
        Rule {
            table: "notification_outbox",
            keep_days: cfg.notifications_days,
            ttl: format!("queued_time + INTERVAL {} DAY", cfg.notifications_days),
        },
    ]
}

/// Whether partition `p` (`YYYYMMDD` or `YYYYMM`, as `system.parts` shows it) holds only data
/// older than `cutoff` (`YYYYMMDD`): a day before it, or a month before its month.
fn expired(p: &str, cutoff: u32) -> Option<bool> {
    let p = p.trim_matches('\'');
    let n: u32 = p.parse().ok()?;
    match p.len() {
        8 => Some(n < cutoff),
        6 => Some(n < cutoff / 100),
        _ => None,
    }
}

/// `(major, minor)` of a `SELECT version()` answer such as `18.16.1` or `24.8.4.13`.
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Whether a server of this version has table TTL.
pub fn has_table_ttl(version: (u32, u32)) -> bool {
    version >= (19, 6)
}

/// What one run did.
#[derive(Debug, Default, PartialEq)]
pub struct RetentionReport {
    /// `table/partition` dropped.
    pub dropped: Vec<String>,
    /// Tables given a TTL (new servers only).
    pub ttl_set: Vec<String>,
    /// Admin-event versions deleted because they were last seen longer ago than the retention
    /// in force.
    pub admin_event_rows_deleted: u64,
}

/// Drops expired partitions (and sets TTLs on servers that support them), and deletes admin
/// events last seen longer ago than the retention in force: the one set at run time, else
/// `admin_events_retention_secs` (`processors.admin_events.retention_secs`). `today` is
/// `YYYYMMDD` of the server's current date, so every decision is the server's.
pub async fn run(
    ch: &ClickHouseConfig,
    cfg: &RetentionConfig,
    admin_events_retention_secs: u64,
) -> Result<RetentionReport, SinkError> {
    let client = ch.client();
    let mut report = RetentionReport {
        admin_event_rows_deleted: prune_admin_events(ch, &client, admin_events_retention_secs)
            .await?,
        ..Default::default()
    };
    let version: String = client
        .query("SELECT version()")
        .fetch_one()
        .await
        .map_err(classify)?;
    let ttl = parse_version(&version).is_some_and(has_table_ttl);
    for rule in rules(cfg) {
        if ttl {
            client
                .query(&format!(
                    "ALTER TABLE {}{} MODIFY TTL {}",
                    ch.storage_table(rule.table),
                    ch.on_cluster(),
                    rule.ttl
                ))
                .execute()
                .await
                .map_err(classify)?;
            report.ttl_set.push(rule.table.to_string());
        }
        let cutoff: u32 = client
            .query("SELECT toUInt32(toYYYYMMDD(today() - ?))")
            .bind(rule.keep_days)
            .fetch_one()
            .await
            .map_err(classify)?;
        // In cluster mode, the parts of one replica of every shard.
        let parts = if ch.cluster.is_empty() {
            "system.parts".to_string()
        } else {
            format!("cluster('{}', system, parts)", ch.cluster)
        };
        let partitions: Vec<String> = client
            .query(&format!(
                "SELECT DISTINCT partition FROM {parts} WHERE database = ? AND table = ? AND active"
            ))
            .bind(&ch.database)
            .bind(ch.storage_table(rule.table))
            .fetch_all()
            .await
            .map_err(classify)?;
        for p in partitions {
            if expired(&p, cutoff) == Some(true) {
                let id = p.trim_matches('\'');
                client
                    .query(&format!(
                        "ALTER TABLE {}{} DROP PARTITION {id}",
                        ch.storage_table(rule.table),
                        ch.on_cluster()
                    ))
                    .execute()
                    .await
                    .map_err(classify)?;
                tracing::info!(
                    table = rule.table,
                    partition = id,
                    "expired partition dropped"
                );
                report.dropped.push(format!("{}/{id}", rule.table));
            }
        }
    }
    Ok(report)
}

/// Deletes every admin-event version last seen `retention` or longer ago. The newest version of
/// an event has its greatest `last_seen`, so a live event loses only superseded versions and an
/// expired one goes whole. Returns how many rows were deleted (the mutation runs in the
/// background; readers already skip expired events).
async fn prune_admin_events(
    ch: &ClickHouseConfig,
    client: &clickhouse::Client,
    configured_secs: u64,
) -> Result<u64, SinkError> {
    let retention = super::admin_api::effective_retention(client, configured_secs).await?;
    let cond = format!("toUInt64(last_seen) + {retention} <= toUInt64(now())");
    let n: u64 = client
        .query(&format!("SELECT count() FROM admin_events WHERE {cond}"))
        .fetch_one()
        .await
        .map_err(classify)?;
    if n > 0 {
        client
            .query(&format!(
                "ALTER TABLE {}{} DELETE WHERE {cond}",
                ch.storage_table("admin_events"),
                ch.on_cluster()
            ))
            .execute()
            .await
            .map_err(classify)?;
        tracing::info!(
            rows = n,
            retention_secs = retention,
            "expired admin events deleted"
        );
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_used_only_on_servers_that_have_it() {
        assert!(!has_table_ttl(parse_version("18.16.1").unwrap()));
        assert!(!has_table_ttl(parse_version("19.5.3.8").unwrap()));
        assert!(has_table_ttl(parse_version("19.6.2.11").unwrap()));
        assert!(has_table_ttl(parse_version("24.8.4.13").unwrap()));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn a_partition_expires_once_all_of_it_is_older_than_the_cutoff() {
        assert_eq!(expired("20261130", 20261201), Some(true));
        assert_eq!(expired("20261201", 20261201), Some(false));
        // A month goes only once the cutoff is in a later month.
        assert_eq!(expired("202610", 20261101), Some(true));
        assert_eq!(expired("202611", 20261130), Some(false));
        assert_eq!(expired("'202609'", 20261015), Some(true));
        assert_eq!(expired("tuple()", 20261015), None);
        assert_eq!(expired("2026", 20261015), None);
    }
}
