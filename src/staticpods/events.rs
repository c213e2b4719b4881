//! Pod events as kubelet records them (Pulled, Created, Started, Killing, Unhealthy, BackOff...),
//! kept in the daemon since there is no API server to send them to. Repeats of the same event
//! on the same object are folded into one with a count and a last timestamp, as the API
//! server's event correlator does, so a crash-looping container shows one BackOff line with
//! its count rather than hundreds.

use std::collections::VecDeque;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// At most this many events are kept, the oldest dropped first (the API server keeps them an
/// hour; a bound keeps the daemon's memory flat under a crash loop of many pods).
const MAX_EVENTS: usize = 1000;

/// Normal or Warning, as the API names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The recorded events, newest last.
#[derive(Default)]
pub struct EventLog {
    events: VecDeque<Event>,
    serial: u64,
}

/// What one event is about and says.
pub struct NewEvent<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// `spec.containers{name}` or `spec.initContainers{name}` for a container's event.
    pub field_path: Option<String>,
    pub kind: EventType,
    pub reason: &'a str,
    pub message: String,
}

impl EventLog {
    /// Records `ev` at `now` on node `host`: a repeat of an event already kept (same object,
    /// field, type, reason and message) bumps its count and last timestamp instead.
    pub fn record(&mut self, ev: NewEvent<'_>, host: &str, now: Time) {
        let meta = &ev.pod.metadata;
        let uid = meta.uid.clone();
        let same = |e: &Event| {
            e.involved_object.uid == uid
                && e.involved_object.field_path == ev.field_path
                && e.reason.as_deref() == Some(ev.reason)
                && e.message.as_deref() == Some(ev.message.as_str())
                && e.type_.as_deref() == Some(ev.kind.as_str())
        };
        if let Some(pos) = self.events.iter().rposition(same) {
            // Moved to the end, so that the newest events stay when the oldest are dropped.
            let mut e = self.events.remove(pos).expect("position found");
            e.count = Some(e.count.unwrap_or(1) + 1);
            e.last_timestamp = Some(now);
            self.events.push_back(e);
            return;
        }
        self.serial += 1;
        let name = meta.name.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        self.events.push_back(Event {
            metadata: ObjectMeta {
                // The API server names an event `<object>.<unique hex>`.
                name: Some(format!("{name}.{:016x}", self.serial)),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                namespace: Some(namespace),
                uid,
                field_path: ev.field_path,
                ..ObjectReference::default()
            },
            reason: Some(ev.reason.to_string()),
            message: Some(ev.message),
            type_: Some(ev.kind.as_str().into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(host.to_string()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(host.to_string()),
            ..Event::default()
        });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    /// The events of namespace `namespace` (every namespace when `None`), of the pod `name`
    /// only when given, oldest first.
    pub fn list(&self, namespace: Option<&str>, name: Option<&str>) -> Vec<Event> {
        self.events
            .iter()
            .filter(|e| {
                namespace.is_none_or(|ns| e.involved_object.namespace.as_deref() == Some(ns))
            })
            .filter(|e| name.is_none_or(|n| e.involved_object.name.as_deref() == Some(n)))
            .cloned()
            .collect()
    }
}

/// The field path kubelet gives a container's events.
pub fn container_field_path(pod: &Pod, container: &str) -> String {
    let init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|i| i.iter().any(|c| c.name == container));
    if init {
        format!("spec.initContainers{{{container}}}")
    } else {
        format!("spec.containers{{{container}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn pod(name: &str, uid: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn ev<'a>(p: &'a Pod, reason: &'a str, msg: &str) -> NewEvent<'a> {
        NewEvent {
            pod: p,
            field_path: Some("spec.containers{app}".into()),
            kind: EventType::Warning,
            reason,
            message: msg.into(),
        }
    }

    #[test]
    fn repeats_fold_into_one_event_with_a_count() {
        let p = pod("web", "u1");
        let mut log = EventLog::default();
        log.record(ev(&p, "BackOff", "Back-off restarting"), "node", at(10));
        log.record(ev(&p, "Started", "Started container app"), "node", at(11));
        log.record(ev(&p, "BackOff", "Back-off restarting"), "node", at(20));
        let all = log.list(Some("default"), Some("web"));
        assert_eq!(all.len(), 2);
        let back = all.last().unwrap();
        assert_eq!(back.reason.as_deref(), Some("BackOff"));
        assert_eq!(back.count, Some(2));
        assert_eq!(back.first_timestamp, Some(at(10)));
        assert_eq!(back.last_timestamp, Some(at(20)));
        assert_eq!(
            back.involved_object.field_path.as_deref(),
            Some("spec.containers{app}")
        );
    }

    #[test]
    fn another_pod_instance_or_message_is_another_event() {
        let (a, b) = (pod("web", "u1"), pod("web", "u2"));
        let mut log = EventLog::default();
        log.record(ev(&a, "Killing", "Stopping container app"), "n", at(1));
        log.record(ev(&b, "Killing", "Stopping container app"), "n", at(2));
        log.record(ev(&b, "Killing", "Stopping container other"), "n", at(3));
        assert_eq!(log.list(None, Some("web")).len(), 3);
        assert!(log.list(Some("kube-system"), None).is_empty());
        assert!(log.list(None, Some("db")).is_empty());
    }

    #[test]
    fn the_log_is_bounded_and_keeps_the_newest() {
        let p = pod("web", "u1");
        let mut log = EventLog::default();
        for i in 0..(MAX_EVENTS + 5) {
            log.record(ev(&p, "Pulled", &format!("m{i}")), "n", at(i as i64));
        }
        let all = log.list(None, None);
        assert_eq!(all.len(), MAX_EVENTS);
        assert_eq!(all[0].message.as_deref(), Some("m5"));
    }

    #[test]
    fn init_containers_get_their_own_field_path() {
        let mut p = pod("web", "u1");
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            init_containers: Some(vec![k8s_openapi::api::core::v1::Container {
                name: "setup".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(
            container_field_path(&p, "setup"),
            "spec.initContainers{setup}"
        );
        assert_eq!(container_field_path(&p, "app"), "spec.containers{app}");
    }
}
