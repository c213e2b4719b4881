//! `peapod get pods`: kubectl's pod table (NAME READY STATUS RESTARTS AGE; `-o wide` adds IP
//! NODE NOMINATED NODE READINESS GATES), with the STATUS column computed exactly as kubectl's
//! `printPod` does, from the pod's status alone.

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;

use super::duration::{human, since};
use super::table;

/// The table for `pods` at `now`. `namespace` adds kubectl's leading NAMESPACE column (`-A`).
pub fn pods_table(pods: &[Pod], now: Timestamp, wide: bool, namespace: bool) -> String {
    let mut header: Vec<String> = Vec::new();
    if namespace {
        header.push("NAMESPACE".into());
    }
    header.extend(["NAME", "READY", "STATUS", "RESTARTS", "AGE"].map(String::from));
    if wide {
        header.extend(["IP", "NODE", "NOMINATED NODE", "READINESS GATES"].map(String::from));
    }
    let mut rows = vec![header];
    for p in pods {
        let mut r = Vec::new();
        if namespace {
            r.push(p.metadata.namespace.clone().unwrap_or_default());
        }
        r.extend(pod_row(p, now, wide));
        rows.push(r);
    }
    table::render(&rows)
}

/// One row of kubectl's pod table (without the namespace).
pub fn pod_row(pod: &Pod, now: Timestamp, wide: bool) -> Vec<String> {
    let s = summarize(pod);
    let restarts = match (s.restarts, s.last_restart) {
        (0, _) | (_, None) => s.restarts.to_string(),
        (n, Some(t)) => format!("{n} ({} ago)", human(now.as_second() - t.as_second())),
    };
    let mut row = vec![
        pod.metadata.name.clone().unwrap_or_default(),
        format!("{}/{}", s.ready, s.total),
        s.reason,
        restarts,
        since(pod.metadata.creation_timestamp.as_ref().map(|t| &t.0), now),
    ];
    if wide {
        let status = pod.status.as_ref();
        let ip = status
            .and_then(|s| s.pod_ips.as_ref())
            .and_then(|ips| ips.first())
            .map(|i| i.ip.clone())
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| "<none>".into());
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "<none>".into());
        let gates = pod
            .spec
            .as_ref()
            .and_then(|s| s.readiness_gates.as_ref())
            .filter(|g| !g.is_empty())
            .map(|g| {
                let conds = status.and_then(|s| s.conditions.as_ref());
                let ok = g
                    .iter()
                    .filter(|gate| {
                        conds.is_some_and(|c| {
                            c.iter()
                                .any(|c| c.type_ == gate.condition_type && c.status == "True")
                        })
                    })
                    .count();
                format!("{ok}/{}", g.len())
            })
            .unwrap_or_else(|| "<none>".into());
        row.extend([ip, node, "<none>".into(), gates]);
    }
    row
}

/// What the READY, STATUS and RESTARTS columns show.
#[derive(Debug, PartialEq, Eq)]
pub struct PodSummary {
    pub ready: usize,
    pub total: usize,
    pub reason: String,
    pub restarts: i64,
    pub last_restart: Option<Timestamp>,
}

fn restartable(c: Option<&Container>) -> bool {
    c.and_then(|c| c.restart_policy.as_deref()) == Some("Always")
}

fn later(a: &mut Option<Timestamp>, cs: &ContainerStatus) {
    let t = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.finished_at.as_ref())
        .map(|t| t.0);
    if let Some(t) = t {
        if a.is_none_or(|a| a < t) {
            *a = Some(t);
        }
    }
}

