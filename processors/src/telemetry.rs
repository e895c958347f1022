//! Runtime telemetry: the raw agent stream in, a clean stream and heartbeat rollups out.
//!
//! - package info, dependency info and webapp URI discovery are deduplicated per process (the
//!   same library or URI is reported once);
//! - memory warnings pass at most once per `memory_warning_interval` per warning type per
//!   process;
//! - heartbeats become per-process, per-minute [`HeartbeatRollup`]s, emitted when the process's
//!   next minute starts (or by `tick` once the minute is long over), and re-emitted with a
//!   higher version when a late heartbeat of the minute arrives (see `telemetry/rollups.rs`);
//! - secrets that reached this far are redacted;
//! - events older than the horizon when the broker received them are dropped and counted;
//! - identity changes to root, processes launched from temporary directories and new listening
//!   ports raise alerts.
//!
//! The raw topic is keyed by host, so every process of a host shares a partition: per-host
//! state (the ports a host listens on) is global to its key, and per-process state is keyed by
//! the process ([`TelemetryEvent::process_key`]) inside the partition.
//!
//! An event that passes unchanged is forwarded as the very bytes that came in: no re-encoding.
use secpipe_schemas::{
    alert::Alert,
    rollups::HeartbeatRollup,
    telemetry::{TelemetryCodec, TelemetryEvent},
    Codec, SchemaError,
};
use serde::{Deserialize, Serialize};

use crate::{
    alerts::{AlertRule, Draft},
    redact::Redactor,
    secs_to_micros, Change, InRecord, Outputs, PartitionState, ProcessError, Processor, StateStore,
};

mod rollups;

use rollups::{Folded, Rollups};

/// Settings of the telemetry processor (section `[processors.telemetry]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Events whose event time is more than this many seconds before the broker received them
    /// are dropped (and counted). Default 86400.
    pub horizon_secs: u64,
    /// At most one memory warning per type per process in this many seconds. Default 60.
    pub memory_warning_interval_secs: u64,
    /// A heartbeat rollup is emitted by `tick` once its minute ended this many seconds ago
    /// (wall clock) without a later heartbeat from the process. Default 120.
    pub rollup_flush_after_secs: u64,
    /// An emitted heartbeat rollup is kept this many seconds after its minute ended (wall
    /// clock): a late heartbeat of the minute updates it and re-emits it with a higher version.
    /// A heartbeat of a minute older than that is dropped (and counted). Default 3600.
    pub rollup_late_horizon_secs: u64,
    /// Per-process dedupe state is forgotten after this many seconds without an event of the
    /// process (event time). Default 86400.
    pub process_state_ttl_secs: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            horizon_secs: 86_400,
            memory_warning_interval_secs: 60,
            rollup_flush_after_secs: 120,
            rollup_late_horizon_secs: 3600,
            process_state_ttl_secs: 86_400,
        }
    }
}

/// Per-partition state of the telemetry processor.
#[derive(Debug)]
pub struct TelemetryState {
    /// "{process}|{kind}|{identity}" -> event time of the first report.
    seen: StateStore<i64>,
    /// "{process}|{warning type}" -> event time of the last warning let through.
    warned: StateStore<i64>,
    /// Per-process, per-minute heartbeat rollups.
    rollups: Rollups,
    /// "{host}|{port}" -> event time the host first listened on the port. Global to the host,
    /// whatever process listens: the partition holds every process of the host.
    ports: StateStore<i64>,
}

impl Default for TelemetryState {
    fn default() -> Self {
        Self {
            seen: StateStore::new("seen"),
            warned: StateStore::new("warned"),
            rollups: Rollups::default(),
            ports: StateStore::new("port"),
        }
    }
}

impl PartitionState for TelemetryState {
    fn drain_changes(&mut self) -> Vec<Change> {
        let mut out = Vec::new();
        self.seen.drain_into(&mut out);
        self.warned.drain_into(&mut out);
        self.rollups.drain_into(&mut out);
        self.ports.drain_into(&mut out);
        out
    }

    fn apply(&mut self, change: &Change) -> Result<(), String> {
        let _ = self.seen.try_apply(change)?
            || self.warned.try_apply(change)?
            || self.rollups.try_apply(change)?
            || self.ports.try_apply(change)?;
        Ok(())
    }

    fn snapshot(&self) -> Vec<Change> {
        let mut out = Vec::with_capacity(self.live_keys());
        self.seen.snapshot_into(&mut out);
        self.warned.snapshot_into(&mut out);
        self.rollups.snapshot_into(&mut out);
        self.ports.snapshot_into(&mut out);
        out
    }

    fn live_keys(&self) -> usize {
        self.seen.len() + self.warned.len() + self.rollups.len() + self.ports.len()
    }
}

