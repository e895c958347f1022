//! `GET /v1/admin-events`, `GET /v1/admin-events/{id}`, `GET /v1/admin-events/{id}/failures`
//! and `GET|PUT /v1/admin-events/settings`: failed-scan admin events from ClickHouse, for tokens
//! with the admin role only (403 for producers and analysts). Expiry is evaluated at every query
//! from `last_seen` and the retention in force.
use std::sync::Arc;

use axum::{
    extract::{
        rejection::{JsonRejection, PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::HeaderMap,
    Json,
};
use secpipe_sinks::{
    clickhouse::admin_api::{self, AdminEventFilter, AdminEventSort, AdminEventView},
    SinkError,
};
use serde_json::{json, Value};

use super::{admin_query::Params, AuthError, Caller, Gateway, Rejection};

pub(crate) const MAX_LIMIT: u32 = 1000;
/// The longest retention an administrator can set: 10 years.
const MAX_RETENTION_SECS: u64 = 10 * 366 * 24 * 3600;

pub(crate) fn rfc3339(secs: u32) -> String {
    time::OffsetDateTime::from_unix_timestamp(i64::from(secs))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn view(e: &AdminEventView) -> Value {
    json!({
        "id": e.id,
        "command": e.command,
        "image": {"full_name": e.image, "registry": e.registry, "repository": e.repository,
                  "tag": e.tag, "digest": e.digest,
                  "original": if e.original.is_empty() { &e.image } else { &e.original }},
        "reason": e.reason,
        "cluster": e.cluster,
        "source": e.source,
        "sources": e.sources,
        "first_seen": rfc3339(e.first_seen),
        "last_seen": rfc3339(e.last_seen),
        "occurrences": e.occurrences,
        "version": e.version,
        "expires_at": rfc3339(e.expires_at),
    })
}

/// `since` / `until`: epoch seconds or RFC 3339, within 0..=u32::MAX seconds (1970 to 2106),
/// the range of the `DateTime` columns they are compared with.
pub(crate) fn parse_time(field: &str, v: &str) -> Result<u32, Rejection> {
    if let Ok(secs) = v.parse::<u32>() {
        return Ok(secs);
    }
    if v.parse::<i128>().is_ok() {
        return Err(Rejection::invalid(
            field,
            format!("{v} is outside 0..={} epoch seconds", u32::MAX),
        ));
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| u32::try_from(t.unix_timestamp()).ok())
        .ok_or_else(|| {
            Rejection::invalid(
                field,
                format!("'{v}' is neither RFC 3339 nor epoch seconds"),
            )
        })
}

/// The filters, sort and page of `GET /v1/admin-events`; the retention is filled in later.
fn filter(q: &Params) -> Result<AdminEventFilter, Rejection> {
    const KNOWN: [&str; 9] = [
        "image", "command", "reason", "cluster", "since", "until", "sort", "limit", "offset",
    ];
    q.only(&KNOWN)?;
    let limit = q.number("limit")?.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Rejection::invalid(
            "limit",
            format!("must be 1..={MAX_LIMIT}"),
        ));
    }
    Ok(AdminEventFilter {
        image: q.filter("image")?,
        command: q.filter("command")?,
        reason: q.filter("reason")?,
        cluster: q.filter("cluster")?,
        since: q
            .one("since")?
            .map(|v| parse_time("since", v))
            .transpose()?,
        until: q
            .one("until")?
            .map(|v| parse_time("until", v))
            .transpose()?,
        sort: match q.one("sort")? {
            None => AdminEventSort::default(),
            Some(s) => AdminEventSort::parse(s).ok_or_else(|| {
                Rejection::invalid(
                    "sort",
                    "one of last_seen, first_seen, occurrences (prefix - for descending), image",
                )
            })?,
        },
        limit,
        offset: q.number("offset")?.unwrap_or(0),
        retention_secs: 0,
    })
}

/// The admin caller and the ClickHouse client, or why not.
pub(crate) fn admin_only<'g>(
    gw: &'g Gateway,
    headers: &HeaderMap,
) -> Result<(&'g clickhouse::Client, &'g Caller), Rejection> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = gw.auth.authenticate(header).map_err(Rejection::Auth)?;
    if !caller.is_admin() {
        return Err(Rejection::Auth(AuthError::Forbidden(format!(
            "token '{}' has no admin role: admin events are for administrators",
            caller.name
        ))));
    }
    let client = gw
        .clickhouse
        .as_ref()
        .ok_or_else(|| Rejection::Internal("this gateway has no ClickHouse connection".into()))?;
    Ok((client, caller))
}

