//! Version, Status, RuntimeConfig and UpdateRuntimeConfig: what the runtime is and can do.

use tonic::{Request, Response, Status};

use super::CriServer;
use crate::api::*;
use crate::config::CgroupDriver as CfgDriver;

pub const RUNTIME_NAME: &str = "peapod";
pub const CRI_API_VERSION: &str = "v1";

impl CriServer {
    pub(super) fn version_impl(
        &self,
        _r: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            // The kubelet-facing API version ("0.1.0" is the CRI's own convention for v1).
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: CRI_API_VERSION.into(),
        }))
    }

    pub(super) fn status_impl(
        &self,
        r: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let e = &self.engine;
        let shim_ok = e.shim().exists();
        let runtime_ready = RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: shim_ok,
            reason: if shim_ok {
                String::new()
            } else {
                "ShimMissing".into()
            },
            message: if shim_ok {
                String::new()
            } else {
                format!("monitor binary {} not found", e.shim().display())
            },
        };
        let net = e.net.ready();
        let network_ready = RuntimeCondition {
            r#type: "NetworkReady".into(),
            status: net.is_ok(),
            reason: if net.is_ok() {
                String::new()
            } else {
                "NetworkPluginNotReady".into()
            },
            message: net.err().unwrap_or_default(),
        };
        let mut info = std::collections::HashMap::new();
        if r.get_ref().verbose {
            // As containerd's `crictl info`: the effective config, keys as in the file (every
            // default filled in, flags applied), and what the daemon made of it.
            let cfg = serde_json::to_string(&*e.cfg).unwrap_or_default();
            info.insert("config".to_string(), cfg);
            let found = serde_json::json!({
                "cgroupDriver": e.cfg.cgroup_driver.as_str(),
                "cgroupVersion": e.cgroups.version(),
                "defaultRuntime": e.runtimes.default_name(),
                "runtimes": e.runtimes.names().collect::<Vec<_>>(),
                "shim": e.shim(),
            });
            info.insert("runtime".to_string(), found.to_string());
        }
        Ok(Response::new(StatusResponse {
            status: Some(RuntimeStatus {
                conditions: vec![runtime_ready, network_ready],
            }),
            info,
            runtime_handlers: e
                .runtimes
                .names()
                .map(|n| RuntimeHandler {
                    name: n.to_string(),
                    features: Some(RuntimeHandlerFeatures::default()),
                })
                .collect(),
            features: Some(RuntimeFeatures::default()),
        }))
    }

    pub(super) fn runtime_config_impl(&self) -> Result<Response<RuntimeConfigResponse>, Status> {
        let driver = match self.engine.cfg.cgroup_driver {
            CfgDriver::Systemd => CgroupDriver::Systemd,
            CfgDriver::Cgroupfs => CgroupDriver::Cgroupfs,
        };
        Ok(Response::new(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        }))
    }
}
