//! End-to-end tests of `peapod-shim monitor` with the real runc, and of `peapod-shim pause` in
//! real namespaces. They need root, /usr/sbin/runc and a static busybox at /bin/busybox;
//! without them each test prints a skip message and passes.
//!
//! Each container test builds a tiny OCI bundle (busybox rootfs, hand-written config.json,
//! cgroup `/peapod-shimtest/<id>`), runs the monitor with fd 3 as the sync pipe, and cleans up
//! after itself: `runc delete --force`, the temp dir, and the cgroup directories it made.
//!
//! `PEAPOD_SHIM_TEST_BIN=path` runs the tests against another build of the shim (e.g. the
//! static release one); `monitor_rss` prints the monitor's VmRSS (`--nocapture` to see it).

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const RUNC: &str = "/usr/sbin/runc";
const BUSYBOX: &str = "/bin/busybox";
const CGROUP_PARENT: &str = "peapod-shimtest";
const TIMEOUT: Duration = Duration::from_secs(30);

fn shim_bin() -> PathBuf {
    std::env::var_os("PEAPOD_SHIM_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_peapod-shim")))
}

/// True (after printing why) if this machine cannot run the tests.
fn skip(name: &str, needs_runc: bool) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let why = if !root {
        "not root"
    } else if needs_runc && !Path::new(RUNC).exists() {
        "no /usr/sbin/runc"
    } else if !Path::new(BUSYBOX).exists() {
        "no /bin/busybox"
    } else if !needs_runc && !has_util_linux() {
        "no unshare/nsenter (util-linux)"
    } else {
        return false;
    };
    eprintln!("skipping {name}: {why}");
    true
}

/// `unshare` and `nsenter`, which the pause tests use in the daemon's stead.
fn has_util_linux() -> bool {
    ["/usr/bin/unshare", "/usr/bin/nsenter"]
        .iter()
        .all(|p| Path::new(p).exists())
}

/// A pipe, both ends close-on-exec.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two fds into the array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: fresh fds owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Reads `fd` to EOF, failing the test after `TIMEOUT`.
fn read_to_eof(fd: OwnedFd) -> String {
    read_until(fd, false)
}

/// Reads `fd` to EOF or (with `line`) to the first newline, failing the test after `TIMEOUT`.
fn read_until(fd: OwnedFd, line: bool) -> String {
    let deadline = Instant::now() + TIMEOUT;
    let mut out = Vec::new();
    let mut file = fs::File::from(fd);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timeout reading sync pipe; got {out:?}");
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        if pfd.revents == 0 {
            continue;
        }
        let mut buf = [0u8; 512];
        let n = file.read(&mut buf).expect("reading sync pipe");
        out.extend_from_slice(&buf[..n]);
        if n == 0 || (line && out.contains(&b'\n')) {
            return String::from_utf8_lossy(&out).into_owned();
        }
    }
}

