//! Per-partition state with a changelog: every change to a key is remembered until the runtime
//! drains it into the processor's compacted changelog topic, and a restarted processor rebuilds
//! the state by applying the changelog from its beginning.
use std::collections::{HashMap, HashSet};

use serde::{de::DeserializeOwned, Serialize};

/// One changelog entry: a key and its new value (`None` deletes it).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// A processor's whole per-partition state: made of [`StateStore`]s, each under a prefix.
pub trait PartitionState: Default {
    /// The changes since the last drain, final value per key.
    fn drain_changes(&mut self) -> Vec<Change>;
    /// Applies one changelog entry while restoring. Unknown keys are ignored (an older version
    /// of the processor may have written stores that no longer exist).
    fn apply(&mut self, change: &Change) -> Result<(), String>;
    /// The whole live state as changelog entries: one per live key, its value `Some`, keyed as
    /// [`drain_changes`](Self::drain_changes) keys it. Applying them to a `Default` state gives
    /// an equal state, so a runtime can compact or hand over a partition's state without
    /// replaying its history. Sorted by key within each store, so equal states give equal
    /// snapshots.
    fn snapshot(&self) -> Vec<Change>;
    /// How many live keys the state holds: the length of [`snapshot`](Self::snapshot).
    /// Implementations should add up their stores' lengths rather than serialise everything.
    fn live_keys(&self) -> usize {
        self.snapshot().len()
    }
}

/// A key-value store of one kind of state, serialised as JSON in the changelog.
#[derive(Debug)]
pub struct StateStore<V> {
    prefix: &'static str,
    map: HashMap<String, V>,
    dirty: HashSet<String>,
}

impl<V> StateStore<V> {
    pub fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            map: HashMap::new(),
            dirty: HashSet::new(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Mutable access; the key is written to the changelog at the next drain.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let v = self.map.get_mut(key)?;
        if !self.dirty.contains(key) {
            self.dirty.insert(key.to_string());
        }
        Some(v)
    }

    pub fn insert(&mut self, key: String, value: V) {
        self.dirty.insert(key.clone());
        self.map.insert(key, value);
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        let v = self.map.remove(key)?;
        self.dirty.insert(key.to_string());
        Some(v)
    }

    /// Removes every entry `keep` rejects (expiry), recording the deletions.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &V) -> bool) -> usize {
        let gone: Vec<String> = self
            .map
            .iter()
            .filter(|(k, v)| !keep(k, v))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.remove(k);
        }
        gone.len()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.map.iter()
    }
}

impl<V: Serialize + DeserializeOwned> StateStore<V> {
    /// Appends this store's changes (keys prefixed) to `out`.
    pub fn drain_into(&mut self, out: &mut Vec<Change>) {
        for key in self.dirty.drain() {
            let value = self
                .map
                .get(&key)
                .map(|v| serde_json::to_vec(v).expect("state values serialise to JSON"));
            out.push(Change {
                key: format!("{}/{key}", self.prefix),
                value,
            });
        }
    }

    /// Appends one entry per live key (prefixed as [`drain_into`](Self::drain_into) does,
    /// sorted by key) to `out`. Pending changes are left to the next drain.
    pub fn snapshot_into(&self, out: &mut Vec<Change>) {
        let mut live: Vec<(&String, &V)> = self.map.iter().collect();
        live.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.extend(live.into_iter().map(|(key, v)| Change {
            key: format!("{}/{key}", self.prefix),
            value: Some(serde_json::to_vec(v).expect("state values serialise to JSON")),
        }));
    }

    /// Applies a changelog entry if it belongs to this store. Returns whether it did.
    pub fn try_apply(&mut self, change: &Change) -> Result<bool, String> {
        let Some(key) = change
            .key
            .strip_prefix(self.prefix)
            .and_then(|k| k.strip_prefix('/'))
        else {
            return Ok(false);
        };
        match &change.value {
            Some(bytes) => {
                let v = serde_json::from_slice(bytes)
                    .map_err(|e| format!("changelog value of {}: {e}", change.key))?;
                self.map.insert(key.to_string(), v);
            }
            None => {
                self.map.remove(key);
            }
        }
        Ok(true)
    }
}

/// Test helper for every state: restoring `state`'s snapshot into a fresh state gives the same
/// snapshot and the same number of live keys.
#[cfg(test)]
pub(crate) fn assert_snapshot_round_trips<S: PartitionState>(state: &S) {
    let sorted = |mut changes: Vec<Change>| {
        changes.sort_by(|a, b| a.key.cmp(&b.key));
        changes
    };
    let snapshot = state.snapshot();
    assert!(snapshot.iter().all(|c| c.value.is_some()), "{snapshot:?}");
    assert_eq!(state.live_keys(), snapshot.len());
    let mut restored = S::default();
    for c in &snapshot {
        restored.apply(c).unwrap();
    }
    assert_eq!(restored.live_keys(), state.live_keys());
    assert_eq!(sorted(restored.snapshot()), sorted(snapshot));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_replay_into_an_equal_store() {
        let mut a: StateStore<u32> = StateStore::new("n");
        a.insert("x".into(), 1);
        a.insert("y".into(), 2);
        *a.get_mut("x").unwrap() += 10;
        a.remove("y");
        let mut log = Vec::new();
        a.drain_into(&mut log);
        assert_eq!(log.len(), 2, "one entry per key, final value: {log:?}");
        let mut b: StateStore<u32> = StateStore::new("n");
        for c in &log {
            assert!(b.try_apply(c).unwrap());
        }
        assert_eq!(b.get("x"), Some(&11));
        assert!(!b.contains("y"));
        let mut again = Vec::new();
        a.drain_into(&mut again);
        assert!(again.is_empty(), "drained changes are not repeated");
        let other = Change {
            key: "m/x".into(),
            value: None,
        };
        assert!(!b.try_apply(&other).unwrap());
    }

    #[test]
    fn a_snapshot_holds_every_live_key_once_with_its_current_value() {
        let mut a: StateStore<u32> = StateStore::new("n");
        a.insert("y".into(), 2);
        a.insert("x".into(), 1);
        a.insert("gone".into(), 3);
        a.remove("gone");
        *a.get_mut("x").unwrap() += 10;
        let mut snap = Vec::new();
        a.snapshot_into(&mut snap);
        let keys: Vec<&str> = snap.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["n/x", "n/y"], "live keys only, prefixed and sorted");
        let mut b: StateStore<u32> = StateStore::new("n");
        for c in &snap {
            assert!(b.try_apply(c).unwrap());
        }
        assert_eq!((b.get("x"), b.get("y"), b.len()), (Some(&11), Some(&2), 2));
        let mut pending = Vec::new();
        a.drain_into(&mut pending);
        assert_eq!(
            pending.len(),
            3,
            "a snapshot does not drain the pending changes"
        );
    }
}
