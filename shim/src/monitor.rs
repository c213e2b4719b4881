//! `peapod-shim monitor`: one per container, like conmon or containerd-shim but tiny.
//!
//! Protocol with the daemon, which spawns the monitor as its direct child:
//! - fd 3 is the write end of the sync pipe: the monitor writes `created <init pid>` once
//!   `RUNTIME create` succeeded, or `error <message>` (then exits 1), and closes it. The daemon
//!   then runs `RUNTIME start ID` and sends signals itself; the monitor never does either.
//! - The monitor owns the container's stdio: it makes one pipe for stdout and one for stderr,
//!   gives the write ends to `RUNTIME create` (the container init inherits them) and keeps the
//!   read ends. stdin is /dev/null, or with `--stdin` a pipe whose write end the monitor keeps
//!   open for a later attach. With `--tty` the runtime makes a pty and sends its master over
//!   the console socket (see `console.rs`); the master is read as the stdout stream.
//! - Output goes to `--log-path` in the CRI format (`crilog.rs`); SIGUSR1 reopens that file.
//!   Each reopen is acknowledged in `<bundle>/log-reopened` (`logack.rs`): `<seq> reopening`
//!   before the open, then `<seq> ok` or `<seq> error <message>`, written atomically. The
//!   monitor writes `0 ok` there before `RUNTIME create`, so the daemon can tell a monitor that
//!   acknowledges from one that does not, and waits for a sequence above the one it read
//!   before signalling. SIGUSR1s read together are served by one reopen.
//! - The monitor is a child subreaper, so the container init (forked by `RUNTIME create`, which
//!   exits) becomes its child. When the init is reaped, the remaining output is drained and the
//!   exit file (`exitfile.rs`) is written; then the monitor exits 0.
//! - SIGTERM, SIGINT, SIGHUP and SIGPIPE are ignored and the monitor runs in its own session:
//!   it ends when its container ends, not when the daemon does.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::args::MonitorOpts;
use crate::attach::AttachServer;
use crate::attachproto as proto;
use crate::console::ConsoleSocket;
use crate::crilog::{self, CriLog, LineSplitter, Tag};
use crate::exitfile::{self, Exit};
use crate::logack::ReopenAck;
use crate::runtimelog;
use crate::syncfd::SyncPipe;
use crate::sys;

/// Size of one read from a container pipe.
const READ_BUF: usize = 32 * 1024;

/// Reads allowed per stream when draining after the init exited: other processes of a shared
/// PID namespace may still hold the write end and keep writing; the monitor does not wait for
/// them forever.
const DRAIN_READS: usize = 256;

/// Runs the monitor; returns the process exit status.
pub fn run(opts: &MonitorOpts) -> i32 {
    let sync = SyncPipe::take();
    let sigfd = match defensive_start() {
        Ok(fd) => fd,
        Err(msg) => return fail(sync, &msg),
    };
    // Before the container exists, so a failure needs no cleanup.
    let mut ack = match ReopenAck::start(&opts.bundle) {
        Ok(a) => a,
        Err(e) => {
            let path = opts.bundle.join(crate::logack::FILE);
            return fail(sync, &format!("writing {}: {e}", path.display()));
        }
    };
    // Also before the container exists; clients may connect before it starts.
    let mut attach = match AttachServer::bind(&opts.bundle, opts.stdin_once) {
        Ok(a) => a,
        Err(e) => {
            let path = opts.bundle.join(proto::SOCKET);
            return fail(sync, &format!("attach socket {}: {e}", path.display()));
        }
    };
    let mut created = match create(opts) {
        Ok(c) => c,
        Err(msg) => return fail(sync, &msg),
    };
    if let Err(msg) = connect_attach(opts, &mut created, &mut attach) {
        force_delete(opts);
        return fail(sync, &msg);
    }
    sync.created(created.init_pid);
    let (ended, finished_at_ns) = watch(opts, &sigfd, created, &mut ack, &mut attach);
    attach.finish();
    let line = exitfile::encode(ended.pid, ended.exit, finished_at_ns);
    if let Err(e) = exitfile::write_atomic(&opts.exit_file, line.as_bytes()) {
        eprintln!(
            "peapod-shim monitor: writing exit file {}: {e}",
            opts.exit_file.display()
        );
        return 1;
    }
    0
}

