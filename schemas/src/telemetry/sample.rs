//! Deterministic sample telemetry for tests, load generation and sizing: realistic events of a
//! few Java and native services on Kubernetes nodes, in the proportions of the reference sample
//! (743 events of a Spring Boot service started, sent 5 requests, then left idle ~30 minutes).
//! The same seed always gives the same events; no randomness crate is involved.
use super::{
    Api, AuthTokenSighting, ComponentExit, ComponentStart, DependencyInfo, Envelope,
    EnvironmentVariable, File, Heartbeat, HostEnvironment, IdentityChange, MemoryMap,
    MemoryWarning, Network, OpenDescriptor, OsPackage, PackageInfo, Process, StackFrame,
    TelemetryEvent, TelemetryKind, WebappRegistration, WebappUriDiscovery,
};

mod corpus;
use corpus::*;

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

/// An endless stream in the reference proportions: every 743 consecutive events starting at the
/// first hold exactly [`REFERENCE_COUNTS`], interleaved evenly. Events come from `hosts` hosts
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
        native_frame(&mut g.rng, NATIVE_FRAMES[7]),
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

/// SplitMix64: tiny, fast, and good enough for sample data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo).max(1) as u64) as i64
    }
    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn hex(&mut self, digits: usize) -> String {
        (0..digits)
            .map(|_| char::from_digit((self.next() % 16) as u32, 16).unwrap())
            .collect()
    }
    fn uuid(&mut self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
    fn address(&mut self) -> i64 {
        0x7f00_0000_0000 + self.range(0, 0xff_ffff_ffff)
    }
}

fn java_frame(rng: &mut Rng, symbol: &str) -> StackFrame {
    StackFrame {
        address: rng.address(),
        module: None,
        symbol: Some(symbol.to_string()),
        offset: None,
    }
}

fn native_frame(rng: &mut Rng, (module, symbol): (&str, &str)) -> StackFrame {
    StackFrame {
        address: rng.address(),
        module: Some(module.to_string()),
        symbol: Some(symbol.to_string()),
        offset: Some(rng.range(4, 900)),
    }
}

