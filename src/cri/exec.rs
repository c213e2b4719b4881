//! ExecSync (and, with the streaming server, Exec, Attach and PortForward): request checks and
//! conversions around the engine's exec.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::status::{missing, to_status};
use super::CriServer;
use crate::api::*;

impl CriServer {
    pub(super) async fn exec_sync_impl(
        &self,
        r: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        let r = r.into_inner();
        if r.container_id.is_empty() {
            return Err(missing("container_id"));
        }
        if r.cmd.is_empty() {
            return Err(missing("cmd"));
        }
        if r.timeout < 0 {
            return Err(Status::invalid_argument("timeout: must not be negative"));
        }
        // 0 means no timeout (kubelet sends the probe's timeoutSeconds, crictl its --timeout).
        let timeout = (r.timeout > 0).then(|| Duration::from_secs(r.timeout as u64));
        let out = self
            .engine
            .exec_sync(&r.container_id, &r.cmd, timeout)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }
}