fn fail(sync: SyncPipe, msg: &str) -> i32 {
    eprintln!("peapod-shim monitor: {msg}");
    sync.error(msg);
    1
}

/// The signals the monitor handles, through a signalfd.
fn handled_signals() -> sys::SigSet {
    sys::SigSet::of(&[libc::SIGCHLD, libc::SIGUSR1])
}

/// Isolates the monitor from the daemon (fds, session, signals) and makes it the reaper of the
/// container's processes. Returns the signalfd for SIGCHLD and SIGUSR1.
fn defensive_start() -> Result<OwnedFd, String> {
    // fds 0-2 must exist so new pipes never take those numbers; everything from 4 up was
    // leaked by the daemon and must not reach the container (runc CVE-2024-21626).
    sys::ensure_std_fds().map_err(|e| format!("opening /dev/null: {e}"))?;
    sys::close_fds_from(4).map_err(|e| format!("closing inherited fds: {e}"))?;
    // EPERM means we already lead a process group (spawned with process_group(0)); the point,
    // not sharing the daemon's group and terminal, holds either way.
    if let Err(e) = sys::setsid() {
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(format!("setsid: {e}"));
        }
    }
    sys::set_child_subreaper().map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
    for sig in [libc::SIGPIPE, libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
        sys::ignore_signal(sig).map_err(|e| format!("ignoring signal {sig}: {e}"))?;
    }
    // An inherited SIG_IGN for SIGCHLD would let the kernel reap the init and lose its status.
    sys::default_signal(libc::SIGCHLD).map_err(|e| format!("SIGCHLD disposition: {e}"))?;
    let set = handled_signals();
    set.block().map_err(|e| format!("blocking signals: {e}"))?;
    set.signalfd().map_err(|e| format!("signalfd: {e}"))
}

/// One output stream of the container, as read by the monitor.
struct Stream {
    /// `stdout` or `stderr`, as written in the CRI log.
    name: &'static str,
    /// Read end (non-blocking); `None` once at EOF.
    fd: Option<OwnedFd>,
    split: LineSplitter,
}

/// What a successful create leaves: the init's PID and the monitor's ends of its stdio.
struct Created {
    init_pid: i32,
    streams: Vec<Stream>,
    /// The write end of the container's stdin pipe (`--stdin`), handed to the attach server,
    /// which keeps it open until the end (or, with `--stdin-once`, the first attach's end).
    stdin: Option<OwnedFd>,
}

/// The end of the container's init.
struct Ended {
    pid: i32,
    exit: Exit,
}

