//! `GET /v1/admin-events` and `GET /v1/admin-events/{id}`: failed-scan admin events from
//! ClickHouse, for tokens with the admin role only (403 for producers and analysts).
use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{
        rejection::{PathRejection, QueryRejection},
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

use super::{AuthError, Gateway, Rejection};

const MAX_LIMIT: u32 = 1000;

fn rfc3339(secs: u32) -> String {
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
                  "tag": e.tag, "digest": e.digest},
        "reason": e.reason,
        "cluster": e.cluster,
        "source": e.source,
        "first_seen": rfc3339(e.first_seen),
        "last_seen": rfc3339(e.last_seen),
        "occurrences": e.occurrences,
        "version": e.version,
        "expires_at": rfc3339(e.expires_at),
    })
}

/// `since` / `until`: epoch seconds or RFC 3339, within 0..=u32::MAX seconds (1970 to 2106),
/// the range of the `DateTime` columns they are compared with.
fn parse_time(field: &str, v: &str) -> Result<u32, Rejection> {
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

fn filter(q: &HashMap<String, String>) -> Result<AdminEventFilter, Rejection> {
    const KNOWN: [&str; 9] = [
        "image", "command", "reason", "cluster", "since", "until", "sort", "limit", "offset",
    ];
    // The query is percent-decoded lossily: bytes that are not UTF-8 (`image=%FF`) come out
    // as U+FFFD, which no image, command or time holds.
    if let Some((k, _)) = q
        .iter()
        .find(|(k, v)| k.contains('\u{FFFD}') || v.contains('\u{FFFD}'))
    {
        return Err(Rejection::invalid(
            k.clone(),
            "not valid UTF-8 once percent-decoded",
        ));
    }
    if let Some(unknown) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(Rejection::invalid(
            unknown.clone(),
            format!("unknown parameter; known: {}", KNOWN.join(", ")),
        ));
    }
    let number = |k: &str, default: u32| -> Result<u32, Rejection> {
        q.get(k).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| Rejection::invalid(k, format!("'{v}' is not a non-negative integer")))
        })
    };
    let limit = number("limit", 100)?;
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Rejection::invalid(
            "limit",
            format!("must be 1..={MAX_LIMIT}"),
        ));
    }
    Ok(AdminEventFilter {
        image: q.get("image").cloned(),
        command: q.get("command").cloned(),
        reason: q.get("reason").cloned(),
        cluster: q.get("cluster").cloned(),
        since: q.get("since").map(|v| parse_time("since", v)).transpose()?,
        until: q.get("until").map(|v| parse_time("until", v)).transpose()?,
        sort: match q.get("sort") {
            None => AdminEventSort::default(),
            Some(s) => AdminEventSort::parse(s).ok_or_else(|| {
                Rejection::invalid(
                    "sort",
                    "one of last_seen, first_seen, occurrences (prefix - for descending), image",
                )
            })?,
        },
        limit,
        offset: number("offset", 0)?,
    })
}

fn admin_only<'g>(
    gw: &'g Gateway,
    headers: &HeaderMap,
) -> Result<&'g clickhouse::Client, Rejection> {
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
    gw.clickhouse
        .as_ref()
        .ok_or_else(|| Rejection::Internal("this gateway has no ClickHouse connection".into()))
}

fn store_error(e: SinkError, retry_after_secs: u32) -> Rejection {
    match e {
        SinkError::Unavailable(reason) => Rejection::Unavailable {
            reason: format!("ClickHouse: {reason}"),
            retry_after_secs,
        },
        SinkError::Rejected(reason) => Rejection::Internal(format!("ClickHouse: {reason}")),
    }
}

/// `GET /v1/admin-events?image=&command=&reason=&cluster=&since=&until=&sort=&limit=&offset=`.
pub(crate) async fn list(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, Rejection> {
    let client = admin_only(&gw, &headers)?;
    // A query string that does not decode (e.g. `image=%FF`) is a bad request with a JSON
    // reason, not axum's plain-text rejection.
    let Query(q) = q.map_err(|e| Rejection::invalid("query", e.body_text()))?;
    let f = filter(&q)?;
    let (events, total) = admin_api::list(client, &f)
        .await
        .map_err(|e| store_error(e, gw.cfg.retry_after_secs))?;
    Ok(Json(json!({
        "total": total,
        "limit": f.limit,
        "offset": f.offset,
        "events": events.iter().map(view).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/admin-events/{id}`.
pub(crate) async fn get(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, Rejection> {
    let client = admin_only(&gw, &headers)?;
    // An id that does not decode (e.g. `%FF`) is a bad request with a JSON reason, not axum's
    // plain-text rejection.
    let Path(id) = id.map_err(|e| Rejection::invalid("id", e.body_text()))?;
    match admin_api::get(client, &id)
        .await
        .map_err(|e| store_error(e, gw.cfg.retry_after_secs))?
    {
        Some(e) => Ok(Json(view(&e))),
        None => Err(Rejection::NotFound(format!("no live admin event {id}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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
            ("image", "\u{FFFD}"),
        ] {
            match filter(&q(&[(k, v)])) {
                Err(Rejection::Invalid { field, .. }) => assert_eq!(field, k),
                other => panic!("{k}={v}: {other:?}"),
            }
        }
    }
}
