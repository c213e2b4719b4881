//! CRI requests and image configs through the OCI spec translation (`oci::spec::generate`,
//! and for a sandbox `pod::infra`): an error or a spec runc can take, never a panic.
//!
//! `generate` touches the host in a few places the request names, so every input is first
//! pointed inside a scratch directory: mount `host_path`s (a missing one is created as a
//! directory) are moved under `scratch/mounts/`, seccomp profile files (opened and read) are
//! replaced by one valid profile in the scratch directory, and device `host_path`s outside
//! `/dev` (a directory is walked) under `scratch/devices/`. The checks of those paths that
//! happen before any host access still see every shape of path, since a path is only moved
//! once it is absolute and clean.

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use bolero::TypeGenerator;
use oci_spec::runtime::Spec;
use peapod::api;
use peapod::oci::spec::{generate, HostLimits, SandboxView, SpecInput};
use prost::Message;

use crate::{Scratch, TEST_TIME};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\napp:x:1000:1000::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\napp:x:1000:\nwheel:x:10:app\n";
const PROFILE: &str = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],"syscalls":[{"names":["read","write","exit"],"action":"SCMP_ACT_ALLOW"}]}"#;

static DIR: OnceLock<Scratch> = OnceLock::new();

/// Statics are never dropped, so the scratch directory is removed when the process exits.
extern "C" fn remove_scratch() {
    if let Some(s) = DIR.get() {
        crate::force_remove(&s.0);
    }
}

/// The scratch directory of this test binary: a rootfs with passwd and group, a seccomp
/// profile, and the directories host paths are moved into. Lives as long as the process.
fn scratch() -> &'static Path {
    &DIR.get_or_init(|| {
        let s = Scratch::new("spec");
        // SAFETY: registers a plain function with no captured state, run once at exit.
        unsafe { libc::atexit(remove_scratch) };
        std::fs::create_dir_all(s.0.join("rootfs/etc")).unwrap();
        std::fs::create_dir_all(s.0.join("rootfs/home/app")).unwrap();
        std::fs::write(s.0.join("rootfs/etc/passwd"), PASSWD).unwrap();
        std::fs::write(s.0.join("rootfs/etc/group"), GROUP).unwrap();
        std::fs::write(s.0.join("seccomp.json"), PROFILE).unwrap();
        for f in ["hostname", "hosts", "resolv.conf"] {
            std::fs::write(s.0.join(f), "").unwrap();
        }
        std::fs::create_dir_all(s.0.join("shm")).unwrap();
        s
    })
    .0
}

/// `/a/b` → `<scratch>/<under>/a/b`, dropping `.`, `..` and the root so it cannot climb.
fn under(sub: &str, p: &str) -> String {
    let mut out = scratch().join(sub);
    for c in Path::new(p).components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out.to_string_lossy().into_owned()
}

fn contain_profile(p: &mut api::SecurityProfile) {
    let r = p
        .localhost_ref
        .strip_prefix("localhost/")
        .unwrap_or(&p.localhost_ref);
    if peapod::fsutil::is_clean_absolute(r) {
        p.localhost_ref = scratch()
            .join("seccomp.json")
            .to_string_lossy()
            .into_owned();
    }
}

fn contain_deprecated_profile(p: &mut String) {
    if let Some(r) = p.strip_prefix("localhost/") {
        if peapod::fsutil::is_clean_absolute(r) {
            *p = format!("localhost/{}", scratch().join("seccomp.json").display());
        }
    }
}

/// Points every host path of the request inside the scratch directory (see the module docs).
fn contain(c: &mut api::ContainerConfig) {
    for m in &mut c.mounts {
        if Path::new(&m.host_path).is_absolute() && !m.host_path.contains('\0') {
            m.host_path = under("mounts", &m.host_path);
        } else if !m.host_path.is_empty() {
            // A relative source would be created relative to the working directory.
            m.host_path = format!("mounts/{}", m.host_path.replace("..", "__"));
        }
    }
    for d in &mut c.devices {
        let in_dev = std::fs::canonicalize(&d.host_path).is_ok_and(|p| p.starts_with("/dev"));
        if Path::new(&d.host_path).is_absolute() && !d.host_path.contains('\0') && !in_dev {
            d.host_path = under("devices", &d.host_path);
        }
    }
    if let Some(sc) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
        if let Some(p) = sc.seccomp.as_mut() {
            contain_profile(p);
        }
        #[allow(deprecated)]
        contain_deprecated_profile(&mut sc.seccomp_profile_path);
    }
}

