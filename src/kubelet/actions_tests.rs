use std::time::Duration;

use super::*;
use crate::kubelet::backoff::Backoff;
use crate::kubelet::plan::{ContainerKind as K, KillReason as KR, StartReason as SR};
use crate::kubelet::probe::{ProbeKind, ProbeResult, ProbeResults};
use crate::kubelet::runtime::{ContainerState, PodRuntimeStatus, SandboxState};
use crate::kubelet::sandbox::SandboxChange;
use crate::kubelet::testutil::*;
use k8s_openapi::api::core::v1::Probe;

fn plan(pod: &Pod, status: &PodRuntimeStatus) -> PodActions {
    plan_with(
        pod,
        status,
        &ProbeResults::new(),
        &Backoff::container_restart(),
        100,
    )
}

fn plan_with(
    pod: &Pod,
    status: &PodRuntimeStatus,
    probes: &ProbeResults,
    backoff: &Backoff,
    now: u64,
) -> PodActions {
    compute_pod_actions(pod, status, probes, backoff, now_at(now))
}

fn names(starts: &[ContainerStart]) -> Vec<&str> {
    starts.iter().map(|s| s.name.as_str()).collect()
}

fn kills(plan: &PodActions) -> Vec<(&str, KR)> {
    plan.containers_to_kill
        .iter()
        .map(|k| (k.name.as_str(), k.reason))
        .collect()
}

fn probes(list: &[(&str, ProbeKind, ProbeResult)]) -> ProbeResults {
    let mut r = ProbeResults::new();
    for (id, kind, result) in list {
        r.set(id, *kind, *result);
    }
    r
}

#[test]
fn a_new_pod_gets_a_sandbox_then_its_first_init_container_or_all_app_containers() {
    // (init containers, app containers, init starts, app starts)
    type Case = (
        Vec<Container>,
        Vec<Container>,
        Vec<&'static str>,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            vec![],
            vec![container("a"), container("b")],
            vec![],
            vec!["a", "b"],
        ),
        (
            vec![container("i1"), container("i2")],
            vec![container("a")],
            vec!["i1"],
            vec![],
        ),
        (
            vec![sidecar("s1"), container("i1")],
            vec![container("a")],
            vec!["s1"],
            vec![],
        ),
    ];
    for (inits, apps, want_init, want_app) in cases {
        let p = pod("Always", inits, apps);
        let got = plan(&p, &PodRuntimeStatus::default());
        assert_eq!(got.create_sandbox, Some(CreateSandbox { attempt: 0 }));
        assert_eq!(got.kill_pod, None, "no sandbox: nothing to kill");
        assert_eq!(names(&got.init_containers_to_start), want_init);
        assert_eq!(names(&got.containers_to_start), want_app);
        assert!(got
            .starts()
            .all(|s| s.restart_count == 0 && s.reason == SR::FirstStart));
    }
}

#[test]
fn init_containers_run_one_at_a_time_in_order() {
    let p = pod(
        "Always",
        vec![container("i1"), container("i2"), container("i3")],
        vec![container("app")],
    );
    // (engine snapshot, next init container, app containers to start)
    let cases: Vec<(Vec<ContainerStatus>, Option<&str>, Vec<&str>)> = vec![
        (vec![], Some("i1"), vec![]),
        (vec![running("i1", 0, 1)], None, vec![]),
        (vec![exited("i1", 0, 0, 1, 2)], Some("i2"), vec![]),
        (
            vec![exited("i1", 0, 0, 1, 2), running("i2", 0, 3)],
            None,
            vec![],
        ),
        (
            vec![exited("i1", 0, 0, 1, 2), exited("i2", 0, 0, 3, 4)],
            Some("i3"),
            vec![],
        ),
        (
            vec![
                exited("i1", 0, 0, 1, 2),
                exited("i2", 0, 0, 3, 4),
                exited("i3", 0, 0, 5, 6),
            ],
            None,
            vec!["app"],
        ),
        // Completed init containers removed from the engine: the last one says it is done.
        (vec![exited("i3", 0, 0, 5, 6)], None, vec!["app"]),
        // The app container ran already: initialization is not repeated.
        (vec![running("app", 0, 7)], None, vec![]),
    ];
    for (containers, want_init, want_app) in cases {
        let got = plan(&p, &ready(containers.clone()));
        assert_eq!(got.kill_pod, None, "{containers:?}");
        assert_eq!(got.create_sandbox, None);
        assert_eq!(
            got.next_init_container().map(|s| s.name.as_str()),
            want_init,
            "{containers:?}"
        );
        assert_eq!(
            got.init_containers_to_start.len(),
            usize::from(want_init.is_some())
        );
        assert_eq!(names(&got.containers_to_start), want_app, "{containers:?}");
    }
}

