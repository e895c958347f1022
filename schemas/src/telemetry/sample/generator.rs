//! The machinery behind the samples: a seeded PRNG, the workloads (hosts and processes) events
//! come from, envelopes with a steadily advancing clock, and call stacks.
use super::corpus::*;
use crate::telemetry::{Envelope, StackFrame};

/// SplitMix64: tiny, fast, and good enough for sample data.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed)
    }
}

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub(super) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo).max(1) as u64) as i64
    }
    pub(super) fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    pub(super) fn hex(&mut self, digits: usize) -> String {
        (0..digits)
            .map(|_| char::from_digit((self.next() % 16) as u32, 16).unwrap())
            .collect()
    }
    pub(super) fn uuid(&mut self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
    pub(super) fn address(&mut self) -> i64 {
        0x7f00_0000_0000 + self.range(0, 0xff_ffff_ffff)
    }
}

pub(super) fn java_frame(rng: &mut Rng, symbol: &str) -> StackFrame {
    StackFrame {
        address: rng.address(),
        module: None,
        symbol: Some(symbol.to_string()),
        offset: None,
    }
}

pub(super) fn native_frame(rng: &mut Rng, (module, symbol): (&str, &str)) -> StackFrame {
    StackFrame {
        address: rng.address(),
        module: Some(module.to_string()),
        symbol: Some(symbol.to_string()),
        offset: Some(rng.range(4, 900)),
    }
}

/// The native frames a workload's stacks can show: libc, plus the JVM's libraries for a Java
/// service or the executable's own functions for a native one.
pub(super) fn native_pool(w: &Workload) -> Vec<(&'static str, &'static str)> {
    NATIVE_FRAMES
        .iter()
        .copied()
        .filter(|(module, _)| {
            module.ends_with("libc.so.6")
                || if w.java {
                    module.contains("/jvm/")
                } else {
                    *module == w.executable
                }
        })
        .collect()
}

/// One monitored process and where it runs.
#[derive(Clone)]
pub(super) struct Workload {
    pub(super) host: String,
    pub(super) container_id: Option<String>,
    pub(super) pod: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) app: &'static str,
    pub(super) executable: &'static str,
    pub(super) java: bool,
    pub(super) pid: i64,
    pub(super) ppid: i64,
    pub(super) ip: String,
    pub(super) os: (&'static str, &'static str, &'static str),
}

pub(super) struct Generator {
    pub(super) rng: Rng,
    pub(super) workloads: Vec<Workload>,
    pub(super) clock: i64,
}

impl Generator {
    pub(super) fn new(seed: u64, hosts: usize, processes_per_host: usize) -> Self {
        let mut rng = Rng::new(seed);
        let mut workloads = Vec::new();
        for h in 0..hosts.max(1) {
            let ip = format!("10.0.{}.{}", rng.range(1, 64), rng.range(2, 250));
            let host = format!("ip-{}", ip.replace('.', "-"));
            let kubernetes = h % 5 != 4;
            let os = *rng.pick(OS_RELEASES);
            for j in 0..processes_per_host.max(1) {
                let (app, namespace, executable, java) = *rng.pick(APPS);
                let pod = format!("{app}-{}-{}", rng.hex(10), rng.hex(5));
                // Unique per host, so every workload is a process of its own (its process key).
                let pid = if kubernetes {
                    rng.range(1, 40) + 40 * j as i64
                } else {
                    rng.range(900, 1_900) + 1_000 * j as i64
                };
                workloads.push(Workload {
                    host: host.clone(),
                    container_id: kubernetes.then(|| rng.hex(12)),
                    pod: kubernetes.then_some(pod),
                    namespace: kubernetes.then(|| namespace.to_string()),
                    app,
                    executable,
                    java,
                    pid,
                    // A container's first process has no parent inside its pid namespace.
                    ppid: if pid == 1 { 0 } else { 1 },
                    ip: ip.clone(),
                    os,
                });
            }
        }
        Self {
            rng,
            workloads,
            clock: 1_732_431_600_000_000,
        }
    }

    /// The envelope of the next event of workload `w`; events are ~2.4 s apart on average.
    pub(super) fn envelope(&mut self, w: usize) -> Envelope {
        self.clock += self.rng.range(1, 4_800_000);
        let w = &self.workloads[w];
        Envelope {
            event_id: self.rng.uuid(),
            event_time: self.clock,
            host: w.host.clone(),
            container_id: w.container_id.clone(),
            pod: w.pod.clone(),
            namespace: w.namespace.clone(),
            pid: w.pid,
            app: Some(w.app.to_string()),
        }
    }

    pub(super) fn stack(&mut self, w: &Workload, top: &[&str], depth: usize) -> Vec<StackFrame> {
        let rng = &mut self.rng;
        if !w.java {
            let pool = native_pool(w);
            let mut frames: Vec<StackFrame> = (1..depth.min(14))
                .map(|_| {
                    let frame = *rng.pick(&pool);
                    native_frame(rng, frame)
                })
                .collect();
            frames.push(native_frame(rng, NATIVE_FRAMES[0]));
            return frames;
        }
        let mut frames: Vec<StackFrame> = top.iter().map(|s| java_frame(rng, s)).collect();
        while frames.len() < depth {
            let symbol = *rng.pick(JAVA_FRAMES);
            frames.push(java_frame(rng, symbol));
        }
        frames
    }
}