fn view(privileged: bool, sysctls: &[(String, String)]) -> SandboxView {
    let s = scratch();
    SandboxView {
        id: "0123456789abcdef".into(),
        hostname: "pod".into(),
        net_ns: Some("/run/peapod/sandboxes/x/ns/net".into()),
        ipc_ns: Some("/run/peapod/sandboxes/x/ns/ipc".into()),
        uts_ns: Some("/run/peapod/sandboxes/x/ns/uts".into()),
        pid_ns: Some("/proc/1/ns/pid".into()),
        hostname_file: Some(s.join("hostname")),
        hosts_file: Some(s.join("hosts")),
        resolv_conf: Some(s.join("resolv.conf")),
        shm: Some(s.join("shm")),
        sysctls: sysctls.iter().cloned().collect(),
        privileged,
    }
}

fn image_config() -> oci_spec::image::Config {
    serde_json::from_str(
        r#"{"User":"app","Env":["PATH=/usr/bin:/bin","LANG=C"],"Entrypoint":["/bin/sh"],"Cmd":["-c","sleep 1"],"WorkingDir":"/home/app"}"#,
    )
    .unwrap()
}

/// Runs the translation and checks what runc needs of a spec.
fn spec_of(config: &api::ContainerConfig, image: &oci_spec::image::Config, sb: &SandboxView) {
    let rootfs = scratch().join("rootfs");
    let host = HostLimits::default();
    let input = SpecInput {
        id: "fedcba9876543210",
        config,
        image,
        rootfs: &rootfs,
        sandbox: sb,
        cgroups_path: "/peapod/pod/fedcba9876543210".into(),
        target_pid_ns: Some("/proc/1/ns/pid".into()),
        host: &host,
    };
    if let Ok(spec) = generate(&input) {
        check_spec(&spec, &rootfs);
    }
}

fn no_nul(what: &str, s: &str) {
    assert!(!s.contains('\0'), "{what} has a NUL: {s:?}");
}

fn check_spec(spec: &Spec, rootfs: &Path) {
    let root = spec.root().as_ref().expect("root");
    assert_eq!(root.path(), rootfs);
    let p = spec.process().as_ref().expect("process");
    let args = p.args().as_ref().expect("process.args");
    assert!(!args.is_empty(), "empty process.args");
    for a in args {
        no_nul("arg", a);
    }
    assert!(p.cwd().is_absolute(), "relative cwd {:?}", p.cwd());
    no_nul("cwd", &p.cwd().to_string_lossy());
    for e in p.env().iter().flatten() {
        assert!(e.contains('='), "env entry without '=': {e:?}");
        no_nul("env", e);
    }
    for m in spec.mounts().iter().flatten() {
        assert!(
            m.destination().is_absolute(),
            "mount at {:?}",
            m.destination()
        );
        no_nul("mount destination", &m.destination().to_string_lossy());
        if let Some(s) = m.source() {
            no_nul("mount source", &s.to_string_lossy());
        }
    }
    if let Some(l) = spec.linux() {
        for (k, v) in l.sysctl().iter().flatten() {
            assert!(
                !k.is_empty() && !k.contains(['=', '\n', '\0']),
                "sysctl key {k:?}"
            );
            no_nul("sysctl value", v);
        }
        let mut kinds: Vec<_> = l
            .namespaces()
            .iter()
            .flatten()
            .map(|n| format!("{:?}", n.typ()))
            .collect();
        let n = kinds.len();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), n, "a namespace listed twice");
        for path in l.masked_paths().iter().chain(l.readonly_paths()).flatten() {
            assert!(path.starts_with('/'), "masked/readonly path {path:?}");
        }
        for d in l.devices().iter().flatten() {
            assert!(d.path().is_absolute(), "device at {:?}", d.path());
        }
    }
    // What is written as config.json must read back as the same spec.
    let json = serde_json::to_vec(spec).expect("spec serializes");
    let back: Spec = serde_json::from_slice(&json).expect("spec deserializes");
    // (Compared as specs: capability sets and annotations serialize in no fixed order.)
    assert!(back == *spec, "spec JSON round trip changed it");
}

