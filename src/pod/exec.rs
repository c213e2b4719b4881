//! Running a command in a container (CRI ExecSync; the base of Exec, probes and `peapod exec`).
//!
//! The command runs through the container's own runtime handler (`runc exec --process FILE`)
//! with the container's own process spec, so an exec gets exactly what the container's init
//! got: user and groups, capabilities, no_new_privileges, AppArmor/SELinux labels, rlimits,
//! environment and working directory; the runtime puts it in the container's cgroup and
//! namespaces. Only the arguments (and the terminal flag) differ.
//!
//! The daemon runs the runtime itself (no monitor in between: an exec ends with its caller),
//! reads stdout and stderr (or, for a tty, a pty of its own), each capped at [`OUTPUT_CAP`] (CVE-2022-31030: a command that
//! prints forever must not grow the daemon), and on timeout kills the process by the PID the
//! runtime wrote. The process spec and PID files live in the bundle, so a crash leaves nothing
//! that the container's removal does not remove.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::{Process, Spec};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::{debug, instrument};

use super::record::ContainerState;
use super::{Engine, EngineError, Result};
use crate::oci::runtime::OciRuntime;

/// The most ExecSync keeps of stdout and stderr together: what fits in the 16 MiB message
/// kubelet accepts (its gRPC limit), with room for the rest of the response.
pub const OUTPUT_CAP: usize = (16 << 20) - (4 << 10);

/// How long a tty exec waits for the client's first terminal size before it starts.
const FIRST_RESIZE_WAIT: Duration = Duration::from_millis(100);

/// How long a killed exec (and its runtime process) gets to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What an ExecSync returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// An exec prepared to run: the runtime, the container ID and the files in the bundle.
pub struct PreparedExec {
    pub runtime: OciRuntime,
    pub container_id: String,
    pub process_file: PathBuf,
    pub pid_file: PathBuf,
}

impl Drop for PreparedExec {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.process_file);
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

impl PreparedExec {
    /// `<runtime> exec --process FILE --pid-file FILE [EXTRA...] ID`; the caller sets its
    /// stdio. Options must come before the ID: after it, the runtime reads a command.
    pub fn command(&self, extra: &[&std::ffi::OsStr]) -> tokio::process::Command {
        let mut cmd = self.runtime.command();
        cmd.arg("exec")
            .arg("--process")
            .arg(&self.process_file)
            .arg("--pid-file")
            .arg(&self.pid_file)
            .args(extra)
            .arg(&self.container_id);
        cmd.kill_on_drop(true);
        cmd
    }

