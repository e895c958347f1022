//! Deliveries per second to a local webhook receiver: an axum server in this process answering
//! 200, the generic webhook integration (JSON, HMAC-SHA256 signature), one endpoint, the
//! throttle off so that every alert goes out.
//!
//! `cargo bench -p secpipe-sinks --bench notify`

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use secpipe_sinks::notify::{
    Alert, CheckStatus, IntegrationConfig, Notification, Notifier, NotifyConfig, RouteConfig,
    Secret, Severity, ThrottleConfig, WebhookConfig,
};
use tokio::runtime::Runtime;

const BATCH: u64 = 100;

fn receiver(rt: &Runtime) -> String {
    rt.block_on(async {
        let app = Router::new().fallback(|| async { (StatusCode::OK, "ok") });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/hooks/secpipe")
    })
}

fn notifier(url: &str) -> Notifier {
    let config = NotifyConfig {
        throttle: ThrottleConfig {
            reminder_interval_ms: 0,
            ..Default::default()
        },
        integrations: [(
            "hook".to_string(),
            IntegrationConfig::Webhook(WebhookConfig {
                endpoints: vec![url.to_string()],
                secret: Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            }),
        )]
        .into_iter()
        .collect(),
        routes: vec![RouteConfig {
            to: vec!["hook".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    Notifier::new(&config).unwrap()
}

fn alert(i: u64) -> Notification {
    Notification::Alert(Alert {
        id: format!("bench-{i}"),
        account: "prod-aws".into(),
        title: "CloudFront HTTPS Only".into(),
        description: "Distributions must redirect HTTP to HTTPS.".into(),
        scan_id: "scan-42".into(),
        status: CheckStatus::Fail,
        severity: Severity::High,
        resources: vec!["arn:aws:cloudfront::123456789012:distribution/E1".into()],
        dedup_key: format!("cloudfront-https/{i}"),
        resolved: false,
        url: None,
        tags: vec![],
        occurrences: 1,
        raised_at_ms: None,
        context: vec![],
    })
}

async fn deliver_batch(notifier: &mut Notifier, start: u64, count: u64) {
    for i in start..start + count {
        let report = notifier.deliver(&alert(i)).await;
        assert_eq!(report.delivered(), 1, "{report:?}");
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = receiver(&rt);
    let mut sequential = notifier(&url);
    let mut next = 0;

    let mut group = c.benchmark_group("notify");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("webhook_signed_sequential", |b| {
        b.iter(|| {
            rt.block_on(deliver_batch(&mut sequential, next, BATCH));
            next += BATCH;
        })
    });
    group.finish();

    // The integrations' own cost, in this process (no broker, no journal, no lanes): one
    // `Notifier` delivering one alert after another, and four `Notifier`s side by side.
    let total = 5_000;
    let started = Instant::now();
    rt.block_on(deliver_batch(&mut sequential, 1_000_000, total));
    let one = total as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..4u64)
            .map(|t| {
                let mut n = notifier(&url);
                tokio::spawn(
                    async move { deliver_batch(&mut n, 2_000_000 + t * total, total).await },
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let four = (4 * total) as f64 / started.elapsed().as_secs_f64();
    println!("Notifier::deliver in process, signed webhook to a local receiver: {one:.0} deliveries/s one after another, {four:.0}/s with four Notifiers side by side");
}

criterion_group!(benches, bench);
criterion_main!(benches);