#[test]
fn a_failed_init_container_restarts_unless_the_policy_is_never() {
    // (policy, exit code, OOM reason, expect restart)
    let cases = [
        ("Always", 1, false, true),
        ("OnFailure", 2, false, true),
        ("Never", 1, false, false),
        ("Never", 0, true, false),
        ("OnFailure", 0, true, true),
    ];
    for (policy, code, oom, restart) in cases {
        let p = pod(policy, vec![container("init")], vec![container("app")]);
        let mut s = exited("init", 0, code, 1, 2);
        if oom {
            s.reason = "OOMKilled".into();
        }
        let got = plan(&p, &ready(vec![s]));
        if restart {
            assert_eq!(got.kill_pod, None, "{policy} {code}");
            let start = got.next_init_container().expect("restarted");
            assert_eq!(
                (start.name.as_str(), start.reason, start.restart_count),
                ("init", SR::Restart, 1)
            );
            assert!(got.done.is_none());
        } else {
            assert_eq!(
                got.kill_pod,
                Some(KillPodReason::InitContainerFailed("init".into()))
            );
            assert!(got.init_containers_to_start.is_empty() && got.containers_to_start.is_empty());
            assert_eq!(got.done, Some(PodOutcome::Failed));
        }
    }
}

#[test]
fn a_sidecar_gates_the_next_init_container_on_its_startup_probe() {
    let p = pod(
        "Always",
        vec![with_startup(sidecar("proxy")), container("migrate")],
        vec![container("app")],
    );
    let status = ready(vec![running("proxy", 0, 1)]);
    // (startup result of the sidecar, next init container, kill)
    let cases = [
        (None, None, None),
        (Some(ProbeResult::Unknown), None, None),
        (Some(ProbeResult::Success), Some("migrate"), None),
        (Some(ProbeResult::Failure), None, Some(KR::StartupFailed)),
    ];
    for (result, next, kill) in cases {
        let r = match result {
            Some(v) => probes(&[("proxy-0", ProbeKind::Startup, v)]),
            None => ProbeResults::new(),
        };
        let got = plan_with(&p, &status, &r, &Backoff::container_restart(), 10);
        assert_eq!(
            got.next_init_container().map(|s| s.name.as_str()),
            next,
            "{result:?}"
        );
        assert_eq!(got.containers_to_kill.first().map(|k| k.reason), kill);
        let restarted: Vec<_> = got.sidecars_to_start().map(|s| s.name.as_str()).collect();
        assert_eq!(restarted.is_empty(), kill.is_none());
        assert!(got.containers_to_start.is_empty(), "the app waits for init");
    }
}

#[test]
fn a_sidecar_without_startup_probe_counts_as_started_once_running() {
    let p = pod(
        "Always",
        vec![sidecar("proxy"), container("migrate")],
        vec![container("app")],
    );
    let got = plan(&p, &ready(vec![running("proxy", 0, 1)]));
    assert_eq!(
        got.next_init_container().map(|s| s.name.as_str()),
        Some("migrate")
    );
    // A sidecar that is the last init container lets the app containers start.
    let p = pod(
        "Always",
        vec![container("migrate"), sidecar("proxy")],
        vec![container("app")],
    );
    let got = plan(
        &p,
        &ready(vec![exited("migrate", 0, 0, 1, 2), running("proxy", 0, 3)]),
    );
    assert!(got.init_containers_to_start.is_empty());
    assert_eq!(names(&got.containers_to_start), ["app"]);
}