    /// The exec'd process's PID (host namespace), once the runtime has started it.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

/// The container's process spec with `args` instead of its own command.
pub fn exec_process(container: &Process, args: &[String], tty: bool) -> Process {
    let mut p = container.clone();
    p.set_args(Some(args.to_vec()));
    p.set_terminal(Some(tty));
    p.set_console_size(None);
    p
}

impl Engine {
    /// Writes the process spec of an exec of `args` in the running container `id` into its
    /// bundle. FAILED_PRECONDITION when the container does not run.
    pub async fn prepare_exec(&self, id: &str, args: &[String], tty: bool) -> Result<PreparedExec> {
        if args.is_empty() {
            return Err(EngineError::invalid("cmd", "must not be empty"));
        }
        let rec = self.container(id)?.record();
        if rec.state() != ContainerState::Running {
            return Err(EngineError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let runtime = self.runtimes.get(&rec.runtime_handler)?.clone();
        let bundle = self.paths.bundle_dir(&rec.id);
        let spec = read_spec(&bundle.join("config.json"))?;
        let process = spec.process().as_ref().ok_or_else(|| {
            EngineError::FailedPrecondition(format!("container {} has no process spec", rec.id))
        })?;
        let tag = &crate::fsutil::new_id()[..16];
        let prepared = PreparedExec {
            runtime,
            container_id: rec.id.clone(),
            process_file: bundle.join(format!("exec-{tag}.json")),
            pid_file: bundle.join(format!("exec-{tag}.pid")),
        };
        let json = serde_json::to_vec(&exec_process(process, args, tty))
            .map_err(|e| EngineError::io("encoding the exec process")(e.into()))?;
        // /run is tmpfs: no fsync, and a crash leaves the file in a bundle that goes with it.
        crate::fsutil::atomic_write_opts(&prepared.process_file, &json, false)
            .map_err(EngineError::io("writing the exec process spec"))?;
        Ok(prepared)
    }

    /// CRI ExecSync: runs `args` in container `id`, returns its output and exit code; kills it
    /// after `timeout` (none: no limit), failing with DEADLINE_EXCEEDED as containerd does.
    #[instrument(skip(self, args), fields(container_id = %id))]
    pub async fn exec_sync(
        self: &Arc<Self>,
        id: &str,
        args: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput> {
        let prepared = self.prepare_exec(id, args, false).await?;
        let mut child = prepared
            .command(&[])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(EngineError::io(format!(
                "running {}",
                prepared.runtime.path.display()
            )))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let reading = tokio::spawn(async move {
            let budget = std::sync::atomic::AtomicUsize::new(OUTPUT_CAP);
            let (o, e) = tokio::join!(read_capped(stdout, &budget), read_capped(stderr, &budget));
            (o, e)
        });
        let waited = match timeout {
            Some(t) => tokio::time::timeout(t, child.wait()).await.ok(),
            None => Some(child.wait().await),
        };
        let status = match waited {
            Some(s) => s.map_err(EngineError::io("waiting for the exec"))?,
            None => {
                // Timed out: the command first (the runtime then exits with it), then the
                // runtime itself should it hang.
                if let Some(pid) = prepared.pid() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                if tokio::time::timeout(KILL_WAIT, child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                reading.abort();
                let t = timeout.unwrap_or_default();
                return Err(EngineError::DeadlineExceeded(format!(
                    "timeout {t:?} exceeded: command {args:?} in container {} was killed",
                    prepared.container_id
                )));
            }
        };
        let (stdout, stderr) = reading
            .await
            .map_err(|e| EngineError::io("reading exec output")(std::io::Error::other(e)))?;
        let (stdout, stderr) = (
            stdout.map_err(EngineError::io("reading exec stdout"))?,
            stderr.map_err(EngineError::io("reading exec stderr"))?,
        );
        let exit_code = exec_result(&prepared, status, &stderr)?;
        debug!(exit_code, "exec finished");
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
        })
    }
}

/// The exit code of a process: its status, or 128+N for death by signal N.
fn exit_code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

fn read_spec(path: &Path) -> Result<Spec> {
    let data =
        std::fs::read(path).map_err(EngineError::io(format!("reading {}", path.display())))?;
    serde_json::from_slice(&data).map_err(|e| {
        EngineError::io(format!("parsing {}", path.display()))(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e,
        ))
    })
}

/// Reads `r` to its end, keeping what the shared `budget` still allows and discarding the
/// rest (still reading, so that the writer never blocks on a full pipe).
pub async fn read_capped(
    mut r: impl AsyncRead + Unpin,
    budget: &std::sync::atomic::AtomicUsize,
) -> std::io::Result<Vec<u8>> {
    use std::sync::atomic::Ordering;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        let took = budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left - left.min(n))
            })
            .map(|left| left.min(n))
            .unwrap_or(0);
        out.extend_from_slice(&buf[..took]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_keeps_the_containers_process_but_its_args() {
        let mut p = Process::default();
        p.set_args(Some(vec!["/init".into()]));
        p.set_env(Some(vec!["A=1".into()]));
        p.set_cwd("/work".into());
        p.set_no_new_privileges(Some(true));
        p.set_terminal(Some(true));
        let e = exec_process(&p, &["sh".into(), "-c".into(), "id".into()], false);
        assert_eq!(
            e.args().as_deref(),
            Some(&["sh".to_string(), "-c".into(), "id".into()][..])
        );
        assert_eq!(e.env(), p.env());
        assert_eq!(e.cwd(), p.cwd());
        assert_eq!(e.no_new_privileges(), Some(true));
        assert_eq!(e.user(), p.user());
        assert_eq!(e.capabilities(), p.capabilities());
        assert_eq!(e.terminal(), Some(false));
    }

    #[tokio::test]
    async fn output_is_capped_but_drained() {
        use std::sync::atomic::AtomicUsize;
        let big = vec![b'x'; OUTPUT_CAP + 123_456];
        let budget = AtomicUsize::new(OUTPUT_CAP);
        let out = read_capped(&big[..], &budget).await.unwrap();
        assert_eq!(out.len(), OUTPUT_CAP);
        // The budget is shared: nothing is left for the other stream.
        assert!(read_capped(&b"late"[..], &budget).await.unwrap().is_empty());
        let budget = AtomicUsize::new(OUTPUT_CAP);
        let small = read_capped(&b"hello"[..], &budget).await.unwrap();
        assert_eq!(small, b"hello");
    }

    #[test]
    fn signals_are_128_plus_n() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code_of(std::process::ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code_of(std::process::ExitStatus::from_raw(3 << 8)), 3);
    }
}

