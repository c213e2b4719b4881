//! CreateContainer, StartContainer, StopContainer, RemoveContainer, ContainerStatus,
//! ListContainers and ReopenContainerLog: request checks and conversions around the engine.

use std::collections::HashMap;

use tonic::{Request, Response, Status};

use super::sandbox::labels_match;
use super::status::{missing, to_status};
use super::CriServer;
use crate::api::*;
use crate::pod::{ContainerRecord, ContainerState as St};

fn state_of(r: &ContainerRecord) -> ContainerState {
    match r.state() {
        St::Created => ContainerState::ContainerCreated,
        St::Running => ContainerState::ContainerRunning,
        St::Exited => ContainerState::ContainerExited,
        St::Unknown => ContainerState::ContainerUnknown,
    }
}

fn to_container(config: &ContainerConfig, r: &ContainerRecord) -> Container {
    Container {
        id: r.id.clone(),
        pod_sandbox_id: r.sandbox_id.clone(),
        metadata: config.metadata.clone(),
        image: config.image.clone(),
        image_ref: r.image_id.clone(),
        state: state_of(r) as i32,
        created_at: r.created_at,
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        image_id: r.image_id.clone(),
    }
}

/// Whether ListContainers' filter takes the container with this config and record.
fn container_matches(f: &ContainerFilter, config: &ContainerConfig, r: &ContainerRecord) -> bool {
    (f.id.is_empty() || r.id.starts_with(&f.id))
        && (f.pod_sandbox_id.is_empty() || r.sandbox_id.starts_with(&f.pod_sandbox_id))
        && f.state
            .as_ref()
            .is_none_or(|s| s.state == state_of(r) as i32)
        && labels_match(&f.label_selector, &config.labels)
}

/// The CRI status of a container with this config and record (ContainerStatus, and the
/// containers of each container event's pod).
pub(super) fn container_status(config: &ContainerConfig, rec: &ContainerRecord) -> ContainerStatus {
    ContainerStatus {
        id: rec.id.clone(),
        metadata: config.metadata.clone(),
        state: state_of(rec) as i32,
        created_at: rec.created_at,
        started_at: rec.started_at,
        finished_at: rec.finished_at,
        exit_code: rec.exit_code,
        image: config.image.clone(),
        image_ref: rec.image_id.clone(),
        reason: rec.reason.clone(),
        message: rec.message.clone(),
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        mounts: config.mounts.clone(),
        log_path: rec
            .log_path
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        resources: config.linux.as_ref().and_then(|l| {
            l.resources.clone().map(|res| ContainerResources {
                linux: Some(res),
                windows: None,
            })
        }),
        image_id: rec.image_id.clone(),
        user: None,
        stop_signal: config.stop_signal,
    }
}

impl CriServer {
    pub(super) async fn create_container_impl(
        &self,
        r: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let r = r.into_inner();
        if r.pod_sandbox_id.is_empty() {
            return Err(missing("pod_sandbox_id"));
        }
        let config = r.config.ok_or_else(|| missing("config"))?;
        let id = self
            .engine
            .create_container(&r.pod_sandbox_id, config)
            .await
            .map_err(to_status)?;
        Ok(Response::new(CreateContainerResponse { container_id: id }))
    }

    pub(super) async fn start_container_impl(
        &self,
        r: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        let id = &r.get_ref().container_id;
        if id.is_empty() {
            return Err(missing("container_id"));
        }
        self.engine.start_container(id).await.map_err(to_status)?;
        Ok(Response::new(StartContainerResponse {}))
    }

    pub(super) async fn stop_container_impl(
        &self,
        r: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        let r = r.into_inner();
        if r.container_id.is_empty() {
            return Err(missing("container_id"));
        }
        if r.timeout < 0 {
            return Err(Status::invalid_argument("timeout: must not be negative"));
        }
        self.engine
            .stop_container(&r.container_id, r.timeout)
            .await
            .map_err(to_status)?;
        Ok(Response::new(StopContainerResponse {}))
    }

    pub(super) async fn remove_container_impl(
        &self,
        r: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        let id = &r.get_ref().container_id;
        if id.is_empty() {
            return Err(missing("container_id"));
        }
        self.engine.remove_container(id).await.map_err(to_status)?;
        Ok(Response::new(RemoveContainerResponse {}))
    }

