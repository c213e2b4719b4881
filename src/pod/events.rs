//! The engine's event bus: container lifecycle events (created, started, stopped, deleted),
//! published where a container's state really changes, each delivered to every subscriber in
//! the order it was published.
//!
//! - **Complete and ordered, or ended.** Each subscriber has a bounded buffer of its own;
//!   publishing never waits for a subscriber. One whose buffer is full has fallen behind: it is
//!   dropped there and then (with a log line), and its stream yields the events it holds and
//!   then [`Lagged`]. A subscriber therefore never misses an event without being told: no
//!   shared channel, no event discarded into the void (containerd#7318, #8892, #9070).
//! - **No history.** A subscriber gets the events published after it subscribed. Start-up
//!   recovery runs inside `Engine::new`, before the engine is handed to any front door, so
//!   nothing recovery reconciles (an exit while the daemon was down) can reach a subscriber
//!   as if it had just happened; see `recover.rs` for why that is also what containerd does.
//! - **A container's events follow its lifecycle.** CREATED is published before the container
//!   can be found by ID; STARTED and STOPPED under the container's operation order (an exit
//!   that arrives while StartContainer is still recording the start waits for it: see
//!   [`Events::starting`]); DELETED after the container is gone.
//! - **The pod as it was.** Each event carries its pod at that moment (sandbox and container
//!   records), taken while the event is queued, so each event's view is at least as new as
//!   the one before it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::proc::now_ns;
use super::record::{ContainerRecord, SandboxRecord};
use super::{Container, Engine, Sandbox};

/// The default number of events a subscriber may fall behind by before it is dropped.
pub const DEFAULT_BUFFER: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerEventKind {
    Created,
    Started,
    /// The container exited (by itself, killed, or stopped).
    Stopped,
    Deleted,
}

/// One change of a container, with its pod as it was at that moment.
#[derive(Clone)]
pub struct ContainerEvent {
    pub kind: ContainerEventKind,
    pub container_id: String,
    pub sandbox_id: String,
    /// When the event was published, in nanoseconds since the epoch.
    pub at_ns: i64,
    pub pod: PodSnapshot,
}

/// A pod at the moment of an event: its sandbox (None once removed) and its containers, oldest
/// first (a deleted container no longer among them), with their records as they were then.
#[derive(Clone, Default)]
pub struct PodSnapshot {
    pub sandbox: Option<(Arc<Sandbox>, SandboxRecord)>,
    pub containers: Vec<(Arc<Container>, ContainerRecord)>,
}

/// The end of a subscription that fell behind: the events after the ones it got were not
/// delivered to it, so it must list again and subscribe anew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the event subscriber fell more than {capacity} events behind and was dropped")]
pub struct Lagged {
    pub capacity: usize,
}

struct Subscriber<T> {
    id: u64,
    tx: mpsc::Sender<Arc<T>>,
    lagged: Arc<AtomicBool>,
}

struct Subscribers<T> {
    next_id: u64,
    list: Vec<Subscriber<T>>,
}

/// A fan-out of events of type `T` to subscribers, each with a bounded buffer.
pub struct Bus<T> {
    capacity: usize,
    subs: Mutex<Subscribers<T>>,
}

impl<T> Bus<T> {
    /// A bus whose subscribers may each fall `capacity` (at least 1) events behind.
    pub fn new(capacity: usize) -> Self {
        Bus {
            capacity: capacity.max(1),
            subs: Mutex::new(Subscribers {
                next_id: 1,
                list: Vec::new(),
            }),
        }
    }