/// Runs `RUNTIME create` and collects what the event loop needs. On error nothing is left
/// behind: the console socket is removed, and a container that was created but cannot be
/// monitored is force-deleted.
fn create(opts: &MonitorOpts) -> Result<Created, String> {
    let pipe = |what: &str| {
        let (r, w) = sys::pipe().map_err(|e| format!("{what} pipe: {e}"))?;
        sys::set_nonblocking(r.as_raw_fd()).map_err(|e| format!("{what} pipe: {e}"))?;
        Ok::<_, String>((r, w))
    };
    let devnull = || sys::open_devnull().map_err(|e| format!("opening /dev/null: {e}"));

    // Container side of stdin, and the end the monitor keeps.
    let (stdin_child, stdin_keep) = if opts.stdin && !opts.tty {
        let (r, w) = sys::pipe().map_err(|e| format!("stdin pipe: {e}"))?;
        (r, Some(w))
    } else {
        // With a tty, stdin is the pty: the master the monitor holds serves a later attach.
        (devnull()?, None)
    };
    // With a tty the container's output arrives on the pty master, so runc create's own stdout
    // goes nowhere; its stderr stays a pipe (any runtime complaint is still captured).
    let (stdout_r, stdout_w) = if opts.tty {
        (None, devnull()?)
    } else {
        let (r, w) = pipe("stdout")?;
        (Some(r), w)
    };
    let (stderr_r, stderr_w) = pipe("stderr")?;
    let console = if opts.tty {
        Some(ConsoleSocket::bind(&opts.exit_file).map_err(|e| format!("console socket: {e}"))?)
    } else {
        None
    };

    // Only log lines written by this create count when explaining a failure.
    let log_offset = std::fs::metadata(&opts.runtime_log).map_or(0, |m| m.len());
    let pid_file = opts.bundle.join("init.pid");
    let mut sub: Vec<&OsStr> = vec!["create".as_ref(), "--bundle".as_ref(), opts.bundle.as_ref()];
    sub.extend(["--pid-file".as_ref(), pid_file.as_os_str()]);
    if let Some(c) = &console {
        sub.extend(["--console-socket".as_ref(), c.path().as_os_str()]);
    }
    sub.push(&opts.id);
    let argv = runtime_argv(opts, &sub)?;
    let spawned = sys::spawn(
        &argv,
        [
            stdin_child.as_raw_fd(),
            stdout_w.as_raw_fd(),
            stderr_w.as_raw_fd(),
        ],
    );
    // Close the monitor's copies of the container-side ends right away, so that EOF on the
    // read ends means the container (and whatever inherited them) closed them.
    drop((stdin_child, stdout_w, stderr_w));
    let pid = spawned.map_err(|e| format!("starting {}: {e}", opts.runtime.display()))?;
    let status = sys::wait_pid(pid).map_err(|e| format!("waiting for runtime create: {e}"))?;
    if status != 0 {
        return Err(create_failure(opts, log_offset, status, &stderr_r));
    }

    let stdout = match &console {
        Some(c) => match c.take_master() {
            Ok(master) => {
                if let Err(e) = sys::set_nonblocking(master.as_raw_fd()) {
                    force_delete(opts);
                    return Err(format!("pty master: {e}"));
                }
                Some(master)
            }
            Err(e) => {
                force_delete(opts);
                return Err(format!("receiving the pty master: {e}"));
            }
        },
        None => stdout_r,
    };
    drop(console); // removes the socket file
    let init_pid = match read_pid_file(&pid_file) {
        Ok(pid) => pid,
        Err(e) => {
            force_delete(opts);
            return Err(format!("reading {}: {e}", pid_file.display()));
        }
    };
    let stream = |name, fd| Stream {
        name,
        fd,
        split: LineSplitter::new(crilog::MAX_RECORD),
    };
    Ok(Created {
        init_pid,
        streams: vec![stream("stdout", stdout), stream("stderr", Some(stderr_r))],
        stdin: stdin_keep,
    })
}

/// Hands the container's stdin (the pipe's write end, or with a tty the pty master) and its
/// pty master to the attach server.
fn connect_attach(
    opts: &MonitorOpts,
    created: &mut Created,
    attach: &mut AttachServer,
) -> Result<(), String> {
    if opts.tty {
        let Some(master) = created.streams.first().and_then(|s| s.fd.as_ref()) else {
            return Ok(());
        };
        let dup = || sys::dup_cloexec(master.as_raw_fd()).map_err(|e| format!("pty master: {e}"));
        let stdin = if opts.stdin { Some(dup()?) } else { None };
        attach.connect_container(stdin, Some(dup()?));
    } else if let Some(w) = created.stdin.take() {
        sys::set_nonblocking(w.as_raw_fd()).map_err(|e| format!("stdin pipe: {e}"))?;
        attach.connect_container(Some(w), None);
    }
    Ok(())
}

