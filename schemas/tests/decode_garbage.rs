//! The decoders never panic: valid encodings of every record type, mutated (bit flips, cuts,
//! inserted bytes, forged lengths), decode to a record or a typed error. The same property is
//! explored without bounds by the fuzz target in `schemas/fuzz`.
use std::panic::{catch_unwind, AssertUnwindSafe};

use secpipe_schemas::{
    ops::DeadLetter,
    scan::ScanReport,
    telemetry::{sample, TelemetryCodec},
    Codec, DecodeError,
};

/// splitmix64: deterministic, so a failure names a reproducible input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut b = original.to_vec();
    for _ in 0..=rng.below(3) {
        match rng.below(5) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => b.truncate(rng.below(b.len() + 1)),
            2 => {
                let i = rng.below(b.len() + 1);
                b.insert(i, rng.next() as u8);
            }
            // A forged varint: a huge length or count where the body starts.
            3 if b.len() > 12 => {
                let i = 10 + rng.below(b.len() - 10);
                b.splice(i..i, [0xfe, 0xff, 0xff, 0xff, 0x0f]);
            }
            _ => {
                let i = rng.below(b.len() + 1);
                b.truncate(i);
                b.extend((0..rng.below(16)).map(|_| rng.next() as u8));
            }
        }
    }
    b
}

#[test]
fn mutated_records_decode_or_fail_with_a_typed_error() {
    let scan = Codec::<ScanReport>::new().unwrap();
    let dead = Codec::<DeadLetter>::new().unwrap();
    let telemetry = TelemetryCodec::new().unwrap();
    let mut originals: Vec<Vec<u8>> = sample::full_mix(7, 2, 2)
        .take(400)
        .map(|ev| telemetry.encode(&ev).unwrap())
        .collect();
    let letter = DeadLetter {
        stage: "s".into(),
        topic: "t".into(),
        partition: 0,
        offset: 1,
        key: None,
        payload: vec![1, 2, 3],
        error: "e".into(),
        failed_at: 2,
    };
    originals.push(dead.encode(&letter).unwrap());

    let mut rng = Rng(0x5ec_91be);
    let mut errors = 0usize;
    for round in 0..40_000 {
        let original = &originals[round % originals.len()];
        let input = mutate(&mut rng, original);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let a = scan.decode(&input).is_err();
            let b = dead.decode(&input).is_err();
            let c = telemetry.decode(&input).is_err();
            a as usize + b as usize + c as usize
        }));
        match outcome {
            Ok(n) => errors += n,
            Err(_) => panic!("decoder panicked on input {input:02x?}"),
        }
    }
    // Most mutations must be caught (a flipped bit inside a string can still decode).
    assert!(errors > 40_000, "only {errors} errors over 120000 decodes");
}

#[test]
fn a_forged_huge_length_is_an_error_not_an_allocation() {
    let scan = Codec::<ScanReport>::new().unwrap();
    let mut bytes = vec![0xC3, 0x01];
    bytes.extend_from_slice(&scan.current().fingerprint.to_le_bytes());
    // id: a string claiming 2^40 bytes.
    bytes.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
    assert!(matches!(scan.decode(&bytes), Err(DecodeError::Body { .. })));
}
