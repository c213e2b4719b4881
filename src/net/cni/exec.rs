//! Running a plugin binary: found in the bin dirs in order, its environment (`CNI_*` on top of
//! the daemon's own, whose PATH plugins need to find iptables and IPAM helpers), its config on
//! stdin, stdout and stderr collected, and a bound on its run time after which it is killed.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// PATH for plugins when the daemon has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The most of a plugin's stdout kept; results are a few KiB.
const MAX_STDOUT: u64 = 4 << 20;
/// The tail of a plugin's stderr kept for error messages.
const MAX_STDERR: usize = 4 << 10;

/// The environment of one plugin call, per the spec: CNI_COMMAND and CNI_PATH always; the
/// container's ID, netns, interface and args when the command is about one attachment (ADD,
/// DEL, CHECK). `netns` may be empty: DEL of a pod whose netns is gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginEnv {
    pub command: &'static str,
    pub container_id: Option<String>,
    pub netns: Option<OsString>,
    pub if_name: Option<String>,
    pub args: Option<String>,
    pub path: OsString,
}

impl PluginEnv {
    pub fn vars(&self) -> Vec<(&'static str, OsString)> {
        let mut v = vec![("CNI_COMMAND", OsString::from(self.command))];
        if let Some(id) = &self.container_id {
            v.push(("CNI_CONTAINERID", id.into()));
        }
        if let Some(ns) = &self.netns {
            v.push(("CNI_NETNS", ns.clone()));
        }
        if let Some(i) = &self.if_name {
            v.push(("CNI_IFNAME", i.into()));
        }
        if let Some(a) = &self.args {
            v.push(("CNI_ARGS", a.into()));
        }
        v.push(("CNI_PATH", self.path.clone()));
        v
    }
}

/// CNI_PATH: the bin dirs joined with `:`.
pub fn cni_path(bin_dirs: &[PathBuf]) -> OsString {
    let mut p = OsString::new();
    for (i, d) in bin_dirs.iter().enumerate() {
        if i > 0 {
            p.push(":");
        }
        p.push(d);
    }
    p
}

