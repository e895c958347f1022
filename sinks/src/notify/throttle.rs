//! The throttle: a storm of notifications with one dedup key becomes one message, then a
//! reminder per interval that says how many occurrences it stands for. State is one map from
//! dedup key to the last delivery, with snapshot and restore so that a restart need not
//! forget it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Throttling of repeats (section `[notify.throttle]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Once a notification with a dedup key was delivered, later ones with the same key are held
    /// back for this long; the first one after it goes out as a reminder counting the
    /// occurrences held back. A resolution is never held back and ends the storm. 0 turns
    /// throttling off. Default 3600000 (one hour).
    pub reminder_interval_ms: u64,
    /// Most dedup keys remembered; past it, keys whose interval is over are forgotten first,
    /// then the longest quiet. Default 100000.
    pub max_keys: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            reminder_interval_ms: 3_600_000,
            max_keys: 100_000,
        }
    }
}

/// One remembered dedup key, as a snapshot holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleEntry {
    pub dedup_key: String,
    /// When a message for this key was last delivered, milliseconds since the Unix epoch.
    pub last_delivered_ms: u64,
    /// Occurrences held back since then.
    pub held_back: u64,
}

/// What the throttle says about one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Deliver it, standing for this many occurrences (its own plus those held back).
    Send { occurrences: u64 },
    /// Hold it back: a message for its key went out within the interval.
    HoldBack,
}

#[derive(Debug, Clone, Copy)]
struct Last {
    delivered_ms: u64,
    held_back: u64,
}

pub(crate) struct Throttle {
    config: ThrottleConfig,
    keys: HashMap<String, Last>,
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Throttle {
            config,
            keys: HashMap::new(),
        }
    }

    /// Decides about a notification with `key` standing for `occurrences`, at `now_ms`.
    pub fn admit(&mut self, key: &str, occurrences: u64, now_ms: u64) -> Admission {
        let interval = self.config.reminder_interval_ms;
        match self.keys.get_mut(key) {
            Some(last) if interval > 0 && now_ms < last.delivered_ms.saturating_add(interval) => {
                last.held_back = last.held_back.saturating_add(occurrences);
                Admission::HoldBack
            }
            Some(last) => Admission::Send {
                occurrences: occurrences.saturating_add(last.held_back),
            },
            None => Admission::Send { occurrences },
        }
    }

    /// Records that a message for `key` reached at least one endpoint at `now_ms`.
    pub fn delivered(&mut self, key: &str, now_ms: u64) {
        if self.config.reminder_interval_ms == 0 {
            return;
        }
        self.keys.insert(
            key.to_string(),
            Last {
                delivered_ms: now_ms,
                held_back: 0,
            },
        );
        if self.keys.len() > self.config.max_keys {
            self.prune(now_ms);
        }
    }

    /// What is remembered about `key`, zeros when nothing is.
    pub fn entry(&self, key: &str) -> ThrottleEntry {
        let last = self.keys.get(key);
        ThrottleEntry {
            dedup_key: key.to_string(),
            last_delivered_ms: last.map_or(0, |l| l.delivered_ms),
            held_back: last.map_or(0, |l| l.held_back),
        }
    }

    /// The condition of `key` is over: the next occurrence is news again.
    pub fn resolved(&mut self, key: &str) {
        self.keys.remove(key);
    }

    fn prune(&mut self, now_ms: u64) {
        let interval = self.config.reminder_interval_ms;
        self.keys
            .retain(|_, last| now_ms < last.delivered_ms.saturating_add(interval));
        let keep = self.config.max_keys - self.config.max_keys / 10;
        if self.keys.len() > keep {
            let mut by_age: Vec<(u64, String)> = self
                .keys
                .iter()
                .map(|(k, last)| (last.delivered_ms, k.clone()))
                .collect();
            by_age.sort_unstable();
            let excess = self.keys.len() - keep;
            for (_, key) in by_age.into_iter().take(excess) {
                self.keys.remove(&key);
            }
        }
    }

    pub fn snapshot(&self) -> Vec<ThrottleEntry> {
        let mut entries: Vec<ThrottleEntry> = self
            .keys
            .iter()
            .map(|(k, last)| ThrottleEntry {
                dedup_key: k.clone(),
                last_delivered_ms: last.delivered_ms,
                held_back: last.held_back,
            })
            .collect();
        entries.sort_by(|a, b| a.dedup_key.cmp(&b.dedup_key));
        entries
    }

    pub fn restore(&mut self, entries: impl IntoIterator<Item = ThrottleEntry>) {
        for e in entries {
            self.keys.insert(
                e.dedup_key,
                Last {
                    delivered_ms: e.last_delivered_ms,
                    held_back: e.held_back,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(interval: u64, max_keys: usize) -> Throttle {
        Throttle::new(ThrottleConfig {
            reminder_interval_ms: interval,
            max_keys,
        })
    }

    #[test]
    fn duplicate_alerts_within_the_interval_are_held_back_then_reminded() {
        let mut t = throttle(1000, 10);
        assert_eq!(t.admit("k", 1, 0), Admission::Send { occurrences: 1 });
        t.delivered("k", 0);
        for now in [1, 100, 999] {
            assert_eq!(t.admit("k", 1, now), Admission::HoldBack);
        }
        assert_eq!(t.admit("other", 1, 500), Admission::Send { occurrences: 1 });
        assert_eq!(t.admit("k", 2, 1000), Admission::Send { occurrences: 5 });
        t.delivered("k", 1000);
        assert_eq!(t.admit("k", 1, 1500), Admission::HoldBack);
    }

    #[test]
    fn an_undelivered_message_does_not_silence_the_next() {
        let mut t = throttle(1000, 10);
        assert_eq!(t.admit("k", 1, 0), Admission::Send { occurrences: 1 });
        // No delivered(): every endpoint was dead.
        assert_eq!(t.admit("k", 1, 10), Admission::Send { occurrences: 1 });
    }

    #[test]
    fn a_resolution_ends_the_storm() {
        let mut t = throttle(1000, 10);
        t.delivered("k", 0);
        t.resolved("k");
        assert_eq!(t.admit("k", 1, 1), Admission::Send { occurrences: 1 });
    }

    #[test]
    fn a_zero_interval_turns_throttling_off() {
        let mut t = throttle(0, 10);
        t.delivered("k", 0);
        assert_eq!(t.admit("k", 1, 0), Admission::Send { occurrences: 1 });
    }

    #[test]
    fn memory_is_bounded_by_max_keys() {
        let mut t = throttle(1_000_000, 100);
        for i in 0..1000 {
            t.delivered(&format!("k{i}"), i);
        }
        assert!(t.keys.len() <= 100);
        // The most recent keys are the ones kept.
        assert_eq!(t.admit("k999", 1, 1000), Admission::HoldBack);
    }

    #[test]
    fn a_snapshot_restores_the_same_decisions() {
        let mut t = throttle(1000, 10);
        t.delivered("k", 0);
        assert_eq!(t.admit("k", 1, 1), Admission::HoldBack);
        let snap = t.snapshot();
        assert_eq!(snap[0].held_back, 1);
        let mut restarted = throttle(1000, 10);
        restarted.restore(snap);
        assert_eq!(restarted.admit("k", 1, 2), Admission::HoldBack);
        assert_eq!(
            restarted.admit("k", 1, 1000),
            Admission::Send { occurrences: 3 }
        );
    }
}
