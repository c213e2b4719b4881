use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;

use super::*;
use crate::kubelet::runtime::PodRuntimeStatus;
use crate::kubelet::testutil::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn defaults_are_kubelets() {
    let spec = ProbeSpec::from_probe(ProbeKind::Liveness, &exec_probe()).unwrap();
    assert_eq!(spec.initial_delay, secs(0));
    assert_eq!(spec.period, secs(10));
    assert_eq!(spec.timeout, secs(1));
    assert_eq!(spec.success_threshold, 1);
    assert_eq!(spec.failure_threshold, 3);
}

#[test]
fn out_of_range_fields_are_refused() {
    let probe = |f: fn(&mut Probe)| {
        let mut p = exec_probe();
        f(&mut p);
        p
    };
    // (kind, probe, accepted)
    let cases = [
        (
            ProbeKind::Liveness,
            probe(|p| p.success_threshold = Some(2)),
            false,
        ),
        (
            ProbeKind::Startup,
            probe(|p| p.success_threshold = Some(3)),
            false,
        ),
        (
            ProbeKind::Readiness,
            probe(|p| p.success_threshold = Some(3)),
            true,
        ),
        (
            ProbeKind::Readiness,
            probe(|p| p.period_seconds = Some(0)),
            false,
        ),
        (
            ProbeKind::Readiness,
            probe(|p| p.timeout_seconds = Some(0)),
            false,
        ),
        (
            ProbeKind::Readiness,
            probe(|p| p.failure_threshold = Some(0)),
            false,
        ),
        (
            ProbeKind::Readiness,
            probe(|p| p.initial_delay_seconds = Some(-1)),
            false,
        ),
        (
            ProbeKind::Readiness,
            probe(|p| p.initial_delay_seconds = Some(0)),
            true,
        ),
    ];
    for (kind, p, ok) in cases {
        assert_eq!(
            ProbeSpec::from_probe(kind, &p).is_ok(),
            ok,
            "{kind:?} {p:?}"
        );
    }
    let err = ProbeSpec::from_probe(
        ProbeKind::Liveness,
        &probe(|p| p.success_threshold = Some(2)),
    );
    assert_eq!(
        err.unwrap_err().to_string(),
        "Liveness probe: successThreshold must be 1, got 2"
    );
}

fn spec(initial: u64, period: u64, success: u32, failure: u32) -> ProbeSpec {
    ProbeSpec {
        initial_delay: secs(initial),
        period: secs(period),
        timeout: secs(1),
        success_threshold: success,
        failure_threshold: failure,
        termination_grace_period: None,
    }
}

fn input(id: &str, started: bool) -> WorkerInput<'_> {
    WorkerInput {
        container_id: Some(id),
        state: ContainerState::Running,
        started_at: Some(Instant::default()),
        started,
        pod_terminal: false,
        pod_deleting: false,
        restart_policy: RestartPolicy::Always,
    }
}

fn at(s: u64) -> Instant {
    Instant::from_origin(secs(s))
}

#[test]
fn a_new_container_gets_the_initial_result_of_each_kind() {
    for (kind, want) in [
        (ProbeKind::Readiness, ProbeResult::Failure),
        (ProbeKind::Liveness, ProbeResult::Success),
        (ProbeKind::Startup, ProbeResult::Unknown),
    ] {
        let mut w = ProbeWorker::new(kind, spec(0, 10, 1, 3));
        let mut r = ProbeResults::new();
        w.step(&input("c1", kind != ProbeKind::Startup), &mut r, at(0));
        assert_eq!(r.get("c1", kind), Some(want));
    }
}

#[test]
fn consecutive_results_count_against_the_thresholds() {
    use ProbeResult::{Failure as F, Success as S};
    // (kind, success threshold, failure threshold, outcomes, published after each)
    type Case = (
        ProbeKind,
        u32,
        u32,
        Vec<ProbeResult>,
        Vec<Option<ProbeResult>>,
    );
    let cases: Vec<Case> = vec![
        (
            ProbeKind::Readiness,
            1,
            3,
            vec![S, F, F, F, S],
            vec![Some(S), None, None, Some(F), Some(S)],
        ),
        (
            ProbeKind::Readiness,
            2,
            1,
            vec![S, S, F, S, S],
            vec![None, Some(S), Some(F), None, Some(S)],
        ),
        (
            ProbeKind::Readiness,
            1,
            2,
            vec![F, S, F, F],
            vec![None, Some(S), None, Some(F)],
        ),
        // Liveness starts at Success: only a change is published.
        (
            ProbeKind::Liveness,
            1,
            3,
            vec![S, F, F, S, F, F, F],
            vec![None, None, None, None, None, None, Some(F)],
        ),
    ];
    for (kind, success, failure, outcomes, want) in cases {
        let mut w = ProbeWorker::new(kind, spec(0, 10, success, failure));
        let mut r = ProbeResults::new();
        let mut got = Vec::new();
        for (i, outcome) in outcomes.iter().enumerate() {
            let now = at(10 * i as u64);
            assert_eq!(
                w.step(&input("c1", true), &mut r, now),
                Step::Probe(secs(1)),
                "{kind:?} #{i}"
            );
            got.push(w.record("c1", *outcome, &mut r, now));
        }
        assert_eq!(got, want, "{kind:?} {outcomes:?}");
    }
}

