//! Start-up reconciliation. The invariant: while the daemon is down, pods and containers keep
//! running; a restarted daemon reloads every record, checks each pause and monitor against what
//! runs (PID plus start time), re-attaches exit watchers to live monitors and records the exits
//! that happened meanwhile from the monitors' exit files. What cannot be read is logged and left
//! on disk for an operator, never allowed to stop the daemon from starting.

use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use super::monitor;
use super::proc;
use super::record::{self, ContainerRecord, ContainerState, SandboxRecord, SandboxState};
use super::{Container, Engine, Sandbox};
use crate::api;

pub(super) async fn recover(engine: &Arc<Engine>) {
    let mut n_sb = 0;
    for dir in subdirs(&engine.paths.root.join("sandboxes")) {
        let rec: SandboxRecord = match record::load(&dir) {
            Ok(r) => r,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "skipping unreadable sandbox record");
                continue;
            }
        };
        let config: api::PodSandboxConfig = match record::load_config(&dir) {
            Ok(c) => c,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "skipping sandbox without its config");
                continue;
            }
        };
        let mut rec = rec;
        let alive = proc::is_alive(rec.pause_pid, rec.pause_start);
        if rec.state == SandboxState::Ready && !alive {
            info!(sandbox_id = %rec.id, "pause gone while the daemon was down: sandbox not ready");
            rec.state = SandboxState::NotReady;
            let _ = record::save(&dir, &rec);
        }
        let _ = engine.reserve_name("sandbox", &rec.name, &rec.id);
        let sb = Arc::new(Sandbox {
            config,
            rec: Mutex::new(rec.clone()),
            op: tokio::sync::Mutex::new(()),
        });
        engine
            .sandboxes
            .write()
            .unwrap()
            .insert(rec.id.clone(), sb.clone());
        if rec.state == SandboxState::Ready {
            engine.watch_pause(sb);
        }
        n_sb += 1;
    }

    let mut n_ctr = 0;
    for dir in subdirs(&engine.paths.root.join("containers")) {
        let rec: ContainerRecord = match record::load(&dir) {
            Ok(r) => r,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "skipping unreadable container record");
                continue;
            }
        };
        let config: api::ContainerConfig = match record::load_config(&dir) {
            Ok(c) => c,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "skipping container without its config");
                continue;
            }
        };
        let _ = engine.reserve_name("container", &rec.name, &rec.id);
        let done = rec.state() == ContainerState::Exited;
        let monitor_alive = proc::is_alive(rec.monitor_pid, rec.monitor_start);
        let c = Arc::new(Container {
            config,
            rec: Mutex::new(rec.clone()),
            exited: tokio::sync::watch::channel(done).0,
            op: tokio::sync::Mutex::new(()),
        });
        engine
            .containers
            .write()
            .unwrap()
            .insert(rec.id.clone(), c.clone());
        if !done {
            if monitor_alive {
                engine.watch_container(c);
            } else if monitor::read_exit_file(&engine.paths.bundle_dir(&rec.id).join("exit"))
                .is_some()
                || !engine.paths.bundle_dir(&rec.id).exists()
            {
                // Exited while we were away (or the host rebooted and /run is empty).
                record_lost(engine, &c).await;
            } else {
                engine.record_exit(&c).await;
            }
        }
        n_ctr += 1;
    }
    info!(
        sandboxes = n_sb,
        containers = n_ctr,
        "recovered state from disk"
    );
}

/// Records the exit of a container whose monitor is gone: from its exit file when there is one,
/// else (after a reboot) as an exit with status 255 and reason Unknown, as containerd reports.
async fn record_lost(engine: &Arc<Engine>, c: &Arc<Container>) {
    let id = c.rec.lock().unwrap().id.clone();
    if let Some(e) = monitor::read_exit_file(&engine.paths.bundle_dir(&id).join("exit")) {
        let _ = record::update(&c.rec, &engine.paths.container_dir(&id), |r| {
            r.mark_exited(e.exit_code, e.finished_at_ns, false);
            true
        });
    } else {
        let _ = record::update(&c.rec, &engine.paths.container_dir(&id), |r| {
            r.mark_exited(255, proc::now_ns(), false);
            r.reason = "Unknown".into();
            r.message = "the container's state was lost (host reboot?)".into();
            true
        });
    }
    c.exited.send_replace(true);
}

fn subdirs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