/// `RUNTIME [runtime-args...] --log RUNTIME_LOG --log-format json SUBCOMMAND...` as argv.
fn runtime_argv(opts: &MonitorOpts, sub: &[&OsStr]) -> Result<Vec<CString>, String> {
    let mut args: Vec<&OsStr> = vec![opts.runtime.as_os_str()];
    args.extend(opts.runtime_args.iter().map(|a| a.as_os_str()));
    args.extend([
        "--log".as_ref(),
        opts.runtime_log.as_os_str(),
        "--log-format".as_ref(),
        "json".as_ref(),
    ]);
    args.extend_from_slice(sub);
    args.iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| format!("argument {a:?} contains NUL")))
        .collect()
}

/// Explains a failed create: the runtime log's last error, else what the runtime printed on
/// stderr, else its exit status.
fn create_failure(opts: &MonitorOpts, log_offset: u64, status: i32, stderr: &OwnedFd) -> String {
    let log = std::fs::read(&opts.runtime_log).unwrap_or_default();
    let new = log.get(log_offset as usize..).unwrap_or(&log);
    if let Some(msg) = runtimelog::last_error(new) {
        return msg;
    }
    let mut buf = [0u8; 4096];
    if let Ok(n) = sys::read(stderr.as_raw_fd(), &mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]);
        if let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) {
            return last.trim().to_owned();
        }
    }
    let runtime = opts.runtime.display();
    match exitfile::decode_wait_status(status) {
        Some(Exit {
            signal: 0,
            exit_code,
        }) => {
            format!("{runtime} create failed with exit status {exit_code}")
        }
        Some(Exit { signal, .. }) => format!("{runtime} create was killed by signal {signal}"),
        None => format!("{runtime} create failed (wait status {status:#x})"),
    }
}

/// Best-effort `RUNTIME delete --force ID`, for a container created but not monitorable.
fn force_delete(opts: &MonitorOpts) {
    let Ok(argv) = runtime_argv(opts, &["delete".as_ref(), "--force".as_ref(), &opts.id]) else {
        return;
    };
    let Ok(null) = sys::open_devnull() else {
        return;
    };
    let fd = null.as_raw_fd();
    if let Ok(pid) = sys::spawn(&argv, [fd, fd, fd]) {
        let _ = sys::wait_pid(pid);
    }
}

fn read_pid_file(path: &Path) -> io::Result<i32> {
    let text = std::fs::read_to_string(path)?;
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(io::Error::other(format!("bad pid {:?}", text.trim()))),
    }
}

/// Time since the Unix epoch (CLOCK_REALTIME).
fn now() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The current time as a CRI log timestamp.
fn timestamp() -> [u8; crilog::TIMESTAMP_LEN] {
    let t = now();
    crilog::format_timestamp(t.as_secs() as i64, t.subsec_nanos())
}

/// The event loop: copies output to the log until the init is reaped, then drains what is
/// left. Returns how the init ended and when (ns since the epoch).
fn watch(
    opts: &MonitorOpts,
    sigfd: &OwnedFd,
    created: Created,
    ack: &mut ReopenAck,
    attach: &mut AttachServer,
) -> (Ended, u128) {
    let Created {
        init_pid,
        mut streams,
        stdin: _stdin, // taken by the attach server; `None` here
    } = created;
    let mut log = CriLog::open(opts.log_path.clone());
    // Not zero-filled: its pages become resident only as far as reads actually fill them.
    let mut buf = Vec::with_capacity(READ_BUF);
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(8);
    let ended = loop {
        fds.clear();
        let pollin = |fd: i32| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        fds.push(pollin(sigfd.as_raw_fd()));
        // A negative fd is skipped by poll.
        fds.extend(
            streams
                .iter()
                .map(|s| pollin(s.fd.as_ref().map_or(-1, |fd| fd.as_raw_fd()))),
        );
        let attach_at = fds.len();
        attach.fds(&mut fds);
        if let Err(e) = sys::poll(&mut fds) {
            eprintln!("peapod-shim monitor: poll: {e}");
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        }
        for (pfd, s) in fds[1..attach_at].iter().zip(streams.iter_mut()) {
            if pfd.fd >= 0 && pfd.revents != 0 {
                s.pump(&mut buf, &mut log, attach);
            }
        }
        attach.handle(&fds[attach_at..]);
        if fds[0].revents != 0 {
            if let Some(end) = handle_signals(sigfd, init_pid, &mut log, ack) {
                break end;
            }
        }
    };
    // Whatever the init wrote before it died is in the pipes now; take it, but do not wait
    // for other holders of the write ends.
    for s in &mut streams {
        s.drain(&mut buf, &mut log, attach);
    }
    ended
}

