//! The admin-events processor on in-memory records: dedupe modes, sources, retries, restore.
use super::*;
use secpipe_schemas::failures::Image;

fn failure(t_secs: i64, reason: &str) -> Vec<u8> {
    failure_of(t_secs, reason, "quay.io/acme/api:1", "cli")
}

fn failure_of(t_secs: i64, reason: &str, image: &str, source: &str) -> Vec<u8> {
    Codec::<ScanFailure>::new()
        .unwrap()
        .encode(&ScanFailure {
            failure_id: format!("f{t_secs}"),
            command: "image scan".into(),
            image: Image {
                full_name: image.into(),
                registry: Some("quay.io".into()),
                repository: "acme/api".into(),
                tag: Some("1".into()),
                digest: None,
                original: None,
            },
            reason: reason.into(),
            source: source.into(),
            cluster: Some("prod".into()),
            occurred_at: t_secs * 1_000_000,
            received_at: t_secs * 1_000_000,
        })
        .unwrap()
}

fn run(p: &mut AdminEvents, state: &mut AdminEventsState, payloads: &[Vec<u8>]) -> Vec<AdminEvent> {
    emitted(&feed(p, state, payloads))
}

fn feed(p: &mut AdminEvents, state: &mut AdminEventsState, payloads: &[Vec<u8>]) -> Outputs {
    let mut out = Outputs::default();
    for (i, payload) in payloads.iter().enumerate() {
        let rec = InRecord {
            topic: "in",
            partition: 0,
            offset: i as i64,
            timestamp_ms: 0,
            key: None,
            payload,
        };
        p.process(state, &rec, &mut out).unwrap();
    }
    out
}

fn emitted(out: &Outputs) -> Vec<AdminEvent> {
    let codec = Codec::<AdminEvent>::new().unwrap();
    out.records
        .iter()
        .filter(|r| r.topic == "out")
        .map(|r| codec.decode(&r.payload).unwrap())
        .collect()
}

fn processor(threshold: i64) -> AdminEvents {
    processor_with(threshold, AdminEventsConfig::default())
}

fn processor_with(threshold: i64, cfg: AdminEventsConfig) -> AdminEvents {
    let rules = [AlertRule::AdminEventOccurrences {
        severity: "medium".into(),
        threshold,
    }];
    AdminEvents::new(cfg, "in", "out", "alerts", &rules).unwrap()
}

fn merging() -> AdminEvents {
    processor_with(
        10,
        AdminEventsConfig {
            dedupe_mode: DedupeMode::Merge,
            ..Default::default()
        },
    )
}

#[test]
fn merge_mode_folds_every_repeat_while_the_event_lives() {
    let mut p = merging();
    let mut state = AdminEventsState::default();
    let day = 24 * 3600;
    let events = run(
        &mut p,
        &mut state,
        &[
            failure(1000, "timeout"),
            failure(1000 + 3600, "timeout"),
            // Almost the whole retention after the previous one: still the same event.
            failure(1000 + 3600 + 4 * day - 1, "timeout"),
        ],
    );
    assert!(events.iter().all(|e| e.id == events[0].id), "one event");
    assert_eq!((events[2].occurrences, events[2].version), (3, 3));
    assert_eq!(events[2].first_seen, 1000 * 1_000_000);
    // The same failures in window mode are three events.
    let mut p = processor(10);
    let mut state = AdminEventsState::default();
    let windowed = run(
        &mut p,
        &mut state,
        &[
            failure(1000, "timeout"),
            failure(1000 + 3600, "timeout"),
            failure(1000 + 3600 + 4 * day - 1, "timeout"),
        ],
    );
    assert_ne!(windowed[0].id, windowed[1].id);
    assert_ne!(windowed[1].id, windowed[2].id);
}

#[test]
fn merge_mode_starts_a_new_event_once_the_old_one_expired() {
    let mut p = merging();
    let mut state = AdminEventsState::default();
    let retention = 4 * 24 * 3600;
    let events = run(
        &mut p,
        &mut state,
        &[
            failure(1000, "timeout"),
            failure(1000 + retention, "timeout"),
        ],
    );
    assert_ne!(events[1].id, events[0].id, "exactly one retention later");
    assert_eq!(events[1].occurrences, 1);
    // The state forgets it after the retention, not after two windows.
    p.tick(
        &mut state,
        (1000 + retention + 3600) * 1_000_000,
        &mut Outputs::default(),
    );
    assert_eq!(state.events.len(), 1, "the second event still lives");
    p.tick(
        &mut state,
        (1000 + 2 * retention) * 1_000_000,
        &mut Outputs::default(),
    );
    assert_eq!(state.live_keys(), 0);
}

