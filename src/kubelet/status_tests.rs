use super::*;
use crate::kubelet::actions::compute_pod_actions;
use crate::kubelet::backoff::{Backoff, BackoffKey};
use crate::kubelet::phase::{FAILED, PENDING, RUNNING, SUCCEEDED};
use crate::kubelet::runtime::SandboxState;
use crate::kubelet::testutil::*;

struct Fixture {
    pod: Pod,
    runtime: PodRuntimeStatus,
    probes: ProbeResults,
    reasons: ReasonCache,
    previous: Option<PodStatus>,
}

impl Fixture {
    fn new(pod: Pod, runtime: PodRuntimeStatus) -> Self {
        Fixture {
            pod,
            runtime,
            probes: ProbeResults::new(),
            reasons: ReasonCache::new(),
            previous: None,
        }
    }

    fn status(&self, at: u64) -> PodStatus {
        pod_status(&StatusInput {
            pod: &self.pod,
            runtime: &self.runtime,
            probes: &self.probes,
            reasons: &self.reasons,
            previous: self.previous.as_ref(),
            now: now_at(at),
        })
    }
}

fn cond<'a>(s: &'a PodStatus, type_: &str) -> &'a PodCondition {
    s.conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == type_))
        .expect("condition present")
}

fn cond_summary(s: &PodStatus, type_: &str) -> (String, Option<String>, Option<String>) {
    let c = cond(s, type_);
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn app(s: &PodStatus, name: &str) -> ApiStatus {
    s.container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == name)
        .cloned()
        .expect("container status")
}

fn init(s: &PodStatus, name: &str) -> ApiStatus {
    s.init_container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == name)
        .cloned()
        .expect("init container status")
}

