//! Scan ingest as real scan tools use it, end to end through the gateway, the scan-results
//! processor and the loader: the ShiftLeft scan client's posting sequence (a fragment, then the
//! summary, no Authorization header, emoji short codes, today's scanner names), and SARIF from a
//! real scanner (bandit, installed from PyPI by the test set-up) uploaded twice.
mod common;

use std::collections::BTreeMap;

use common::*;
use secpipe::{
    roles::{self, Proc},
    runtime::Shutdown,
    Settings,
};
use serde_json::{json, Value};

/// One logical scan: the same facts, sent by the real client or as the seed's messages.
struct Scan {
    org: &'static str,
    name: &'static str,
    branch: &'static str,
    invoker: &'static str,
    nodejs: bool,
    /// (today's name, the pre-2020 name, critical, high, medium, low, failed)
    scanners: Vec<(&'static str, &'static str, i64, i64, i64, i64, bool)>,
}

fn scans() -> Vec<Scan> {
    let js = |c, h, failed| {
        (
            "JavaScript Source Analyzer",
            "Source code analyzer for JavaScript",
            c,
            h,
            1,
            2,
            failed,
        )
    };
    let secrets = |failed| ("Secrets Audit", "Secrets audit", 0, 0, 0, 1, failed);
    let py = |h, failed| {
        (
            "Security Audit for Python",
            "Security audit for Python",
            0,
            h,
            3,
            0,
            failed,
        )
    };
    vec![
        // Same repository name in two organisations.
        Scan {
            org: "shop",
            name: "web",
            branch: "main",
            invoker: "alice",
            nodejs: true,
            scanners: vec![js(2, 3, true), secrets(false)],
        },
        Scan {
            org: "blog",
            name: "web",
            branch: "main",
            invoker: "bob",
            nodejs: true,
            scanners: vec![js(0, 0, false)],
        },
        Scan {
            org: "shop",
            name: "api",
            branch: "main",
            invoker: "carol",
            nodejs: false,
            scanners: vec![py(4, true)],
        },
        Scan {
            org: "shop",
            name: "api",
            branch: "dev",
            invoker: "alice",
            nodejs: false,
            scanners: vec![py(0, false), secrets(true)],
        },
        Scan {
            org: "ops",
            name: "portal",
            branch: "main",
            invoker: "dave",
            nodejs: true,
            scanners: vec![js(0, 1, false), secrets(false)],
        },
        Scan {
            org: "ops",
            name: "infra",
            branch: "main",
            invoker: "erin",
            nodejs: false,
            scanners: vec![secrets(true)],
        },
    ]
}

fn uri(scan: &Scan, tenant: &str) -> String {
    format!(
        "https://git.example.com/{}-{tenant}/{}",
        scan.org, scan.name
    )
}

/// What the real client posts for `scan`: first `{"id", "depscan_summary"}`, then the summary.
fn client_messages(scan: &Scan, tenant: &str) -> Vec<Value> {
    let id = uuid::Uuid::new_v4().to_string();
    let summary: serde_json::Map<String, Value> = scan
        .scanners
        .iter()
        .map(|(name, _, c, h, m, l, failed)| {
            let status = if *failed { ":cross_mark:" } else { ":white_heavy_check_mark:" };
            (name.to_string(), json!({"tool": name, "critical": c, "high": h, "medium": m, "low": l, "status": status}))
        })
        .collect();
    vec![
        json!({"id": id, "depscan_summary": [{"id": "CVE-2021-23337", "package": "lodash", "severity": "HIGH"}],
               "tool": "@ShiftLeft/scan"}),
        json!({
            "id": id,
            "repo_context": {
                "gitProvider": "", "ciProvider": "", "repositoryName": scan.name,
                "repositoryUri": uri(scan, tenant), "revisionId": "4f1c0de", "branch": scan.branch,
                "invokedBy": scan.invoker, "pullRequest": false, "botUser": false
            },
            "report_summary": summary,
            "scan_mode": "ci",
            "repo_type": if scan.nodejs { json!(["nodejs", "credscan"]) } else { json!(["python"]) },
            "scan_time_sec": 12.3,
            "tool": "@ShiftLeft/scan"
        }),
    ]
}

