//! GetContainerEvents: the engine's container events as CRI ContainerEventResponses, for the
//! kubelet's evented PLEG. Each response carries the pod as it was at the event (its
//! PodSandboxStatus and the ContainerStatus of each container still in it), converted as
//! PodSandboxStatus and ContainerStatus convert them. A subscriber that falls behind gets the
//! events it has, then RESOURCE_EXHAUSTED (the kubelet relists on a stream error).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::container::container_status;
use super::sandbox::sandbox_status;
use super::CriServer;
use crate::api::*;
use crate::pod::events::{ContainerEvent, ContainerEventKind, Subscription};

fn event_type(k: ContainerEventKind) -> ContainerEventType {
    match k {
        ContainerEventKind::Created => ContainerEventType::ContainerCreatedEvent,
        ContainerEventKind::Started => ContainerEventType::ContainerStartedEvent,
        ContainerEventKind::Stopped => ContainerEventType::ContainerStoppedEvent,
        ContainerEventKind::Deleted => ContainerEventType::ContainerDeletedEvent,
    }
}

fn to_response(ev: &ContainerEvent) -> ContainerEventResponse {
    ContainerEventResponse {
        container_id: ev.container_id.clone(),
        container_event_type: event_type(ev.kind) as i32,
        created_at: ev.at_ns,
        pod_sandbox_status: ev
            .pod
            .sandbox
            .as_ref()
            .map(|(sb, rec)| sandbox_status(&sb.config, rec)),
        containers_statuses: ev
            .pod
            .containers
            .iter()
            .map(|(c, rec)| container_status(&c.config, rec))
            .collect(),
    }
}

/// One GetContainerEvents stream: a subscription to the engine's events, converted as they
/// are sent (a subscriber that reads slowly costs only its own buffer).
pub struct EventStream {
    sub: Subscription<ContainerEvent>,
}

impl Stream for EventStream {
    type Item = Result<ContainerEventResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.sub).poll_next(cx).map(|item| {
            item.map(|r| {
                r.map(|ev| to_response(&ev))
                    .map_err(|e| super::status::lagged(&e))
            })
        })
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        tracing::debug!(
            subscriber = self.sub.id(),
            "GetContainerEvents stream closed"
        );
    }
}

impl CriServer {
    pub(super) fn get_container_events_impl(
        &self,
        _r: Request<GetEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let sub = self.engine.subscribe_events();
        tracing::info!(
            subscriber = sub.id(),
            "GetContainerEvents subscriber connected"
        );
        Ok(Response::new(EventStream { sub }))
    }
}
