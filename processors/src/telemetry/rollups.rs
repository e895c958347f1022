//! Heartbeat rollups, per process and minute. A minute is emitted when the process's next minute
//! starts, or by `tick` once it is long over; it then stays in state until the late horizon, so
//! a late heartbeat adds to it and re-emits it with the same id and a higher version. The
//! table's newest version (`ReplacingMergeTree(version)`) therefore holds every heartbeat of the
//! minute. A heartbeat of a minute already forgotten is dropped: emitting it as a fresh rollup
//! would carry a lower version than the one in the table and be discarded there, or worse,
//! replace it.
use secpipe_schemas::{rollups::HeartbeatRollup, telemetry::Heartbeat};

use crate::{Change, StateStore};

pub(super) const MINUTE_MICROS: i64 = 60 * 1_000_000;

/// The rollup part of the telemetry state.
#[derive(Debug)]
pub(super) struct Rollups {
    /// "{process}" -> the process's newest minute, not emitted yet. Only the newest minute of a
    /// process can be open, since it is emitted when the next one starts. (The same prefix and
    /// values as before emitted minutes were kept, so older changelogs still restore.)
    open: StateStore<HeartbeatRollup>,
    /// "{process}|{minute}" -> an emitted minute, kept for late heartbeats until the horizon.
    emitted: StateStore<HeartbeatRollup>,
    /// "{process}" -> the newest minute of the process that was emitted and then forgotten. A
    /// heartbeat of that minute or an older one is late, not new: `process` tells them apart
    /// from the state alone, without the wall clock that decided what to forget. Minutes a
    /// process never had (a backfill of old data) are rolled up as usual.
    floor: StateStore<i64>,
}

impl Default for Rollups {
    fn default() -> Self {
        Self {
            open: StateStore::new("rollup"),
            emitted: StateStore::new("rollup-emitted"),
            floor: StateStore::new("rollup-floor"),
        }
    }
}

/// What a heartbeat did.
#[derive(Debug)]
pub(super) enum Folded {
    /// Added to the process's open minute: nothing to emit yet.
    Open,
    /// Emit this now: the open minute a newer one closed, or a late minute, updated.
    Emit(Box<HeartbeatRollup>),
    /// Its minute is older than the late horizon and forgotten: dropped.
    Expired,
}

/// The start of the minute of `t` (microseconds). Saturates for hostile times near `i64::MIN`.
pub(super) fn minute_of(t: i64) -> i64 {
    t.saturating_sub(t.rem_euclid(MINUTE_MICROS))
}

fn emitted_key(process: &str, minute: i64) -> String {
    format!("{process}|{minute}")
}

impl Rollups {
    fn floor(&self, process: &str) -> i64 {
        self.floor.get(process).copied().unwrap_or(i64::MIN)
    }

    /// Folds a heartbeat of `process` into its minute.
    pub(super) fn heartbeat(&mut self, process: &str, hb: &Heartbeat) -> Folded {
        let minute = minute_of(hb.envelope.event_time);
        let open_minute = self.open.get(process).map(|r| r.minute);
        if open_minute == Some(minute) {
            fold(self.open.get_mut(process).expect("present"), hb);
            return Folded::Open;
        }
        let key = emitted_key(process, minute);
        if let Some(r) = self.emitted.get_mut(&key) {
            fold(r, hb);
            return Folded::Emit(Box::new(r.clone()));
        }
        if minute <= self.floor(process) {
            return Folded::Expired;
        }
        let mut r = new_rollup(hb, minute);
        fold(&mut r, hb);
        match open_minute {
            Some(open) if open > minute => {
                // The process has moved on: a late minute, emitted at once.
                self.emitted.insert(key, r.clone());
                Folded::Emit(Box::new(r))
            }
            Some(_) => {
                let closed = self.open.remove(process).expect("present");
                self.open.insert(process.to_string(), r);
                self.emitted
                    .insert(emitted_key(process, closed.minute), closed.clone());
                Folded::Emit(Box::new(closed))
            }
            None => {
                self.open.insert(process.to_string(), r);
                Folded::Open
            }
        }
    }

