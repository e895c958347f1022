//! Admin-only HTTP equivalents of `secpipe notify test` and `secpipe notify raw`:
//! `POST /v1/admin/notify/{integration}/test` and `POST /v1/admin/notify/{integration}/raw`
//! (body: the payload in the integration's own format; `?endpoint=` to send it elsewhere than
//! the configured endpoints). The answer lists what became of each endpoint: 200 when every one
//! took it, 502 when some did not.
use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    Json,
};
use secpipe_sinks::notify::{manual, DeliveryReport, NotifyConfig, Outcome};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AuthError, Gateway, Rejection};

fn admin_notify<'g>(gw: &'g Gateway, headers: &HeaderMap) -> Result<&'g NotifyConfig, Rejection> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = gw.auth.authenticate(header).map_err(Rejection::Auth)?;
    if !caller.is_admin() {
        return Err(Rejection::Auth(AuthError::Forbidden(format!(
            "token '{}' has no admin role: sending notifications by hand is for administrators",
            caller.name
        ))));
    }
    gw.notify
        .as_ref()
        .ok_or_else(|| Rejection::Internal("this gateway has no notify configuration".into()))
}

fn answer(report: DeliveryReport) -> (StatusCode, Json<Value>) {
    let outcomes: Vec<Value> = report
        .outcomes
        .iter()
        .map(|o| match &o.outcome {
            Outcome::Delivered { attempts, status } => json!({"integration": o.target.integration,
                "endpoint": o.endpoint, "outcome": "delivered", "attempts": attempts, "status": status}),
            Outcome::Throttled => json!({"integration": o.target.integration,
                "endpoint": o.endpoint, "outcome": "held_back"}),
            Outcome::Dead { attempts, last_error } => json!({"integration": o.target.integration,
                "endpoint": o.endpoint, "outcome": "dead", "attempts": attempts, "error": last_error}),
        })
        .collect();
    let status = if report.dead().count() == 0 {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    (
        status,
        Json(json!({"notification_id": report.notification_id, "outcomes": outcomes})),
    )
}

fn config_error(e: secpipe_sinks::notify::ConfigError) -> Rejection {
    match e {
        secpipe_sinks::notify::ConfigError::Integration { .. } => {
            Rejection::NotFound(e.to_string())
        }
        other => Rejection::Internal(other.to_string()),
    }
}

pub(super) async fn test(
    State(gw): State<Arc<Gateway>>,
    Path(integration): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Value>), Rejection> {
    let cfg = admin_notify(&gw, &headers)?;
    let report = manual::test(cfg, &integration)
        .await
        .map_err(config_error)?;
    Ok(answer(report))
}

#[derive(Deserialize)]
pub(super) struct RawQuery {
    endpoint: Option<String>,
}

pub(super) async fn raw(
    State(gw): State<Arc<Gateway>>,
    Path(integration): Path<String>,
    Query(q): Query<RawQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), Rejection> {
    let cfg = admin_notify(&gw, &headers)?;
    let bytes = gw.body(body).await?;
    let payload: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Rejection::invalid("$", format!("the payload is not JSON: {e}")))?;
    let report = manual::raw(cfg, &integration, q.endpoint.as_deref(), payload)
        .await
        .map_err(config_error)?;
    Ok(answer(report))
}