/// Topics of the telemetry processor.
#[derive(Debug, Clone)]
pub struct TelemetryTopics {
    pub input: String,
    pub clean: String,
    pub rollups: String,
    pub alerts: String,
}

/// The processor.
pub struct Telemetry {
    cfg: TelemetryConfig,
    topics: TelemetryTopics,
    rules: Vec<AlertRule>,
    redactor: Redactor,
    codec: TelemetryCodec,
    rollups: Codec<HeartbeatRollup>,
    alerts: Codec<Alert>,
}

impl Telemetry {
    pub fn new(
        cfg: TelemetryConfig,
        topics: TelemetryTopics,
        rules: &[AlertRule],
        redactor: Redactor,
    ) -> Result<Self, SchemaError> {
        Ok(Self {
            cfg,
            topics,
            rules: rules
                .iter()
                .filter(|r| {
                    matches!(
                        r,
                        AlertRule::IdentityChangeToRoot { .. }
                            | AlertRule::ProcessFromTempDir { .. }
                            | AlertRule::NewListeningPort { .. }
                    )
                })
                .cloned()
                .collect(),
            redactor,
            codec: TelemetryCodec::new()?,
            rollups: Codec::new()?,
            alerts: Codec::new()?,
        })
    }

    /// Pushes a rollup keyed by its process, like the clean stream: every version of a minute
    /// lands on one partition of the rollups topic, in order.
    fn emit_rollup(&self, rollup: &HeartbeatRollup, out: &mut Outputs) -> Result<(), ProcessError> {
        let key = format!(
            "{}/{}/{}",
            rollup.host,
            rollup.container_id.as_deref().unwrap_or("-"),
            rollup.pid
        );
        out.push(&self.topics.rollups, key, self.rollups.encode(rollup)?);
        Ok(())
    }

