//! Resource usage of containers and pod sandboxes, for the stats RPCs: each container's cgroup
//! counters, its CPU rate since the previous call and its writable layer; each pod's cgroup,
//! process count and network interfaces, and its containers.
//!
//! Nothing here fails because something went away: a container that exits during a call (its
//! cgroup removed by the runtime) or a pod whose pause died is reported with what could still
//! be read, as containerd does. Only an unknown ID is an error. Everything is read from files
//! (blocking): callers on an async runtime run these on a blocking thread.
//!
//! CPU rate (`usage_nano_cores`), as containerd computes it without a background collector:
//! the engine keeps the previous sample (cumulative CPU time, timestamp) per container and per
//! sandbox; a call reports the CPU time used between the two divided by the time between them,
//! and none on the first call for an ID. kubelet computes the rate itself when it is absent, and
//! crictl computes its own from two calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::debug;

use super::proc::{self, now_ns};
use super::record::ContainerState;
use super::{
    Container, ContainerRecord, Engine, EngineError, Result, Sandbox, SandboxRecord, SandboxState,
};
use crate::cgroups::{CgroupStats, CpuStat, MemoryStat, PidsStat};
use crate::fsutil::{disk_usage, DiskUsage};

/// The most entries one writable layer walk visits (about 0.1 s of stat calls): a container
/// that made more files is reported with the usage of these, a lower bound, instead of making
/// every stats call walk them all.
const MAX_LAYER_ENTRIES: u64 = 100_000;

/// The interface a pod's network figures are reported under when it has one.
pub const DEFAULT_INTERFACE: &str = "eth0";

/// CPU counters and the rate since the previous sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuUsage {
    pub stat: CpuStat,
    /// Nanoseconds of CPU per second since the previous sample of the same ID (1e9 = one core
    /// busy); None on the first sample, or when the caller did not ask for rates.
    pub nano_cores: Option<u64>,
}

/// One container's usage at `timestamp` (ns since the epoch).
pub struct ContainerStats {
    pub container: Arc<Container>,
    /// The record as it was when the counters were read.
    pub record: ContainerRecord,
    pub timestamp: i64,
    /// The cgroup's counters: only while the container is created or running (an exited one's
    /// cgroup is gone or being removed).
    pub cpu: Option<CpuUsage>,
    pub memory: Option<MemoryStat>,
    pub pids: Option<PidsStat>,
    pub processes: Option<u64>,
    /// The overlay upper directory: what the container wrote to its rootfs.
    pub writable_layer: Option<DiskUsage>,
}

/// One pod's usage at `timestamp`: its cgroup (every container and the pause), its network
/// and its containers'.
pub struct SandboxStats {
    pub sandbox: Arc<Sandbox>,
    pub record: SandboxRecord,
    pub timestamp: i64,
    pub cpu: Option<CpuUsage>,
    pub memory: Option<MemoryStat>,
    pub processes: Option<u64>,
    /// The interfaces of the pod's network namespace; None with the host's network (its
    /// figures are the node's) or when the pause is gone.
    pub network: Option<Vec<NetInterface>>,
    /// Every container of the pod, oldest first.
    pub containers: Vec<ContainerStats>,
}

/// Cumulative counters of one network interface, from /proc/PID/net/dev.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetInterface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// The interface figures are reported under: eth0 when the pod has one, else the first
/// (loopback, while pods have no other).
pub fn default_interface(ifaces: &[NetInterface]) -> Option<&NetInterface> {
    ifaces
        .iter()
        .find(|i| i.name == DEFAULT_INTERFACE)
        .or_else(|| ifaces.first())
}

/// Whether a stats call computes CPU rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuRate {
    /// Report the rate since the previous sample and keep this one (the Stats RPCs).
    Compute,
    /// Leave the samples alone (metrics scrapes, which would otherwise shorten the Stats RPCs'
    /// sampling interval to the time between a scrape and the next stats call).
    Skip,
}

/// The previous CPU sample of each container and sandbox, for [`CpuUsage::nano_cores`].
#[derive(Debug, Default)]
pub struct CpuRates(Mutex<HashMap<String, Sample>>);

#[derive(Debug, Clone, Copy)]
struct Sample {
    usage_ns: u64,
    at_ns: i64,
}