#[test]
fn sidecars_are_kept_running_beside_the_app() {
    let p = pod(
        "Never",
        vec![sidecar("log"), with_liveness(sidecar("proxy"))],
        vec![container("app")],
    );
    // (sidecar snapshots, liveness of proxy, sidecars to start, kills)
    type Case = (
        Vec<ContainerStatus>,
        Option<ProbeResult>,
        Vec<&'static str>,
        Vec<(&'static str, KR)>,
    );
    let cases: Vec<Case> = vec![
        (
            vec![running("log", 0, 1), running("proxy", 0, 2)],
            Some(ProbeResult::Success),
            vec![],
            vec![],
        ),
        // An exited sidecar restarts even under restartPolicy Never.
        (
            vec![exited("log", 0, 1, 1, 5), running("proxy", 0, 2)],
            None,
            vec!["log"],
            vec![],
        ),
        (
            vec![running("log", 0, 1), running("proxy", 0, 2)],
            Some(ProbeResult::Failure),
            vec!["proxy"],
            vec![("proxy", KR::LivenessFailed)],
        ),
        // A sidecar whose status vanished after initialization is started again.
        (vec![running("proxy", 0, 2)], None, vec!["log"], vec![]),
    ];
    for (mut containers, liveness, want_start, want_kill) in cases {
        containers.push(running("app", 0, 3));
        let r = match liveness {
            Some(v) => probes(&[("proxy-0", ProbeKind::Liveness, v)]),
            None => ProbeResults::new(),
        };
        let got = plan_with(
            &p,
            &ready(containers),
            &r,
            &Backoff::container_restart(),
            10,
        );
        assert_eq!(got.kill_pod, None);
        let started: Vec<_> = got.sidecars_to_start().map(|s| s.name.as_str()).collect();
        assert_eq!(started, want_start);
        assert_eq!(kills(&got), want_kill);
        assert!(got.containers_to_start.is_empty());
    }
}

#[test]
fn app_containers_follow_the_restart_policy() {
    // (policy, exit code, restart?)
    let cases = [
        ("Always", 0, true),
        ("Always", 1, true),
        ("OnFailure", 0, false),
        ("OnFailure", 1, true),
        ("Never", 0, false),
        ("Never", 1, false),
    ];
    for (policy, code, restart) in cases {
        let p = pod(policy, vec![], vec![container("app"), container("other")]);
        let got = plan(
            &p,
            &ready(vec![exited("app", 3, code, 1, 2), running("other", 0, 1)]),
        );
        if restart {
            let start = &got.containers_to_start[0];
            assert_eq!(
                (start.name.as_str(), start.reason, start.restart_count),
                ("app", SR::Restart, 4)
            );
            assert!(start.backoff_step.is_some());
        } else {
            assert!(got.containers_to_start.is_empty(), "{policy} {code}");
        }
        assert_eq!(
            got.kill_pod, None,
            "the other container keeps the pod alive"
        );
    }
}

#[test]
fn a_pod_whose_containers_are_all_done_is_finished() {
    // (policy, exit codes, outcome)
    let cases = [
        ("Never", vec![0, 0], Some(PodOutcome::Succeeded)),
        ("Never", vec![0, 1], Some(PodOutcome::Failed)),
        ("OnFailure", vec![0, 0], Some(PodOutcome::Succeeded)),
        ("OnFailure", vec![0, 1], None),
        ("Always", vec![0, 0], None),
    ];
    for (policy, codes, outcome) in cases {
        let p = pod(
            policy,
            vec![sidecar("proxy")],
            vec![container("a"), container("b")],
        );
        let got = plan(
            &p,
            &ready(vec![
                running("proxy", 0, 1),
                exited("a", 0, codes[0], 2, 5),
                exited("b", 0, codes[1], 2, 5),
            ]),
        );
        assert_eq!(got.done, outcome, "{policy} {codes:?}");
        if outcome.is_some() {
            assert_eq!(got.kill_pod, Some(KillPodReason::Completed));
            // Sidecars do not keep a finished pod alive.
            assert!(got.init_containers_to_start.is_empty());
        } else {
            assert_eq!(got.kill_pod, None);
        }
    }
}

#[test]
fn probe_failures_and_spec_changes_kill_running_containers() {
    // (policy, probe results, changed image, kill reason, restarted, message)
    let cases = [
        (
            "Always",
            Some((ProbeKind::Liveness, ProbeResult::Failure)),
            false,
            Some(KR::LivenessFailed),
            true,
            "Container app failed liveness probe, will be restarted",
        ),
        (
            "OnFailure",
            Some((ProbeKind::Startup, ProbeResult::Failure)),
            false,
            Some(KR::StartupFailed),
            true,
            "Container app failed startup probe, will be restarted",
        ),
        (
            "Never",
            Some((ProbeKind::Liveness, ProbeResult::Failure)),
            false,
            Some(KR::LivenessFailed),
            false,
            "Container app failed liveness probe",
        ),
        (
            "Never",
            None,
            true,
            Some(KR::SpecChanged),
            true,
            "Container app definition changed, will be restarted",
        ),
        (
            "Always",
            Some((ProbeKind::Liveness, ProbeResult::Success)),
            false,
            None,
            false,
            "",
        ),
        (
            "Always",
            Some((ProbeKind::Readiness, ProbeResult::Failure)),
            false,
            None,
            false,
            "",
        ),
    ];
    for (policy, result, changed, reason, restarted, message) in cases {
        let mut app = with_startup(with_liveness(container("app")));
        if changed {
            app.image = Some("busybox:2".into());
        }
        let p = pod(policy, vec![], vec![app, container("other")]);
        let r = match result {
            Some((kind, v)) => probes(&[("app-0", kind, v)]),
            None => ProbeResults::new(),
        };
        let got = plan_with(
            &p,
            &ready(vec![running("app", 0, 1), running("other", 0, 1)]),
            &r,
            &Backoff::container_restart(),
            10,
        );
        assert_eq!(
            got.containers_to_kill.first().map(|k| k.reason),
            reason,
            "{policy} {result:?}"
        );
        if let Some(k) = got.containers_to_kill.first() {
            assert_eq!(k.message, message);
            assert_eq!(k.id, "app-0");
        }
        assert_eq!(
            names(&got.containers_to_start),
            if restarted { vec!["app"] } else { vec![] }
        );
        if restarted {
            assert_eq!(got.containers_to_start[0].restart_count, 1);
            assert_eq!(got.containers_to_start[0].reason, SR::Replaced);
        }
        assert_eq!(got.kill_pod, None);
    }
}

#[test]
fn a_liveness_kill_under_never_of_the_only_container_ends_the_pod() {
    let p = pod("Never", vec![], vec![with_liveness(container("app"))]);
    let r = probes(&[("app-0", ProbeKind::Liveness, ProbeResult::Failure)]);
    let got = plan_with(
        &p,
        &ready(vec![running("app", 0, 1)]),
        &r,
        &Backoff::container_restart(),
        10,
    );
    assert_eq!(got.kill_pod, Some(KillPodReason::Completed));
    assert_eq!(got.done, Some(PodOutcome::Failed));
}

#[test]
fn unknown_and_created_containers_are_started_again() {
    let p = pod("Never", vec![], vec![container("a"), container("b")]);
    let got = plan(
        &p,
        &ready(vec![
            instance("a", 0, ContainerState::Unknown, 1),
            instance("b", 0, ContainerState::Created, 1),
        ]),
    );
    assert_eq!(kills(&got), [("a", KR::Unknown)]);
    assert_eq!(
        got.containers_to_kill[0].message,
        "Container is in \"unknown\" state, try killing it before restart"
    );
    let reasons: Vec<_> = got
        .containers_to_start
        .iter()
        .map(|s| (s.name.as_str(), s.reason))
        .collect();
    assert_eq!(reasons, [("a", SR::Unknown), ("b", SR::NotStarted)]);
}

#[test]
fn an_unknown_init_container_is_killed_and_restarted_or_fails_the_pod() {
    for (policy, fails) in [("Always", false), ("Never", true)] {
        let p = pod(policy, vec![container("init")], vec![container("app")]);
        let got = plan(
            &p,
            &ready(vec![instance("init", 0, ContainerState::Unknown, 1)]),
        );
        if fails {
            assert_eq!(got.done, Some(PodOutcome::Failed));
        } else {
            assert_eq!(kills(&got), [("init", KR::Unknown)]);
            assert_eq!(
                got.next_init_container().map(|s| s.reason),
                Some(SR::Unknown)
            );
        }
    }
}

#[test]
fn a_dead_sandbox_is_replaced_unless_the_pod_is_over() {
    let dead = |containers| PodRuntimeStatus {
        sandboxes: vec![sandbox(0, SandboxState::NotReady)],
        containers,
    };
    // (policy, inits, snapshot, create?, init starts, app starts, done)
    type Case = (
        &'static str,
        Vec<Container>,
        PodRuntimeStatus,
        bool,
        Vec<&'static str>,
        Vec<&'static str>,
        Option<PodOutcome>,
    );
    let cases: Vec<Case> = vec![
        (
            "Always",
            vec![],
            dead(vec![exited("app", 0, 0, 1, 2)]),
            true,
            vec![],
            vec!["app"],
            None,
        ),
        (
            "Always",
            vec![container("init")],
            dead(vec![exited("init", 0, 0, 1, 2), exited("app", 0, 0, 3, 4)]),
            true,
            vec!["init"],
            vec![],
            None,
        ),
        (
            "Never",
            vec![],
            dead(vec![exited("app", 0, 1, 1, 2)]),
            false,
            vec![],
            vec![],
            Some(PodOutcome::Failed),
        ),
        (
            "Never",
            vec![],
            dead(vec![]),
            true,
            vec![],
            vec!["app"],
            None,
        ),
        (
            "OnFailure",
            vec![],
            dead(vec![exited("app", 0, 0, 1, 2)]),
            false,
            vec![],
            vec![],
            Some(PodOutcome::Succeeded),
        ),
        (
            "OnFailure",
            vec![],
            dead(vec![exited("app", 0, 1, 1, 2)]),
            true,
            vec![],
            vec!["app"],
            None,
        ),
    ];
    for (policy, inits, status, create, want_init, want_app, done) in cases {
        let p = pod(policy, inits, vec![container("app")]);
        let got = plan(&p, &status);
        assert_eq!(
            got.kill_pod,
            Some(KillPodReason::SandboxChanged(SandboxChange::NotReady)),
            "{policy}"
        );
        assert_eq!(
            got.create_sandbox.map(|c| c.attempt),
            create.then_some(1),
            "{policy}"
        );
        assert_eq!(names(&got.init_containers_to_start), want_init);
        assert_eq!(names(&got.containers_to_start), want_app);
        assert_eq!(got.done, done);
        assert_eq!(got.sandbox_id, "sb0");
    }
}

#[test]
fn sandbox_changes_that_force_a_new_sandbox() {
    let p = pod("Always", vec![], vec![container("app")]);
    let mut no_ip = ready(vec![running("app", 0, 1)]);
    no_ip.sandboxes[0].ip = None;
    let mut host = ready(vec![running("app", 0, 1)]);
    host.sandboxes[0].host_network = true;
    let mut two = ready(vec![running("app", 0, 1)]);
    two.sandboxes.push(sandbox(1, SandboxState::Ready));
    for (status, change, attempt) in [
        (no_ip, SandboxChange::NoIp, 1),
        (host, SandboxChange::NetworkChanged, 1),
        (two, SandboxChange::SeveralReady, 2),
    ] {
        let got = plan(&p, &status);
        assert_eq!(got.kill_pod, Some(KillPodReason::SandboxChanged(change)));
        assert_eq!(got.create_sandbox, Some(CreateSandbox { attempt }));
    }
}

#[test]
fn a_changed_manifest_replaces_the_pod_from_scratch() {
    let mut p = pod("Always", vec![container("init")], vec![container("app")]);
    p.metadata.uid = Some("uid-2".into());
    let status = ready(vec![exited("init", 0, 0, 1, 2), running("app", 5, 3)]);
    let got = plan(&p, &status);
    assert_eq!(
        got.kill_pod,
        Some(KillPodReason::SandboxChanged(SandboxChange::PodChanged))
    );
    assert_eq!(got.create_sandbox, Some(CreateSandbox { attempt: 1 }));
    let start = got.next_init_container().expect("init first");
    assert_eq!((start.name.as_str(), start.restart_count), ("init", 0));
    assert!(start.backoff_step.is_none());
}

#[test]
fn a_terminating_pod_stops_apps_then_sidecars_in_reverse() {
    let mut p = pod(
        "Always",
        vec![sidecar("s1"), container("init"), sidecar("s2")],
        vec![container("a"), container("b")],
    );
    p.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts(10)));
    let status = ready(vec![
        running("s1", 0, 1),
        exited("init", 0, 0, 1, 2),
        running("s2", 0, 3),
        running("a", 0, 4),
        exited("b", 0, 1, 4, 5),
    ]);
    let got = plan(&p, &status);
    assert_eq!(got.kill_pod, Some(KillPodReason::Terminating));
    let order: Vec<_> = got
        .containers_to_kill
        .iter()
        .map(|k| (k.name.as_str(), k.kind))
        .collect();
    assert_eq!(
        order,
        [("a", K::App), ("s2", K::Sidecar), ("s1", K::Sidecar)]
    );
    assert!(got
        .containers_to_kill
        .iter()
        .all(|k| k.reason == KR::PodTerminating));
    assert!(
        got.starts().next().is_none(),
        "a deleted pod restarts nothing"
    );
    // Once everything is stopped there is nothing left to do.
    let mut stopped = status.clone();
    stopped.sandboxes[0].state = SandboxState::NotReady;
    stopped
        .containers
        .retain(|c| c.state != ContainerState::Running);
    assert!(plan(&p, &stopped).is_noop());
}

