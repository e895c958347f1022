//! Records larger than the topics may hold, on the real broker: 2 MB of garbage and a valid 2 MB
//! event on the raw telemetry topic. Both must end in the dead-letter topic as truncated copies
//! that say where they came from, the processor must keep flowing, and a restart must not replay
//! them into a failure.
mod common;

use std::time::Duration;

use common::*;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use secpipe::{
    roles::{self, Proc},
    runtime::Shutdown,
    Settings,
};
use secpipe_schemas::{
    now_micros,
    ops::DeadLetter,
    telemetry::{sample, TelemetryCodec, TelemetryEvent},
    Codec,
};

const TWO_MB: usize = 2 * 1024 * 1024;

/// Writes a record of any size, as a misconfigured or foreign producer could.
fn produce_big(s: &Settings, topic: &str, key: &[u8], payload: &[u8]) {
    let p: ThreadedProducer<DefaultProducerContext> = s
        .kafka
        .client_config("test-big")
        .set("acks", "all")
        .set("message.max.bytes", "8000000")
        .create()
        .unwrap();
    p.send(BaseRecord::to(topic).key(key).payload(payload))
        .map_err(|(e, _)| e)
        .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
}

fn file_event(id: &str, path_len: usize) -> (String, Vec<u8>) {
    let mut ev = sample::one_of_each(3)
        .into_iter()
        .find(|e| matches!(e, TelemetryEvent::File(_)))
        .unwrap();
    if let TelemetryEvent::File(f) = &mut ev {
        f.paths = vec![format!("/data/{}", "x".repeat(path_len))];
    }
    let e = ev.envelope_mut();
    e.event_id = id.into();
    e.event_time = now_micros();
    (
        ev.partition_key(),
        TelemetryCodec::new().unwrap().encode(&ev).unwrap(),
    )
}

/// Waits until an event with `id` is on the clean topic.
async fn wait_clean(s: &Settings, id: &str) {
    eventually(60, &format!("{id} on the clean topic"), || {
        let s = s.clone();
        let id = id.to_string();
        async move {
            tokio::task::spawn_blocking(move || {
                let codec = TelemetryCodec::new().unwrap();
                read_all(&s, &s.kafka.topics.telemetry_clean)
                    .iter()
                    .filter_map(|(_, p)| codec.decode(p).ok())
                    .any(|e| e.envelope().event_id == id)
                    .then_some(())
            })
            .await
            .unwrap()
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_too_large_for_the_topics_are_dead_lettered_truncated_and_the_stage_flows_on() {
    let s = settings("toolarge");
    require_stack(&s).await;
    let topic = s.kafka.topics.telemetry.clone();
    let garbage = vec![0xAB_u8; TWO_MB];
    produce_big(&s, &topic, b"junk", &garbage);
    let (key, big) = file_event("big-file", TWO_MB);
    assert!(big.len() > TWO_MB);
    produce_big(&s, &topic, key.as_bytes(), &big);
    let (key, small) = file_event("small-after", 16);
    produce_many(&s, &topic, &[(key, small)]).await;

    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::processor(s.clone(), Proc::Telemetry, shutdown));
    wait_clean(&s, "small-after").await;
    // The junk record's key may be on another partition than the events: wait for its letter.
    eventually(60, "both dead letters", || async {
        (records_in(&s, &s.kafka.topics.dead_letter) >= 2).then_some(())
    })
    .await;
    trigger.trigger();
    task.await.unwrap().unwrap();

    let letters: Vec<DeadLetter> = read_all(&s, &s.kafka.topics.dead_letter)
        .iter()
        .map(|(_, p)| Codec::<DeadLetter>::new().unwrap().decode(p).unwrap())
        .collect();
    assert_eq!(letters.len(), 2, "{letters:#?}");
    for l in &letters {
        assert_eq!(l.topic, topic);
        assert!(
            l.payload.len() < 1_000_000,
            "a truncated copy fits the topic"
        );
        assert!(l.error.contains("truncated"), "{}", l.error);
        assert!(l
            .error
            .contains(&format!("bytes at {topic}/{}@{}", l.partition, l.offset)));
    }
    assert!(letters
        .iter()
        .any(|l| l.error.contains("undecodable") || l.error.contains("decode")));
    assert!(
        letters
            .iter()
            .any(|l| l.error.contains("exceeds kafka.max_message_bytes")),
        "{letters:#?}"
    );

    // A restart reads on after them: no failure, no second dead letter.
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(roles::processor(s.clone(), Proc::Telemetry, shutdown));
    let (key, next) = file_event("after-restart", 16);
    produce_many(&s, &topic, &[(key, next)]).await;
    wait_clean(&s, "after-restart").await;
    trigger.trigger();
    task.await.unwrap().unwrap();
    assert_eq!(records_in(&s, &s.kafka.topics.dead_letter), 2);
}

/// The gateway refuses an event the topics cannot hold (413 naming the field and both sizes)
/// and produces nothing, although the body is under `gateway.max_body_bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_an_event_larger_than_the_topics_hold() {
    let s = settings("gatewaytoolarge");
    require_stack(&s).await;
    let gw = Pipeline::gateway_only(&s).await;
    let mut report: serde_json::Value = serde_json::from_str(
        include_str!("../deploy/samples/scan-reports.ndjson")
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    report["repo_context"]["invokedBy"] = serde_json::Value::String("a".repeat(1_500_000));
    let resp = reqwest::Client::new()
        .post(gw.url("/track"))
        .bearer_auth(PRODUCER_TOKEN)
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "record_too_large", "{body}");
    assert!(body["field"].as_str().unwrap().contains("body"), "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("kafka.max_message_bytes"), "{reason}");
    gw.stop().await;
    assert_eq!(
        records_in(&s, &s.kafka.topics.scan_results),
        0,
        "nothing produced"
    );
}
