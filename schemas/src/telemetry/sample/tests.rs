use std::collections::{BTreeMap, HashSet};

use super::*;
use crate::{telemetry::TelemetryCodec, AvroRecord, Codec};

fn counts(events: &[TelemetryEvent]) -> BTreeMap<TelemetryKind, u32> {
    let mut counts = BTreeMap::new();
    for e in events {
        *counts.entry(e.kind()).or_default() += 1;
    }
    counts
}

#[test]
fn every_743_events_of_the_reference_mix_hold_the_reference_counts() {
    let events: Vec<_> = reference_mix(1, 3, 2).take(743 * 2).collect();
    let expected: BTreeMap<_, _> = REFERENCE_COUNTS.into_iter().collect();
    assert_eq!(expected.values().sum::<u32>(), 743);
    assert_eq!(counts(&events[..743]), expected);
    assert_eq!(counts(&events[743..]), expected);
}

#[test]
fn the_mix_is_interleaved_not_grouped() {
    let events: Vec<_> = reference_mix(2, 2, 2).take(743).collect();
    let first_hundred: HashSet<_> = events[..100].iter().map(|e| e.kind()).collect();
    assert!(first_hundred.len() >= 7, "{first_hundred:?}");
    let longest_run = events
        .chunk_by(|a, b| a.kind() == b.kind())
        .map(<[_]>::len)
        .max()
        .unwrap();
    assert!(
        longest_run <= 2,
        "a kind repeats {longest_run} times in a row"
    );
}

#[test]
fn the_full_mix_holds_every_kind_in_its_share() {
    let events: Vec<_> = full_mix(3, 2, 2).take(767).collect();
    let counts = counts(&events);
    for kind in TelemetryKind::ALL {
        assert!(
            counts.get(&kind).copied().unwrap_or(0) > 0,
            "{kind} missing"
        );
    }
    for (kind, n) in REFERENCE_COUNTS.into_iter().chain(FULL_MIX_EXTRA) {
        assert_eq!(counts[&kind], n, "{kind}");
    }
}

#[test]
fn the_same_seed_gives_the_same_events_and_another_seed_others() {
    let a: Vec<_> = full_mix(42, 2, 3).take(200).collect();
    let b: Vec<_> = full_mix(42, 2, 3).take(200).collect();
    let c: Vec<_> = full_mix(43, 2, 3).take(200).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(network_event(9), network_event(9));
    assert_ne!(network_event(9), network_event(10));
}

#[test]
fn events_come_from_every_process_in_time_order() {
    let events: Vec<_> = reference_mix(4, 3, 2).take(743).collect();
    let processes: HashSet<_> = events.iter().map(TelemetryEvent::process_key).collect();
    assert_eq!(processes.len(), 3 * 2, "{processes:?}");
    let hosts: HashSet<_> = events.iter().map(|e| e.envelope().host.as_str()).collect();
    assert_eq!(hosts.len(), 3);
    let partition_keys: HashSet<_> = events.iter().map(TelemetryEvent::partition_key).collect();
    assert_eq!(partition_keys.len(), 3, "one partition key per host");
    assert!(events
        .windows(2)
        .all(|w| w[0].envelope().event_time < w[1].envelope().event_time));
    let ids: HashSet<_> = events.iter().map(|e| &e.envelope().event_id).collect();
    assert_eq!(ids.len(), events.len());
    // ~30 minutes for the 743 events, as in the reference run.
    let span = events[742].envelope().event_time - events[0].envelope().event_time;
    assert!((20 * 60_000_000..40 * 60_000_000).contains(&span), "{span}");
}

#[test]
fn average_json_sizes_are_close_to_the_reference() {
    let mut totals: BTreeMap<TelemetryKind, (usize, usize)> = BTreeMap::new();
    for event in reference_mix(5, 3, 3).take(743 * 3) {
        let size = serde_json::to_vec(&event).unwrap().len();
        let t = totals.entry(event.kind()).or_default();
        t.0 += size;
        t.1 += 1;
    }
    let mut report = String::new();
    let mut off = Vec::new();
    for (kind, reference) in REFERENCE_AVERAGE_BYTES {
        let (total, n) = totals[&kind];
        let average = total / n;
        let ratio = average as f64 / reference as f64;
        report.push_str(&format!(
            "{kind:20} reference {reference:6} sample {average:6} ({:+.0}%)\n",
            (ratio - 1.0) * 100.0
        ));
        if !(0.6..=1.4).contains(&ratio) {
            off.push(kind);
        }
    }
    println!("{report}");
    assert!(off.is_empty(), "more than 40% off for {off:?}:\n{report}");
}

#[test]
fn the_network_event_is_about_650_bytes_in_avro() {
    let codec = Codec::<Network>::new().unwrap();
    let mut sizes = Vec::new();
    for seed in 0..20 {
        let event = network_event(seed);
        assert_eq!(event.stack.len(), 8);
        assert_eq!(event.fqdns.len(), 2);
        let bytes = codec.encode(&event).unwrap();
        assert!(
            (550..=750).contains(&bytes.len()),
            "seed {seed}: {} bytes",
            bytes.len()
        );
        assert_eq!(codec.decode(&bytes).unwrap(), event);
        sizes.push(bytes.len());
    }
    println!(
        "{} encoded: {} bytes for seed 0, {}..={} over 20 seeds",
        Network::FULL_NAME,
        sizes[0],
        sizes.iter().min().unwrap(),
        sizes.iter().max().unwrap()
    );
}

#[test]
fn every_mixed_event_round_trips_through_avro_and_json() {
    let codec = TelemetryCodec::new().unwrap();
    for event in full_mix(6, 2, 2).take(767) {
        let bytes = codec.encode(&event).unwrap();
        assert_eq!(codec.decode(&bytes).unwrap(), event);
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            serde_json::from_str::<TelemetryEvent>(&json).unwrap(),
            event
        );
    }
}
