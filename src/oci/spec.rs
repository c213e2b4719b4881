//! Translation of a CRI `ContainerConfig` into an OCI runtime spec (`config.json` for runc),
//! following containerd 1.6/1.7's CRI plugin (`containerSpec`, `pkg/cri/opts`, `pkg/oci`).
//!
//! [`generate`] is pure apart from a few reads of the host (the image's `/etc/passwd` and
//! `/etc/group` inside the rootfs, `stat` of requested devices, `/proc/self/mountinfo` for
//! propagation checks, `/dev` for privileged containers, the seccomp profile file) and one
//! write: a missing CRI mount `host_path` is created as a directory, as containerd does.
//!
//! Every rejection of caller input is a [`SpecError::InvalidArgument`] whose `field` is the CRI
//! field path (`config.mounts[0].container_path`), so the gRPC error names it.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, Linux, LinuxCapabilities, LinuxCpu, LinuxDevice, LinuxDeviceCgroup,
    LinuxDeviceType, LinuxHugepageLimit, LinuxMemory, LinuxNamespace, LinuxNamespaceType,
    LinuxPids, LinuxResources, Mount, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec,
    User,
};

use crate::api::{
    ContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, MountPropagation,
    NamespaceMode,
};
use crate::fsutil::{is_clean_absolute, resolve_in_root};
use crate::oci::{seccomp, user};

/// OCI runtime spec version written into `ociVersion`.
pub const OCI_VERSION: &str = "1.0.2";
/// `PATH` given to containers whose image sets none (containerd's `WithDefaultPathEnv`).
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// RLIMIT_NOFILE soft and hard limit before clamping to the host's hard limit.
pub const DEFAULT_NOFILE: u64 = 1_048_576;

/// Annotation: `container` for app containers (`sandbox` for the pause container).
pub const ANNOTATION_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// Annotation: the pod sandbox ID.
pub const ANNOTATION_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// Annotation: the container's metadata name.
pub const ANNOTATION_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";

/// containerd's default capability set (Docker's), given to every unprivileged container.
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths masked (bind-mounted over with /dev/null or an empty tmpfs) when the CRI request
/// lists none; containerd's `defaultUnixSpec` list.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths remounted read-only when the CRI request lists none.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Bind-mount options accepted in CRI `Mount.mount_options`.
const ALLOWED_MOUNT_OPTIONS: &[&str] = &[
    "nosuid",
    "nodev",
    "noexec",
    "noatime",
    "nodiratime",
    "relatime",
    "strictatime",
];

/// What the container joins or gets from its sandbox. `None` = the host's.
#[derive(Clone, Debug, Default)]
pub struct SandboxView {
    /// Pod sandbox ID (goes into the sandbox-id annotation).
    pub id: String,
    /// The pod's hostname, for the `HOSTNAME` env variable; empty = the node's hostname
    /// (containerd's rule, for host-network pods without a hostname).
    pub hostname: String,
    /// Pinned network namespace file to join; `None` => host network.
    pub net_ns: Option<PathBuf>,
    /// IPC namespace to join; `None` => host IPC.
    pub ipc_ns: Option<PathBuf>,
    /// UTS namespace to join; `None` => host UTS.
    pub uts_ns: Option<PathBuf>,
    /// The pod's PID namespace (`/proc/<pause>/ns/pid`) when the pod shares one.
    pub pid_ns: Option<PathBuf>,
    /// Host file bound at `/etc/hostname`, when the sandbox has one.
    pub hostname_file: Option<PathBuf>,
    /// Host file bound at `/etc/hosts`.
    pub hosts_file: Option<PathBuf>,
    /// Host file bound at `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// Directory bound at `/dev/shm` (the pod's tmpfs, or the host's `/dev/shm` for host IPC);
    /// `None` => a private tmpfs.
    pub shm: Option<PathBuf>,
    /// `LinuxPodSandboxConfig.sysctls`, applied in each container (they are namespaced and
    /// the namespaces are shared, so this re-applies the same values).
    pub sysctls: BTreeMap<String, String>,
    /// The sandbox's `security_context.privileged`: containers may be privileged only if true.
    pub privileged: bool,
}

/// Limits of the host peapod runs on, which the spec must not exceed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLimits {
    /// Lowest `oom_score_adj` we may give a process (our own when we lack
    /// CAP_SYS_RESOURCE); lower requests are raised to this with a warning.
    pub min_oom_score_adj: i32,
    /// Our RLIMIT_NOFILE hard limit; the container's NOFILE is clamped to it. 0 = unknown,
    /// no clamping.
    pub nofile_hard: u64,
    /// `linux.resources.pids.limit` for every container; 0 = none.
    pub pids_limit: i64,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self {
            min_oom_score_adj: -1000,
            nofile_hard: DEFAULT_NOFILE,
            pids_limit: 0,
        }
    }
}

impl HostLimits {
    /// Reads the limits of the current process: `/proc/self/oom_score_adj` (or -1000 with
    /// CAP_SYS_RESOURCE) and the RLIMIT_NOFILE hard limit. `pids_limit` is left at 0.
    pub fn detect() -> Self {
        let can_lower = caps::has_cap(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_RESOURCE,
        )
        .unwrap_or(false);
        let own = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .unwrap_or(0);
        let nofile_hard =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .map(|(_, hard)| hard)
                .unwrap_or(0);
        Self {
            min_oom_score_adj: if can_lower { -1000 } else { own },
            nofile_hard,
            pids_limit: 0,
        }
    }
}

/// Everything [`generate`] needs to build one container's spec.
pub struct SpecInput<'a> {
    /// Container ID.
    pub id: &'a str,
    /// The CRI container config.
    pub config: &'a ContainerConfig,
    /// The image's config (entrypoint, cmd, env, working dir, user).
    pub image: &'a oci_spec::image::Config,
    /// The container rootfs, already mounted on the host (`root.path`; passwd lookups).
    pub rootfs: &'a Path,
    /// The sandbox the container belongs to.
    pub sandbox: &'a SandboxView,
    /// `linux.cgroupsPath`, computed by the caller (empty = unset).
    pub cgroups_path: String,
    /// PID namespace of the target container, for `NamespaceMode::Target`.
    pub target_pid_ns: Option<PathBuf>,
    /// Host limits to respect.
    pub host: &'a HostLimits,
}

/// Why a spec could not be generated.
#[derive(thiserror::Error, Debug)]
pub enum SpecError {
    /// Bad caller input; `field` is the CRI field path (maps to gRPC InvalidArgument).
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// CRI field path, e.g. `config.mounts[0].container_path`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Something the request refers to does not exist (device, seccomp profile).
    #[error("{what} not found")]
    NotFound {
        /// What is missing.
        what: String,
    },
    /// The request is valid but the host is not in the state it needs (e.g. bidirectional
    /// propagation from a source that is not on a shared mount); gRPC FailedPrecondition.
    #[error("{field}: {reason}")]
    FailedPrecondition {
        /// CRI field path.
        field: String,
        /// What the host lacks.
        reason: String,
    },
    /// A host I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::InvalidArgument {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Field path prefix of the container security context.
const SC: &str = "config.linux.security_context";

/// The parts of the host [`generate`] reads that tests replace.
trait HostOs {
    /// Content of `/proc/self/mountinfo`.
    fn mountinfo(&self) -> std::io::Result<String>;
    /// Every device node under the host's `/dev` (for privileged containers).
    fn host_devices(&self) -> Result<Vec<LinuxDevice>, SpecError>;
    /// The capabilities "ALL" and privileged mean.
    fn all_capabilities(&self) -> Capabilities;
    /// True on a cgroup v2 (unified) host.
    fn cgroup_v2(&self) -> bool;
    /// The node's hostname.
    fn hostname(&self) -> String;
}

struct RealHost;

impl HostOs for RealHost {
    fn mountinfo(&self) -> std::io::Result<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
    }
    fn host_devices(&self) -> Result<Vec<LinuxDevice>, SpecError> {
        devices_under(Path::new("/dev"), None).map_err(|e| SpecError::Io {
            context: "listing host devices under /dev".into(),
            source: e,
        })
    }
    fn all_capabilities(&self) -> Capabilities {
        all_capabilities()
    }
    fn cgroup_v2(&self) -> bool {
        Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    }
    fn hostname(&self) -> String {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Every capability the caps crate knows that is also in our bounding set (like containerd's
/// `WithAllCurrentCapabilities`: a capability we do not hold cannot be granted, and runc
/// fails on it). Falls back to the full list when the bounding set cannot be read.
pub fn all_capabilities() -> Capabilities {
    let known = caps::all();
    let usable = caps::read(None, caps::CapSet::Bounding)
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| known.clone());
    known
        .intersection(&usable)
        .filter_map(|c| oci_cap(*c))
        .collect()
}

/// The oci-spec capability with the same name as a caps-crate capability.
fn oci_cap(c: caps::Capability) -> Option<Capability> {
    serde_json::from_value(serde_json::Value::String(c.to_string())).ok()
}

/// Parses a CRI capability name: with or without `CAP_`, any case. `None` when unknown.
pub fn parse_capability(name: &str) -> Option<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let canonical = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    oci_cap(canonical.parse::<caps::Capability>().ok()?)
}

/// Builds the OCI runtime spec for one container. See the module docs.
pub fn generate(input: &SpecInput) -> Result<Spec, SpecError> {
    generate_on(input, &RealHost)
}

fn generate_on(input: &SpecInput, host: &dyn HostOs) -> Result<Spec, SpecError> {
    let config = input.config;
    let linux_cfg = config.linux.as_ref();
    let sc = linux_cfg.and_then(|l| l.security_context.as_ref());
    let res = linux_cfg.and_then(|l| l.resources.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    if privileged && !input.sandbox.privileged {
        return Err(invalid(
            format!("{SC}.privileged"),
            "no privileged container allowed in sandbox",
        ));
    }
    log_ignored_security_options(input.id, sc);

    // Process.
    let args = process_args(config, input.image)?;
    let hostname = if input.sandbox.hostname.is_empty() {
        host.hostname()
    } else {
        input.sandbox.hostname.clone()
    };
    let env = build_env(
        input.image.env().as_deref().unwrap_or(&[]),
        &hostname,
        &config.envs,
    )?;
    let cwd = working_dir(config, input.image, input.rootfs)?;
    let resolved = user::resolve_container_user(input.rootfs, sc, input.image.user().as_deref())?;
    let mut oci_user = User::default();
    oci_user
        .set_uid(resolved.uid)
        .set_gid(resolved.gid)
        .set_additional_gids(Some(resolved.additional_gids.clone()));

    let (caps_set, ambient) = capabilities(sc, privileged, host)?;
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(caps_set.clone()))
        .set_effective(Some(caps_set.clone()))
        .set_permitted(Some(caps_set.clone()))
        .set_inheritable(Some(ambient.clone()))
        .set_ambient(Some(ambient));

    let oom = oom_score_adj(res, input.host)?;
    let nofile = if input.host.nofile_hard != 0 && input.host.nofile_hard < DEFAULT_NOFILE {
        // A property of the host, not of the container: said once, at WARN; after that at
        // DEBUG, so that it does not drown every container create in the log.
        static WARNED: std::sync::Once = std::sync::Once::new();
        let mut first = false;
        WARNED.call_once(|| first = true);
        if first {
            tracing::warn!(
                wanted = DEFAULT_NOFILE,
                hard = input.host.nofile_hard,
                "RLIMIT_NOFILE of containers clamped to the runtime's hard limit"
            );
        } else {
            tracing::debug!(
                container = input.id,
                hard = input.host.nofile_hard,
                "RLIMIT_NOFILE clamped"
            );
        }
        input.host.nofile_hard
    } else {
        DEFAULT_NOFILE
    };
    // The builder cannot fail: every field is given (and all have defaults).
    let rlimit = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(nofile)
        .hard(nofile)
        .build()
        .unwrap_or_default();

    let mut process = Process::default();
    process
        .set_terminal(Some(config.tty))
        .set_console_size(None)
        .set_user(oci_user)
        .set_args(Some(args))
        .set_command_line(None)
        .set_env(Some(env))
        .set_cwd(PathBuf::from(cwd))
        .set_capabilities(Some(caps))
        .set_rlimits(Some(vec![rlimit]))
        .set_no_new_privileges(Some(sc.is_some_and(|s| s.no_new_privs)))
        .set_apparmor_profile(None)
        .set_oom_score_adj(oom)
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);

