//! GetContainerEvents as the kubelet's evented PLEG uses it: every change of every container,
//! in order, with its pod attached, to every subscriber; a subscriber that stops reading is
//! dropped without holding anything up; a restarted daemon does not replay the past.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use peapod::api::*;
use peapod_integration::*;

const T: Duration = Duration::from_secs(10);

fn kind(ev: &ContainerEventResponse) -> ContainerEventType {
    ContainerEventType::try_from(ev.container_event_type).expect("a known event type")
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

async fn run_sandbox(rt: &mut Rt, config: &PodSandboxConfig) -> String {
    rt.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    })
    .await
    .expect("RunPodSandbox")
    .into_inner()
    .pod_sandbox_id
}

async fn create(rt: &mut Rt, pod: &str, sb: &PodSandboxConfig, c: ContainerConfig) -> String {
    rt.create_container(CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(c),
        sandbox_config: Some(sb.clone()),
    })
    .await
    .expect("CreateContainer")
    .into_inner()
    .container_id
}

async fn start(rt: &mut Rt, id: &str) {
    rt.start_container(StartContainerRequest {
        container_id: id.into(),
    })
    .await
    .expect("StartContainer");
}

async fn stop(rt: &mut Rt, id: &str) {
    rt.stop_container(StopContainerRequest {
        container_id: id.into(),
        timeout: 0,
    })
    .await
    .expect("StopContainer");
}

async fn remove(rt: &mut Rt, id: &str) {
    rt.remove_container(RemoveContainerRequest {
        container_id: id.into(),
    })
    .await
    .expect("RemoveContainer");
}

/// Create, start, stop (SIGKILL), remove: four events.
async fn lifecycle(rt: &mut Rt, pod: &str, sb: &PodSandboxConfig, name: &str) -> String {
    let id = create(
        rt,
        pod,
        sb,
        container_config(name, BUSYBOX, &["sleep", "300"]),
    )
    .await;
    start(rt, &id).await;
    stop(rt, &id).await;
    remove(rt, &id).await;
    id
}

/// Reads events until `n` have come; panics when they do not within `limit` in all.
async fn collect(ev: &mut EventStream, n: usize, limit: Duration) -> Vec<ContainerEventResponse> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match ev.next(left).await {
            Some(e) => out.push(e),
            None => panic!(
                "{} of {n} events came within {limit:?}: {out:#?}",
                out.len()
            ),
        }
    }
    out
}

/// The events of one container, by type, in the order they came.
fn kinds_of(events: &[ContainerEventResponse], id: &str) -> Vec<ContainerEventType> {
    events
        .iter()
        .filter(|e| e.container_id == id)
        .map(kind)
        .collect()
}

const LIFECYCLE: [ContainerEventType; 4] = [
    ContainerEventType::ContainerCreatedEvent,
    ContainerEventType::ContainerStartedEvent,
    ContainerEventType::ContainerStoppedEvent,
    ContainerEventType::ContainerDeletedEvent,
];