    /// Emits the open minutes that ended more than `flush_after` ago (and keeps them), and
    /// forgets the emitted minutes that ended more than `late_horizon` ago (microseconds).
    /// Returns what to emit, in process order.
    pub(super) fn tick(
        &mut self,
        now: i64,
        flush_after: i64,
        late_horizon: i64,
        floor_ttl: i64,
    ) -> Vec<HeartbeatRollup> {
        let flush_before = now
            .saturating_sub(flush_after)
            .saturating_sub(MINUTE_MICROS);
        let mut due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, r)| r.minute < flush_before)
            .map(|(k, _)| k.clone())
            .collect();
        due.sort_unstable();
        let mut flushed = Vec::with_capacity(due.len());
        for process in due {
            let r = self.open.remove(&process).expect("listed");
            self.emitted
                .insert(emitted_key(&process, r.minute), r.clone());
            flushed.push(r);
        }
        // Minutes that began before this one ended at or before `now - late_horizon`: forget
        // them, remembering per process the newest minute forgotten.
        let forget_before = minute_of(now.saturating_sub(late_horizon));
        let mut forgotten: Vec<(String, i64)> = self
            .emitted
            .iter()
            .filter(|(_, r)| r.minute < forget_before)
            .map(|(k, r)| (k.clone(), r.minute))
            .collect();
        forgotten.sort_unstable();
        for (key, minute) in forgotten {
            self.emitted.remove(&key);
            let process = key.rsplit_once('|').map_or(key.as_str(), |(p, _)| p);
            if minute > self.floor(process) {
                self.floor.insert(process.to_string(), minute);
            }
        }
        // A process's floor goes once it is `floor_ttl` old: its very late heartbeats are then
        // rolled up afresh.
        let floor_before = now.saturating_sub(floor_ttl);
        self.floor.retain(|_, &m| m >= floor_before);
        flushed
    }

    pub(super) fn drain_into(&mut self, out: &mut Vec<Change>) {
        self.open.drain_into(out);
        self.emitted.drain_into(out);
        self.floor.drain_into(out);
    }

    pub(super) fn try_apply(&mut self, change: &Change) -> Result<bool, String> {
        Ok(self.open.try_apply(change)?
            || self.emitted.try_apply(change)?
            || self.floor.try_apply(change)?)
    }

    pub(super) fn snapshot_into(&self, out: &mut Vec<Change>) {
        self.open.snapshot_into(out);
        self.emitted.snapshot_into(out);
        self.floor.snapshot_into(out);
    }

    pub(super) fn len(&self) -> usize {
        self.open.len() + self.emitted.len() + self.floor.len()
    }
}

fn new_rollup(hb: &Heartbeat, minute: i64) -> HeartbeatRollup {
    let e = &hb.envelope;
    HeartbeatRollup {
        rollup_id: HeartbeatRollup::derive_id(&e.host, e.container_id.as_deref(), e.pid, minute),
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
    }
}

/// Adds a heartbeat to a rollup. The values come from agents: saturating arithmetic, so hostile
/// ones cannot overflow (a panic would dead-letter the record and lose the minute).
fn fold(r: &mut HeartbeatRollup, hb: &Heartbeat) {
    r.heartbeats = r.heartbeats.saturating_add(1);
    // The number of heartbeats folded in: every re-emission of the minute carries a higher one,
    // and a replay computes the same ones.
    r.version = r.version.saturating_add(1);
    r.cpu_user_ms = r.cpu_user_ms.saturating_add(hb.cpu_user_ms);
    r.cpu_system_ms = r.cpu_system_ms.saturating_add(hb.cpu_system_ms);
    r.rss_bytes_max = r.rss_bytes_max.max(hb.rss_bytes);
    r.rss_bytes_sum = r.rss_bytes_sum.saturating_add(hb.rss_bytes);
    r.vm_bytes_max = r.vm_bytes_max.max(hb.vm_bytes);
    r.agent_cpu_ms = r.agent_cpu_ms.saturating_add(hb.agent_cpu_ms);
    r.agent_rss_bytes_max = r.agent_rss_bytes_max.max(hb.agent_rss_bytes);
    r.threads_created = r.threads_created.saturating_add(hb.threads_created);
    r.forks = r.forks.saturating_add(hb.forks);
    let open = hb.open_descriptors.iter().filter(|d| !d.closed).count();
    r.open_descriptors_max = r
        .open_descriptors_max
        .max(i64::try_from(open).unwrap_or(i64::MAX));
}
