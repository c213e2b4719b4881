//! Prometheus metrics: one process-wide registry, recorded where things happen (the CRI door's
//! RPCs, the engine's pod starts and recovery, image pulls) and served by [`serve`] when
//! `metrics_address` is set.
//!
//! A process-wide registry rather than one passed down: an image pull, a pod start and an RPC
//! each record where they run, and none needs to know whether anything scrapes. Recording is
//! a few atomic operations; with the endpoint off, nothing ever reads them.

mod serve;

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

pub use serve::{serve, ServeError};

/// Labels of one RPC: `runtime.v1.RuntimeService` and `RunPodSandbox`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub service: String,
    pub method: String,
}

/// An RPC and the gRPC status code it failed with (`NotFound`, `InvalidArgument`...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcErrorLabels {
    pub service: String,
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric peapod exports.
pub struct Metrics {
    registry: Registry,
    pub rpc_requests: Family<RpcLabels, Counter>,
    pub rpc_errors: Family<RpcErrorLabels, Counter>,
    pub rpc_duration: HistogramFamily<RpcLabels>,
    pub sandbox_start: Histogram,
    pub container_start: Histogram,
    pub sandboxes: Family<StateLabels, Gauge>,
    pub containers: Family<StateLabels, Gauge>,
    pub monitors: Gauge,
    pub image_pulls: Family<ResultLabels, Counter>,
    pub image_pull_bytes: Counter,
    pub image_pull_duration: Histogram,
    pub recovery_duration: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub recovered: Family<StateLabels, Gauge>,
}

