//! Queries behind the admin-events API (`GET /v1/admin-events`): the newest version of each
//! live (unexpired) admin event, filtered, sorted and paged on the server. Unlike the system the
//! reference describes, filtering by image is a plain filter.
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
    pub expires_at: u32,
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
    max(expires_at) AS a_expires_at \
    FROM admin_events WHERE 1 = 1";

const OUTER: &str = "SELECT id, a_command AS command, a_image AS image, a_registry AS registry, \
    a_repository AS repository, a_tag AS tag, a_digest AS digest, a_reason AS reason, \
    a_cluster AS cluster, a_source AS source, a_first_seen AS first_seen, a_last_seen AS last_seen, \
    a_occurrences AS occurrences, a_version AS version, a_expires_at AS expires_at";

fn inner(filter: &AdminEventFilter, id: Option<&str>) -> (String, Vec<String>) {
    let mut sql = String::from(LATEST);
    let mut binds = Vec::new();
    for (col, v) in [
        ("id", id.map(str::to_string)),
        ("image", filter.image.clone()),
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
    let mut w = String::from(" WHERE a_expires_at > now()");
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
    let events = page.fetch_all::<AdminEventView>().await.map_err(classify)?;
    let total = count.fetch_one::<u64>().await.map_err(classify)?;
    Ok((events, total))
}

/// One live admin event by id.
pub async fn get(
    client: &clickhouse::Client,
    id: &str,
) -> Result<Option<AdminEventView>, SinkError> {
    let filter = AdminEventFilter::default();
    let (inner_sql, binds) = inner(&filter, Some(id));
    let sql = format!("{OUTER} FROM ({inner_sql}){}", live(&filter));
    let mut q = client.query(&sql);
    for b in &binds {
        q = q.bind(b.as_str());
    }
    q.fetch_optional::<AdminEventView>().await.map_err(classify)
}
