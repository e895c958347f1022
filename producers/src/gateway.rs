//! The ingest gateway (`secpipe gateway`): HTTP in, Avro records on Kafka out. A request is
//! answered 2xx only after the broker acknowledged every record it produced.
use std::{future::Future, net::SocketAddr, sync::Arc};

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, DefaultBodyLimit, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use secpipe_schemas::{now_micros, scan::ScanReport, Codec, SchemaError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    kafka::{EventProducer, OutRecord, ProduceError, Topics},
    scan_report::{self, InvalidMessage},
};

/// The gateway's settings (section `[gateway]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger requests get 413. Default 4 MiB.
    pub max_body_bytes: usize,
    /// Seconds a client is told to wait (Retry-After) when the broker is unavailable. Default 5.
    pub retry_after_secs: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            retry_after_secs: 5,
        }
    }
}

struct Gateway {
    producer: EventProducer,
    topics: Topics,
    scan_reports: Codec<ScanReport>,
    retry_after: HeaderValue,
}

/// A rejected request: the status and a JSON body that says why.
#[derive(Debug)]
pub enum Rejection {
    Invalid(InvalidMessage),
    Body(BytesRejection),
    Produce(ProduceError, HeaderValue),
    Internal(String),
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::Invalid(e) => (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_message", "field": e.field, "reason": e.reason})),
            )
                .into_response(),
            Rejection::Body(e) => (
                e.status(),
                Json(json!({"error": "unreadable_body", "reason": e.body_text()})),
            )
                .into_response(),
            Rejection::Produce(ProduceError::Unavailable(reason), retry_after) => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, retry_after)],
                Json(json!({"error": "broker_unavailable", "reason": reason})),
            )
                .into_response(),
            Rejection::Produce(e, _) => (
                StatusCode::BAD_GATEWAY,
                Json(json!({"error": "broker_rejected", "reason": e.to_string()})),
            )
                .into_response(),
            Rejection::Internal(reason) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "internal", "reason": reason})),
            )
                .into_response(),
        }
    }
}

/// Builds the gateway's routes.
pub fn router(
    cfg: &GatewayConfig,
    producer: EventProducer,
    topics: Topics,
) -> Result<Router, SchemaError> {
    let state = Arc::new(Gateway {
        producer,
        topics,
        scan_reports: Codec::new()?,
        retry_after: HeaderValue::from(cfg.retry_after_secs),
    });
    Ok(Router::new()
        .route("/track", post(track))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .with_state(state))
}

/// Serves the gateway on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: &GatewayConfig,
    producer: EventProducer,
    topics: Topics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(cfg, producer, topics)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    tracing::info!(listen = %listener.local_addr()?, "gateway listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// `POST /track`: one end-of-scan message.
async fn track(
    State(gw): State<Arc<Gateway>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, Rejection> {
    let body = body.map_err(Rejection::Body)?;
    let report = scan_report::parse(&body, now_micros()).map_err(Rejection::Invalid)?;
    let payload = gw
        .scan_reports
        .encode(&report)
        .map_err(|e| Rejection::Internal(e.to_string()))?;
    gw.producer
        .send(OutRecord {
            topic: &gw.topics.scan_results,
            key: report.partition_key().as_bytes(),
            payload: &payload,
            headers: &[("secpipe-event-id", report.id.as_bytes())],
        })
        .await
        .map_err(|e| Rejection::Produce(e, gw.retry_after.clone()))?;
    tracing::debug!(id = %report.id, "scan report accepted");
    Ok(Json(json!({"success": "true"})))
}
