//! `secpipe sink notify` end to end: alerts on the real broker, delivered to a real local
//! webhook receiver, every attempt recorded in the real ClickHouse, the undeliverable one
//! dead-lettered with its last error.
mod common;

use std::sync::{Arc, Mutex};

use axum::{extract::State, http::StatusCode, routing::post, Router};
use common::*;
use secpipe::{roles, runtime::Shutdown};
use secpipe_schemas::{alert::Alert, ops::DeadLetter, Codec};
use serde_json::json;

type Seen = Arc<Mutex<Vec<(String, String)>>>;

async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn ok(
        State(seen): State<Seen>,
        headers: axum::http::HeaderMap,
        body: String,
    ) -> StatusCode {
        let id = headers["webhook-id"].to_str().unwrap().to_string();
        seen.lock().unwrap().push((id, body));
        StatusCode::OK
    }
    async fn fail() -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
    let app = Router::new()
        .route("/ok", post(ok))
        .route("/fail", post(fail))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn alert(id: &str, severity: &str) -> Alert {
    Alert {
        alert_id: id.into(),
        rule: "scan_failed".into(),
        severity: severity.into(),
        kind: "result".into(),
        title: format!("alert {id}"),
        description: "a scanner reported a cross".into(),
        dedup_key: format!("dedup/{id}"),
        status: "open".into(),
        source_topic: "t".into(),
        source_id: format!("src-{id}"),
        resources: vec!["shop-web".into()],
        tags: vec![],
        attributes: Default::default(),
        raised_at: secpipe_schemas::now_micros(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_the_receiver_attempts_are_recorded_and_dead_ones_dead_lettered() {
    let (url, seen) = receiver().await;
    let mut s = settings("notify");
    s.notifier.group_id = format!("{}.notify", s.loader.group_id);
    s.notify = serde_json::from_value(json!({
        "retry": {"max_attempts": 2, "initial_backoff_ms": 1, "max_backoff_ms": 2, "timeout_ms": 2000},
        "integrations": {
            "hook": {"type": "webhook", "endpoints": [format!("{url}/ok")]},
            "broken": {"type": "webhook", "endpoints": [format!("{url}/fail")]}
        },
        "routes": [
            {"name": "all", "to": ["hook"]},
            {"name": "critical", "min_severity": "critical", "to": ["broken"]}
        ]
    }))
    .unwrap();
    require_stack(&s).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let alerts = [
        alert(&format!("{run}-1"), "low"),
        alert(&format!("{run}-2"), "high"),
        alert(&format!("{run}-3"), "critical"),
    ];
    let codec = Codec::<Alert>::new().unwrap();
    let records: Vec<(String, Vec<u8>)> = alerts
        .iter()
        .map(|a| (a.dedup_key.clone(), codec.encode(a).unwrap()))
        .collect();
    produce_many(&s, &s.kafka.topics.alerts, &records).await;

    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::notifier(s.clone(), shutdown));
    eventually(60, "three deliveries and one dead letter", || async {
        let delivered = seen.lock().unwrap().len();
        (delivered >= 3 && records_in(&s, &s.kafka.topics.dead_letter) >= 1).then_some(())
    })
    .await;

    let mut ids: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        alerts
            .iter()
            .map(|a| a.alert_id.clone())
            .collect::<Vec<_>>(),
        "webhook-id is the alert id"
    );

    let letters = read_all(&s, &s.kafka.topics.dead_letter);
    assert_eq!(letters.len(), 1);
    let letter = Codec::<DeadLetter>::new()
        .unwrap()
        .decode(&letters[0].1)
        .unwrap();
    assert_eq!(
        codec.decode(&letter.payload).unwrap().alert_id,
        alerts[2].alert_id
    );
    assert!(
        letter.error.contains("broken") && letter.error.contains("500"),
        "{}",
        letter.error
    );

    // Every attempt is in ClickHouse: 3 deliveries to /ok and 2 failed attempts to /fail.
    let client = s.clickhouse.client();
    let rows: Vec<(String, String, u32, Option<u16>)> = eventually(30, "delivery rows", || {
        let client = client.clone();
        let run = run.clone();
        async move {
            let rows: Vec<(String, String, u32, Option<u16>)> = client
                .query("SELECT notification_id, integration, attempt, status FROM notification_deliveries WHERE startsWith(notification_id, ?) ORDER BY notification_id, integration, attempt")
                .bind(run)
                .fetch_all()
                .await
                .unwrap();
            (rows.len() >= 5).then_some(rows)
        }
    })
    .await;
    let crit = &alerts[2].alert_id;
    assert_eq!(
        rows.iter()
            .filter(|r| &r.0 == crit && r.1 == "broken")
            .map(|r| (r.2, r.3))
            .collect::<Vec<_>>(),
        vec![(1, Some(500)), (2, Some(500))]
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r.1 == "hook" && r.3 == Some(200))
            .count(),
        3
    );
    trigger.trigger();
    task.await.unwrap().unwrap();
}