    /// A new subscriber: it gets every event published from now on, in order.
    pub fn subscribe(&self) -> Subscription<T> {
        let (tx, rx) = mpsc::channel(self.capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        let mut subs = self.subs.lock().unwrap();
        let id = subs.next_id;
        subs.next_id += 1;
        subs.list.push(Subscriber {
            id,
            tx,
            lagged: lagged.clone(),
        });
        debug!(subscriber = id, "event subscriber added");
        Subscription {
            id,
            rx,
            lagged,
            capacity: self.capacity,
            ended: false,
        }
    }

    /// Queues the event `make` builds for every subscriber, never waiting. `make` runs only
    /// when there is a subscriber, under the bus's lock (so events are queued in the order
    /// their views were taken): it may take the engine's map and record locks, and so no
    /// caller may hold one of those.
    pub fn publish_with(&self, make: impl FnOnce() -> T) {
        let mut subs = self.subs.lock().unwrap();
        subs.list.retain(|s| !s.tx.is_closed());
        if subs.list.is_empty() {
            return;
        }
        let ev = Arc::new(make());
        let capacity = self.capacity;
        subs.list.retain(|s| match s.tx.try_send(ev.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                s.lagged.store(true, Ordering::SeqCst);
                warn!(
                    subscriber = s.id,
                    capacity,
                    "event subscriber fell behind: dropped, its stream ends with an error"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                debug!(subscriber = s.id, "event subscriber gone");
                false
            }
        });
    }

    /// How many subscribers are attached (the gone ones are noticed at the next publish).
    pub fn subscribers(&self) -> usize {
        self.subs.lock().unwrap().list.len()
    }
}

/// One subscriber's events: a stream of every event published after it subscribed, in order,
/// ending with `Err(Lagged)` if it fell behind and was dropped.
pub struct Subscription<T> {
    id: u64,
    rx: mpsc::Receiver<Arc<T>>,
    lagged: Arc<AtomicBool>,
    capacity: usize,
    ended: bool,
}

impl<T> Subscription<T> {
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl<T> tokio_stream::Stream for Subscription<T> {
    type Item = Result<Arc<T>, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(ev)) => Poll::Ready(Some(Ok(ev))),
            // The bus let go of this subscriber: after everything it had queued, say why.
            Poll::Ready(None) => {
                self.ended = true;
                if self.lagged.load(Ordering::SeqCst) {
                    Poll::Ready(Some(Err(Lagged {
                        capacity: self.capacity,
                    })))
                } else {
                    Poll::Ready(None)
                }
            }
        }
    }
}

/// The engine's container events, and the starts in flight that order them.
pub struct Events {
    bus: Bus<ContainerEvent>,
    starts: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A StartContainer in flight for one container, from before the runtime's start until the
/// start is recorded and published (dropped at the end of StartContainer).
pub struct StartGuard<'a> {
    events: &'a Events,
    id: String,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        self.events.starts.lock().unwrap().remove(&self.id);
    }
}

impl Events {
    pub fn new(capacity: usize) -> Self {
        Events {
            bus: Bus::new(capacity),
            starts: Mutex::new(HashMap::new()),
        }
    }

    /// Marks a start of container `id` in flight until the guard is dropped. A container can
    /// exit before StartContainer has recorded its start (a command that ends at once); its
    /// exit then waits in [`Self::start_done`], so that the record gets started_at before
    /// finished_at and subscribers STARTED before STOPPED. StartContainer runs one at a time
    /// per container (under its operation lock).
    pub fn starting(&self, id: &str) -> StartGuard<'_> {
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let held = gate
            .clone()
            .try_lock_owned()
            .expect("a new mutex is unlocked");
        self.starts.lock().unwrap().insert(id.to_string(), gate);
        StartGuard {
            events: self,
            id: id.to_string(),
            _held: held,
        }
    }

    /// Waits until no start of container `id` is in flight.
    pub async fn start_done(&self, id: &str) {
        let gate = self.starts.lock().unwrap().get(id).cloned();
        if let Some(gate) = gate {
            let _ = gate.lock().await;
        }
    }
}

impl Engine {
    /// A subscription to every container event from now on (CRI GetContainerEvents).
    pub fn subscribe_events(&self) -> Subscription<ContainerEvent> {
        self.events.bus.subscribe()
    }

    /// Publishes a change of container `c`, with its pod as it is now. Called after the change
    /// is recorded, with no engine lock held.
    pub(super) fn publish(&self, kind: ContainerEventKind, c: &Arc<Container>) {
        self.events.bus.publish_with(|| {
            let (container_id, sandbox_id) = {
                let r = c.rec.lock().unwrap();
                (r.id.clone(), r.sandbox_id.clone())
            };
            let pod = self.pod_snapshot(&sandbox_id, &container_id, kind, c);
            ContainerEvent {
                kind,
                container_id,
                sandbox_id,
                at_ns: now_ns(),
                pod,
            }
        });
    }