/// The client's side of an interactive exec: each stream is optional, as in the CRI request.
#[derive(Default)]
pub struct ExecIo {
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stdout: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    pub stderr: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    /// Terminal sizes (columns, rows), applied to the exec's pty as they come.
    pub resize: Option<tokio::sync::mpsc::Receiver<(u16, u16)>>,
}

/// Kills the exec'd process when the exec is abandoned (the client went away mid-stream):
/// killing the runtime alone would leave the command running in the container.
struct KillOnDrop<'a> {
    exec: &'a PreparedExec,
    armed: bool,
}

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Some(pid) = self.exec.pid() {
                tracing::debug!(pid, "exec abandoned: killing it");
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Engine {
    /// An interactive exec (CRI Exec through the streaming server): `args` in container `id`
    /// with the client's streams, a pty when `tty`; returns the exit code. Dropping the future
    /// kills the command.
    #[instrument(skip(self, args, io), fields(container_id = %id))]
    pub async fn exec_streams(
        &self,
        id: &str,
        args: &[String],
        tty: bool,
        io: ExecIo,
    ) -> Result<i32> {
        let prepared = self.prepare_exec(id, args, tty).await?;
        let mut guard = KillOnDrop {
            exec: &prepared,
            armed: true,
        };
        let code = if tty {
            exec_tty(&prepared, io).await?
        } else {
            exec_pipes(&prepared, io).await?
        };
        guard.armed = false;
        Ok(code)
    }
}

async fn exec_pipes(p: &PreparedExec, mut io: ExecIo) -> Result<i32> {
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let mut child = p
        .command(&[])
        .stdin(piped(io.stdin.is_some()))
        .stdout(piped(io.stdout.is_some()))
        .stderr(piped(io.stderr.is_some()))
        .spawn()
        .map_err(EngineError::io(format!(
            "running {}",
            p.runtime.path.display()
        )))?;
    // stdin: copied until the client closes it, then the command sees EOF.
    let stdin_task = match (io.stdin.take(), child.stdin.take()) {
        (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
        })),
        _ => None,
    };
    let out = copy_out(child.stdout.take(), io.stdout.take());
    let err = copy_out(child.stderr.take(), io.stderr.take());
    let (status, _, _) = tokio::join!(child.wait(), out, err);
    if let Some(t) = stdin_task {
        t.abort();
    }
    let status = status.map_err(EngineError::io("waiting for the exec"))?;
    exec_result(p, status, &[])
}

async fn copy_out(
    from: Option<impl AsyncRead + Unpin>,
    to: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
) {
    use tokio::io::AsyncWriteExt;
    if let (Some(mut from), Some(mut to)) = (from, to) {
        let _ = tokio::io::copy(&mut from, &mut to).await;
        let _ = to.shutdown().await;
    }
}

