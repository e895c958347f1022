//! The fault suite: a stream of events through separate `secpipe` processes while, one after
//! another, every role is killed with -9, ClickHouse is unreachable for 30 s, the broker
//! (sqlite storage, a broker of this test's own) is killed and restarted, and malformed and
//! oversized requests are mixed in. Then it counts distinct event ids in ClickHouse against what
//! the gateway acknowledged: nothing acknowledged may be missing, nothing may be doubled.
//!
//! It takes a few minutes, so it is not part of the default run:
//!   cargo test --test fault_suite -- --ignored --nocapture
mod common;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use common::*;
use secpipe::Settings;
use secpipe_schemas::telemetry::{sample, TelemetryEvent};
use serde_json::json;

fn file_event(run: &str, i: usize) -> TelemetryEvent {
    let mut ev = sample::one_of_each(1)
        .into_iter()
        .find(|e| matches!(e, TelemetryEvent::File(_)))
        .unwrap();
    let e = ev.envelope_mut();
    e.event_id = format!("{run}-{i}");
    e.event_time = secpipe_schemas::now_micros();
    e.pid = (i % 7) as i64 + 1;
    ev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes minutes: cargo test --test fault_suite -- --ignored"]
async fn nothing_acknowledged_is_lost_or_doubled_under_faults() {
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let broker_port = free_port();
    let mut broker = Broker::start(
        broker_port,
        std::env::temp_dir().join(format!("secpipe-faults-{run}")),
    );
    let mut s: Settings = settings("faults");
    s.kafka.brokers = format!("127.0.0.1:{broker_port}");
    s.kafka.message_timeout_ms = 5_000;
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let ch_proxy = Proxy::start(s.clickhouse.url.trim_start_matches("http://").to_string()).await;
    let gw_port = free_port();
    let mut env = child_env(&s);
    env.retain(|(k, _)| k != "SECPIPE__CLICKHOUSE__URL");
    env.push((
        "SECPIPE__CLICKHOUSE__URL".into(),
        format!("http://{}", ch_proxy.addr),
    ));
    env.push((
        "SECPIPE__GATEWAY__LISTEN".into(),
        format!("127.0.0.1:{gw_port}"),
    ));
    env.push((
        "SECPIPE__LOADER__RETRY_MAX_BACKOFF_MS".into(),
        "1000".into(),
    ));
    let config = std::env::temp_dir().join(format!("secpipe-faults-{run}.toml"));
    std::fs::write(
        &config,
        format!(
            "[[gateway.tokens]]\nname = \"faults\"\nsha256 = \"{}\"\n",
            secpipe_gateway::hash_token(PRODUCER_TOKEN)
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap().to_string();
    let mut gateway = Role::start(&["--config", &cfg, "gateway"], &env);
    let mut telemetry = Role::start(&["--config", &cfg, "process", "telemetry"], &env);
    let mut loader = Role::start(&["--config", &cfg, "sink", "clickhouse"], &env);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let url = |p: &str| format!("http://127.0.0.1:{gw_port}{p}");
    let mut acked_events: BTreeSet<String> = BTreeSet::new();
    let mut acked_scans: BTreeSet<String> = BTreeSet::new();
    let (mut refused, mut unavailable) = (0usize, 0usize);
    let mut next = 0usize;
    let started = Instant::now();
    // 12 rounds of traffic; a fault at given rounds.
    for round in 0..12 {
        match round {
            2 => {
                eprintln!("fault: kill -9 telemetry processor");
                telemetry.kill_9();
                telemetry.restart();
            }
            4 => {
                eprintln!("fault: kill -9 loader");
                loader.kill_9();
                loader.restart();
            }
            5 => {
                eprintln!("fault: kill -9 gateway");
                gateway.kill_9();
                gateway.restart();
            }
            6 => {
                eprintln!("fault: ClickHouse unreachable for 30 s");
                ch_proxy.cut();
            }
            8 => {
                eprintln!("fault: broker killed and restarted (sqlite)");
                broker.kill();
                tokio::time::sleep(Duration::from_secs(2)).await;
                broker.restart();
            }
            _ => {}
        }
        if round == 7 {
            // ClickHouse comes back after 30 s of traffic during the outage.
            tokio::time::sleep(Duration::from_secs(20)).await;
            ch_proxy.restore();
        }
        let round_end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < round_end {
            // A telemetry batch of 100 file events, a scan report, and junk.
            let batch: Vec<TelemetryEvent> =
                (next..next + 100).map(|i| file_event(&run, i)).collect();
            next += 100;
            let body = batch
                .iter()
                .map(|e| serde_json::to_string(e).unwrap())
                .collect::<Vec<_>>()
                .join("\n");
            match http
                .post(url("/v1/telemetry"))
                .bearer_auth(PRODUCER_TOKEN)
                .body(body)
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => {
                    acked_events.extend(batch.iter().map(|e| e.envelope().event_id.clone()));
                }
                Ok(r) if r.status() == 503 => unavailable += 1,
                Ok(r) => panic!("unexpected answer {}", r.status()),
                Err(_) => unavailable += 1, // gateway down: not acknowledged
            }
            let scan_id = format!("{run}-scan-{next}");
            let scan = json!({"id": scan_id, "repo_context": {"repositoryName": format!("faults-{}", next % 5)}});
            if let Ok(r) = http
                .post(url("/track"))
                .bearer_auth(PRODUCER_TOKEN)
                .json(&scan)
                .send()
                .await
            {
                if r.status() == 200 {
                    acked_scans.insert(scan_id);
                }
            }
            for (body, status) in [
                ("{\"type\":\"file\"}\nnot json".to_string(), 400u16),
                ("x".repeat(5 * 1024 * 1024), 413),
            ] {
                if let Ok(r) = http
                    .post(url("/v1/telemetry"))
                    .bearer_auth(PRODUCER_TOKEN)
                    .body(body)
                    .send()
                    .await
                {
                    if r.status() == status {
                        refused += 1;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "sent in {:.0} s: {} events and {} scans acknowledged; {unavailable} requests answered 503 or unreachable; {refused} malformed/oversized refused",
        started.elapsed().as_secs_f64(),
        acked_events.len(),
        acked_scans.len()
    );
    assert!(acked_events.len() > 1000 && refused > 10);

    // Everything acknowledged must reach ClickHouse exactly once.
    let client = s.clickhouse.client();
    let ids_in = |sql: &'static str| {
        let client = client.clone();
        async move {
            client
                .query(sql)
                .fetch_all::<String>()
                .await
                .unwrap_or_default()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let events: BTreeSet<String> = ids_in("SELECT DISTINCT event_id FROM telemetry_events")
            .await
            .into_iter()
            .collect();
        let scans: BTreeSet<String> = ids_in("SELECT DISTINCT scan_id FROM scan_results")
            .await
            .into_iter()
            .collect();
        let missing_events = acked_events.difference(&events).count();
        let missing_scans = acked_scans.difference(&scans).count();
        if missing_events == 0 && missing_scans == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing_events} acknowledged events and {missing_scans} acknowledged scans never reached ClickHouse"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (rows, distinct): (u64, u64) = client
        .query("SELECT count(), uniqExact(event_id) FROM telemetry_events FINAL")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows, distinct, "no event doubled");
    let (rows, distinct): (u64, u64) = client
        .query("SELECT count(), uniqExact(scan_id) FROM scan_results FINAL")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows, distinct, "no scan doubled");
    eprintln!("ClickHouse holds every acknowledged event and scan once");
}
