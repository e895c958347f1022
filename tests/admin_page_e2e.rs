//! The admin page in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `deploy/local/install.sh`) opens `/admin/events` on a gateway over a real ClickHouse, filtered
//! by image, and the rows it shows are checked; a screenshot is kept under
//! `target/test-output/admin_page/`.
mod common;

use std::{path::PathBuf, time::Duration};

use common::*;
use secpipe::Settings;
use secpipe_schemas::{
    failures::{AdminEvent, Image, ScanFailure},
    now_micros,
};
use secpipe_sinks::{
    clickhouse::tables::{AdminEventRow, ScanFailureRow, TableSink},
    Sink,
};

const ADMIN_TOKEN: &str = "test-admin-token";
const MIN: i64 = 60_000_000;

fn image(full_name: &str, original: &str) -> Image {
    Image {
        full_name: full_name.into(),
        registry: full_name.split('/').next().map(Into::into),
        repository: full_name.into(),
        tag: None,
        digest: None,
        original: Some(original.into()),
    }
}

fn event(id: &str, img: Image, reason: &str, occurrences: i64, last_seen: i64) -> AdminEvent {
    AdminEvent {
        id: id.into(),
        command: "image check".into(),
        image: img,
        reason: reason.into(),
        cluster: Some("prod".into()),
        source: "api".into(),
        first_seen: last_seen - 90 * MIN,
        last_seen,
        occurrences,
        version: occurrences,
        expires_at: last_seen + 4 * 24 * 60 * MIN,
        sources: vec!["api".into(), "cli".into()],
    }
}

fn output_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-output/admin_page");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `url` with `args`, killed after a deadline; returns stdout.
async fn chromium(url: &str, args: &[String]) -> String {
    let profile = std::env::temp_dir().join(format!("secpipe-chromium-{}", uuid::Uuid::new_v4()));
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        // Virtual time runs the page's scripts to completion; network fetches are waited for.
        "--virtual-time-budget=20000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .kill_on_drop(true)
    .stdin(std::process::Stdio::null());
    let child = match cmd.output().await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "no chromium on PATH: install it with deploy/local/install.sh (apt-get install -y chromium)"
        ),
        other => other,
    };
    let out = child.expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn dump_dom(url: &str) -> String {
    tokio::time::timeout(
        Duration::from_secs(120),
        chromium(url, &["--dump-dom".to_string()]),
    )
    .await
    .expect("chromium finishes within 2 minutes")
}

/// The values of `attr="..."` in `html`, in order.
fn attr_values(html: &str, attr: &str) -> Vec<String> {
    let needle = format!("{attr}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

async fn stack() -> (Settings, Pipeline) {
    use secpipe_gateway::{hash_token, Role, TokenConfig};
    let mut s = settings("adminpage");
    s.gateway.tokens.push(TokenConfig {
        name: "admin".into(),
        sha256: hash_token(ADMIN_TOKEN),
        role: Role::Admin,
        kinds: vec![],
        rate_per_sec: 0,
    });
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let now = now_micros();
    TableSink::<AdminEvent, AdminEventRow>::new(&s.clickhouse, "admin_events")
        .write(&[
            event(
                "ev-nginx",
                image("docker.io/library/nginx:1.25", "nginx:1.25"),
                "manifest unknown",
                4,
                now - 5 * MIN,
            ),
            event(
                "ev-api",
                image("quay.io/acme/api:1", "quay.io/acme/api:1"),
                "timeout",
                7,
                now - 10 * MIN,
            ),
            event(
                "ev-redis",
                image("docker.io/library/redis:7", "redis:7"),
                "unauthorized",
                2,
                now - 15 * MIN,
            ),
        ])
        .await
        .unwrap();
    let failures: Vec<ScanFailure> = (0..4)
        .map(|i| ScanFailure {
            failure_id: format!("nginx-failure-{i}"),
            command: "image check".into(),
            image: image("docker.io/library/nginx:1.25", "nginx:1.25"),
            reason: "manifest unknown".into(),
            source: if i % 2 == 0 { "cli" } else { "api" }.into(),
            cluster: Some("prod".into()),
            occurred_at: now - 95 * MIN + i * 30 * MIN,
            received_at: now - 95 * MIN + i * 30 * MIN,
        })
        .collect();
    TableSink::<ScanFailure, ScanFailureRow>::new(&s.clickhouse, "scan_failures")
        .write(&failures)
        .await
        .unwrap();
    let gw = Pipeline::gateway_only(&s).await;
    (s, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_lists_events_filtered_by_image_with_their_history() {
    let (_s, gw) = stack().await;
    let page = gw.url("/admin/events");

    // Unfiltered: every live event, most recent first.
    let dom = dump_dom(&format!("{page}#token={ADMIN_TOKEN}")).await;
    assert_eq!(
        attr_values(&dom, "data-event-id"),
        vec!["ev-nginx", "ev-api", "ev-redis"],
        "{dom}"
    );
    assert!(dom.contains("3 live event(s)"), "{dom}");

    // Filtered by image, as the user typed it: the normalised event matches; its history open.
    let url = format!("{page}#token={ADMIN_TOKEN}&image=nginx:1.25&event=ev-nginx");
    let dom = dump_dom(&url).await;
    assert_eq!(
        attr_values(&dom, "data-event-id"),
        vec!["ev-nginx"],
        "{dom}"
    );
    assert!(dom.contains("docker.io/library/nginx:1.25"));
    assert!(dom.contains("api, cli"), "both sources shown");
    assert!(dom.contains("History of event ev-nginx"), "{dom}");
    let failure_rows = dom.matches("<tr class=\"failure\">").count();
    assert_eq!(failure_rows, 4, "the event's scan_failures rows");
    assert!(dom.contains("nginx-failure-3"));
    assert!(
        dom.matches("<tr class=\"hour\">").count() >= 2,
        "occurrences over time"
    );

    // A screenshot of that view for the test's output.
    let shot = output_dir().join("admin_events_filtered.png");
    let _ = std::fs::remove_file(&shot);
    tokio::time::timeout(
        Duration::from_secs(120),
        chromium(
            &url,
            &[
                format!("--screenshot={}", shot.display()),
                "--window-size=1400,1100".to_string(),
            ],
        ),
    )
    .await
    .expect("chromium finishes within 2 minutes");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );

    // Sorted and paged through the API's parameters.
    let dom = dump_dom(&format!(
        "{page}#token={ADMIN_TOKEN}&sort=-occurrences&limit=2"
    ))
    .await;
    assert_eq!(
        attr_values(&dom, "data-event-id"),
        vec!["ev-api", "ev-nginx"]
    );
    assert!(dom.contains("events 1–2 of 3"), "{dom}");

    // A token without the admin role sees why, and no events.
    let dom = dump_dom(&format!("{page}#token={ANALYST_TOKEN}")).await;
    assert!(attr_values(&dom, "data-event-id").is_empty());
    assert!(dom.contains("403 forbidden"), "{dom}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_a_policy_that_keeps_it_to_this_gateway() {
    let (_s, gw) = stack().await;
    let r = reqwest::get(gw.url("/admin/events")).await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("connect-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(r.text().await.unwrap().contains("<table id=\"events\">"));
    gw.stop().await;
}
