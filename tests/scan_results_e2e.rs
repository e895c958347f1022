//! One scan report end to end: POST /track -> Avro on Kafka -> loader -> ClickHouse.
mod common;

use common::*;
use secpipe_schemas::{ops::DeadLetter, scan::ScanReport, Codec};
use secpipe_sinks::clickhouse::ScanResultRow;
use serde_json::json;

async fn rows_for_repo(s: &secpipe::Settings, repo: &str) -> Vec<ScanResultRow> {
    s.clickhouse
        .client()
        .query("SELECT ?fields FROM scan_results FINAL WHERE repository_name = ? ORDER BY scan_id")
        .bind(repo)
        .fetch_all::<ScanResultRow>()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_scan_reports_land_in_clickhouse_with_every_field() {
    let s = settings("track");
    require_stack(&s).await;
    let pipeline = Pipeline::start(&s).await;
    let repo = format!("repo-{}", uuid::Uuid::new_v4().simple());
    let id = uuid::Uuid::new_v4().to_string();
    let full = json!({
        "scan_mode": "ci",
        "tool": "@ShiftLeft/scan",
        "id": id,
        "repo_context": {
            "branch": "main", "pullRequest": true, "repositoryName": repo,
            "repositoryUri": "https://git.example.com/team/app", "revisionId": "0123abcd",
            "invokedBy": "alice", "extraField": "ignored"
        },
        "repo_type": ["nodejs", "credscan"],
        "report_summary": {
            "Source code analyzer for JavaScript": {"critical": 1, "high": 2, "medium": 3, "low": 4,
                "status": "❌", "tool": "njsscan"},
            "Secrets Audit": {"critical": 0, "high": 0, "medium": 0, "low": 5, "status": "✅",
                "tool": "gitleaks"}
        }
    });
    // No id, no scan_mode, no revision: the gateway assigns an id, the rest stays empty.
    let sparse =
        json!({"tool": "scan", "repo_context": {"repositoryName": repo, "invokedBy": "bob"}});
    let http = reqwest::Client::new();
    let before = secpipe_schemas::now_micros() / 1_000_000;
    for body in [&full, &sparse] {
        let resp = http
            .post(pipeline.url("/track"))
            .bearer_auth(PRODUCER_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.json::<serde_json::Value>().await.unwrap(),
            json!({"success": "true"})
        );
    }
    let after = secpipe_schemas::now_micros() / 1_000_000;

    let rows = eventually(120, "both reports in ClickHouse", || async {
        let rows = rows_for_repo(&s, &repo).await;
        (rows.len() == 2).then_some(rows)
    })
    .await;
    let full_row = rows
        .iter()
        .find(|r| r.scan_id == id)
        .expect("report with its own id");
    assert!((before..=after).contains(&(full_row.received_at as i64)));
    assert_eq!(
        *full_row,
        ScanResultRow {
            scan_id: id.clone(),
            received_at: full_row.received_at,
            scan_mode: "ci".into(),
            tool: "@ShiftLeft/scan".into(),
            branch: "main".into(),
            pull_request: Some(1),
            repository_name: repo.clone(),
            repository_uri: "https://git.example.com/team/app".into(),
            revision_id: "0123abcd".into(),
            invoked_by: "alice".into(),
            repo_type: vec!["nodejs".into(), "credscan".into()],
            team: "team".into(),
            // The pre-2020 name of the JavaScript scanner, made canonical.
            summary_scanner: vec!["JavaScript Source Analyzer".into(), "Secrets Audit".into()],
            summary_tool: vec!["njsscan".into(), "gitleaks".into()],
            summary_critical: vec![1, 0],
            summary_high: vec![2, 0],
            summary_medium: vec![3, 0],
            summary_low: vec![4, 5],
            summary_status: vec!["❌".into(), "✅".into()],
            origin: "track".into(),
            precedence: full_row.precedence,
            repository: "git.example.com/team/app".into(),
            received_at_us: full_row.received_at_us,
        }
    );
    assert_eq!(
        full_row.received_at_us / 1_000_000,
        u64::from(full_row.received_at)
    );
    let sparse_row = rows.iter().find(|r| r.scan_id != id).unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(&sparse_row.scan_id)
            .unwrap()
            .get_version_num(),
        4
    );
    assert_eq!(sparse_row.invoked_by, "bob");
    assert_eq!(sparse_row.tool, "scan");
    assert_eq!(
        (sparse_row.scan_mode.as_str(), sparse_row.pull_request),
        ("", None)
    );
    assert!(sparse_row.summary_scanner.is_empty() && sparse_row.repo_type.is_empty());

    // On Kafka the record is single-object Avro, keyed by the repository's key: the normalised
    // URI, else the name.
    let codec = Codec::<ScanReport>::new().unwrap();
    let on_topic = read_all(&s, &s.kafka.topics.scan_results);
    assert_eq!(on_topic.len(), 2);
    let mut keys: Vec<Vec<u8>> = on_topic.iter().filter_map(|(k, _)| k.clone()).collect();
    keys.sort();
    let mut expected = vec![
        b"git.example.com/team/app".to_vec(),
        repo.as_bytes().to_vec(),
    ];
    expected.sort();
    assert_eq!(keys, expected);
    for (_, payload) in on_topic {
        assert_eq!(
            codec
                .decode(&payload)
                .unwrap()
                .repo_context
                .repository_name
                .as_deref(),
            Some(repo.as_str())
        );
    }
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_body_gets_400_with_a_reason_and_produces_nothing() {
    let s = settings("malformed");
    require_stack(&s).await;
    let pipeline = Pipeline::start(&s).await;
    let http = reqwest::Client::new();
    let cases: [(&str, &str); 4] = [
        ("{not json", "$"),
        ("[1, 2]", "$"),
        (
            r#"{"report_summary": {"njs": {"high": "many"}}}"#,
            "report_summary.njs.high",
        ),
        (
            r#"{"repo_context": {"pullRequest": 7}}"#,
            "repo_context.pullRequest",
        ),
    ];
    for (body, field) in cases {
        let resp = http
            .post(pipeline.url("/track"))
            .bearer_auth(PRODUCER_TOKEN)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let err: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(err["error"], "invalid_message");
        assert_eq!(err["field"], field, "{body}");
        assert!(!err["reason"].as_str().unwrap().is_empty());
    }
    assert_eq!(records_in(&s, &s.kafka.topics.scan_results), 0);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_post_collapses_to_one_row() {
    let s = settings("retry");
    require_stack(&s).await;
    let pipeline = Pipeline::start(&s).await;
    let repo = format!("repo-{}", uuid::Uuid::new_v4().simple());
    let body =
        json!({"id": uuid::Uuid::new_v4().to_string(), "repo_context": {"repositoryName": repo}});
    let http = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(
            http.post(pipeline.url("/track"))
                .bearer_auth(PRODUCER_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        records_in(&s, &s.kafka.topics.scan_results),
        3,
        "three posts, three records"
    );
    eventually(120, "the report in ClickHouse", || async {
        (!rows_for_repo(&s, &repo).await.is_empty()).then_some(())
    })
    .await;
    // Give the loader time to write the later copies too, then check they collapsed.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(rows_for_repo(&s, &repo).await.len(), 1);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_record_goes_to_dead_letter_and_loading_goes_on() {
    let s = settings("deadletter");
    require_stack(&s).await;
    let garbage = format!("not avro {}", uuid::Uuid::new_v4()).into_bytes();
    produce_raw(&s, &s.kafka.topics.scan_results, b"k", &garbage);
    let pipeline = Pipeline::start(&s).await;
    let repo = format!("repo-{}", uuid::Uuid::new_v4().simple());
    let resp = reqwest::Client::new()
        .post(pipeline.url("/track"))
        .bearer_auth(PRODUCER_TOKEN)
        .json(&json!({"repo_context": {"repositoryName": repo}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    eventually(120, "the valid report in ClickHouse", || async {
        (rows_for_repo(&s, &repo).await.len() == 1).then_some(())
    })
    .await;
    let letters = read_all(&s, &s.kafka.topics.dead_letter);
    assert_eq!(letters.len(), 1);
    let letter = Codec::<DeadLetter>::new()
        .unwrap()
        .decode(&letters[0].1)
        .unwrap();
    assert_eq!(letter.payload, garbage);
    assert_eq!(letter.topic, s.kafka.topics.scan_results);
    assert_eq!(letter.stage, "sink.clickhouse.scan_results");
    assert!(letter.error.contains("unknown framing"), "{}", letter.error);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_own_summary_outranks_a_later_sarif_run_of_the_same_scan() {
    let s = settings("precedence");
    require_stack(&s).await;
    let pipeline = Pipeline::start(&s).await;
    let id = uuid::Uuid::new_v4().to_string();
    let repo = format!("repo-{}", uuid::Uuid::new_v4().simple());
    let http = reqwest::Client::new();
    let track = json!({"id": id, "repo_context": {"repositoryName": repo, "invokedBy": "alice"},
        "repo_type": ["nodejs"],
        "report_summary": {"Source code analyzer for JavaScript": {"critical": 1, "high": 0, "medium": 0, "low": 0, "status": "❌"}}});
    let r = http
        .post(pipeline.url("/track"))
        .bearer_auth(PRODUCER_TOKEN)
        .json(&track)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sarif = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "njsscan"}},
        "automationDetails": {"guid": id},
        "versionControlProvenance": [{"repositoryUri": format!("https://git.example.com/x/{repo}")}],
        "results": []}]});
    let r = http
        .post(pipeline.url("/v1/sarif"))
        .bearer_auth(PRODUCER_TOKEN)
        .json(&sarif)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Both summaries reach the table (a merge may already have collapsed the two rows, so
    // their count says nothing); FINAL keeps the tool's own.
    let client = s.clickhouse.client();
    eventually(120, "both summaries loaded", || async {
        loader_committed_all(&s, "scan_results", &s.kafka.topics.scan_results, 2).then_some(())
    })
    .await;
    let (origin, invoked_by): (String, String) = client
        .query("SELECT origin, invoked_by FROM scan_results FINAL WHERE scan_id = ?")
        .bind(&id)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((origin.as_str(), invoked_by.as_str()), ("track", "alice"));
    pipeline.stop().await;
}
