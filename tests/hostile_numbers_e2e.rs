//! Every numeric field of every telemetry type set to the extremes of its type and beyond, as an
//! operator sees it end to end: posted to the real gateway (one NDJSON batch per field, one line
//! per hostile value), every answer is a 200 or a 400 whose rejected lines name the field, and the
//! telemetry processor on the real broker consumes whatever the gateway accepted and keeps
//! forwarding events afterwards, without failing.
//!
//! `producers/tests/hostile_numbers.rs` checks the same values against the parser and the
//! processor in the same process; the fields and values come from the same helpers.
#[path = "../producers/tests/support/hostile.rs"]
mod hostile;

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::*;
use hostile::{base_event, hostile_values, numeric_paths, render, slot};
use secpipe::{
    roles::{self, Proc},
    runtime::Shutdown,
    Settings,
};
use secpipe_schemas::{
    catalog, now_micros,
    telemetry::{sample, TelemetryCodec, TelemetryEvent, TelemetryKind},
};
use serde_json::Value;

/// What one batch of hostile lines was answered.
struct Answer {
    accepted: usize,
    rejected: usize,
}

/// Posts `lines` (one event each, line `i` holding `values[i - 1]` in `field`) as one NDJSON batch
/// for `case` and checks the answer: a 200 or a 400 (no line valid), every line either accepted or
/// rejected naming `field`. Whatever is
/// wrong is added to `problems`, so that one run reports every failing field.
async fn post_batch(
    client: &reqwest::Client,
    url: &str,
    case: &str,
    field: &str,
    values: &[Value],
    lines: &[String],
    problems: &mut Vec<String>,
) -> Answer {
    let nothing = Answer {
        accepted: 0,
        rejected: 0,
    };
    let resp = match client
        .post(url)
        .bearer_auth(PRODUCER_TOKEN)
        .body(lines.join("\n"))
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("{case}: no answer: {e}"));
            return nothing;
        }
    };
    let status = resp.status();
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("{case}: {status}, body not read: {e}"));
            return nothing;
        }
    };
    if status != 200 && status != 400 {
        problems.push(format!("{case}: answered {status}: {text}"));
        return nothing;
    }
    let Ok(answer) = serde_json::from_str::<Value>(&text) else {
        problems.push(format!(
            "{case}: {status} with a body that is not JSON: {text}"
        ));
        return nothing;
    };
    let (Some(accepted), Some(rejected)) = (
        answer["accepted"].as_u64().map(|n| n as usize),
        answer["rejected"].as_array(),
    ) else {
        problems.push(format!(
            "{case}: {status} without accepted and rejected: {answer}"
        ));
        return nothing;
    };
    if accepted + rejected.len() != lines.len() {
        problems.push(format!(
            "{case}: {accepted} accepted + {} rejected of {} lines: {answer}",
            rejected.len(),
            lines.len()
        ));
    }
    if (status == 400) != (accepted == 0) {
        problems.push(format!(
            "{case}: {status} with {accepted} accepted: {answer}"
        ));
    }
    let mut seen = BTreeSet::new();
    for r in rejected {
        let line = r["line"].as_u64().unwrap_or(0) as usize;
        let named = r["field"].as_str().unwrap_or_default();
        let reason = r["reason"].as_str().unwrap_or_default();
        if !(1..=lines.len()).contains(&line) || !seen.insert(line) {
            problems.push(format!(
                "{case}: rejected line {line} is not one of the batch's lines once: {r}"
            ));
        }
        // The one rule on two fields (a mapping must not end before it starts) names the
        // mapping that holds both.
        let mapping = named.starts_with("memory_maps[") && field.starts_with(&format!("{named}."));
        if !(named == field || mapping) || !reason.starts_with(named) {
            let value = values.get(line.wrapping_sub(1)).unwrap_or(&Value::Null);
            problems.push(format!(
                "{case} = {value}: line {line} rejected naming {named:?}: {reason}"
            ));
        }
    }
    Answer {
        accepted,
        rejected: rejected.len(),
    }
}

