//! Queries behind the admin-events APIs (`GET /v1/admin-events`, RHACS's
//! `/v1/administration/events`): the newest version of each live admin event, filtered, sorted
//! and paged on the server; the failures behind an event; the retention in force. An event is
//! live while `last_seen + retention > now()`, with the retention read at query time, so a changed
//! retention applies to existing events. Unlike the system the reference describes, filtering by
//! image is a plain filter.
use clickhouse::Row;
use serde::{Deserialize, Serialize};

use super::classify;
use crate::SinkError;

/// Filters of a listing; `None` means "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdminEventFilter {
    pub image: Option<String>,
    pub command: Option<String>,
    pub reason: Option<String>,
    pub cluster: Option<String>,
    /// Events last seen at or after this time (seconds since the epoch).
    pub since: Option<u32>,
    /// Events last seen at or before this time (seconds since the epoch).
    pub until: Option<u32>,
    pub sort: AdminEventSort,
    pub limit: u32,
    pub offset: u32,
    /// The retention in force ([`effective_retention`]): events last seen this many seconds ago
    /// or longer are expired.
    pub retention_secs: u64,
}

/// Sort orders of a listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AdminEventSort {
    #[default]
    LastSeenDesc,
    LastSeenAsc,
    FirstSeenDesc,
    FirstSeenAsc,
    OccurrencesDesc,
    OccurrencesAsc,
    Image,
}

impl AdminEventSort {
    /// Parses `last_seen`, `-last_seen`, `first_seen`, `-first_seen`, `occurrences`,
    /// `-occurrences`, `image` (`-` = descending).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "-last_seen" => Self::LastSeenDesc,
            "last_seen" => Self::LastSeenAsc,
            "-first_seen" => Self::FirstSeenDesc,
            "first_seen" => Self::FirstSeenAsc,
            "-occurrences" => Self::OccurrencesDesc,
            "occurrences" => Self::OccurrencesAsc,
            "image" => Self::Image,
            _ => return None,
        })
    }

    fn order_by(self) -> &'static str {
        match self {
            Self::LastSeenDesc => "a_last_seen DESC, id",
            Self::LastSeenAsc => "a_last_seen ASC, id",
            Self::FirstSeenDesc => "a_first_seen DESC, id",
            Self::FirstSeenAsc => "a_first_seen ASC, id",
            Self::OccurrencesDesc => "a_occurrences DESC, id",
            Self::OccurrencesAsc => "a_occurrences ASC, id",
            Self::Image => "a_image ASC, a_last_seen DESC, id",
        }
    }
}

/// One admin event as the API returns it.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AdminEventView {
    pub id: String,
    pub command: String,
    pub image: String,
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub reason: String,
    pub cluster: String,
    pub source: String,
    pub first_seen: u32,
    pub last_seen: u32,
    pub occurrences: u64,
    pub version: u64,
    /// `last_seen` plus the retention in force (not the stored `expires_at`).
    pub expires_at: u32,
    pub original: String,
    pub sources: Vec<String>,
}

/// The newest version of every event matching the value filters (aliases are prefixed so they
/// do not shadow the columns the WHERE clause reads: ClickHouse resolves aliases everywhere).
const LATEST: &str =
    "SELECT id, argMax(command, version) AS a_command, argMax(image, version) AS a_image, \
    argMax(registry, version) AS a_registry, argMax(repository, version) AS a_repository, \
    argMax(tag, version) AS a_tag, argMax(digest, version) AS a_digest, \
    argMax(reason, version) AS a_reason, argMax(cluster, version) AS a_cluster, \
    argMax(source, version) AS a_source, min(first_seen) AS a_first_seen, \
    max(last_seen) AS a_last_seen, max(occurrences) AS a_occurrences, max(version) AS a_version, \
    argMax(original, version) AS a_original, \
    argMax(if(empty(sources), [source], sources), version) AS a_sources \
    FROM admin_events WHERE 1 = 1";

