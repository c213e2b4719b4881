//! The daemon's side of the per-container monitor (`peapod-shim monitor`): start it, learn the
//! container's PID from its sync pipe, and read the exit file it leaves.
//!
//! Protocol: the monitor gets the write end of a pipe on fd 3 and writes one line, `created <pid>`
//! once the OCI runtime has created the container, or `error <message>`, then closes it. When the
//! container exits it writes `exit` atomically (JSON, see [`ExitInfo`]) and exits itself, so the
//! daemon learns of the exit from the monitor's pidfd, even across daemon restarts.
//!
//! Log rotation: SIGUSR1 makes the monitor reopen its log path, and it acknowledges each reopen
//! in `<bundle>/log-reopened` ([`REOPEN_ACK`]), replaced atomically, one line:
//! `<seq> reopening` before it opens the path, then `<seq> ok` or `<seq> error <message>`.
//! It writes `0 ok` before creating the container. [`reopen_log`] reads the sequence, signals,
//! and waits for a finished state with a higher one, so it returns only once the new file is
//! there (or with the monitor's reason why not); see there for why that ordering is sound.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::oci::runtime::OciRuntime;
use crate::pod::proc;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("starting monitor {shim}: {source}")]
    Spawn {
        shim: PathBuf,
        source: std::io::Error,
    },
    #[error("creating container {id}: {message}")]
    Create { id: String, message: String },
    #[error("monitor for {id}: {reason}")]
    Protocol { id: String, reason: String },
    /// The monitor could not reopen the container's log (it said why), or is gone.
    #[error("container {id}: log not reopened: {message}")]
    LogReopen { id: String, message: String },
}

/// What the monitor records when the container exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct ExitInfo {
    pub pid: i32,
    /// The exit status, or 128+N for death by signal N.
    pub exit_code: i32,
    pub signal: i32,
    pub finished_at_ns: i64,
}

pub fn read_exit_file(path: &Path) -> Option<ExitInfo> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(text.trim()).ok()
}

pub struct MonitorArgs<'a> {
    pub shim: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub runtime: &'a OciRuntime,
    pub exit_file: &'a Path,
    pub runtime_log: &'a Path,
    pub log_path: Option<&'a Path>,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
}

/// A started monitor with its container created (not yet started).
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub monitor_pid: i32,
    pub init_pid: i32,
}

/// Starts a monitor, which runs `<runtime> create`; returns once the container exists.
pub async fn spawn(a: &MonitorArgs<'_>) -> Result<Started, MonitorError> {
    let spawn_err = |source| MonitorError::Spawn {
        shim: a.shim.to_owned(),
        source,
    };
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|e| spawn_err(e.into()))?;
    nix::fcntl::fcntl(
        wr.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()),
    )
    .map_err(|e| spawn_err(e.into()))?;
    let mut cmd = std::process::Command::new(a.shim);
    cmd.arg0("peapod-shim")
        .arg("monitor")
        .arg("--id")
        .arg(a.id)
        .arg("--bundle")
        .arg(a.bundle)
        .arg("--runtime")
        .arg(&a.runtime.path);
    for g in &a.runtime.global_args {
        cmd.arg("--runtime-arg").arg(g);
    }
    cmd.arg("--exit-file")
        .arg(a.exit_file)
        .arg("--runtime-log")
        .arg(a.runtime_log);
    if let Some(l) = a.log_path {
        cmd.arg("--log-path").arg(l);
    }
    if a.tty {
        cmd.arg("--tty");
    }
    if a.stdin {
        cmd.arg("--stdin");
    }
    if a.stdin && a.stdin_once {
        cmd.arg("--stdin-once");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    let wr_fd = wr.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only calls dup2/fcntl,
    // which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if wr_fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(wr_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(spawn_err)?;
    drop(wr);
    let monitor_pid = child.id() as i32;
    // The Child handle is dropped without wait: the exit watcher reaps the monitor by PID.
    drop(child);
    let fail = |e: MonitorError| {
        // A monitor that failed exits by itself; make sure, and reap it.
        crate::pod::pause::kill_and_reap(monitor_pid);
        e
    };
    let text = crate::pod::pause::read_sync_pipe(rd, Duration::from_secs(60))
        .await
        .map_err(|e| {
            fail(MonitorError::Protocol {
                id: a.id.to_string(),
                reason: e.to_string(),
            })
        })?;
    let line = text.trim();
    if let Some(pid) = line.strip_prefix("created ") {
        let init_pid = pid.trim().parse::<i32>().map_err(|_| {
            fail(MonitorError::Protocol {
                id: a.id.to_string(),
                reason: format!("bad report {line:?}"),
            })
        })?;
        return Ok(Started {
            monitor_pid,
            init_pid,
        });
    }
    let message = match line.strip_prefix("error ") {
        Some(m) => m.to_string(),
        None if line.is_empty() => "monitor exited without a report".to_string(),
        None => format!("unexpected report {line:?}"),
    };
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(monitor_pid), None);
    Err(MonitorError::Create {
        id: a.id.to_string(),
        message,
    })
}