/// The seed's shape of the same scan: one message, unicode statuses, the old scanner names.
fn seed_message(scan: &Scan, tenant: &str) -> Value {
    let summary: serde_json::Map<String, Value> = scan
        .scanners
        .iter()
        .map(|(_, old, c, h, m, l, failed)| {
            (
                old.to_string(),
                json!({"tool": old, "critical": c, "high": h, "medium": m, "low": l,
                "status": if *failed { "❌" } else { "✅" }}),
            )
        })
        .collect();
    json!({
        "scan_mode": "ci", "tool": "@ShiftLeft/scan", "id": uuid::Uuid::new_v4().to_string(),
        "repo_context": {"branch": scan.branch, "pullRequest": false, "repositoryName": scan.name,
            "repositoryUri": uri(scan, tenant), "revisionId": "4f1c0de", "invokedBy": scan.invoker},
        "repo_type": if scan.nodejs { json!(["nodejs", "credscan"]) } else { json!(["python"]) },
        "report_summary": summary
    })
}

/// Every row of `sql` (TSV), with this tenant's marks taken out so two tenants compare.
async fn rows(s: &Settings, sql: &str, tenant: &str) -> Vec<String> {
    let body = reqwest::Client::new()
        .post(format!(
            "{}/?database={}",
            s.clickhouse.url, s.clickhouse.database
        ))
        .body(format!("{sql} FORMAT TSV"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut out: Vec<String> = body
        .lines()
        .filter(|l| l.contains(&format!("-{tenant}")))
        .map(|l| l.replace(&format!("-{tenant}"), ""))
        .collect();
    out.sort();
    out
}

/// The analysts' views and the processor's tables, as one tenant sees them.
async fn answers(s: &Settings, tenant: &str) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for (name, sql) in [
        ("by_repository", "SELECT team, repository, scanner, scans, failed_scans, critical, high, medium, low FROM v_findings_by_repository"),
        ("by_team", "SELECT team, repositories, scans, critical, high, medium, low FROM v_findings_by_team"),
        ("contacts", "SELECT repository, arraySort(invokers), scans FROM v_repository_contacts"),
        ("nodejs", "SELECT repository, branch, status, critical, high FROM v_nodejs_status"),
        ("repo_status", "SELECT repository, team, branch, status, arraySort(failing_scanners), critical, high, medium, low FROM repo_status FINAL"),
        ("rollups", "SELECT repository, team, branch, scanner, argMax(scans, version), argMax(failed_scans, version), argMax(critical, version) FROM scan_rollups GROUP BY repository, team, branch, scanner"),
    ] {
        out.insert(name, rows(s, sql, tenant).await);
    }
    out
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = http.post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_clients_posting_sequence_answers_like_the_seed_messages() {
    let mut s = settings("scan-client");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let pipeline = Pipeline::start(&s).await;
    let (trigger, shutdown) = Shutdown::new();
    let processor = tokio::spawn(roles::processor(s.clone(), Proc::ScanResults, shutdown));
    let http = reqwest::Client::new();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let (client, seed) = (format!("client{run}"), format!("seed{run}"));

    // The client has no token setting: without a header it is refused, with the token in the
    // path it is accepted.
    let refused = post(&http, &pipeline.url("/track"), &json!({"id": "x"}), None).await;
    assert_eq!(refused.status(), 401);
    let wrong = post(
        &http,
        &pipeline.url("/track/not-a-token"),
        &json!({"id": "x"}),
        None,
    )
    .await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.json::<Value>().await.unwrap()["error"].is_string());

    let mut messages = 0;
    for scan in scans() {
        for body in client_messages(&scan, &client) {
            let r = post(
                &http,
                &pipeline.url(&format!("/track/{PRODUCER_TOKEN}")),
                &body,
                None,
            )
            .await;
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            messages += 1;
        }
        let r = post(
            &http,
            &pipeline.url("/track"),
            &seed_message(&scan, &seed),
            Some(PRODUCER_TOKEN),
        )
        .await;
        assert_eq!(r.status(), 200);
        messages += 1;
    }
    assert_eq!(messages, 18);

    // An independent computation of what the views must say for either tenant.
    let mut expected_by_team: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for scan in scans() {
        let e = expected_by_team.entry(scan.org.to_string()).or_default();
        e.0 += 1;
        e.1 += scan.scanners.iter().map(|x| x.2).sum::<i64>();
    }
    let expected_nodejs = scans().iter().filter(|x| x.nodejs).count();
    let (client_answers, seed_answers) =
        eventually(180, "both tenants' scans processed and loaded", || async {
            let c = answers(&s, &client).await;
            let d = answers(&s, &seed).await;
            let complete = |a: &BTreeMap<&str, Vec<String>>| {
                a["nodejs"].len() == expected_nodejs
                    && a["repo_status"].len() == 5
                    && a["by_team"].len() == expected_by_team.len()
                    && a["rollups"].len() == 9
            };
            // Row counts reach their final values before the contents do (a team's first scan
            // already makes its row; the loader's topics are consumed separately): wait for
            // the tenants to agree and the team figures to be the expected ones.
            let teams_right = |a: &BTreeMap<&str, Vec<String>>| {
                a["by_team"].iter().all(|line| {
                    let cols: Vec<&str> = line.split('\t').collect();
                    expected_by_team
                        .get(cols[0])
                        .is_some_and(|(scans, critical)| {
                            cols.get(2) == Some(&scans.to_string().as_str())
                                && cols.get(3) == Some(&critical.to_string().as_str())
                        })
                })
            };
            (complete(&c) && complete(&d) && c == d && teams_right(&c)).then_some((c, d))
        })
        .await;
    assert_eq!(
        client_answers, seed_answers,
        "the real client and the seed messages answer alike"
    );

    // And what they say is right.
    for line in &client_answers["by_team"] {
        let cols: Vec<&str> = line.split('\t').collect();
        let (scans, critical) = expected_by_team[cols[0]];
        assert_eq!(
            (cols[2], cols[3]),
            (scans.to_string().as_str(), critical.to_string().as_str()),
            "{line}"
        );
    }
    let status: Vec<(String, String)> = client_answers["repo_status"]
        .iter()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (format!("{}@{}", c[0], c[2]), c[3].to_string())
        })
        .collect();
    // Two repositories named web stay apart; a failing scanner fails its repository; the
    // fragment leaves no "(unknown)" repository behind.
    assert!(
        status.contains(&("git.example.com/shop/web@main".into(), "fail".into())),
        "{status:?}"
    );
    assert!(
        status.contains(&("git.example.com/blog/web@main".into(), "pass".into())),
        "{status:?}"
    );
    assert!(
        status.contains(&("git.example.com/ops/infra@main".into(), "fail".into())),
        "{status:?}"
    );
    assert!(!status.iter().any(|(r, _)| r.contains("unknown")));
    let nodejs = &client_answers["nodejs"];
    assert!(
        nodejs.contains(&"git.example.com/shop/web\tmain\t❌\t2\t3".to_string()),
        "{nodejs:?}"
    );
    assert!(
        nodejs.contains(&"git.example.com/blog/web\tmain\t✅\t0\t0".to_string()),
        "{nodejs:?}"
    );
    // Failing scans raised alerts for the client's repositories too.
    let alerts = read_all(&s, &s.kafka.topics.alerts);
    let client_alerts = alerts
        .iter()
        .filter(|(_, p)| String::from_utf8_lossy(p).contains(&format!("-{client}/")))
        .count();
    assert!(
        client_alerts >= 3,
        "alerts for shop/web, shop/api and ops/infra: {client_alerts}"
    );

    trigger.trigger();
    processor.await.unwrap().unwrap();
    pipeline.stop().await;
}

