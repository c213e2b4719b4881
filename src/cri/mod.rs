//! Front door 1: the CRI `runtime.v1` RuntimeService and ImageService over gRPC on a unix socket.
//! One file per RPC family converts requests and calls the engine; `status` maps errors.

mod container;
mod events;
mod exec;
mod image;
pub mod list;
mod rpc_metrics;
mod runtime_info;
mod sandbox;
mod stats;
mod status;
pub mod stream_backend;
mod streaming;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::api::image_service_server::ImageServiceServer;
use crate::api::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use crate::api::*;
use crate::pod::table::generation;
use crate::pod::Engine;
use status::unimplemented;

#[derive(Clone)]
pub struct CriServer {
    engine: Arc<Engine>,
    /// The Exec/Attach/PortForward streaming server, when a backend was given.
    streaming: Option<Arc<crate::streaming::Server>>,
    /// The last unfiltered ListPodSandbox and ListContainers replies (list.rs).
    kept_sandboxes: Arc<list::Kept>,
    kept_containers: Arc<list::Kept>,
}

impl CriServer {
    pub fn new(engine: Arc<Engine>, streaming: Option<Arc<crate::streaming::Server>>) -> Self {
        CriServer {
            engine,
            streaming,
            kept_sandboxes: Default::default(),
            kept_containers: Default::default(),
        }
    }
}