/// The plugin binary `kind` in the first bin dir that has it as an executable file.
pub fn find_plugin(kind: &str, bin_dirs: &[PathBuf]) -> Option<PathBuf> {
    bin_dirs.iter().map(|d| d.join(kind)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// How a plugin run ended.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// Its last few KiB.
    pub stderr: String,
}

#[derive(Debug)]
pub enum RunError {
    Spawn(std::io::Error),
    /// Still running after the bound: killed.
    Timeout,
}

async fn read_capped<R: AsyncRead + Unpin>(mut r: R, cap: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = (&mut r).take(cap).read_to_end(&mut buf).await;
    // Past the cap, drain so the plugin does not block on a full pipe.
    let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
    buf
}

fn stderr_tail(mut b: Vec<u8>) -> String {
    if b.len() > MAX_STDERR {
        b.drain(..b.len() - MAX_STDERR);
    }
    String::from_utf8_lossy(&b).trim().to_string()
}

/// Runs `bin` with `env` and `stdin`; kills it when it runs longer than `timeout`. The plugin
/// leads a process group of its own, and a timeout kills that group: an IPAM plugin or
/// iptables it started would otherwise live on holding its stdout open.
pub async fn run(
    bin: &Path,
    env: &PluginEnv,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Output, RunError> {
    let mut child = {
        let mut tries = 0;
        loop {
            let mut cmd = tokio::process::Command::new(bin);
            // Only this call's CNI_* variables: none inherited from the daemon's environment.
            for (k, _) in std::env::vars_os() {
                if k.to_str().is_some_and(|k| k.starts_with("CNI_")) {
                    cmd.env_remove(k);
                }
            }
            if std::env::var_os("PATH").is_none() {
                cmd.env("PATH", DEFAULT_PATH);
            }
            cmd.envs(env.vars())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true);
            match cmd.spawn() {
                Ok(c) => break c,
                // ETXTBSY: the binary was just written and a process forked meanwhile (in
                // another thread) still holds it open for writing until it execs; soon over.
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(5 * tries)).await;
                }
                Err(e) => return Err(RunError::Spawn(e)),
            }
        }
    };
    let pid = child.id();
    let mut input = child.stdin.take().expect("piped stdin");
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    let io = async {
        let write = async {
            // A plugin that exits without reading stdin closes the pipe: not an error here.
            let _ = input.write_all(stdin).await;
            drop(input);
        };
        let ((), stdout, stderr) = tokio::join!(
            write,
            read_capped(out, MAX_STDOUT),
            read_capped(err, u64::MAX)
        );
        let status = child.wait().await;
        (status, stdout, stderr)
    };
    match tokio::time::timeout(timeout, io).await {
        Ok((Ok(status), stdout, stderr)) => Ok(Output {
            status,
            stdout,
            stderr: stderr_tail(stderr),
        }),
        Ok((Err(e), _, _)) => Err(RunError::Spawn(e)),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // The group the plugin leads (its own PID): it is not reaped yet, so the
                // PID still names it and nothing else.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(RunError::Timeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TempDir;
    use std::os::unix::process::ExitStatusExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn env_has_what_the_command_needs() {
        let env = PluginEnv {
            command: "ADD",
            container_id: Some("abc".into()),
            netns: Some("/run/ns".into()),
            if_name: Some("eth0".into()),
            args: Some("IgnoreUnknown=1".into()),
            path: cni_path(&[PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]),
        };
        let v: Vec<(&str, String)> = env
            .vars()
            .into_iter()
            .map(|(k, v)| (k, v.into_string().unwrap()))
            .collect();
        assert_eq!(
            v,
            [
                ("CNI_COMMAND", "ADD".into()),
                ("CNI_CONTAINERID", "abc".into()),
                ("CNI_NETNS", "/run/ns".into()),
                ("CNI_IFNAME", "eth0".into()),
                ("CNI_ARGS", "IgnoreUnknown=1".into()),
                ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni".into()),
            ]
        );
        let status = PluginEnv {
            command: "STATUS",
            path: "/x".into(),
            ..Default::default()
        };
        let keys: Vec<_> = status.vars().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["CNI_COMMAND", "CNI_PATH"]);
    }

    #[test]
    fn plugins_are_found_in_bin_dir_order() {
        let a = TempDir::new("cni-bin-a");
        let b = TempDir::new("cni-bin-b");
        script(&b.0, "bridge", "true");
        let dirs = vec![a.0.clone(), b.0.clone()];
        assert_eq!(find_plugin("bridge", &dirs), Some(b.0.join("bridge")));
        script(&a.0, "bridge", "true");
        assert_eq!(find_plugin("bridge", &dirs), Some(a.0.join("bridge")));
        // Not executable, or a directory: not a plugin.
        std::fs::write(a.0.join("plain"), "x").unwrap();
        std::fs::create_dir(a.0.join("dir")).unwrap();
        assert_eq!(find_plugin("plain", &dirs), None);
        assert_eq!(find_plugin("dir", &dirs), None);
        assert_eq!(find_plugin("absent", &dirs), None);
    }

    #[tokio::test]
    async fn runs_with_stdin_env_and_captures_output() {
        let d = TempDir::new("cni-run");
        let bin = script(
            &d.0,
            "echoer",
            "read -r line; echo \"in=$line cmd=$CNI_COMMAND path=$CNI_PATH\"; echo oops >&2; exit 3",
        );
        let env = PluginEnv {
            command: "ADD",
            path: "/p".into(),
            ..Default::default()
        };
        let out = run(&bin, &env, b"{\"x\":1}\n", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "in={\"x\":1} cmd=ADD path=/p\n"
        );
        assert_eq!(out.stderr, "oops");
    }

    #[tokio::test]
    async fn a_plugin_past_its_timeout_is_killed_with_its_children() {
        let d = TempDir::new("cni-run");
        let pidfile = d.0.join("child.pid");
        // The plugin starts a child that would hold stdout open, then hangs.
        let bin = script(
            &d.0,
            "hang",
            &format!("sleep 300 & echo $! > {}; sleep 300", pidfile.display()),
        );
        let env = PluginEnv {
            command: "ADD",
            ..Default::default()
        };
        let t0 = std::time::Instant::now();
        let r = run(&bin, &env, b"", Duration::from_millis(300)).await;
        assert!(matches!(r, Err(RunError::Timeout)), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(10));
        let child: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild got SIGKILL with the group; once reaped (by init) it is gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{child}/stat")).ok();
            let dead = state.as_deref().is_none_or(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            });
            if dead {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "child {child} still runs"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn a_plugin_killed_by_a_signal_reports_it() {
        let d = TempDir::new("cni-run");
        let bin = script(&d.0, "selfkill", "kill -9 $$");
        let out = run(&bin, &PluginEnv::default(), b"", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out.status.signal(), Some(9));
    }
}