#[test]
fn grace_periods_follow_kubelet() {
    let mut app = container("app");
    app.liveness_probe = Some(Probe {
        termination_grace_period_seconds: Some(5),
        ..exec_probe()
    });
    let mut p = pod("Always", vec![], vec![app.clone()]);
    // (pod terminationGracePeriodSeconds, deletion grace, reason, expected)
    let cases = [
        (None, None, KR::SpecChanged, 30),
        (Some(60), None, KR::SpecChanged, 60),
        (Some(60), None, KR::LivenessFailed, 5),
        (Some(60), None, KR::StartupFailed, 60),
        (Some(0), None, KR::PodTerminating, 2),
        (Some(60), Some(7), KR::LivenessFailed, 7),
    ];
    for (pod_grace, deletion, reason, want) in cases {
        if let Some(spec) = p.spec.as_mut() {
            spec.termination_grace_period_seconds = pod_grace;
        }
        p.metadata.deletion_grace_period_seconds = deletion;
        assert_eq!(
            grace_period(&p, &app, reason),
            want,
            "{pod_grace:?} {deletion:?} {reason:?}"
        );
    }
}

#[test]
fn a_crashing_container_waits_out_a_growing_back_off() {
    let p = pod("Always", vec![], vec![container("app")]);
    let mut backoff = Backoff::container_restart();
    let mut attempt = 0;
    let mut t: u64 = 0;
    // Every instance crashes one second after it starts; record when each restart happens.
    let mut restarts = Vec::new();
    let mut last_finish = 0;
    while restarts.len() < 7 {
        let status = ready(vec![exited(
            "app",
            attempt,
            1,
            last_finish as i64 - 1,
            last_finish as i64,
        )]);
        let got = plan_with(&p, &status, &ProbeResults::new(), &backoff, t);
        if let Some(start) = got.containers_to_start.first() {
            assert!(got.backing_off.is_empty());
            got.record_backoff(&mut backoff, now_at(t));
            restarts.push(t - last_finish);
            attempt = start.restart_count;
            last_finish = t + 1;
            t = last_finish;
        } else {
            let wait = &got.backing_off[0];
            assert_eq!(wait.name, "app");
            assert!(wait.remaining > Duration::ZERO);
            t += 1;
        }
    }
    // The first restart is immediate, then 10 s, 20 s ... capped at 300 s after the exit.
    assert_eq!(restarts, [0, 10, 20, 40, 80, 160, 300]);
}

