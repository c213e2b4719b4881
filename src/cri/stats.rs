//! ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats (and their
//! one-message Stream* forms), ListMetricDescriptors and ListPodSandboxMetrics: filters and
//! conversions around the engine's usage figures (`pod::stats`).
//!
//! Metrics are the cAdvisor names kubelet serves on /metrics/cadvisor when it takes pod and
//! container stats from the runtime, the subset CRI-O and containerd report that peapod can
//! fill (see [`DESCRIPTORS`]). Every metric carries the labels `id`, `name` and `image` (as
//! CRI-O: a container's ID, unique name and image; for a pod's own metrics its ID, `POD` and the
//! sandbox image), then its own; kubelet adds `namespace`, `pod` and `container` itself.
//! Metric values are integers (CRI's UInt64Value): CPU seconds are whole seconds, as in CRI-O
//! and containerd. Timestamps are 0: every figure is read live.

use tonic::{Request, Response, Status};

use super::sandbox::labels_match;
use super::status::{missing, to_status};
use super::{one, CriServer, One};
use crate::api::*;
use crate::cgroups::{CpuStat, MemoryStat, PidsStat};
use crate::fsutil::DiskUsage;
use crate::pod::stats::{
    default_interface, ContainerStats as EngineContainerStats, CpuRate, CpuUsage as EngineCpu,
    NetInterface, SandboxStats as EngineSandboxStats,
};
use crate::pod::Engine;

fn u64v(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

fn to_cpu(ts: i64, c: &EngineCpu) -> CpuUsage {
    CpuUsage {
        timestamp: ts,
        usage_core_nano_seconds: u64v(c.stat.usage_ns),
        usage_nano_cores: c.nano_cores.and_then(u64v),
        psi: None,
    }
}

fn to_memory(ts: i64, m: &MemoryStat) -> MemoryUsage {
    MemoryUsage {
        timestamp: ts,
        working_set_bytes: u64v(m.working_set),
        // Absent without a limit, as kubelet's own cAdvisor figures are.
        available_bytes: m.available().and_then(u64v),
        usage_bytes: u64v(m.usage),
        rss_bytes: u64v(m.rss),
        page_faults: u64v(m.page_faults),
        major_page_faults: u64v(m.major_page_faults),
        psi: None,
    }
}

/// The filesystem writable layers live on, named as ImageFsInfo names it (peapod's root dir
/// holds both), so kubelet finds its capacity among the image filesystems.
pub(super) fn fs_id(engine: &Engine) -> FilesystemIdentifier {
    FilesystemIdentifier {
        mountpoint: engine.images.root().to_string_lossy().into_owned(),
    }
}

fn to_container_stats(engine: &Engine, s: &EngineContainerStats) -> ContainerStats {
    let ts = s.timestamp;
    let config = &s.container.config;
    ContainerStats {
        attributes: Some(ContainerAttributes {
            id: s.record.id.clone(),
            metadata: config.metadata.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        }),
        cpu: s.cpu.as_ref().map(|c| to_cpu(ts, c)),
        memory: s.memory.as_ref().map(|m| to_memory(ts, m)),
        writable_layer: s.writable_layer.map(|u| FilesystemUsage {
            timestamp: ts,
            fs_id: Some(fs_id(engine)),
            used_bytes: u64v(u.bytes),
            inodes_used: u64v(u.inodes),
        }),
        swap: None,
        io: None,
    }
}

fn to_interface(i: &NetInterface) -> NetworkInterfaceUsage {
    NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: u64v(i.rx_bytes),
        rx_errors: u64v(i.rx_errors),
        tx_bytes: u64v(i.tx_bytes),
        tx_errors: u64v(i.tx_errors),
    }
}

/// The pod's interfaces: eth0 (else the first) as the default, the others beside it.
fn to_network(ts: i64, ifaces: &[NetInterface]) -> NetworkUsage {
    let default = default_interface(ifaces);
    NetworkUsage {
        timestamp: ts,
        default_interface: default.map(to_interface),
        interfaces: ifaces
            .iter()
            .filter(|i| Some(i.name.as_str()) != default.map(|d| d.name.as_str()))
            .map(to_interface)
            .collect(),
    }
}

