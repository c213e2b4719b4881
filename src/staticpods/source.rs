//! The manager: the manifest directory is read (sorted, hidden and editor files skipped, by
//! `manifest::scan`) whenever inotify says it changed, and every few seconds regardless, and
//! the pods it names are reconciled with the running workers: a new pod gets a worker, a pod
//! gone from its file is deleted gracefully, an edited pod (a new UID) replaces the old one
//! once the old one is gone. A file that stops parsing keeps the pods it had, and its errors
//! are reported: one bad edit never takes a running pod down.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::orphans;
use super::worker::{self, Command};
use super::{Objects, Shared};
use crate::manifest::{self, ObjectKey};

/// The periodic re-read, for changes inotify cannot see (a directory replaced by a mount, a
/// watch that failed).
const RESYNC: Duration = Duration::from_secs(10);
/// Editors write a file in several steps: events closer together than this are one change.
const SETTLE: Duration = Duration::from_millis(10);

struct Running {
    key: ObjectKey,
    tx: mpsc::Sender<Command>,
    deleting: bool,
    /// The pod the worker runs (none for an orphan being torn down), for admission.
    pod: Option<Pod>,
}

struct Watch(Inotify);

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

fn watch(dir: &Path) -> nix::Result<AsyncFd<Watch>> {
    let i = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    i.add_watch(
        dir,
        AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF,
    )?;
    // SAFETY: `Watch` owns the inotify fd and returns the same fd for as long as it lives;
    // the AsyncFd owns the `Watch`, so the fd stays open while it is registered.
    unsafe { AsyncFd::register_with_interest(Watch(i), tokio::io::Interest::READABLE) }
        .map_err(|e| nix::Error::from_raw(std::io::Error::from(e).raw_os_error().unwrap_or(0)))
}

pub async fn run(shared: Arc<Shared>, dir: PathBuf) {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        warn!(dir = %dir.display(), error = %e, "creating the manifest directory");
    }
    let mut inotify = match watch(&dir) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "watching the manifest directory; re-reading it every 10 s only");
            None
        }
    };
    info!(dir = %dir.display(), "static pods: watching the manifest directory");
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut m = Manager {
        shared,
        running: HashMap::new(),
        last_good: BTreeMap::new(),
        objects: Arc::new(Objects::default()),
        errors: Vec::new(),
        rejected: HashMap::new(),
        done_tx,
    };
    loop {
        let d = dir.clone();
        match tokio::task::spawn_blocking(move || manifest::scan(&d)).await {
            Ok(Ok(scan)) => m.reconcile(scan),
            Ok(Err(e)) => warn!(error = %e, "reading the manifest directory"),
            Err(e) => warn!(error = %e, "reading the manifest directory"),
        }
        tokio::select! {
            r = async {
                match inotify.as_ref() {
                    Some(w) => w.readable().await.map(|mut g| {
                        let _ = g.get_inner().0.read_events();
                        g.clear_ready();
                    }),
                    None => std::future::pending().await,
                }
            } => {
                if r.is_err() {
                    inotify = None;
                }
                tokio::time::sleep(SETTLE).await;
                if let Some(w) = inotify.as_ref() {
                    let _ = w.get_ref().0.read_events();
                }
            }
            uid = done_rx.recv() => {
                if let Some(uid) = uid {
                    m.running.remove(&uid);
                }
            }
            _ = tokio::time::sleep(RESYNC) => {
                // A watch on a directory that was replaced sees nothing: watch again.
                if inotify.is_none() {
                    inotify = watch(&dir).ok();
                }
            }
        }
    }
}

struct Manager {
    shared: Arc<Shared>,
    /// Workers by pod UID.
    running: HashMap<String, Running>,
    /// The pods each file gave when it last parsed.
    last_good: BTreeMap<PathBuf, Vec<Pod>>,
    objects: Arc<Objects>,
    errors: Vec<String>,
    /// Pods admission refused, by UID: shown Failed, never started, until their manifest
    /// changes or goes (kubelet never retries a rejected pod).
    rejected: HashMap<String, ObjectKey>,
    done_tx: mpsc::UnboundedSender<String>,
}

