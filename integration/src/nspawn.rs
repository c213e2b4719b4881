//! A throwaway machine with systemd as its PID 1, for the tests of peapod as a systemd service
//! (integration/tests/systemd.rs).
//!
//! systemd-nspawn boots the host's own systemd (`/lib/systemd/systemd`) on a tree made of the
//! host's `/usr` (read-only), an `/etc` overlay whose upper layer holds the test's units and
//! config, a `/usr/bin` overlay adding `peapod` (a symlink to the build), a tmpfs `/var`, and
//! only loopback (`--private-network`). Its binary comes from hack/nspawn.sh: the
//! systemd-container package of the installed systemd's version, unpacked under target/, not
//! installed.
//!
//! What it leaves on the host is nothing: nspawn runs in a mount namespace of its own with a
//! tmpfs on `/run` (it keeps its locks and mount points under `/run/systemd`), inside a cgroup
//! made for it below this process's cgroup in the unified hierarchy (its `payload/` is the
//! machine's root cgroup, removed with it); [`Machine::poweroff`] checks that.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the tests cannot boot a machine here, for their "skipped: ..." line.
pub struct Skip(pub String);

/// A booted machine; powered off (and everything of it removed) by [`Machine::poweroff`], or
/// killed when dropped.
pub struct Machine {
    pub name: String,
    /// The machine's PID 1, in this process's PID namespace.
    pub leader: i32,
    dir: PathBuf,
    cgroup: PathBuf,
    nspawn: Option<Child>,
}

/// What the machine is booted with: files added to its `/etc` (path relative to /etc,
/// content) and host directories it sees read-only at the same paths.
pub struct Setup {
    pub etc: Vec<(String, String)>,
    pub binds: Vec<PathBuf>,
    /// Symlinks added to its `/usr/bin`: (name, target).
    pub usr_bin: Vec<(String, PathBuf)>,
    /// The unit it boots into (`--unit=`), one of the `etc` files.
    pub unit: String,
    pub boot_timeout: Duration,
}

/// The unified (v2) hierarchy's mount point, if any: /sys/fs/cgroup on a pure v2 host,
/// /sys/fs/cgroup/unified on a hybrid one.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mnt = pre.split_whitespace().nth(4)?;
            (post.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mnt))
        })
        .filter(|p| p.starts_with("/sys/fs/cgroup"))
        .collect();
    mounts.sort();
    mounts.into_iter().next()
}