fn to_sandbox_stats(engine: &Engine, s: &EngineSandboxStats) -> PodSandboxStats {
    let ts = s.timestamp;
    let config = &s.sandbox.config;
    PodSandboxStats {
        attributes: Some(PodSandboxAttributes {
            id: s.record.id.clone(),
            metadata: config.metadata.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        }),
        linux: Some(LinuxPodSandboxStats {
            cpu: s.cpu.as_ref().map(|c| to_cpu(ts, c)),
            memory: s.memory.as_ref().map(|m| to_memory(ts, m)),
            network: s.network.as_deref().map(|n| to_network(ts, n)),
            process: s.processes.map(|n| ProcessUsage {
                timestamp: ts,
                process_count: u64v(n),
            }),
            containers: s
                .containers
                .iter()
                .map(|c| to_container_stats(engine, c))
                .collect(),
            io: None,
        }),
        windows: None,
    }
}

/// Runs blocking engine work (cgroup files, layer walks) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(e.to_string()))
}

impl CriServer {
    pub(super) async fn container_stats_impl(
        &self,
        r: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        let id = r.into_inner().container_id;
        if id.is_empty() {
            return Err(missing("container_id"));
        }
        let engine = self.engine.clone();
        let stats = blocking(move || {
            engine
                .container_stats(&id)
                .map(|s| to_container_stats(&engine, &s))
        })
        .await?
        .map_err(to_status)?;
        Ok(Response::new(ContainerStatsResponse { stats: Some(stats) }))
    }

    /// The stats of every container the filter selects (IDs by prefix, as ListContainers),
    /// exited ones included with what they still have (their writable layer).
    pub(super) async fn list_container_stats_inner(
        &self,
        filter: Option<ContainerStatsFilter>,
    ) -> Result<Vec<ContainerStats>, Status> {
        let engine = self.engine.clone();
        blocking(move || {
            let mut selected: Vec<_> = engine
                .containers()
                .into_iter()
                .filter(|c| match &filter {
                    None => true,
                    Some(f) => {
                        let r = c.record();
                        r.id.starts_with(&f.id)
                            && r.sandbox_id.starts_with(&f.pod_sandbox_id)
                            && labels_match(&f.label_selector, &c.config.labels)
                    }
                })
                .collect();
            selected.sort_by_key(|c| std::cmp::Reverse(c.record().created_at));
            engine
                .containers_stats(&selected)
                .iter()
                .map(|s| to_container_stats(&engine, s))
                .collect()
        })
        .await
    }

    pub(super) async fn list_container_stats_impl(
        &self,
        r: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        let stats = self
            .list_container_stats_inner(r.into_inner().filter)
            .await?;
        Ok(Response::new(ListContainerStatsResponse { stats }))
    }

    pub(super) async fn stream_container_stats_impl(
        &self,
        r: Request<StreamContainerStatsRequest>,
    ) -> Result<Response<One<StreamContainerStatsResponse>>, Status> {
        let container_stats = self
            .list_container_stats_inner(r.into_inner().filter)
            .await?;
        Ok(one(StreamContainerStatsResponse { container_stats }))
    }