impl Manager {
    fn reconcile(&mut self, scan: manifest::Scan) {
        // Errors, reported once per change.
        let errors: Vec<String> = scan.errors().map(|e| e.to_string()).collect();
        if errors != self.errors {
            for e in errors.iter().filter(|e| !self.errors.contains(e)) {
                warn!(error = %e, "invalid manifest: its pods are left as they were");
            }
            self.errors = errors.clone();
            self.shared.store.write().unwrap().errors = errors;
        }
        // The pods wanted: each file's, or its last good ones while it does not parse.
        let mut files: BTreeMap<PathBuf, Vec<Pod>> = BTreeMap::new();
        for f in &scan.files {
            match &f.outcome {
                Ok(_) => {
                    files.insert(f.path.clone(), Vec::new());
                }
                Err(_) => {
                    if let Some(p) = self.last_good.get(&f.path) {
                        files.insert(f.path.clone(), p.clone());
                    }
                }
            }
        }
        for (path, pod) in scan.pods() {
            let mut pod = pod.clone();
            manifest::identity::apply_static_defaults(&mut pod, path, &self.shared.node_name);
            files.entry(path.to_path_buf()).or_default().push(pod);
        }
        self.last_good = files.clone();
        let mut wanted: BTreeMap<ObjectKey, Pod> = BTreeMap::new();
        for pods in files.into_values() {
            for p in pods {
                wanted.entry(manifest::pod_key(&p)).or_insert(p);
            }
        }
        let objects = Arc::new(Objects {
            config_maps: scan.config_maps.clone(),
            secrets: scan.secrets.clone(),
        });
        let objects_changed = objects.config_maps != self.objects.config_maps
            || objects.secrets != self.objects.secrets;
        self.objects = objects;

        // A file that does not parse and whose pods are not known (the first scan after a
        // restart) may be what still wants a running pod: no orphan is reaped until it parses.
        let unknown_files = scan
            .files
            .iter()
            .any(|f| f.outcome.is_err() && !self.last_good.contains_key(&f.path));
        // Workers whose pod is no longer wanted (gone, or replaced by a new UID) stop.
        for (uid, r) in self.running.iter_mut() {
            let keep = wanted
                .get(&r.key)
                .is_some_and(|p| p.metadata.uid.as_deref() == Some(uid.as_str()));
            if !keep && !r.deleting {
                r.deleting = true;
                let _ = r.tx.try_send(Command::Delete);
            } else if keep && objects_changed {
                let _ = r.tx.try_send(Command::Objects(self.objects.clone()));
            }
        }
        // Pods the engine or the pods directory holds that no manifest wants any more (gone
        // while the daemon was down): torn down like deleted ones, and counted as going away
        // so that a new pod of the same name waits for them.
        let wanted_uids: std::collections::HashSet<&str> = wanted
            .values()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        let orphans = if unknown_files {
            Default::default()
        } else {
            orphans::find(&self.shared, |uid| {
                self.running.contains_key(uid) || wanted_uids.contains(uid)
            })
        };
        for (uid, key) in orphans {
            let (tx, _) = mpsc::channel(1);
            self.running.insert(
                uid.clone(),
                Running {
                    key,
                    tx,
                    deleting: true,
                    pod: None,
                },
            );
            let (shared, done) = (self.shared.clone(), self.done_tx.clone());
            tokio::spawn(async move {
                orphans::reap(shared, uid.clone()).await;
                let _ = done.send(uid);
            });
        }
        // Rejected pods that no manifest wants any more are forgotten.
        self.rejected.retain(|uid, key| {
            let keep = wanted
                .get(key)
                .is_some_and(|p| p.metadata.uid.as_deref() == Some(uid.as_str()));
            if !keep {
                self.shared.unpublish(key, uid);
            }
            keep
        });
        // What the admitted pods request: every worker's pod that has not finished.
        let finished: std::collections::HashSet<String> = self
            .shared
            .pods()
            .into_iter()
            .filter(|p| {
                matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .filter_map(|p| p.metadata.uid)
            .collect();
        let mut admitted: Vec<Pod> = self
            .running
            .iter()
            .filter(|(uid, _)| !finished.contains(*uid))
            .filter_map(|(_, r)| r.pod.clone())
            .collect();
        // New pods start, unless an older pod of the same name is still going away.
        for (key, pod) in wanted {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if self.running.contains_key(&uid) || self.rejected.contains_key(&uid) {
                continue;
            }
            if self.running.values().any(|r| r.key == key) {
                continue;
            }
            if let Err(e) = crate::podspec::admit(&admitted, &pod, self.shared.allocatable) {
                self.reject(&key, &uid, &pod, &e);
                continue;
            }
            admitted.push(pod.clone());
            let (tx, rx) = mpsc::channel(8);
            self.running.insert(
                uid.clone(),
                Running {
                    key: key.clone(),
                    tx,
                    deleting: false,
                    pod: Some(pod.clone()),
                },
            );
            let (shared, objects, done) = (
                self.shared.clone(),
                self.objects.clone(),
                self.done_tx.clone(),
            );
            tokio::spawn(async move {
                worker::run(shared, key, pod, objects, rx).await;
                let _ = done.send(uid);
            });
        }
    }
}

impl Manager {
    /// kubelet's admission failure: the pod is shown Failed with the reason (OutOfcpu,
    /// OutOfmemory) and never started.
    fn reject(&mut self, key: &ObjectKey, uid: &str, pod: &Pod, e: &crate::podspec::AdmitError) {
        warn!(pod = %key, error = %e, "static pod rejected at admission");
        let message = format!("Pod was rejected: {e}");
        let mut shown = pod.clone();
        shown.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Failed".into()),
            reason: Some(e.reason()),
            message: Some(message.clone()),
            ..Default::default()
        });
        self.shared.publish(key, uid, shown);
        self.shared.event(
            pod,
            None,
            super::events::EventType::Warning,
            &e.reason(),
            message,
        );
        self.rejected.insert(uid.to_string(), key.clone());
    }
}

// The fd is only borrowed while the AsyncFd lives.
impl AsFd for Watch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