    pub(super) fn container_status_impl(
        &self,
        r: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        let r = r.into_inner();
        if r.container_id.is_empty() {
            return Err(missing("container_id"));
        }
        let c = self.engine.container(&r.container_id).map_err(to_status)?;
        let rec = c.record();
        let mut status = container_status(&c.config, &rec);
        // The resources as last updated (UpdateContainerResources), not only as created.
        status.resources = c.resources().map(|res| ContainerResources {
            linux: Some(res),
            windows: None,
        });
        let mut info = HashMap::new();
        if r.verbose {
            let v = serde_json::json!({
                "pid": rec.pid,
                "monitorPid": rec.monitor_pid,
                "sandboxID": rec.sandbox_id,
                "runtimeHandler": rec.runtime_handler,
                "rootfs": rec.rootfs,
                "cgroupsPath": rec.cgroup_path,
                "bundle": self.engine.paths.bundle_dir(&rec.id),
            });
            info.insert("info".to_string(), v.to_string());
        }
        Ok(Response::new(ContainerStatusResponse {
            status: Some(status),
            info,
        }))
    }

    pub(super) fn list_containers_inner(&self, filter: Option<&ContainerFilter>) -> Vec<Container> {
        // Filtered before anything is copied: kubelet lists one pod's containers often.
        let mut out = self.engine.map_containers(|c, r| {
            filter
                .is_none_or(|f| container_matches(f, &c.config, r))
                .then(|| to_container(&c.config, r))
        });
        out.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        out
    }

    pub(super) async fn reopen_container_log_impl(
        &self,
        r: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        let id = &r.get_ref().container_id;
        if id.is_empty() {
            return Err(missing("container_id"));
        }
        self.engine
            .reopen_container_log(id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ReopenContainerLogResponse {}))
    }

    pub(super) async fn update_container_resources_impl(
        &self,
        r: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        let r = r.into_inner();
        if r.container_id.is_empty() {
            return Err(missing("container_id"));
        }
        let linux = r.linux.ok_or_else(|| missing("linux"))?;
        self.engine
            .update_container_resources(&r.container_id, linux)
            .await
            .map_err(to_status)?;
        Ok(Response::new(UpdateContainerResourcesResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::record::RECORD_VERSION;

    fn record(id: &str, sandbox_id: &str, started_at: i64) -> ContainerRecord {
        ContainerRecord {
            version: RECORD_VERSION,
            id: id.into(),
            name: "c".into(),
            sandbox_id: sandbox_id.into(),
            runtime_handler: String::new(),
            image_ref: String::new(),
            image_id: String::new(),
            image_chain_ids: Vec::new(),
            log_path: None,
            rootfs: Default::default(),
            cgroup_path: String::new(),
            stop_signal: 0,
            created_at: 1,
            monitor_pid: 0,
            monitor_start: 0,
            pid: 0,
            started_at,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            unknown: false,
            creating: false,
        }
    }

    #[test]
    fn filter_by_ids_state_and_labels() {
        let config = ContainerConfig {
            labels: HashMap::from([("app".into(), "web".into())]),
            ..Default::default()
        };
        let rec = record("c123", "p456", 5);
        let take = |f: ContainerFilter| container_matches(&f, &config, &rec);
        assert!(take(ContainerFilter::default()));
        assert!(take(ContainerFilter {
            id: "c1".into(),
            pod_sandbox_id: "p4".into(),
            ..Default::default()
        }));
        assert!(!take(ContainerFilter {
            pod_sandbox_id: "p5".into(),
            ..Default::default()
        }));
        assert!(!take(ContainerFilter {
            id: "c2".into(),
            ..Default::default()
        }));
        let state = |s: ContainerState| Some(ContainerStateValue { state: s as i32 });
        assert!(take(ContainerFilter {
            state: state(ContainerState::ContainerRunning),
            ..Default::default()
        }));
        assert!(!take(ContainerFilter {
            state: state(ContainerState::ContainerCreated),
            ..Default::default()
        }));
        assert!(!take(ContainerFilter {
            label_selector: HashMap::from([("app".into(), "db".into())]),
            ..Default::default()
        }));
    }
}