#[test]
fn a_liveness_failure_holds_the_worker_until_a_new_container() {
    let mut w = ProbeWorker::new(ProbeKind::Liveness, spec(0, 10, 1, 1));
    let mut r = ProbeResults::new();
    assert!(matches!(
        w.step(&input("c1", true), &mut r, at(0)),
        Step::Probe(_)
    ));
    assert_eq!(
        w.record("c1", ProbeResult::Failure, &mut r, at(0)),
        Some(ProbeResult::Failure)
    );
    assert_eq!(w.step(&input("c1", true), &mut r, at(10)), Step::Wait);
    assert_eq!(w.due_at(), None);
    // The restarted instance starts over with a fresh result and no inherited counts.
    assert!(matches!(
        w.step(&input("c2", true), &mut r, at(20)),
        Step::Probe(_)
    ));
    assert_eq!(r.get("c2", ProbeKind::Liveness), Some(ProbeResult::Success));
    assert_eq!(r.get("c1", ProbeKind::Liveness), None);
    // An outcome for the old instance is ignored.
    assert_eq!(w.record("c1", ProbeResult::Failure, &mut r, at(20)), None);
}

#[test]
fn startup_gates_the_other_probes() {
    // (kind, container started, probes?)
    let cases = [
        (ProbeKind::Startup, false, true),
        (ProbeKind::Startup, true, false),
        (ProbeKind::Liveness, false, false),
        (ProbeKind::Liveness, true, true),
        (ProbeKind::Readiness, false, false),
        (ProbeKind::Readiness, true, true),
    ];
    for (kind, started, probes) in cases {
        let mut w = ProbeWorker::new(kind, spec(0, 10, 1, 3));
        let step = w.step(&input("c1", started), &mut ProbeResults::new(), at(0));
        assert_eq!(
            matches!(step, Step::Probe(_)),
            probes,
            "{kind:?} started={started}"
        );
    }
}

#[test]
fn the_schedule_honours_initial_delay_and_period() {
    let mut w = ProbeWorker::new(ProbeKind::Readiness, spec(15, 10, 1, 3));
    let mut r = ProbeResults::new();
    let mut probed = Vec::new();
    for t in 0..60 {
        if let Step::Probe(_) = w.step(&input("c1", true), &mut r, at(t)) {
            probed.push(t);
            w.record("c1", ProbeResult::Success, &mut r, at(t));
        }
    }
    assert_eq!(probed, [15, 25, 35, 45, 55]);
    assert_eq!(w.due_at(), Some(at(65)));
}

#[test]
fn a_stopped_container_publishes_failure_and_may_end_the_worker() {
    // (state, policy, keeps going)
    let cases = [
        (ContainerState::Exited, RestartPolicy::Always, true),
        (ContainerState::Exited, RestartPolicy::OnFailure, true),
        (ContainerState::Exited, RestartPolicy::Never, false),
        (ContainerState::Created, RestartPolicy::Never, true),
    ];
    for (state, policy, keeps) in cases {
        let mut w = ProbeWorker::new(ProbeKind::Readiness, spec(0, 10, 1, 3));
        let mut r = ProbeResults::new();
        let mut i = input("c1", true);
        w.step(&i, &mut r, at(0));
        w.record("c1", ProbeResult::Success, &mut r, at(0));
        i.state = state;
        i.restart_policy = policy;
        let step = w.step(&i, &mut r, at(10));
        assert_eq!(
            r.get("c1", ProbeKind::Readiness),
            Some(ProbeResult::Failure)
        );
        assert_eq!(step == Step::Stop, !keeps, "{state:?} {policy:?}");
    }
}