    /// Publishes a change of sandbox `sb` as kubelet's evented PLEG expects it (and containerd
    /// sends it): a container event whose container ID is the sandbox's ID. `removed`: the
    /// sandbox is gone, so the event carries no sandbox status.
    pub(super) fn publish_sandbox(
        &self,
        kind: ContainerEventKind,
        sb: &Arc<Sandbox>,
        removed: bool,
    ) {
        self.events.bus.publish_with(|| {
            let id = sb.id();
            let containers = self.pod_containers(&id);
            ContainerEvent {
                kind,
                container_id: id.clone(),
                sandbox_id: id,
                at_ns: now_ns(),
                pod: PodSnapshot {
                    sandbox: (!removed).then(|| (sb.clone(), sb.record())),
                    containers,
                },
            }
        });
    }

    /// The pod of an event about `c`: its sandbox and containers as they are now, with `c`
    /// among them unless it was deleted (CREATED is published before `c` is registered).
    fn pod_snapshot(
        &self,
        sandbox_id: &str,
        container_id: &str,
        kind: ContainerEventKind,
        c: &Arc<Container>,
    ) -> PodSnapshot {
        let sandbox = self
            .sandboxes
            .read()
            .get(sandbox_id)
            .map(|sb| (sb.clone(), sb.record()));
        let mut containers = self.pod_containers(sandbox_id);
        containers.retain(|(_, r)| r.id != container_id);
        if kind != ContainerEventKind::Deleted {
            containers.push((c.clone(), c.record()));
            super::sort_by_creation(&mut containers);
        }
        PodSnapshot {
            sandbox,
            containers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    /// Everything the subscription holds right now, and whether it ended (and how).
    async fn drain(s: &mut Subscription<u32>) -> (Vec<u32>, Option<Result<(), Lagged>>) {
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout(std::time::Duration::from_millis(20), s.next()).await {
                Err(_) => return (got, None),
                Ok(None) => return (got, Some(Ok(()))),
                Ok(Some(Ok(v))) => got.push(*v),
                Ok(Some(Err(e))) => {
                    assert!(s.next().await.is_none(), "nothing after Lagged");
                    return (got, Some(Err(e)));
                }
            }
        }
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_event_in_order() {
        let bus = Bus::new(64);
        let mut a = bus.subscribe();
        for i in 0..10 {
            bus.publish_with(|| i);
        }
        let mut b = bus.subscribe();
        for i in 10..50 {
            bus.publish_with(|| i);
        }
        assert_eq!(drain(&mut a).await, ((0..50).collect(), None));
        assert_eq!(
            drain(&mut b).await,
            ((10..50).collect(), None),
            "a subscriber gets what was published after it subscribed, and nothing before"
        );
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_dropped_and_told() {
        let bus = Bus::new(8);
        let mut slow = bus.subscribe();
        let mut fast = bus.subscribe();
        let mut got_fast = Vec::new();
        for i in 0..20 {
            bus.publish_with(|| i);
            got_fast.extend(drain(&mut fast).await.0);
        }
        assert_eq!(
            got_fast,
            (0..20).collect::<Vec<_>>(),
            "the reader misses nothing"
        );
        assert_eq!(bus.subscribers(), 1, "the laggard was dropped at once");
        // The laggard gets the events it had, in order and without a gap, then the error.
        assert_eq!(
            drain(&mut slow).await,
            ((0..8).collect(), Some(Err(Lagged { capacity: 8 })))
        );
        // A new subscriber works.
        let mut again = bus.subscribe();
        bus.publish_with(|| 20);
        assert_eq!(drain(&mut again).await, (vec![20], None));
        assert_eq!(drain(&mut fast).await, (vec![20], None));
    }

    #[tokio::test]
    async fn no_event_is_built_without_subscribers() {
        let bus: Bus<u32> = Bus::new(4);
        bus.publish_with(|| unreachable!("nobody listens"));
        let s = bus.subscribe();
        drop(s);
        bus.publish_with(|| unreachable!("the only subscriber is gone"));
        assert_eq!(bus.subscribers(), 0);
    }

    #[tokio::test]
    async fn an_exit_waits_for_the_start_in_flight() {
        let events = Arc::new(Events::new(4));
        // No start in flight: nothing to wait for.
        events.start_done("c1").await;
        let guard = events.starting("c1");
        let waiter = {
            let events = events.clone();
            tokio::spawn(async move { events.start_done("c1").await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(
            !waiter.is_finished(),
            "the exit waits while the start is in flight"
        );
        events.start_done("c2").await;
        drop(guard);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("the exit goes on once the start is recorded")
            .unwrap();
        assert!(events.starts.lock().unwrap().is_empty());
    }
}
