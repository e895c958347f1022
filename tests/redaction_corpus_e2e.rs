//! The redaction corpus through the real pipeline: every leaked secret of
//! `secpipe_processors::redact::corpus` is posted to the gateway in arguments, environment,
//! URIs and paths; afterwards no byte of any topic (raw, clean, rollups, alerts, changelogs,
//! dead letter) and no row of any ClickHouse table holds one, and every look-alike is still
//! there as it was sent.
mod common;

use common::*;
use secpipe::roles::{self, Proc};
use secpipe_processors::redact::corpus::{Shape, LEAKS, LOOK_ALIKES};
use secpipe_schemas::{
    now_micros,
    telemetry::{sample, EnvironmentVariable, TelemetryEvent, TelemetryKind},
};

/// A sample event of `kind` with a fresh id, stamped now.
fn event(kind: TelemetryKind, n: usize) -> TelemetryEvent {
    let mut e = sample::one_of_each(n as u64)
        .into_iter()
        .find(|e| e.kind() == kind)
        .unwrap();
    let env = e.envelope_mut();
    env.event_id = uuid::Uuid::new_v4().to_string();
    env.event_time = now_micros();
    e
}

/// The events that carry `text`: a process's argument, a call's argument (as `putenv` gets
/// it), a URI and a file path.
fn carrying_text(text: &str, n: usize) -> Vec<TelemetryEvent> {
    let mut out = Vec::new();
    if let TelemetryEvent::Process(mut p) = event(TelemetryKind::Process, n) {
        p.path = "/bin/sh".into();
        p.arguments = vec!["sh".into(), "-c".into(), text.into()];
        out.push(TelemetryEvent::Process(p));
    }
    if let TelemetryEvent::Api(mut a) = event(TelemetryKind::Api, n) {
        a.api_name = "putenv".into();
        a.arguments = vec![text.into()];
        out.push(TelemetryEvent::Api(a));
    }
    if let TelemetryEvent::WebappUriDiscovery(mut u) = event(TelemetryKind::WebappUriDiscovery, n) {
        u.uri = format!("/probe/{n}?q={text}");
        out.push(TelemetryEvent::WebappUriDiscovery(u));
    }
    if let TelemetryEvent::File(mut f) = event(TelemetryKind::File, n) {
        f.paths = vec![text.into()];
        out.push(TelemetryEvent::File(f));
    }
    out
}

fn carrying_env(name: &str, value: &str, n: usize) -> TelemetryEvent {
    let TelemetryEvent::ComponentStart(mut c) = event(TelemetryKind::ComponentStart, n) else {
        unreachable!()
    };
    c.environment = vec![EnvironmentVariable {
        name: name.into(),
        value: value.into(),
    }];
    TelemetryEvent::ComponentStart(c)
}

fn carrying_args(args: &[&str], n: usize) -> TelemetryEvent {
    let TelemetryEvent::Process(mut p) = event(TelemetryKind::Process, n) else {
        unreachable!()
    };
    p.arguments = args.iter().map(|a| a.to_string()).collect();
    TelemetryEvent::Process(p)
}