/// Waits until the processor has committed every record of the raw telemetry topic, failing
/// at once if the processor stopped.
async fn wait_consumed(
    s: &Settings,
    processor: &tokio::task::JoinHandle<anyhow::Result<()>>,
    secs: u64,
) {
    let group = format!("{}telemetry", s.processors.group_prefix);
    let topic = s.kafka.topics.telemetry.clone();
    let total = {
        let (s, topic) = (s.clone(), topic.clone());
        tokio::task::spawn_blocking(move || records_in(&s, &topic))
            .await
            .unwrap()
    };
    eventually(
        secs,
        "the processor to commit every raw telemetry record",
        || {
            assert!(
                !processor.is_finished(),
                "the telemetry processor stopped before it was told to"
            );
            let (s, group, topic) = (s.clone(), group.clone(), topic.clone());
            async move {
                tokio::task::spawn_blocking(move || {
                    (committed(&s, &group, &topic) >= total).then_some(())
                })
                .await
                .unwrap()
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_values_in_every_numeric_telemetry_field_get_a_200_or_a_400_naming_it_and_the_pipeline_keeps_flowing(
) {
    let s = settings("hostile");
    require_stack(&s).await;
    let gw = Pipeline::gateway_only(&s).await;
    let (trigger, shutdown) = Shutdown::new();
    let processor = tokio::spawn(roles::processor(s.clone(), Proc::Telemetry, shutdown));

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = gw.url("/v1/telemetry");
    let catalog = catalog().unwrap();
    let values = hostile_values();
    let (mut requests, mut fields, mut accepted, mut rejected) = (0, 0, 0, 0);
    let mut problems = Vec::new();
    for kind in TelemetryKind::ALL {
        let paths = numeric_paths(catalog.current(kind.full_name()).unwrap().source);
        assert!(
            paths.len() >= 2,
            "{kind}: the envelope alone has event_time and pid"
        );
        // Fresh, so only a varied event_time is out of the gateway's window.
        let base = base_event(kind, &paths, now_micros());
        for path in &paths {
            let field = render(path);
            let lines: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, value)| {
                    let mut json = base.clone();
                    json["envelope"]["event_id"] = format!("hostile-{kind}-{field}-{i}").into();
                    *slot(&mut json, path) = value.clone();
                    json.to_string()
                })
                .collect();
            let case = format!("{kind}.{field}");
            let answer =
                post_batch(&client, &url, &case, &field, &values, &lines, &mut problems).await;
            requests += 1;
            fields += 1;
            accepted += answer.accepted;
            rejected += answer.rejected;
        }
    }
    eprintln!(
        "{requests} requests ({fields} fields x {} values): {accepted} lines accepted, {rejected} rejected",
        values.len()
    );
    for p in &problems {
        eprintln!("PROBLEM {p}");
    }

    // The pipeline keeps flowing: the processor consumes everything the gateway took, and an
    // ordinary event posted after all of it reaches the clean topic.
    wait_consumed(&s, &processor, 120).await;
    let mut after = sample::one_of_each(7)
        .into_iter()
        .find(|e| matches!(e, TelemetryEvent::File(_)))
        .unwrap();
    let id = format!("after-hostile-{}", uuid::Uuid::new_v4());
    after.envelope_mut().event_id = id.clone();
    after.envelope_mut().event_time = now_micros();
    let resp = client
        .post(&url)
        .bearer_auth(PRODUCER_TOKEN)
        .body(serde_json::to_string(&after).unwrap())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        (status.as_u16(), answer["accepted"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    eventually(
        60,
        "the event posted after the hostile ones on the clean topic",
        || {
            assert!(
                !processor.is_finished(),
                "the telemetry processor stopped before it was told to"
            );
            let (s, id) = (s.clone(), id.clone());
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
        },
    )
    .await;
    let dead_letters = {
        let s = s.clone();
        tokio::task::spawn_blocking(move || records_in(&s, &s.kafka.topics.dead_letter))
            .await
            .unwrap()
    };
    eprintln!("{dead_letters} records dead-lettered by the processor");

    trigger.trigger();
    processor
        .await
        .expect("telemetry processor task")
        .expect("the telemetry processor ran without error");
    gw.stop().await;

    // Not vacuous: every type has fields, and both outcomes happen.
    assert!(fields >= 60, "only {fields} numeric fields found");
    assert!(
        accepted > 0 && rejected > 0,
        "{accepted} accepted, {rejected} rejected"
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
