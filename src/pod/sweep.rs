//! Finding what a killed daemon may have left behind, by name: peapod-shim processes (pauses and
//! monitors) that belong to this daemon's state directory, and mounts under its directories.
//!
//! A pause carries `--id ID --state-dir DIR` on its command line and a monitor `--id ID
//! --bundle DIR/...`, so a restarted daemon can tell its own processes, and which sandbox or
//! container each serves, from those of another daemon on the same host (the test suite runs
//! several at once). Nothing else is ever matched or signalled.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::MntFlags;

use super::proc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShimKind {
    Pause,
    Monitor,
}

/// A running peapod-shim process of this daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimProc {
    pub pid: i32,
    pub start: u64,
    pub kind: ShimKind,
    /// The sandbox ID (pause) or the runtime container ID (monitor).
    pub id: String,
    /// The monitor's bundle directory.
    pub bundle: Option<PathBuf>,
}

/// Parses a shim's argv (NUL-separated /proc/PID/cmdline) into what identifies it, when it is a
/// peapod-shim of the daemon whose state directory is `state_dir`.
pub fn parse_cmdline(
    cmdline: &[u8],
    state_dir: &Path,
) -> Option<(ShimKind, String, Option<PathBuf>)> {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let prog = Path::new(std::ffi::OsStr::from_bytes(args.first()?));
    if prog.file_name()?.as_bytes() != b"peapod-shim" {
        return None;
    }
    let kind = match *args.get(1)? {
        b"pause" => ShimKind::Pause,
        b"monitor" => ShimKind::Monitor,
        _ => return None,
    };
    let opt = |name: &str| -> Option<OsString> {
        let flag = format!("--{name}");
        let eq = format!("--{name}=");
        let mut it = args.iter().skip(2);
        while let Some(a) = it.next() {
            if *a == flag.as_bytes() {
                return it.next().map(|v| OsString::from_vec(v.to_vec()));
            }
            if let Some(v) = a.strip_prefix(eq.as_bytes()) {
                return Some(OsString::from_vec(v.to_vec()));
            }
        }
        None
    };
    let id = opt("id")?.into_string().ok()?;
    match kind {
        ShimKind::Pause => {
            let dir = PathBuf::from(opt("state-dir")?);
            (dir == state_dir).then_some((kind, id, None))
        }
        ShimKind::Monitor => {
            let bundle = PathBuf::from(opt("bundle")?);
            bundle
                .starts_with(state_dir)
                .then_some((kind, id, Some(bundle)))
        }
    }
}

/// Every live (not zombie) peapod-shim process of the daemon with state directory `state_dir`.
pub fn shim_processes(state_dir: &Path) -> Vec<ShimProc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let Some((kind, id, bundle)) = parse_cmdline(&cmdline, state_dir) else {
            continue;
        };
        let Some(start) = proc::start_time(pid) else {
            continue;
        };
        out.push(ShimProc {
            pid,
            start,
            kind,
            id,
            bundle,
        });
    }
    out
}

/// SIGKILLs `p` (if it is still the same process) and waits briefly for it to be gone; reaps it
/// when it is our child.
pub fn kill(p: &ShimProc) {
    if !proc::is_alive(p.pid, p.start) {
        return;
    }
    tracing::info!(pid = p.pid, id = %p.id, kind = ?p.kind, "killing a leftover peapod-shim");
    let pid = nix::unistd::Pid::from_raw(p.pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while proc::is_alive(p.pid, p.start) && Instant::now() < deadline {
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
}

/// Mount points in this mount namespace at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(unescape))
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Mount points under `dir` grouped by the first path component below it (an ID).
pub fn mounts_by_id(dir: &Path) -> HashMap<String, Vec<PathBuf>> {
    let mut out: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for m in mounts_under(dir) {
        if let Some(id) = m
            .strip_prefix(dir)
            .ok()
            .and_then(|r| r.components().next())
            .and_then(|c| c.as_os_str().to_str())
        {
            out.entry(id.to_string()).or_default().push(m);
        }
    }
    out
}

/// Unmounts everything mounted at or under `dir`, deepest first; lazily when busy.
pub fn unmount_all_under(dir: &Path) -> std::io::Result<()> {
    for m in mounts_under(dir) {
        match nix::mount::umount2(&m, MntFlags::empty()) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(_) => nix::mount::umount2(&m, MntFlags::MNT_DETACH).map_err(|e| {
                std::io::Error::new(
                    std::io::Error::from(e).kind(),
                    format!("unmounting {}: {e}", m.display()),
                )
            })?,
        }
    }
    Ok(())
}

/// Removes `dir` and everything in it, after unmounting what is mounted there: never deletes
/// through a mount. Missing is fine.
pub fn remove_dir(dir: &Path) -> std::io::Result<()> {
    unmount_all_under(dir)?;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(std::io::Error::new(
            e.kind(),
            format!("removing {}: {e}", dir.display()),
        )),
        _ => Ok(()),
    }
}

/// A mountinfo path field as a path.
fn unescape(s: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(crate::fsutil::unescape_mountinfo(
        s.as_bytes(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<u8> {
        let mut v = a.join("\0").into_bytes();
        v.push(0);
        v
    }

    #[test]
    fn own_shims_are_recognised_and_others_are_not() {
        let st = Path::new("/run/peapod");
        assert_eq!(
            parse_cmdline(
                &argv(&[
                    "peapod-shim",
                    "pause",
                    "--lo-up",
                    "--id",
                    "abc",
                    "--state-dir",
                    "/run/peapod"
                ]),
                st
            ),
            Some((ShimKind::Pause, "abc".into(), None))
        );
        assert_eq!(
            parse_cmdline(
                &argv(&[
                    "/usr/bin/peapod-shim",
                    "monitor",
                    "--id",
                    "c1",
                    "--bundle",
                    "/run/peapod/containers/c1",
                    "--runtime",
                    "runc"
                ]),
                st
            ),
            Some((
                ShimKind::Monitor,
                "c1".into(),
                Some(PathBuf::from("/run/peapod/containers/c1"))
            ))
        );
        // Another daemon's processes, older pauses without an identity, other programs.
        for other in [
            argv(&[
                "peapod-shim",
                "pause",
                "--id",
                "abc",
                "--state-dir",
                "/tmp/other",
            ]),
            argv(&[
                "peapod-shim",
                "monitor",
                "--id",
                "c1",
                "--bundle",
                "/tmp/other/containers/c1",
            ]),
            argv(&["peapod-shim", "pause", "--lo-up"]),
            argv(&[
                "sleep",
                "pause",
                "--id",
                "abc",
                "--state-dir",
                "/run/peapod",
            ]),
            argv(&["peapod-shim", "help"]),
            Vec::new(),
        ] {
            assert_eq!(parse_cmdline(&other, st), None, "{other:?}");
        }
        assert_eq!(
            parse_cmdline(
                &argv(&["peapod-shim", "pause", "--id=x", "--state-dir=/run/peapod"]),
                st
            ),
            Some((ShimKind::Pause, "x".into(), None))
        );
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape("/a\\040b/c"), PathBuf::from("/a b/c"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape("/end\\04"), PathBuf::from("/end\\04"));
    }
}