#[test]
fn an_event_fed_by_cli_and_api_failures_reports_both_sources() {
    let mut p = processor(10);
    let mut state = AdminEventsState::default();
    let img = "quay.io/acme/api:1";
    let events = run(
        &mut p,
        &mut state,
        &[
            failure_of(1000, "timeout", img, "cli"),
            failure_of(1010, "timeout", img, "api"),
            failure_of(1020, "timeout", img, "cli"),
        ],
    );
    let last = events.last().unwrap();
    assert_eq!(last.sources, vec!["api".to_string(), "cli".to_string()]);
    assert_eq!(last.source, "cli", "the most recent one");
    assert_eq!(events[0].sources, vec!["cli".to_string()]);
}

#[test]
fn an_image_named_two_ways_is_one_event() {
    let mut p = processor(10);
    let mut state = AdminEventsState::default();
    // v1 records carried the reference as given; v2 ones the normalised reference.
    let events = run(
        &mut p,
        &mut state,
        &[
            failure_of(1000, "timeout", "nginx:1", "cli"),
            failure_of(1010, "timeout", "docker.io/library/nginx:1", "api"),
            failure_of(1020, "timeout", "index.docker.io/nginx:1", "api"),
        ],
    );
    assert!(events.iter().all(|e| e.id == events[0].id));
    assert_eq!(events[2].occurrences, 3);
}

#[test]
fn duplicate_failures_within_the_window_become_one_event_with_a_growing_count() {
    let mut p = processor(10);
    let mut state = AdminEventsState::default();
    let events = run(
        &mut p,
        &mut state,
        &[
            failure(1000, "timeout"),
            failure(1100, "timeout"),
            failure(1500, "timeout"),
        ],
    );
    assert_eq!(events.len(), 3, "re-emitted at every occurrence");
    let last = events.last().unwrap();
    assert!(events.iter().all(|e| e.id == last.id), "one stable id");
    assert_eq!((last.occurrences, last.version), (3, 3));
    assert_eq!(
        (last.first_seen, last.last_seen),
        (1000 * 1_000_000, 1500 * 1_000_000)
    );
    assert_eq!(last.expires_at, last.last_seen + 4 * 24 * 3600 * 1_000_000);
}

#[test]
fn other_values_or_a_closed_window_start_new_events() {
    let mut p = processor(10);
    let mut state = AdminEventsState::default();
    let events = run(
        &mut p,
        &mut state,
        &[
            failure(1000, "timeout"),
            failure(1001, "unauthorized"),
            failure(1000 + 700, "timeout"),
        ],
    );
    assert_ne!(events[0].id, events[1].id, "different reason");
    assert_ne!(events[0].id, events[2].id, "the window closed");
    assert_eq!(events[2].occurrences, 1);
}

#[test]
fn reaching_the_threshold_raises_one_alert() {
    let mut p = processor(2);
    let mut state = AdminEventsState::default();
    let mut out = Outputs::default();
    for (i, t) in [1000, 1010, 1020].iter().enumerate() {
        let payload = failure(*t, "timeout");
        let rec = InRecord {
            topic: "in",
            partition: 0,
            offset: i as i64,
            timestamp_ms: 0,
            key: None,
            payload: &payload,
        };
        p.process(&mut state, &rec, &mut out).unwrap();
    }
    let alerts: Vec<_> = out.records.iter().filter(|r| r.topic == "alerts").collect();
    assert_eq!(alerts.len(), 1);
    let alert = Codec::<Alert>::new()
        .unwrap()
        .decode(&alerts[0].payload)
        .unwrap();
    assert_eq!(
        (alert.rule.as_str(), alert.severity.as_str()),
        ("admin_event_occurrences", "medium")
    );
    // The notifier's event(): the count and the admin event itself travel with the alert.
    assert_eq!(alert.attributes["occurrences"], "2");
    let original: serde_json::Value = serde_json::from_str(&alert.attributes["original"]).unwrap();
    assert_eq!(original["occurrences"], 2);

    // The event can no longer grow: its alert resolves under the same dedup key; an event
    // that never raised one resolves nothing.
    let quiet = failure(50_000, "other reason");
    let rec = InRecord {
        topic: "in",
        partition: 0,
        offset: 3,
        timestamp_ms: 0,
        key: None,
        payload: &quiet,
    };
    p.process(&mut state, &rec, &mut out).unwrap();
    let mut later = Outputs::default();
    p.tick(
        &mut state,
        micros(10 * 24 * 3600) + 1_000_000 * 60_000,
        &mut later,
    );
    let resolved: Vec<Alert> = later
        .records
        .iter()
        .filter(|r| r.topic == "alerts")
        .map(|r| Codec::<Alert>::new().unwrap().decode(&r.payload).unwrap())
        .collect();
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        (resolved[0].status.as_str(), resolved[0].dedup_key.as_str()),
        ("resolved", alert.dedup_key.as_str())
    );
    assert!(state.events.is_empty());
}