impl CpuRates {
    /// Records `usage_ns` (cumulative CPU time) read at `at_ns` for `id` and returns the rate
    /// since the previous sample, in CPU nanoseconds per second. None for the first sample and
    /// when no time passed (the sample is then not kept); a counter that went backwards (a
    /// cgroup made anew) starts over from this sample.
    pub fn update(&self, id: &str, usage_ns: u64, at_ns: i64) -> Option<u64> {
        let mut samples = self.0.lock().unwrap();
        let cur = Sample { usage_ns, at_ns };
        let Some(prev) = samples.get(id).copied() else {
            samples.insert(id.to_string(), cur);
            return None;
        };
        let elapsed = at_ns.saturating_sub(prev.at_ns);
        if elapsed <= 0 {
            return None;
        }
        samples.insert(id.to_string(), cur);
        let used = usage_ns.checked_sub(prev.usage_ns)?;
        Some((used as f64 / elapsed as f64 * 1e9) as u64)
    }

    /// Forgets the samples of IDs for which `keep` is false (removed containers and pods).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0.lock().unwrap().retain(|id, _| keep(id));
    }
}

impl Engine {
    /// The usage of one container (by ID or unique prefix); NotFound for an unknown one.
    pub fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let c = self.container(id)?;
        Ok(self.stats_of_container(&c, CpuRate::Compute))
    }

    /// The usage of each of `containers` (the caller has filtered them).
    pub fn containers_stats(&self, containers: &[Arc<Container>]) -> Vec<ContainerStats> {
        let out = containers
            .iter()
            .map(|c| self.stats_of_container(c, CpuRate::Compute))
            .collect();
        self.forget_removed();
        out
    }

    /// The usage of one ready pod; NotFound for an unknown ID, FailedPrecondition for a pod
    /// that is not ready (its pause and network are gone), as containerd refuses it.
    pub fn sandbox_stats(&self, id: &str) -> Result<SandboxStats> {
        let sb = self.sandbox(id)?;
        if sb.record().state != SandboxState::Ready {
            return Err(EngineError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sb.id()
            )));
        }
        Ok(self.stats_of_sandbox(&sb, CpuRate::Compute))
    }

    /// The usage of each ready pod among `sandboxes` (the caller has filtered them); pods that
    /// are not ready are left out, as containerd does.
    pub fn sandboxes_stats(&self, sandboxes: &[Arc<Sandbox>], rate: CpuRate) -> Vec<SandboxStats> {
        let out = sandboxes
            .iter()
            .filter(|sb| sb.record().state == SandboxState::Ready)
            .map(|sb| self.stats_of_sandbox(sb, rate))
            .collect();
        self.forget_removed();
        out
    }

    fn stats_of_container(&self, c: &Arc<Container>, rate: CpuRate) -> ContainerStats {
        let record = c.record();
        let timestamp = now_ns();
        let cg = match record.state() {
            ContainerState::Created | ContainerState::Running => {
                self.cgroups.stats(&record.cgroup_path)
            }
            ContainerState::Exited | ContainerState::Unknown => CgroupStats::default(),
        };
        let upper = self.paths.container_dir(&record.id).join("upper");
        let writable_layer = match disk_usage(&upper, Some(MAX_LAYER_ENTRIES)) {
            Ok(u) => {
                if u.truncated {
                    debug!(container_id = %record.id, entries = u.inodes, "writable layer walk stopped at its bound");
                }
                Some(u)
            }
            Err(e) => {
                debug!(container_id = %record.id, error = %e, "writable layer usage");
                None
            }
        };
        ContainerStats {
            container: c.clone(),
            cpu: self.cpu_usage(&record.id, cg.cpu, timestamp, rate),
            memory: cg.memory,
            pids: cg.pids,
            processes: cg.processes,
            writable_layer,
            timestamp,
            record,
        }
    }

    fn stats_of_sandbox(&self, sb: &Arc<Sandbox>, rate: CpuRate) -> SandboxStats {
        let record = sb.record();
        let timestamp = now_ns();
        let cg = self.cgroups.stats(&record.cgroup.path);
        let network = if record.namespaces.host_network {
            None
        } else {
            pod_interfaces(record.pause_pid, record.pause_start)
        };
        let mut containers = self.sandbox_containers(&record.id);
        containers.sort_by_key(|c| c.record().created_at);
        SandboxStats {
            sandbox: sb.clone(),
            cpu: self.cpu_usage(&record.id, cg.cpu, timestamp, rate),
            memory: cg.memory,
            processes: cg.processes,
            network,
            containers: containers
                .iter()
                .map(|c| self.stats_of_container(c, rate))
                .collect(),
            timestamp,
            record,
        }
    }

    fn cpu_usage(
        &self,
        id: &str,
        stat: Option<CpuStat>,
        at_ns: i64,
        rate: CpuRate,
    ) -> Option<CpuUsage> {
        let stat = stat?;
        let nano_cores = match rate {
            CpuRate::Compute => self.cpu_rates.update(id, stat.usage_ns, at_ns),
            CpuRate::Skip => None,
        };
        Some(CpuUsage { stat, nano_cores })
    }

    /// Drops the CPU samples of containers and pods that no longer exist.
    fn forget_removed(&self) {
        let containers = self.containers.read();
        let sandboxes = self.sandboxes.read();
        self.cpu_rates
            .retain(|id| containers.contains_key(id) || sandboxes.contains_key(id));
    }
}