/// One monitored process and where it runs.
#[derive(Clone)]
struct Workload {
    host: String,
    container_id: Option<String>,
    pod: Option<String>,
    namespace: Option<String>,
    app: &'static str,
    executable: &'static str,
    java: bool,
    pid: i64,
    ppid: i64,
    ip: String,
    os: (&'static str, &'static str, &'static str),
}

struct Generator {
    rng: Rng,
    workloads: Vec<Workload>,
    clock: i64,
}

impl Generator {
    fn new(seed: u64, hosts: usize, processes_per_host: usize) -> Self {
        let mut rng = Rng(seed);
        let mut workloads = Vec::new();
        for h in 0..hosts.max(1) {
            let ip = format!("10.0.{}.{}", rng.range(1, 64), rng.range(2, 250));
            let host = format!("ip-{}", ip.replace('.', "-"));
            let kubernetes = h % 5 != 4;
            let os = *rng.pick(OS_RELEASES);
            for j in 0..processes_per_host.max(1) {
                let (app, namespace, executable, java) = *rng.pick(APPS);
                let pod = format!("{app}-{}-{}", rng.hex(10), rng.hex(5));
                workloads.push(Workload {
                    host: host.clone(),
                    container_id: kubernetes.then(|| rng.hex(12)),
                    pod: kubernetes.then_some(pod),
                    namespace: kubernetes.then(|| namespace.to_string()),
                    app,
                    executable,
                    java,
                    // Unique per host, so every workload has its own partition key.
                    pid: if kubernetes {
                        rng.range(1, 40) + 40 * j as i64
                    } else {
                        rng.range(900, 1_900) + 1_000 * j as i64
                    },
                    ppid: if kubernetes { 0 } else { 1 },
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
    fn envelope(&mut self, w: usize) -> Envelope {
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

    fn stack(&mut self, w: &Workload, top: &[&str], depth: usize) -> Vec<StackFrame> {
        let rng = &mut self.rng;
        if !w.java {
            let mut frames: Vec<StackFrame> = (0..depth.min(6))
                .map(|_| {
                    let frame = *rng.pick(&NATIVE_FRAMES[..8]);
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

    fn event(&mut self, kind: TelemetryKind) -> TelemetryEvent {
        let i = self.rng.below(self.workloads.len());
        let envelope = self.envelope(i);
        let w = self.workloads[i].clone();
        match kind {
            K::ComponentStart => TelemetryEvent::ComponentStart(self.component_start(envelope, &w)),
            K::ComponentExit => TelemetryEvent::ComponentExit(ComponentExit {
                envelope,
                exit_code: if self.rng.percent(50) { 143 } else { 0 },
                signal: self.rng.percent(30).then_some(15),
            }),
            K::HostEnvironment => TelemetryEvent::HostEnvironment(HostEnvironment {
                envelope,
                packages: self.packages(w.os.2),
            }),
            K::PackageInfo => {
                let (path, name, version) = *self.rng.pick(LIBRARIES);
                TelemetryEvent::PackageInfo(PackageInfo {
                    envelope,
                    path: path.into(),
                    name: name.into(),
                    version: self.rng.percent(60).then(|| version.into()),
                    sha256: self.rng.percent(80).then(|| self.rng.hex(64)),
                })
            }
            K::Api => {
                let (class, method, args) = *self.rng.pick(JAVA_APIS);
                let depth = self.rng.below(2) + 3;
                TelemetryEvent::Api(Api {
                    envelope,
                    api_name: method.into(),
                    arguments: args.iter().map(|a| a.to_string()).collect(),
                    class_name: Some(class.into()),
                    stack: self.stack(&w, &[], depth),
                })
            }
            K::Heartbeat => TelemetryEvent::Heartbeat(self.heartbeat(envelope, &w)),
            K::Network => {
                let depth = self.rng.range(13, 20) as usize;
                TelemetryEvent::Network(self.network(envelope, &w, depth))
            }
            K::DependencyInfo => TelemetryEvent::DependencyInfo(self.dependency(envelope, &w)),
            K::MemoryWarning => {
                let (warning, function) = *self.rng.pick(MEMORY_WARNINGS);
                let frame = *self.rng.pick(&NATIVE_FRAMES[2..7]);
                let frame = native_frame(&mut self.rng, frame);
                TelemetryEvent::MemoryWarning(MemoryWarning {
                    envelope,
                    warning_type: warning.into(),
                    function: Some(function.into()),
                    address: Some(self.rng.address()),
                    size: Some(self.rng.range(16, 65_536)),
                    stack: vec![frame],
                })
            }
            K::File => {
                let operation = *self.rng.pick(FILE_OPERATIONS);
                let mut paths = vec![self.rng.pick(FILE_PATHS).to_string()];
                if operation == "rename" {
                    paths.push(format!("{}.1", paths[0]));
                }
                let open = operation == "open";
                let depth = self.rng.range(9, 13) as usize;
                let top = &JAVA_FILE_FRAMES[..self.rng.range(2, 6) as usize];
                TelemetryEvent::File(File {
                    envelope,
                    operation: operation.into(),
                    paths,
                    mode: open.then_some(0o644),
                    flags: open.then_some(0o2_000_101),
                    stack: self.stack(&w, top, depth),
                })
            }
            K::IdentityChange => TelemetryEvent::IdentityChange(IdentityChange {
                envelope,
                change_type: self.rng.pick(IDENTITY_CHANGES).to_string(),
                from_id: 0,
                to_id: *self.rng.pick(&[101, 1000, 65_534]),
                stack: self.stack(&w, &[], 3),
            }),
            K::Process => TelemetryEvent::Process(Process {
                envelope,
                operation: if w.java { "spawn" } else { "exec" }.into(),
                path: "/bin/sh".into(),
                arguments: vec!["sh".into(), "-c".into(), "ulimit -n".into()],
                stack: self.stack(&w, &[], 2),
            }),
            K::WebappRegistration => TelemetryEvent::WebappRegistration(WebappRegistration {
                envelope,
                protocol: "HTTP/1.1".into(),
                address_family: "AF_INET".into(),
                local_addr: "0.0.0.0".into(),
                local_port: 8080,
                remote_addr: Some(format!(
                    "10.0.{}.{}",
                    self.rng.range(1, 64),
                    self.rng.range(2, 250)
                )),
                remote_port: Some(self.rng.range(32_768, 61_000) as i32),
            }),
            K::WebappUriDiscovery => {
                let (method, uri) = *self.rng.pick(URIS);
                TelemetryEvent::WebappUriDiscovery(WebappUriDiscovery {
                    envelope,
                    method: method.into(),
                    uri: uri.into(),
                    local_port: 8080,
                })
            }
            K::AuthTokenSighting => TelemetryEvent::AuthTokenSighting(AuthTokenSighting {
                envelope,
                auth_type: "bearer".into(),
                token_fingerprint: self.rng.hex(64),
                local_port: 8080,
            }),
        }
    }

    fn component_start(&mut self, envelope: Envelope, w: &Workload) -> ComponentStart {
        let rng = &mut self.rng;
        let mut next = 0x5555_5555_4000 + rng.range(0, 0x1000) * 0x1000;
        let mut maps = Vec::with_capacity(MAPS.len());
        for (i, (pages, perms, path)) in MAPS.iter().enumerate() {
            if i == 4 {
                next = 0x7f3a_0000_0000 + rng.range(0, 0xffff) * 0x1000;
            }
            let path = path
                .map(String::from)
                .or_else(|| (i < 2).then(|| w.executable.into()));
            let size = pages * 4096;
            maps.push(MemoryMap {
                start: next,
                end: next + size,
                perms: perms.to_string(),
                offset: if i == 1 { 4096 } else { 0 },
                path,
            });
            next += size + 4096 * rng.range(0, 4);
        }
        let mut environment: Vec<EnvironmentVariable> = JAVA_ENVIRONMENT
            .iter()
            .filter(|(name, _)| w.java || !name.contains("JAVA") && !name.starts_with("SPRING"))
            .map(|(name, value)| EnvironmentVariable {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect();
        environment.push(EnvironmentVariable {
            name: "HOSTNAME".into(),
            value: w.pod.clone().unwrap_or_else(|| w.host.clone()),
        });
        ComponentStart {
            envelope,
            uptime_secs: rng.range(3_600, 3_000_000),
            cpu_count: *rng.pick(&[2, 4, 8, 16]),
            cpu_model: rng.pick(CPU_MODELS).to_string(),
            os_name: w.os.0.into(),
            os_version: w.os.1.into(),
            cloud_provider: rng.percent(85).then(|| rng.pick(CLOUDS).to_string()),
            container_runtime: w
                .container_id
                .as_ref()
                .map(|_| rng.pick(RUNTIMES).to_string()),
            ppid: w.ppid,
            uid: if w.java { 1000 } else { 101 },
            gid: if w.java { 1000 } else { 101 },
            executable: w.executable.into(),
            memory_maps: maps,
            environment,
        }
    }

    fn packages(&mut self, version_suffix: &str) -> Vec<OsPackage> {
        let count = self.rng.range(330, 450) as usize;
        (0..count)
            .map(|i| {
                let (name, source) = PACKAGES[i % PACKAGES.len()];
                let variant = PACKAGE_VARIANTS[(i / PACKAGES.len()) % PACKAGE_VARIANTS.len()];
                let rng = &mut self.rng;
                let version = format!(
                    "{}.{}.{}-{}{version_suffix}",
                    rng.range(1, 10),
                    rng.range(0, 20),
                    rng.range(0, 12),
                    rng.range(1, 5)
                );
                let licenses = (0..rng.below(3))
                    .map(|_| rng.pick(LICENSES).to_string())
                    .collect();
                OsPackage {
                    name: format!("{name}{variant}"),
                    version,
                    source: source.into(),
                    licenses,
                }
            })
            .collect()
    }

    fn heartbeat(&mut self, envelope: Envelope, w: &Workload) -> Heartbeat {
        let rng = &mut self.rng;
        let descriptors = match rng.below(10) {
            0..=6 => 0,
            7 | 8 => 1,
            _ => 2,
        };
        let open_descriptors = (0..descriptors)
            .map(|_| {
                let socket = rng.percent(60);
                OpenDescriptor {
                    fd: rng.range(3, 300) as i32,
                    kind: if socket { "socket" } else { "file" }.into(),
                    path: (!socket).then(|| rng.pick(FILE_PATHS).to_string()),
                    local_addr: socket.then(|| w.ip.clone()),
                    local_port: socket.then(|| rng.range(32_768, 61_000) as i32),
                    remote_addr: socket.then(|| "10.96.0.10".into()),
                    remote_port: socket.then_some(5432),
                    closed: rng.percent(50),
                }
            })
            .collect();
        Heartbeat {
            envelope,
            interval_ms: 10_000 + rng.range(-40, 40),
            cpu_user_ms: rng.range(0, 250),
            cpu_system_ms: rng.range(0, 60),
            rss_bytes: rng.range(300, 900) << 20,
            vm_bytes: rng.range(3_000, 6_000) << 20,
            agent_cpu_ms: rng.range(0, 12),
            agent_rss_bytes: rng.range(18, 40) << 20,
            threads_created: rng.range(0, 3),
            forks: 0,
            open_descriptors,
        }
    }

    fn network(&mut self, envelope: Envelope, w: &Workload, depth: usize) -> Network {
        let op = *self
            .rng
            .pick(&["dns", "dns", "connect", "connect", "accept", "bind"]);
        let dns = op == "dns";
        let top = if dns {
            JAVA_NET_FRAMES
        } else {
            &JAVA_NET_FRAMES[5..]
        };
        let rng = &mut self.rng;
        let (local_port, remote) = match op {
            "dns" => (None, Some(("10.96.0.10".to_string(), 53))),
            "connect" => (
                Some(rng.range(32_768, 61_000) as i32),
                Some((
                    format!("10.0.{}.{}", rng.range(1, 64), rng.range(2, 250)),
                    5432,
                )),
            ),
            "accept" => (
                Some(8080),
                Some((
                    format!("10.0.{}.{}", rng.range(1, 64), rng.range(2, 250)),
                    rng.range(32_768, 61_000) as i32,
                )),
            ),
            _ => (Some(8080), None),
        };
        let first = rng.below(FQDNS.len());
        Network {
            envelope,
            operation: op.into(),
            address_family: "AF_INET".into(),
            local_addr: (!dns).then(|| {
                if op == "bind" {
                    "0.0.0.0".into()
                } else {
                    w.ip.clone()
                }
            }),
            local_port,
            remote_addr: remote.as_ref().map(|r| r.0.clone()),
            remote_port: remote.map(|r| r.1),
            fqdns: if dns {
                vec![FQDNS[first].into(), FQDNS[(first + 2) % FQDNS.len()].into()]
            } else {
                vec![]
            },
            stack: self.stack(w, top, depth),
        }
    }

    fn dependency(&mut self, envelope: Envelope, w: &Workload) -> DependencyInfo {
        let rng = &mut self.rng;
        if !w.java {
            let (path, _, version) = *rng.pick(&LIBRARIES[..8]);
            return DependencyInfo {
                envelope,
                path: path.into(),
                sha256: rng.hex(64),
                parent_path: None,
                language: Some("c".into()),
                version: Some(version.into()),
            };
        }
        let (artifact, version) = *rng.pick(JARS);
        DependencyInfo {
            envelope,
            path: format!("/app/app.jar!/BOOT-INF/lib/{artifact}-{version}.jar"),
            sha256: rng.hex(64),
            parent_path: Some("/app/app.jar".into()),
            language: Some("java".into()),
            version: Some(version.into()),
        }
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
