//! One builder per telemetry type: what a Java or native service's events of that type carry.
use super::{
    corpus::*,
    generator::{native_frame, native_pool, Generator, Workload},
};
use crate::telemetry::{
    Api, AuthTokenSighting, ComponentExit, ComponentStart, DependencyInfo, Envelope,
    EnvironmentVariable, File, Heartbeat, HostEnvironment, IdentityChange, MemoryMap,
    MemoryWarning, Network, OpenDescriptor, OsPackage, PackageInfo, Process, TelemetryEvent,
    TelemetryKind, TelemetryKind as K, WebappRegistration, WebappUriDiscovery,
};

impl Generator {
    pub(super) fn event(&mut self, kind: TelemetryKind) -> TelemetryEvent {
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
                let depth = self.rng.range(18, 26) as usize;
                TelemetryEvent::Network(self.network(envelope, &w, depth))
            }
            K::DependencyInfo => TelemetryEvent::DependencyInfo(self.dependency(envelope, &w)),
            K::MemoryWarning => {
                let (warning, function) = *self.rng.pick(MEMORY_WARNINGS);
                let frame = *self.rng.pick(&native_pool(&w));
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
                let depth = self.rng.range(12, 17) as usize;
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
        let count = self.rng.range(300, 410) as usize;
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
