//! Exec, Attach and PortForward: each hands out a URL of the streaming server
//! ([`crate::streaming`]), where the client then streams. Without a streaming backend they are
//! UNIMPLEMENTED.

use tonic::{Request, Response, Status};

use super::status::unimplemented;
use super::CriServer;
use crate::api::*;
use crate::streaming::RequestError;

fn to_status(e: RequestError) -> Status {
    match e {
        RequestError::Invalid(m) => Status::invalid_argument(m),
        RequestError::TooMany(e) => Status::resource_exhausted(e.to_string()),
    }
}

impl CriServer {
    fn stream_server(&self, rpc: &str) -> Result<&crate::streaming::Server, Status> {
        self.streaming.as_deref().ok_or_else(|| unimplemented(rpc))
    }

    /// As containerd: only a running container gets a URL (NOT_FOUND / FAILED_PRECONDITION
    /// now, not a failure later on the stream). An empty ID is left to the request checks.
    fn check_running(&self, id: &str) -> Result<(), Status> {
        if id.is_empty() {
            return Ok(());
        }
        let c = self
            .engine
            .container(id)
            .map_err(super::status::to_status)?;
        if c.record().state() != crate::pod::ContainerState::Running {
            return Err(Status::failed_precondition(format!(
                "container {} is not running",
                c.record().id
            )));
        }
        Ok(())
    }

    pub(super) fn exec_impl(
        &self,
        r: Request<ExecRequest>,
    ) -> Result<Response<ExecResponse>, Status> {
        self.check_running(&r.get_ref().container_id)?;
        let url = self
            .stream_server("Exec")?
            .get_exec(r.get_ref())
            .map_err(to_status)?;
        Ok(Response::new(ExecResponse { url }))
    }

    pub(super) fn attach_impl(
        &self,
        r: Request<AttachRequest>,
    ) -> Result<Response<AttachResponse>, Status> {
        self.check_running(&r.get_ref().container_id)?;
        let url = self
            .stream_server("Attach")?
            .get_attach(r.get_ref())
            .map_err(to_status)?;
        Ok(Response::new(AttachResponse { url }))
    }

    pub(super) fn port_forward_impl(
        &self,
        r: Request<PortForwardRequest>,
    ) -> Result<Response<PortForwardResponse>, Status> {
        if !r.get_ref().pod_sandbox_id.is_empty() {
            self.engine
                .sandbox(&r.get_ref().pod_sandbox_id)
                .map_err(super::status::to_status)?;
        }
        let url = self
            .stream_server("PortForward")?
            .get_port_forward(r.get_ref())
            .map_err(to_status)?;
        Ok(Response::new(PortForwardResponse { url }))
    }
}