#[test]
fn deletion_and_terminal_pods_stop_workers() {
    let mut w = ProbeWorker::new(ProbeKind::Liveness, spec(0, 10, 1, 3));
    let mut r = ProbeResults::new();
    let mut i = input("c1", true);
    i.pod_deleting = true;
    assert_eq!(w.step(&i, &mut r, at(0)), Step::Stop);
    assert_eq!(r.get("c1", ProbeKind::Liveness), Some(ProbeResult::Success));
    // Readiness keeps probing while the pod shuts down.
    let mut w = ProbeWorker::new(ProbeKind::Readiness, spec(0, 10, 1, 3));
    assert!(matches!(w.step(&i, &mut r, at(0)), Step::Probe(_)));
    i.pod_terminal = true;
    assert_eq!(w.step(&i, &mut r, at(10)), Step::Stop);
    assert!(w.is_stopped());
}

#[test]
fn a_prober_error_is_thrown_away() {
    let mut w = ProbeWorker::new(ProbeKind::Readiness, spec(0, 10, 1, 2));
    let mut r = ProbeResults::new();
    w.step(&input("c1", true), &mut r, at(0));
    w.record("c1", ProbeResult::Failure, &mut r, at(0));
    assert_eq!(w.record("c1", ProbeResult::Unknown, &mut r, at(10)), None);
    // The failure run was not broken by the error.
    assert_eq!(w.record("c1", ProbeResult::Failure, &mut r, at(20)), None);
    assert_eq!(
        r.get("c1", ProbeKind::Readiness),
        Some(ProbeResult::Failure)
    );
}

#[test]
fn a_pod_schedule_runs_startup_first_then_liveness_and_readiness() {
    let app = with_readiness(with_liveness(with_startup(container("app"))));
    let p = pod(
        "Always",
        vec![container("init"), with_startup(sidecar("proxy"))],
        vec![app],
    );
    let mut sched = ProbeSchedule::for_pod(&p).unwrap();
    assert!(sched.has_worker("proxy", ProbeKind::Startup));
    assert!(
        !sched.has_worker("init", ProbeKind::Startup),
        "regular init containers are not probed"
    );
    let mut results = ProbeResults::new();
    let status: PodRuntimeStatus = ready(vec![running("proxy", 0, 0), running("app", 0, 0)]);
    let due = |sched: &mut ProbeSchedule, results: &mut ProbeResults, t| {
        let mut v: Vec<_> = sched
            .due(&p, &status, false, results, now_at(t))
            .into_iter()
            .map(|d| (d.key.0, d.key.1))
            .collect();
        v.sort();
        v
    };
    let first = due(&mut sched, &mut results, 0);
    assert_eq!(
        first,
        [
            ("app".to_string(), ProbeKind::Startup),
            ("proxy".to_string(), ProbeKind::Startup)
        ]
    );
    assert!(!sched.is_started("app", "app-0", &results));
    let key = ("app".to_string(), ProbeKind::Startup);
    assert_eq!(
        sched.record(
            &key,
            "app-0",
            ProbeResult::Success,
            &mut results,
            now_at(0).mono
        ),
        Some(ProbeResult::Success)
    );
    assert!(sched.is_started("app", "app-0", &results));
    let proxy = ("proxy".to_string(), ProbeKind::Startup);
    assert_eq!(
        sched.record(
            &proxy,
            "proxy-0",
            ProbeResult::Failure,
            &mut results,
            now_at(0).mono
        ),
        None
    );
    // Started: startup is done; liveness and readiness are due now; proxy's startup in 10 s.
    let next = due(&mut sched, &mut results, 1);
    assert_eq!(
        next,
        [
            ("app".to_string(), ProbeKind::Liveness),
            ("app".to_string(), ProbeKind::Readiness)
        ]
    );
    for kind in [ProbeKind::Liveness, ProbeKind::Readiness] {
        sched.record(
            &("app".to_string(), kind),
            "app-0",
            ProbeResult::Success,
            &mut results,
            now_at(1).mono,
        );
    }
    assert_eq!(sched.next_due(), Some(now_at(10).mono));
    assert_eq!(
        results.get("app-0", ProbeKind::Readiness),
        Some(ProbeResult::Success)
    );
}

#[test]
fn a_bad_probe_in_the_pod_is_reported() {
    let mut app = container("app");
    app.liveness_probe = Some(Probe {
        success_threshold: Some(2),
        ..exec_probe()
    });
    let p = pod("Always", vec![], vec![app]);
    assert!(ProbeSchedule::for_pod(&p).is_err());
}