/// The retention in force: the one set at run time, else the configured one.
pub(crate) async fn retention(gw: &Gateway, client: &clickhouse::Client) -> Result<u64, Rejection> {
    admin_api::effective_retention(client, gw.admin_retention_secs)
        .await
        .map_err(|e| store_error(e, gw.cfg.retry_after_secs))
}

pub(crate) fn store_error(e: SinkError, retry_after_secs: u32) -> Rejection {
    match e {
        SinkError::Unavailable(reason) => Rejection::Unavailable {
            reason: format!("ClickHouse: {reason}"),
            retry_after_secs,
        },
        SinkError::Rejected(reason) => Rejection::Internal(format!("ClickHouse: {reason}")),
    }
}

/// The live events matching `f` (with the retention in force filled in) and their number.
pub(crate) async fn page(
    gw: &Gateway,
    client: &clickhouse::Client,
    mut f: AdminEventFilter,
) -> Result<(AdminEventFilter, Vec<AdminEventView>, u64), Rejection> {
    f.retention_secs = retention(gw, client).await?;
    let (events, total) = admin_api::list(client, &f)
        .await
        .map_err(|e| store_error(e, gw.cfg.retry_after_secs))?;
    Ok((f, events, total))
}

/// One live event by id (404 when there is none).
pub(crate) async fn one(
    gw: &Gateway,
    client: &clickhouse::Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<AdminEventView, Rejection> {
    // An id that does not decode (e.g. `%FF`) is a bad request with a JSON reason, not axum's
    // plain-text rejection.
    let Path(id) = id.map_err(|e| Rejection::invalid("id", e.body_text()))?;
    let retention = retention(gw, client).await?;
    admin_api::get(client, &id, retention)
        .await
        .map_err(|e| store_error(e, gw.cfg.retry_after_secs))?
        .ok_or_else(|| Rejection::NotFound(format!("no live admin event {id}")))
}

/// `GET /v1/admin-events?image=&command=&reason=&cluster=&since=&until=&sort=&limit=&offset=`.
pub(crate) async fn list(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, Rejection> {
    let (client, _) = admin_only(&gw, &headers)?;
    let f = filter(&Params::from_query(q)?)?;
    let (f, events, total) = page(&gw, client, f).await?;
    Ok(Json(json!({
        "total": total,
        "limit": f.limit,
        "offset": f.offset,
        "retention_secs": f.retention_secs,
        "events": events.iter().map(view).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/admin-events/{id}`.
pub(crate) async fn get(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, Rejection> {
    let (client, _) = admin_only(&gw, &headers)?;
    Ok(Json(view(&one(&gw, client, id).await?)))
}

/// `GET /v1/admin-events/{id}/failures?limit=`: the `scan_failures` rows of a live event (newest
/// first) and its occurrences per hour: the event's history.
pub(crate) async fn failures(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, Rejection> {
    let (client, _) = admin_only(&gw, &headers)?;
    let q = Params::from_query(q)?;
    q.only(&["limit"])?;
    let limit = q.number("limit")?.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Rejection::invalid(
            "limit",
            format!("must be 1..={MAX_LIMIT}"),
        ));
    }
    let event = one(&gw, client, id).await?;
    let (rows, hours) = admin_api::failures(client, &event, limit)
        .await
        .map_err(|e| store_error(e, gw.cfg.retry_after_secs))?;
    Ok(Json(json!({
        "event_id": event.id,
        "failures": rows.iter().map(|r| json!({
            "failure_id": r.failure_id,
            "image": r.image,
            "original": if r.original.is_empty() { &r.image } else { &r.original },
            "source": r.source,
            "occurred_at": rfc3339(r.occurred_at),
            "received_at": rfc3339(r.received_at),
        })).collect::<Vec<_>>(),
        "history": hours.iter().map(|h| json!({
            "hour": rfc3339(h.hour),
            "occurrences": h.occurrences,
        })).collect::<Vec<_>>(),
    })))
}

async fn settings_view(gw: &Gateway, client: &clickhouse::Client) -> Result<Value, Rejection> {
    let runtime = admin_api::retention_override(client)
        .await
        .map_err(|e| store_error(e, gw.cfg.retry_after_secs))?;
    Ok(json!({
        "retention_secs": runtime.unwrap_or(gw.admin_retention_secs),
        "runtime_retention_secs": runtime,
        "configured_retention_secs": gw.admin_retention_secs,
    }))
}

/// `GET /v1/admin-events/settings`: the retention in force, and where it comes from.
pub(crate) async fn get_settings(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Json<Value>, Rejection> {
    let (client, _) = admin_only(&gw, &headers)?;
    Ok(Json(settings_view(&gw, client).await?))
}

/// `PUT /v1/admin-events/settings` with `{"retention_secs": N}` (or `null`: back to the
/// configured retention). Applies at once to every event, existing ones included, in every
/// gateway and at the next pruning run; no restart.
pub(crate) async fn put_settings(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, Rejection> {
    let (client, caller) = admin_only(&gw, &headers)?;
    let Json(body) = body.map_err(|e| Rejection::invalid("$", e.body_text()))?;
    let obj = body
        .as_object()
        .ok_or_else(|| Rejection::invalid("$", "expected a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| *k != "retention_secs") {
        return Err(Rejection::invalid(
            k.clone(),
            "unknown setting; known: retention_secs",
        ));
    }
    let secs = match obj.get("retention_secs") {
        None => return Err(Rejection::invalid("retention_secs", "missing")),
        Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_RETENTION_SECS).contains(&n) => Some(n),
            _ => {
                return Err(Rejection::invalid(
                    "retention_secs",
                    format!("must be a whole number of seconds in 1..={MAX_RETENTION_SECS}, or null for the configured retention"),
                ))
            }
        },
    };
    admin_api::set_retention(client, secs, &caller.name)
        .await
        .map_err(|e| store_error(e, gw.cfg.retry_after_secs))?;
    tracing::info!(retention_secs = ?secs, by = %caller.name, "admin-event retention changed");
    Ok(Json(settings_view(&gw, client).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Params {
        Params::of(pairs)
    }

    #[test]
    fn parameters_are_checked_with_the_field_named() {
        let f = filter(&q(&[
            ("image", "nginx"),
            ("since", "2026-11-24T00:00:00Z"),
            ("sort", "-occurrences"),
            ("limit", "5"),
        ]))
        .unwrap();
        assert_eq!(f.image.as_deref(), Some("nginx"));
        assert_eq!(f.since, Some(1_795_478_400));
        assert_eq!(
            (f.sort, f.limit, f.offset),
            (AdminEventSort::OccurrencesDesc, 5, 0)
        );
        for (k, v) in [
            ("limit", "0"),
            ("limit", "x"),
            ("since", "yesterday"),
            ("since", "-1"),
            ("until", "4294967296"),
            ("until", "9223372036854775807"),
            ("until", "1969-12-31T23:59:59Z"),
            ("limit", "-1"),
            ("limit", "4294967296"),
            ("offset", "-9223372036854775808"),
            ("sort", "name"),
            ("colour", "red"),
            ("cluster", ""),
            ("image", " "),
        ] {
            match filter(&q(&[(k, v)])) {
                Err(Rejection::Invalid { field, .. }) => assert_eq!(field, k),
                other => panic!("{k}={v}: {other:?}"),
            }
        }
        match filter(&q(&[("image", "a"), ("image", "b")])) {
            Err(Rejection::Invalid { field, .. }) => assert_eq!(field, "image"),
            other => panic!("a repeated image: {other:?}"),
        }
    }
}