#[test]
fn container_config() {
    let sb = view(false, &[]);
    let privileged = view(true, &[]);
    let image = image_config();
    bolero::check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| {
            let Ok(mut c) = api::ContainerConfig::decode(input) else {
                return;
            };
            contain(&mut c);
            spec_of(&c, &image, &sb);
            spec_of(&c, &image, &privileged);
        });
}

#[test]
fn sandbox_config() {
    let image = image_config();
    bolero::check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| {
            let Ok(mut pod) = api::PodSandboxConfig::decode(input) else {
                return;
            };
            if let Some(p) = pod.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
                if let Some(s) = p.seccomp.as_mut() {
                    contain_profile(s);
                }
                #[allow(deprecated)]
                contain_deprecated_profile(&mut p.seccomp_profile_path);
            }
            sandbox(&pod, &image);
        });
}

/// What RunPodSandbox does with a config before the pod exists: validation, port mappings,
/// the infra container's spec; then an app container in that sandbox.
fn sandbox(pod: &api::PodSandboxConfig, image: &oci_spec::image::Config) {
    if peapod::pod::sandbox::validate(pod).is_err() {
        return;
    }
    let _ = peapod::net::validate_port_mappings(&pod.port_mappings);
    let ns = peapod::pod::sandbox::namespaces_of(pod);
    let s = scratch();
    let infra_view = peapod::pod::infra::infra_view(
        "0123456789abcdef",
        &pod.hostname,
        ns,
        &s.join("ns"),
        Some(&s.join("shm")),
        pod,
    );
    let infra = peapod::pod::infra::infra_config(pod);
    let rootfs = s.join("rootfs");
    let host = HostLimits::default();
    let input = SpecInput {
        id: "0123456789abcdef",
        config: &infra,
        image,
        rootfs: &rootfs,
        sandbox: &infra_view,
        cgroups_path: String::new(),
        target_pid_ns: None,
        host: &host,
    };
    if let Ok(mut spec) = generate(&input) {
        peapod::pod::infra::adjust_spec(&mut spec, ns, Some(&pod.hostname));
        check_spec(&spec, &rootfs);
    }
    let sysctls: Vec<_> = pod.linux.iter().flat_map(|l| l.sysctls.clone()).collect();
    let privileged = pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    spec_of(&base_container(), image, &view(privileged, &sysctls));
}

/// Image configs from a registry: their user, environment, entrypoint and working directory
/// go into every container's spec.
#[test]
fn image_config_json() {
    let sb = view(false, &[]);
    let c = base_container();
    let bare = api::ContainerConfig {
        metadata: c.metadata.clone(),
        ..Default::default()
    };
    bolero::check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| {
            let Ok(parsed) = serde_json::from_slice::<oci_spec::image::ImageConfiguration>(input)
            else {
                return;
            };
            let _ = parsed.rootfs().diff_ids().len();
            let image = parsed.config().clone().unwrap_or_default();
            spec_of(&c, &image, &sb);
            spec_of(&bare, &image, &sb);
        });
}

// ---- structured requests: a realistic config with edits from a dictionary ----

