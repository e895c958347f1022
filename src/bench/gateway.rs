//! `secpipe bench gateway`: the ingest gateway under NDJSON telemetry batches of the reference's
//! 743-event mix. The gateway runs as its own process (`secpipe gateway`); this process is the
//! load generator. Measures from the first request to the last response (a response is sent only
//! after the broker acknowledged every record of its batch), with request latency percentiles.
use super::*;

/// Figures of one gateway run.
#[derive(Debug)]
pub struct GatewayFigures {
    pub events: usize,
    pub batches: usize,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Figures for GatewayFigures {
    fn figures(&self) -> Vec<Figure> {
        vec![
            Figure::new(
                "gateway, telemetry NDJSON acknowledged by the broker (load generator in another process)",
                self.events_per_sec,
                "events/s",
            ),
            Figure::new("gateway request latency p50", self.p50_ms, "ms"),
            Figure::new("gateway request latency p99", self.p99_ms, "ms"),
        ]
    }
}

/// Runs the gateway benchmark: `events` telemetry events in batches of `batch`, `concurrency`
/// requests in flight, against `secpipe gateway` started as a child process.
pub async fn gateway(
    settings: &Settings,
    events: usize,
    batch: usize,
    concurrency: usize,
) -> anyhow::Result<GatewayFigures> {
    crate::topics::create_all(settings).await?;
    let token = uuid::Uuid::new_v4().simple().to_string();
    let addr = free_addr()?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut roles = RoleProcesses::new(settings, &tag, &token, addr)?;
    roles.spawn("gateway", &["gateway"])?;
    let url = format!("http://{addr}/v1/telemetry");

    eprintln!("preparing {events} events of the reference mix in batches of {batch}");
    let bodies: Vec<bytes::Bytes> = {
        let all: Vec<_> = sample::reference_mix(17, 16, 8).take(events).collect();
        all.chunks(batch)
            .map(|chunk| {
                let mut body = Vec::with_capacity(chunk.len() * 700);
                for ev in chunk {
                    serde_json::to_writer(&mut body, ev).expect("serialize");
                    body.push(b'\n');
                }
                bytes::Bytes::from(body)
            })
            .collect()
    };
    let total_bytes: usize = bodies.iter().map(|b| b.len()).sum();
    eprintln!(
        "{} batches, {:.1} MB of NDJSON; sending with {concurrency} in flight",
        bodies.len(),
        total_bytes as f64 / 1e6
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    wait_for_gateway(&http, &format!("http://{addr}")).await?;
    // Warm-up: connections and the producer's idempotence set-up are not part of the figure.
    let warm = http
        .post(&url)
        .bearer_auth(&token)
        .body(bodies[0].clone())
        .send()
        .await?;
    anyhow::ensure!(
        warm.status().is_success(),
        "warm-up batch refused: {}",
        warm.text().await?
    );

    let queue = Arc::new(Mutex::new(bodies.into_iter().enumerate()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (queue, latencies, http, url, token) = (
            queue.clone(),
            latencies.clone(),
            http.clone(),
            url.clone(),
            token.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().await.next();
                let Some((i, body)) = next else { break };
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .body(body)
                    .send()
                    .await?;
                let status = resp.status();
                let text = resp.text().await?;
                anyhow::ensure!(status.is_success(), "batch {i}: {status} {text}");
                latencies.lock().await.push(t.elapsed());
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await.context("bench worker")??;
    }
    let seconds = started.elapsed().as_secs_f64();
    roles.stop();
    let mut lat = latencies.lock().await.clone();
    lat.sort();
    let sent = lat.len() * batch;
    Ok(GatewayFigures {
        events: sent,
        batches: lat.len(),
        seconds,
        events_per_sec: sent as f64 / seconds,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: percentile(&lat, 1.0),
    })
}