/// The interfaces of the network namespace the pause (PID `pid`, started at `start`) is in,
/// from /proc/PID/net/dev. None when the pause is gone, or was gone by the end of the read (the
/// PID may then be another process's, in another namespace).
fn pod_interfaces(pid: i32, start: u64) -> Option<Vec<NetInterface>> {
    if !proc::is_alive(pid, start) {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    proc::is_alive(pid, start).then(|| parse_net_dev(&text))
}

/// The interfaces of a /proc/net/dev table: two header lines, then per interface
/// `name: rx bytes packets errs drop fifo frame compressed multicast tx bytes packets errs drop
/// fifo colls carrier compressed`.
pub fn parse_net_dev(text: &str) -> Vec<NetInterface> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            (v.len() >= 16).then(|| NetInterface {
                name: name.trim().to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    #[test]
    fn nano_cores_between_two_samples() {
        let rates = CpuRates::default();
        // A fake clock: samples at t = 100 s, 101 s, ... with the CPU time the cgroup reported.
        let t0 = 100 * SECOND;
        assert_eq!(rates.update("c1", 5_000_000_000, t0), None, "first sample");
        // One core busy for a second.
        assert_eq!(
            rates.update("c1", 6_000_000_000, t0 + SECOND),
            Some(1_000_000_000)
        );
        // Half a core over two seconds.
        assert_eq!(
            rates.update("c1", 7_000_000_000, t0 + 3 * SECOND),
            Some(500_000_000)
        );
        // No time passed: no rate, and the sample is not kept.
        assert_eq!(rates.update("c1", 9_000_000_000, t0 + 3 * SECOND), None);
        // Two cores over 250 ms, against the sample kept at 3 s.
        assert_eq!(
            rates.update("c1", 7_500_000_000, t0 + 3 * SECOND + SECOND / 4),
            Some(2_000_000_000)
        );
        // Other IDs have their own samples.
        assert_eq!(rates.update("c2", 1, t0 + 4 * SECOND), None);
    }

    #[test]
    fn a_counter_that_went_backwards_starts_over() {
        let rates = CpuRates::default();
        rates.update("c", 9_000, 10 * SECOND);
        assert_eq!(rates.update("c", 1_000, 11 * SECOND), None);
        assert_eq!(
            rates.update("c", 1_000 + SECOND as u64 / 10, 12 * SECOND),
            Some(100_000_000)
        );
        rates.retain(|id| id != "c");
        assert_eq!(rates.update("c", 0, 13 * SECOND), None, "forgotten");
    }

    // /proc/PID/net/dev of a pause: loopback only, after a few pings.
    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     504       6    0    0    0     0          0         0      504       6    0    0    0     0       0          0
  eth0: 1234567   890    1    2    0     0          0         3   765432     456    4    5    0     0       0          0
";

    #[test]
    fn net_dev_and_the_default_interface() {
        let ifaces = parse_net_dev(NET_DEV);
        assert_eq!(ifaces.len(), 2);
        assert_eq!(
            ifaces[1],
            NetInterface {
                name: "eth0".into(),
                rx_bytes: 1_234_567,
                rx_packets: 890,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 765_432,
                tx_packets: 456,
                tx_errors: 4,
                tx_dropped: 5,
            }
        );
        assert_eq!(default_interface(&ifaces).unwrap().name, "eth0");
        assert_eq!(default_interface(&ifaces[..1]).unwrap().name, "lo");
        assert_eq!(default_interface(&[]), None);
        assert!(parse_net_dev("garbage\n\nlo: 1 2 3\n").is_empty());
    }

    #[test]
    fn own_network_namespace_is_readable() {
        let me = std::process::id() as i32;
        let start = proc::start_time(me).unwrap();
        let ifaces = pod_interfaces(me, start).expect("own /proc/PID/net/dev");
        assert!(ifaces.iter().any(|i| i.name == "lo"), "{ifaces:?}");
        assert_eq!(
            pod_interfaces(me, start + 1),
            None,
            "another process's start time"
        );
    }
}
