//! Admin events from failed ad-hoc scans: failures with the same image, command, reason and
//! cluster within a window become one [`AdminEvent`] with a stable id, first/last seen and an
//! occurrence count. The event is re-emitted (version + 1) whenever its count grows, so the
//! newest version always carries the right frequency; it expires `retention` after its last
//! occurrence. A failure after the window has closed starts a new event.
//!
//! A retried post of the same failure (same `failure_id`) counts once, as a retried `/track`
//! does: the ids already counted are remembered while their event is, and at most `retention`
//! after the failure.
use secpipe_schemas::{
    alert::Alert,
    failures::{AdminEvent, ScanFailure},
    stable_id, AvroRecord, Codec, SchemaError,
};
use serde::{Deserialize, Serialize};

use crate::{
    alerts::{AlertRule, Draft},
    secs_to_micros as micros, Change, InRecord, Outputs, PartitionState, ProcessError, Processor,
    StateStore,
};

/// Settings of the admin-events processor (section `[processors.admin_events]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminEventsConfig {
    /// Failures with the same values less than this many seconds after the previous one fold
    /// into the same admin event; one exactly this many seconds later starts a new event.
    /// Default 600.
    pub dedupe_window_secs: u64,
    /// Admin events expire this many seconds after their last occurrence. Default 345600
    /// (4 days).
    pub retention_secs: u64,
}

impl Default for AdminEventsConfig {
    fn default() -> Self {
        Self {
            dedupe_window_secs: 600,
            retention_secs: 4 * 24 * 3600,
        }
    }
}

/// Open admin events, and the failures already counted in them.
#[derive(Debug)]
pub struct AdminEventsState {
    /// Admin event key ([`ScanFailure::admin_event_id`]) -> the open event.
    events: StateStore<AdminEvent>,
    /// "{admin event key}|{failure_id}" -> when the failure occurred. Keyed by the event first
    /// so expiry can tell whether the event is still open; a retry of a failure has the same
    /// values, hence the same event key.
    counted: StateStore<i64>,
}

impl Default for AdminEventsState {
    fn default() -> Self {
        Self {
            events: StateStore::new("event"),
            counted: StateStore::new("failure"),
        }
    }
}

impl PartitionState for AdminEventsState {
    fn drain_changes(&mut self) -> Vec<Change> {
        let mut out = Vec::new();
        self.events.drain_into(&mut out);
        self.counted.drain_into(&mut out);
        out
    }