const OUTER: &str = "SELECT id, a_command AS command, a_image AS image, a_registry AS registry, \
    a_repository AS repository, a_tag AS tag, a_digest AS digest, a_reason AS reason, \
    a_cluster AS cluster, a_source AS source, a_first_seen AS first_seen, a_last_seen AS last_seen, \
    a_occurrences AS occurrences, a_version AS version, toUInt32(0) AS expires_at, \
    a_original AS original, a_sources AS sources";

fn inner(filter: &AdminEventFilter, id: Option<&str>) -> (String, Vec<String>) {
    let mut sql = String::from(LATEST);
    let mut binds = Vec::new();
    if let Some(image) = &filter.image {
        // The reference as given or normalised: rows written before normalisation hold the
        // reference as given.
        sql.push_str(" AND image IN (?, ?)");
        binds.push(image.trim().to_string());
        binds.push(secpipe_schemas::image_ref::canonical_or_given(image));
    }
    for (col, v) in [
        ("id", id.map(str::to_string)),
        ("command", filter.command.clone()),
        ("reason", filter.reason.clone()),
        ("cluster", filter.cluster.clone()),
    ] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {col} = ?"));
            binds.push(v);
        }
    }
    sql.push_str(" GROUP BY id");
    (sql, binds)
}

fn live(filter: &AdminEventFilter) -> String {
    let mut w = format!(
        " WHERE toUInt64(a_last_seen) + {} > toUInt64(now())",
        filter.retention_secs
    );
    if let Some(s) = filter.since {
        w.push_str(&format!(" AND a_last_seen >= toDateTime({s})"));
    }
    if let Some(u) = filter.until {
        w.push_str(&format!(" AND a_last_seen <= toDateTime({u})"));
    }
    w
}

/// A page of live admin events and the number of all that match.
pub async fn list(
    client: &clickhouse::Client,
    filter: &AdminEventFilter,
) -> Result<(Vec<AdminEventView>, u64), SinkError> {
    let (inner_sql, binds) = inner(filter, None);
    let page_sql = format!(
        "{OUTER} FROM ({inner_sql}){} ORDER BY {} LIMIT {}, {}",
        live(filter),
        filter.sort.order_by(),
        filter.offset,
        filter.limit
    );
    let count_sql = format!("SELECT count() FROM ({inner_sql}){}", live(filter));
    let mut page = client.query(&page_sql);
    let mut count = client.query(&count_sql);
    for b in &binds {
        page = page.bind(b.as_str());
        count = count.bind(b.as_str());
    }
    let mut events = page.fetch_all::<AdminEventView>().await.map_err(classify)?;
    let total = count.fetch_one::<u64>().await.map_err(classify)?;
    for e in &mut events {
        e.expires_at = expiry(e.last_seen, filter.retention_secs);
    }
    Ok((events, total))
}

/// The number of live admin events matching the filters (sort and page ignored).
pub async fn count(
    client: &clickhouse::Client,
    filter: &AdminEventFilter,
) -> Result<u64, SinkError> {
    let (inner_sql, binds) = inner(filter, None);
    let mut q = client.query(&format!(
        "SELECT count() FROM ({inner_sql}){}",
        live(filter)
    ));
    for b in &binds {
        q = q.bind(b.as_str());
    }
    q.fetch_one::<u64>().await.map_err(classify)
}

fn expiry(last_seen: u32, retention_secs: u64) -> u32 {
    u32::try_from(u64::from(last_seen).saturating_add(retention_secs)).unwrap_or(u32::MAX)
}

/// One live admin event by id, under a retention of `retention_secs`.
pub async fn get(
    client: &clickhouse::Client,
    id: &str,
    retention_secs: u64,
) -> Result<Option<AdminEventView>, SinkError> {
    let filter = AdminEventFilter {
        retention_secs,
        ..Default::default()
    };
    let (inner_sql, binds) = inner(&filter, Some(id));
    let sql = format!("{OUTER} FROM ({inner_sql}){}", live(&filter));
    let mut q = client.query(&sql);
    for b in &binds {
        q = q.bind(b.as_str());
    }
    let event = q
        .fetch_optional::<AdminEventView>()
        .await
        .map_err(classify)?;
    Ok(event.map(|mut e| {
        e.expires_at = expiry(e.last_seen, retention_secs);
        e
    }))
}