/// kubectl's `printPod`, column by column: the pod's phase (or status reason), overridden
/// by the first init container that has not finished (`Init:N/M`, `Init:<reason>`), then by
/// the app containers' waiting or terminated reasons (the first container's wins, as kubectl
/// walks them from the last), `Completed` turned back to Running/NotReady while one still
/// runs, and `Terminating` for a pod being deleted.
pub fn summarize(pod: &Pod) -> PodSummary {
    let empty = Default::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let status = pod.status.clone().unwrap_or_default();
    let init_specs = spec.init_containers.as_deref().unwrap_or(&[]);
    let find_init = |name: &str| init_specs.iter().find(|c| c.name == name);
    let total = spec.containers.len() + init_specs.iter().filter(|c| restartable(Some(c))).count();
    let mut ready = 0;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;
    let mut reason = status
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .or(status.phase.clone())
        .unwrap_or_default();
    if status
        .conditions
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
    {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    let init_statuses = status.init_container_statuses.as_deref().unwrap_or(&[]);
    for (i, c) in init_statuses.iter().enumerate() {
        restarts += i64::from(c.restart_count);
        later(&mut last_restart, c);
        let sidecar = restartable(find_init(&c.name));
        if sidecar {
            sidecar_restarts += i64::from(c.restart_count);
            later(&mut last_sidecar_restart, c);
        }
        let state = c.state.clone().unwrap_or_default();
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if sidecar && c.started == Some(true) {
            if c.ready {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = &state.terminated {
            reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None if t.signal.unwrap_or(0) != 0 => {
                    format!("Init:Signal:{}", t.signal.unwrap_or(0))
                }
                None => format!("Init:ExitCode:{}", t.exit_code),
            };
        } else if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = status
        .conditions
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .any(|c| c.type_ == "Initialized" && c.status == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in status
            .container_statuses
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .rev()
        {
            restarts += i64::from(c.restart_count);
            later(&mut last_restart, c);
            let state = c.state.clone().unwrap_or_default();
            let waiting = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .filter(|r| !r.is_empty());
            let terminated = state.terminated.as_ref();
            if let Some(r) = waiting {
                reason = r;
            } else if let Some(t) = terminated {
                reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                    Some(r) => r.to_string(),
                    None if t.signal.unwrap_or(0) != 0 => {
                        format!("Signal:{}", t.signal.unwrap_or(0))
                    }
                    None => format!("ExitCode:{}", t.exit_code),
                };
            } else if c.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = status
                .conditions
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }

    let terminal = matches!(status.phase.as_deref(), Some("Succeeded") | Some("Failed"));
    if pod.metadata.deletion_timestamp.is_some() {
        if status.reason.as_deref() == Some("NodeLost") {
            reason = "Unknown".into();
        } else if !terminal {
            reason = "Terminating".into();
        }
    }
    PodSummary {
        ready,
        total,
        reason,
        restarts,
        last_restart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        PodCondition, PodIP, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            image: Some("busybox".into()),
            ..Default::default()
        }
    }

    fn sidecar(name: &str) -> Container {
        Container {
            restart_policy: Some("Always".into()),
            ..container(name)
        }
    }

    fn running(name: &str, ready: bool, restarts: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            ready,
            restart_count: restarts,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(ts("2026-12-01T10:00:00Z"))),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn waiting(name: &str, reason: &str, restarts: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            restart_count: restarts,
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn terminated(name: &str, code: i32, reason: &str, signal: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    reason: (!reason.is_empty()).then(|| reason.into()),
                    signal: (signal != 0).then_some(signal),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn cond(t: &str, s: &str) -> PodCondition {
        PodCondition {
            type_: t.into(),
            status: s.into(),
            ..Default::default()
        }
    }

    struct Case {
        name: &'static str,
        init: Vec<Container>,
        apps: Vec<Container>,
        phase: &'static str,
        init_st: Vec<ContainerStatus>,
        app_st: Vec<ContainerStatus>,
        conds: Vec<PodCondition>,
        deleting: bool,
        want: (&'static str, usize, usize, i64),
    }

    fn pod(c: &Case) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("default".into()),
                creation_timestamp: Some(Time(ts("2026-12-01T10:00:00Z"))),
                deletion_timestamp: c.deleting.then(|| Time(ts("2026-12-01T10:05:00Z"))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                init_containers: Some(c.init.clone()),
                containers: c.apps.clone(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(c.phase.into()),
                init_container_statuses: Some(c.init_st.clone()),
                container_statuses: Some(c.app_st.clone()),
                conditions: Some(c.conds.clone()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn status_column_matches_kubectl() {
        let cases = vec![
            Case {
                name: "running and ready",
                init: vec![],
                apps: vec![container("a")],
                phase: "Running",
                init_st: vec![],
                app_st: vec![running("a", true, 0)],
                conds: vec![cond("Initialized", "True"), cond("Ready", "True")],
                deleting: false,
                want: ("Running", 1, 1, 0),
            },
            Case {
                name: "running, not ready",
                init: vec![],
                apps: vec![container("a"), container("b")],
                phase: "Running",
                init_st: vec![],
                app_st: vec![running("a", true, 0), running("b", false, 2)],
                conds: vec![cond("Initialized", "True")],
                deleting: false,
                want: ("Running", 1, 2, 2),
            },
            Case {
                name: "crash loop",
                init: vec![],
                apps: vec![container("a")],
                phase: "Running",
                init_st: vec![],
                app_st: vec![waiting("a", "CrashLoopBackOff", 4)],
                conds: vec![cond("Initialized", "True")],
                deleting: false,
                want: ("CrashLoopBackOff", 0, 1, 4),
            },
            Case {
                name: "second init container running",
                init: vec![container("i1"), container("i2")],
                apps: vec![container("a")],
                phase: "Pending",
                init_st: vec![terminated("i1", 0, "Completed", 0), running("i2", false, 0)],
                app_st: vec![waiting("a", "PodInitializing", 0)],
                conds: vec![cond("Initialized", "False")],
                deleting: false,
                want: ("Init:1/2", 0, 1, 0),
            },
            Case {
                name: "init container failed",
                init: vec![container("i1")],
                apps: vec![container("a")],
                phase: "Failed",
                init_st: vec![terminated("i1", 3, "Error", 0)],
                app_st: vec![waiting("a", "PodInitializing", 0)],
                conds: vec![cond("Initialized", "False")],
                deleting: false,
                want: ("Init:Error", 0, 1, 0),
            },
            Case {
                name: "init container killed by a signal, no reason",
                init: vec![container("i1")],
                apps: vec![container("a")],
                phase: "Pending",
                init_st: vec![terminated("i1", 137, "", 9)],
                app_st: vec![],
                conds: vec![],
                deleting: false,
                want: ("Init:Signal:9", 0, 1, 0),
            },
            Case {
                name: "init container in back-off",
                init: vec![container("i1")],
                apps: vec![container("a")],
                phase: "Pending",
                init_st: vec![waiting("i1", "CrashLoopBackOff", 3)],
                app_st: vec![],
                conds: vec![],
                deleting: false,
                want: ("Init:CrashLoopBackOff", 0, 1, 3),
            },
            Case {
                name: "started sidecar counts as ready and does not block",
                init: vec![sidecar("s")],
                apps: vec![container("a")],
                phase: "Running",
                init_st: vec![running("s", true, 1)],
                app_st: vec![running("a", true, 0)],
                conds: vec![cond("Initialized", "True"), cond("Ready", "True")],
                deleting: false,
                want: ("Running", 2, 2, 1),
            },
            Case {
                name: "job done",
                init: vec![],
                apps: vec![container("a")],
                phase: "Succeeded",
                init_st: vec![],
                app_st: vec![terminated("a", 0, "Completed", 0)],
                conds: vec![cond("Initialized", "True")],
                deleting: false,
                want: ("Completed", 0, 1, 0),
            },
            Case {
                name: "one completed, one still running",
                init: vec![],
                apps: vec![container("a"), container("b")],
                phase: "Running",
                init_st: vec![],
                app_st: vec![terminated("a", 0, "Completed", 0), running("b", true, 0)],
                conds: vec![cond("Initialized", "True")],
                deleting: false,
                want: ("NotReady", 1, 2, 0),
            },
            Case {
                name: "exited without a reason",
                init: vec![],
                apps: vec![container("a")],
                phase: "Running",
                init_st: vec![],
                app_st: vec![terminated("a", 2, "", 0)],
                conds: vec![cond("Initialized", "True")],
                deleting: false,
                want: ("ExitCode:2", 0, 1, 0),
            },
            Case {
                name: "being deleted",
                init: vec![],
                apps: vec![container("a")],
                phase: "Running",
                init_st: vec![],
                app_st: vec![running("a", true, 0)],
                conds: vec![cond("Initialized", "True"), cond("Ready", "True")],
                deleting: true,
                want: ("Terminating", 1, 1, 0),
            },
            Case {
                name: "pulling",
                init: vec![],
                apps: vec![container("a")],
                phase: "Pending",
                init_st: vec![],
                app_st: vec![waiting("a", "ContainerCreating", 0)],
                conds: vec![],
                deleting: false,
                want: ("ContainerCreating", 0, 1, 0),
            },
        ];
        for c in &cases {
            let s = summarize(&pod(c));
            assert_eq!(
                (s.reason.as_str(), s.ready, s.total, s.restarts),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn restarts_show_the_last_restart_age() {
        let mut st = running("a", true, 3);
        st.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                finished_at: Some(Time(ts("2026-12-01T10:09:15Z"))),
                ..Default::default()
            }),
            ..Default::default()
        });
        let p = pod(&Case {
            name: "",
            init: vec![],
            apps: vec![container("a")],
            phase: "Running",
            init_st: vec![],
            app_st: vec![st],
            conds: vec![cond("Initialized", "True"), cond("Ready", "True")],
            deleting: false,
            want: ("", 0, 0, 0),
        });
        let row = pod_row(&p, ts("2026-12-01T10:10:00Z"), false);
        assert_eq!(row, ["p", "1/1", "Running", "3 (45s ago)", "10m"]);
    }

    #[test]
    fn wide_adds_ip_and_node() {
        let mut p = pod(&Case {
            name: "",
            init: vec![],
            apps: vec![container("a")],
            phase: "Running",
            init_st: vec![],
            app_st: vec![running("a", true, 0)],
            conds: vec![],
            deleting: false,
            want: ("", 0, 0, 0),
        });
        p.status.as_mut().unwrap().pod_ips = Some(vec![PodIP {
            ip: "10.88.0.5".into(),
        }]);
        p.spec.as_mut().unwrap().node_name = Some("edge-1".into());
        let t = pods_table(&[p], ts("2026-12-01T10:00:30Z"), true, true);
        assert_eq!(
            t,
            "NAMESPACE   NAME   READY   STATUS    RESTARTS   AGE   IP          NODE     NOMINATED NODE   READINESS GATES\n\
             default     p      1/1     Running   0          30s   10.88.0.5   edge-1   <none>           <none>\n"
        );
    }
}