/// Waits for `child` to exit, killing it (and failing) after `TIMEOUT`.
fn wait_timeout(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not exit in time", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spawns the shim with `args` (through the `wrapper` command line, if any), the write end of
/// a new sync pipe on fd 3, and (to check the monitor's fd hygiene) another copy of that write
/// end leaked on fd 9. Returns the child and the read end.
fn spawn_shim(wrapper: &[&str], args: &[&str]) -> (Child, OwnedFd) {
    let (r, w) = pipe();
    let wfd = w.as_raw_fd();
    let mut cmd = match wrapper.split_first() {
        None => Command::new(shim_bin()),
        Some((prog, rest)) => {
            let mut c = Command::new(prog);
            c.args(rest).arg(shim_bin());
            c
        }
    };
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: only dup2/fcntl between fork and exec (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            for target in [3, 9] {
                if wfd == target {
                    if libc::fcntl(wfd, libc::F_SETFD, 0) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(wfd, target) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawning the shim");
    drop(w);
    (child, r)
}

/// Quotes `s` as a JSON string.
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One test container: bundle, runc root, cgroup; removed on drop.
struct Bundle {
    id: String,
    dir: PathBuf,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Bundles alive in this test process. The shared cgroup parent is removed only by the last
/// one, under this lock: removing it while a parallel test's runc is creating its cgroup
/// under it would make that create fail.
static LIVE: Mutex<usize> = Mutex::new(0);

impl Bundle {
    fn new(name: &str, args: &[&str], terminal: bool) -> Bundle {
        let id = format!(
            "{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("peapod-shimtest-{id}"));
        let _ = fs::remove_dir_all(&dir);
        let rootfs = dir.join("bundle/rootfs");
        for d in ["bin", "proc", "dev", "tmp"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        fs::create_dir_all(dir.join("runc-root")).unwrap();
        fs::create_dir_all(dir.join("logs")).unwrap();
        fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        for applet in [
            "sh", "echo", "sleep", "usleep", "ls", "cat", "printf", "seq",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let args: Vec<String> = args.iter().map(|a| json_str(a)).collect();
        let config = format!(
            r#"{{
  "ociVersion": "1.0.2",
  "process": {{
    "terminal": {terminal},
    "user": {{"uid": 0, "gid": 0}},
    "args": [{args}],
    "env": ["PATH=/bin", "TERM=xterm"],
    "cwd": "/",
    "noNewPrivileges": true
  }},
  "root": {{"path": "rootfs", "readonly": false}},
  "hostname": "shimtest",
  "mounts": [
    {{"destination": "/proc", "type": "proc", "source": "proc"}},
    {{"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
      "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}},
    {{"destination": "/dev/pts", "type": "devpts", "source": "devpts",
      "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}}
  ],
  "linux": {{
    "cgroupsPath": "/{CGROUP_PARENT}/{id}",
    "namespaces": [{{"type": "pid"}}, {{"type": "ipc"}}, {{"type": "uts"}}, {{"type": "mount"}}]
  }}
}}
"#,
            args = args.join(", ")
        );
        fs::write(dir.join("bundle/config.json"), config).unwrap();
        *LIVE.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Bundle { id, dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn runc_root(&self) -> String {
        self.path("runc-root").display().to_string()
    }

    /// `runc --root R <args> ID`.
    fn runc(&self, args: &[&str]) -> ExitStatus {
        Command::new(RUNC)
            .arg("--root")
            .arg(self.runc_root())
            .args(args)
            .arg(&self.id)
            .stdin(Stdio::null())
            .status()
            .unwrap()
    }

    /// Starts the monitor for this bundle (extra flags appended); returns it and the sync
    /// pipe's read end.
    fn monitor(&self, extra: &[&str]) -> (Child, OwnedFd) {
        let bundle = self.path("bundle").display().to_string();
        let exit = self.path("exit").display().to_string();
        let rlog = self.path("runtime.log").display().to_string();
        let log = self.path("logs/ctr.log").display().to_string();
        let root = self.runc_root();
        let mut args = vec![
            "monitor",
            "--id",
            &self.id,
            "--bundle",
            &bundle,
            "--runtime",
            RUNC,
            "--runtime-arg",
            "--root",
            "--runtime-arg",
            &root,
            "--exit-file",
            &exit,
            "--runtime-log",
            &rlog,
            "--log-path",
            &log,
        ];
        args.extend_from_slice(extra);
        spawn_shim(&[], &args)
    }

    /// Starts the monitor and expects `created <pid>`; returns the monitor and the PID.
    fn create(&self, extra: &[&str]) -> (Child, i32) {
        let (child, sync) = self.monitor(extra);
        let report = read_to_eof(sync);
        let pid = report
            .strip_prefix("created ")
            .and_then(|s| s.strip_suffix('\n'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected sync report {report:?}"));
        (child, pid)
    }

    /// The exit file's fields, checked for format.
    fn exit_file(&self) -> ExitFile {
        let text = fs::read_to_string(self.path("exit")).expect("exit file");
        assert!(
            text.ends_with('\n') && text.lines().count() == 1,
            "{text:?}"
        );
        assert!(!self.path("exit.tmp").exists());
        let field = |name: &str| -> i128 {
            let key = format!("\"{name}\":");
            let start = text
                .find(&key)
                .unwrap_or_else(|| panic!("{name} in {text}"))
                + key.len();
            let rest = &text[start..];
            let end = rest.find([',', '}']).unwrap();
            rest[..end].parse().unwrap()
        };
        ExitFile {
            pid: field("pid") as i32,
            exit_code: field("exit_code") as i32,
            signal: field("signal") as i32,
            finished_at_ns: field("finished_at_ns"),
        }
    }

    /// The CRI log as (stream, tag, content) records, each line's format checked.
    fn log_records(&self) -> Vec<(String, String, String)> {
        records(&self.path("logs/ctr.log"))
    }

    /// The monitor's log-reopen acknowledgement (`<bundle>/log-reopened`).
    fn ack(&self) -> String {
        fs::read_to_string(self.path("bundle/log-reopened")).unwrap_or_default()
    }
}

/// A CRI log file as (stream, tag, content) records, each line's format checked.
fn records(path: &Path) -> Vec<(String, String, String)> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let ts = parts.next().unwrap();
            assert_eq!(ts.len(), 30, "timestamp in {line:?}");
            assert!(ts.ends_with('Z') && &ts[10..11] == "T" && &ts[19..20] == ".");
            let stream = parts.next().unwrap().to_owned();
            let tag = parts.next().unwrap().to_owned();
            let content = parts.next().expect("content").to_owned();
            assert!(stream == "stdout" || stream == "stderr", "{line:?}");
            assert!(tag == "F" || tag == "P", "{line:?}");
            (stream, tag, content)
        })
        .collect()
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = Command::new(RUNC)
            .args(["--root", &self.runc_root(), "delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.dir);
        // Only the cgroups this test made: <hierarchy>/peapod-shimtest/<id>, then the parent
        // once no other bundle of this process may still use it (it stays, and rmdir fails
        // harmlessly, while another test run has a cgroup under it).
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        *live -= 1;
        if let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let parent = h.path().join(CGROUP_PARENT);
                let _ = fs::remove_dir(parent.join(&self.id));
                if *live == 0 {
                    let _ = fs::remove_dir(&parent);
                }
            }
        }
    }
}

#[derive(Debug)]
struct ExitFile {
    pid: i32,
    exit_code: i32,
    signal: i32,
    finished_at_ns: i128,
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

fn has(records: &[(String, String, String)], stream: &str, tag: &str, content: &str) -> bool {
    records
        .iter()
        .any(|(s, t, c)| s == stream && t == tag && c == content)
}

#[test]
fn exit_code_and_cri_log() {
    if skip("exit_code_and_cri_log", true) {
        return;
    }
    let script = "ls -l /proc/$$/fd; echo out; echo err >&2; printf partial; exit 3";
    let b = Bundle::new("exit3", &["sh", "-c", script], false);
    let before = now_ns();
    let (mut mon, pid) = b.create(&[]);
    assert!(pid > 1);
    assert_eq!(
        fs::read_to_string(b.path("bundle/init.pid"))
            .unwrap()
            .trim(),
        pid.to_string()
    );
    assert!(b.runc(&["start"]).success());
    let st = wait_timeout(&mut mon);
    assert_eq!(st.code(), Some(0), "monitor status");
    let e = b.exit_file();
    assert_eq!((e.pid, e.exit_code, e.signal), (pid, 3, 0), "{e:?}");
    assert!(
        e.finished_at_ns >= before && e.finished_at_ns <= now_ns(),
        "{e:?}"
    );
    let recs = b.log_records();
    assert!(has(&recs, "stdout", "F", "out"), "{recs:?}");
    assert!(has(&recs, "stderr", "F", "err"), "{recs:?}");
    assert!(has(&recs, "stdout", "F", "partial"), "{recs:?}");
    // The container saw only fds 0-2: no sync pipe (3), no leaked fd 9. (`ls -l` of the
    // shell's fds: "lrwx------ ... 1 -> pipe:[123]".)
    let fds: Vec<&str> = recs
        .iter()
        .filter_map(|(_, _, c)| c.split_once(" -> ")?.0.rsplit(' ').next())
        .collect();
    assert_eq!(fds, ["0", "1", "2"], "{recs:?}");
    // No console socket for a non-tty container.
    assert!(!b.path("exit.console.sock").exists());
}

#[test]
fn long_lines_split_into_partials() {
    if skip("long_lines_split_into_partials", true) {
        return;
    }
    // 40000 x's then a newline: P 16384, P 16384, F 7232.
    let script = "i=0; s=xxxxxxxxxx; while [ $i -lt 12 ]; do s=$s$s; i=$((i+1)); done; \
                  echo ${s:0:40000}; echo done";
    let b = Bundle::new("long", &["sh", "-c", script], false);
    let (mut mon, _) = b.create(&[]);
    assert!(b.runc(&["start"]).success());
    assert_eq!(wait_timeout(&mut mon).code(), Some(0));
    let recs = b.log_records();
    let shape: Vec<(String, usize)> = recs.iter().map(|(_, t, c)| (t.clone(), c.len())).collect();
    assert_eq!(
        shape,
        [
            ("P".to_string(), 16384),
            ("P".to_string(), 16384),
            ("F".to_string(), 7232),
            ("F".to_string(), 4)
        ]
    );
    assert_eq!(b.exit_file().exit_code, 0);
}

#[test]
fn no_output_lost_under_volume() {
    if skip("no_output_lost_under_volume", true) {
        return;
    }
    // Both streams at once, far more than a pipe buffer, and an exit right after.
    let b = Bundle::new(
        "volume",
        &["sh", "-c", "seq 1 50000 >&2 & seq 1 100000; wait"],
        false,
    );
    let (mut mon, _) = b.create(&[]);
    assert!(b.runc(&["start"]).success());
    assert_eq!(wait_timeout(&mut mon).code(), Some(0));
    let recs = b.log_records();
    for (stream, n) in [("stdout", 100_000), ("stderr", 50_000)] {
        let got: Vec<&str> = recs
            .iter()
            .filter(|(s, t, _)| s == stream && t == "F")
            .map(|(_, _, c)| c.as_str())
            .collect();
        assert_eq!(got.len(), n, "{stream}");
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, c)| *c == (i + 1).to_string()),
            "{stream} out of order"
        );
    }
    assert_eq!(b.exit_file().exit_code, 0);
}

#[test]
fn sigkill_gives_137() {
    if skip("sigkill_gives_137", true) {
        return;
    }
    let b = Bundle::new("kill", &["sleep", "30"], false);
    let (mut mon, pid) = b.create(&[]);
    assert!(b.runc(&["start"]).success());
    // SAFETY: plain kill(2) of the container's init, which the monitor has not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert_eq!(wait_timeout(&mut mon).code(), Some(0));
    let e = b.exit_file();
    assert_eq!((e.pid, e.exit_code, e.signal), (pid, 137, 9), "{e:?}");
}

#[test]
fn deleted_before_start_gives_137() {
    if skip("deleted_before_start_gives_137", true) {
        return;
    }
    let b = Bundle::new("unstarted", &["sleep", "30"], false);
    let (mut mon, pid) = b.create(&[]);
    assert!(b.runc(&["delete", "--force"]).success());
    assert_eq!(wait_timeout(&mut mon).code(), Some(0));
    let e = b.exit_file();
    assert_eq!((e.pid, e.exit_code, e.signal), (pid, 137, 9), "{e:?}");
}

#[test]
fn failed_create_reports_error() {
    if skip("failed_create_reports_error", true) {
        return;
    }
    // A tty container, so the console socket's removal on failure is checked too.
    let b = Bundle::new("fail", &["/no/such/binary"], true);
    let (mut mon, sync) = b.monitor(&["--tty"]);
    let report = read_to_eof(sync);
    assert!(report.starts_with("error "), "{report:?}");
    assert!(report.contains("/no/such/binary"), "{report:?}");
    assert!(
        report.ends_with('\n') && report.lines().count() == 1,
        "{report:?}"
    );
    assert_eq!(wait_timeout(&mut mon).code(), Some(1));
    assert!(!b.path("exit").exists());
    assert!(!b.path("exit.console.sock").exists());
}

#[test]
fn bad_config_reports_error() {
    if skip("bad_config_reports_error", true) {
        return;
    }
    let b = Bundle::new("badcfg", &["true"], false);
    fs::write(b.path("bundle/config.json"), "{ not json").unwrap();
    let (mut mon, sync) = b.monitor(&[]);
    let report = read_to_eof(sync);
    assert!(
        report.starts_with("error ") && report.len() > 7,
        "{report:?}"
    );
    assert_eq!(wait_timeout(&mut mon).code(), Some(1));
    assert!(!b.path("exit").exists());
}

#[test]
fn missing_runtime_reports_error() {
    if skip("missing_runtime_reports_error", true) {
        return;
    }
    let b = Bundle::new("noruntime", &["true"], false);
    let (mut mon, sync) = spawn_shim(
        &[],
        &[
            "monitor",
            "--id",
            &b.id,
            "--bundle",
            &b.path("bundle").display().to_string(),
            "--runtime",
            "/no/such/runc",
            "--exit-file",
            &b.path("exit").display().to_string(),
            "--runtime-log",
            &b.path("runtime.log").display().to_string(),
        ],
    );
    let report = read_to_eof(sync);
    assert!(
        report.starts_with("error starting /no/such/runc"),
        "{report:?}"
    );
    assert_eq!(wait_timeout(&mut mon).code(), Some(1));
}

#[test]
fn tty_output_via_console_socket() {
    if skip("tty_output_via_console_socket", true) {
        return;
    }
    let b = Bundle::new("tty", &["sh", "-c", "echo hello-tty; exit 7"], true);
    let (mut mon, _pid) = b.create(&["--tty"]);
    assert!(
        !b.path("exit.console.sock").exists(),
        "console socket left behind"
    );
    assert!(b.runc(&["start"]).success());
    assert_eq!(wait_timeout(&mut mon).code(), Some(0));
    assert_eq!(b.exit_file().exit_code, 7);
    let recs = b.log_records();
    // runc clears ONLCR on the pty, so there is no "\r" before the newline.
    assert!(has(&recs, "stdout", "F", "hello-tty"), "{recs:?}");
    assert!(recs.iter().all(|(s, _, _)| s == "stdout"), "{recs:?}");
}

#[test]
fn stdin_pipe_stays_open() {
    if skip("stdin_pipe_stays_open", true) {
        return;
    }
    // With --stdin the monitor holds the write end: `read` blocks instead of seeing EOF.
    let b = Bundle::new(
        "stdin",
        &[
            "sh",
            "-c",
            "if read -t 1 x; then echo got; else echo timeout; fi",
        ],
        false,
    );
    let (mut mon, _) = b.create(&["--stdin"]);
    assert!(b.runc(&["start"]).success());
    assert_eq!(wait_timeout(&mut mon).code(), Some(0));
    let recs = b.log_records();
    assert!(has(&recs, "stdout", "F", "timeout"), "{recs:?}");
}

#[test]
fn sigusr1_reopens_log_and_termination_signals_are_ignored() {
    if skip(
        "sigusr1_reopens_log_and_termination_signals_are_ignored",
        true,
    ) {
        return;
    }
    // Prints one line, waits for the test to create /go in its rootfs, prints another.
    let b = Bundle::new(
        "reopen",
        &[
            "sh",
            "-c",
            "echo one; while [ ! -e /go ]; do sleep 0.05; done; echo two",
        ],
        false,
    );
    let (mut mon, _) = b.create(&[]);
    // Written before the container was created: this monitor acknowledges reopens.
    assert_eq!(b.ack(), "0 ok\n");
    assert!(b.runc(&["start"]).success());
    let deadline = Instant::now() + TIMEOUT;
    while b.log_records().is_empty() {
        assert!(Instant::now() < deadline, "no log output");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The monitor ends only with its container: the daemon's signals do not stop it.
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: plain kill(2) of our child.
        unsafe { libc::kill(mon.id() as i32, sig) };
    }
    // Rotate like the kubelet: rename, then ask for a reopen.
    fs::rename(b.path("logs/ctr.log"), b.path("logs/ctr.log.1")).unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(mon.id() as i32, libc::SIGUSR1) };
    while b.ack() != "1 ok\n" {
        assert!(
            Instant::now() < deadline,
            "reopen not acknowledged: {:?}",
            b.ack()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Acknowledged means done: the new file is there.
    assert!(b.path("logs/ctr.log").exists());
    assert!(
        mon.try_wait().unwrap().is_none(),
        "monitor died of a signal"
    );
    fs::write(b.path("bundle/rootfs/go"), "").unwrap();
    assert_eq!(wait_timeout(&mut mon).code(), Some(0));
    let old = fs::read_to_string(b.path("logs/ctr.log.1")).unwrap();
    let recs = b.log_records();
    assert!(old.ends_with(" stdout F one\n"), "{old:?}");
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert!(has(&recs, "stdout", "F", "two"), "{recs:?}");
    assert_eq!(b.exit_file().exit_code, 0);
    assert!(!b.path("bundle/log-reopened.tmp").exists());
}

/// Parses an acknowledgement line: (sequence, rest).
fn parse_ack(text: &str) -> (u64, String) {
    let line = text
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("ack {text:?}"));
    let (seq, rest) = line.split_once(' ').unwrap();
    (seq.parse().unwrap(), rest.to_owned())
}

/// Sends SIGUSR1 the way the daemon does and waits for the acknowledgement that answers it:
/// read the sequence, signal, wait for a finished state above it. Returns the state.
fn reopen(b: &Bundle, mon: &Child) -> String {
    let (before, _) = parse_ack(&b.ack());
    // SAFETY: plain kill(2) of our child.
    assert_eq!(unsafe { libc::kill(mon.id() as i32, libc::SIGUSR1) }, 0);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (seq, state) = parse_ack(&b.ack());
        if seq > before && state != "reopening" {
            return state;
        }
        assert!(Instant::now() < deadline, "no ack above {before}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn reopen_acknowledgements_under_rotation() {
    if skip("reopen_acknowledgements_under_rotation", true) {
        return;
    }
    // Numbered lines, 20 at a time with a short pause, until the test creates /go.
    let script = "i=0; while [ ! -e /go ]; do for j in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 \
                  17 18 19 20; do i=$((i+1)); echo $i; done; usleep 500; done";
    let b = Bundle::new("rotate", &["sh", "-c", script], false);
    let (mut mon, _) = b.create(&[]);
    assert!(b.runc(&["start"]).success());
    let log = b.path("logs/ctr.log");
    let mut files = Vec::new();
    for k in 0..200 {
        let rotated = b.path(&format!("logs/ctr.log.{k}"));
        fs::rename(&log, &rotated).unwrap();
        files.push(rotated);
        assert_eq!(reopen(&b, &mon), "ok");
        assert!(log.exists(), "rotation {k}: acknowledged, but no new file");
    }
    // A reopen that cannot be done: the log's directory is gone. Reported, and the monitor
    // keeps writing to the file it has; once the directory is back, rotation works again.
    fs::rename(b.path("logs"), b.path("logs.away")).unwrap();
    let state = reopen(&b, &mon);
    let want = format!(
        "error opening log {}: No such file or directory",
        log.display()
    );
    assert!(state.starts_with(&want), "{state:?}");
    fs::rename(b.path("logs.away"), b.path("logs")).unwrap();
    let rotated = b.path("logs/ctr.log.last");
    fs::rename(&log, &rotated).unwrap();
    files.push(rotated);
    assert_eq!(reopen(&b, &mon), "ok");
    files.push(log);
    fs::write(b.path("bundle/rootfs/go"), "").unwrap();
    assert_eq!(wait_timeout(&mut mon).code(), Some(0));
    // Every line exactly once, in order, across the rotated files and the current one.
    let mut n = 0u64;
    for f in &files {
        for (stream, tag, content) in records(f) {
            assert_eq!((stream.as_str(), tag.as_str()), ("stdout", "F"));
            n += 1;
            assert_eq!(content, n.to_string(), "in {}", f.display());
        }
    }
    assert!(n > 1000, "only {n} lines written");
    assert_eq!(parse_ack(&b.ack()), (202, "ok".to_owned()));
}

/// VmRSS of a process, in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn monitor_rss() {
    if skip("monitor_rss", true) {
        return;
    }
    let b = Bundle::new("rss", &["sh", "-c", "echo hi; sleep 30"], false);
    let (mut mon, pid) = b.create(&[]);
    assert!(b.runc(&["start"]).success());
    // Let the monitor log a line and settle in poll.
    let deadline = Instant::now() + TIMEOUT;
    while b.log_records().is_empty() {
        assert!(Instant::now() < deadline, "no log output");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss = vm_rss_kib(mon.id());
    if std::env::var_os("PEAPOD_SHIM_TEST_SMAPS").is_some() {
        print_smaps(mon.id());
    }
    eprintln!("monitor VmRSS: {rss} KiB ({})", shim_bin().display());
    // SAFETY: plain kill(2) of the container's init.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(wait_timeout(&mut mon).code(), Some(0));
    // Generous bound: this also runs against unoptimised debug builds.
    assert!(rss < 4096, "monitor RSS {rss} KiB");
}

/// Prints each mapping of `pid` with its resident size (to see where a monitor's RSS goes).
fn print_smaps(pid: u32) {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut mapping = "";
    for line in smaps.lines() {
        if line
            .split_whitespace()
            .next()
            .is_some_and(|w| w.contains('-'))
        {
            mapping = line;
        } else if let Some(kb) = line.strip_prefix("Rss:") {
            eprintln!("{:>8} {mapping}", kb.trim());
        }
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for l in status
        .lines()
        .filter(|l| l.starts_with("Rss") || l.starts_with("VmRSS"))
    {
        eprintln!("{l}");
    }
}

/// Children (including zombies) of `pid`.
fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect()
}

#[test]
fn pause_sets_hostname_lo_and_exits_on_sigterm() {
    if skip("pause_sets_hostname_lo_and_exits_on_sigterm", false) {
        return;
    }
    // `unshare` here plays the daemon's clone(): new UTS/net/IPC namespaces, then exec.
    let (mut pause, sync) = spawn_shim(
        &["unshare", "--uts", "--net", "--ipc", "--"],
        &["pause", "--hostname", "pod-x", "--lo-up"],
    );
    assert_eq!(read_to_eof(sync), "ready\n");
    let pid = pause.id().to_string();
    let out = |ns: &str, cmd: &[&str]| {
        let o = Command::new("nsenter")
            .args(["-t", &pid, ns, BUSYBOX])
            .args(cmd)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(out("-u", &["hostname"]).trim(), "pod-x");
    let link = out("-n", &["ip", "link", "show", "lo"]);
    assert!(link.contains(",UP"), "{link}");
    // Other signals are ignored.
    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(pause.id() as i32, libc::SIGUSR1) };
    std::thread::sleep(Duration::from_millis(100));
    assert!(pause.try_wait().unwrap().is_none(), "pause died of SIGUSR1");
    // SAFETY: as above.
    unsafe { libc::kill(pause.id() as i32, libc::SIGTERM) };
    assert_eq!(wait_timeout(&mut pause).code(), Some(0));
}

#[test]
fn pause_as_pid1_reaps_orphans() {
    if skip("pause_as_pid1_reaps_orphans", false) {
        return;
    }
    let (mut unshare, sync) = spawn_shim(&["unshare", "--pid", "--fork", "--"], &["pause"]);
    // unshare (the parent of the pause here) also holds fd 3: read one line, not to EOF.
    assert_eq!(read_until(sync, true), "ready\n");
    let pause = children(unshare.id())[0];
    // An orphan in the pause's PID namespace: the shell exits, its sleep is re-parented to
    // the namespace's init, the pause, which must reap it when it exits.
    let st = Command::new("nsenter")
        .args(["-t", &pause.to_string(), "-p", "--", BUSYBOX, "sh", "-c"])
        .arg(format!("{BUSYBOX} sleep 1 & exit 0"))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        children(pause).len(),
        1,
        "the orphan was not re-parented to the pause"
    );
    let deadline = Instant::now() + TIMEOUT;
    while !children(pause).is_empty() {
        assert!(Instant::now() < deadline, "orphan not reaped");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: plain kill(2) of the pause (our grandchild).
    unsafe { libc::kill(pause as i32, libc::SIGTERM) };
    assert_eq!(wait_timeout(&mut unshare).code(), Some(0));
}

#[test]
fn pause_setup_error_is_reported() {
    if skip("pause_setup_error_is_reported", false) {
        return;
    }
    // A command-line error is reported on fd 3 too (exit status 2).
    let (mut p, sync) = spawn_shim(&[], &["pause", "--bogus"]);
    let report = read_to_eof(sync);
    assert!(report.starts_with("error "), "{report:?}");
    assert_eq!(wait_timeout(&mut p).code(), Some(2));
}