#[test]
fn state_restored_from_the_changelog_continues_the_count() {
    let mut p = processor(10);
    let mut state = AdminEventsState::default();
    run(
        &mut p,
        &mut state,
        &[failure(1000, "timeout"), failure(1010, "timeout")],
    );
    let mut restored = AdminEventsState::default();
    for c in state.drain_changes() {
        restored.apply(&c).unwrap();
    }
    let events = run(&mut p, &mut restored, &[failure(1020, "timeout")]);
    assert_eq!(events[0].occurrences, 3);
}

#[test]
fn a_failure_exactly_one_window_after_the_previous_starts_a_new_event() {
    let mut p = processor(10);
    let mut state = AdminEventsState::default();
    let events = run(
        &mut p,
        &mut state,
        &[
            failure(1000, "timeout"),
            failure(1000 + 599, "timeout"),
            failure(1599 + 600, "timeout"),
        ],
    );
    assert_eq!(
        events[1].id, events[0].id,
        "less than a window later: folds"
    );
    assert_eq!(events[1].occurrences, 2);
    assert_ne!(
        events[2].id, events[0].id,
        "exactly a window later: a new event"
    );
    assert_eq!((events[2].occurrences, events[2].version), (1, 1));
    // The same holds before the event's first failure.
    let mut state = AdminEventsState::default();
    let events = run(
        &mut p,
        &mut state,
        &[failure(2000, "timeout"), failure(2000 - 600, "timeout")],
    );
    assert_ne!(events[1].id, events[0].id);
}

#[test]
fn a_retried_post_of_the_same_failure_counts_once() {
    let mut p = processor(10);
    let mut state = AdminEventsState::default();
    // `failure(t, ..)` has the id f{t}: the second post is a retry of the first.
    let out = feed(
        &mut p,
        &mut state,
        &[
            failure(1000, "timeout"),
            failure(1000, "timeout"),
            failure(1100, "timeout"),
        ],
    );
    let events = emitted(&out);
    assert_eq!(events.len(), 2, "the retry emits nothing");
    assert_eq!((events[1].occurrences, events[1].version), (2, 2));
    assert_eq!(
        out.counters.dedupe_hits, 2,
        "the retry, and the fold of 1100"
    );

    // Still recognised after a restart, and after a tick while the event is open.
    let mut restored = AdminEventsState::default();
    for c in state.drain_changes() {
        restored.apply(&c).unwrap();
    }
    p.tick(&mut restored, 1200 * 1_000_000, &mut Outputs::default());
    let out = feed(&mut p, &mut restored, &[failure(1100, "timeout")]);
    assert_eq!((out.records.len(), out.counters.dedupe_hits), (0, 1));
    let events = run(&mut p, &mut restored, &[failure(1150, "timeout")]);
    assert_eq!(events[0].occurrences, 3);

    // Forgotten with their event.
    p.tick(&mut restored, 10_000 * 1_000_000, &mut Outputs::default());
    assert_eq!(restored.live_keys(), 0);
}

#[test]
fn a_snapshot_restores_the_events_and_the_failures_counted_in_them() {
    let mut p = processor(10);
    let mut state = AdminEventsState::default();
    run(
        &mut p,
        &mut state,
        &[
            failure(1000, "timeout"),
            failure(1010, "timeout"),
            failure(1020, "unauthorized"),
        ],
    );
    assert_eq!(state.live_keys(), 2 + 3);
    crate::state::assert_snapshot_round_trips(&state);
    let mut restored = AdminEventsState::default();
    for c in state.snapshot() {
        restored.apply(&c).unwrap();
    }
    let out = feed(&mut p, &mut restored, &[failure(1010, "timeout")]);
    assert_eq!((out.records.len(), out.counters.dedupe_hits), (0, 1));
    let events = run(&mut p, &mut restored, &[failure(1030, "timeout")]);
    assert_eq!(events[0].occurrences, 3);
}
