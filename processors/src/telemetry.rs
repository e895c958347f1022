//! Runtime telemetry: the raw agent stream in, a clean stream and heartbeat rollups out.
//!
//! - package info, dependency info and webapp URI discovery are deduplicated per process (the
//!   same library or URI is reported once);
//! - memory warnings pass at most once per `memory_warning_interval` per warning type per
//!   process;
//! - heartbeats become per-process, per-minute [`HeartbeatRollup`]s, emitted when the process's
//!   next minute starts (or by `tick` once the minute is long over);
//! - secrets that reached this far are redacted;
//! - events older than the horizon when the broker received them are dropped and counted;
//! - identity changes to root, processes launched from temporary directories and new listening
//!   ports raise alerts.
//!
//! An event that passes unchanged is forwarded as the very bytes that came in: no re-encoding.
use secpipe_schemas::{
    alert::Alert,
    rollups::HeartbeatRollup,
    telemetry::{Heartbeat, TelemetryCodec, TelemetryEvent},
    Codec, SchemaError,
};
use serde::{Deserialize, Serialize};

use crate::{
    alerts::{AlertRule, Draft},
    redact::Redactor,
    Change, InRecord, Outputs, PartitionState, ProcessError, Processor, StateStore,
};

const MINUTE_MICROS: i64 = 60 * 1_000_000;

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
    /// "{process}" -> the open minute's rollup.
    rollups: StateStore<HeartbeatRollup>,
    /// "{host}|{port}" -> event time the host first listened on the port.
    ports: StateStore<i64>,
}

impl Default for TelemetryState {
    fn default() -> Self {
        Self {
            seen: StateStore::new("seen"),
            warned: StateStore::new("warned"),
            rollups: StateStore::new("rollup"),
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
        redaction_key: &str,
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
            redactor: Redactor::new(redaction_key),
            codec: TelemetryCodec::new()?,
            rollups: Codec::new()?,
            alerts: Codec::new()?,
        })
    }

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

    /// Adds a heartbeat to its process's open minute; emits the previous minute when a new one
    /// starts. Returns false for a heartbeat of a minute already emitted (late).
    fn heartbeat(
        &self,
        state: &mut TelemetryState,
        process: &str,
        hb: &Heartbeat,
        out: &mut Outputs,
    ) -> Result<bool, ProcessError> {
        let e = &hb.envelope;
        let minute = e.event_time.div_euclid(MINUTE_MICROS) * MINUTE_MICROS;
        if let Some(open) = state.rollups.get(process) {
            if minute < open.minute {
                return Ok(false);
            }
            if minute > open.minute {
                let closed = state.rollups.remove(process).expect("present");
                self.emit_rollup(&closed, out)?;
            }
        }
        if !state.rollups.contains(process) {
            state.rollups.insert(
                process.to_string(),
                HeartbeatRollup {
                    rollup_id: HeartbeatRollup::derive_id(
                        &e.host,
                        e.container_id.as_deref(),
                        e.pid,
                        minute,
                    ),
                    host: e.host.clone(),
                    container_id: e.container_id.clone(),
                    pod: e.pod.clone(),
                    namespace: e.namespace.clone(),
                    pid: e.pid,
                    app: e.app.clone(),
                    minute,
                    heartbeats: 0,
                    cpu_user_ms: 0,
                    cpu_system_ms: 0,
                    rss_bytes_max: 0,
                    rss_bytes_sum: 0,
                    vm_bytes_max: 0,
                    agent_cpu_ms: 0,
                    agent_rss_bytes_max: 0,
                    threads_created: 0,
                    forks: 0,
                    open_descriptors_max: 0,
                    version: 0,
                },
            );
        }
        let r = state.rollups.get_mut(process).expect("present");
        r.heartbeats += 1;
        r.version += 1;
        r.cpu_user_ms += hb.cpu_user_ms;
        r.cpu_system_ms += hb.cpu_system_ms;
        r.rss_bytes_max = r.rss_bytes_max.max(hb.rss_bytes);
        r.rss_bytes_sum += hb.rss_bytes;
        r.vm_bytes_max = r.vm_bytes_max.max(hb.vm_bytes);
        r.agent_cpu_ms += hb.agent_cpu_ms;
        r.agent_rss_bytes_max = r.agent_rss_bytes_max.max(hb.agent_rss_bytes);
        r.threads_created += hb.threads_created;
        r.forks += hb.forks;
        let open = hb.open_descriptors.iter().filter(|d| !d.closed).count() as i64;
        r.open_descriptors_max = r.open_descriptors_max.max(open);
        Ok(true)
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
                attributes: [
                    ("host".to_string(), e.host.clone()),
                    ("pid".to_string(), e.pid.to_string()),
                ]
                .into(),
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
        let horizon = self.cfg.horizon_secs as i64 * 1_000_000;
        if record.timestamp_ms > 0 && e.event_time < record.timestamp_ms * 1_000 - horizon {
            out.counters.expired += 1;
            return Ok(());
        }
        let process = ev.partition_key();
        let event_time = e.event_time;
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
                let interval = self.cfg.memory_warning_interval_secs as i64 * 1_000_000;
                if let Some(&last) = state.warned.get(&key) {
                    if event_time < last + interval && event_time >= last {
                        out.counters.rate_limited += 1;
                        return Ok(());
                    }
                }
                state.warned.insert(key, event_time);
            }
            TelemetryEvent::Heartbeat(hb) => {
                if !self.heartbeat(state, &process, hb, out)? {
                    out.counters.expired += 1;
                }
                return Ok(());
            }
            _ => {}
        }
        self.alert(state, &ev, &process, out)?;
        let redacted = self.redactor.redact_event(&mut ev);
        let payload = if redacted == 0 {
            record.payload.to_vec()
        } else {
            out.counters.redacted += redacted as u64;
            self.codec.encode(&ev)?
        };
        out.push(&self.topics.clean, process, payload);
        Ok(())
    }

    fn tick(&mut self, state: &mut TelemetryState, now_micros: i64, out: &mut Outputs) {
        let flush_before =
            now_micros - self.cfg.rollup_flush_after_secs as i64 * 1_000_000 - MINUTE_MICROS;
        let stale: Vec<String> = state
            .rollups
            .iter()
            .filter(|(_, r)| r.minute < flush_before)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(r) = state.rollups.remove(&key) {
                // Encoding a rollup cannot fail: its schema is compiled in.
                let _ = self.emit_rollup(&r, out);
            }
        }
        let ttl = self.cfg.process_state_ttl_secs as i64 * 1_000_000;
        state.seen.retain(|_, &t| t > now_micros - ttl);
        state.warned.retain(|_, &t| t > now_micros - ttl);
    }
}

#[cfg(test)]
mod tests;
