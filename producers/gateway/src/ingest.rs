//! The ingest endpoints. Each: authorize (401/403), read the body (413 past the limit), prepare
//! with the shared [`Ingestor`] (400 naming the field or the lines), charge the rate limit (429),
//! produce, and answer after the broker acknowledged every record (503 + Retry-After if not).
use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Path, RawQuery, State},
    http::HeaderMap,
    Json,
};
use serde_json::{json, Value};

use super::{EventKind, Gateway, Rejection};
use secpipe_producers::{
    ingest::{IngestError, Ingestor, Prepared},
    sarif::UploadContext,
};

/// Who is asking: the `Authorization` header, or a token in the URL.
struct Credentials<'a> {
    headers: &'a HeaderMap,
    url_token: Option<&'a str>,
}

impl<'a> From<&'a HeaderMap> for Credentials<'a> {
    fn from(headers: &'a HeaderMap) -> Self {
        Self {
            headers,
            url_token: None,
        }
    }
}

async fn ingest(
    gw: &Gateway,
    credentials: Credentials<'_>,
    body: Body,
    kind: EventKind,
    prepare: impl FnOnce(&Ingestor, &[u8]) -> Result<Prepared, IngestError>,
) -> Result<Json<Value>, Rejection> {
    let started = std::time::Instant::now();
    let result = ingest_inner(gw, credentials, body, kind, prepare).await;
    let status = match &result {
        Ok((_, events)) => {
            metrics::counter!("secpipe_events_in_total", "kind" => kind.as_str())
                .increment(*events as u64);
            "200".to_string()
        }
        Err(r) => r.status().as_u16().to_string(),
    };
    metrics::counter!("secpipe_gateway_requests_total", "kind" => kind.as_str(), "status" => status).increment(1);
    metrics::histogram!("secpipe_gateway_request_seconds", "kind" => kind.as_str())
        .record(started.elapsed().as_secs_f64());
    result.map(|(json, _)| json)
}

async fn ingest_inner(
    gw: &Gateway,
    credentials: Credentials<'_>,
    body: Body,
    kind: EventKind,
    prepare: impl FnOnce(&Ingestor, &[u8]) -> Result<Prepared, IngestError>,
) -> Result<(Json<Value>, usize), Rejection> {
    let caller = gw.authorize_with(credentials.headers, credentials.url_token, kind)?;
    let body = gw.body(body).await?;
    let prepared = prepare(&gw.ingestor, &body).map_err(|e| match e {
        IngestError::Invalid(e) => Rejection::invalid(e.field, e.reason),
        IngestError::NoValidLine(rejected) => Rejection::InvalidLines(json!({
            "error": "invalid_message",
            "reason": if rejected.is_empty() { "no events in the batch" } else { "no valid line in the batch" },
            "accepted": 0,
            "rejected": rejected,
        })),
        IngestError::TooLarge { field, size, limit } => {
            Rejection::RecordTooLarge { field, size, limit }
        }
        IngestError::Encode(e) => Rejection::Internal(e.to_string()),
    })?;
    gw.charge(caller, prepared.len())?;
    gw.ingestor
        .send(&prepared)
        .await
        .map_err(|e| Rejection::produce(e, gw.cfg.retry_after_secs))?;
    let events = prepared.len();
    Ok((Json(prepared.summary), events))
}

/// `POST /track`: one end-of-scan message; answers `{"success": "true"}` like the original
/// service.
pub(crate) async fn track(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Rejection> {
    ingest(
        &gw,
        (&headers).into(),
        body,
        EventKind::ScanReport,
        Ingestor::scan_report,
    )
    .await
}

/// `POST /track/{token}`: `/track` for clients that cannot send an `Authorization` header (the
/// ShiftLeft scan client posts to a configured URL and nothing else); the path carries the token.
pub(crate) async fn track_with_token(
    State(gw): State<Arc<Gateway>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Rejection> {
    let credentials = Credentials {
        headers: &headers,
        url_token: Some(&token),
    };
    ingest(
        &gw,
        credentials,
        body,
        EventKind::ScanReport,
        Ingestor::scan_report,
    )
    .await
}

/// `POST /v1/sarif[?repository_uri=…&commit_sha=…&ref=…&category=…]`: a SARIF 2.1.0 report, with
/// the scan context as query parameters ([`UploadContext::PARAMETERS`]). An unknown or repeated
/// parameter is a 400.
pub(crate) async fn sarif(
    State(gw): State<Arc<Gateway>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Rejection> {
    let ctx = match upload_context(query.as_deref()) {
        Ok(ctx) => ctx,
        Err(r) => {
            metrics::counter!("secpipe_gateway_requests_total", "kind" => EventKind::Sarif.as_str(), "status" => "400").increment(1);
            return Err(r);
        }
    };
    ingest(&gw, (&headers).into(), body, EventKind::Sarif, |i, b| {
        i.sarif_with(b, &ctx)
    })
    .await
}

/// The scan context of a SARIF upload from its query string.
fn upload_context(query: Option<&str>) -> Result<UploadContext, Rejection> {
    let mut ctx = UploadContext::default();
    let mut seen = std::collections::HashSet::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if !seen.insert(name.to_string()) {
            return Err(Rejection::invalid(
                format!("query.{name}"),
                "given more than once",
            ));
        }
        if !ctx.set(&name, &value) {
            return Err(Rejection::invalid(
                format!("query.{name}"),
                format!(
                    "unknown parameter; the upload takes {}",
                    UploadContext::PARAMETERS.join(", ")
                ),
            ));
        }
    }
    Ok(ctx)
}

/// `POST /v1/scan-failures`: one failed ad-hoc scan.
pub(crate) async fn scan_failure(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Rejection> {
    ingest(
        &gw,
        (&headers).into(),
        body,
        EventKind::ScanFailure,
        Ingestor::scan_failure,
    )
    .await
}

/// `POST /v1/telemetry`: an NDJSON batch, accepted per line (200 with every rejected line; 400
/// when no line was valid, and then nothing is produced).
pub(crate) async fn telemetry(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Rejection> {
    ingest(
        &gw,
        (&headers).into(),
        body,
        EventKind::Telemetry,
        Ingestor::telemetry,
    )
    .await
}