    // Devices and resources.
    let (devices, mut device_rules) = if privileged {
        (
            host.host_devices()?,
            vec![device_rule(true, None, None, None, "rwm")],
        )
    } else {
        (Vec::new(), default_device_rules())
    };
    let devices = add_cri_devices(config, devices, &mut device_rules, privileged)?;
    let mut resources = container_resources(res, input.host)?;
    resources.set_devices(Some(device_rules));

    // Namespaces and sysctls.
    let namespaces = namespaces(input, sc, privileged, host.cgroup_v2())?;
    let host_network = input.sandbox.net_ns.is_none();
    let host_ipc = input.sandbox.ipc_ns.is_none();
    validate_sysctls(&input.sandbox.sysctls, host_network, host_ipc)?;
    let sysctl: HashMap<String, String> = input
        .sandbox
        .sysctls
        .iter()
        .map(|(k, v)| (normalize_sysctl_key(k), v.clone()))
        .collect();

    let seccomp = seccomp::for_container(sc, privileged, &caps_set)?;
    let (masked, readonly) = masked_and_readonly_paths(sc, privileged)?;

    mounts_outside_proc(config, input.rootfs)?;
    // Mounts last: the only step with a side effect (creating missing host paths).
    let readonly_rootfs = sc.is_some_and(|s| s.readonly_rootfs);
    let (mounts, rootfs_propagation) =
        build_mounts(config, input.sandbox, readonly_rootfs, privileged, &|| {
            host.mountinfo()
        })?;

    let mut linux = Linux::default();
    linux
        .set_net_devices(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None)
        .set_sysctl((!sysctl.is_empty()).then_some(sysctl))
        .set_resources(Some(resources))
        .set_cgroups_path(
            (!input.cgroups_path.is_empty()).then(|| PathBuf::from(&input.cgroups_path)),
        )
        .set_namespaces(Some(namespaces))
        .set_devices((!devices.is_empty()).then_some(devices))
        .set_seccomp(seccomp)
        .set_rootfs_propagation(rootfs_propagation)
        .set_masked_paths((!masked.is_empty()).then_some(masked))
        .set_readonly_paths((!readonly.is_empty()).then_some(readonly))
        .set_mount_label(None)
        .set_intel_rdt(None)
        .set_memory_policy(None)
        .set_personality(None)
        .set_time_offsets(None);

    let mut root = Root::default();
    root.set_path(input.rootfs.to_path_buf())
        .set_readonly(Some(readonly_rootfs));

    let mut annotations: HashMap<String, String> = config.annotations.clone();
    annotations.insert(ANNOTATION_CONTAINER_TYPE.into(), "container".into());
    annotations.insert(ANNOTATION_SANDBOX_ID.into(), input.sandbox.id.clone());
    annotations.insert(
        ANNOTATION_CONTAINER_NAME.into(),
        config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
    );

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string())
        .set_root(Some(root))
        .set_mounts(Some(mounts))
        .set_process(Some(process))
        .set_hostname(None)
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(Some(annotations))
        .set_linux(Some(linux))
        .set_solaris(None)
        .set_windows(None)
        .set_vm(None)
        .set_zos(None);
    Ok(spec)
}

fn log_ignored_security_options(id: &str, sc: Option<&LinuxContainerSecurityContext>) {
    let Some(sc) = sc else { return };
    #[allow(deprecated)]
    if sc.apparmor.is_some() || !sc.apparmor_profile.is_empty() {
        tracing::debug!(
            container = id,
            "AppArmor profile requested; ignored (not supported)"
        );
    }
    if sc.selinux_options.is_some() {
        tracing::debug!(
            container = id,
            "SELinux options requested; ignored (not supported)"
        );
    }
}

/// Rejects strings containing NUL, which cannot cross into the runtime's C strings.
fn no_nul(field: String, s: &str) -> Result<(), SpecError> {
    if s.contains('\0') {
        return Err(invalid(field, "must not contain a NUL byte"));
    }
    Ok(())
}

/// containerd's `WithProcessArgs`: `command` replaces the image Entrypoint and, when given,
/// the image Cmd is not used (only `args`); otherwise Entrypoint + (`args` or image Cmd).
pub fn process_args(
    config: &ContainerConfig,
    image: &oci_spec::image::Config,
) -> Result<Vec<String>, SpecError> {
    for (i, c) in config.command.iter().enumerate() {
        no_nul(format!("config.command[{i}]"), c)?;
    }
    for (i, a) in config.args.iter().enumerate() {
        no_nul(format!("config.args[{i}]"), a)?;
    }
    let (entrypoint, cmd): (&[String], &[String]) = if !config.command.is_empty() {
        (&config.command, &config.args)
    } else {
        let cmd = if config.args.is_empty() {
            image.cmd().as_deref().unwrap_or(&[])
        } else {
            &config.args
        };
        (image.entrypoint().as_deref().unwrap_or(&[]), cmd)
    };
    let args: Vec<String> = entrypoint.iter().chain(cmd).cloned().collect();
    if args.is_empty() {
        return Err(invalid("config.command", "no command specified"));
    }
    Ok(args)
}

/// Merges `overrides` into `env` like containerd's `replaceOrAppendEnvValues`: a key already
/// present is replaced in place, a new key is appended, an entry without `=` unsets the key.
fn merge_env(env: &mut Vec<String>, overrides: impl IntoIterator<Item = String>) {
    for entry in overrides {
        match entry.split_once('=') {
            Some((key, _)) => {
                match env
                    .iter_mut()
                    .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key))
                {
                    Some(slot) => *slot = entry,
                    None => env.push(entry),
                }
            }
            None => env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(entry.as_str())),
        }
    }
}

/// The process environment: the default PATH, `HOSTNAME=<hostname>`, the image's Env, then
/// the CRI envs; later sources override earlier ones key by key.
///
/// CRI keys must be non-empty without `=` or NUL and values must be UTF-8 without NUL.
/// (Values may hold newlines: we never copy them into `/etc/passwd`, the CRI-O
/// CVE-2022-4318 pattern.)
pub fn build_env(
    image_env: &[String],
    hostname: &str,
    cri_envs: &[crate::api::KeyValue],
) -> Result<Vec<String>, SpecError> {
    let mut env = vec![DEFAULT_PATH_ENV.to_string()];
    merge_env(&mut env, [format!("HOSTNAME={hostname}")]);
    merge_env(
        &mut env,
        image_env.iter().filter(|e| !e.contains('\0')).cloned(),
    );
    let mut cri = Vec::with_capacity(cri_envs.len());
    for (i, kv) in cri_envs.iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains(['=', '\0']) {
            return Err(invalid(
                format!("config.envs[{i}].key"),
                format!("invalid environment variable name {:?}", kv.key),
            ));
        }
        let value = std::str::from_utf8(&kv.value).map_err(|_| {
            invalid(
                format!("config.envs[{i}].value"),
                "value is not valid UTF-8",
            )
        })?;
        no_nul(format!("config.envs[{i}].value"), value)?;
        cri.push(format!("{}={}", kv.key, value));
    }
    merge_env(&mut env, cri);
    Ok(env)
}

/// `p` without `.` components and duplicate slashes; `p` must satisfy `is_clean_absolute`.
fn clean_absolute(p: &str) -> String {
    let parts: Vec<_> = Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    format!("/{}", parts.join("/"))
}