    /// What a runtime alert says about its event for the notifier: the call, where, and the
    /// event itself (redacted, as the clean stream has it).
    fn event_attributes(&self, ev: &TelemetryEvent) -> std::collections::BTreeMap<String, String> {
        let e = ev.envelope();
        let (call, address) = match ev {
            TelemetryEvent::IdentityChange(c) => (c.change_type.clone(), None),
            TelemetryEvent::Process(_) => ("exec".to_string(), None),
            TelemetryEvent::Network(n) => (n.operation.clone(), n.local_addr.clone()),
            TelemetryEvent::WebappRegistration(_) => ("webapp_registration".to_string(), None),
            _ => (ev.kind().to_string(), None),
        };
        let mut clean = ev.clone();
        self.redactor.redact_event(&mut clean);
        [
            ("host", e.host.clone()),
            ("pid", e.pid.to_string()),
            ("call", call),
            ("event_id", e.event_id.clone()),
            ("namespace", e.namespace.clone().unwrap_or_default()),
            ("pod", e.pod.clone().unwrap_or_default()),
            ("address", address.unwrap_or_default()),
            (
                "original",
                serde_json::to_string(&clean).unwrap_or_default(),
            ),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn alert(
        &self,
        state: &mut TelemetryState,
        ev: &TelemetryEvent,
        process: &str,
        out: &mut Outputs,
    ) -> Result<(), ProcessError> {
        let e = ev.envelope();
        for rule in &self.rules {
            let (title, dedup_key, resource) = match (rule, ev) {
                (AlertRule::IdentityChangeToRoot { .. }, TelemetryEvent::IdentityChange(c))
                    if c.to_id == 0 && c.from_id != 0 =>
                {
                    (
                        format!("{} on {process}: {} -> root", c.change_type, c.from_id),
                        format!("identity_root/{process}"),
                        process.to_string(),
                    )
                }
                (AlertRule::ProcessFromTempDir { dirs, .. }, TelemetryEvent::Process(p))
                    if dirs.iter().any(|d| p.path.starts_with(d.as_str())) =>
                {
                    (
                        format!(
                            "{} launched from a temporary directory on {}",
                            p.path, e.host
                        ),
                        format!("temp_exec/{}/{}", e.host, p.path),
                        p.path.clone(),
                    )
                }
                (AlertRule::NewListeningPort { .. }, _) => {
                    let port = match ev {
                        TelemetryEvent::Network(n) if n.operation == "bind" => n.local_port,
                        TelemetryEvent::WebappRegistration(w) => Some(w.local_port),
                        _ => None,
                    };
                    let Some(port) = port else { continue };
                    let key = format!("{}|{port}", e.host);
                    if state.ports.contains(&key) {
                        continue;
                    }
                    state.ports.insert(key, e.event_time);
                    (
                        format!("{} listens on new port {port}", e.host),
                        format!("new_port/{}/{port}", e.host),
                        format!("{}:{port}", e.host),
                    )
                }
                _ => continue,
            };
            let alert = Draft {
                rule,
                kind: "event",
                title,
                description: format!("{} event {} of process {process}", ev.kind(), e.event_id),
                dedup_key,
                source_topic: &self.topics.input,
                source_id: &e.event_id,
                resources: vec![resource],
                tags: e
                    .namespace
                    .iter()
                    .map(|n| format!("namespace:{n}"))
                    .collect(),
                attributes: self.event_attributes(ev),
                raised_at: e.event_time,
            }
            .build();
            out.push_alert(&self.topics.alerts, &self.alerts, &alert)?;
        }
        Ok(())
    }
}

impl Processor for Telemetry {
    type State = TelemetryState;

    fn name(&self) -> &'static str {
        "telemetry"
    }

    fn input_topic(&self) -> &str {
        &self.topics.input
    }

    fn output_topics(&self) -> Vec<&str> {
        vec![
            &self.topics.clean,
            &self.topics.rollups,
            &self.topics.alerts,
        ]
    }

    fn process(
        &mut self,
        state: &mut TelemetryState,
        record: &InRecord<'_>,
        out: &mut Outputs,
    ) -> Result<(), ProcessError> {
        let mut ev = self.codec.decode(record.payload)?;
        let e = ev.envelope();
        let horizon = secs_to_micros(self.cfg.horizon_secs);
        if record.timestamp_ms > 0
            && e.event_time
                < record
                    .timestamp_ms
                    .saturating_mul(1_000)
                    .saturating_sub(horizon)
        {
            out.counters.expired += 1;
            return Ok(());
        }
        // Redacted before anything else reads the event: dedupe keys (a URI), alerts and the
        // state changelog must never hold a secret either.
        let redacted = self.redactor.redact_event(&mut ev);
        if redacted > 0 {
            let n = u64::try_from(redacted).unwrap_or(u64::MAX);
            out.counters.redacted = out.counters.redacted.saturating_add(n);
        }
        let process = ev.process_key();
        let event_time = ev.envelope().event_time;
        let identity = match &ev {
            TelemetryEvent::PackageInfo(p) => Some(format!("{process}|pkg|{}", p.path)),
            TelemetryEvent::DependencyInfo(d) => {
                Some(format!("{process}|dep|{}|{}", d.path, d.sha256))
            }
            TelemetryEvent::WebappUriDiscovery(u) => Some(format!(
                "{process}|uri|{}|{} {}",
                u.local_port, u.method, u.uri
            )),
            _ => None,
        };
        if let Some(identity) = identity {
            if state.seen.contains(&identity) {
                out.counters.dedupe_hits += 1;
                return Ok(());
            }
            state.seen.insert(identity, event_time);
        }
        match &ev {
            TelemetryEvent::MemoryWarning(w) => {
                let key = format!("{process}|{}", w.warning_type);
                let interval = secs_to_micros(self.cfg.memory_warning_interval_secs);
                if let Some(&last) = state.warned.get(&key) {
                    if event_time < last.saturating_add(interval) && event_time >= last {
                        out.counters.rate_limited += 1;
                        return Ok(());
                    }
                }
                state.warned.insert(key, event_time);
            }
            TelemetryEvent::Heartbeat(hb) => {
                match state.rollups.heartbeat(&process, hb) {
                    Folded::Open => {}
                    Folded::Emit(r) => self.emit_rollup(&r, out)?,
                    Folded::Expired => out.counters.expired += 1,
                }
                return Ok(());
            }
            _ => {}
        }
        self.alert(state, &ev, &process, out)?;
        let payload = if redacted == 0 {
            record.payload.to_vec()
        } else {
            self.codec.encode(&ev)?
        };
        out.push(&self.topics.clean, process, payload);
        Ok(())
    }

    fn tick(&mut self, state: &mut TelemetryState, now_micros: i64, out: &mut Outputs) {
        let flushed = state.rollups.tick(
            now_micros,
            secs_to_micros(self.cfg.rollup_flush_after_secs),
            secs_to_micros(self.cfg.rollup_late_horizon_secs),
            secs_to_micros(
                self.cfg
                    .process_state_ttl_secs
                    .max(self.cfg.rollup_late_horizon_secs),
            ),
        );
        for r in &flushed {
            // Encoding a rollup cannot fail: its schema is compiled in.
            let _ = self.emit_rollup(r, out);
        }
        let forget_before =
            now_micros.saturating_sub(secs_to_micros(self.cfg.process_state_ttl_secs));
        state.seen.retain(|_, &t| t > forget_before);
        state.warned.retain(|_, &t| t > forget_before);
    }
}

#[cfg(test)]
mod tests;
