//! Every way the gateway says no, each with a status and a JSON body that says why.
use std::time::Duration;

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::AuthError;
use secpipe_producers::kafka::ProduceError;

/// A rejected request.
#[derive(Debug)]
pub enum Rejection {
    /// 401 / 403.
    Auth(AuthError),
    /// 413: the body is larger than `gateway.max_body_bytes`.
    TooLarge { limit: usize },
    /// 413: a record made from the body is larger than the topics hold
    /// (`kafka.max_message_bytes`); nothing was produced.
    RecordTooLarge {
        field: String,
        size: usize,
        limit: usize,
    },
    /// 400: the body could not be read or is not what the endpoint takes.
    Invalid { field: String, reason: String },
    /// 400 with per-line reasons (telemetry batches where no line was valid).
    InvalidLines(Value),
    /// 429: the caller's rate limit; retry after the given time.
    RateLimited { retry_after: Duration },
    /// 503: the broker did not acknowledge in time.
    Unavailable {
        reason: String,
        retry_after_secs: u32,
    },
    /// 502: the broker refused the records.
    BrokerRejected(String),
    /// 404.
    NotFound(String),
    /// 500.
    Internal(String),
}

impl Rejection {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejection::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn produce(e: ProduceError, retry_after_secs: u32) -> Self {
        match e {
            ProduceError::Unavailable(reason) => Rejection::Unavailable {
                reason,
                retry_after_secs,
            },
            ProduceError::TooLarge { topic, size, limit } => Rejection::RecordTooLarge {
                field: format!("body (the record for {topic})"),
                size,
                limit,
            },
            other => Rejection::BrokerRejected(other.to_string()),
        }
    }
}

impl Rejection {
    /// The HTTP status this rejection answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Auth(AuthError::Forbidden(_)) => StatusCode::FORBIDDEN,
            Rejection::Auth(_) => StatusCode::UNAUTHORIZED,
            Rejection::TooLarge { .. } | Rejection::RecordTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Rejection::Invalid { .. } | Rejection::InvalidLines(_) => StatusCode::BAD_REQUEST,
            Rejection::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Rejection::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::BrokerRejected(_) => StatusCode::BAD_GATEWAY,
            Rejection::NotFound(_) => StatusCode::NOT_FOUND,
            Rejection::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let (status, body, headers): (StatusCode, Value, Vec<(header::HeaderName, HeaderValue)>) =
            match self {
                Rejection::Auth(AuthError::Missing) => (
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "unauthorized", "reason": "missing bearer token: send Authorization: Bearer <token>"}),
                    vec![(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                ),
                Rejection::Auth(AuthError::Unknown) => (
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "unauthorized", "reason": "unknown bearer token"}),
                    vec![(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer error=\"invalid_token\""),
                    )],
                ),
                Rejection::Auth(AuthError::Forbidden(reason)) => (
                    StatusCode::FORBIDDEN,
                    json!({"error": "forbidden", "reason": reason}),
                    vec![],
                ),
                Rejection::TooLarge { limit } => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": "payload_too_large", "reason": format!("request body exceeds {limit} bytes")}),
                    vec![],
                ),
                Rejection::RecordTooLarge { field, size, limit } => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": "record_too_large", "field": field,
                        "reason": format!("an event of {size} bytes exceeds what the topics hold ({limit} bytes, kafka.max_message_bytes); nothing was produced")}),
                    vec![],
                ),
                Rejection::Invalid { field, reason } => (
                    StatusCode::BAD_REQUEST,
                    json!({"error": "invalid_message", "field": field, "reason": reason}),
                    vec![],
                ),
                Rejection::InvalidLines(body) => (StatusCode::BAD_REQUEST, body, vec![]),
                Rejection::RateLimited { retry_after } => {
                    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        json!({"error": "rate_limited", "reason": format!("rate limit of this token exceeded; retry in {secs} s")}),
                        vec![(header::RETRY_AFTER, HeaderValue::from(secs))],
                    )
                }
                Rejection::Unavailable {
                    reason,
                    retry_after_secs,
                } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "broker_unavailable", "reason": reason}),
                    vec![(header::RETRY_AFTER, HeaderValue::from(retry_after_secs))],
                ),
                Rejection::BrokerRejected(reason) => (
                    StatusCode::BAD_GATEWAY,
                    json!({"error": "broker_rejected", "reason": reason}),
                    vec![],
                ),
                Rejection::NotFound(reason) => (
                    StatusCode::NOT_FOUND,
                    json!({"error": "not_found", "reason": reason}),
                    vec![],
                ),
                Rejection::Internal(reason) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal", "reason": reason}),
                    vec![],
                ),
            };
        let mut resp = (status, Json(body)).into_response();
        resp.headers_mut().extend(headers);
        resp
    }
}