/// Runs `sql` on the test's database; the answer's text.
async fn clickhouse(s: &secpipe::Settings, sql: &str) -> String {
    let resp = reqwest::Client::new()
        .post(&s.clickhouse.url)
        .query(&[("database", s.clickhouse.database.as_str())])
        .body(sql.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{sql}: {status} {text}");
    text
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_of_the_corpus_is_stored_anywhere_and_every_look_alike_survives() {
    let mut s = settings("redactioncorpus");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    assert!(LEAKS.len() >= 60 && LOOK_ALIKES.len() >= 30);

    let mut events = Vec::new();
    for (n, leak) in LEAKS.iter().enumerate() {
        match leak.shape {
            Shape::Text(t) => events.extend(carrying_text(t, n)),
            Shape::Env(name, value) => {
                events.push(carrying_env(name, value, n));
                // The same value under a neutral name must be caught by its shape, unless only
                // the name made it a secret.
                if leak.rule != "environment name" {
                    events.push(carrying_env("APP_SETTING", value, n));
                }
            }
            Shape::Args(args) => events.push(carrying_args(args, n)),
        }
    }
    for (n, (name, value)) in LOOK_ALIKES.iter().enumerate() {
        match name {
            Some(name) => events.push(carrying_env(name, value, 1_000 + n)),
            None => events.extend(carrying_text(value, 1_000 + n)),
        }
    }
    let body = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect::<Vec<_>>()
        .join("\n");

    let pipeline = Pipeline::start(&s).await;
    let (trigger, shutdown) = secpipe::runtime::Shutdown::new();
    let processor = tokio::spawn(roles::processor(s.clone(), Proc::Telemetry, shutdown));
    let resp = reqwest::Client::new()
        .post(pipeline.url("/v1/telemetry"))
        .bearer_auth(PRODUCER_TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let summary: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(summary["accepted"], events.len(), "{summary}");
    assert!(
        summary["redacted"].as_u64().unwrap() >= LEAKS.len() as u64,
        "{summary}"
    );

    // Every event reaches ClickHouse (none is a duplicate, none a heartbeat).
    let expected = events.len().to_string();
    eventually(180, "every event in telemetry_events", || {
        let s = s.clone();
        let expected = expected.clone();
        async move {
            let n = clickhouse(&s, "SELECT uniqExact(event_id) FROM telemetry_events").await;
            (n.trim() == expected).then_some(())
        }
    })
    .await;
    trigger.trigger();
    processor.await.unwrap().unwrap();
    pipeline.stop().await;

    // Every topic, from offset 0: keys and values.
    let mut stored: Vec<(String, Vec<u8>)> = Vec::new();
    for topic in secpipe::topics::all(&s) {
        let bytes: Vec<u8> = read_all(&s, &topic)
            .into_iter()
            .flat_map(|(k, v)| k.unwrap_or_default().into_iter().chain(v))
            .collect();
        stored.push((format!("topic {topic}"), bytes));
    }
    let raw = stored
        .iter()
        .find(|(t, _)| *t == format!("topic {}", s.kafka.topics.telemetry))
        .map(|(_, b)| b.len())
        .unwrap();
    assert!(raw > 0, "the raw topic is empty: nothing was tested");
    // Every table and view of the test's database, every column.
    let tables = clickhouse(&s, "SHOW TABLES").await;
    let tables: Vec<&str> = tables.lines().filter(|t| !t.is_empty()).collect();
    assert!(tables.contains(&"telemetry_events"), "{tables:?}");
    for table in &tables {
        let rows = clickhouse(&s, &format!("SELECT * FROM `{table}` FORMAT TSV")).await;
        stored.push((format!("table {table}"), rows.into_bytes()));
    }

    let mut leaked = Vec::new();
    for leak in LEAKS {
        for (place, bytes) in &stored {
            if contains(bytes, leak.secret) {
                leaked.push(format!("{} ({}) in {place}", leak.secret, leak.rule));
            }
        }
    }
    assert!(
        leaked.is_empty(),
        "secrets stored in clear:\n{}",
        leaked.join("\n")
    );

    let clean = &stored
        .iter()
        .find(|(t, _)| *t == format!("topic {}", s.kafka.topics.telemetry_clean))
        .unwrap()
        .1;
    let table = &stored
        .iter()
        .find(|(t, _)| t == "table telemetry_events")
        .unwrap()
        .1;
    let mut lost = Vec::new();
    for (name, value) in LOOK_ALIKES {
        for (place, bytes) in [("clean topic", clean), ("telemetry_events", table)] {
            if !contains(bytes, value) {
                lost.push(format!("{name:?} {value} in {place}"));
            }
        }
    }
    assert!(
        lost.is_empty(),
        "look-alikes redacted:\n{}",
        lost.join("\n")
    );
}