/// Handles the pending signals; returns the init's end once it was reaped.
fn handle_signals(
    sigfd: &OwnedFd,
    init_pid: i32,
    log: &mut CriLog,
    ack: &mut ReopenAck,
) -> Option<(Ended, u128)> {
    let mut sigchld = false;
    let mut reopen = false;
    loop {
        match sys::read_signalfd(sigfd.as_raw_fd()) {
            Ok(Some(sig)) if sig == libc::SIGUSR1 as u32 => reopen = true,
            Ok(Some(_)) => sigchld = true,
            Ok(None) => break,
            Err(e) => {
                // Reap anyway: a lost SIGCHLD must not leave the monitor waiting forever.
                eprintln!("peapod-shim monitor: reading signalfd: {e}");
                sigchld = true;
                break;
            }
        }
    }
    if reopen {
        // One reopen for every SIGUSR1 read above: it is announced after all of them were
        // read, so it comes after each sender's rename (logack.rs explains why that holds).
        ack.reopen(log);
    }
    if !sigchld {
        return None;
    }
    let mut ended = None;
    // SIGCHLDs coalesce: reap until nothing is left. Other orphans are reaped and forgotten.
    while let Ok(Some((pid, status))) = sys::reap_any() {
        if pid == init_pid {
            if let Some(exit) = exitfile::decode_wait_status(status) {
                ended = Some((Ended { pid, exit }, now().as_nanos()));
            }
        }
    }
    ended
}

impl Stream {
    /// The attach frame kind of this stream.
    fn kind(&self) -> u8 {
        if self.name == "stderr" {
            proto::STDERR
        } else {
            proto::STDOUT
        }
    }

    /// One read; at EOF the unfinished line is flushed and the fd closed. Returns false when
    /// nothing more can be read right now (EOF or EAGAIN).
    fn pump(&mut self, buf: &mut Vec<u8>, log: &mut CriLog, attach: &mut AttachServer) -> bool {
        let Some(fd) = &self.fd else {
            return false;
        };
        buf.clear();
        let n = match sys::read_append(fd.as_raw_fd(), buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            // EIO is how a pty master says every slave end is closed: EOF for us.
            Err(e) => {
                if e.raw_os_error() != Some(libc::EIO) {
                    eprintln!("peapod-shim monitor: reading {}: {e}", self.name);
                }
                0
            }
        };
        // One timestamp per read: the time the data reached the monitor.
        let ts = timestamp();
        let name = self.name;
        let mut emit = |tag: Tag, content: &[u8]| log.record(&ts, name, tag, content);
        if n == 0 {
            self.split.finish(&mut emit);
            self.fd = None;
            log.flush();
            return false;
        }
        self.split.feed(&buf[..n], &mut emit);
        log.flush();
        attach.broadcast(self.kind(), &buf[..n]);
        true
    }

    /// Reads until EOF or EAGAIN (bounded), then flushes the unfinished line as full.
    fn drain(&mut self, buf: &mut Vec<u8>, log: &mut CriLog, attach: &mut AttachServer) {
        for _ in 0..DRAIN_READS {
            if !self.pump(buf, log, attach) {
                break;
            }
        }
        let ts = timestamp();
        let name = self.name;
        self.split
            .finish(&mut |tag, c| log.record(&ts, name, tag, c));
        log.flush();
        self.fd = None;
    }
}