/// The monitor's log-reopen acknowledgement, in its bundle directory.
pub const REOPEN_ACK: &str = "log-reopened";

/// How long [`reopen_log`] waits for the monitor's acknowledgement.
pub const REOPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often [`reopen_log`] looks again without being woken: whether the monitor still lives,
/// and the file in case an inotify event was missed.
const REOPEN_TICK: Duration = Duration::from_millis(50);

/// A state of the acknowledgement file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AckState {
    Reopening,
    Ok,
    Error(String),
}

/// `<seq> reopening`, `<seq> ok` or `<seq> error <message>`.
fn parse_ack(text: &str) -> Option<(u64, AckState)> {
    let line = text.strip_suffix('\n').unwrap_or(text);
    let (seq, rest) = line.split_once(' ')?;
    let state = match rest {
        "reopening" => AckState::Reopening,
        "ok" => AckState::Ok,
        _ => AckState::Error(rest.strip_prefix("error ")?.to_string()),
    };
    Some((seq.parse().ok()?, state))
}

/// The acknowledgement file's state; `None` when there is no file.
fn read_ack(path: &Path) -> std::io::Result<Option<(u64, AckState)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    parse_ack(&text).map(Some).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unexpected content {text:?}"),
        )
    })
}

/// Asks the container's monitor (`monitor_pid` started at `monitor_start`) to reopen its log
/// file, after the kubelet renamed it, and returns once it has: the new file exists then, or
/// the error says why it could not be opened (the monitor keeps writing to the old one).
///
/// Why waiting for a finished state above the sequence read before the signal is enough, even
/// with concurrent callers and coalesced signals: the caller renamed the log before that read.
/// The monitor writes `<seq> reopening` before it opens the path, so an acknowledgement with a
/// higher sequence belongs to a reopen announced after the read, whose open therefore saw the
/// rename. (Without the `reopening` step, a reopen already under way for an earlier signal
/// could be acknowledged just after the read and pass for this one, with the file it opened
/// renamed away.) Nor can the wait miss its reopen: this SIGUSR1 stays pending until the
/// monitor reads it, after the read of the sequence, and the reopen serving it (alone or with
/// others that arrived together) is announced after that, with a higher sequence.
pub async fn reopen_log(
    id: &str,
    monitor_pid: i32,
    monitor_start: u64,
    bundle: &Path,
) -> Result<(), MonitorError> {
    reopen_log_within(id, monitor_pid, monitor_start, bundle, REOPEN_TIMEOUT).await
}

async fn reopen_log_within(
    id: &str,
    monitor_pid: i32,
    monitor_start: u64,
    bundle: &Path,
    timeout: Duration,
) -> Result<(), MonitorError> {
    let path = bundle.join(REOPEN_ACK);
    let protocol = |reason: String| MonitorError::Protocol {
        id: id.to_string(),
        reason,
    };
    let read = || read_ack(&path).map_err(|e| protocol(format!("reading {}: {e}", path.display())));
    let gone = || MonitorError::LogReopen {
        id: id.to_string(),
        message: "the container's monitor has exited".into(),
    };
    // Watching before the first read, so no acknowledgement falls between the two. Without a
    // watch (inotify unavailable), the file is polled.
    let watch = RenameWatch::new(bundle)
        .map_err(|e| tracing::debug!(error = %e, "no inotify watch; polling"))
        .ok();
    let Some((before, _)) = read()? else {
        // A monitor started before acknowledgements existed (the daemon was upgraded while it
        // ran): it still reopens on SIGUSR1, but cannot say when.
        tracing::warn!(
            container_id = id,
            "monitor does not acknowledge log reopens"
        );
        return signal_reopen(monitor_pid).map_err(|e| match e {
            Errno::ESRCH => gone(),
            e => protocol(format!("signalling the monitor: {e}")),
        });
    };
    if !proc::is_alive(monitor_pid, monitor_start) {
        return Err(gone());
    }
    signal_reopen(monitor_pid).map_err(|e| match e {
        Errno::ESRCH => gone(),
        e => protocol(format!("signalling the monitor: {e}")),
    })?;
    let deadline = Instant::now() + timeout;
    loop {
        let done = |ack| match ack {
            Some((seq, AckState::Ok)) if seq > before => Some(Ok(())),
            Some((seq, AckState::Error(message))) if seq > before => {
                Some(Err(MonitorError::LogReopen {
                    id: id.to_string(),
                    message,
                }))
            }
            _ => None,
        };
        if let Some(res) = done(read()?) {
            return res;
        }
        if !proc::is_alive(monitor_pid, monitor_start) {
            // It may have acknowledged just before it exited (its container ended).
            return done(read()?).unwrap_or_else(|| Err(gone()));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(protocol(format!(
                "log reopen not acknowledged within {} ms",
                timeout.as_millis()
            )));
        }
        match &watch {
            Some(w) => w.wait(left.min(REOPEN_TICK)).await,
            None => tokio::time::sleep(left.min(Duration::from_millis(2))).await,
        }
    }
}