/// 1 ms to about 33 s, doubling: RPCs range from a List's fraction of a millisecond to a
/// StopPodSandbox's grace period.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// 100 ms to about 27 min, doubling: pulls from a local mirror to a slow registry.
fn pull_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 14))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("peapod");
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "CRI requests handled, by service and method",
            rpc_requests.clone(),
        );
        let rpc_errors = Family::<RpcErrorLabels, Counter>::default();
        registry.register(
            "grpc_errors",
            "CRI requests that failed, by service, method and gRPC status code",
            rpc_errors.clone(),
        );
        let rpc_duration: HistogramFamily<RpcLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "grpc_request_duration",
            "Time to answer a CRI request",
            Unit::Seconds,
            rpc_duration.clone(),
        );
        let sandbox_start = latency_histogram();
        registry.register_with_unit(
            "pod_sandbox_start_duration",
            "Time from a pod sandbox's creation request to its being ready (namespaces, \
             pause, network)",
            Unit::Seconds,
            sandbox_start.clone(),
        );
        let container_start = latency_histogram();
        registry.register_with_unit(
            "container_start_duration",
            "Time for the OCI runtime to start a created container",
            Unit::Seconds,
            container_start.clone(),
        );
        let sandboxes = Family::<StateLabels, Gauge>::default();
        registry.register("sandboxes", "Pod sandboxes by state", sandboxes.clone());
        let containers = Family::<StateLabels, Gauge>::default();
        registry.register("containers", "Containers by state", containers.clone());
        let monitors = Gauge::default();
        registry.register(
            "monitors",
            "Per-container monitor processes alive",
            monitors.clone(),
        );
        let image_pulls = Family::<ResultLabels, Counter>::default();
        registry.register(
            "image_pulls",
            "Image pulls, by result (success or error)",
            image_pulls.clone(),
        );
        let image_pull_bytes = Counter::default();
        registry.register_with_unit(
            "image_pull",
            "Bytes downloaded from registries by image pulls",
            Unit::Bytes,
            image_pull_bytes.clone(),
        );
        let image_pull_duration = pull_histogram();
        registry.register_with_unit(
            "image_pull_duration",
            "Time a successful image pull took",
            Unit::Seconds,
            image_pull_duration.clone(),
        );
        let recovery_duration = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "recovery_duration",
            "Time the daemon's start-up recovery of sandboxes and containers took",
            Unit::Seconds,
            recovery_duration.clone(),
        );
        let recovered = Family::<StateLabels, Gauge>::default();
        registry.register(
            "recovered_objects",
            "Sandboxes and containers found again at start-up",
            recovered.clone(),
        );
        Metrics {
            registry,
            rpc_requests,
            rpc_errors,
            rpc_duration,
            sandbox_start,
            container_start,
            sandboxes,
            containers,
            monitors,
            image_pulls,
            image_pull_bytes,
            image_pull_duration,
            recovery_duration,
            recovered,
        }
    }

    /// One answered RPC; `path` is the HTTP/2 path (`/runtime.v1.RuntimeService/Version`),
    /// `code` the gRPC status code (0 for OK).
    pub fn rpc(&self, path: &str, code: i32, took: Duration) {
        // The path is the client's to choose: only the CRI's own services get labels of
        // their own, so no client can grow the families without bound.
        let (service, method) = match path.trim_start_matches('/').split_once('/') {
            Some((s @ ("runtime.v1.RuntimeService" | "runtime.v1.ImageService"), m))
                if m.len() <= 64 && m.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                (s, m)
            }
            _ => ("other", "other"),
        };
        let labels = RpcLabels {
            service: service.to_string(),
            method: method.to_string(),
        };
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if code != 0 {
            self.rpc_errors
                .get_or_create(&RpcErrorLabels {
                    service: labels.service,
                    method: labels.method,
                    code: format!("{:?}", tonic::Code::from_i32(code)),
                })
                .inc();
        }
    }

    /// One image pull: its downloaded bytes and time when it succeeded.
    pub fn image_pull(&self, ok: bool, bytes: u64, took: Duration) {
        let result = if ok { "success" } else { "error" };
        self.image_pulls
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        self.image_pull_bytes.inc_by(bytes);
        if ok {
            self.image_pull_duration.observe(took.as_secs_f64());
        }
    }

    /// Sets a state family to `counts`, zeroing states that have none now (so a gauge does
    /// not keep a count of objects that are gone).
    pub fn set_states(family: &Family<StateLabels, Gauge>, counts: &[(&str, i64)]) {
        for (state, n) in counts {
            family
                .get_or_create(&StateLabels {
                    state: state.to_string(),
                })
                .set(*n);
        }
    }

    /// The Prometheus text format (0.0.4) of every metric.
    pub fn encode_text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// The OpenMetrics text format, for scrapers that ask for it.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpcs_are_counted_by_method_and_failures_by_code() {
        let m = Metrics::new();
        m.rpc(
            "/runtime.v1.RuntimeService/Version",
            0,
            Duration::from_millis(2),
        );
        m.rpc(
            "/runtime.v1.RuntimeService/PodSandboxStatus",
            5,
            Duration::from_millis(1),
        );
        let text = m.encode_text();
        assert!(
            text.contains(
                "peapod_grpc_requests_total{service=\"runtime.v1.RuntimeService\",method=\"Version\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("code=\"NotFound\"} 1"),
            "NotFound is code 5: {text}"
        );
        assert!(!text.contains("method=\"Version\",code="), "{text}");
        assert!(text.contains("peapod_grpc_request_duration_seconds_bucket"));
        // Paths outside the CRI share one label set, whatever a client sends.
        for p in ["/evil/x1", "/runtime.v1.RuntimeService/A\"b", "/"] {
            m.rpc(p, 12, Duration::from_millis(1));
        }
        let text = m.encode_text();
        assert!(
            text.contains("peapod_grpc_requests_total{service=\"other\",method=\"other\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn pulls_count_bytes_and_results() {
        let m = Metrics::new();
        m.image_pull(true, 1000, Duration::from_millis(300));
        m.image_pull(false, 10, Duration::from_millis(3));
        let text = m.encode_text();
        assert!(
            text.contains("peapod_image_pull_bytes_total 1010"),
            "{text}"
        );
        assert!(text.contains("peapod_image_pulls_total{result=\"error\"} 1"));
        assert!(text.contains("peapod_image_pull_duration_seconds_count 1"));
    }
}
