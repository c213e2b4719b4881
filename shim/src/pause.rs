//! `peapod-shim pause`: the pod's infra process.
//!
//! The daemon clone()s it straight into the pod's new namespaces (net, ipc, uts, maybe pid, in
//! which case it is PID 1 there) and execs it, with the write end of a sync pipe on fd 3. It:
//! 1. sets the hostname (`--hostname`) and brings `lo` up (`--lo-up`);
//! 2. writes `ready` (or `error <message>` and exits 1) on fd 3 and closes it;
//! 3. sleeps in sigwaitinfo with every signal blocked: SIGCHLD reaps all zombies (as PID 1 of a
//!    PID namespace it inherits the containers' orphans), SIGTERM/SIGINT end it with status 0,
//!    anything else is ignored.
//!
//! Blocking the signals rather than installing handlers also matters as PID 1 of a namespace:
//! the kernel drops signals to a namespace init that has no handler, but blocked ones are
//! always queued, so sigwaitinfo sees them.

use crate::args::PauseOpts;
use crate::syncfd::SyncPipe;
use crate::sys;
use std::os::unix::ffi::OsStrExt;

/// Runs the pause; returns the process exit status.
pub fn run(opts: &PauseOpts) -> i32 {
    let sync = SyncPipe::take();
    let all = sys::SigSet::full();
    if let Err(msg) = setup(opts, &all) {
        eprintln!("peapod-shim pause: {msg}");
        sync.error(&msg);
        return 1;
    }
    sync.ready();
    loop {
        match all.wait() {
            Ok(libc::SIGCHLD) => reap_all(),
            Ok(libc::SIGTERM | libc::SIGINT) => return 0,
            Ok(_) => {}
            Err(e) => {
                // Cannot happen with a valid set; do not spin if it somehow does.
                eprintln!("peapod-shim pause: sigwaitinfo: {e}");
                return 1;
            }
        }
    }
}

fn setup(opts: &PauseOpts, all: &sys::SigSet) -> Result<(), String> {
    // Block first, so that a SIGTERM arriving during setup is queued for the loop, not fatal.
    all.block().map_err(|e| format!("blocking signals: {e}"))?;
    // An inherited SIG_IGN for SIGCHLD would make the kernel reap children itself; the
    // default disposition keeps zombies around for us (and queues SIGCHLD while blocked).
    sys::default_signal(libc::SIGCHLD).map_err(|e| format!("SIGCHLD disposition: {e}"))?;
    // Nothing but fds 0-3 should live as long as the pod: a leaked pipe end could keep some
    // reader from ever seeing EOF.
    let _ = sys::close_fds_from(4);
    if let Some(h) = &opts.hostname {
        sys::sethostname(h.as_bytes()).map_err(|e| format!("sethostname {h:?}: {e}"))?;
    }
    if opts.lo_up {
        sys::interface_up(c"lo").map_err(|e| format!("bringing lo up: {e}"))?;
    }
    Ok(())
}

/// Reaps every exited child without blocking; their statuses are of no interest.
fn reap_all() {
    while let Ok(Some(_)) = sys::reap_any() {}
}