fn waiting_reason(c: &ApiStatus) -> Option<String> {
    c.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

#[test]
fn phases_follow_get_phase() {
    // (policy, init snapshot, app snapshot, expected phase)
    type Case = (
        &'static str,
        Vec<ContainerStatus>,
        Vec<ContainerStatus>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        ("Always", vec![], vec![], PENDING),
        ("Always", vec![running("init", 0, 1)], vec![], PENDING),
        ("Never", vec![exited("init", 0, 1, 1, 2)], vec![], FAILED),
        (
            "OnFailure",
            vec![exited("init", 0, 1, 1, 2)],
            vec![],
            PENDING,
        ),
        (
            "Always",
            vec![exited("init", 0, 0, 1, 2)],
            vec![running("app", 0, 3)],
            RUNNING,
        ),
        (
            "Always",
            vec![exited("init", 0, 0, 1, 2)],
            vec![exited("app", 0, 1, 3, 4)],
            RUNNING,
        ),
        (
            "Never",
            vec![exited("init", 0, 0, 1, 2)],
            vec![exited("app", 0, 0, 3, 4)],
            SUCCEEDED,
        ),
        (
            "Never",
            vec![exited("init", 0, 0, 1, 2)],
            vec![exited("app", 0, 2, 3, 4)],
            FAILED,
        ),
        (
            "OnFailure",
            vec![exited("init", 0, 0, 1, 2)],
            vec![exited("app", 0, 2, 3, 4)],
            RUNNING,
        ),
        (
            "OnFailure",
            vec![exited("init", 0, 0, 1, 2)],
            vec![exited("app", 0, 0, 3, 4)],
            SUCCEEDED,
        ),
    ];
    for (policy, inits, apps, want) in cases {
        let mut all = inits.clone();
        all.extend(apps.clone());
        let f = Fixture::new(
            pod(policy, vec![container("init")], vec![container("app")]),
            ready(all),
        );
        assert_eq!(
            f.status(10).phase.as_deref(),
            Some(want),
            "{policy} {inits:?} {apps:?}"
        );
    }
}

#[test]
fn crash_loop_back_off_is_a_waiting_reason_not_a_phase() {
    let p = pod("Always", vec![], vec![container("app")]);
    let runtime = ready(vec![exited("app", 0, 1, 1, 2), exited("app", 1, 1, 3, 4)]);
    let mut backoff = Backoff::container_restart();
    let event = now_at(4).mono;
    backoff.next(&BackoffKey::new(UID, "app"), event, event);
    backoff.next(&BackoffKey::new(UID, "app"), event, event);
    backoff.next(&BackoffKey::new(UID, "app"), event, event);
    let plan = compute_pod_actions(&p, &runtime, &ProbeResults::new(), &backoff, now_at(10));
    let mut f = Fixture::new(p, runtime);
    f.reasons.record_backoffs(&plan);
    let s = f.status(10);
    assert_eq!(s.phase.as_deref(), Some(RUNNING));
    let c = app(&s, "app");
    let w = c
        .state
        .as_ref()
        .and_then(|s| s.waiting.clone())
        .expect("waiting");
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        w.message.as_deref(),
        Some("back-off 40s restarting failed container=app pod=web_default(uid-1)")
    );
    let last = c
        .last_state
        .and_then(|s| s.terminated)
        .expect("last terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(c.restart_count, 1);
    assert!(!c.ready);
    assert_eq!(c.started, Some(false));
    assert_eq!(
        cond_summary(&s, "ContainersReady"),
        (
            "False".into(),
            Some("ContainersNotReady".into()),
            Some("containers with unready status: [app]".into())
        )
    );
}

#[test]
fn waiting_reasons_before_and_between_runs() {
    // (has init containers, cached reason, expected waiting reason of the app container)
    let cases = [
        (false, None, Some("ContainerCreating")),
        (true, None, Some("PodInitializing")),
        (
            false,
            Some((ERR_IMAGE_PULL, "pull failed")),
            Some("ErrImagePull"),
        ),
        (
            false,
            Some((IMAGE_PULL_BACK_OFF, "Back-off pulling image")),
            Some("ImagePullBackOff"),
        ),
        (
            false,
            Some((CREATE_CONTAINER_CONFIG_ERROR, "configmap \"x\" not found")),
            Some("CreateContainerConfigError"),
        ),
    ];
    for (has_init, reason, want) in cases {
        let inits = if has_init {
            vec![container("init")]
        } else {
            vec![]
        };
        let mut f = Fixture::new(pod("Always", inits, vec![container("app")]), ready(vec![]));
        if let Some((r, m)) = reason {
            f.reasons.set("app", r, m);
        }
        let s = f.status(1);
        let c = app(&s, "app");
        assert_eq!(waiting_reason(&c).as_deref(), want);
        if let Some((_, m)) = reason {
            let msg = c.state.and_then(|s| s.waiting).and_then(|w| w.message);
            assert_eq!(msg.as_deref(), Some(m));
        }
        assert_eq!(s.phase.as_deref(), Some(PENDING));
        if has_init {
            assert_eq!(
                waiting_reason(&init(&s, "init")).as_deref(),
                Some("PodInitializing")
            );
        }
    }
}

#[test]
fn running_and_terminated_states_carry_the_engine_facts() {
    let mut oom = exited("app", 1, 137, 5, 9);
    oom.reason = "OOMKilled".into();
    oom.signal = Some(9);
    let mut f = Fixture::new(
        pod("Never", vec![], vec![container("app"), container("web")]),
        ready(vec![exited("app", 0, 0, 1, 2), oom, running("web", 0, 3)]),
    );
    f.runtime.containers[1].message = "memory limit".into();
    let s = f.status(10);
    let c = app(&s, "app");
    let t = c.state.and_then(|s| s.terminated).expect("terminated");
    assert_eq!(
        (t.exit_code, t.reason.as_deref(), t.signal),
        (137, Some("OOMKilled"), Some(9))
    );
    assert_eq!(t.message.as_deref(), Some("memory limit"));
    assert_eq!(t.started_at, Some(Time(ts(5))));
    assert_eq!(t.finished_at, Some(Time(ts(9))));
    assert_eq!(t.container_id.as_deref(), Some("peapod://app-1"));
    let last = c.last_state.and_then(|s| s.terminated).expect("last");
    assert_eq!(last.reason.as_deref(), Some("Completed"));
    assert_eq!(c.restart_count, 1);
    let w = app(&s, "web");
    let r = w.state.and_then(|s| s.running).expect("running");
    assert_eq!(r.started_at, Some(Time(ts(3))));
    assert!(w.ready, "no readiness probe: ready once running");
    assert_eq!(w.started, Some(true));
}

#[test]
fn ready_and_started_follow_the_probes() {
    let apps = vec![with_startup(with_readiness(container("app")))];
    // (startup result, readiness result, started, ready, Ready condition)
    let cases = [
        (None, None, false, false, "False"),
        (Some(ProbeResult::Unknown), None, false, false, "False"),
        (
            Some(ProbeResult::Success),
            Some(ProbeResult::Failure),
            true,
            false,
            "False",
        ),
        (
            Some(ProbeResult::Success),
            Some(ProbeResult::Success),
            true,
            true,
            "True",
        ),
        (
            Some(ProbeResult::Failure),
            Some(ProbeResult::Success),
            false,
            false,
            "False",
        ),
    ];
    for (startup, readiness, started, ready_, cond_status) in cases {
        let mut f = Fixture::new(
            pod("Always", vec![], apps.clone()),
            ready(vec![running("app", 0, 1)]),
        );
        if let Some(r) = startup {
            f.probes.set("app-0", ProbeKind::Startup, r);
        }
        if let Some(r) = readiness {
            f.probes.set("app-0", ProbeKind::Readiness, r);
        }
        let s = f.status(5);
        let c = app(&s, "app");
        assert_eq!(
            (c.started, c.ready),
            (Some(started), ready_),
            "{startup:?} {readiness:?}"
        );
        assert_eq!(cond(&s, "Ready").status, cond_status);
        assert_eq!(cond(&s, "ContainersReady").status, cond_status);
    }
}

#[test]
fn conditions_of_a_pod_going_through_its_life() {
    let p = pod(
        "OnFailure",
        vec![container("init"), sidecar("proxy")],
        vec![container("app")],
    );
    // (snapshot, Initialized, ContainersReady (status, reason))
    type Case = (
        Vec<ContainerStatus>,
        (&'static str, Option<&'static str>),
        (&'static str, Option<&'static str>),
    );
    let cases: Vec<Case> = vec![
        (
            vec![],
            ("False", Some("ContainersNotInitialized")),
            ("False", Some("ContainersNotReady")),
        ),
        (
            vec![running("init", 0, 1)],
            ("False", Some("ContainersNotInitialized")),
            ("False", Some("ContainersNotReady")),
        ),
        (
            vec![
                exited("init", 0, 0, 1, 2),
                running("proxy", 0, 3),
                running("app", 0, 4),
            ],
            ("True", None),
            ("True", None),
        ),
        (
            vec![
                exited("init", 0, 0, 1, 2),
                exited("proxy", 0, 0, 3, 9),
                exited("app", 0, 0, 4, 8),
            ],
            ("True", Some("PodCompleted")),
            ("False", Some("PodCompleted")),
        ),
    ];
    for (containers, want_init, want_ready) in cases {
        let f = Fixture::new(p.clone(), ready(containers.clone()));
        let s = f.status(10);
        let (st, reason, _) = cond_summary(&s, "Initialized");
        assert_eq!(
            (st.as_str(), reason.as_deref()),
            want_init,
            "{containers:?}"
        );
        let (st, reason, _) = cond_summary(&s, "ContainersReady");
        assert_eq!(
            (st.as_str(), reason.as_deref()),
            want_ready,
            "{containers:?}"
        );
        assert_eq!(cond(&s, "PodScheduled").status, "True");
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "True");
    }
    let s = Fixture::new(p.clone(), ready(vec![])).status(1);
    assert_eq!(
        cond(&s, "Initialized").message.as_deref(),
        Some("containers with incomplete status: [init proxy]")
    );
    assert_eq!(
        cond(&s, "Ready").message.as_deref(),
        Some("containers with unready status: [proxy app]")
    );
}

