//! RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox: request
//! checks and conversions around the engine.

use std::collections::HashMap;

use tonic::{Request, Response, Status};

use super::status::{missing, to_status};
use super::CriServer;
use crate::api::*;
use crate::pod::{SandboxRecord, SandboxState};

fn state_of(r: &SandboxRecord) -> PodSandboxState {
    match r.state {
        SandboxState::Ready => PodSandboxState::SandboxReady,
        SandboxState::NotReady => PodSandboxState::SandboxNotready,
    }
}

fn to_pod_sandbox(config: &PodSandboxConfig, r: &SandboxRecord) -> PodSandbox {
    PodSandbox {
        id: r.id.clone(),
        metadata: config.metadata.clone(),
        state: state_of(r) as i32,
        created_at: r.created_at,
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        runtime_handler: r.runtime_handler.clone(),
    }
}

/// Whether ListPodSandbox's filter takes the sandbox with this config and record.
fn sandbox_matches(f: &PodSandboxFilter, config: &PodSandboxConfig, r: &SandboxRecord) -> bool {
    (f.id.is_empty() || r.id.starts_with(&f.id))
        && f.state
            .as_ref()
            .is_none_or(|s| s.state == state_of(r) as i32)
        && labels_match(&f.label_selector, &config.labels)
}

/// The CRI status of a sandbox with this config and record (PodSandboxStatus, and the pod of
/// each container event).
pub(super) fn sandbox_status(config: &PodSandboxConfig, rec: &SandboxRecord) -> PodSandboxStatus {
    let ns_opts = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    PodSandboxStatus {
        id: rec.id.clone(),
        metadata: config.metadata.clone(),
        state: state_of(rec) as i32,
        created_at: rec.created_at,
        network: Some(PodSandboxNetworkStatus {
            ip: rec.ips.first().map(|ip| ip.to_string()).unwrap_or_default(),
            additional_ips: rec
                .ips
                .iter()
                .skip(1)
                .map(|ip| PodIp { ip: ip.to_string() })
                .collect(),
        }),
        linux: Some(LinuxPodSandboxStatus {
            namespaces: Some(Namespace {
                options: Some(ns_opts.unwrap_or_default()),
            }),
        }),
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        runtime_handler: rec.runtime_handler.clone(),
    }
}

/// Every key=value of the selector must be among the labels.
pub(super) fn labels_match(
    sel: &HashMap<String, String>,
    labels: &HashMap<String, String>,
) -> bool {
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl CriServer {
    pub(super) async fn run_pod_sandbox_impl(
        &self,
        r: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        let r = r.into_inner();
        let config = r.config.ok_or_else(|| missing("config"))?;
        let id = self
            .engine
            .run_sandbox(config, &r.runtime_handler)
            .await
            .map_err(to_status)?;
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    pub(super) async fn stop_pod_sandbox_impl(
        &self,
        r: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        let id = &r.get_ref().pod_sandbox_id;
        if id.is_empty() {
            return Err(missing("pod_sandbox_id"));
        }
        self.engine.stop_sandbox(id).await.map_err(to_status)?;
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    pub(super) async fn remove_pod_sandbox_impl(
        &self,
        r: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        let id = &r.get_ref().pod_sandbox_id;
        if id.is_empty() {
            return Err(missing("pod_sandbox_id"));
        }
        self.engine.remove_sandbox(id).await.map_err(to_status)?;
        Ok(Response::new(RemovePodSandboxResponse {}))
    }

    pub(super) fn pod_sandbox_status_impl(
        &self,
        r: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        let r = r.into_inner();
        if r.pod_sandbox_id.is_empty() {
            return Err(missing("pod_sandbox_id"));
        }
        let sb = self.engine.sandbox(&r.pod_sandbox_id).map_err(to_status)?;
        let rec = sb.record();
        let status = sandbox_status(&sb.config, &rec);
        let mut info = HashMap::new();
        if r.verbose {
            let v = serde_json::json!({
                "pid": rec.pause_pid,
                "hostname": rec.hostname,
                "cgroup": rec.cgroup.path,
                "pauseCgroup": rec.pause_cgroup,
                "namespaces": rec.namespaces,
                "netns": (!rec.namespaces.host_network).then(|| {
                    self.engine.paths.sandbox_state_dir(&rec.id).join("ns/net")
                }),
            });
            info.insert("info".to_string(), v.to_string());
        }
        // kubelet's evented PLEG reads the pod's containers from here.
        Ok(Response::new(PodSandboxStatusResponse {
            status: Some(status),
            info,
            containers_statuses: self
                .engine
                .pod_containers(&rec.id)
                .iter()
                .map(|(c, rec)| super::container::container_status(&c.config, rec))
                .collect(),
            timestamp: crate::pod::proc::now_ns(),
        }))
    }

    pub(super) fn list_pod_sandbox_inner(
        &self,
        filter: Option<&PodSandboxFilter>,
    ) -> Vec<PodSandbox> {
        // Filtered before anything is copied: a filter that takes few pods copies few.
        let mut out = self.engine.map_sandboxes(|sb, r| {
            filter
                .is_none_or(|f| sandbox_matches(f, &sb.config, r))
                .then(|| to_pod_sandbox(&sb.config, r))
        });
        out.sort_by_key(|p| std::cmp::Reverse(p.created_at));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::PodCgroup;
    use crate::pod::record::{SandboxNamespaces, RECORD_VERSION};

    fn record(id: &str, state: SandboxState) -> SandboxRecord {
        SandboxRecord {
            version: RECORD_VERSION,
            id: id.into(),
            name: "p".into(),
            runtime_handler: String::new(),
            created_at: 1,
            hostname: String::new(),
            namespaces: SandboxNamespaces::default(),
            pause_pid: 0,
            pause_start: 0,
            cgroup: PodCgroup {
                path: String::new(),
                owned: false,
            },
            pause_cgroup: String::new(),
            shm: None,
            state,
            infra: None,
            network: String::new(),
            ips: Vec::new(),
            creating: false,
        }
    }

    #[test]
    fn filter_by_id_prefix_state_and_labels() {
        let config = PodSandboxConfig {
            labels: HashMap::from([("app".into(), "web".into())]),
            ..Default::default()
        };
        let rec = record("abc123", SandboxState::NotReady);
        let take = |f: PodSandboxFilter| sandbox_matches(&f, &config, &rec);
        assert!(take(PodSandboxFilter::default()));
        assert!(take(PodSandboxFilter {
            id: "abc".into(),
            ..Default::default()
        }));
        assert!(!take(PodSandboxFilter {
            id: "abd".into(),
            ..Default::default()
        }));
        let state = |s: PodSandboxState| Some(PodSandboxStateValue { state: s as i32 });
        assert!(take(PodSandboxFilter {
            state: state(PodSandboxState::SandboxNotready),
            ..Default::default()
        }));
        assert!(!take(PodSandboxFilter {
            state: state(PodSandboxState::SandboxReady),
            ..Default::default()
        }));
        assert!(take(PodSandboxFilter {
            label_selector: HashMap::from([("app".into(), "web".into())]),
            ..Default::default()
        }));
        assert!(!take(PodSandboxFilter {
            label_selector: HashMap::from([("app".into(), "db".into())]),
            ..Default::default()
        }));
    }
}