/// bandit's SARIF for the fixture in `tests/fixtures/sast`.
fn bandit_sarif(dir: &std::path::Path) -> Vec<u8> {
    let out = std::env::temp_dir().join(format!("bandit-{}.sarif", uuid::Uuid::new_v4().simple()));
    let status = std::process::Command::new("bandit")
        .args(["-r", "-q", "-f", "sarif", "-o"])
        .arg(&out)
        .arg(dir)
        .status()
        .expect("bandit runs (deploy/local/install.sh installs it from PyPI: pip install 'bandit[sarif]')");
    // bandit exits 1 when it found something.
    assert!(status.code().is_some_and(|c| c <= 1), "bandit: {status}");
    let body = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(out);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sarif_from_bandit_uploaded_twice_is_stored_once_with_every_result() {
    let mut s = settings("bandit");
    fresh_database(&mut s).await;
    require_stack(&s).await;
    let pipeline = Pipeline::start(&s).await;
    let checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sast");
    let sarif = bandit_sarif(&checkout);
    let log: Value = serde_json::from_slice(&sarif).unwrap();
    let results = log["runs"][0]["results"].as_array().unwrap().clone();
    assert!(
        results.len() >= 8,
        "bandit finds the fixture's mistakes: {}",
        results.len()
    );
    let repo = format!(
        "https://git.example.com/sec/fixture-{}.git",
        uuid::Uuid::new_v4().simple()
    );
    let url = format!(
        "/v1/sarif?repository_uri={repo}&commit_sha=4f1c0de&ref=refs/heads/main&category=bandit&checkout_uri={}",
        checkout.display()
    );
    let http = reqwest::Client::new();
    let mut scan_ids = Vec::new();
    for _ in 0..2 {
        let r = http
            .post(pipeline.url(&url))
            .bearer_auth(PRODUCER_TOKEN)
            .body(sarif.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["findings"], results.len());
        scan_ids.push(body["scans"][0].as_str().unwrap().to_string());
    }
    assert_eq!(scan_ids[0], scan_ids[1], "one analysis, one scan id");
    let client = s.clickhouse.client();
    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Row {
        finding_id: String,
        rule_id: String,
        severity: String,
        file: String,
        line: Option<i32>,
        start_column: Option<i32>,
    }
    // The two uploads' identical rows may already have been merged into one.
    let rows: Vec<Row> = eventually(120, "both uploads loaded", || async {
        let t = &s.kafka.topics;
        if !(loader_committed_all(&s, "findings", &t.findings, 2 * results.len() as i64)
            && loader_committed_all(&s, "scan_results", &t.scan_results, 2))
        {
            return None;
        }
        Some(
            client
                .query(
                    "SELECT ?fields FROM v_findings WHERE scan_id = ? ORDER BY line, start_column",
                )
                .bind(&scan_ids[0])
                .fetch_all::<Row>()
                .await
                .unwrap(),
        )
    })
    .await;
    assert_eq!(
        rows.len(),
        results.len(),
        "one copy of every result: {rows:?}"
    );
    let mut ids: Vec<&str> = rows.iter().map(|r| r.finding_id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), results.len());
    for r in &rows {
        assert!(
            ["critical", "high", "medium", "low", "info"].contains(&r.severity.as_str()),
            "{r:?}"
        );
        assert_eq!(r.file, "app.py", "relative to the checkout: {r:?}");
    }
    // bandit's own severities, and the two eval() calls on one line stay two findings.
    let evals: Vec<&Row> = rows.iter().filter(|r| r.rule_id == "B307").collect();
    assert_eq!(evals.len(), 2, "{rows:?}");
    assert_eq!(evals[0].line, evals[1].line);
    assert_ne!(evals[0].start_column, evals[1].start_column);
    let shell = rows.iter().find(|r| r.rule_id == "B602").unwrap();
    assert_eq!(shell.severity, "high");
    // The summary counts what findings holds.
    let (total, repository): (u64, String) = eventually(60, "the summary loaded", || async {
        client
            .query("SELECT arraySum(summary.critical) + arraySum(summary.high) + arraySum(summary.medium) + arraySum(summary.low), repository FROM scan_results FINAL WHERE scan_id = ?")
            .bind(&scan_ids[0])
            .fetch_optional::<(u64, String)>()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(total, results.len() as u64);
    assert!(
        repository.starts_with("git.example.com/sec/fixture-"),
        "{repository}"
    );
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_size_result_is_refused_naming_it_and_nothing_is_produced() {
    let mut s = settings("sarif-oversize");
    s.kafka.max_message_bytes = 64 * 1024;
    require_stack(&s).await;
    let pipeline = Pipeline::gateway_only(&s).await;
    let result =
        |text: String| json!({"ruleId": "R1", "level": "error", "message": {"text": text}});
    let sarif = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "big"}},
        "results": [result("small".into()), result("x".repeat(100 * 1024)), result("small too".into())]}]});
    let r = reqwest::Client::new()
        .post(pipeline.url("/v1/sarif"))
        .bearer_auth(PRODUCER_TOKEN)
        .json(&sarif)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "runs[0].results[1]", "{body}");
    assert!(body["reason"].is_string(), "{body}");
    // Unknown and repeated upload parameters are refused too.
    for query in ["?colour=blue", "?category=a&category=b"] {
        let r = reqwest::Client::new()
            .post(pipeline.url(&format!("/v1/sarif{query}")))
            .bearer_auth(PRODUCER_TOKEN)
            .json(&json!({"version": "2.1.0", "runs": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        assert!(r.json::<Value>().await.unwrap()["field"]
            .as_str()
            .unwrap()
            .starts_with("query."));
    }
    // Nothing of the refused upload reached the topics: no summary, no finding.
    pipeline.stop().await;
    assert_eq!(records_in(&s, &s.kafka.topics.scan_results), 0);
    assert_eq!(records_in(&s, &s.kafka.topics.findings), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_sarif_takes_the_scan_context_as_the_endpoint_does() {
    use secpipe::produce::{self, Kind};
    use secpipe_schemas::{scan::Finding, Codec};
    let s = settings("produce-sarif");
    require_stack(&s).await;
    let checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sast");
    let file = std::env::temp_dir().join(format!("upload-{}.sarif", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, bandit_sarif(&checkout)).unwrap();
    assert!(produce::upload_context(&["colour=blue".into()]).is_err());
    assert!(produce::upload_context(&["no-equals-sign".into()]).is_err());
    let ctx = produce::upload_context(&[
        "repository_uri=git@github.com:Sec/Fixture.git".into(),
        "commit_sha=4f1c0de".into(),
        format!("checkout_uri={}", checkout.display()),
    ])
    .unwrap();
    let summary = produce::run_with(&s, Kind::Sarif, file.to_str().unwrap(), &ctx)
        .await
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let codec = Codec::<Finding>::new().unwrap();
    let findings: Vec<Finding> = read_all(&s, &s.kafka.topics.findings)
        .iter()
        .map(|(_, p)| codec.decode(p).unwrap())
        .collect();
    assert_eq!(
        summary.records,
        findings.len() + 1,
        "one summary and the findings"
    );
    assert!(!findings.is_empty());
    for f in &findings {
        assert_eq!(f.repository.as_deref(), Some("github.com/sec/fixture"));
        assert_eq!(f.file, "app.py");
        assert!(!f.severity.is_empty());
    }
}
