//! Any bytes given to the decoders give a record or a typed error, never a panic, an abort or an
//! unbounded allocation. Run: `cd schemas/fuzz && cargo +nightly fuzz run decode`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use secpipe_schemas::{ops::DeadLetter, scan::ScanReport, telemetry::TelemetryCodec, Codec};

struct Codecs {
    scan: Codec<ScanReport>,
    dead: Codec<DeadLetter>,
    telemetry: TelemetryCodec,
}

fn codecs() -> &'static Codecs {
    static C: OnceLock<Codecs> = OnceLock::new();
    C.get_or_init(|| Codecs {
        scan: Codec::new().unwrap(),
        dead: Codec::new().unwrap(),
        telemetry: TelemetryCodec::new().unwrap(),
    })
}

fuzz_target!(|data: &[u8]| {
    let c = codecs();
    let _ = c.scan.decode(data);
    let _ = c.dead.decode(data);
    let _ = c.telemetry.decode(data);
});