/// SIGUSR1 to the monitor: reopen the log.
fn signal_reopen(monitor_pid: i32) -> nix::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor_pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
}

/// An inotify watch for files renamed into a directory (how the monitor's atomic writes land).
struct RenameWatch(Option<AsyncFd<OwnedFd>>);

impl Drop for RenameWatch {
    /// Closing an inotify instance waits for the kernel's grace period (10-20 ms): done off
    /// the request's path, so the caller gets its answer first.
    fn drop(&mut self) {
        if let Some(afd) = self.0.take() {
            let fd = afd.into_inner();
            tokio::task::spawn_blocking(move || drop(fd));
        }
    }
}

impl RenameWatch {
    fn new(dir: &Path) -> std::io::Result<RenameWatch> {
        let cdir = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
        // SAFETY: inotify_init1 takes flags only and returns a new fd or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `fd` is an inotify instance and `cdir` a NUL-terminated path that outlives
        // the call.
        let wd =
            unsafe { libc::inotify_add_watch(fd.as_raw_fd(), cdir.as_ptr(), libc::IN_MOVED_TO) };
        if wd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a valid inotify fd that the AsyncFd owns and nobody else closes.
        let afd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(RenameWatch(Some(afd)))
    }

    /// Returns after the next event (events already queued count) or after `limit`, having
    /// discarded every queued event: the caller looks at the file itself.
    async fn wait(&self, limit: Duration) {
        let Some(afd) = &self.0 else {
            return;
        };
        let res = tokio::time::timeout(limit, async {
            let mut guard = afd.readable().await?;
            let mut buf = [0u8; 1024];
            loop {
                // SAFETY: the kernel writes at most buf.len() bytes into buf.
                let n = unsafe {
                    libc::read(
                        afd.get_ref().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                    )
                };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::WouldBlock {
                        guard.clear_ready();
                        return Ok(());
                    }
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        })
        .await;
        if let Ok(Err(e)) = res {
            // Not expected; do not spin on it: the caller's deadline still holds.
            tracing::debug!(error = %e, "reading inotify events");
            tokio::time::sleep(limit.min(Duration::from_millis(2))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_file_parses() {
        let d = std::env::temp_dir().join(format!("peapod-exit-{}", crate::fsutil::new_id()));
        std::fs::write(
            &d,
            "{\"pid\":12,\"exit_code\":137,\"signal\":9,\"finished_at_ns\":1700000000000000001}\n",
        )
        .unwrap();
        let e = read_exit_file(&d).unwrap();
        assert_eq!((e.pid, e.exit_code, e.signal), (12, 137, 9));
        assert_eq!(e.finished_at_ns, 1_700_000_000_000_000_001);
        std::fs::write(&d, "{\"pid\":").unwrap();
        assert!(read_exit_file(&d).is_none(), "a torn file is not an exit");
        std::fs::remove_file(&d).unwrap();
    }

    #[test]
    fn acks_parse() {
        assert_eq!(parse_ack("0 ok\n"), Some((0, AckState::Ok)));
        assert_eq!(parse_ack("7 reopening\n"), Some((7, AckState::Reopening)));
        assert_eq!(
            parse_ack("8 error opening log /l/0.log: No such file\n"),
            Some((
                8,
                AckState::Error("opening log /l/0.log: No such file".into())
            ))
        );
        for bad in [
            "",
            "\n",
            "ok\n",
            "x ok\n",
            "1 okay\n",
            "-1 ok\n",
            "1 error\n",
        ] {
            assert_eq!(parse_ack(bad), None, "{bad:?}");
        }
    }

    /// A stand-in for the monitor: a shell that answers SIGUSR1 as the monitor does, in its main
    /// loop (`trap` is `pending=1`), with `1 reopening`, `delay` seconds, `1 ANSWER`, then
    /// `after` seconds before it looks at the next signals; or runs another `trap`, or (`trap`
    /// empty) ignores SIGUSR1.
    struct FakeMonitor {
        child: std::process::Child,
        dir: crate::fsutil::TempDir,
        start: u64,
    }

    impl FakeMonitor {
        async fn start(trap: &str, answer: &str, delay: &str, acks: bool) -> FakeMonitor {
            Self::start_with(trap, answer, delay, "0", acks).await
        }

        async fn start_with(
            trap: &str,
            answer: &str,
            delay: &str,
            after: &str,
            acks: bool,
        ) -> FakeMonitor {
            let dir = crate::fsutil::TempDir::new("fake-monitor");
            let script = r#"
                ack() { echo "$1" > "$D/log-reopened.tmp" && mv "$D/log-reopened.tmp" "$D/log-reopened"; }
                n=0
                reopen() { n=$((n+1)); ack "$n reopening"; sleep "$DELAY"; ack "$n $ANSWER"; sleep "$AFTER"; }
                pending=
                trap "$TRAP" USR1
                if [ -n "$ACKS" ]; then ack "0 ok"; fi
                : > "$D/started"
                while :; do
                    if [ -n "$pending" ]; then pending=; reopen; fi
                    sleep 0.01
                done
            "#;
            let child = std::process::Command::new("sh")
                .args(["-c", script])
                .env("D", &dir.0)
                .env("TRAP", trap)
                .env("ANSWER", answer)
                .env("DELAY", delay)
                .env("AFTER", after)
                .env("ACKS", if acks { "1" } else { "" })
                .spawn()
                .unwrap();
            let start = proc::start_time(child.id() as i32).unwrap();
            while !dir.0.join("started").exists() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            FakeMonitor { child, dir, start }
        }

        async fn reopen(&self, timeout: Duration) -> Result<(), MonitorError> {
            let pid = self.child.id() as i32;
            reopen_log_within("ctr1", pid, self.start, &self.dir.0, timeout).await
        }

        fn ack(&self) -> String {
            std::fs::read_to_string(self.dir.0.join(REOPEN_ACK)).unwrap()
        }
    }

    impl Drop for FakeMonitor {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    async fn reopen_waits_for_the_acknowledgement() {
        let m = FakeMonitor::start("pending=1", "ok", "0.1", true).await;
        let t = Instant::now();
        m.reopen(REOPEN_TIMEOUT).await.unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(100),
            "returned before the reopen ended"
        );
        assert_eq!(m.ack(), "1 ok\n");
        m.reopen(REOPEN_TIMEOUT).await.unwrap();
        assert_eq!(m.ack(), "2 ok\n");
    }

    #[tokio::test]
    async fn reopen_reports_the_monitors_error() {
        let m =
            FakeMonitor::start("pending=1", "error opening log /l/0.log: gone", "0", true).await;
        let e = m.reopen(REOPEN_TIMEOUT).await.unwrap_err();
        assert!(matches!(e, MonitorError::LogReopen { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "container ctr1: log not reopened: opening log /l/0.log: gone"
        );
    }

    #[tokio::test]
    async fn reopen_times_out_without_an_answer() {
        let m = FakeMonitor::start("", "ok", "0", true).await;
        let t = Instant::now();
        let e = m.reopen(Duration::from_millis(300)).await.unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(
            e.to_string(),
            "monitor for ctr1: log reopen not acknowledged within 300 ms"
        );
    }

    #[tokio::test]
    async fn reopen_of_an_exited_monitor_fails_at_once() {
        let mut m = FakeMonitor::start("", "ok", "0", true).await;
        m.child.kill().unwrap();
        m.child.wait().unwrap();
        let t = Instant::now();
        let e = m.reopen(REOPEN_TIMEOUT).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(e.to_string().contains("monitor has exited"), "{e}");
    }

    #[tokio::test]
    async fn a_monitor_without_acknowledgements_is_only_signalled() {
        let m = FakeMonitor::start(": > \"$D/signalled\"", "", "0", false).await;
        m.reopen(REOPEN_TIMEOUT).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !m.dir.0.join("signalled").exists() {
            assert!(Instant::now() < deadline, "not signalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The case the `reopening` step exists for: a second caller arrives while the monitor is
    /// in the middle of the first caller's reopen. That reopen opened the path before the
    /// second caller's rename, so its acknowledgement must not answer the second call.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reopen_under_way_does_not_answer_a_later_call() {
        // `1 ok` stays for a while before the second signal is served, so a wrong answer
        // would be seen.
        let m = FakeMonitor::start_with("pending=1", "ok", "0.2", "0.2", true).await;
        let m = std::sync::Arc::new(m);
        let first = {
            let m = m.clone();
            tokio::spawn(async move { m.reopen(REOPEN_TIMEOUT).await })
        };
        while m.ack() != "1 reopening\n" {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        m.reopen(REOPEN_TIMEOUT).await.unwrap();
        assert_eq!(m.ack(), "2 ok\n", "answered by the reopen under way");
        first.await.unwrap().unwrap();
    }
}