fn base_container() -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: "docker.io/library/busybox:latest".into(),
            ..Default::default()
        }),
        command: vec!["/bin/sh".into()],
        args: vec!["-c".into(), "sleep 3600".into()],
        working_dir: "/".into(),
        envs: vec![api::KeyValue {
            key: "A".into(),
            value: "b".into(),
        }],
        mounts: vec![api::Mount {
            container_path: "/data".into(),
            host_path: under("mounts", "/data"),
            ..Default::default()
        }],
        log_path: "app/0.log".into(),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(api::LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 64 << 20,
                oom_score_adj: 500,
                ..Default::default()
            }),
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options: Some(api::NamespaceOption::default()),
                run_as_user: Some(api::Int64Value { value: 1000 }),
                supplemental_groups: vec![10],
                seccomp: Some(api::SecurityProfile::default()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

#[derive(Debug, Clone, Copy, TypeGenerator)]
enum Str {
    Empty,
    Root,
    Abs,
    Rel,
    DotDot,
    AbsDotDot,
    ProcFd,
    Proc,
    Dev,
    DevNull,
    Nul,
    Newline,
    Equals,
    Plus,
    Long,
    Unicode,
    Cap,
    CapAll,
    Word,
    Number,
    Negative,
}

impl Str {
    fn get(self) -> String {
        match self {
            Str::Empty => "".into(),
            Str::Root => "/".into(),
            Str::Abs => "/a/b".into(),
            Str::Rel => "a/b".into(),
            Str::DotDot => "../..".into(),
            Str::AbsDotDot => "/a/../../etc".into(),
            Str::ProcFd => "/proc/self/fd/7".into(),
            Str::Proc => "/proc".into(),
            Str::Dev => "/dev".into(),
            Str::DevNull => "/dev/null".into(),
            Str::Nul => "a\0b".into(),
            Str::Newline => "a\nb".into(),
            Str::Equals => "a=b".into(),
            Str::Plus => "kernel.shm_rmid_forced=1+kernel.core_pattern=|/x".into(),
            Str::Long => "x".repeat(5000),
            Str::Unicode => "ünï/çødé".into(),
            Str::Cap => "CAP_SYS_ADMIN".into(),
            Str::CapAll => "ALL".into(),
            Str::Word => "net.ipv4.ip_forward".into(),
            Str::Number => "1000".into(),
            Str::Negative => "-1".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, TypeGenerator)]
enum Num {
    Zero,
    One,
    Minus1,
    Min,
    Max,
    Big,
    Small(i16),
}

impl Num {
    fn get(self) -> i64 {
        match self {
            Num::Zero => 0,
            Num::One => 1,
            Num::Minus1 => -1,
            Num::Min => i64::MIN,
            Num::Max => i64::MAX,
            Num::Big => 1 << 40,
            Num::Small(n) => i64::from(n),
        }
    }
}

#[derive(Debug, TypeGenerator)]
enum Edit {
    Command(Str),
    Args(Str),
    ClearCommand,
    WorkingDir(Str),
    Env(Str, Str),
    Mount {
        container: Str,
        host: Str,
        readonly: bool,
        propagation: i32,
        option: Str,
    },
    Device {
        container: Str,
        host: Str,
        perms: Str,
    },
    Privileged(bool),
    ReadonlyRootfs(bool),
    RunAsUser(Num),
    RunAsGroup(Num),
    RunAsUsername(Str),
    Groups(Num),
    CapAdd(Str),
    CapDrop(Str),
    CapAmbient(Str),
    Namespaces {
        network: i32,
        pid: i32,
        ipc: i32,
        target: Str,
    },
    Seccomp {
        kind: i32,
        reference: Str,
    },
    SeccompPath(Str),
    Masked(Str),
    Readonly(Str),
    CpuPeriod(Num),
    CpuQuota(Num),
    CpuShares(Num),
    Memory(Num),
    Swap(Num),
    OomScoreAdj(Num),
    Cpuset(Str, Str),
    Hugepages(Str, Num),
    Unified(Str, Str),
    Annotation(Str, Str),
    NoLinux,
    SandboxPrivileged(bool),
    SandboxSysctl(Str, Str),
    ImageUser(Str),
    ImageEnv(Str),
    ImageWorkdir(Str),
    NoImageEntrypoint,
}

struct Case {
    c: api::ContainerConfig,
    image: oci_spec::image::Config,
    privileged: bool,
    sysctls: Vec<(String, String)>,
}

fn apply(case: &mut Case, e: &Edit) {
    let c = &mut case.c;
    let linux = c.linux.get_or_insert_with(Default::default);
    let sc = linux.security_context.get_or_insert_with(Default::default);
    let res = linux.resources.get_or_insert_with(Default::default);
    match e {
        Edit::Command(s) => c.command.push(s.get()),
        Edit::Args(s) => c.args.push(s.get()),
        Edit::ClearCommand => {
            c.command.clear();
            c.args.clear();
        }
        Edit::WorkingDir(s) => c.working_dir = s.get(),
        Edit::Env(k, v) => c.envs.push(api::KeyValue {
            key: k.get(),
            value: v.get().into_bytes(),
        }),
        Edit::Mount {
            container,
            host,
            readonly,
            propagation,
            option,
        } => c.mounts.push(api::Mount {
            container_path: container.get(),
            host_path: host.get(),
            readonly: *readonly,
            propagation: propagation.rem_euclid(4),
            mount_options: vec![option.get()],
            ..Default::default()
        }),
        Edit::Device {
            container,
            host,
            perms,
        } => c.devices.push(api::Device {
            container_path: container.get(),
            host_path: host.get(),
            permissions: perms.get(),
        }),
        Edit::Privileged(b) => sc.privileged = *b,
        Edit::ReadonlyRootfs(b) => sc.readonly_rootfs = *b,
        Edit::RunAsUser(n) => sc.run_as_user = Some(api::Int64Value { value: n.get() }),
        Edit::RunAsGroup(n) => sc.run_as_group = Some(api::Int64Value { value: n.get() }),
        Edit::RunAsUsername(s) => sc.run_as_username = s.get(),
        Edit::Groups(n) => sc.supplemental_groups.push(n.get()),
        Edit::CapAdd(s) => caps(sc).add_capabilities.push(s.get()),
        Edit::CapDrop(s) => caps(sc).drop_capabilities.push(s.get()),
        Edit::CapAmbient(s) => caps(sc).add_ambient_capabilities.push(s.get()),
        Edit::Namespaces {
            network,
            pid,
            ipc,
            target,
        } => {
            sc.namespace_options = Some(api::NamespaceOption {
                network: network.rem_euclid(5),
                pid: pid.rem_euclid(5),
                ipc: ipc.rem_euclid(5),
                target_id: target.get(),
                ..Default::default()
            })
        }
        Edit::Seccomp { kind, reference } => {
            sc.seccomp = Some(api::SecurityProfile {
                profile_type: kind.rem_euclid(4),
                localhost_ref: reference.get(),
            })
        }
        #[allow(deprecated)]
        Edit::SeccompPath(s) => sc.seccomp_profile_path = format!("localhost{}", s.get()),
        Edit::Masked(s) => sc.masked_paths.push(s.get()),
        Edit::Readonly(s) => sc.readonly_paths.push(s.get()),
        Edit::CpuPeriod(n) => res.cpu_period = n.get(),
        Edit::CpuQuota(n) => res.cpu_quota = n.get(),
        Edit::CpuShares(n) => res.cpu_shares = n.get(),
        Edit::Memory(n) => res.memory_limit_in_bytes = n.get(),
        Edit::Swap(n) => res.memory_swap_limit_in_bytes = n.get(),
        Edit::OomScoreAdj(n) => res.oom_score_adj = n.get(),
        Edit::Cpuset(a, b) => {
            res.cpuset_cpus = a.get();
            res.cpuset_mems = b.get();
        }
        Edit::Hugepages(s, n) => res.hugepage_limits.push(api::HugepageLimit {
            page_size: s.get(),
            limit: n.get() as u64,
        }),
        Edit::Unified(k, v) => {
            res.unified.insert(k.get(), v.get());
        }
        Edit::Annotation(k, v) => {
            c.annotations.insert(k.get(), v.get());
        }
        Edit::NoLinux => c.linux = None,
        Edit::SandboxPrivileged(b) => case.privileged = *b,
        Edit::SandboxSysctl(k, v) => case.sysctls.push((k.get(), v.get())),
        Edit::ImageUser(s) => {
            case.image.set_user(Some(s.get()));
        }
        Edit::ImageEnv(s) => {
            let mut env = case.image.env().clone().unwrap_or_default();
            env.push(s.get());
            case.image.set_env(Some(env));
        }
        Edit::ImageWorkdir(s) => {
            case.image.set_working_dir(Some(s.get()));
        }
        Edit::NoImageEntrypoint => {
            case.image.set_entrypoint(None);
        }
    }
}

fn caps(sc: &mut api::LinuxContainerSecurityContext) -> &mut api::Capability {
    sc.capabilities.get_or_insert_with(Default::default)
}

#[test]
fn container_edits() {
    bolero::check!()
        .with_type::<Vec<Edit>>()
        .with_test_time(TEST_TIME)
        .for_each(|edits| {
            let mut case = Case {
                c: base_container(),
                image: image_config(),
                privileged: false,
                sysctls: Vec::new(),
            };
            for e in edits {
                apply(&mut case, e);
            }
            contain(&mut case.c);
            spec_of(&case.c, &case.image, &view(case.privileged, &case.sysctls));
        });
}

/// Writes the protobuf seeds of the CRI targets (kept in the repository; rerun after changing
/// the base configs): `cargo test --test fuzz -- --ignored write_cri_seeds`.
#[test]
#[ignore]
fn write_cri_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/__fuzz__");
    let write = |target: &str, name: &str, bytes: Vec<u8>| {
        let d: PathBuf = dir.join(target).join("corpus");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    };
    let mut c = base_container();
    c.mounts[0].host_path = "/var/lib/data".into();
    write("cri_spec__container_config", "base.pb", c.encode_to_vec());
    let mut p = c.clone();
    let sc = p.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.privileged = true;
    sc.capabilities = Some(api::Capability {
        add_capabilities: vec!["ALL".into()],
        ..Default::default()
    });
    p.devices.push(api::Device {
        container_path: "/dev/fuse".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    });
    write(
        "cri_spec__container_config",
        "privileged.pb",
        p.encode_to_vec(),
    );
    let mut bad = c.clone();
    bad.mounts.push(api::Mount {
        container_path: "/proc/self/../../etc".into(),
        host_path: "relative".into(),
        propagation: api::MountPropagation::PropagationBidirectional as i32,
        ..Default::default()
    });
    bad.working_dir = "/proc/self/fd/7".into();
    write(
        "cri_spec__container_config",
        "escapes.pb",
        bad.encode_to_vec(),
    );

    let pod = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web".into(),
        log_directory: "/var/log/pods/default_web_uid-1".into(),
        dns_config: Some(api::DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        port_mappings: vec![api::PortMapping {
            protocol: 0,
            container_port: 80,
            host_port: 8080,
            host_ip: "127.0.0.1".into(),
        }],
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/burstable/poduid-1".into(),
            sysctls: [("net.ipv4.ip_unprivileged_port_start".into(), "0".into())].into(),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption::default()),
                run_as_user: Some(api::Int64Value { value: 65535 }),
                seccomp: Some(api::SecurityProfile::default()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    write("cri_spec__sandbox_config", "pod.pb", pod.encode_to_vec());
    let mut host = pod.clone();
    let sc = host
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.namespace_options = Some(api::NamespaceOption {
        network: api::NamespaceMode::Node as i32,
        pid: api::NamespaceMode::Node as i32,
        ipc: api::NamespaceMode::Node as i32,
        ..Default::default()
    });
    sc.privileged = true;
    host.linux.as_mut().unwrap().sysctls = [(
        "kernel.shm_rmid_forced".into(),
        "1+kernel.core_pattern=|/x".into(),
    )]
    .into();
    write(
        "cri_spec__sandbox_config",
        "host-ns.pb",
        host.encode_to_vec(),
    );
}
