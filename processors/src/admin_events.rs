//! Admin events from failed ad-hoc scans: failures with the same normalised image, command,
//! reason and cluster become one [`AdminEvent`] with a stable id, first/last seen, an occurrence
//! count and every source. The event is re-emitted (version + 1) whenever its count grows, so the
//! newest version always carries the right frequency. How long repeats keep folding is the
//! [`DedupeMode`]: within a sliding window (`window`), or while the event lives (`merge`, as
//! RHACS does). Readers expire an event `retention` after its last occurrence.
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

/// How long repeats of a failure keep folding into the same admin event.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DedupeMode {
    /// A repeat less than `dedupe_window_secs` after the previous occurrence (or before the
    /// first) folds; one a full window or more later starts a new event. An event therefore
    /// stands for one burst of failures.
    #[default]
    Window,
    /// Every repeat folds into the event for as long as the event lives (less than
    /// `retention_secs` after its last occurrence), as RHACS does: one event per image,
    /// command, reason and cluster, counting every failure.
    Merge,
}

/// Settings of the admin-events processor (section `[processors.admin_events]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminEventsConfig {
    /// `window` or `merge` (see [`DedupeMode`]). Default `window`.
    pub dedupe_mode: DedupeMode,
    /// Mode `window`: failures with the same values less than this many seconds after the
    /// previous one fold into the same admin event; one exactly this many seconds later (or
    /// more) starts a new event. Unused in mode `merge`. Default 600.
    pub dedupe_window_secs: u64,
    /// Admin events expire this many seconds after their last occurrence. The gateway and the
    /// pruning job read it at every query unless an administrator changed it at run time
    /// (`PUT /v1/admin-events/settings`); this processor forgets an event's dedupe state after
    /// it. Default 345600 (4 days).
    pub retention_secs: u64,
}

impl Default for AdminEventsConfig {
    fn default() -> Self {
        Self {
            dedupe_mode: DedupeMode::Window,
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

    /// Does a failure at `t` fold into `ev`? Times come from the request: saturating
    /// arithmetic, so hostile ones cannot overflow.
    fn folds(&self, ev: &AdminEvent, t: i64) -> bool {
        match self.cfg.dedupe_mode {
            DedupeMode::Window => {
                let window = self.window_micros();
                t > ev.first_seen.saturating_sub(window) && t < ev.last_seen.saturating_add(window)
            }
            DedupeMode::Merge => t < ev.last_seen.saturating_add(micros(self.cfg.retention_secs)),
        }
    }

    /// How long after its last occurrence an event's state is kept.
    fn keep_micros(&self) -> i64 {
        let retention = micros(self.cfg.retention_secs);
        match self.cfg.dedupe_mode {
            // A failure up to a window late can still fold.
            DedupeMode::Window => retention.min(self.window_micros().saturating_mul(2)),
            DedupeMode::Merge => retention,
        }
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
        let retention = micros(self.cfg.retention_secs);
        let folds = state.events.get(&key).is_some_and(|ev| self.folds(ev, t));
        let event = match state.events.get_mut(&key) {
            Some(ev) if folds => {
                ev.occurrences = ev.occurrences.saturating_add(1);
                ev.version = ev.version.saturating_add(1);
                ev.first_seen = ev.first_seen.min(t);
                if t >= ev.last_seen {
                    ev.source = failure.source.clone();
                }
                ev.last_seen = ev.last_seen.max(t);
                ev.expires_at = ev.last_seen.saturating_add(retention);
                if !ev.sources.contains(&failure.source) {
                    ev.sources.push(failure.source);
                    ev.sources.sort();
                }
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
                    sources: vec![failure.source.clone()],
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
        // Forget events no failure can fold into any more: a later one starts a new event.
        let keep = self.keep_micros();
        let AdminEventsState { events, counted } = state;
        let live = |ev: &AdminEvent| ev.last_seen.saturating_add(keep) > now_micros;
        // An event that had raised its alert and can no longer grow resolves it (same dedup
        // key): the failures it counted stopped.
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
mod tests;
