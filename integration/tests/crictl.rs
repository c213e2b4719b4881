//! crictl 1.26 (kubernetes-sigs/cri-tools, the client kubelet's streaming code is tested with)
//! against the daemon: exec (sync, piped stdin, tty), attach, port-forward, stats and statsp.
//! crictl speaks SPDY/3.1 to the streaming server, as kubelet does. Debian has no crictl
//! package, so where the build saw none (integration/build.rs: $CRICTL or crictl on PATH) the
//! test is listed as ignored, never passed.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peapod_integration::*;

struct Crictl {
    bin: PathBuf,
    endpoint: String,
}

impl Crictl {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--runtime-endpoint", &self.endpoint, "--timeout", "30s"])
            .args(args);
        cmd
    }

    /// Runs to the end with `input` on stdin; (exit code, stdout, stderr).
    async fn run(&self, args: &[&str], input: &[u8]) -> (i32, String, String) {
        let mut cmd = self.cmd(args);
        let input = input.to_vec();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting crictl");
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(&input).unwrap();
            drop(stdin);
            let out = child.wait_with_output().unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .await
        .unwrap()
    }
}

/// A pty pair with the given size: (master, slave).
fn pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let p = nix::pty::openpty(Some(&ws), None).unwrap();
    (p.master, p.slave)
}

/// Reads `fd` (a pty master or a pipe) until `needle` shows up or `limit` passes.
fn read_until(fd: &OwnedFd, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "never saw {needle:?}; got {:?}",
            String::from_utf8_lossy(&got)
        );
        let mut pfd = [nix::poll::PollFd::new(
            // SAFETY: fd outlives this call.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd.as_raw_fd()) },
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = left.as_millis().min(1000) as u16;
        if nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(ms)).unwrap_or(0) == 0 {
            continue;
        }
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) | Err(_) => panic!(
                "ended before {needle:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Kills and reaps a crictl this test started.
fn end(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_port(port: u16) -> std::net::TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            return s;
        }
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(peapod_crictl),
    ignore = "SKIP: no crictl ($CRICTL or on PATH) when this was built"
)]
async fn crictl_exec_attach_port_forward_and_stats() {
    if !require_root() {
        return;
    }
    let bin = crictl().expect("no crictl: set $CRICTL or put crictl on PATH");
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let mut cat = container_config("cat", BUSYBOX, &["cat"]);
    cat.stdin = true;
    let (pod, ids) = run_pod(
        &mut rt,
        pod_config("crictl-stream", &logs),
        vec![
            container_config("sh", BUSYBOX, &["sleep", "1000"]),
            cat,
            container_config(
                "srv",
                BUSYBOX,
                &[
                    "sh",
                    "-c",
                    "while true; do echo pong | nc -l -p 18090; done",
                ],
            ),
        ],
    )
    .await;
    let c = Crictl {
        bin,
        endpoint: format!("unix://{}", d.socket.display()),
    };

    // exec -s (ExecSync): output, and a non-zero exit code named by crictl 1.26 (which then
    // prints no output).
    let (code, out, err) = c
        .run(&["exec", "-s", &ids[0], "sh", "-c", "echo sync-out"], b"")
        .await;
    // crictl prints stdout and stderr with a newline each.
    assert_eq!((code, out.trim_end()), (0, "sync-out"), "{err}");
    let (code, _, err) = c
        .run(&["exec", "-s", &ids[0], "sh", "-c", "exit 3"], b"")
        .await;
    assert!(code != 0 && err.contains("exited with 3"), "{code} {err}");

    // exec -i (SPDY, stdin piped): what goes in comes out; the exit code arrives on the v4
    // error stream, which crictl reports.
    let (code, out, err) = c.run(&["exec", "-i", &ids[0], "cat"], b"piped in\n").await;
    assert_eq!((code, out.as_str()), (0, "piped in\n"), "{err}");
    let (code, _, err) = c.run(&["exec", &ids[0], "sh", "-c", "exit 7"], b"").await;
    assert!(
        code != 0 && err.contains("command terminated with exit code 7"),
        "{code} {err}"
    );

    // exec -i -t on a terminal: the container sees a tty of the terminal's size. (runc exec
    // in the foreground copies the size onto the container's pty only once the process has
    // started, so the command waits a moment before asking.)
    let (master, slave) = pty(37, 101);
    let child = c
        .cmd(&[
            "exec",
            "-i",
            "-t",
            &ids[0],
            "sh",
            "-c",
            "sleep 0.3; stty size; tty; sleep 30",
        ])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        let s = read_until(&master, "/dev/pts/", Duration::from_secs(20));
        (s, master)
    })
    .await
    .unwrap();
    assert!(seen.0.contains("37 101"), "{:?}", seen.0);
    end(child);

    // attach -i to cat: typed input is echoed back, and the CRI log records it.
    let (out_r, out_w) = nix::unistd::pipe().unwrap();
    let (in_r, in_w) = nix::unistd::pipe().unwrap();
    let child = c
        .cmd(&["attach", "-i", &ids[1]])
        .stdin(Stdio::from(in_r))
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    nix::unistd::write(&in_w, b"typed at attach\n").unwrap();
    let got = tokio::task::spawn_blocking(move || {
        read_until(&out_r, "typed at attach", Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert!(got.contains("typed at attach"));
    end(child);
    drop(in_w);
    wait_log(&logs.join("cat/0.log"), Duration::from_secs(5), |l| {
        l.iter().any(|l| l == "typed at attach")
    })
    .await;

    // port-forward: a local port reaches the server listening only inside the pod.
    assert!(
        std::net::TcpStream::connect("127.0.0.1:18090").is_err(),
        "the pod's port is open on the host"
    );
    let child = c
        .cmd(&["port-forward", &pod, "18091:18090"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reply = tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let mut s = wait_port(18091);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        got
    })
    .await
    .unwrap();
    end(child);
    assert_eq!(reply, "pong\n");

    // stats and statsp list what runs.
    let (code, out, err) = c.run(&["stats", "-a"], b"").await;
    assert_eq!(code, 0, "{err}");
    for id in &ids {
        assert!(out.contains(&id[..13]), "container {id} not in:\n{out}");
    }
    let (code, out, err) = c.run(&["statsp"], b"").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("crictl-stream"), "pod not in:\n{out}");
    eprintln!("crictl stats:\n{out}");

    d.cleanup().await;
}
