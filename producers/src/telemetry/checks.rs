//! The plausibility of every number of a telemetry event, checked at the edge with the field's
//! JSON path named (`open_descriptors[1].local_port`). Types are checked before this by serde
//! (an `i32` field given 2^40 never gets here); this module checks what the type allows but the
//! world does not. The ranges, and why:
//!
//! | fields | range | why |
//! | --- | --- | --- |
//! | `envelope.event_time` | 2000-01-01 ..= now + skew (1 day) | see [`plausible::event_time_within`] |
//! | `envelope.pid`, `ppid` | [`PID`] | `pid_t` is 32 bits everywhere |
//! | `uid`, `gid`, `from_id`, `to_id` | [`ID`] | `uid_t` / `gid_t` are `u32` |
//! | every `*_port` | [`PORT`] | TCP and UDP ports are 16 bits |
//! | `fd` | [`FD`] | descriptors are non-negative `int`s |
//! | `interval_ms` | [`INTERVAL_MS`] | time between two heartbeats |
//! | `cpu_user_ms`, `cpu_system_ms`, `agent_cpu_ms` | [`CPU_MS`] | CPU time in one interval |
//! | `rss_bytes`, `agent_rss_bytes` | [`RESIDENT_BYTES`] | resident memory |
//! | `vm_bytes`, `size`, stack `offset` | [`ADDRESS_SPACE_BYTES`] | sizes in an address space |
//! | `threads_created`, `forks` | [`PER_INTERVAL_COUNT`] | creations in one interval |
//! | `uptime_secs` | [`UPTIME_SECS`] | a century |
//! | `cpu_count` | [`CPU_COUNT`] | 0 = unknown |
//! | `signal` | [`SIGNAL`] | signal numbers |
//! | `mode` | [`MODE`] | `st_mode` bits |
//! | `flags` | [`FLAGS`] | `open(2)` flags |
//! | `memory_maps[i].offset` | [`FILE_OFFSET`] | offsets into a file |
//! | `memory_maps[i]` | `end` not below `start` | a mapping ends after it starts |
//!
//! Addresses (`stack[i].address`, `address`, `memory_maps[i].start`) take any value: they are
//! 64-bit addresses stored as their two's complement, so every `i64` is one. `exit_code` takes
//! any `i32`: Windows exit codes (NTSTATUS) are negative as `i32`.
use std::ops::RangeInclusive;

use secpipe_schemas::telemetry::{StackFrame, TelemetryEvent};

use crate::{
    plausible::{self, in_range, opt_in_range},
    scan_report::InvalidMessage,
};

/// Process ids: `pid_t` is a 32-bit integer on every OS an agent runs on (signed on POSIX, a
/// `DWORD` on Windows). 0 is the kernel's own (host-level events).
pub const PID: RangeInclusive<i64> = 0..=u32::MAX as i64;
/// User and group ids: `uid_t` and `gid_t` are `u32`.
pub const ID: RangeInclusive<i64> = 0..=u32::MAX as i64;
/// TCP and UDP port numbers (0: none or any).
pub const PORT: RangeInclusive<i64> = 0..=65_535;
/// File descriptors: non-negative C `int`s.
pub const FD: RangeInclusive<i64> = 0..=i32::MAX as i64;
/// Milliseconds between two heartbeats: up to a week, for a host that slept in between.
pub const INTERVAL_MS: RangeInclusive<i64> = 0..=7 * 86_400_000;
/// CPU milliseconds in one heartbeat interval: at most a week on 65,536 CPUs.
pub const CPU_MS: RangeInclusive<i64> = 0..=7 * 86_400_000 * 65_536;
/// Resident memory in bytes: up to 1 PiB, more than any single machine has.
pub const RESIDENT_BYTES: RangeInclusive<i64> = 0..=1 << 50;
/// Sizes and offsets within an address space, in bytes: up to 2^57, the user address space of
/// 5-level paging, the largest any CPU maps.
pub const ADDRESS_SPACE_BYTES: RangeInclusive<i64> = 0..=1 << 57;
/// Threads or processes created in one heartbeat interval: a 32-bit count.
pub const PER_INTERVAL_COUNT: RangeInclusive<i64> = 0..=u32::MAX as i64;
/// Seconds a host has been up: up to a century.
pub const UPTIME_SECS: RangeInclusive<i64> = 0..=100 * 365 * 86_400;
/// CPUs of a host: 0 when the agent cannot tell, at most 65,536 (above Linux's `NR_CPUS`).
pub const CPU_COUNT: RangeInclusive<i64> = 0..=65_536;
/// The signal that ended a process: 1 to 128 (Linux has 64, MIPS 128); absent when none did.
pub const SIGNAL: RangeInclusive<i64> = 1..=128;
/// File mode bits: type and permission bits of `st_mode`, 16 bits.
pub const MODE: RangeInclusive<i64> = 0..=0o177_777;
/// `open(2)` flags: a bit set that never uses the sign bit of the C `int`.
pub const FLAGS: RangeInclusive<i64> = 0..=i32::MAX as i64;
/// Offsets into a mapped file: non-negative `off_t`s.
pub const FILE_OFFSET: RangeInclusive<i64> = 0..=i64::MAX;