#[tokio::test(flavor = "multi_thread")]
async fn a_lifecycle_yields_created_started_stopped_deleted_with_the_pod() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let mut ev = d.events().await;
    let sb = pod_config("events-life", &d.root.join("logs"));
    let pod = run_sandbox(&mut rt, &sb).await;
    // A neighbour that stays: every event of the other container lists it too.
    let stay = create(
        &mut rt,
        &pod,
        &sb,
        container_config("stay", BUSYBOX, &["sleep", "300"]),
    )
    .await;
    start(&mut rt, &stay).await;
    // PodSandboxStatus lists the pod's containers too (evented PLEG reads them there).
    let st = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<_> = st
        .containers_statuses
        .iter()
        .map(|c| (c.id.as_str(), c.state))
        .collect();
    assert_eq!(
        listed,
        [(stay.as_str(), ContainerState::ContainerRunning as i32)]
    );
    assert!(st.timestamp > 0);
    let id = lifecycle(&mut rt, &pod, &sb, "life").await;

    // The sandbox's own events (its ID as the container ID, as containerd sends them) come
    // first: RunPodSandbox made and started it.
    let all = collect(&mut ev, 8, T).await;
    assert_eq!(kinds_of(&all, &pod), &LIFECYCLE[..2]);
    assert_eq!(all[0].pod_sandbox_status.as_ref().unwrap().id, pod);
    assert_eq!(kinds_of(&all, &stay), &LIFECYCLE[..2]);
    assert_eq!(kinds_of(&all, &id), LIFECYCLE);
    assert!(
        all.windows(2).all(|w| w[0].created_at <= w[1].created_at),
        "event times never go back: {all:#?}"
    );
    let mine: Vec<_> = all.iter().filter(|e| e.container_id == id).collect();
    let expect_state = [
        Some(ContainerState::ContainerCreated),
        Some(ContainerState::ContainerRunning),
        Some(ContainerState::ContainerExited),
        None,
    ];
    for (e, want) in mine.iter().zip(expect_state) {
        let p = e.pod_sandbox_status.as_ref().expect("the pod's status");
        assert_eq!(p.id, pod);
        assert_eq!(p.metadata, sb.metadata, "kubelet finds the pod by its UID");
        assert_eq!(p.state, PodSandboxState::SandboxReady as i32);
        assert!(e.created_at > 0);
        let by_id: HashMap<_, _> = e
            .containers_statuses
            .iter()
            .map(|s| (s.id.as_str(), s))
            .collect();
        assert_eq!(
            by_id.get(stay.as_str()).map(|s| s.state),
            Some(ContainerState::ContainerRunning as i32),
            "the neighbour is in every event of the pod: {e:#?}"
        );
        match want {
            Some(state) => {
                let s = by_id.get(id.as_str()).expect("the container's own status");
                assert_eq!(s.state, state as i32, "{e:#?}");
                assert_eq!(s.metadata.as_ref().unwrap().name, "life");
            }
            None => assert!(
                !by_id.contains_key(id.as_str()),
                "a deleted container is gone from its pod: {e:#?}"
            ),
        }
    }
    let stopped = mine[2]
        .containers_statuses
        .iter()
        .find(|s| s.id == id)
        .unwrap();
    assert_eq!(stopped.exit_code, 137, "{stopped:?}");
    assert!(
        ev.next(Duration::from_millis(200)).await.is_none(),
        "nothing else happened"
    );

    // Stopping and removing the pod: the neighbour stops, the sandbox stops, then they go.
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let all = collect(&mut ev, 4, T).await;
    assert_eq!(kinds_of(&all, &stay), &LIFECYCLE[2..]);
    assert_eq!(kinds_of(&all, &pod), &LIFECYCLE[2..]);
    let gone = all
        .iter()
        .find(|e| e.container_id == pod && kind(e) == LIFECYCLE[3]);
    assert!(gone.unwrap().pod_sandbox_status.is_none(), "{all:#?}");
    let stopped = all.iter().find(|e| e.container_id == pod).unwrap();
    assert_eq!(
        stopped.pod_sandbox_status.as_ref().unwrap().state,
        PodSandboxState::SandboxNotready as i32
    );
    assert!(ev.next(Duration::from_millis(200)).await.is_none());
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exit_is_stopped_within_100ms() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let mut ev = d.events().await;
    let sb = pod_config("events-exit", &d.root.join("logs"));
    let pod = run_sandbox(&mut rt, &sb).await;
    let mut worst = 0;
    for i in 0..3 {
        let cfg = container_config(
            &format!("exit{i}"),
            BUSYBOX,
            &["sh", "-c", "sleep 0.3; exit 3"],
        );
        let id = create(&mut rt, &pod, &sb, cfg).await;
        start(&mut rt, &id).await;
        let (stopped, received) = loop {
            let e = ev.next(T).await.expect("an event");
            if e.container_id == id && kind(&e) == ContainerEventType::ContainerStoppedEvent {
                break (e, now_ns());
            }
        };
        let s = stopped
            .containers_statuses
            .iter()
            .find(|s| s.id == id)
            .expect("the container's status");
        assert_eq!(s.state, ContainerState::ContainerExited as i32);
        assert_eq!(s.exit_code, 3, "{s:?}");
        // finished_at is when the monitor reaped the container.
        assert!(s.finished_at > 0 && s.finished_at <= received);
        assert_eq!(
            container_status(&mut rt, &id).await.finished_at,
            s.finished_at
        );
        let latency = received - s.finished_at;
        println!(
            "exit -> STOPPED received: {:.2} ms",
            latency as f64 / 1_000_000.0
        );
        worst = worst.max(latency);
    }
    assert!(
        worst < 100_000_000,
        "an exit took {:.2} ms to arrive as STOPPED",
        worst as f64 / 1e6
    );
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_subscribers_get_every_event_of_20_lifecycles_in_order() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let mut a = d.events().await;
    let mut b = d.events().await;
    let sb = pod_config("events-fanout", &d.root.join("logs"));
    let pod = run_sandbox(&mut rt, &sb).await;
    // Four at a time, so that events of different containers interleave.
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (mut rt, pod, sb) = (rt.clone(), pod.clone(), sb.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..5 {
                ids.push(lifecycle(&mut rt, &pod, &sb, &format!("c{w}-{i}")).await);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    assert_eq!(ids.len(), 20);
    // 20 lifecycles and the sandbox's CREATED and STARTED.
    let got_a = collect(&mut a, 82, T).await;
    let got_b = collect(&mut b, 82, T).await;
    let key = |e: &ContainerEventResponse| (e.container_id.clone(), kind(e), e.created_at);
    assert_eq!(
        got_a.iter().map(key).collect::<Vec<_>>(),
        got_b.iter().map(key).collect::<Vec<_>>(),
        "both subscribers get the same events in the same order"
    );
    for id in &ids {
        assert_eq!(kinds_of(&got_a, id), LIFECYCLE, "container {id}");
    }
    assert!(a.next(Duration::from_millis(200)).await.is_none());
    assert!(b.next(Duration::from_millis(200)).await.is_none());
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_that_never_reads_blocks_nothing_and_is_dropped() {
    if !require_root() {
        return;
    }
    // A small buffer, so that a few hundred events overflow it (and the HTTP/2 windows in
    // front of it) quickly; the default is 1024.
    let d = Daemon::start_with("event_buffer = 16").await;
    let mut rt = d.rt().await;
    let mut stale = d.events().await;
    let mut live = d.events().await;
    let sb = pod_config("events-slow", &d.root.join("logs"));
    let pod = run_sandbox(&mut rt, &sb).await;
    // The containers stay in the pod until the end, so that events carry many statuses: the
    // never-read stream first fills its HTTP/2 windows (hyper's client grants 2 MB per
    // stream), then its buffer in the daemon. 80 containers make 320 events of ~5 MB.
    let n = 80;
    let t0 = Instant::now();
    let burst = async {
        let mut ids = Vec::new();
        for i in 0..n {
            let c = container_config(&format!("s{i}"), BUSYBOX, &["sleep", "300"]);
            ids.push(create(&mut rt, &pod, &sb, c).await);
        }
        for id in &ids {
            start(&mut rt, id).await;
        }
        for id in &ids {
            stop(&mut rt, id).await;
        }
        for id in &ids {
            remove(&mut rt, id).await;
        }
        ids
    };
    // The live subscriber reads along; the stale one never does.
    let (ids, got) = tokio::join!(
        async {
            tokio::time::timeout(Duration::from_secs(180), burst)
                .await
                .expect("RPCs went on while a subscriber did not read")
        },
        collect(&mut live, 4 * n + 2, Duration::from_secs(180))
    );
    println!(
        "{} events in {:?} with a subscriber that never reads",
        got.len(),
        t0.elapsed()
    );
    for id in &ids {
        assert_eq!(
            kinds_of(&got, id),
            LIFECYCLE,
            "the live subscriber misses nothing"
        );
    }
    assert!(
        d.log_text().contains("event subscriber fell behind"),
        "the drop is logged"
    );

    // The stale subscriber, reading at last: a gapless prefix of the events, then the error.
    let mut prefix = Vec::new();
    let end = loop {
        match stale.try_next(T).await {
            Ok(Some(e)) => prefix.push(e),
            Ok(None) => panic!("the stale stream neither ended nor went on"),
            Err(e) => break e,
        }
    };
    assert_eq!(end.code(), tonic::Code::ResourceExhausted, "{end:?}");
    assert!(
        !prefix.is_empty() && prefix.len() < got.len(),
        "{} of {} events before the drop",
        prefix.len(),
        got.len()
    );
    let key = |e: &ContainerEventResponse| (e.container_id.clone(), kind(e), e.created_at);
    assert_eq!(
        prefix.iter().map(key).collect::<Vec<_>>(),
        got[..prefix.len()].iter().map(key).collect::<Vec<_>>(),
        "what the dropped subscriber got is complete and in order"
    );
    println!(
        "the stale subscriber got {} events, then {:?}",
        prefix.len(),
        end.message()
    );

    // A fresh subscriber works.
    let mut fresh = d.events().await;
    let id = create(
        &mut rt,
        &pod,
        &sb,
        container_config("after", BUSYBOX, &["sleep", "300"]),
    )
    .await;
    let e = fresh
        .next(T)
        .await
        .expect("an event for the fresh subscriber");
    assert_eq!(
        (e.container_id.as_str(), kind(&e)),
        (id.as_str(), LIFECYCLE[0])
    );
    let e = live
        .next(T)
        .await
        .expect("the live subscriber is still there");
    assert_eq!(e.container_id, id);
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_daemon_does_not_replay_the_past() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start().await;
    let mut rt = d.rt().await;
    let sb = pod_config("events-restart", &d.root.join("logs"));
    let pod = run_sandbox(&mut rt, &sb).await;
    let running = create(
        &mut rt,
        &pod,
        &sb,
        container_config("run", BUSYBOX, &["sleep", "300"]),
    )
    .await;
    start(&mut rt, &running).await;
    let created = create(
        &mut rt,
        &pod,
        &sb,
        container_config("new", BUSYBOX, &["sleep", "300"]),
    )
    .await;
    let done = create(
        &mut rt,
        &pod,
        &sb,
        container_config("done", BUSYBOX, &["true"]),
    )
    .await;
    start(&mut rt, &done).await;
    wait_exited(&mut rt, &done, T).await;
    // Exits while the daemon is down: recovery finds it, and reports no event for it.
    let away = create(
        &mut rt,
        &pod,
        &sb,
        container_config("away", BUSYBOX, &["sh", "-c", "sleep 0.5; exit 7"]),
    )
    .await;
    start(&mut rt, &away).await;
    drop(rt);
    d.kill();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    d.spawn().await;

    let mut rt = d.rt().await;
    let mut ev = d.events().await;
    assert_eq!(wait_exited(&mut rt, &away, T).await.exit_code, 7);
    let stale = ev.next(Duration::from_secs(1)).await;
    assert!(
        stale.is_none(),
        "a stale event after the restart: {stale:#?}"
    );
    let s = container_status(&mut rt, &created).await;
    assert_eq!(s.state, ContainerState::ContainerCreated as i32);

    // What happens now is reported: the exit of a container recovery re-attached to.
    stop(&mut rt, &running).await;
    let e = ev.next(T).await.expect("the stop after the restart");
    assert_eq!(
        (e.container_id.as_str(), kind(&e)),
        (running.as_str(), ContainerEventType::ContainerStoppedEvent)
    );
    assert_eq!(
        e.containers_statuses.len(),
        4,
        "the pod's four containers: {e:#?}"
    );
    assert!(ev.next(Duration::from_millis(200)).await.is_none());
    d.cleanup().await;
}