    pub(super) async fn pod_sandbox_stats_impl(
        &self,
        r: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        if id.is_empty() {
            return Err(missing("pod_sandbox_id"));
        }
        let engine = self.engine.clone();
        let stats = blocking(move || {
            engine
                .sandbox_stats(&id)
                .map(|s| to_sandbox_stats(&engine, &s))
        })
        .await?
        .map_err(to_status)?;
        Ok(Response::new(PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    /// The stats of every ready pod the filter selects (IDs by prefix, as ListPodSandbox).
    pub(super) async fn list_pod_sandbox_stats_inner(
        &self,
        filter: Option<PodSandboxStatsFilter>,
    ) -> Result<Vec<PodSandboxStats>, Status> {
        let engine = self.engine.clone();
        blocking(move || {
            let mut selected: Vec<_> = engine
                .sandboxes()
                .into_iter()
                .filter(|sb| match &filter {
                    None => true,
                    Some(f) => {
                        sb.id().starts_with(&f.id)
                            && labels_match(&f.label_selector, &sb.config.labels)
                    }
                })
                .collect();
            selected.sort_by_key(|sb| std::cmp::Reverse(sb.record().created_at));
            engine
                .sandboxes_stats(&selected, CpuRate::Compute)
                .iter()
                .map(|s| to_sandbox_stats(&engine, s))
                .collect()
        })
        .await
    }

    pub(super) async fn list_pod_sandbox_stats_impl(
        &self,
        r: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        let stats = self
            .list_pod_sandbox_stats_inner(r.into_inner().filter)
            .await?;
        Ok(Response::new(ListPodSandboxStatsResponse { stats }))
    }

    pub(super) async fn stream_pod_sandbox_stats_impl(
        &self,
        r: Request<StreamPodSandboxStatsRequest>,
    ) -> Result<Response<One<StreamPodSandboxStatsResponse>>, Status> {
        let pod_sandbox_stats = self
            .list_pod_sandbox_stats_inner(r.into_inner().filter)
            .await?;
        Ok(one(StreamPodSandboxStatsResponse { pod_sandbox_stats }))
    }

    pub(super) fn list_metric_descriptors_impl(&self) -> Response<ListMetricDescriptorsResponse> {
        Response::new(ListMetricDescriptorsResponse {
            descriptors: DESCRIPTORS.iter().map(Descriptor::to_cri).collect(),
        })
    }

    async fn pod_metrics(&self) -> Result<Vec<PodSandboxMetrics>, Status> {
        let engine = self.engine.clone();
        blocking(move || {
            // Metrics do not touch the CPU samples the stats RPCs compute rates from.
            engine
                .sandboxes_stats(&engine.sandboxes(), CpuRate::Skip)
                .iter()
                .map(pod_metrics)
                .collect()
        })
        .await
    }

    pub(super) async fn list_pod_sandbox_metrics_impl(
        &self,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        let pod_metrics = self.pod_metrics().await?;
        Ok(Response::new(ListPodSandboxMetricsResponse { pod_metrics }))
    }

    pub(super) async fn stream_pod_sandbox_metrics_impl(
        &self,
    ) -> Result<Response<One<StreamPodSandboxMetricsResponse>>, Status> {
        let pod_sandbox_metrics = self.pod_metrics().await?;
        Ok(one(StreamPodSandboxMetricsResponse {
            pod_sandbox_metrics,
        }))
    }
}

// ---- metrics ----

/// The labels every metric starts with.
const BASE_LABELS: [&str; 3] = ["id", "name", "image"];

/// A metric peapod reports: its name, help and the labels after [`BASE_LABELS`].
pub(super) struct Descriptor {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

impl Descriptor {
    fn to_cri(&self) -> MetricDescriptor {
        MetricDescriptor {
            name: self.name.into(),
            help: self.help.into(),
            label_keys: BASE_LABELS
                .iter()
                .chain(self.labels)
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

const fn desc(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Descriptor {
    Descriptor { name, help, labels }
}

/// Every metric ListPodSandboxMetrics reports, with cAdvisor's names and help texts. Per
/// container: CPU (`cpu` is always `total`: no per-CPU figures), memory, OOM kills, processes
/// and threads, the writable layer; per pod: each interface of its network namespace.
pub(super) const DESCRIPTORS: &[Descriptor] = &[
    desc(
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        &["cpu"],
    ),
    desc(
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
        &[],
    ),
    desc(
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
        &[],
    ),
    desc(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        &[],
    ),
    desc(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        &[],
    ),
    desc(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        &[],
    ),
    desc(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        &[],
    ),
    desc(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        &[],
    ),
    desc("container_memory_rss", "Size of RSS in bytes.", &[]),
    desc(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        &[],
    ),
    desc(
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
        &[],
    ),
    desc(
        "container_memory_swap",
        "Container swap usage in bytes.",
        &[],
    ),
    desc(
        "container_memory_kernel_usage",
        "Size of kernel memory allocated in bytes.",
        &[],
    ),
    desc(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes",
        &[],
    ),
    desc(
        "container_memory_failcnt",
        "Number of memory usage hits limits",
        &[],
    ),
    desc(
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures.",
        &["failure_type", "scope"],
    ),
    desc(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        &[],
    ),
    desc(
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
        &[],
    ),
    desc(
        "container_processes",
        "Number of processes running inside the container.",
        &[],
    ),
    desc(
        "container_threads",
        "Number of threads running inside the container",
        &[],
    ),
    desc(
        "container_threads_max",
        "Maximum number of threads allowed inside the container, infinity if value is zero",
        &[],
    ),
    desc(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        &[],
    ),
    desc(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        &["interface"],
    ),
    desc(
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        &["interface"],
    ),
    desc(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        &["interface"],
    ),
    desc(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        &["interface"],
    ),
    desc(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        &["interface"],
    ),
    desc(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        &["interface"],
    ),
    desc(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        &["interface"],
    ),
    desc(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        &["interface"],
    ),
];

/// Collects metrics that share the base label values of one container or pod.
struct MetricSet {
    base: [String; 3],
    out: Vec<Metric>,
}

impl MetricSet {
    fn new(id: &str, name: &str, image: &str) -> Self {
        MetricSet {
            base: [id.into(), name.into(), image.into()],
            out: Vec::new(),
        }
    }

    fn push(&mut self, name: &str, kind: MetricType, value: u64, labels: &[&str]) {
        self.out.push(Metric {
            name: name.into(),
            timestamp: 0,
            metric_type: kind as i32,
            label_values: self
                .base
                .iter()
                .cloned()
                .chain(labels.iter().map(|s| s.to_string()))
                .collect(),
            value: u64v(value),
        });
    }

    fn counter(&mut self, name: &str, value: u64) {
        self.push(name, MetricType::Counter, value, &[]);
    }

    fn gauge(&mut self, name: &str, value: u64) {
        self.push(name, MetricType::Gauge, value, &[]);
    }
}

const NS_PER_SECOND: u64 = 1_000_000_000;

/// What one container's metrics are made of (the engine's figures, without the container).
struct ContainerFigures<'a> {
    cpu: Option<&'a CpuStat>,
    memory: Option<&'a MemoryStat>,
    pids: Option<&'a PidsStat>,
    processes: Option<u64>,
    writable_layer: Option<&'a DiskUsage>,
}

fn container_metrics(m: &mut MetricSet, f: &ContainerFigures) {
    if let Some(c) = f.cpu {
        m.push(
            "container_cpu_usage_seconds_total",
            MetricType::Counter,
            c.usage_ns / NS_PER_SECOND,
            &["total"],
        );
        m.counter(
            "container_cpu_user_seconds_total",
            c.user_ns / NS_PER_SECOND,
        );
        m.counter(
            "container_cpu_system_seconds_total",
            c.system_ns / NS_PER_SECOND,
        );
        m.counter("container_cpu_cfs_periods_total", c.periods);
        m.counter(
            "container_cpu_cfs_throttled_periods_total",
            c.throttled_periods,
        );
        m.counter(
            "container_cpu_cfs_throttled_seconds_total",
            c.throttled_ns / NS_PER_SECOND,
        );
    }
    if let Some(mem) = f.memory {
        m.gauge("container_memory_usage_bytes", mem.usage);
        m.gauge("container_memory_working_set_bytes", mem.working_set);
        m.gauge("container_memory_rss", mem.rss);
        m.gauge("container_memory_cache", mem.cache);
        m.gauge("container_memory_mapped_file", mem.mapped_file);
        m.gauge("container_memory_swap", mem.swap);
        m.gauge("container_memory_kernel_usage", mem.kernel);
        if let Some(max) = mem.max_usage {
            m.gauge("container_memory_max_usage_bytes", max);
        }
        m.counter("container_memory_failcnt", mem.failcnt);
        // cAdvisor reports each fault kind for the container and its hierarchy; a
        // container's cgroup has no children, so the two are the same figure.
        for (kind, value) in [
            ("pgfault", mem.page_faults),
            ("pgmajfault", mem.major_page_faults),
        ] {
            for scope in ["container", "hierarchy"] {
                m.push(
                    "container_memory_failures_total",
                    MetricType::Counter,
                    value,
                    &[kind, scope],
                );
            }
        }
        // cAdvisor's spec limit: 0 for none.
        m.gauge("container_spec_memory_limit_bytes", mem.limit.unwrap_or(0));
        m.counter("container_oom_events_total", mem.oom_kills);
    }
    if let Some(n) = f.processes {
        m.gauge("container_processes", n);
    }
    if let Some(p) = f.pids {
        m.gauge("container_threads", p.current);
        m.gauge("container_threads_max", p.limit.unwrap_or(0));
    }
    if let Some(u) = f.writable_layer {
        m.gauge("container_fs_usage_bytes", u.bytes);
    }
}

fn network_metrics(m: &mut MetricSet, ifaces: &[NetInterface]) {
    for i in ifaces {
        for (name, value) in [
            ("container_network_receive_bytes_total", i.rx_bytes),
            ("container_network_receive_packets_total", i.rx_packets),
            (
                "container_network_receive_packets_dropped_total",
                i.rx_dropped,
            ),
            ("container_network_receive_errors_total", i.rx_errors),
            ("container_network_transmit_bytes_total", i.tx_bytes),
            ("container_network_transmit_packets_total", i.tx_packets),
            (
                "container_network_transmit_packets_dropped_total",
                i.tx_dropped,
            ),
            ("container_network_transmit_errors_total", i.tx_errors),
        ] {
            m.push(name, MetricType::Counter, value, &[&i.name]);
        }
    }
}

/// A pod's metrics: its network's at pod level, then each container's that has cgroup figures
/// (one that has exited has none left, as containerd leaves such containers out).
fn pod_metrics(s: &EngineSandboxStats) -> PodSandboxMetrics {
    let image = s.record.infra.as_ref().map_or("", |i| i.image_ref.as_str());
    let mut pod = MetricSet::new(&s.record.id, "POD", image);
    network_metrics(&mut pod, s.network.as_deref().unwrap_or_default());
    let container_metrics = s
        .containers
        .iter()
        .filter(|c| c.cpu.is_some() || c.memory.is_some())
        .map(|c| {
            let mut m = MetricSet::new(&c.record.id, &c.record.name, &c.record.image_ref);
            container_metrics(
                &mut m,
                &ContainerFigures {
                    cpu: c.cpu.as_ref().map(|u| &u.stat),
                    memory: c.memory.as_ref(),
                    pids: c.pids.as_ref(),
                    processes: c.processes,
                    writable_layer: c.writable_layer.as_ref(),
                },
            );
            ContainerMetrics {
                container_id: c.record.id.clone(),
                metrics: m.out,
            }
        })
        .collect();
    PodSandboxMetrics {
        pod_sandbox_id: s.record.id.clone(),
        metrics: pod.out,
        container_metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn keys() -> HashMap<String, Vec<String>> {
        DESCRIPTORS
            .iter()
            .map(|d| (d.name.to_string(), d.to_cri().label_keys))
            .collect()
    }

    /// kubelet drops a metric whose name it has no descriptor for, and one whose label
    /// values do not match the descriptor's keys in number.
    fn assert_described(metrics: &[Metric]) {
        let keys = keys();
        for m in metrics {
            let k = keys
                .get(&m.name)
                .unwrap_or_else(|| panic!("{} has no descriptor", m.name));
            assert_eq!(
                k.len(),
                m.label_values.len(),
                "{}: {:?} for {k:?}",
                m.name,
                m.label_values
            );
        }
    }

    fn figures() -> (CpuStat, MemoryStat, PidsStat, DiskUsage) {
        let cpu = CpuStat {
            usage_ns: 2_500_000_000,
            user_ns: 2_000_000_000,
            system_ns: 500_000_000,
            periods: 10,
            throttled_periods: 2,
            throttled_ns: 3_000_000_000,
        };
        let memory = MemoryStat {
            usage: 150 << 20,
            working_set: 120 << 20,
            rss: 100 << 20,
            limit: Some(256 << 20),
            max_usage: Some(160 << 20),
            page_faults: 7,
            major_page_faults: 1,
            oom_kills: 1,
            ..MemoryStat::default()
        };
        let pids = PidsStat {
            current: 3,
            limit: None,
        };
        let layer = DiskUsage {
            bytes: 10 << 20,
            inodes: 4,
            truncated: false,
        };
        (cpu, memory, pids, layer)
    }

    #[test]
    fn every_metric_has_a_descriptor_with_its_labels() {
        let (cpu, memory, pids, layer) = figures();
        let mut m = MetricSet::new("abc", "web_pod_ns_uid_0", "busybox:latest");
        container_metrics(
            &mut m,
            &ContainerFigures {
                cpu: Some(&cpu),
                memory: Some(&memory),
                pids: Some(&pids),
                processes: Some(2),
                writable_layer: Some(&layer),
            },
        );
        let lo = NetInterface {
            name: "lo".into(),
            rx_bytes: 5,
            ..NetInterface::default()
        };
        network_metrics(&mut m, &[lo]);
        assert_described(&m.out);
        let emitted: std::collections::HashSet<&str> =
            m.out.iter().map(|m| m.name.as_str()).collect();
        for d in DESCRIPTORS {
            assert!(
                emitted.contains(d.name),
                "{} is described but never reported",
                d.name
            );
        }
        let find = |name: &str| m.out.iter().find(|x| x.name == name).unwrap();
        let usage = find("container_cpu_usage_seconds_total");
        assert_eq!(usage.value.as_ref().unwrap().value, 2, "whole seconds");
        assert_eq!(
            usage.label_values,
            ["abc", "web_pod_ns_uid_0", "busybox:latest", "total"]
        );
        assert_eq!(usage.metric_type, MetricType::Counter as i32);
        let ws = find("container_memory_working_set_bytes");
        assert_eq!(
            (ws.value.as_ref().unwrap().value, ws.metric_type),
            (120 << 20, MetricType::Gauge as i32)
        );
        assert_eq!(
            find("container_spec_memory_limit_bytes")
                .value
                .as_ref()
                .unwrap()
                .value,
            256 << 20
        );
        assert_eq!(
            find("container_network_receive_bytes_total").label_values[3],
            "lo"
        );
    }

    #[test]
    fn descriptor_names_are_unique() {
        assert_eq!(keys().len(), DESCRIPTORS.len());
    }

    #[test]
    fn network_default_is_eth0_else_the_first_and_not_repeated() {
        let iface = |n: &str| NetInterface {
            name: n.into(),
            ..NetInterface::default()
        };
        let n = to_network(7, &[iface("lo"), iface("eth0"), iface("net1")]);
        assert_eq!(n.default_interface.unwrap().name, "eth0");
        let others: Vec<_> = n.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(others, ["lo", "net1"]);
        let n = to_network(7, &[iface("lo")]);
        assert_eq!(
            (
                n.default_interface.unwrap().name.as_str(),
                n.interfaces.len()
            ),
            ("lo", 0)
        );
    }

    #[test]
    fn memory_available_only_under_a_limit() {
        let (_, memory, _, _) = figures();
        let m = to_memory(1, &memory);
        assert_eq!(m.available_bytes.unwrap().value, (256 - 120) << 20);
        let unlimited = MemoryStat {
            limit: None,
            ..memory
        };
        assert_eq!(to_memory(1, &unlimited).available_bytes, None);
    }
}