#[test]
fn crash_loop_back_off_reports_kubelet_message_and_remaining_delay() {
    let p = pod("OnFailure", vec![], vec![container("app")]);
    let mut backoff = Backoff::container_restart();
    let status = ready(vec![exited("app", 2, 1, 40, 50)]);
    // Two earlier steps: the delay is now 20 s, then this exit makes it 40 s.
    let event = now_at(50).mono;
    backoff.next(&BackoffKey::new(UID, "app"), event, event);
    backoff.next(&BackoffKey::new(UID, "app"), event, event);
    backoff.next(&BackoffKey::new(UID, "app"), event, event);
    let got = plan_with(&p, &status, &ProbeResults::new(), &backoff, 65);
    assert!(got.containers_to_start.is_empty());
    assert_eq!(
        got.kill_pod, None,
        "a container in back-off keeps the pod alive"
    );
    let wait = &got.backing_off[0];
    assert_eq!(wait.delay, Duration::from_secs(40));
    assert_eq!(wait.remaining, Duration::from_secs(25));
    assert_eq!(
        wait.message,
        "back-off 40s restarting failed container=app pod=web_default(uid-1)"
    );
    // Past the delay the container starts.
    let got = plan_with(&p, &status, &ProbeResults::new(), &backoff, 90);
    assert_eq!(names(&got.containers_to_start), ["app"]);
}