    fn apply(&mut self, change: &Change) -> Result<(), String> {
        if !self.events.try_apply(change)? {
            self.counted.try_apply(change)?;
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<Change> {
        let mut out = Vec::with_capacity(self.live_keys());
        self.events.snapshot_into(&mut out);
        self.counted.snapshot_into(&mut out);
        out
    }

    fn live_keys(&self) -> usize {
        self.events.len() + self.counted.len()
    }
}

/// The processor.
pub struct AdminEvents {
    cfg: AdminEventsConfig,
    input: String,
    output: String,
    alerts_topic: String,
    rule: Option<AlertRule>,
    failures: Codec<ScanFailure>,
    admin_events: Codec<AdminEvent>,
    alerts: Codec<Alert>,
}

impl AdminEvents {
    pub fn new(
        cfg: AdminEventsConfig,
        input: &str,
        output: &str,
        alerts_topic: &str,
        rules: &[AlertRule],
    ) -> Result<Self, SchemaError> {
        Ok(Self {
            cfg,
            input: input.into(),
            output: output.into(),
            alerts_topic: alerts_topic.into(),
            rule: rules
                .iter()
                .find(|r| matches!(r, AlertRule::AdminEventOccurrences { .. }))
                .cloned(),
            failures: Codec::new()?,
            admin_events: Codec::new()?,
            alerts: Codec::new()?,
        })
    }

    fn window_micros(&self) -> i64 {
        micros(self.cfg.dedupe_window_secs)
    }
}

impl Processor for AdminEvents {
    type State = AdminEventsState;

    fn name(&self) -> &'static str {
        "admin-events"
    }

    fn input_topic(&self) -> &str {
        &self.input
    }

    fn output_topics(&self) -> Vec<&str> {
        vec![&self.output, &self.alerts_topic]
    }

    fn process(
        &mut self,
        state: &mut AdminEventsState,
        record: &InRecord<'_>,
        out: &mut Outputs,
    ) -> Result<(), ProcessError> {
        let failure = self.failures.decode(record.payload)?;
        let key = failure.admin_event_id();
        let counted = format!("{key}|{}", failure.failure_id);
        if state.counted.contains(&counted) {
            // A retried post: already in its event's occurrences.
            out.counters.dedupe_hits += 1;
            return Ok(());
        }
        let t = failure.occurred_at;
        state.counted.insert(counted, t);
        let window = self.window_micros();
        let retention = micros(self.cfg.retention_secs);
        // Times come from the request: saturating arithmetic, so hostile ones cannot overflow.
        let event = match state.events.get_mut(&key) {
            Some(ev)
                if t > ev.first_seen.saturating_sub(window)
                    && t < ev.last_seen.saturating_add(window) =>
            {
                ev.occurrences = ev.occurrences.saturating_add(1);
                ev.version = ev.version.saturating_add(1);
                ev.first_seen = ev.first_seen.min(t);
                ev.last_seen = ev.last_seen.max(t);
                ev.expires_at = ev.last_seen.saturating_add(retention);
                out.counters.dedupe_hits += 1;
                ev.clone()
            }
            _ => {
                let ev = AdminEvent {
                    id: stable_id(AdminEvent::FULL_NAME, &[&key, &t.to_string()]),
                    command: failure.command,
                    image: failure.image,
                    reason: failure.reason,
                    cluster: failure.cluster,
                    source: failure.source,
                    first_seen: t,
                    last_seen: t,
                    occurrences: 1,
                    version: 1,
                    expires_at: t.saturating_add(retention),
                };
                state.events.insert(key, ev.clone());
                ev
            }
        };
        out.push(
            &self.output,
            event.partition_key(),
            self.admin_events.encode(&event)?,
        );
        if let Some(rule @ AlertRule::AdminEventOccurrences { threshold, .. }) = &self.rule {
            if event.occurrences == *threshold {
                let alert = Draft {
                    rule,
                    kind: "event",
                    title: format!(
                        "{} of {} failed {} times",
                        event.command, event.image.full_name, event.occurrences
                    ),
                    description: format!("reason: {}", event.reason),
                    dedup_key: format!("admin_event/{}", event.id),
                    source_topic: &self.output,
                    source_id: &event.id,
                    resources: vec![event.image.full_name.clone()],
                    tags: event
                        .cluster
                        .iter()
                        .map(|c| format!("cluster:{c}"))
                        .collect(),
                    attributes: [
                        ("command".to_string(), event.command.clone()),
                        ("occurrences".to_string(), event.occurrences.to_string()),
                        (
                            "cluster".to_string(),
                            event.cluster.clone().unwrap_or_default(),
                        ),
                        ("image".to_string(), event.image.full_name.clone()),
                        (
                            "original".to_string(),
                            serde_json::to_string(&event).unwrap_or_default(),
                        ),
                    ]
                    .into(),
                    raised_at: event.last_seen,
                }
                .build();
                out.push_alert(&self.alerts_topic, &self.alerts, &alert)?;
            }
        }
        Ok(())
    }

    fn tick(&mut self, state: &mut AdminEventsState, now_micros: i64, out: &mut Outputs) {
        // Forget events that expired: a later failure starts a new one anyway.
        let window = self.window_micros();
        let AdminEventsState { events, counted } = state;
        let live = |ev: &AdminEvent| {
            ev.expires_at > now_micros
                && ev.last_seen.saturating_add(window) > now_micros.saturating_sub(window)
        };
        // An event that had raised its alert and is now over resolves it (same dedup key).
        if let Some(rule @ AlertRule::AdminEventOccurrences { threshold, .. }) = &self.rule {
            for (_, ev) in events.iter() {
                if ev.occurrences >= *threshold && !live(ev) {
                    let alert = resolved_alert(rule, &self.output, ev, now_micros);
                    // An alert built here always encodes (strings and a map); `tick` cannot fail.
                    let _ = out.push_alert(&self.alerts_topic, &self.alerts, &alert);
                }
            }
        }
        events.retain(|_, ev| live(ev));
        // A failure id is remembered while its event is, and never longer than the retention,
        // so an event that keeps recurring does not grow the state without bound.
        let retention = micros(self.cfg.retention_secs);
        counted.retain(|k, &t| {
            t.saturating_add(retention) > now_micros
                && k.split_once('|').is_some_and(|(ev, _)| events.contains(ev))
        });
    }
}

/// The resolution of the alert an admin event raised: the event expired (no failure within its
/// retention), so the incident it opened is over.
fn resolved_alert(rule: &AlertRule, topic: &str, ev: &AdminEvent, now_micros: i64) -> Alert {
    Draft {
        rule,
        kind: "event",
        title: format!(
            "{} of {} no longer failing (event expired)",
            ev.command, ev.image.full_name
        ),
        description: format!("last failure: {}", ev.reason),
        dedup_key: format!("admin_event/{}", ev.id),
        source_topic: topic,
        source_id: &ev.id,
        resources: vec![ev.image.full_name.clone()],
        tags: ev.cluster.iter().map(|c| format!("cluster:{c}")).collect(),
        attributes: [
            ("command".to_string(), ev.command.clone()),
            ("occurrences".to_string(), ev.occurrences.to_string()),
            (
                "cluster".to_string(),
                ev.cluster.clone().unwrap_or_default(),
            ),
            ("image".to_string(), ev.image.full_name.clone()),
        ]
        .into(),
        raised_at: now_micros,
    }
    .build_resolved()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secpipe_schemas::failures::Image;

    fn failure(t_secs: i64, reason: &str) -> Vec<u8> {
        Codec::<ScanFailure>::new()
            .unwrap()
            .encode(&ScanFailure {
                failure_id: format!("f{t_secs}"),
                command: "image scan".into(),
                image: Image {
                    full_name: "quay.io/acme/api:1".into(),
                    registry: Some("quay.io".into()),
                    repository: "acme/api".into(),
                    tag: Some("1".into()),
                    digest: None,
                },
                reason: reason.into(),
                source: "cli".into(),
                cluster: Some("prod".into()),
                occurred_at: t_secs * 1_000_000,
                received_at: t_secs * 1_000_000,
            })
            .unwrap()
    }

    fn run(
        p: &mut AdminEvents,
        state: &mut AdminEventsState,
        payloads: &[Vec<u8>],
    ) -> Vec<AdminEvent> {
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
        let rules = [AlertRule::AdminEventOccurrences {
            severity: "medium".into(),
            threshold,
        }];
        AdminEvents::new(AdminEventsConfig::default(), "in", "out", "alerts", &rules).unwrap()
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
        let original: serde_json::Value =
            serde_json::from_str(&alert.attributes["original"]).unwrap();
        assert_eq!(original["occurrences"], 2);

        // The event expires: its alert resolves under the same dedup key; an event that never
        // raised one resolves nothing.
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
}