/// The exit code, or the runtime's error when it never started the command (not found, not
/// executable...): that is an error of the call, not an exit code of the command, as
/// containerd reports it. `stderr` is the runtime's own, where the daemon has it.
fn exec_result(p: &PreparedExec, status: std::process::ExitStatus, stderr: &[u8]) -> Result<i32> {
    let code = exit_code_of(status);
    if code != 0 && p.pid().is_none() {
        let said = String::from_utf8_lossy(stderr).trim().to_string();
        return Err(EngineError::Runtime(
            crate::oci::runtime::RuntimeError::Failed {
                runtime: p.runtime.name.clone(),
                op: "exec",
                id: p.container_id.clone(),
                message: if said.is_empty() {
                    format!("the command did not start (exit status {code})")
                } else {
                    said
                },
            },
        ));
    }
    Ok(code)
}

/// A tty exec. runc makes the container's pty itself and, not detached, relays it to its own
/// stdio, taking the size of its own terminal on SIGWINCH (a console socket is only for
/// detached runs, where the runtime would not report the exit code). So the daemon gives the
/// runtime a terminal of its own: the slave end of a fresh pty as its stdio, the master end
/// copied to and from the client; a resize sets that pty's size and sends SIGWINCH.
async fn exec_tty(p: &PreparedExec, mut io: ExecIo) -> Result<i32> {
    use std::os::fd::AsRawFd;
    use tokio::io::AsyncWriteExt;
    let pty = nix::pty::openpty(None, None).map_err(|e| EngineError::io("openpty")(e.into()))?;
    // Clients send the terminal's size first thing (crictl, kubectl): wait briefly for it so
    // the runtime copies the client's size, not a default, onto the container's terminal.
    let (cols, rows) = match io.resize.as_mut() {
        Some(rx) => tokio::time::timeout(FIRST_RESIZE_WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or((80, 24)),
        None => (80, 24),
    };
    set_size(pty.master.as_raw_fd(), cols, rows);
    let slave = std::fs::File::from(pty.slave);
    let stdio = |f: &std::fs::File| -> Result<Stdio> {
        Ok(Stdio::from(f.try_clone().map_err(EngineError::io("pty"))?))
    };
    let mut child = p
        .command(&["--tty".as_ref()])
        .stdin(stdio(&slave)?)
        .stdout(stdio(&slave)?)
        .stderr(stdio(&slave)?)
        .spawn()
        .map_err(EngineError::io(format!(
            "running {}",
            p.runtime.path.display()
        )))?;
    // Only the runtime holds the slave now: once it and the command are gone, reads of the
    // master end with EIO.
    drop(slave);
    let runtime_pid = child.id().map(|p| p as i32);
    let master = std::fs::File::from(pty.master);
    let read_half = tokio::fs::File::from_std(master.try_clone().map_err(EngineError::io("pty"))?);
    let mut write_half =
        tokio::fs::File::from_std(master.try_clone().map_err(EngineError::io("pty"))?);
    let resize_task = io.resize.take().map(|mut rx| {
        tokio::spawn(async move {
            while let Some((cols, rows)) = rx.recv().await {
                set_size(master.as_raw_fd(), cols, rows);
                if let Some(pid) = runtime_pid {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGWINCH,
                    );
                }
            }
        })
    });
    let stdin_task = io.stdin.take().map(|mut from| {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut write_half).await;
            // End of input on a terminal: ^D.
            let _ = write_half.write_all(&[4]).await;
        })
    });
    let out = copy_pty(read_half, io.stdout.take());
    let (status, _) = tokio::join!(child.wait(), out);
    for t in [stdin_task, resize_task].into_iter().flatten() {
        t.abort();
    }
    let status = status.map_err(EngineError::io("waiting for the exec"))?;
    exec_result(p, status, &[])
}

/// Sets a terminal's size (TIOCSWINSZ).
fn set_size(fd: std::os::fd::RawFd, cols: u16, rows: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on a pty fd this process owns, with a valid winsize.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// Copies the pty's output until the terminal closes (EIO once every slave end is gone).
async fn copy_pty(
    mut from: tokio::fs::File,
    to: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
) {
    use tokio::io::AsyncWriteExt;
    let mut buf = vec![0u8; 32 * 1024];
    let mut to = to;
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(w) = to.as_mut() {
                    if w.write_all(&buf[..n]).await.is_err() {
                        to = None;
                    }
                }
            }
        }
    }
    if let Some(mut w) = to {
        let _ = w.shutdown().await;
    }
}
