//! One runtime with many pods running, in `make bench`: its daemon's RSS with 20 and 100 pods,
//! the mean RSS and PSS of its per-pod helper (peapod's monitor, containerd's shim) with 20 and
//! List latency with 100; then, for the `scale` part, with [`SCALE_PODS`] running: the daemon's
//! RSS, its helpers' PSS together, List latency, pod start beside the bare runtime measured at
//! the same count, and the mounts its pods add to the host's mount table. peapod's pods first,
//! then containerd's, each runtime's removed before the other's start, so each is measured with
//! only its own pods on the host.

use std::path::Path;
use std::time::Duration;

use peapod_integration::*;

use super::{
    list_latency, mean_mem, median, mem_kib, mib, ms, remove_pod, start_pods, timed_pod, Bare,
    Ctrd, Figures, ITER,
};

/// Running pods in the scale figures.
pub const SCALE_PODS: usize = 250;

/// The runtime a run is on.
pub struct Side<'a> {
    pub rt: &'a mut Rt,
    pub logs: &'a Path,
    /// Empty for peapod (its daemon config gives the private parent); containerd's parent.
    pub cgroup_parent: &'a str,
    pub daemon: i32,
    /// containerd, whose per-pod helpers are its shims; None for peapod's monitors.
    pub ctrd: Option<&'a Ctrd>,
}

/// A runtime with `SCALE_PODS` pods running.
pub struct Scale {
    /// Pod starts (RunPodSandbox+Create+Start) with that many running.
    lat: Vec<Duration>,
    /// The bare runtime's create+start median at the same count.
    bare: Duration,
    rss: u64,
    /// PSS of all its per-pod helpers together, KiB.
    helpers_pss: u64,
    list: Duration,
    /// Entries in the host's mount table before its first pod and with `SCALE_PODS` running.
    mounts: (usize, usize),
}

fn host_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().count())
        .unwrap_or(0)
}

/// The per-pod helper processes of `pods`: containerd's shims (one per pod), peapod's monitors.
async fn helpers(s: &mut Side<'_>, pods: &[(String, String)]) -> Vec<i32> {
    if let Some(c) = s.ctrd {
        let shims = c.shims();
        assert_eq!(shims.len(), pods.len(), "one containerd shim per pod");
        return shims;
    }
    let mut out = Vec::new();
    for (_, c) in pods {
        out.push(container_pid(s.rt, c).await.1);
    }
    out
}