#[test]
fn condition_order_ips_and_sandbox_readiness() {
    let mut f = Fixture::new(
        pod("Always", vec![], vec![container("app")]),
        ready(vec![running("app", 0, 1)]),
    );
    let s = f.status(5);
    let order: Vec<_> = s
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled"
        ]
    );
    assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.5"));
    assert_eq!(s.pod_ips.as_ref().map(Vec::len), Some(1));
    f.runtime.sandboxes[0].state = SandboxState::NotReady;
    let s = f.status(6);
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
    assert_eq!(s.pod_ip, None);
}

#[test]
fn transition_times_and_start_time_are_kept_while_nothing_changes() {
    let mut f = Fixture::new(
        pod("Always", vec![], vec![container("app")]),
        ready(vec![running("app", 0, 1)]),
    );
    let first = f.status(5);
    f.previous = Some(first.clone());
    let second = f.status(50);
    assert_eq!(second.start_time, first.start_time);
    assert_eq!(
        cond(&second, "Ready").last_transition_time,
        Some(Time(ts(5)))
    );
    f.runtime.containers[0] = exited("app", 0, 1, 1, 40);
    f.previous = Some(second);
    let third = f.status(60);
    assert_eq!(cond(&third, "Ready").status, "False");
    assert_eq!(
        cond(&third, "Ready").last_transition_time,
        Some(Time(ts(60)))
    );
    assert_eq!(
        cond(&third, "PodScheduled").last_transition_time,
        Some(Time(ts(5)))
    );
}

#[test]
fn a_terminal_phase_stays_terminal() {
    let mut f = Fixture::new(
        pod("Never", vec![], vec![container("app")]),
        ready(vec![exited("app", 0, 0, 1, 2)]),
    );
    let done = f.status(5);
    assert_eq!(done.phase.as_deref(), Some(SUCCEEDED));
    f.previous = Some(done);
    f.runtime.containers.clear();
    assert_eq!(f.status(6).phase.as_deref(), Some(SUCCEEDED));
}

#[test]
fn a_container_lost_while_running_is_reported_terminated() {
    let mut f = Fixture::new(
        pod("Always", vec![], vec![container("app")]),
        ready(vec![running("app", 2, 1)]),
    );
    f.previous = Some(f.status(5));
    f.runtime.containers[0].state = ContainerState::Unknown;
    let c = app(&f.status(6), "app");
    let t = c.state.and_then(|s| s.terminated).expect("terminated");
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (137, Some("ContainerStatusUnknown"))
    );
    assert_eq!(c.restart_count, 3);
}

#[test]
fn completed_init_containers_are_ready_and_keep_their_state() {
    let mut f = Fixture::new(
        pod("Always", vec![container("init")], vec![container("app")]),
        ready(vec![exited("init", 0, 0, 1, 2), running("app", 0, 3)]),
    );
    // A stale reason must not hide a completed init container.
    f.reasons.set("init", CRASH_LOOP_BACK_OFF, "old");
    let s = f.status(5);
    let c = init(&s, "init");
    assert!(c.ready);
    assert_eq!(
        c.state.and_then(|s| s.terminated).map(|t| t.exit_code),
        Some(0)
    );
    assert_eq!(s.phase.as_deref(), Some(RUNNING));
}