/// The name of the run-time retention in `admin_event_settings`.
const RETENTION: &str = "retention_secs";

/// The retention an administrator set at run time, if any (`None`: the configured one).
pub async fn retention_override(client: &clickhouse::Client) -> Result<Option<u64>, SinkError> {
    let v: u64 = client
        .query("SELECT argMax(value, changed_at_us) FROM admin_event_settings WHERE name = ?")
        .bind(RETENTION)
        .fetch_one()
        .await
        .map_err(classify)?;
    Ok((v > 0).then_some(v))
}

/// The retention in force: the run-time one, else `configured`.
pub async fn effective_retention(
    client: &clickhouse::Client,
    configured: u64,
) -> Result<u64, SinkError> {
    Ok(retention_override(client).await?.unwrap_or(configured))
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct SettingRow {
    name: String,
    value: u64,
    changed_at_us: u64,
    changed_by: String,
}

/// Sets the run-time retention (`None`: back to the configured one), recording who changed it.
pub async fn set_retention(
    client: &clickhouse::Client,
    secs: Option<u64>,
    changed_by: &str,
) -> Result<(), SinkError> {
    let mut insert = client
        .insert::<SettingRow>("admin_event_settings")
        .await
        .map_err(classify)?;
    insert
        .write(&SettingRow {
            name: RETENTION.into(),
            value: secs.unwrap_or(0),
            changed_at_us: u64::try_from(secpipe_schemas::now_micros()).unwrap_or(0),
            changed_by: changed_by.into(),
        })
        .await
        .map_err(classify)?;
    insert.end().await.map_err(classify)
}

/// One failed scan behind an admin event (a `scan_failures` row).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct FailureView {
    pub failure_id: String,
    pub image: String,
    pub original: String,
    pub source: String,
    pub occurred_at: u32,
    pub received_at: u32,
}

/// Occurrences of an admin event per hour.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct HourCount {
    pub hour: u32,
    pub occurrences: u64,
}

const FAILURES_OF: &str = "FROM scan_failures FINAL WHERE image IN (?, ?) AND command = ? \
    AND reason = ? AND cluster = ? AND occurred_at >= toDateTime(?) AND occurred_at <= toDateTime(?)";

fn bind_event(q: clickhouse::query::Query, e: &AdminEventView) -> clickhouse::query::Query {
    let original = if e.original.is_empty() {
        &e.image
    } else {
        &e.original
    };
    q.bind(e.image.as_str())
        .bind(original.as_str())
        .bind(e.command.as_str())
        .bind(e.reason.as_str())
        .bind(e.cluster.as_str())
        .bind(e.first_seen)
        .bind(e.last_seen)
}

/// The `scan_failures` rows an event stands for (newest first, at most `limit`), and its
/// occurrences per hour (oldest first).
pub async fn failures(
    client: &clickhouse::Client,
    event: &AdminEventView,
    limit: u32,
) -> Result<(Vec<FailureView>, Vec<HourCount>), SinkError> {
    let rows = bind_event(
        client.query(&format!(
            "SELECT failure_id, image, original, source, toUInt32(occurred_at) AS occurred_at, \
             toUInt32(received_at) AS received_at {FAILURES_OF} ORDER BY occurred_at DESC, \
             failure_id LIMIT {limit}"
        )),
        event,
    )
    .fetch_all::<FailureView>()
    .await
    .map_err(classify)?;
    let hours = bind_event(
        client.query(&format!(
            "SELECT toUInt32(toStartOfHour(occurred_at)) AS hour, count() AS occurrences \
             {FAILURES_OF} GROUP BY hour ORDER BY hour"
        )),
        event,
    )
    .fetch_all::<HourCount>()
    .await
    .map_err(classify)?;
    Ok((rows, hours))
}
