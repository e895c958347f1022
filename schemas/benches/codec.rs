//! Codec throughput: encode and decode of a realistic ~650-byte network telemetry record (the
//! issue's yardstick), and of the reference telemetry mix through the type-dispatching codec.
//! Run: `cargo bench -p secpipe-schemas --bench codec`.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use secpipe_schemas::{
    telemetry::{sample, Network, TelemetryCodec},
    Codec,
};

fn network(c: &mut Criterion) {
    let codec = Codec::<Network>::new().unwrap();
    let event = sample::network_event(42);
    let bytes = codec.encode(&event).unwrap();
    let mut g = c.benchmark_group(format!("network_event_{}B", bytes.len()));
    g.throughput(Throughput::Elements(1));
    let mut buf = Vec::with_capacity(1024);
    g.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            codec.encode_into(black_box(&event), &mut buf).unwrap();
            black_box(buf.len())
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| codec.decode(black_box(&bytes)).unwrap())
    });
    g.finish();
}

fn reference_mix(c: &mut Criterion) {
    let codec = TelemetryCodec::new().unwrap();
    let events: Vec<_> = sample::reference_mix(1, 4, 8).take(743).collect();
    let encoded: Vec<Vec<u8>> = events.iter().map(|e| codec.encode(e).unwrap()).collect();
    let mut g = c.benchmark_group("reference_mix_743");
    g.throughput(Throughput::Elements(events.len() as u64));
    let mut buf = Vec::with_capacity(64 * 1024);
    g.bench_function("encode", |b| {
        b.iter(|| {
            for e in &events {
                buf.clear();
                codec.encode_into(e, &mut buf).unwrap();
            }
            black_box(buf.len())
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            for bytes in &encoded {
                black_box(codec.decode(bytes).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, network, reference_mix);
criterion_main!(benches);