/// Number of path components, for ordering mounts parents first.
fn depth(p: &Path) -> usize {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

/// The working directory: CRI `working_dir`, else the image's WorkingDir, else `/`. Must be
/// absolute without `..` and must not lead into `/proc` (runc CVE-2024-21626: a cwd such as
/// `/proc/self/fd/7` reached a leaked host fd), also through symlinks in the image.
pub fn working_dir(
    config: &ContainerConfig,
    image: &oci_spec::image::Config,
    rootfs: &Path,
) -> Result<String, SpecError> {
    let (dir, field) = if !config.working_dir.is_empty() {
        (config.working_dir.as_str(), "config.working_dir")
    } else {
        match image.working_dir().as_deref() {
            Some(d) if !d.is_empty() => (d, "image.config.WorkingDir"),
            _ => ("/", "config.working_dir"),
        }
    };
    if !is_clean_absolute(dir) {
        return Err(invalid(
            field,
            format!("{dir:?} must be an absolute path without '..'"),
        ));
    }
    let dir = clean_absolute(dir);
    let in_proc = |p: &Path| p.components().nth(1) == Some(Component::Normal("proc".as_ref()));
    if in_proc(Path::new(&dir)) {
        return Err(invalid(field, format!("{dir:?} is inside /proc")));
    }
    let resolved = resolve_in_root(rootfs, Path::new(&dir))
        .map_err(|e| invalid(field, format!("cannot resolve {dir:?} in the image: {e}")))?;
    let inside = Path::new("/").join(resolved.strip_prefix(rootfs).unwrap_or(Path::new("")));
    if in_proc(&inside) {
        return Err(invalid(
            field,
            format!("{dir:?} resolves to {} inside /proc", inside.display()),
        ));
    }
    Ok(dir)
}

/// A CRI mount must not land at or under `/proc`, also not through symlinks in the image
/// (`/p -> /proc`, `/k -> /proc/sys/kernel`): a bind mount over procfs hides it from the
/// container's own runtime (exec fails) or over a /proc/sys file shadows a kernel setting
/// (the CVE-2019-19921 class). runc refuses these itself; crun and youki do not all, so
/// peapod does, whichever runtime runs the container.
fn mounts_outside_proc(config: &ContainerConfig, rootfs: &Path) -> Result<(), SpecError> {
    let in_proc = |p: &Path| p.components().nth(1) == Some(Component::Normal("proc".as_ref()));
    for (i, m) in config.mounts.iter().enumerate() {
        let field = format!("config.mounts[{i}].container_path");
        // plan_cri_mount has checked the form; only the destination's resolution is new here.
        if !is_clean_absolute(&m.container_path) {
            continue;
        }
        let dest = clean_absolute(&m.container_path);
        let resolved = resolve_in_root(rootfs, Path::new(&dest))
            .map_err(|e| invalid(&field, format!("cannot resolve {dest:?} in the image: {e}")))?;
        let inside = Path::new("/").join(resolved.strip_prefix(rootfs).unwrap_or(Path::new("")));
        if in_proc(&inside) {
            return Err(invalid(
                field,
                format!(
                    "{dest:?} resolves to {} inside /proc, which is the kernel's",
                    inside.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Capability sets: (bounding = effective = permitted, ambient = inheritable).
///
/// Unprivileged: [`DEFAULT_CAPABILITIES`], then (containerd's order) add "ALL", drop "ALL",
/// individual adds, ambient adds, individual drops (a drop removes from every set).
/// Privileged: every capability (see [`all_capabilities`]), nothing ambient.
fn capabilities(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
    host: &dyn HostOs,
) -> Result<(Capabilities, Capabilities), SpecError> {
    if privileged {
        return Ok((host.all_capabilities(), Capabilities::new()));
    }
    let mut set: Capabilities = DEFAULT_CAPABILITIES.iter().copied().collect();
    let mut ambient = Capabilities::new();
    let Some(c) = sc.and_then(|s| s.capabilities.as_ref()) else {
        return Ok((set, ambient));
    };
    let is_all = |n: &String| n.trim().eq_ignore_ascii_case("ALL");
    let parse_list = |list: &[String], name: &str, allow_all: bool| {
        list.iter()
            .enumerate()
            .filter(|(_, n)| !(allow_all && is_all(n)))
            .map(|(i, n)| {
                parse_capability(n).ok_or_else(|| {
                    invalid(
                        format!("{SC}.capabilities.{name}[{i}]"),
                        format!("unknown capability {n:?}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let add = parse_list(&c.add_capabilities, "add_capabilities", true)?;
    let drop = parse_list(&c.drop_capabilities, "drop_capabilities", true)?;
    let add_ambient = parse_list(
        &c.add_ambient_capabilities,
        "add_ambient_capabilities",
        false,
    )?;

    if c.add_capabilities.iter().any(is_all) {
        set = host.all_capabilities();
    }
    if c.drop_capabilities.iter().any(is_all) {
        set.clear();
    }
    set.extend(add);
    for cap in add_ambient {
        set.insert(cap);
        ambient.insert(cap);
    }
    for cap in drop {
        set.remove(&cap);
        ambient.remove(&cap);
    }
    Ok((set, ambient))
}

/// `process.oomScoreAdj`: from the resources (unset without resources), raised to the host's
/// minimum with a warning (containerd's `restrict_oom_score_adj`).
fn oom_score_adj(
    res: Option<&LinuxContainerResources>,
    host: &HostLimits,
) -> Result<Option<i32>, SpecError> {
    let Some(res) = res else { return Ok(None) };
    let adj = res.oom_score_adj;
    if !(-1000..=1000).contains(&adj) {
        return Err(invalid(
            "config.linux.resources.oom_score_adj",
            format!("{adj} is outside [-1000, 1000]"),
        ));
    }
    let adj = adj as i32;
    if adj < host.min_oom_score_adj {
        tracing::warn!(
            requested = adj,
            applied = host.min_oom_score_adj,
            "oom_score_adj raised to the runtime's own (it cannot be lowered on this host)"
        );
        return Ok(Some(host.min_oom_score_adj));
    }
    Ok(Some(adj))
}

fn device_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow)
        .set_typ(typ)
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_string()));
    r
}

/// The device cgroup rules of an unprivileged container: deny everything, then allow mknod
/// of any node and rwm on the standard devices (containerd's `WithDefaultUnixDevices`, as
/// runc's own allow-list).
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    let mut rules = vec![
        device_rule(false, None, None, None, "rwm"),
        device_rule(true, Some(C), None, None, "m"),
        device_rule(true, Some(B), None, None, "m"),
    ];
    for (major, minor) in [
        (1, Some(3)),    // /dev/null
        (1, Some(8)),    // /dev/random
        (1, Some(7)),    // /dev/full
        (5, Some(0)),    // /dev/tty
        (1, Some(5)),    // /dev/zero
        (1, Some(9)),    // /dev/urandom
        (5, Some(1)),    // /dev/console
        (136, None),     // /dev/pts/*
        (5, Some(2)),    // /dev/ptmx
        (10, Some(200)), // /dev/net/tun
    ] {
        rules.push(device_rule(true, Some(C), Some(major), minor, "rwm"));
    }
    rules
}

/// The device node at `path` (not following a final symlink), or `None` when it is not a
/// character or block device.
pub fn device_from_path(path: &Path) -> std::io::Result<Option<LinuxDevice>> {
    let meta = std::fs::symlink_metadata(path)?;
    let typ = match meta.mode() & libc::S_IFMT {
        libc::S_IFCHR => LinuxDeviceType::C,
        libc::S_IFBLK => LinuxDeviceType::B,
        _ => return Ok(None),
    };
    let rdev = meta.rdev();
    let mut d = LinuxDevice::default();
    d.set_path(path.to_path_buf())
        .set_typ(typ)
        .set_major(nix::sys::stat::major(rdev) as i64)
        .set_minor(nix::sys::stat::minor(rdev) as i64)
        .set_file_mode(Some(meta.mode() & 0o7777))
        .set_uid(Some(meta.uid()))
        .set_gid(Some(meta.gid()));
    Ok(Some(d))
}

/// The devices at `host` (one node, or every node below a directory, as containerd's
/// `getDevices`: skipping `pts`, `shm`, `fd`, `mqueue` and LXC/udev bookkeeping directories
/// and `console`). With `container`, paths are rebased there; otherwise they keep the host path.
pub fn devices_under(host: &Path, container: Option<&Path>) -> std::io::Result<Vec<LinuxDevice>> {
    let meta = std::fs::metadata(host)?;
    if !meta.is_dir() {
        let mut dev = device_from_path(host)?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a device node", host.display()),
            )
        })?;
        if let Some(c) = container {
            dev.set_path(c.to_path_buf());
        }
        return Ok(vec![dev]);
    }
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(host)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let ft = entry.file_type()?;
        let sub_container = container.map(|c| c.join(&name));
        let path = entry.path();
        if ft.is_dir() {
            if matches!(
                name.to_str(),
                Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
            ) {
                continue;
            }
            out.extend(devices_under(&path, sub_container.as_deref())?);
        } else if name == "console" {
            continue;
        } else {
            match device_from_path(&path) {
                Ok(Some(mut dev)) => {
                    if let Some(c) = sub_container {
                        dev.set_path(c);
                    }
                    out.push(dev);
                }
                Ok(None) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// Adds the CRI `devices` to `devices` (replacing same container paths) and, unless
/// privileged (all allowed already), one allow rule per device with its permissions.
fn add_cri_devices(
    config: &ContainerConfig,
    mut devices: Vec<LinuxDevice>,
    rules: &mut Vec<LinuxDeviceCgroup>,
    privileged: bool,
) -> Result<Vec<LinuxDevice>, SpecError> {
    for (i, d) in config.devices.iter().enumerate() {
        let field = |f: &str| format!("config.devices[{i}].{f}");
        if !is_clean_absolute(&d.container_path) {
            return Err(invalid(
                field("container_path"),
                format!(
                    "{:?} must be an absolute path without '..'",
                    d.container_path
                ),
            ));
        }
        if !Path::new(&d.host_path).is_absolute() || d.host_path.contains('\0') {
            return Err(invalid(
                field("host_path"),
                format!("{:?} must be an absolute path", d.host_path),
            ));
        }
        let perms = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(invalid(
                field("permissions"),
                format!("{:?} is not a combination of r, w and m", d.permissions),
            ));
        }
        let host_path = std::fs::canonicalize(&d.host_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                SpecError::NotFound {
                    what: format!("host device {}", d.host_path),
                }
            } else {
                SpecError::Io {
                    context: format!("resolving host device {}", d.host_path),
                    source: e,
                }
            }
        })?;
        let found = devices_under(
            &host_path,
            Some(Path::new(&clean_absolute(&d.container_path))),
        )
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput {
                invalid(field("host_path"), e.to_string())
            } else {
                SpecError::Io {
                    context: format!("reading host device {}", d.host_path),
                    source: e,
                }
            }
        })?;
        for dev in found {
            if !privileged {
                rules.push(device_rule(
                    true,
                    Some(dev.typ()),
                    Some(dev.major()),
                    Some(dev.minor()),
                    perms,
                ));
            }
            match devices.iter_mut().find(|x| x.path() == dev.path()) {
                Some(slot) => *slot = dev,
                None => devices.push(dev),
            }
        }
    }
    Ok(devices)
}

/// The resources of a CRI UpdateContainerResources as the runtime's `update --resources`
/// takes them: the same translation and checks as at creation.
pub fn update_resources(
    res: &LinuxContainerResources,
    host: &HostLimits,
) -> Result<LinuxResources, SpecError> {
    container_resources(Some(res), host)
}

/// `linux.resources` (without devices) from the CRI resources and the host's pids limit.
fn container_resources(
    res: Option<&LinuxContainerResources>,
    host: &HostLimits,
) -> Result<LinuxResources, SpecError> {
    const F: &str = "config.linux.resources";
    let mut out = LinuxResources::default();
    if host.pids_limit > 0 {
        let mut pids = LinuxPids::default();
        pids.set_limit(host.pids_limit);
        out.set_pids(Some(pids));
    }
    let Some(r) = res else { return Ok(out) };
    let non_negative = |name: &str, v: i64| -> Result<Option<u64>, SpecError> {
        match v {
            0 => Ok(None),
            v if v > 0 => Ok(Some(v as u64)),
            v => Err(invalid(format!("{F}.{name}"), format!("{v} is negative"))),
        }
    };
    let cpuset_ok = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ',' | '-' | ' '))
    };
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(non_negative("cpu_shares", r.cpu_shares)?)
        .set_period(non_negative("cpu_period", r.cpu_period)?)
        .set_quota((r.cpu_quota != 0).then_some(r.cpu_quota));
    if r.cpu_quota < -1 {
        return Err(invalid(
            format!("{F}.cpu_quota"),
            format!("{} is invalid", r.cpu_quota),
        ));
    }
    for (name, v) in [
        ("cpuset_cpus", &r.cpuset_cpus),
        ("cpuset_mems", &r.cpuset_mems),
    ] {
        if !cpuset_ok(v) {
            return Err(invalid(
                format!("{F}.{name}"),
                format!("{v:?} is not a CPU list"),
            ));
        }
    }
    cpu.set_cpus((!r.cpuset_cpus.is_empty()).then(|| r.cpuset_cpus.clone()))
        .set_mems((!r.cpuset_mems.is_empty()).then(|| r.cpuset_mems.clone()));
    if cpu != LinuxCpu::default() {
        out.set_cpu(Some(cpu));
    }

    let mut memory = LinuxMemory::default();
    memory.set_limit(
        non_negative("memory_limit_in_bytes", r.memory_limit_in_bytes)?.map(|v| v as i64),
    );
    if r.memory_swap_limit_in_bytes < -1 {
        return Err(invalid(
            format!("{F}.memory_swap_limit_in_bytes"),
            format!("{} is invalid", r.memory_swap_limit_in_bytes),
        ));
    }
    memory.set_swap((r.memory_swap_limit_in_bytes != 0).then_some(r.memory_swap_limit_in_bytes));
    if memory != LinuxMemory::default() {
        out.set_memory(Some(memory));
    }

    let mut hugepages = Vec::new();
    for (i, h) in r.hugepage_limits.iter().enumerate() {
        let valid_size = h.page_size.len() > 2
            && h.page_size.ends_with('B')
            && h.page_size[..h.page_size.len() - 2]
                .chars()
                .all(|c| c.is_ascii_digit())
            && matches!(
                h.page_size.as_bytes()[h.page_size.len() - 2],
                b'K' | b'M' | b'G'
            );
        let limit = i64::try_from(h.limit).ok();
        if !valid_size || limit.is_none() {
            return Err(invalid(
                format!("{F}.hugepage_limits[{i}]"),
                format!(
                    "invalid hugepage limit {} for page size {:?}",
                    h.limit, h.page_size
                ),
            ));
        }
        let mut l = LinuxHugepageLimit::default();
        l.set_page_size(h.page_size.clone())
            .set_limit(limit.unwrap_or_default());
        hugepages.push(l);
    }
    if !hugepages.is_empty() {
        out.set_hugepage_limits(Some(hugepages));
    }

    if !r.unified.is_empty() {
        for (k, v) in &r.unified {
            if k.is_empty() || k.starts_with('.') || k.contains(['/', '\0']) || v.contains('\0') {
                return Err(invalid(
                    format!("{F}.unified[{k}]"),
                    "not a cgroup v2 interface file name",
                ));
            }
        }
        out.set_unified(Some(r.unified.clone()));
    }
    Ok(out)
}

/// The namespaces of the container: a new mount namespace; network, IPC and UTS joined from
/// the sandbox (or the host's when the sandbox has none); PID per
/// `namespace_options.pid`; a new cgroup namespace on cgroup v2 unless privileged (as
/// containerd). The spec's hostname is not set: the joined UTS namespace has it already.
fn namespaces(
    input: &SpecInput,
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
    cgroup_v2: bool,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    let ns = |typ: LinuxNamespaceType, path: Option<PathBuf>| {
        let mut n = LinuxNamespace::default();
        n.set_typ(typ).set_path(path);
        n
    };
    let mut out = vec![ns(LinuxNamespaceType::Mount, None)];
    let sb = input.sandbox;
    for (typ, path) in [
        (LinuxNamespaceType::Network, &sb.net_ns),
        (LinuxNamespaceType::Ipc, &sb.ipc_ns),
        (LinuxNamespaceType::Uts, &sb.uts_ns),
    ] {
        if let Some(p) = path {
            out.push(ns(typ, Some(p.clone())));
        }
    }
    let opts = sc.and_then(|s| s.namespace_options.as_ref());
    if let Some(userns) = opts.and_then(|o| o.userns_options.as_ref()) {
        if !userns.uids.is_empty() || !userns.gids.is_empty() {
            return Err(invalid(
                format!("{SC}.namespace_options.userns_options"),
                "user namespaces are not supported",
            ));
        }
    }
    let field = format!("{SC}.namespace_options.pid");
    let pid_mode = opts.map(|o| o.pid).unwrap_or(NamespaceMode::Pod as i32);
    match NamespaceMode::try_from(pid_mode) {
        Ok(NamespaceMode::Pod) => match &sb.pid_ns {
            Some(p) => out.push(ns(LinuxNamespaceType::Pid, Some(p.clone()))),
            None => return Err(invalid(field, "the pod has no shared PID namespace")),
        },
        Ok(NamespaceMode::Container) => out.push(ns(LinuxNamespaceType::Pid, None)),
        Ok(NamespaceMode::Node) => {}
        Ok(NamespaceMode::Target) => match &input.target_pid_ns {
            Some(p) => out.push(ns(LinuxNamespaceType::Pid, Some(p.clone()))),
            None => {
                return Err(invalid(
                    format!("{SC}.namespace_options.target_id"),
                    "the target container's PID namespace is unknown",
                ))
            }
        },
        Err(_) => return Err(invalid(field, format!("unknown namespace mode {pid_mode}"))),
    }
    if cgroup_v2 && !privileged {
        out.push(ns(LinuxNamespaceType::Cgroup, None));
    }
    Ok(out)
}

/// Masked and read-only paths: none when privileged; the CRI lists when given; else the
/// defaults ([`DEFAULT_MASKED_PATHS`], [`DEFAULT_READONLY_PATHS`]).
fn masked_and_readonly_paths(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
) -> Result<(Vec<String>, Vec<String>), SpecError> {
    if privileged {
        return Ok((Vec::new(), Vec::new()));
    }
    let pick = |given: Option<&Vec<String>>, defaults: &[&str], name: &str| match given
        .filter(|g| !g.is_empty())
    {
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if is_clean_absolute(p) {
                    Ok(clean_absolute(p))
                } else {
                    Err(invalid(
                        format!("{SC}.{name}[{i}]"),
                        format!("{p:?} must be an absolute path without '..'"),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>(),
        None => Ok(defaults.iter().map(|s| s.to_string()).collect()),
    };
    Ok((
        pick(
            sc.map(|s| &s.masked_paths),
            DEFAULT_MASKED_PATHS,
            "masked_paths",
        )?,
        pick(
            sc.map(|s| &s.readonly_paths),
            DEFAULT_READONLY_PATHS,
            "readonly_paths",
        )?,
    ))
}

fn oci_mount(dest: &str, typ: &str, source: &Path, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest))
        .set_typ(Some(typ.to_string()))
        .set_source(Some(source.to_path_buf()))
        .set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// containerd's default Linux mounts; `/sys` and `/sys/fs/cgroup` are writable only for
/// privileged containers.
pub fn default_mounts(privileged: bool) -> Vec<Mount> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    vec![
        oci_mount(
            "/proc",
            "proc",
            Path::new("proc"),
            &["nosuid", "noexec", "nodev"],
        ),
        oci_mount(
            "/dev",
            "tmpfs",
            Path::new("tmpfs"),
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        oci_mount(
            "/dev/pts",
            "devpts",
            Path::new("devpts"),
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        oci_mount(
            "/dev/shm",
            "tmpfs",
            Path::new("shm"),
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        oci_mount(
            "/dev/mqueue",
            "mqueue",
            Path::new("mqueue"),
            &["nosuid", "noexec", "nodev"],
        ),
        oci_mount(
            "/sys",
            "sysfs",
            Path::new("sysfs"),
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
        oci_mount(
            "/sys/fs/cgroup",
            "cgroup",
            Path::new("cgroup"),
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        ),
    ]
}

/// The propagation state of the mount holding `path`, from `/proc/self/mountinfo` content:
/// the optional fields (`shared:N`, `master:N`) of the deepest mount point containing it.
pub fn mount_propagation_fields(mountinfo: &str, path: &Path) -> Option<Vec<String>> {
    let mut best: Option<(usize, Vec<String>)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 7 {
            continue;
        }
        let mount_point = unescape_mountinfo(fields[4]);
        if !path.starts_with(&mount_point) {
            continue;
        }
        let optional: Vec<String> = fields[6..]
            .iter()
            .take_while(|f| **f != "-")
            .map(|s| s.to_string())
            .collect();
        let d = depth(Path::new(&mount_point));
        // Later lines with the same mount point are stacked on top: they win.
        if best.as_ref().is_none_or(|(bd, _)| d >= *bd) {
            best = Some((d, optional));
        }
    }
    best.map(|(_, o)| o)
}

/// A mountinfo path field, decoded (lossily: a mount point outside UTF-8 matches no spec path).
fn unescape_mountinfo(s: &str) -> String {
    String::from_utf8_lossy(&crate::fsutil::unescape_mountinfo(s.as_bytes())).into_owned()
}

/// A host bind mount (`rbind` + propagation + `ro`/`rw`), as containerd's `WithMounts`
/// builds for CRI and sandbox mounts.
fn bind_mount(dest: &str, source: &Path, propagation: &str, ro: &str, extra: &[String]) -> Mount {
    let mut opts = vec!["rbind", propagation, ro];
    opts.extend(extra.iter().map(String::as_str));
    oci_mount(dest, "bind", source, &opts)
}

/// A validated CRI mount, before its host side is touched.
struct PlannedMount {
    /// Clean container path.
    dest: String,
    /// Host path as given (absolute).
    host: PathBuf,
    propagation: MountPropagation,
    /// `ro`, `rro` or `rw`.
    ro: &'static str,
    /// Extra allowed options (`nosuid`, ...).
    options: Vec<String>,
}

/// Validates CRI mount `i` without touching the host.
fn plan_cri_mount(i: usize, m: &crate::api::Mount) -> Result<PlannedMount, SpecError> {
    let field = |f: &str| format!("config.mounts[{i}].{f}");
    if !is_clean_absolute(&m.container_path) {
        return Err(invalid(
            field("container_path"),
            format!(
                "{:?} must be an absolute path without '..'",
                m.container_path
            ),
        ));
    }
    if m.image.is_some() || !m.image_sub_path.is_empty() {
        return Err(invalid(
            field("image"),
            "image volume mounts are not supported",
        ));
    }
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(invalid(
            field("uid_mappings"),
            "id-mapped mounts are not supported",
        ));
    }
    if !Path::new(&m.host_path).is_absolute() || m.host_path.contains('\0') {
        return Err(invalid(
            field("host_path"),
            format!("{:?} must be an absolute path", m.host_path),
        ));
    }
    for (j, o) in m.mount_options.iter().enumerate() {
        if !ALLOWED_MOUNT_OPTIONS.contains(&o.as_str()) {
            return Err(invalid(
                format!("config.mounts[{i}].mount_options[{j}]"),
                format!("unsupported mount option {o:?}"),
            ));
        }
    }
    let propagation = MountPropagation::try_from(m.propagation).map_err(|_| {
        invalid(
            field("propagation"),
            format!("unknown propagation {}", m.propagation),
        )
    })?;
    let ro = if m.recursive_read_only {
        if !m.readonly || propagation != MountPropagation::PropagationPrivate {
            return Err(invalid(
                field("recursive_read_only"),
                "recursive read-only needs readonly and private propagation",
            ));
        }
        "rro"
    } else if m.readonly {
        "ro"
    } else {
        "rw"
    };
    let dest = clean_absolute(&m.container_path);
    if m.selinux_relabel {
        tracing::debug!(mount = %dest, "SELinux relabel requested; ignored (not supported)");
    }
    Ok(PlannedMount {
        dest,
        host: PathBuf::from(&m.host_path),
        propagation,
        ro,
        options: m.mount_options.clone(),
    })
}

/// Creates a missing mount source as a directory (0755, as containerd does) and resolves
/// its symlinks, returning the real path to bind.
fn prepare_mount_source(host: &Path) -> Result<PathBuf, SpecError> {
    match std::fs::symlink_metadata(host) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(host)
                .map_err(|e| SpecError::Io {
                    context: format!("creating mount source {}", host.display()),
                    source: e,
                })?;
        }
        Err(e) => {
            return Err(SpecError::Io {
                context: format!("stat of mount source {}", host.display()),
                source: e,
            })
        }
    }
    std::fs::canonicalize(host).map_err(|e| SpecError::Io {
        context: format!("resolving mount source {}", host.display()),
        source: e,
    })
}

/// All mounts of the container and `linux.rootfsPropagation`.
///
/// Defaults ([`default_mounts`]), the sandbox's `/etc/hostname`, `/etc/hosts`,
/// `/etc/resolv.conf` (read-only when the rootfs is) and `/dev/shm`, then the CRI mounts. A
/// CRI mount replaces a sandbox or default mount with the same destination, a CRI or sandbox
/// mount replaces a default one, and a mount at `/dev` drops the defaults under `/dev/`.
/// The result is stably sorted by destination depth so parents come before children.
fn build_mounts(
    config: &ContainerConfig,
    sandbox: &SandboxView,
    readonly_rootfs: bool,
    privileged: bool,
    mountinfo: &dyn Fn() -> std::io::Result<String>,
) -> Result<(Vec<Mount>, Option<String>), SpecError> {
    // First validate every CRI mount, so a bad request creates no host directories.
    let planned = config
        .mounts
        .iter()
        .enumerate()
        .map(|(i, m)| plan_cri_mount(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, p) in planned.iter().enumerate() {
        if planned[..i].iter().any(|q| q.dest == p.dest) {
            return Err(invalid(
                format!("config.mounts[{i}].container_path"),
                format!("{} is mounted twice", p.dest),
            ));
        }
    }

    let mut user: Vec<Mount> = Vec::new();
    let mut rootfs_propagation: Option<&str> = None;
    let mut mountinfo_cache: Option<Option<String>> = None;
    for (i, p) in planned.iter().enumerate() {
        let source = prepare_mount_source(&p.host)?;
        let needs = match p.propagation {
            MountPropagation::PropagationPrivate => None,
            MountPropagation::PropagationHostToContainer => Some(&["shared:", "master:"][..]),
            MountPropagation::PropagationBidirectional => Some(&["shared:"][..]),
        };
        if let Some(needs) = needs {
            let info = mountinfo_cache.get_or_insert_with(|| match mountinfo() {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read mountinfo; propagation not checked");
                    None
                }
            });
            if let Some(info) = info {
                let opts = mount_propagation_fields(info, &source).unwrap_or_default();
                if !opts.iter().any(|o| needs.iter().any(|n| o.starts_with(n))) {
                    let kind = if needs.len() == 1 {
                        "shared"
                    } else {
                        "shared or slave"
                    };
                    return Err(SpecError::FailedPrecondition {
                        field: format!("config.mounts[{i}].propagation"),
                        reason: format!("{} is not on a {kind} mount", source.display()),
                    });
                }
            }
        }
        let prop = match p.propagation {
            MountPropagation::PropagationPrivate => "rprivate",
            MountPropagation::PropagationHostToContainer => {
                if rootfs_propagation != Some("rshared") {
                    rootfs_propagation = Some("rslave");
                }
                "rslave"
            }
            MountPropagation::PropagationBidirectional => {
                rootfs_propagation = Some("rshared");
                "rshared"
            }
        };
        user.push(bind_mount(&p.dest, &source, prop, p.ro, &p.options));
    }

    let taken = |set: &[Mount], dest: &str| set.iter().any(|m| m.destination() == Path::new(dest));
    let mut extra: Vec<Mount> = Vec::new();
    let file_ro = if readonly_rootfs { "ro" } else { "rw" };
    for (dest, src, ro) in [
        ("/etc/hostname", &sandbox.hostname_file, file_ro),
        ("/etc/hosts", &sandbox.hosts_file, file_ro),
        ("/etc/resolv.conf", &sandbox.resolv_conf, file_ro),
        ("/dev/shm", &sandbox.shm, "rw"),
    ] {
        if let Some(src) = src {
            if !taken(&user, dest) {
                extra.push(bind_mount(dest, src, "rprivate", ro, &[]));
            }
        }
    }
    user.extend(extra);

    let dev_replaced = taken(&user, "/dev");
    let mut all: Vec<Mount> = default_mounts(privileged)
        .into_iter()
        .filter(|d| {
            let dest = d.destination();
            !(taken(&user, &dest.to_string_lossy()) || dev_replaced && dest.starts_with("/dev/"))
        })
        .collect();
    all.extend(user);
    all.sort_by_key(|m| depth(m.destination()));
    Ok((all, rootfs_propagation.map(String::from)))
}

/// Converts a sysctl name written with `/` separators to the dotted form, as the kubelet
/// does: when the first separator is `/`, every `/` becomes `.` and every `.` becomes `/`
/// (`net/ipv4/conf/eth0.100/rp_filter` → `net.ipv4.conf.eth0/100.rp_filter`).
pub fn normalize_sysctl_key(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

/// Which namespace a sysctl belongs to, or `None` when it is not namespaced (not allowed).
fn sysctl_namespace(key: &str) -> Option<LinuxNamespaceType> {
    if key == "kernel.sem"
        || key.starts_with("kernel.shm")
        || key.starts_with("kernel.msg")
        || key.starts_with("fs.mqueue.")
    {
        Some(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else {
        None
    }
}

/// Validates pod sysctls before they reach `linux.sysctl`.
///
/// Keys (after [`normalize_sysctl_key`]) must match `^[a-zA-Z0-9_./-]+$` without empty
/// components and be namespaced: `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`
/// (not with host IPC) or `net.*` (not with host network). Values must not contain `=`, a
/// line break or NUL, which is how CRI-O's CVE-2022-0811 smuggled a second
/// `+kernel.core_pattern=...` assignment inside a value.
pub fn validate_sysctls(
    sysctls: &BTreeMap<String, String>,
    host_network: bool,
    host_ipc: bool,
) -> Result<(), SpecError> {
    for (raw, value) in sysctls {
        let field = format!("config.linux.sysctls[{raw}]");
        let key = normalize_sysctl_key(raw);
        let well_formed = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'))
            && key.split(['.', '/']).all(|c| !c.is_empty());
        if !well_formed {
            return Err(invalid(field, "invalid sysctl name"));
        }
        if value.contains(['=', '\n', '\r', '\0']) {
            return Err(invalid(
                field,
                format!("invalid value {value:?}: must not contain '=', line breaks or NUL"),
            ));
        }
        match sysctl_namespace(&key) {
            None => {
                return Err(invalid(
                    field,
                    format!("{key} is not a namespaced sysctl and cannot be set in a pod"),
                ))
            }
            Some(LinuxNamespaceType::Ipc) if host_ipc => {
                return Err(invalid(field, format!("{key} cannot be set with host IPC")))
            }
            Some(LinuxNamespaceType::Network) if host_network => {
                return Err(invalid(
                    field,
                    format!("{key} cannot be set with host network"),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        Capability as CriCapability, ContainerMetadata, Device, HugepageLimit, Int64Value,
        KeyValue, LinuxContainerConfig, Mount as CriMount, NamespaceOption,
    };
    use oci_spec::image::ConfigBuilder;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app\napp:x:1000:\n";

    /// A temporary directory holding `rootfs/` (with /etc/passwd and /etc/group) and `host/`.
    struct Fixture {
        dir: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("peapod-spec-{}", crate::fsutil::new_id()));
            std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
            std::fs::create_dir_all(dir.join("host")).unwrap();
            std::fs::write(dir.join("rootfs/etc/passwd"), PASSWD).unwrap();
            std::fs::write(dir.join("rootfs/etc/group"), GROUP).unwrap();
            Fixture { dir }
        }
        fn rootfs(&self) -> PathBuf {
            self.dir.join("rootfs")
        }
        fn host(&self, p: &str) -> PathBuf {
            self.dir.join("host").join(p)
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    struct FakeHost {
        mountinfo: String,
        v2: bool,
    }

    impl HostOs for FakeHost {
        fn mountinfo(&self) -> std::io::Result<String> {
            Ok(self.mountinfo.clone())
        }
        fn host_devices(&self) -> Result<Vec<LinuxDevice>, SpecError> {
            let mut d = LinuxDevice::default();
            d.set_path("/dev/fake0".into())
                .set_typ(LinuxDeviceType::C)
                .set_major(42)
                .set_minor(7);
            Ok(vec![d])
        }
        fn all_capabilities(&self) -> Capabilities {
            caps::all().into_iter().filter_map(oci_cap).collect()
        }
        fn cgroup_v2(&self) -> bool {
            self.v2
        }
        fn hostname(&self) -> String {
            "node1".into()
        }
    }

    fn fake_host() -> FakeHost {
        FakeHost {
            mountinfo: "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n".into(),
            v2: true,
        }
    }

    fn sandbox() -> SandboxView {
        SandboxView {
            id: "sb1".into(),
            hostname: "pod-a".into(),
            net_ns: Some("/run/netns/sb1".into()),
            ipc_ns: Some("/proc/10/ns/ipc".into()),
            uts_ns: Some("/proc/10/ns/uts".into()),
            pid_ns: Some("/proc/10/ns/pid".into()),
            hostname_file: Some("/run/peapod/sb1/hostname".into()),
            hosts_file: Some("/run/peapod/sb1/hosts".into()),
            resolv_conf: Some("/run/peapod/sb1/resolv.conf".into()),
            shm: Some("/run/peapod/sb1/shm".into()),
            sysctls: BTreeMap::new(),
            privileged: false,
        }
    }

    fn sc_mut(c: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
        c.linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default)
    }

    fn config() -> ContainerConfig {
        let mut c = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            command: vec!["/bin/app".into()],
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        };
        sc_mut(&mut c).namespace_options = Some(NamespaceOption {
            pid: NamespaceMode::Container as i32,
            ..Default::default()
        });
        c
    }

    fn image() -> oci_spec::image::Config {
        oci_spec::image::Config::default()
    }

    struct Gen<'a> {
        fx: &'a Fixture,
        config: ContainerConfig,
        image: oci_spec::image::Config,
        sandbox: SandboxView,
        host: HostLimits,
        os: FakeHost,
        target: Option<PathBuf>,
    }

    impl<'a> Gen<'a> {
        fn new(fx: &'a Fixture) -> Self {
            Gen {
                fx,
                config: config(),
                image: image(),
                sandbox: sandbox(),
                host: HostLimits::default(),
                os: fake_host(),
                target: None,
            }
        }
        fn run(&self) -> Result<Spec, SpecError> {
            let rootfs = self.fx.rootfs();
            let input = SpecInput {
                id: "c1",
                config: &self.config,
                image: &self.image,
                rootfs: &rootfs,
                sandbox: &self.sandbox,
                cgroups_path: "/kubepods/pod1/c1".into(),
                target_pid_ns: self.target.clone(),
                host: &self.host,
            };
            generate_on(&input, &self.os)
        }
    }

    fn field_of(r: Result<Spec, SpecError>) -> String {
        match r {
            Err(SpecError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    fn process(s: &Spec) -> &Process {
        s.process().as_ref().unwrap()
    }
    fn linux(s: &Spec) -> &Linux {
        s.linux().as_ref().unwrap()
    }
    fn bounding(s: &Spec) -> Capabilities {
        process(s)
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .clone()
            .unwrap()
    }
    fn mount<'s>(s: &'s Spec, dest: &str) -> Option<&'s Mount> {
        s.mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new(dest))
    }
    fn opts(m: &Mount) -> Vec<String> {
        m.options().clone().unwrap_or_default()
    }

    #[test]
    fn command_args_matrix() {
        let img = |ep: &[&str], cmd: &[&str]| {
            let mut b = ConfigBuilder::default();
            if !ep.is_empty() {
                b = b.entrypoint(ep.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            }
            if !cmd.is_empty() {
                b = b.cmd(cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            }
            b.build().unwrap()
        };
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // (image entrypoint, image cmd, CRI command, CRI args, expected)
        type Case<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            Option<&'a [&'a str]>,
        );
        let cases: &[Case] = &[
            (&["/ep"], &["c1"], &[], &[], Some(&["/ep", "c1"])),
            (&["/ep"], &["c1"], &[], &["a"], Some(&["/ep", "a"])),
            (&["/ep"], &["c1"], &["/x"], &[], Some(&["/x"])),
            (
                &["/ep"],
                &["c1"],
                &["/x"],
                &["a", "b"],
                Some(&["/x", "a", "b"]),
            ),
            (&[], &["c1", "c2"], &[], &[], Some(&["c1", "c2"])),
            (&[], &["c1"], &[], &["a"], Some(&["a"])),
            (&["/ep"], &[], &[], &[], Some(&["/ep"])),
            (&[], &[], &["/x"], &[], Some(&["/x"])),
            (&[], &[], &[], &["a"], Some(&["a"])),
            (&[], &[], &[], &[], None),
        ];
        for (ep, cmd, command, args, want) in cases {
            let c = ContainerConfig {
                command: v(command),
                args: v(args),
                ..Default::default()
            };
            let got = process_args(&c, &img(ep, cmd));
            match want {
                Some(w) => assert_eq!(got.unwrap(), v(w), "{ep:?} {cmd:?} {command:?} {args:?}"),
                None => match got {
                    Err(SpecError::InvalidArgument { field, reason }) => {
                        assert_eq!(field, "config.command");
                        assert!(reason.contains("no command specified"));
                    }
                    other => panic!("{other:?}"),
                },
            }
        }
        let c = ContainerConfig {
            command: v(&["/x", "a\0b"]),
            ..Default::default()
        };
        assert!(process_args(&c, &image()).is_err());
    }

    fn kv(k: &str, v: &[u8]) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: v.to_vec(),
        }
    }

    #[test]
    fn env_merge_and_validation() {
        let image_env = vec!["PATH=/img/bin".to_string(), "A=1".into(), "B=2".into()];
        let env = build_env(&image_env, "pod-a", &[kv("A", b"x"), kv("C", b"y=z")]).unwrap();
        assert_eq!(
            env,
            ["PATH=/img/bin", "HOSTNAME=pod-a", "A=x", "B=2", "C=y=z"]
        );
        // default PATH, image may override HOSTNAME, CRI overrides everything
        let env = build_env(&["HOSTNAME=img".into()], "pod-a", &[]).unwrap();
        assert_eq!(env, [DEFAULT_PATH_ENV, "HOSTNAME=img"]);
        let env = build_env(&[], "h", &[kv("PATH", b"/p"), kv("HOSTNAME", b"x")]).unwrap();
        assert_eq!(env, ["PATH=/p", "HOSTNAME=x"]);
        // newlines in values are fine (we never write them into /etc/passwd)
        assert!(build_env(&[], "h", &[kv("M", b"a\nb")]).is_ok());
        let bad: &[(KeyValue, &str)] = &[
            (kv("A=B", b"1"), "config.envs[1].key"),
            (kv("", b"1"), "config.envs[1].key"),
            (kv("A\0", b"1"), "config.envs[1].key"),
            (kv("A", b"a\0b"), "config.envs[1].value"),
            (kv("A", &[0xff, 0xfe]), "config.envs[1].value"),
        ];
        for (bad, want) in bad {
            match build_env(&[], "h", &[kv("OK", b"1"), bad.clone()]) {
                Err(SpecError::InvalidArgument { field, .. }) => assert_eq!(&field, want),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn image_env_without_value_unsets() {
        let env = build_env(
            &["A=1".into(), "PATH".into(), "A".into(), "B=2".into()],
            "h",
            &[],
        )
        .unwrap();
        assert_eq!(env, ["HOSTNAME=h", "B=2"]);
    }

    #[test]
    fn host_limits_detect_is_sane() {
        let h = HostLimits::detect();
        assert!((-1000..=1000).contains(&h.min_oom_score_adj));
        assert_eq!(h.pids_limit, 0);
        assert_eq!(HostLimits::default().nofile_hard, DEFAULT_NOFILE);
    }

    #[test]
    fn hostname_env_falls_back_to_node() {
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        g.sandbox.hostname.clear();
        let s = g.run().unwrap();
        let env = process(&s).env().clone().unwrap();
        assert!(env.contains(&"HOSTNAME=node1".to_string()), "{env:?}");
    }

    #[test]
    fn working_dir_rules() {
        let fx = Fixture::new();
        std::os::unix::fs::symlink("/proc/self/fd/7", fx.rootfs().join("sneaky")).unwrap();
        std::os::unix::fs::symlink("/srv", fx.rootfs().join("srvlink")).unwrap();
        let wd = |cri: &str, img: Option<&str>| {
            let c = ContainerConfig {
                working_dir: cri.into(),
                ..Default::default()
            };
            let mut b = ConfigBuilder::default();
            if let Some(i) = img {
                b = b.working_dir(i.to_string());
            }
            working_dir(&c, &b.build().unwrap(), &fx.rootfs())
        };
        assert_eq!(wd("", None).unwrap(), "/");
        assert_eq!(wd("", Some("/app")).unwrap(), "/app");
        assert_eq!(wd("/work//x/.", Some("/app")).unwrap(), "/work/x");
        assert_eq!(wd("/srvlink/data", None).unwrap(), "/srvlink/data");
        let bad: &[(&str, Option<&str>, &str)] = &[
            ("relative", None, "config.working_dir"),
            ("/a/../b", None, "config.working_dir"),
            ("/proc/self/fd/7", None, "config.working_dir"),
            ("/proc/1/fd/3", None, "config.working_dir"),
            ("/proc/thread-self/cwd", None, "config.working_dir"),
            ("/sneaky", None, "config.working_dir"),
            ("/sneaky/x", None, "config.working_dir"),
            ("", Some("app"), "image.config.WorkingDir"),
            ("", Some("/proc/self/fd/9"), "image.config.WorkingDir"),
        ];
        for (cri, img, want) in bad {
            match wd(cri, *img) {
                Err(SpecError::InvalidArgument { field, .. }) => {
                    assert_eq!(&field, want, "{cri:?}")
                }
                other => panic!("{cri:?} {img:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn user_from_security_context_and_image() {
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        g.image = ConfigBuilder::default()
            .user("app".to_string())
            .build()
            .unwrap();
        let s = g.run().unwrap();
        let u = process(&s).user();
        assert_eq!((u.uid(), u.gid()), (1000, 1000));
        assert_eq!(u.additional_gids().clone().unwrap(), [1000, 10]);
        let r = user::ResolvedUser::from_spec(&s).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 1000));

        sc_mut(&mut g.config).run_as_user = Some(Int64Value { value: 0 });
        sc_mut(&mut g.config).supplemental_groups = vec![2000];
        let s = g.run().unwrap();
        let u = process(&s).user();
        assert_eq!((u.uid(), u.gid()), (0, 0));
        assert_eq!(u.additional_gids().clone().unwrap(), [0, 2000]);

        sc_mut(&mut g.config).run_as_username = "nobody".into();
        assert_eq!(
            field_of(g.run()),
            "config.linux.security_context.run_as_username"
        );
    }

    fn cri_caps(add: &[&str], drop: &[&str], ambient: &[&str]) -> ContainerConfig {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        let mut c = config();
        sc_mut(&mut c).capabilities = Some(CriCapability {
            add_capabilities: v(add),
            drop_capabilities: v(drop),
            add_ambient_capabilities: v(ambient),
        });
        c
    }

    #[test]
    fn capabilities_matrix() {
        use Capability::*;
        let fx = Fixture::new();
        let all: Capabilities = fake_host().all_capabilities();
        let default: Capabilities = DEFAULT_CAPABILITIES.iter().copied().collect();
        let with = |base: &Capabilities, add: &[Capability], rm: &[Capability]| {
            let mut s = base.clone();
            s.extend(add.iter().copied());
            for r in rm {
                s.remove(r);
            }
            s
        };
        let cases: Vec<(ContainerConfig, Capabilities)> = vec![
            (config(), default.clone()),
            (
                cri_caps(&["NET_ADMIN"], &[], &[]),
                with(&default, &[NetAdmin], &[]),
            ),
            (
                cri_caps(&["cap_sys_time"], &[], &[]),
                with(&default, &[SysTime], &[]),
            ),
            (
                cri_caps(&["Sys_Ptrace"], &["CHOWN", "cap_kill"], &[]),
                with(&default, &[SysPtrace], &[Chown, Kill]),
            ),
            (cri_caps(&["ALL"], &[], &[]), all.clone()),
            (
                cri_caps(&["all"], &["NET_RAW"], &[]),
                with(&all, &[], &[NetRaw]),
            ),
            (cri_caps(&[], &["ALL"], &[]), Capabilities::new()),
            (
                cri_caps(&["NET_BIND_SERVICE"], &["ALL"], &[]),
                [NetBindService].into(),
            ),
            (cri_caps(&["ALL"], &["ALL"], &[]), Capabilities::new()),
            (
                cri_caps(&["NET_ADMIN"], &["NET_ADMIN"], &[]),
                default.clone(),
            ),
        ];
        for (c, want) in cases {
            let mut g = Gen::new(&fx);
            g.config = c.clone();
            let s = g.run().unwrap();
            let caps = process(&s).capabilities().clone().unwrap();
            assert_eq!(caps.bounding().clone().unwrap(), want, "{:?}", c.linux);
            assert_eq!(caps.effective().clone().unwrap(), want);
            assert_eq!(caps.permitted().clone().unwrap(), want);
            assert!(caps.inheritable().clone().unwrap().is_empty());
            assert!(caps.ambient().clone().unwrap().is_empty());
        }

        // ambient: in every set
        let mut g = Gen::new(&fx);
        g.config = cri_caps(&[], &[], &["NET_ADMIN"]);
        let s = g.run().unwrap();
        let caps = process(&s).capabilities().clone().unwrap();
        let one: Capabilities = [NetAdmin].into();
        assert_eq!(caps.ambient().clone().unwrap(), one);
        assert_eq!(caps.inheritable().clone().unwrap(), one);
        assert!(caps.bounding().clone().unwrap().contains(&NetAdmin));

        // unknown names name their index
        for (c, want) in [
            (
                cri_caps(&["CHOWN", "NET_ADMIN", "BOGUS"], &[], &[]),
                "add_capabilities[2]",
            ),
            (
                cri_caps(&[], &["CAP_CAP_CHOWN"], &[]),
                "drop_capabilities[0]",
            ),
            (cri_caps(&[], &[], &["ALL"]), "add_ambient_capabilities[0]"),
        ] {
            let mut g = Gen::new(&fx);
            g.config = c;
            assert_eq!(
                field_of(g.run()),
                format!("config.linux.security_context.capabilities.{want}")
            );
        }
    }

    #[test]
    fn masked_and_readonly_paths_defaults_given_privileged() {
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        let s = g.run().unwrap();
        assert_eq!(
            linux(&s).masked_paths().clone().unwrap(),
            DEFAULT_MASKED_PATHS
        );
        assert_eq!(
            linux(&s).readonly_paths().clone().unwrap(),
            DEFAULT_READONLY_PATHS
        );

        sc_mut(&mut g.config).masked_paths = vec!["/proc/kcore".into()];
        sc_mut(&mut g.config).readonly_paths = vec!["/proc/sys".into(), "/proc//bus".into()];
        let s = g.run().unwrap();
        assert_eq!(linux(&s).masked_paths().clone().unwrap(), ["/proc/kcore"]);
        assert_eq!(
            linux(&s).readonly_paths().clone().unwrap(),
            ["/proc/sys", "/proc/bus"]
        );

        sc_mut(&mut g.config).masked_paths = vec!["/ok".into(), "proc/x".into()];
        assert_eq!(
            field_of(g.run()),
            "config.linux.security_context.masked_paths[1]"
        );

        sc_mut(&mut g.config).masked_paths.clear();
        sc_mut(&mut g.config).privileged = true;
        g.sandbox.privileged = true;
        let s = g.run().unwrap();
        assert!(linux(&s).masked_paths().is_none());
        assert!(linux(&s).readonly_paths().is_none());
    }

    #[test]
    fn privileged_needs_privileged_sandbox() {
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        sc_mut(&mut g.config).privileged = true;
        match g.run() {
            Err(SpecError::InvalidArgument { field, reason }) => {
                assert_eq!(field, "config.linux.security_context.privileged");
                assert!(reason.contains("no privileged container allowed in sandbox"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn privileged_container_shape() {
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        g.sandbox.privileged = true;
        sc_mut(&mut g.config).privileged = true;
        sc_mut(&mut g.config).seccomp = Some(crate::api::SecurityProfile {
            profile_type: 0,
            localhost_ref: String::new(),
        });
        let s = g.run().unwrap();
        assert_eq!(bounding(&s), fake_host().all_capabilities());
        assert!(linux(&s).seccomp().is_none());
        assert!(opts(mount(&s, "/sys").unwrap()).contains(&"rw".to_string()));
        assert!(opts(mount(&s, "/sys/fs/cgroup").unwrap()).contains(&"rw".to_string()));
        let rules = linux(&s)
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow());
        assert_eq!(rules[0].access().as_deref(), Some("rwm"));
        assert_eq!(rules[0].typ(), None);
        let devs = linux(&s).devices().clone().unwrap();
        assert_eq!(devs[0].path(), Path::new("/dev/fake0"));
        // no cgroup namespace for privileged containers
        assert!(!linux(&s)
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Cgroup));
    }

    #[test]
    fn unprivileged_defaults() {
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        g.config.tty = true;
        g.config.annotations.insert("user.anno".into(), "v".into());
        g.config
            .annotations
            .insert(ANNOTATION_SANDBOX_ID.into(), "spoofed".into());
        let s = g.run().unwrap();
        assert_eq!(s.version(), "1.0.2");
        assert!(s.hostname().is_none());
        let root = s.root().as_ref().unwrap();
        assert_eq!(root.path(), &fx.rootfs());
        assert_eq!(root.readonly(), Some(false));
        let p = process(&s);
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.args().clone().unwrap(), ["/bin/app"]);
        assert_eq!(p.cwd(), Path::new("/"));
        assert_eq!(p.no_new_privileges(), Some(false));
        assert_eq!(p.oom_score_adj(), None);
        let rl = &p.rlimits().clone().unwrap()[0];
        assert_eq!(
            (rl.typ(), rl.soft(), rl.hard()),
            (PosixRlimitType::RlimitNofile, 1_048_576, 1_048_576)
        );
        let l = linux(&s);
        assert_eq!(
            l.cgroups_path().clone().unwrap(),
            Path::new("/kubepods/pod1/c1")
        );
        assert!(l.sysctl().is_none());
        assert!(l.rootfs_propagation().is_none());
        let rules = l.resources().as_ref().unwrap().devices().clone().unwrap();
        assert_eq!(rules, default_device_rules());
        assert!(!rules[0].allow());
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        assert!(rules.iter().any(|r| r.to_string() == "c 1:3 rwm"));
        assert!(rules.iter().any(|r| r.to_string() == "c 136:* rwm"));
        assert!(rules.iter().any(|r| r.to_string() == "b *:* m"));
        let a = s.annotations().clone().unwrap();
        assert_eq!(a["user.anno"], "v");
        assert_eq!(a[ANNOTATION_SANDBOX_ID], "sb1");
        assert_eq!(a[ANNOTATION_CONTAINER_TYPE], "container");
        assert_eq!(a[ANNOTATION_CONTAINER_NAME], "app");
        // seccomp: unset profile → unconfined (containerd); RuntimeDefault → default profile
        assert!(l.seccomp().is_none());
        sc_mut(&mut g.config).seccomp_profile_path_set("runtime/default");
        let s = g.run().unwrap();
        let sec = linux(&s).seccomp().clone().unwrap();
        let allowed: Vec<String> = sec
            .syscalls()
            .clone()
            .unwrap()
            .iter()
            .filter(|r| r.args().as_ref().is_none_or(|a| a.is_empty()))
            .flat_map(|r| r.names().clone())
            .collect();
        assert!(allowed.contains(&"read".to_string()));
        assert!(!allowed.contains(&"mount".to_string()));
        // the capability-dependent part follows the final capability set
        g.config = cri_caps(&["SYS_ADMIN"], &[], &[]);
        sc_mut(&mut g.config).seccomp_profile_path_set("runtime/default");
        let s = g.run().unwrap();
        let sec = linux(&s).seccomp().clone().unwrap();
        assert!(sec
            .syscalls()
            .clone()
            .unwrap()
            .iter()
            .any(|r| r.names().contains(&"mount".to_string())));
        // serializes to JSON runc can read
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["ociVersion"], "1.0.2");
        assert_eq!(json["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    }

    trait SetDeprecated {
        fn seccomp_profile_path_set(&mut self, v: &str);
    }
    impl SetDeprecated for LinuxContainerSecurityContext {
        #[allow(deprecated)]
        fn seccomp_profile_path_set(&mut self, v: &str) {
            self.seccomp_profile_path = v.to_string();
        }
    }

    #[test]
    fn readonly_rootfs_and_nnp() {
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        sc_mut(&mut g.config).readonly_rootfs = true;
        sc_mut(&mut g.config).no_new_privs = true;
        let s = g.run().unwrap();
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
        assert_eq!(process(&s).no_new_privileges(), Some(true));
        for f in ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"] {
            assert_eq!(
                opts(mount(&s, f).unwrap()),
                ["rbind", "rprivate", "ro"],
                "{f}"
            );
        }
        assert_eq!(
            opts(mount(&s, "/dev/shm").unwrap()),
            ["rbind", "rprivate", "rw"]
        );
    }

    fn cri_mount(container: &str, host: &Path, ro: bool, prop: MountPropagation) -> CriMount {
        CriMount {
            container_path: container.into(),
            host_path: host.display().to_string(),
            readonly: ro,
            propagation: prop as i32,
            ..Default::default()
        }
    }

    #[test]
    fn mounts_defaults_overrides_and_order() {
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        let s = g.run().unwrap();
        let dests: Vec<_> = s
            .mounts()
            .clone()
            .unwrap()
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/sys",
                "/dev/pts",
                "/dev/mqueue",
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf",
                "/dev/shm",
                "/sys/fs/cgroup"
            ]
        );
        let shm = mount(&s, "/dev/shm").unwrap();
        assert_eq!(shm.typ().as_deref(), Some("bind"));
        assert_eq!(
            shm.source().clone().unwrap(),
            Path::new("/run/peapod/sb1/shm")
        );
        assert_eq!(
            opts(mount(&s, "/sys").unwrap()),
            ["nosuid", "noexec", "nodev", "ro"]
        );
        assert_eq!(
            opts(mount(&s, "/dev/pts").unwrap()),
            [
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5"
            ]
        );

        // No sandbox shm → private tmpfs; no hosts files → no binds.
        g.sandbox.shm = None;
        g.sandbox.hostname_file = None;
        g.sandbox.hosts_file = None;
        g.sandbox.resolv_conf = None;
        let s = g.run().unwrap();
        assert_eq!(
            mount(&s, "/dev/shm").unwrap().typ().as_deref(),
            Some("tmpfs")
        );
        assert!(mount(&s, "/etc/hosts").is_none());

        // CRI mounts: override sandbox and default mounts, nested ones sorted after parents.
        let mut g = Gen::new(&fx);
        g.config.mounts = vec![
            cri_mount(
                "/data/sub",
                &fx.host("sub"),
                false,
                MountPropagation::PropagationPrivate,
            ),
            cri_mount(
                "/etc/hosts",
                &fx.host("myhosts"),
                true,
                MountPropagation::PropagationPrivate,
            ),
            cri_mount(
                "/data",
                &fx.host("data"),
                false,
                MountPropagation::PropagationPrivate,
            ),
            cri_mount(
                "/sys",
                &fx.host("sys"),
                true,
                MountPropagation::PropagationPrivate,
            ),
        ];
        let s = g.run().unwrap();
        let ms = s.mounts().clone().unwrap();
        let pos = |d: &str| {
            ms.iter()
                .position(|m| m.destination() == Path::new(d))
                .unwrap()
        };
        assert!(pos("/data") < pos("/data/sub"));
        assert!(pos("/sys") < pos("/sys/fs/cgroup"));
        assert_eq!(
            ms.iter()
                .filter(|m| m.destination() == Path::new("/etc/hosts"))
                .count(),
            1
        );
        let hosts = mount(&s, "/etc/hosts").unwrap();
        assert_eq!(hosts.source().clone().unwrap(), fx.host("myhosts"));
        assert_eq!(opts(hosts), ["rbind", "rprivate", "ro"]);
        let sys = mount(&s, "/sys").unwrap();
        assert_eq!(sys.typ().as_deref(), Some("bind"));
        // missing host paths were created as directories
        assert!(fx.host("data").is_dir() && fx.host("sub").is_dir());
        assert_eq!(
            opts(mount(&s, "/data").unwrap()),
            ["rbind", "rprivate", "rw"]
        );
        assert!(ms.iter().all(|m| depth(m.destination()) >= 1));
        for w in ms.windows(2) {
            assert!(depth(w[0].destination()) <= depth(w[1].destination()));
        }

        // A /dev mount drops every default under /dev/ (but keeps sandbox /dev/shm).
        g.config.mounts = vec![cri_mount(
            "/dev",
            &fx.host("dev"),
            false,
            MountPropagation::PropagationPrivate,
        )];
        let s = g.run().unwrap();
        assert!(mount(&s, "/dev/pts").is_none());
        assert!(mount(&s, "/dev/mqueue").is_none());
        assert_eq!(mount(&s, "/dev").unwrap().typ().as_deref(), Some("bind"));
        assert_eq!(
            mount(&s, "/dev/shm").unwrap().typ().as_deref(),
            Some("bind")
        );

        // A file host path is bound as a file (not replaced by a directory).
        std::fs::write(fx.host("file.conf"), "x").unwrap();
        g.config.mounts = vec![cri_mount(
            "/etc/app.conf",
            &fx.host("file.conf"),
            true,
            MountPropagation::PropagationPrivate,
        )];
        let s = g.run().unwrap();
        assert!(mount(&s, "/etc/app.conf").is_some());
        assert!(fx.host("file.conf").is_file());
    }

    #[test]
    fn mount_propagation() {
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        g.config.mounts = vec![cri_mount(
            "/a",
            &fx.host("a"),
            false,
            MountPropagation::PropagationHostToContainer,
        )];
        let s = g.run().unwrap();
        assert_eq!(opts(mount(&s, "/a").unwrap()), ["rbind", "rslave", "rw"]);
        assert_eq!(linux(&s).rootfs_propagation().as_deref(), Some("rslave"));

        g.config.mounts.push(cri_mount(
            "/b",
            &fx.host("b"),
            false,
            MountPropagation::PropagationBidirectional,
        ));
        let s = g.run().unwrap();
        assert_eq!(opts(mount(&s, "/b").unwrap()), ["rbind", "rshared", "rw"]);
        assert_eq!(linux(&s).rootfs_propagation().as_deref(), Some("rshared"));
        // order does not matter: rshared wins over rslave
        g.config.mounts.reverse();
        let s = g.run().unwrap();
        assert_eq!(linux(&s).rootfs_propagation().as_deref(), Some("rshared"));

        // The source must be on a shared (bidirectional) / shared-or-slave mount.
        g.os.mountinfo = "22 1 8:1 / / rw,relatime master:3 - ext4 /dev/sda1 rw\n".into();
        match g.run() {
            Err(SpecError::FailedPrecondition { field, .. }) => {
                assert_eq!(field, "config.mounts[0].propagation")
            }
            other => panic!("{other:?}"),
        }
        g.config.mounts.truncate(1); // only the host-to-container mount ("/b" after reverse)
        g.config.mounts[0].propagation = MountPropagation::PropagationHostToContainer as i32;
        assert!(g.run().is_ok());
        g.os.mountinfo = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n".into();
        assert!(matches!(g.run(), Err(SpecError::FailedPrecondition { .. })));
    }

    #[test]
    fn mount_validation() {
        let fx = Fixture::new();
        let ok = fx.host("ok");
        let cases: Vec<(CriMount, &str)> = vec![
            (
                cri_mount("relative", &ok, false, MountPropagation::PropagationPrivate),
                "config.mounts[0].container_path",
            ),
            (
                cri_mount(
                    "/a/../../etc",
                    &ok,
                    false,
                    MountPropagation::PropagationPrivate,
                ),
                "config.mounts[0].container_path",
            ),
            (
                cri_mount("", &ok, false, MountPropagation::PropagationPrivate),
                "config.mounts[0].container_path",
            ),
            (
                cri_mount(
                    "/x",
                    Path::new("rel/dir"),
                    false,
                    MountPropagation::PropagationPrivate,
                ),
                "config.mounts[0].host_path",
            ),
            (
                cri_mount(
                    "/x",
                    Path::new(""),
                    false,
                    MountPropagation::PropagationPrivate,
                ),
                "config.mounts[0].host_path",
            ),
            (
                CriMount {
                    propagation: 7,
                    ..cri_mount("/x", &ok, false, MountPropagation::PropagationPrivate)
                },
                "config.mounts[0].propagation",
            ),
            (
                CriMount {
                    recursive_read_only: true,
                    ..cri_mount("/x", &ok, false, MountPropagation::PropagationPrivate)
                },
                "config.mounts[0].recursive_read_only",
            ),
            (
                CriMount {
                    mount_options: vec!["nosuid".into(), "suid".into()],
                    ..cri_mount("/x", &ok, false, MountPropagation::PropagationPrivate)
                },
                "config.mounts[0].mount_options[1]",
            ),
            (
                CriMount {
                    image: Some(Default::default()),
                    ..cri_mount(
                        "/x",
                        Path::new(""),
                        true,
                        MountPropagation::PropagationPrivate,
                    )
                },
                "config.mounts[0].image",
            ),
        ];
        for (m, want) in cases {
            let mut g = Gen::new(&fx);
            g.config.mounts = vec![m.clone()];
            assert_eq!(field_of(g.run()), want, "{m:?}");
        }
        // Mounts at or into /proc, also through the image's symlinks, are refused whatever
        // the runtime (runc refuses them too; crun does not).
        std::fs::create_dir_all(fx.rootfs()).unwrap();
        std::os::unix::fs::symlink("/proc", fx.rootfs().join("p")).unwrap();
        std::os::unix::fs::symlink("../../proc/sys/kernel", fx.rootfs().join("kr")).unwrap();
        std::os::unix::fs::symlink("/sys", fx.rootfs().join("s")).unwrap();
        for dest in [
            "/proc",
            "/proc/sys/kernel/core_pattern",
            "/p",
            "/kr/core_pattern",
        ] {
            let mut g = Gen::new(&fx);
            g.config.mounts = vec![cri_mount(
                dest,
                &ok,
                false,
                MountPropagation::PropagationPrivate,
            )];
            assert_eq!(
                field_of(g.run()),
                "config.mounts[0].container_path",
                "{dest}"
            );
        }
        for dest in ["/s", "/sys", "/procfs", "/data/proc"] {
            let mut g = Gen::new(&fx);
            g.config.mounts = vec![cri_mount(
                dest,
                &ok,
                false,
                MountPropagation::PropagationPrivate,
            )];
            assert!(g.run().is_ok(), "{dest} is not /proc");
        }
        // A bad mount (or any other invalid field) leaves no host directory behind.
        let mut g = Gen::new(&fx);
        g.config.mounts = vec![
            cri_mount(
                "/a",
                &fx.host("never-a"),
                false,
                MountPropagation::PropagationPrivate,
            ),
            cri_mount(
                "b",
                &fx.host("never-b"),
                false,
                MountPropagation::PropagationPrivate,
            ),
        ];
        assert_eq!(field_of(g.run()), "config.mounts[1].container_path");
        g.config.mounts.truncate(1);
        g.sandbox.sysctls = [("kernel.core_pattern".to_string(), "x".to_string())].into();
        assert!(g.run().is_err());
        assert!(!fx.host("never-a").exists());
        // The same destination twice is refused.
        let mut g = Gen::new(&fx);
        g.config.mounts = vec![
            cri_mount("/a", &ok, false, MountPropagation::PropagationPrivate),
            cri_mount("/a/", &ok, true, MountPropagation::PropagationPrivate),
        ];
        assert_eq!(field_of(g.run()), "config.mounts[1].container_path");
        // rro and extra options
        let mut g = Gen::new(&fx);
        g.config.mounts = vec![CriMount {
            recursive_read_only: true,
            mount_options: vec!["noexec".into()],
            ..cri_mount("/x/./y/", &ok, true, MountPropagation::PropagationPrivate)
        }];
        let s = g.run().unwrap();
        assert_eq!(
            opts(mount(&s, "/x/y").unwrap()),
            ["rbind", "rprivate", "rro", "noexec"]
        );
    }

    #[test]
    fn devices() {
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        if !Path::new("/dev/null").exists() {
            return;
        }
        g.config.devices = vec![Device {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }];
        let s = g.run().unwrap();
        let devs = linux(&s).devices().clone().unwrap();
        assert_eq!(devs.len(), 1);
        let d = &devs[0];
        assert_eq!(d.path(), Path::new("/dev/mynull"));
        assert_eq!((d.typ(), d.major(), d.minor()), (LinuxDeviceType::C, 1, 3));
        assert!(d.file_mode().is_some());
        let rules = linux(&s)
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert_eq!(rules.last().unwrap().to_string(), "c 1:3 rw");
        assert!(rules.last().unwrap().allow());

        // a directory: every device below it (none in a directory of plain files)
        std::fs::write(fx.host("plain"), "x").unwrap();
        assert!(
            devices_under(&fx.dir.join("host"), Some(Path::new("/dev/x")))
                .unwrap()
                .is_empty()
        );

        for (dev, want) in [
            (
                Device {
                    container_path: "dev/x".into(),
                    host_path: "/dev/null".into(),
                    permissions: "rwm".into(),
                },
                "config.devices[0].container_path",
            ),
            (
                Device {
                    container_path: "/dev/x".into(),
                    host_path: "dev/null".into(),
                    permissions: "rwm".into(),
                },
                "config.devices[0].host_path",
            ),
            (
                Device {
                    container_path: "/dev/x".into(),
                    host_path: "/dev/null".into(),
                    permissions: "rwx".into(),
                },
                "config.devices[0].permissions",
            ),
            (
                Device {
                    container_path: "/dev/x".into(),
                    host_path: fx.host("plain").display().to_string(),
                    permissions: "r".into(),
                },
                "config.devices[0].host_path",
            ),
        ] {
            g.config.devices = vec![dev];
            assert_eq!(field_of(g.run()), want);
        }
        g.config.devices = vec![Device {
            container_path: "/dev/x".into(),
            host_path: fx.host("missing").display().to_string(),
            permissions: String::new(),
        }];
        assert!(matches!(g.run(), Err(SpecError::NotFound { .. })));
    }

    #[test]
    fn resources_translation() {
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        g.host.pids_limit = 4096;
        g.config.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 256 << 20,
            memory_swap_limit_in_bytes: 512 << 20,
            oom_score_adj: 500,
            cpuset_cpus: "0-1,3".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 1 << 30,
            }],
            unified: [("memory.high".to_string(), "1000000".to_string())].into(),
        });
        let s = g.run().unwrap();
        let r = linux(&s).resources().clone().unwrap();
        let cpu = r.cpu().clone().unwrap();
        assert_eq!(
            (cpu.period(), cpu.quota(), cpu.shares()),
            (Some(100_000), Some(50_000), Some(512))
        );
        assert_eq!(cpu.cpus().as_deref(), Some("0-1,3"));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        let mem = r.memory().unwrap();
        assert_eq!(
            (mem.limit(), mem.swap()),
            (Some(256 << 20), Some(512 << 20))
        );
        assert_eq!(r.hugepage_limits().clone().unwrap()[0].page_size(), "2MB");
        assert_eq!(r.unified().clone().unwrap()["memory.high"], "1000000");
        assert_eq!(r.pids().unwrap().limit(), 4096);
        assert_eq!(process(&s).oom_score_adj(), Some(500));

        // nothing set → no cpu/memory sections, no pids
        let g2 = Gen::new(&fx);
        let s = g2.run().unwrap();
        let r = linux(&s).resources().clone().unwrap();
        assert!(r.cpu().is_none() && r.memory().is_none() && r.pids().is_none());

        let bad = |f: &dyn Fn(&mut LinuxContainerResources), want: &str| {
            let mut g = Gen::new(&fx);
            let mut res = LinuxContainerResources::default();
            f(&mut res);
            g.config.linux.as_mut().unwrap().resources = Some(res);
            assert_eq!(field_of(g.run()), format!("config.linux.resources.{want}"));
        };
        bad(&|r| r.cpu_shares = -1, "cpu_shares");
        bad(&|r| r.memory_limit_in_bytes = -5, "memory_limit_in_bytes");
        bad(&|r| r.cpuset_cpus = "0;rm".into(), "cpuset_cpus");
        bad(&|r| r.oom_score_adj = 1001, "oom_score_adj");
        bad(
            &|r| {
                r.hugepage_limits = vec![HugepageLimit {
                    page_size: "2XB".into(),
                    limit: 1,
                }]
            },
            "hugepage_limits[0]",
        );
        bad(
            &|r| r.unified = [("../x".to_string(), "1".to_string())].into(),
            "unified[../x]",
        );
    }

    #[test]
    fn oom_score_adj_clamped() {
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        g.host.min_oom_score_adj = -500;
        let cases = [(-998, -500), (-500, -500), (-100, -100), (1000, 1000)];
        for (req, want) in cases {
            g.config.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
                oom_score_adj: req,
                ..Default::default()
            });
            let s = g.run().unwrap();
            assert_eq!(process(&s).oom_score_adj(), Some(want), "{req}");
        }
    }

    #[test]
    fn nofile_clamped_to_host() {
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        g.host.nofile_hard = 65536;
        let s = g.run().unwrap();
        let rl = process(&s).rlimits().clone().unwrap()[0];
        assert_eq!((rl.soft(), rl.hard()), (65536, 65536));
        g.host.nofile_hard = 0; // unknown: no clamp
        let s = g.run().unwrap();
        assert_eq!(
            process(&s).rlimits().clone().unwrap()[0].hard(),
            DEFAULT_NOFILE
        );
    }

    fn ns_of(s: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        linux(s)
            .namespaces()
            .clone()
            .unwrap()
            .iter()
            .map(|n| (n.typ(), n.path().clone()))
            .collect()
    }

    #[test]
    fn namespaces_by_mode() {
        use LinuxNamespaceType::*;
        let fx = Fixture::new();
        let set_pid = |g: &mut Gen, mode: i32| {
            sc_mut(&mut g.config).namespace_options = Some(NamespaceOption {
                pid: mode,
                ..Default::default()
            });
        };
        let mut g = Gen::new(&fx);
        let base = vec![
            (Mount, None),
            (Network, Some("/run/netns/sb1".into())),
            (Ipc, Some("/proc/10/ns/ipc".into())),
            (Uts, Some("/proc/10/ns/uts".into())),
        ];
        let with = |extra: &[(LinuxNamespaceType, Option<PathBuf>)]| {
            let mut v = base.clone();
            v.extend(extra.iter().cloned());
            v.push((Cgroup, None));
            v
        };
        set_pid(&mut g, NamespaceMode::Container as i32);
        assert_eq!(ns_of(&g.run().unwrap()), with(&[(Pid, None)]));
        set_pid(&mut g, NamespaceMode::Pod as i32);
        assert_eq!(
            ns_of(&g.run().unwrap()),
            with(&[(Pid, Some("/proc/10/ns/pid".into()))])
        );
        set_pid(&mut g, NamespaceMode::Node as i32);
        assert_eq!(ns_of(&g.run().unwrap()), with(&[]));
        set_pid(&mut g, NamespaceMode::Target as i32);
        assert_eq!(
            field_of(g.run()),
            "config.linux.security_context.namespace_options.target_id"
        );
        g.target = Some("/proc/77/ns/pid".into());
        assert_eq!(
            ns_of(&g.run().unwrap()),
            with(&[(Pid, Some("/proc/77/ns/pid".into()))])
        );
        set_pid(&mut g, 9);
        assert_eq!(
            field_of(g.run()),
            "config.linux.security_context.namespace_options.pid"
        );
        // POD mode without a pod PID namespace
        set_pid(&mut g, NamespaceMode::Pod as i32);
        g.sandbox.pid_ns = None;
        assert_eq!(
            field_of(g.run()),
            "config.linux.security_context.namespace_options.pid"
        );
        // no namespace options at all = POD
        sc_mut(&mut g.config).namespace_options = None;
        g.sandbox.pid_ns = Some("/proc/10/ns/pid".into());
        assert!(ns_of(&g.run().unwrap()).contains(&(Pid, Some("/proc/10/ns/pid".into()))));
        // host network/IPC/UTS: no entries; cgroup v1: no cgroup namespace
        g.sandbox.net_ns = None;
        g.sandbox.ipc_ns = None;
        g.sandbox.uts_ns = None;
        g.os.v2 = false;
        assert_eq!(
            ns_of(&g.run().unwrap()),
            vec![(Mount, None), (Pid, Some("/proc/10/ns/pid".into()))]
        );
    }

    fn sysctls(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sysctl_validation() {
        let ok = sysctls(&[
            ("net.ipv4.ip_forward", "1"),
            ("net/ipv4/ping_group_range", "0 2147483647"),
            ("kernel.shm_rmid_forced", "1"),
            ("kernel.msgmax", "65536"),
            ("kernel.sem", "250 32000 100 128"),
            ("fs.mqueue.msg_max", "10"),
        ]);
        validate_sysctls(&ok, false, false).unwrap();
        let cases: &[(&str, &str, bool, bool)] = &[
            // CVE-2022-0811 style injection
            (
                "kernel.shm_rmid_forced",
                "1+kernel.core_pattern=|/evil",
                false,
                false,
            ),
            (
                "net.ipv4.ip_forward",
                "1\nkernel.core_pattern=|/evil",
                false,
                false,
            ),
            ("net.ipv4.ip_forward", "1\0", false, false),
            ("net.ipv4.ip_forward", "a=b", false, false),
            // not namespaced
            ("kernel.core_pattern", "|/evil", false, false),
            ("vm.overcommit_memory", "1", false, false),
            // malformed keys
            ("net.ipv4..conf", "1", false, false),
            ("net.ipv4.conf.all.rp_filter=1+x", "1", false, false),
            ("net.ipv4 x", "1", false, false),
            ("net/../../etc", "1", false, false),
            ("", "1", false, false),
            // namespace shared with the host
            ("net.ipv4.ip_forward", "1", true, false),
            ("kernel.shmmax", "1", false, true),
            ("fs.mqueue.msg_max", "1", false, true),
        ];
        for (k, v, hn, hi) in cases {
            match validate_sysctls(&sysctls(&[(k, v)]), *hn, *hi) {
                Err(SpecError::InvalidArgument { field, .. }) => {
                    assert_eq!(field, format!("config.linux.sysctls[{k}]"))
                }
                other => panic!("{k:?}={v:?} accepted: {other:?}"),
            }
        }
        // IPC sysctls are fine with host network, net ones with host IPC
        validate_sysctls(&sysctls(&[("kernel.shmmax", "1")]), true, false).unwrap();
        validate_sysctls(&sysctls(&[("net.core.somaxconn", "1")]), false, true).unwrap();
    }

    #[test]
    fn sysctls_in_spec() {
        assert_eq!(
            normalize_sysctl_key("net/ipv4/ip_forward"),
            "net.ipv4.ip_forward"
        );
        assert_eq!(
            normalize_sysctl_key("net/ipv4/conf/eth0.100/rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
        assert_eq!(
            normalize_sysctl_key("net.ipv4.conf.eth0/100.rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
        let fx = Fixture::new();
        let mut g = Gen::new(&fx);
        g.sandbox.sysctls = sysctls(&[("net/ipv4/ip_forward", "1"), ("kernel.shmmax", "100")]);
        let s = g.run().unwrap();
        let sc = linux(&s).sysctl().clone().unwrap();
        assert_eq!(sc["net.ipv4.ip_forward"], "1");
        assert_eq!(sc["kernel.shmmax"], "100");
        g.sandbox.net_ns = None;
        assert_eq!(
            field_of(g.run()),
            "config.linux.sysctls[net/ipv4/ip_forward]"
        );
    }

    #[test]
    fn mountinfo_parsing() {
        let info = "\
22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw
30 22 0:5 / /var/lib rw master:4 - tmpfs tmpfs rw
31 22 0:6 / /var/lib/with\\040space rw - tmpfs tmpfs rw
32 30 0:7 / /var/lib rw shared:9 master:4 - tmpfs tmpfs rw
";
        let f = |p: &str| mount_propagation_fields(info, Path::new(p)).unwrap();
        assert_eq!(f("/etc"), ["shared:1"]);
        assert_eq!(f("/var/lib/kubelet"), ["shared:9", "master:4"]);
        assert!(f("/var/lib/with space/x").is_empty());
        assert_eq!(f("/var/library"), ["shared:1"]);
        assert_eq!(unescape_mountinfo("a\\040b\\134c\\777"), "a b\\c\u{fffd}");
    }
}