#[test]
fn an_init_container_in_back_off_waits_too() {
    let p = pod("Always", vec![container("init")], vec![container("app")]);
    let mut backoff = Backoff::container_restart();
    let status = ready(vec![exited("init", 1, 1, 1, 2)]);
    let event = now_at(2).mono;
    backoff.next(&BackoffKey::new(UID, "init"), event, event);
    let got = plan_with(&p, &status, &ProbeResults::new(), &backoff, 5);
    assert!(got.init_containers_to_start.is_empty());
    assert_eq!(got.backing_off[0].kind, K::Init);
    assert_eq!(got.backing_off[0].remaining, Duration::from_secs(7));
}

#[test]
fn a_running_pod_with_nothing_to_do_is_a_noop() {
    let p = pod(
        "Always",
        vec![container("init"), sidecar("proxy")],
        vec![with_liveness(container("app"))],
    );
    let r = probes(&[("app-0", ProbeKind::Liveness, ProbeResult::Success)]);
    let status = ready(vec![
        exited("init", 0, 0, 1, 2),
        running("proxy", 0, 3),
        running("app", 0, 4),
    ]);
    let got = plan_with(&p, &status, &r, &Backoff::container_restart(), 100);
    assert!(got.is_noop(), "{got:?}");
    assert!(got.done.is_none());
}
