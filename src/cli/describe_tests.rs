use super::*;
use k8s_openapi::api::core::v1::{
    ContainerPort, ContainerStateRunning, ContainerStateTerminated, EmptyDirVolumeSource,
    EnvVarSource, EventSource, ExecAction, GRPCAction, HTTPGetAction, ObjectFieldSelector,
    ObjectReference, PodCondition, PodIP, PodSpec, PodStatus, ResourceRequirements,
    TCPSocketAction, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn time(s: &str) -> Option<Time> {
    Some(Time(ts(s)))
}

#[test]
fn tabwriter_aligns_blocks_as_go() {
    // Go: tabwriter.NewWriter(out, 0, 8, 2, ' ', 0) over these lines.
    let text = "Name:\tweb\nService Account:\tdefault\nIPs:\n  IP:\t10.0.0.1\n\
                Conditions:\n  Type\tStatus\n  Initialized \tTrue \n  Ready \tFalse \n";
    assert_eq!(
        tabwrite(text, 2),
        "Name:             web\n\
         Service Account:  default\n\
         IPs:\n  IP:  10.0.0.1\n\
         Conditions:\n  Type          Status\n  Initialized   True \n  Ready         False \n"
    );
    // Nested columns: the second is aligned only among the lines that have it.
    assert_eq!(
        tabwrite("a\tb\tc\nlonger\tb\n", 2),
        "a       b  c\nlonger  b\n"
    );
}

#[test]
fn probes_read_as_kubectl() {
    let http = Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(8080),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        describe_probe(&http),
        "http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3"
    );
    let exec = Probe {
        exec: Some(ExecAction {
            command: Some(vec!["cat".into(), "/tmp/ready".into()]),
        }),
        initial_delay_seconds: Some(5),
        period_seconds: Some(2),
        ..Default::default()
    };
    assert_eq!(
        describe_probe(&exec),
        "exec [cat /tmp/ready] delay=5s timeout=1s period=2s #success=1 #failure=3"
    );
    let tcp = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        failure_threshold: Some(1),
        ..Default::default()
    };
    assert_eq!(
        describe_probe(&tcp),
        "tcp-socket :http delay=0s timeout=1s period=10s #success=1 #failure=1"
    );
    let grpc = Probe {
        grpc: Some(GRPCAction {
            port: 9000,
            service: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        describe_probe(&grpc),
        "grpc <pod>:9000  delay=0s timeout=1s period=10s #success=1 #failure=3"
    );
}

fn sample() -> (Pod, Vec<Event>) {
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            annotations: Some(
                [
                    ("kubernetes.io/config.hash".to_string(), "u1".to_string()),
                    (
                        "kubernetes.io/config.source".to_string(),
                        "file".to_string(),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("edge-1".into()),
            volumes: Some(vec![Volume {
                name: "work".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            }]),
            init_containers: Some(vec![Container {
                name: "init".into(),
                image: Some("busybox".into()),
                command: Some(vec!["sh".into(), "-c".into(), "echo hi".into()]),
                ..Default::default()
            }]),
            containers: vec![Container {
                name: "app".into(),
                image: Some("busybox".into()),
                args: Some(vec!["sleep".into(), "3000".into()]),
                ports: Some(vec![ContainerPort {
                    container_port: 8080,
                    ..Default::default()
                }]),
                resources: Some(ResourceRequirements {
                    limits: Some([("memory".to_string(), Quantity("128Mi".into()))].into()),
                    requests: Some(
                        [
                            ("cpu".to_string(), Quantity("250m".into())),
                            ("memory".to_string(), Quantity("64Mi".into())),
                        ]
                        .into(),
                    ),
                    ..Default::default()
                }),
                readiness_probe: Some(Probe {
                    exec: Some(ExecAction {
                        command: Some(vec!["cat".into(), "/tmp/ready".into()]),
                    }),
                    ..Default::default()
                }),
                env: Some(vec![
                    EnvVar {
                        name: "MODE".into(),
                        value: Some("prod".into()),
                        ..Default::default()
                    },
                    EnvVar {
                        name: "POD_NAME".into(),
                        value_from: Some(EnvVarSource {
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.name".into(),
                                api_version: None,
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ]),
                volume_mounts: Some(vec![VolumeMount {
                    name: "work".into(),
                    mount_path: "/work".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            host_ip: Some("192.168.1.2".into()),
            pod_ip: Some("10.88.0.5".into()),
            pod_ips: Some(vec![PodIP {
                ip: "10.88.0.5".into(),
            }]),
            start_time: time("2026-12-01T10:00:00Z"),
            qos_class: Some("Burstable".into()),
            conditions: Some(
                ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
                    .iter()
                    .map(|t| PodCondition {
                        type_: t.to_string(),
                        status: "True".into(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            init_container_statuses: Some(vec![ContainerStatus {
                name: "init".into(),
                container_id: Some("peapod://c0".into()),
                image_id: "sha256:aa".into(),
                ready: true,
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 0,
                        reason: Some("Completed".into()),
                        started_at: time("2026-12-01T10:00:01Z"),
                        finished_at: time("2026-12-01T10:00:02Z"),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            container_statuses: Some(vec![ContainerStatus {
                name: "app".into(),
                container_id: Some("peapod://c1".into()),
                image_id: "sha256:aa".into(),
                ready: true,
                restart_count: 1,
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: time("2026-12-01T10:00:05Z"),
                    }),
                    ..Default::default()
                }),
                last_state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 137,
                        reason: Some("Error".into()),
                        started_at: time("2026-12-01T10:00:03Z"),
                        finished_at: time("2026-12-01T10:00:04Z"),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    };
    let ev = |reason: &str, kind: &str, first: &str, last: &str, count: i32, msg: &str| Event {
        involved_object: ObjectReference {
            kind: Some("Pod".into()),
            name: Some("web".into()),
            uid: Some("u1".into()),
            ..Default::default()
        },
        reason: Some(reason.into()),
        type_: Some(kind.into()),
        message: Some(msg.into()),
        count: Some(count),
        first_timestamp: time(first),
        last_timestamp: time(last),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some("edge-1".into()),
        }),
        ..Default::default()
    };
    let events = vec![
        ev(
            "Pulled",
            "Normal",
            "2026-12-01T10:00:00Z",
            "2026-12-01T10:00:03Z",
            3,
            "Container image \"busybox\" already present on machine",
        ),
        ev(
            "Started",
            "Normal",
            "2026-12-01T10:00:05Z",
            "2026-12-01T10:00:05Z",
            1,
            "Started container app",
        ),
    ];
    (pod, events)
}

#[test]
fn describe_pod_as_kubectl() {
    let (pod, events) = sample();
    let got = describe_pod(&pod, &events, ts("2026-12-01T10:02:05Z"));
    let want = "\
Name:         web
Namespace:    default
Priority:     0
Node:         edge-1/192.168.1.2
Start Time:   Tue, 01 Dec 2026 10:00:00 +0000
Labels:       app=web
Annotations:  kubernetes.io/config.hash: u1
              kubernetes.io/config.source: file
Status:       Running
IP:           10.88.0.5
IPs:
  IP:  10.88.0.5
Init Containers:
  init:
    Container ID:  peapod://c0
    Image:         busybox
    Image ID:      sha256:aa
    Port:          <none>
    Host Port:     <none>
    Command:
      sh
      -c
      echo hi
    State:          Terminated
      Reason:       Completed
      Exit Code:    0
      Started:      Tue, 01 Dec 2026 10:00:01 +0000
      Finished:     Tue, 01 Dec 2026 10:00:02 +0000
    Ready:          True
    Restart Count:  0
    Environment:    <none>
    Mounts:         <none>
Containers:
  app:
    Container ID:  peapod://c1
    Image:         busybox
    Image ID:      sha256:aa
    Port:          8080/TCP
    Host Port:     0/TCP
    Args:
      sleep
      3000
    State:          Running
      Started:      Tue, 01 Dec 2026 10:00:05 +0000
    Last State:     Terminated
      Reason:       Error
      Exit Code:    137
      Started:      Tue, 01 Dec 2026 10:00:03 +0000
      Finished:     Tue, 01 Dec 2026 10:00:04 +0000
    Ready:          True
    Restart Count:  1
    Limits:
      memory:  128Mi
    Requests:
      cpu:      250m
      memory:   64Mi
    Readiness:  exec [cat /tmp/ready] delay=0s timeout=1s period=10s #success=1 #failure=3
    Environment:
      MODE:      prod
      POD_NAME:  web (v1:metadata.name)
    Mounts:
      /work from work (rw)
Conditions:
  Type              Status
  Initialized       True 
  Ready             True 
  ContainersReady   True 
  PodScheduled      True 
Volumes:
  work:
    Type:        EmptyDir (a temporary directory that shares a pod's lifetime)
    Medium:      
    SizeLimit:   <unset>
QoS Class:       Burstable
Node-Selectors:  <none>
Tolerations:     <none>
Events:
  Type    Reason   Age                  From     Message
  ----    ------   ----                 ----     -------
  Normal  Pulled   2m2s (x3 over 2m5s)  kubelet  Container image \"busybox\" already present on machine
  Normal  Started  2m                   kubelet  Started container app
";
    if got != want {
        panic!("got:\n{got}\n--- want:\n{want}");
    }
}

#[test]
fn no_events_and_no_ips() {
    let (mut pod, _) = sample();
    pod.status.as_mut().unwrap().pod_ips = None;
    let got = describe_pod(&pod, &[], ts("2026-12-01T10:02:05Z"));
    assert!(
        got.contains("\nIP:           10.88.0.5\nIPs:          <none>\n"),
        "{got}"
    );
    assert!(got.ends_with("\nEvents:          <none>\n"), "{got}");
}