/// Checks the envelope and every number of `event`; `now_micros` is the receiver's clock and
/// `max_ahead_micros` how far after it an event time may be (`gateway.max_clock_skew_secs`).
pub fn check(
    event: &TelemetryEvent,
    now_micros: i64,
    max_ahead_micros: i64,
) -> Result<(), InvalidMessage> {
    let env = event.envelope();
    if env.event_id.trim().is_empty() {
        return Err(invalid("envelope.event_id", "must not be empty"));
    }
    if env.host.trim().is_empty() {
        return Err(invalid("envelope.host", "must not be empty"));
    }
    plausible::event_time_within(
        "envelope.event_time",
        env.event_time,
        now_micros,
        max_ahead_micros,
    )?;
    in_range("envelope.pid", env.pid, &PID, "a process id")?;
    match event {
        TelemetryEvent::ComponentStart(c) => {
            in_range(
                "uptime_secs",
                c.uptime_secs,
                &UPTIME_SECS,
                "seconds of uptime",
            )?;
            in_range("cpu_count", c.cpu_count, &CPU_COUNT, "CPUs; 0 = unknown")?;
            in_range("ppid", c.ppid, &PID, "a process id")?;
            in_range("uid", c.uid, &ID, "a user id")?;
            in_range("gid", c.gid, &ID, "a group id")?;
            for (i, m) in c.memory_maps.iter().enumerate() {
                // Addresses compare as the unsigned numbers they stand for. Either bound can
                // be the wrong one, so the error names the mapping.
                let (start, end) = (m.start as u64, m.end as u64);
                if end < start {
                    return Err(invalid(
                        format!("memory_maps[{i}]"),
                        format!("end {end:#x} is below start {start:#x}"),
                    ));
                }
                in_range(
                    format_args!("memory_maps[{i}].offset"),
                    m.offset,
                    &FILE_OFFSET,
                    "an offset into the mapped file",
                )?;
            }
        }
        TelemetryEvent::ComponentExit(c) => {
            opt_in_range("signal", c.signal, &SIGNAL, "a signal number")?;
        }
        TelemetryEvent::Heartbeat(h) => {
            in_range(
                "interval_ms",
                h.interval_ms,
                &INTERVAL_MS,
                "ms since the last heartbeat",
            )?;
            for (field, v) in [
                ("cpu_user_ms", h.cpu_user_ms),
                ("cpu_system_ms", h.cpu_system_ms),
                ("agent_cpu_ms", h.agent_cpu_ms),
            ] {
                in_range(field, v, &CPU_MS, "CPU ms in one interval")?;
            }
            for (field, v) in [
                ("rss_bytes", h.rss_bytes),
                ("agent_rss_bytes", h.agent_rss_bytes),
            ] {
                in_range(field, v, &RESIDENT_BYTES, "bytes of resident memory")?;
            }
            in_range(
                "vm_bytes",
                h.vm_bytes,
                &ADDRESS_SPACE_BYTES,
                "bytes of address space",
            )?;
            for (field, v) in [("threads_created", h.threads_created), ("forks", h.forks)] {
                in_range(field, v, &PER_INTERVAL_COUNT, "a count in one interval")?;
            }
            for (i, d) in h.open_descriptors.iter().enumerate() {
                let fd = i64::from(d.fd);
                in_range(
                    format_args!("open_descriptors[{i}].fd"),
                    fd,
                    &FD,
                    "a file descriptor",
                )?;
                ports(Some(i), d.local_port, d.remote_port)?;
            }
        }
        TelemetryEvent::Network(n) => {
            ports(None, n.local_port, n.remote_port)?;
            stack(&n.stack)?;
        }
        TelemetryEvent::File(f) => {
            opt_in_range("mode", f.mode, &MODE, "st_mode bits")?;
            opt_in_range("flags", f.flags, &FLAGS, "open(2) flags")?;
            stack(&f.stack)?;
        }
        TelemetryEvent::IdentityChange(c) => {
            in_range("from_id", c.from_id, &ID, "a user or group id")?;
            in_range("to_id", c.to_id, &ID, "a user or group id")?;
            stack(&c.stack)?;
        }
        TelemetryEvent::MemoryWarning(w) => {
            opt_in_range("size", w.size, &ADDRESS_SPACE_BYTES, "bytes")?;
            stack(&w.stack)?;
        }
        TelemetryEvent::Api(a) => stack(&a.stack)?,
        TelemetryEvent::Process(p) => stack(&p.stack)?,
        TelemetryEvent::WebappRegistration(w) => {
            ports(None, Some(w.local_port), w.remote_port)?;
        }
        TelemetryEvent::WebappUriDiscovery(u) => ports(None, Some(u.local_port), None)?,
        TelemetryEvent::AuthTokenSighting(a) => ports(None, Some(a.local_port), None)?,
        TelemetryEvent::HostEnvironment(_)
        | TelemetryEvent::PackageInfo(_)
        | TelemetryEvent::DependencyInfo(_) => {}
    }
    Ok(())
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidMessage {
    InvalidMessage {
        field: field.into(),
        reason: reason.into(),
    }
}

/// `local_port` and `remote_port` of the event, or of `open_descriptors[descriptor]`.
fn ports(
    descriptor: Option<usize>,
    local: Option<i32>,
    remote: Option<i32>,
) -> Result<(), InvalidMessage> {
    for (name, port) in [("local_port", local), ("remote_port", remote)] {
        match descriptor {
            Some(i) => opt_in_range(
                format_args!("open_descriptors[{i}].{name}"),
                port,
                &PORT,
                "a port",
            )?,
            None => opt_in_range(name, port, &PORT, "a port")?,
        }
    }
    Ok(())
}

fn stack(frames: &[StackFrame]) -> Result<(), InvalidMessage> {
    for (i, f) in frames.iter().enumerate() {
        opt_in_range(
            format_args!("stack[{i}].offset"),
            f.offset,
            &ADDRESS_SPACE_BYTES,
            "bytes into the symbol or module",
        )?;
    }
    Ok(())
}