/// This process's cgroup in the unified hierarchy (the `0::` line).
fn own_cgroup2() -> Option<String> {
    std::fs::read_to_string("/proc/self/cgroup")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

/// `hack/nspawn.sh`: the path of systemd-nspawn, fetched once.
fn nspawn_binary() -> Result<PathBuf, Skip> {
    let out = Command::new(crate::workspace().join("hack/nspawn.sh"))
        .output()
        .map_err(|e| Skip(format!("running hack/nspawn.sh: {e}")))?;
    if !out.status.success() {
        return Err(Skip(format!(
            "no systemd-nspawn ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

impl Machine {
    /// Boots a machine and waits until systemd says the boot is over (running or degraded).
    /// `Err(Skip)` when this host cannot run one at all; a machine that fails to boot panics.
    pub fn boot(setup: Setup) -> Result<Machine, Skip> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Skip("booting systemd in a container needs root".into()));
        }
        if !Path::new("/lib/systemd/systemd").exists() {
            return Err(Skip(
                "systemd is not installed (no /lib/systemd/systemd)".into(),
            ));
        }
        let Some(v2) = cgroup2_mount() else {
            return Err(Skip(
                "no cgroup v2 hierarchy is mounted (systemd in a container needs one)".into(),
            ));
        };
        let Some(own) = own_cgroup2() else {
            return Err(Skip("this process has no cgroup v2 membership".into()));
        };
        let nspawn = nspawn_binary()?;

        let name = format!(
            "peapod-sd-{}-{}",
            std::process::id(),
            &peapod::fsutil::new_id()[..8]
        );
        let dir = std::env::temp_dir().join(&name);
        let root = dir.join("root");
        let etc = dir.join("etc");
        let usr_bin = dir.join("usr-bin");
        for d in [
            "usr", "etc", "var", "tmp", "root", "run", "proc", "sys", "dev",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        // Debian's merged /usr: /bin, /lib, /sbin, ... are symlinks into /usr.
        for l in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            if let Ok(target) = std::fs::read_link(Path::new("/").join(l)) {
                std::os::unix::fs::symlink(target, root.join(l)).unwrap();
            }
        }
        // nspawn refuses a tree without os-release; the /etc overlay covers this copy.
        std::fs::copy("/etc/os-release", root.join("etc/os-release")).unwrap();
        for (path, text) in &setup.etc {
            let p = etc.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::create_dir_all(&usr_bin).unwrap();
        for (link, target) in &setup.usr_bin {
            std::os::unix::fs::symlink(target, usr_bin.join(link)).unwrap();
        }

        let cgroup = v2.join(own.trim_start_matches('/')).join(&name);
        std::fs::create_dir(&cgroup).unwrap();
        let console = std::fs::File::create(dir.join("console.log")).unwrap();
        let mut cmd = Command::new(&nspawn);
        cmd.args(["--quiet", "--register=no", "--keep-unit"])
            .arg(format!("--machine={name}"))
            .arg("-D")
            .arg(&root)
            .args([
                "--private-network",
                "--console=read-only",
                "--capability=all",
            ])
            .args(["--bind-ro=/usr", "--tmpfs=/var"])
            .arg(format!("--overlay=/etc:{}:/etc", etc.display()))
            .arg(format!("--overlay=/usr/bin:{}:/usr/bin", usr_bin.display()));
        for b in &setup.binds {
            cmd.arg(format!("--bind-ro={}", b.display()));
        }
        cmd.args(["-b", "--"]).arg(format!("--unit={}", setup.unit));
        // The machine is pure cgroup v2 on a hybrid host too (its own subtree of the unified
        // hierarchy); and no seccomp filter of nspawn's between the OCI runtime and the kernel.
        cmd.env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .env("SYSTEMD_SECCOMP", "0")
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console);
        let procs = cgroup.join("cgroup.procs");
        let procs = std::ffi::CString::new(procs.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: between fork and exec only system calls on data prepared before the fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                use nix::mount::{mount, MsFlags};
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )?;
                mount(
                    Some("peapod-sd"),
                    "/run",
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some("mode=0755"),
                )?;
                // "0" moves the writer: this process, soon nspawn.
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("starting systemd-nspawn");
        let mut m = Machine {
            name,
            leader: 0,
            dir,
            cgroup,
            nspawn: Some(child),
        };
        m.wait_booted(setup.boot_timeout);
        Ok(m)
    }

    fn wait_booted(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let payload = self.cgroup.join("payload");
        loop {
            if let Some(Ok(Some(st))) = self.nspawn.as_mut().map(|c| c.try_wait()) {
                self.nspawn = None;
                panic!(
                    "systemd-nspawn exited ({st}) while booting:\n{}",
                    self.console()
                );
            }
            if self.leader == 0 {
                // systemd moves itself into init.scope early on.
                for f in ["init.scope/cgroup.procs", "cgroup.procs"] {
                    let text = std::fs::read_to_string(payload.join(f)).unwrap_or_default();
                    if let Some(pid) =
                        text.lines()
                            .filter_map(|l| l.parse::<i32>().ok())
                            .find(|p| {
                                std::fs::read_to_string(format!("/proc/{p}/comm"))
                                    .is_ok_and(|c| c.trim() == "systemd")
                            })
                    {
                        self.leader = pid;
                        break;
                    }
                }
            }
            if self.leader != 0 {
                let (_, out) = self.run(&["systemctl", "is-system-running"]);
                match out.trim() {
                    "running" | "degraded" => return,
                    _ => {}
                }
            }
            assert!(
                Instant::now() < deadline,
                "the machine did not boot within {limit:?}:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The console output so far (systemd's boot and shutdown messages).
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// A path inside the machine, as this process reaches it (through its PID 1's root).
    pub fn path(&self, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.leader)).join(p.trim_start_matches('/'))
    }

    /// The host directory holding the machine's tree, overlays and console log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The machine's root cgroup, as this process sees it.
    pub fn cgroup(&self) -> PathBuf {
        self.cgroup.join("payload")
    }

    /// Runs a command inside the machine (all its namespaces, its root, a clean environment):
    /// (success, stdout then stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("nsenter")
            .arg("-t")
            .arg(self.leader.to_string())
            .args(["-m", "-u", "-i", "-n", "-p", "-C", "--"])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin")
            .env("LANG", "C.UTF-8")
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null())
            .output()
            .expect("nsenter");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `systemctl show -p P1,P2 unit` as (property, value) pairs.
    pub fn show(&self, unit: &str, props: &[&str]) -> std::collections::HashMap<String, String> {
        let (ok, out) = self.run(&["systemctl", "show", "-p", &props.join(","), unit]);
        assert!(ok, "systemctl show {unit}: {out}");
        out.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Powers the machine off (`systemctl poweroff`), waits for nspawn to end, removes its
    /// cgroup and files; returns what is left of it on the host (empty when all is well).
    pub fn poweroff(mut self, limit: Duration) -> Vec<String> {
        let (ok, out) = self.run(&["systemctl", "poweroff", "--no-block"]);
        assert!(ok, "systemctl poweroff: {out}");
        let status = self.wait_nspawn(limit);
        let mut left = Vec::new();
        if status.is_none() {
            left.push(format!("systemd-nspawn still running after {limit:?}"));
        }
        left.extend(self.remove());
        left
    }

    fn wait_nspawn(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.nspawn.as_mut()?;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                self.nspawn = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills what still runs (nspawn, then the machine's PID namespace through its PID 1),
    /// removes the cgroup tree (rmdir, deepest first) and the directory; returns what could not
    /// be removed and what is still there.
    fn remove(&mut self) -> Vec<String> {
        if let Some(mut c) = self.nspawn.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.leader != 0 && crate::pid_alive(self.leader) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.leader),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let mut left = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cgroup.exists() {
            rmdir_tree(&self.cgroup);
            if Instant::now() >= deadline {
                break;
            }
            if self.cgroup.exists() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if self.cgroup.exists() {
            let mut procs = Vec::new();
            collect_procs(&self.cgroup, &mut procs);
            left.push(format!(
                "cgroup {} (processes {procs:?})",
                self.cgroup.display()
            ));
        }
        // Nothing was mounted in this mount namespace; make sure.
        left.extend(
            crate::mounts_under(&self.dir)
                .into_iter()
                .map(|m| format!("mount {m}")),
        );
        if let Some(keep) = std::env::var_os("PEAPOD_IT_KEEP_LOGS") {
            let _ = std::fs::create_dir_all(&keep);
            let _ = std::fs::copy(
                self.dir.join("console.log"),
                Path::new(&keep).join(format!("{}-console.log", self.name)),
            );
        }
        if left.is_empty() {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                left.push(format!("directory {}: {e}", self.dir.display()));
            }
        }
        // Any process still naming the machine's directory (nspawn's, the daemon's binds).
        let dir = self.dir.to_string_lossy().into_owned();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&dir) && crate::pid_alive(pid) {
                left.push(format!("process {pid}: {cmd}"));
            }
        }
        left
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.nspawn.is_none() && !self.cgroup.exists() {
            return;
        }
        if std::thread::panicking() {
            eprintln!("--- machine console ---\n{}", self.console());
        }
        for l in self.remove() {
            eprintln!("machine {}: left behind: {l}", self.name);
        }
    }
}

fn rmdir_tree(dir: &Path) {
    if let Ok(it) = std::fs::read_dir(dir) {
        for e in it.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn collect_procs(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(it) = std::fs::read_dir(dir) {
        for e in it.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_procs(&e.path(), out);
            }
        }
    }
}
