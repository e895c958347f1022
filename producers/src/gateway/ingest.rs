//! The ingest endpoints. Each: authorize (401/403), read the body (413 past the limit), prepare
//! with the shared [`Ingestor`] (400 naming the field or the lines), charge the rate limit (429),
//! produce, and answer after the broker acknowledged every record (503 + Retry-After if not).
use std::sync::Arc;

use axum::{body::Body, extract::State, http::HeaderMap, Json};
use serde_json::{json, Value};

use super::{EventKind, Gateway, Rejection};
use crate::ingest::{IngestError, Ingestor, Prepared};

async fn ingest(
    gw: &Gateway,
    headers: &HeaderMap,
    body: Body,
    kind: EventKind,
    prepare: impl FnOnce(&Ingestor, &[u8]) -> Result<Prepared, IngestError>,
) -> Result<Json<Value>, Rejection> {
    let started = std::time::Instant::now();
    let result = ingest_inner(gw, headers, body, kind, prepare).await;
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
    headers: &HeaderMap,
    body: Body,
    kind: EventKind,
    prepare: impl FnOnce(&Ingestor, &[u8]) -> Result<Prepared, IngestError>,
) -> Result<(Json<Value>, usize), Rejection> {
    let caller = gw.authorize(headers, kind)?;
    let body = gw.body(body).await?;
    let prepared = prepare(&gw.ingestor, &body).map_err(|e| match e {
        IngestError::Invalid(e) => Rejection::invalid(e.field, e.reason),
        IngestError::NoValidLine(rejected) => Rejection::InvalidLines(json!({
            "error": "invalid_message",
            "reason": if rejected.is_empty() { "no events in the batch" } else { "no valid line in the batch" },
            "accepted": 0,
            "rejected": rejected,
        })),
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
        &headers,
        body,
        EventKind::ScanReport,
        Ingestor::scan_report,
    )
    .await
}

/// `POST /v1/sarif`: a SARIF 2.1.0 report.
pub(crate) async fn sarif(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Rejection> {
    ingest(&gw, &headers, body, EventKind::Sarif, Ingestor::sarif).await
}

/// `POST /v1/scan-failures`: one failed ad-hoc scan.
pub(crate) async fn scan_failure(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Rejection> {
    ingest(
        &gw,
        &headers,
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
        &headers,
        body,
        EventKind::Telemetry,
        Ingestor::telemetry,
    )
    .await
}