/// What the streaming server needs to start: where to listen (the config's
/// `stream_server_address` and `stream_server_port`) and what runs the streams.
pub struct Streaming {
    pub addr: std::net::SocketAddr,
    pub backend: Arc<dyn crate::streaming::Backend>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("preparing socket {path}: {source}")]
    Socket {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("starting the streaming server on {addr}: {source}")]
    Streaming {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Serves both CRI services on `socket` (mode 0600: root only, a filesystem socket so a
/// host-network pod cannot reach it, unlike an abstract one) until `shutdown` resolves. With
/// `streaming`, the streaming server runs alongside (and stops with it); without, Exec, Attach
/// and PortForward are UNIMPLEMENTED. `ready` runs once the socket is bound, so a client that
/// connects after it is answered.
pub async fn serve(
    engine: Arc<Engine>,
    socket: &Path,
    streaming: Option<Streaming>,
    ready: impl FnOnce(),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let stream_server = match streaming {
        None => None,
        Some(Streaming { addr, backend }) => Some(Arc::new(
            crate::streaming::Server::start(addr, backend)
                .await
                .map_err(|source| ServeError::Streaming { addr, source })?,
        )),
    };
    let err = |source| ServeError::Socket {
        path: socket.to_owned(),
        source,
    };
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    // Bind with a umask so the socket is never reachable by others, not even for an instant.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let listener = tokio::net::UnixListener::bind(socket);
    nix::sys::stat::umask(old);
    let listener = listener.map_err(err)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    tracing::info!(socket = %socket.display(), "serving CRI");
    ready();
    let svc = CriServer::new(engine, stream_server);
    tonic::transport::Server::builder()
        .layer(rpc_metrics::RpcMetricsLayer)
        .add_service(RuntimeServiceServer::new(svc.clone()).max_decoding_message_size(16 << 20))
        .add_service(ImageServiceServer::new(svc).max_decoding_message_size(16 << 20))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    let _ = std::fs::remove_file(socket);
    Ok(())
}

type One<T> = tokio_stream::Iter<std::vec::IntoIter<Result<T, Status>>>;

fn one<T>(v: T) -> Response<One<T>> {
    Response::new(tokio_stream::iter(vec![Ok(v)]))
}

#[tonic::async_trait]
impl RuntimeService for CriServer {
    async fn version(
        &self,
        r: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        self.version_impl(r)
    }
    async fn run_pod_sandbox(
        &self,
        r: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        self.run_pod_sandbox_impl(r).await
    }
    async fn stop_pod_sandbox(
        &self,
        r: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        self.stop_pod_sandbox_impl(r).await
    }
    async fn remove_pod_sandbox(
        &self,
        r: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        self.remove_pod_sandbox_impl(r).await
    }
    async fn pod_sandbox_status(
        &self,
        r: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        self.pod_sandbox_status_impl(r)
    }
    async fn list_pod_sandbox(
        &self,
        r: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        // An empty filter takes everything, as none does.
        let filter = r.get_ref().filter.as_ref();
        let reply = match filter.filter(|f| **f != PodSandboxFilter::default()) {
            None => {
                ListPodSandboxResponse::from_encoded(self.kept_sandboxes.get(generation(), || {
                    ListPodSandboxResponse::new(self.list_pod_sandbox_inner(None))
                }))
            }
            f => ListPodSandboxResponse::new(self.list_pod_sandbox_inner(f)),
        };
        Ok(Response::new(reply))
    }
    type StreamPodSandboxesStream = One<StreamPodSandboxesResponse>;
    async fn stream_pod_sandboxes(
        &self,
        r: Request<StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        let pod_sandboxes = self.list_pod_sandbox_inner(r.get_ref().filter.as_ref());
        Ok(one(StreamPodSandboxesResponse { pod_sandboxes }))
    }
    async fn create_container(
        &self,
        r: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        self.create_container_impl(r).await
    }
    async fn start_container(
        &self,
        r: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        self.start_container_impl(r).await
    }
    async fn stop_container(
        &self,
        r: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        self.stop_container_impl(r).await
    }
    async fn remove_container(
        &self,
        r: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        self.remove_container_impl(r).await
    }
    async fn list_containers(
        &self,
        r: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let filter = r.get_ref().filter.as_ref();
        let reply = match filter.filter(|f| **f != ContainerFilter::default()) {
            None => {
                ListContainersResponse::from_encoded(self.kept_containers.get(generation(), || {
                    ListContainersResponse::new(self.list_containers_inner(None))
                }))
            }
            f => ListContainersResponse::new(self.list_containers_inner(f)),
        };
        Ok(Response::new(reply))
    }
    type StreamContainersStream = One<StreamContainersResponse>;
    async fn stream_containers(
        &self,
        r: Request<StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        let containers = self.list_containers_inner(r.get_ref().filter.as_ref());
        Ok(one(StreamContainersResponse { containers }))
    }
    async fn container_status(
        &self,
        r: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        self.container_status_impl(r)
    }
    async fn update_container_resources(
        &self,
        r: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        self.update_container_resources_impl(r).await
    }
    async fn reopen_container_log(
        &self,
        r: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        self.reopen_container_log_impl(r).await
    }
    async fn exec_sync(
        &self,
        r: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        self.exec_sync_impl(r).await
    }
    async fn exec(&self, r: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        self.exec_impl(r)
    }
    async fn attach(&self, r: Request<AttachRequest>) -> Result<Response<AttachResponse>, Status> {
        self.attach_impl(r)
    }
    async fn port_forward(
        &self,
        r: Request<PortForwardRequest>,
    ) -> Result<Response<PortForwardResponse>, Status> {
        self.port_forward_impl(r)
    }
    async fn container_stats(
        &self,
        r: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        self.container_stats_impl(r).await
    }
    async fn list_container_stats(
        &self,
        r: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        self.list_container_stats_impl(r).await
    }
    type StreamContainerStatsStream = One<StreamContainerStatsResponse>;
    async fn stream_container_stats(
        &self,
        r: Request<StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        self.stream_container_stats_impl(r).await
    }
    async fn pod_sandbox_stats(
        &self,
        r: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        self.pod_sandbox_stats_impl(r).await
    }
    async fn list_pod_sandbox_stats(
        &self,
        r: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        self.list_pod_sandbox_stats_impl(r).await
    }
    type StreamPodSandboxStatsStream = One<StreamPodSandboxStatsResponse>;
    async fn stream_pod_sandbox_stats(
        &self,
        r: Request<StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        self.stream_pod_sandbox_stats_impl(r).await
    }
    async fn update_runtime_config(
        &self,
        r: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        // kubelet sends the node's pod CIDR here; the built-in network takes it for new pods
        // (CNI plugins have their own IPAM config, as with containerd).
        let cidr = r
            .get_ref()
            .runtime_config
            .as_ref()
            .and_then(|c| c.network_config.as_ref())
            .map(|n| n.pod_cidr.clone())
            .unwrap_or_default();
        if !cidr.is_empty() {
            self.engine.net.set_pod_cidr(&cidr).map_err(|e| {
                Status::invalid_argument(format!("runtime_config.network_config.pod_cidr: {e}"))
            })?;
            tracing::info!(%cidr, "pod CIDR updated");
        }
        Ok(Response::new(UpdateRuntimeConfigResponse {}))
    }
    async fn status(&self, r: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.status_impl(r)
    }
    async fn checkpoint_container(
        &self,
        _r: Request<CheckpointContainerRequest>,
    ) -> Result<Response<CheckpointContainerResponse>, Status> {
        Err(unimplemented("CheckpointContainer"))
    }
    async fn checkpoint_pod(
        &self,
        _r: Request<CheckpointPodRequest>,
    ) -> Result<Response<CheckpointPodResponse>, Status> {
        Err(unimplemented("CheckpointPod"))
    }
    async fn restore_pod(
        &self,
        _r: Request<RestorePodRequest>,
    ) -> Result<Response<RestorePodResponse>, Status> {
        Err(unimplemented("RestorePod"))
    }
    type GetContainerEventsStream = events::EventStream;
    async fn get_container_events(
        &self,
        r: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        self.get_container_events_impl(r)
    }
    async fn list_metric_descriptors(
        &self,
        _r: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        Ok(self.list_metric_descriptors_impl())
    }
    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        self.list_pod_sandbox_metrics_impl().await
    }
    type StreamPodSandboxMetricsStream = One<StreamPodSandboxMetricsResponse>;
    async fn stream_pod_sandbox_metrics(
        &self,
        _r: Request<StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        self.stream_pod_sandbox_metrics_impl().await
    }
    async fn runtime_config(
        &self,
        _r: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        self.runtime_config_impl()
    }
    async fn update_pod_sandbox_resources(
        &self,
        _r: Request<UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<UpdatePodSandboxResourcesResponse>, Status> {
        Err(unimplemented("UpdatePodSandboxResources"))
    }
}
