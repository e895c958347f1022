//! A local HTTP server speaking the Schema Registry REST API subset secpipe uses.
#![allow(dead_code)]
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};

#[derive(Default)]
pub struct Registry {
    pub schemas: Vec<String>,
    pub subjects: HashMap<String, Vec<u32>>,
}

pub type Shared = Arc<Mutex<Registry>>;

async fn register(
    State(reg): State<Shared>,
    Path(subject): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let Some(schema) = body["schema"].as_str() else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error_code": 42201, "message": "Invalid schema"})),
        );
    };
    let mut reg = reg.lock().unwrap();
    let id = match reg.schemas.iter().position(|s| s == schema) {
        Some(i) => i as u32 + 1,
        None => {
            reg.schemas.push(schema.to_string());
            reg.schemas.len() as u32
        }
    };
    let versions = reg.subjects.entry(subject).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    (StatusCode::OK, Json(json!({ "id": id })))
}

async fn schema_by_id(State(reg): State<Shared>, Path(id): Path<u32>) -> (StatusCode, Json<Value>) {
    let reg = reg.lock().unwrap();
    match reg.schemas.get((id as usize).wrapping_sub(1)) {
        Some(s) => (StatusCode::OK, Json(json!({ "schema": s }))),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error_code": 40403, "message": "Schema not found"})),
        ),
    }
}

pub async fn start_registry() -> (String, Shared) {
    let shared: Shared = Arc::default();
    let app = Router::new()
        .route("/subjects/{subject}/versions", post(register))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, shared)
}
