//! Deterministic sample telemetry for tests, load generation and sizing: realistic events of a
//! few Java and native services on Kubernetes nodes, in the proportions of the reference sample
//! (743 events of a Spring Boot service started, sent 5 requests, then left idle ~30 minutes).
//! The same seed always gives the same events; no randomness crate is involved.
use super::{Network, TelemetryEvent, TelemetryKind};

mod corpus;
mod events;
mod generator;

use corpus::{FQDNS, JAVA_NET_FRAMES, NATIVE_FRAMES};
use generator::{java_frame, native_frame, Generator};

use TelemetryKind as K;

/// Events per type in the reference sample (743 in all).
pub const REFERENCE_COUNTS: [(TelemetryKind, u32); 11] = [
    (K::ComponentStart, 3),
    (K::ComponentExit, 2),
    (K::HostEnvironment, 3),
    (K::PackageInfo, 48),
    (K::Api, 8),
    (K::Heartbeat, 248),
    (K::Network, 9),
    (K::DependencyInfo, 103),
    (K::MemoryWarning, 197),
    (K::File, 120),
    (K::WebappRegistration, 2),
];

/// Average size in bytes of each type's events in the reference sample.
pub const REFERENCE_AVERAGE_BYTES: [(TelemetryKind, usize); 11] = [
    (K::ComponentStart, 4263),
    (K::ComponentExit, 228),
    (K::HostEnvironment, 38060),
    (K::PackageInfo, 349),
    (K::Api, 739),
    (K::Heartbeat, 484),
    (K::Network, 2590),
    (K::DependencyInfo, 376),
    (K::MemoryWarning, 446),
    (K::File, 1816),
    (K::WebappRegistration, 313),
];

/// The types the reference sample lacks, with the small share [`full_mix`] gives them.
const FULL_MIX_EXTRA: [(TelemetryKind, u32); 4] = [
    (K::WebappUriDiscovery, 12),
    (K::Process, 6),
    (K::IdentityChange, 2),
    (K::AuthTokenSighting, 4),
];

/// An endless stream in the reference proportions: each cycle of 743 events (the first 743, the
/// next 743, ...) holds exactly [`REFERENCE_COUNTS`], the types interleaved evenly. Events come from `hosts` hosts
/// running `processes_per_host` processes each (at least one of each).
pub fn reference_mix(
    seed: u64,
    hosts: usize,
    processes_per_host: usize,
) -> impl Iterator<Item = TelemetryEvent> {
    Mix::new(seed, hosts, processes_per_host, REFERENCE_COUNTS.to_vec())
}

/// Like [`reference_mix`], plus a small share of every type the reference sample lacks
/// (webapp URI discovery, process, identity change, auth token sighting): 767 events a cycle.
pub fn full_mix(
    seed: u64,
    hosts: usize,
    processes_per_host: usize,
) -> impl Iterator<Item = TelemetryEvent> {
    let mut weights = REFERENCE_COUNTS.to_vec();
    weights.extend(FULL_MIX_EXTRA);
    Mix::new(seed, hosts, processes_per_host, weights)
}

/// One event of every type, in [`TelemetryKind::ALL`] order.
pub fn one_of_each(seed: u64) -> Vec<TelemetryEvent> {
    let mut g = Generator::new(seed, 2, 2);
    TelemetryKind::ALL.into_iter().map(|k| g.event(k)).collect()
}

/// A DNS lookup by a Java service: two names, a stack of 8 frames from libc up to the JDBC
/// driver. About 650 bytes in Avro.
pub fn network_event(seed: u64) -> Network {
    let mut g = Generator::new(seed, 1, 1);
    let envelope = g.envelope(0);
    let mut stack = vec![
        native_frame(&mut g.rng, NATIVE_FRAMES[3]),
        native_frame(&mut g.rng, NATIVE_FRAMES[8]),
    ];
    stack.extend(JAVA_NET_FRAMES.iter().map(|s| java_frame(&mut g.rng, s)));
    let first = g.rng.below(FQDNS.len());
    Network {
        envelope,
        operation: "dns".into(),
        address_family: "AF_INET".into(),
        local_addr: None,
        local_port: None,
        remote_addr: Some("10.96.0.10".into()),
        remote_port: Some(53),
        fqdns: vec![
            FQDNS[first].to_string(),
            FQDNS[(first + 1) % FQDNS.len()].to_string(),
        ],
        stack,
    }
}

/// Smooth weighted round-robin over the kinds: each cycle of `sum(weights)` events holds every
/// kind exactly its weight times, spread out rather than grouped.
struct Mix {
    generator: Generator,
    weights: Vec<(TelemetryKind, i64)>,
    credit: Vec<i64>,
    total: i64,
}

impl Mix {
    fn new(seed: u64, hosts: usize, processes: usize, weights: Vec<(TelemetryKind, u32)>) -> Self {
        let weights: Vec<_> = weights
            .into_iter()
            .map(|(k, w)| (k, i64::from(w)))
            .collect();
        Self {
            generator: Generator::new(seed, hosts, processes),
            credit: vec![0; weights.len()],
            total: weights.iter().map(|(_, w)| w).sum(),
            weights,
        }
    }
}

impl Iterator for Mix {
    type Item = TelemetryEvent;

    fn next(&mut self) -> Option<TelemetryEvent> {
        let mut best = 0;
        for (i, (_, weight)) in self.weights.iter().enumerate() {
            self.credit[i] += weight;
            if self.credit[i] > self.credit[best] {
                best = i;
            }
        }
        self.credit[best] -= self.total;
        Some(self.generator.event(self.weights[best].0))
    }
}

#[cfg(test)]
mod tests;
