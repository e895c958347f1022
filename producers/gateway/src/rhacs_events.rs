//! RHACS's administration-events API over secpipe's admin events, so RHACS clients, scripts and
//! dashboards can read them: `GET /v1/administration/events`, `GET /v1/administration/events/{id}`
//! and `GET /v1/count/administration/events`, with RHACS's envelopes, field names (protobuf JSON:
//! camelCase, int64 as a string, timestamps in RFC 3339), `filter.*` and `pagination.*`
//! parameters (grpc-gateway style: repeated filters repeat the parameter; proto and camelCase
//! names both accepted). secpipe's own filters are `filter.image`, `filter.command`,
//! `filter.reason` and `filter.cluster`. Same admin-only rule as the native API.
//!
//! A failed-scan admin event maps to RHACS's fields as follows (see ARCHITECTURE.md):
//! type GENERIC, level ERROR, domain "Image Scanning", resource {type "Image", id the image's
//! digest when known, name the normalised reference}, message from command, image, cluster and
//! reason, hint from the kind of reason.
use std::sync::Arc;

use axum::{
    extract::{
        rejection::{PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::HeaderMap,
    Json,
};
use secpipe_sinks::clickhouse::admin_api::{
    self, AdminEventFilter, AdminEventSort, AdminEventView,
};
use serde_json::{json, Value};

use super::{
    admin_events::{admin_only, one, page, parse_time, retention, rfc3339, store_error, MAX_LIMIT},
    admin_query::Params,
    Gateway, Rejection,
};

/// `AdministrationEventType` of every failed-scan event: it is made from a structured failure
/// record, not from a log line (`ADMINISTRATION_EVENT_TYPE_LOG_MESSAGE`).
pub const EVENT_TYPE: &str = "ADMINISTRATION_EVENT_TYPE_GENERIC";
const EVENT_TYPES: [&str; 3] = [
    "ADMINISTRATION_EVENT_TYPE_UNKNOWN",
    "ADMINISTRATION_EVENT_TYPE_GENERIC",
    "ADMINISTRATION_EVENT_TYPE_LOG_MESSAGE",
];
/// `AdministrationEventLevel`: a scan that could not be done is an error.
pub const EVENT_LEVEL: &str = "ADMINISTRATION_EVENT_LEVEL_ERROR";
const EVENT_LEVELS: [&str; 5] = [
    "ADMINISTRATION_EVENT_LEVEL_UNKNOWN",
    "ADMINISTRATION_EVENT_LEVEL_INFO",
    "ADMINISTRATION_EVENT_LEVEL_SUCCESS",
    "ADMINISTRATION_EVENT_LEVEL_WARNING",
    "ADMINISTRATION_EVENT_LEVEL_ERROR",
];
/// The feature domain of every failed-scan event.
pub const DOMAIN: &str = "Image Scanning";
/// The resource type of every failed-scan event.
pub const RESOURCE_TYPE: &str = "Image";

/// What an administrator can do about a failure, by the kind of its reason.
pub fn hint(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| r.contains(w));
    if any(&[
        "unauthorized",
        "authentication",
        "denied",
        "forbidden",
        "credential",
    ]) {
        "The registry refused the scanner's credentials. Check the registry integration's \
         username, password or token for this repository, and that it may pull the image."
    } else if any(&["not found", "manifest unknown", "no such", "does not exist"]) {
        "The registry does not have this image. Check the reference (registry, repository, tag \
         or digest) and that the tag was not deleted or moved."
    } else if any(&[
        "timeout",
        "timed out",
        "deadline",
        "unreachable",
        "connection",
        "dns",
        "tls",
    ]) {
        "The scanner could not reach the registry in time. Check network access, proxies and \
         certificates between the scanner and the registry, and the registry's health."
    } else {
        "The scan could not be completed. Check the reason, the scanner's logs and the registry \
         integration, then scan the image again."
    }
}

fn message(e: &AdminEventView) -> String {
    let cluster = if e.cluster.is_empty() {
        String::new()
    } else {
        format!(" on cluster {}", e.cluster)
    };
    format!(
        "{} of image {}{cluster} failed: {}",
        e.command, e.image, e.reason
    )
}

/// One event as RHACS's `v1.AdministrationEvent` renders in protobuf JSON.
pub fn event(e: &AdminEventView) -> Value {
    json!({
        "id": e.id,
        "type": EVENT_TYPE,
        "level": EVENT_LEVEL,
        "message": message(e),
        "hint": hint(&e.reason),
        "domain": DOMAIN,
        "resource": {"type": RESOURCE_TYPE, "id": e.digest, "name": e.image},
        // int64: a string in protobuf JSON.
        "numOccurrences": e.occurrences.to_string(),
        "lastOccurredAt": rfc3339(e.last_seen),
        "createdAt": rfc3339(e.first_seen),
    })
}

/// The parameters, by their camelCase name, with the proto (snake_case) spellings
/// grpc-gateway also accepts.
const KNOWN: [(&str, &str); 14] = [
    ("filter.from", "filter.from"),
    ("filter.until", "filter.until"),
    ("filter.domain", "filter.domain"),
    ("filter.resourceType", "filter.resource_type"),
    ("filter.type", "filter.type"),
    ("filter.level", "filter.level"),
    ("filter.image", "filter.image"),
    ("filter.command", "filter.command"),
    ("filter.reason", "filter.reason"),
    ("filter.cluster", "filter.cluster"),
    ("pagination.limit", "pagination.limit"),
    ("pagination.offset", "pagination.offset"),
    (
        "pagination.sortOption.field",
        "pagination.sort_option.field",
    ),
    (
        "pagination.sortOption.reversed",
        "pagination.sort_option.reversed",
    ),
];

/// The query with proto spellings renamed to camelCase.
fn camel(q: Params) -> Result<Params, Rejection> {
    let mut all: Vec<&str> = KNOWN.iter().map(|(c, _)| *c).collect();
    all.extend(KNOWN.iter().map(|(_, p)| *p));
    q.only(&all)?;
    Ok(q.renamed(|k| {
        KNOWN
            .iter()
            .find(|(_, p)| *p == k)
            .map_or(k, |(c, _)| *c)
            .to_string()
    }))
}

/// An enum filter: names or numbers; does it admit `ours`?
fn admits(q: &Params, key: &str, names: &[&str], ours: &str) -> Result<bool, Rejection> {
    let values = q.many(key)?;
    let mut admitted = values.is_empty();
    for v in values {
        let name = match v.parse::<usize>() {
            Ok(n) => names.get(n).copied(),
            Err(_) => names.iter().copied().find(|n| *n == v),
        }
        .ok_or_else(|| {
            Rejection::invalid(key, format!("'{v}' is not one of {}", names.join(", ")))
        })?;
        admitted |= name == ours;
    }
    Ok(admitted)
}

/// A string filter on a constant of every event: does it admit `ours`?
fn admits_text(q: &Params, key: &str, ours: &str) -> Result<bool, Rejection> {
    let values = q.many(key)?;
    Ok(values.is_empty() || values.iter().any(|v| v.eq_ignore_ascii_case(ours)))
}

/// RHACS's `AdministrationEventsFilter` plus secpipe's filters. `None` when the RHACS filters
/// exclude every failed-scan event (a type, level, domain or resource type they never have).
fn filter(q: &Params) -> Result<Option<AdminEventFilter>, Rejection> {
    let admitted = admits(q, "filter.type", &EVENT_TYPES, EVENT_TYPE)?
        & admits(q, "filter.level", &EVENT_LEVELS, EVENT_LEVEL)?
        & admits_text(q, "filter.domain", DOMAIN)?
        & admits_text(q, "filter.resourceType", RESOURCE_TYPE)?;
    let f = AdminEventFilter {
        image: q.filter("filter.image")?,
        command: q.filter("filter.command")?,
        reason: q.filter("filter.reason")?,
        cluster: q.filter("filter.cluster")?,
        since: q
            .one("filter.from")?
            .map(|v| parse_time("filter.from", v))
            .transpose()?,
        until: q
            .one("filter.until")?
            .map(|v| parse_time("filter.until", v))
            .transpose()?,
        ..Default::default()
    };
    Ok(admitted.then_some(f))
}

/// RHACS's `Pagination`: limit (0 or absent: all, capped at 1000), offset, one sort option.
fn paginate(q: &Params, f: &mut AdminEventFilter) -> Result<(), Rejection> {
    f.limit = match q.number("pagination.limit")? {
        None | Some(0) => MAX_LIMIT,
        Some(n) if n <= MAX_LIMIT => n,
        Some(_) => {
            return Err(Rejection::invalid(
                "pagination.limit",
                format!("must be 0..={MAX_LIMIT} (0: as many as allowed)"),
            ))
        }
    };
    f.offset = q.number("pagination.offset")?.unwrap_or(0);
    let reversed = match q.one("pagination.sortOption.reversed")? {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(v) => {
            return Err(Rejection::invalid(
                "pagination.sortOption.reversed",
                format!("'{v}' is not true or false"),
            ))
        }
    };
    f.sort = match q.one("pagination.sortOption.field")? {
        // RHACS lists the most recent events first.
        None => AdminEventSort::LastSeenDesc,
        Some(field) => {
            let desc = reversed.unwrap_or(false);
            let pick = |asc, dsc| if desc { dsc } else { asc };
            match field {
                "Last Updated" | "lastOccurredAt" | "last_occurred_at" => {
                    pick(AdminEventSort::LastSeenAsc, AdminEventSort::LastSeenDesc)
                }
                "Created Time" | "createdAt" | "created_at" => {
                    pick(AdminEventSort::FirstSeenAsc, AdminEventSort::FirstSeenDesc)
                }
                "Event Occurrence" | "numOccurrences" | "num_occurrences" => {
                    pick(AdminEventSort::OccurrencesAsc, AdminEventSort::OccurrencesDesc)
                }
                other => {
                    return Err(Rejection::invalid(
                        "pagination.sortOption.field",
                        format!("'{other}' is not one of Last Updated, Created Time, Event Occurrence (or lastOccurredAt, createdAt, numOccurrences)"),
                    ))
                }
            }
        }
    };
    Ok(())
}

/// `GET /v1/administration/events` → `{"events": [...]}`.
pub(crate) async fn list(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, Rejection> {
    let (client, _) = admin_only(&gw, &headers)?;
    let q = camel(Params::from_query(q)?)?;
    let mut f = filter(&q)?;
    let mut page_of = AdminEventFilter::default();
    paginate(&q, f.as_mut().unwrap_or(&mut page_of))?;
    let events = match f {
        Some(f) => page(&gw, client, f).await?.1,
        None => Vec::new(),
    };
    Ok(Json(
        json!({ "events": events.iter().map(event).collect::<Vec<_>>() }),
    ))
}

/// `GET /v1/count/administration/events` → `{"count": N}` (int32: a number in protobuf JSON).
pub(crate) async fn count(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, Rejection> {
    let (client, _) = admin_only(&gw, &headers)?;
    let q = camel(Params::from_query(q)?)?;
    // RHACS's count request takes the filter only.
    if let Some(k) = q.keys().find(|k| k.starts_with("pagination.")) {
        return Err(Rejection::invalid(
            k,
            "the count takes filter.* parameters only",
        ));
    }
    let total = match filter(&q)? {
        Some(mut f) => {
            f.retention_secs = retention(&gw, client).await?;
            admin_api::count(client, &f)
                .await
                .map_err(|e| store_error(e, gw.cfg.retry_after_secs))?
        }
        None => 0,
    };
    Ok(Json(
        json!({ "count": i32::try_from(total).unwrap_or(i32::MAX) }),
    ))
}

/// `GET /v1/administration/events/{id}` → `{"event": {...}}`.
pub(crate) async fn get(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, Rejection> {
    let (client, _) = admin_only(&gw, &headers)?;
    Ok(Json(
        json!({ "event": event(&one(&gw, client, id).await?) }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(pairs: &[(&str, &str)]) -> Result<Option<AdminEventFilter>, Rejection> {
        let q = camel(Params::of(pairs))?;
        let mut f = filter(&q)?;
        if let Some(f) = f.as_mut() {
            paginate(&q, f)?;
        }
        Ok(f)
    }

    fn field(r: Result<Option<AdminEventFilter>, Rejection>) -> String {
        match r {
            Err(Rejection::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rhacs_filters_and_pagination_map_to_the_native_query() {
        let f = parsed(&[
            ("filter.from", "2026-11-24T00:00:00Z"),
            ("filter.level", "ADMINISTRATION_EVENT_LEVEL_WARNING"),
            ("filter.level", "4"),
            ("filter.resource_type", "Image"),
            ("filter.domain", "Image Scanning"),
            ("filter.image", "nginx:1"),
            ("pagination.limit", "5"),
            ("pagination.offset", "10"),
            ("pagination.sortOption.field", "numOccurrences"),
            ("pagination.sortOption.reversed", "true"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(f.since, Some(1_795_478_400));
        assert_eq!(f.image.as_deref(), Some("nginx:1"));
        assert_eq!(
            (f.limit, f.offset, f.sort),
            (5, 10, AdminEventSort::OccurrencesDesc)
        );
        let f = parsed(&[("pagination.sort_option.field", "Created Time")])
            .unwrap()
            .unwrap();
        assert_eq!((f.sort, f.limit), (AdminEventSort::FirstSeenAsc, MAX_LIMIT));
    }

    #[test]
    fn filters_no_failed_scan_event_has_match_nothing() {
        for (k, v) in [
            ("filter.level", "ADMINISTRATION_EVENT_LEVEL_INFO"),
            ("filter.type", "2"),
            ("filter.domain", "Integrations"),
            ("filter.resourceType", "Node"),
        ] {
            assert!(parsed(&[(k, v)]).unwrap().is_none(), "{k}={v}");
        }
    }

    #[test]
    fn bad_rhacs_parameters_are_400s_naming_the_parameter() {
        for (pairs, f) in [
            (vec![("filter.level", "LOUD")], "filter.level"),
            (vec![("filter.type", "9")], "filter.type"),
            (vec![("filter.from", "yesterday")], "filter.from"),
            (vec![("pagination.limit", "5000")], "pagination.limit"),
            (
                vec![("pagination.sortOption.field", "colour")],
                "pagination.sortOption.field",
            ),
            (
                vec![("pagination.sortOption.reversed", "maybe")],
                "pagination.sortOption.reversed",
            ),
            (
                vec![("filter.image", "a"), ("filter.image", "b")],
                "filter.image",
            ),
            (vec![("filter.cluster", "")], "filter.cluster"),
            (vec![("filter.colour", "red")], "filter.colour"),
        ] {
            assert_eq!(field(parsed(&pairs)), f, "{pairs:?}");
        }
    }

    #[test]
    fn an_event_renders_as_protobuf_json_does() {
        let e = AdminEventView {
            id: "6f1c".into(),
            command: "image scan".into(),
            image: "docker.io/library/nginx:1".into(),
            registry: "docker.io".into(),
            repository: "library/nginx".into(),
            tag: "1".into(),
            digest: String::new(),
            reason: "failed to pull image: unauthorized".into(),
            cluster: "prod".into(),
            source: "cli".into(),
            first_seen: 1_795_478_400,
            last_seen: 1_795_478_460,
            occurrences: 3,
            version: 3,
            expires_at: 0,
            original: "nginx:1".into(),
            sources: vec!["cli".into()],
        };
        let v = event(&e);
        assert_eq!(v["numOccurrences"], "3", "int64 is a string");
        assert_eq!(v["createdAt"], "2026-11-24T00:00:00Z");
        assert_eq!(v["lastOccurredAt"], "2026-11-24T00:01:00Z");
        assert_eq!(v["resource"]["type"], "Image");
        assert_eq!(v["resource"]["name"], "docker.io/library/nginx:1");
        assert_eq!(
            (
                v["type"].as_str(),
                v["level"].as_str(),
                v["domain"].as_str()
            ),
            (Some(EVENT_TYPE), Some(EVENT_LEVEL), Some(DOMAIN))
        );
        assert!(v["hint"].as_str().unwrap().contains("credentials"));
        assert!(v["message"]
            .as_str()
            .unwrap()
            .contains("image scan of image docker.io/library/nginx:1 on cluster prod failed"));
    }
}