/// Memory with 20 pods and List with 100, then with `scale` the `SCALE_PODS` figures; every pod
/// removed after. `lat` and `idle`, measured before, complete the figures.
pub async fn run(
    mut s: Side<'_>,
    bare: &Bare,
    scale: bool,
    lat: Vec<Duration>,
    idle: u64,
) -> (Figures, Option<Scale>) {
    let mounts_before = host_mounts();
    let cg = s.cgroup_parent;
    let mut pods = start_pods(s.rt, s.logs, cg, 100, 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let with20 = mem_kib(s.daemon).0;
    let helper = mean_mem(&helpers(&mut s, &pods).await);
    pods.extend(start_pods(s.rt, s.logs, cg, 200, 80).await);
    let list = list_latency(s.rt, 100).await;
    let with100 = mem_kib(s.daemon).0;
    let scale = if scale {
        pods.extend(start_pods(s.rt, s.logs, cg, 400, SCALE_PODS - 100).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss = mem_kib(s.daemon).0;
        let helpers_pss = helpers(&mut s, &pods)
            .await
            .iter()
            .map(|&p| mem_kib(p).1)
            .sum();
        let list = list_latency(s.rt, SCALE_PODS).await;
        let mut lat = Vec::new();
        for i in 0..ITER + 2 {
            let took = timed_pod(s.rt, s.logs, cg, 3000 + i).await;
            if i >= 2 {
                lat.push(took);
            }
        }
        Some(Scale {
            lat,
            bare: median(bare.start_latency()),
            rss,
            helpers_pss,
            list,
            mounts: (mounts_before, host_mounts()),
        })
    } else {
        None
    };
    for (pod, _) in pods {
        remove_pod(s.rt, pod).await;
    }
    let f = Figures {
        lat,
        idle,
        with20,
        with100,
        helper,
        list,
    };
    (f, scale)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn dratio(a: Duration, b: Duration) -> String {
    ratio(a.as_secs_f64(), b.as_secs_f64())
}

/// One runtime's cells of a row: no pods, `SCALE_PODS` pods, their ratio.
type Cells = [String; 3];

/// The rows of one runtime (figures with no pods, and at `SCALE_PODS`) and the number each
/// row's peapod / containerd ratio is taken of.
fn cells(f: &Figures, bare_med: Duration, s: &Scale) -> Vec<(Cells, f64)> {
    let (a0, a1) = (median(f.lat.clone()), median(s.lat.clone()));
    let (o0, o1) = (a0.saturating_sub(bare_med), a1.saturating_sub(s.bare));
    let (m0, m1) = s.mounts;
    let per_pod = m1.saturating_sub(m0) as f64 / SCALE_PODS as f64;
    vec![
        ([ms(a0), ms(a1), dratio(a1, a0)], a1.as_secs_f64()),
        ([ms(bare_med), ms(s.bare), dratio(s.bare, bare_med)], 0.0),
        ([ms(o0), ms(o1), dratio(o1, o0)], o1.as_secs_f64()),
        (
            [format!("{} (idle)", mib(f.idle)), mib(s.rss), String::new()],
            s.rss as f64,
        ),
        (
            [String::new(), mib(s.helpers_pss), String::new()],
            s.helpers_pss as f64,
        ),
        (
            [
                format!("{} (100 pods)", ms(f.list)),
                ms(s.list),
                String::new(),
            ],
            s.list.as_secs_f64(),
        ),
        ([m0.to_string(), m1.to_string(), String::new()], m1 as f64),
        (
            [String::new(), format!("{per_pod:.1}"), String::new()],
            per_pod,
        ),
    ]
}

const ROWS: [&str; 8] = [
    "RunPodSandbox+Create+Start, median",
    "bare runc create+start at the same count, median",
    "the runtime's own share (the difference)",
    "daemon RSS",
    "per-pod helpers' PSS, all pods together (peapod monitors; containerd shims)",
    "ListPodSandbox+ListContainers, median",
    "mounts in the host's mount table",
    "mounts per pod (the increase / pods)",
];

/// Each runtime's own share of a pod start with no pods and with `SCALE_PODS` running, beside
/// the bare runtime measured at the same count; memory, List and mounts there; and peapod's
/// figures at `SCALE_PODS` over containerd's.
pub fn print(p: (&Figures, &Scale), c: Option<(&Figures, &Scale)>, bare_med: Duration) {
    let pc = cells(p.0, bare_med, p.1);
    let cc = c.map(|(f, s)| cells(f, bare_med, s));
    let n = SCALE_PODS;
    println!(
        "\n{n} running pods, beside no pods running (busybox `sleep 3000`; each runtime with only \
         its own pods on the host; peapod's built-in network, containerd's loopback-only CNI)"
    );
    match &cc {
        Some(cc) => {
            println!(
                "| what | peapod, none | peapod, {n} | {n} / none | containerd, none | \
                 containerd, {n} | {n} / none | peapod / containerd at {n} |"
            );
            println!("|---|---|---|---|---|---|---|---|");
            for ((what, (p, pv)), (c, cv)) in ROWS.iter().zip(&pc).zip(cc) {
                let r = if *pv > 0.0 && *cv > 0.0 {
                    ratio(*pv, *cv)
                } else {
                    String::new()
                };
                println!(
                    "| {what} | {} | {} | {} | {} | {} | {} | {r} |",
                    p[0], p[1], p[2], c[0], c[1], c[2]
                );
            }
        }
        None => {
            println!("| what | no pods | {n} pods | {n} / none |");
            println!("|---|---|---|---|");
            for (what, (p, _)) in ROWS.iter().zip(&pc) {
                println!("| {what} | {} | {} | {} |", p[0], p[1], p[2]);
            }
        }
    }
    println!(
        "targets: own share at {n} pods <= 1.2x that with none; daemon RSS <= 12 MiB and List \
         <= 1 ms (0.5 ms) at {n} pods"
    );
}
