//! The sandbox's infra container, used instead of the built-in pause when `sandbox_image` is
//! configured (containerd's sandbox container).
//!
//! The image is taken from the store (pulled when absent) and mounted as an overlay rootfs under
//! `<root_dir>/sandboxes/<id>/{upper,work,rootfs}`. Its spec is an app container's (from
//! [`generate`], for the image's entrypoint, cmd and user) with the differences a pod's infra
//! needs: NEW net, IPC and UTS namespaces (and PID when the pod shares one) instead of joined
//! ones, the pod's hostname, a read-only rootfs, no_new_privs, oom_score_adj -998 and the pause
//! cgroup leaf. It runs under the same per-container monitor as app containers, bundle and exit
//! file in `<state_dir>/sandboxes/<id>/bundle`, with the sandbox ID as its runtime container ID.
//! Once started, its namespaces are pinned exactly as the built-in pause's are, and its init
//! process is the record's `pause_pid`: from there on containers, watch_pause, stop and recovery
//! treat it as they treat the pause.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Spec};
use tracing::warn;

use super::monitor::{self, MonitorArgs};
use super::proc;
use super::record::{InfraContainer, SandboxNamespaces, SandboxRecord};
use super::sandbox::ignore_not_found;
use super::undo::Undo;
use super::{Engine, EngineError, Result};
use crate::api;
use crate::image::{ImageError, ImageRecord};
use crate::oci::runtime::OciRuntime;
use crate::oci::spec::{
    generate, HostLimits, SandboxView, SpecInput, ANNOTATION_CONTAINER_NAME,
    ANNOTATION_CONTAINER_TYPE,
};

/// The infra container's oom_score_adj, containerd's `defaultSandboxOOMAdj`: the last process
/// of the pod the OOM killer picks (clamped to what the host allows).
pub const INFRA_OOM_SCORE_ADJ: i64 = -998;

/// How long the infra container's monitor gets to exit after its container was deleted.
const MONITOR_WAIT: Duration = Duration::from_secs(10);

/// The CRI config an app container would need to get the infra's spec from [`generate`]: the
/// image's own entrypoint, cmd and user (or the pod's run_as_user / run_as_group), the pod's
/// supplemental groups and seccomp profile, a read-only rootfs, no_new_privs and
/// [`INFRA_OOM_SCORE_ADJ`]. Its PID mode is NODE so that `generate` adds no PID namespace:
/// [`adjust_spec`] sets every namespace the infra makes.
pub fn infra_config(pod: &api::PodSandboxConfig) -> api::ContainerConfig {
    let psc = pod.linux.as_ref().and_then(|l| l.security_context.as_ref());
    #[allow(deprecated)]
    let sc = api::LinuxContainerSecurityContext {
        namespace_options: Some(api::NamespaceOption {
            pid: api::NamespaceMode::Node as i32,
            ..Default::default()
        }),
        run_as_user: psc.and_then(|s| s.run_as_user),
        run_as_group: psc.and_then(|s| s.run_as_group),
        supplemental_groups: psc
            .map(|s| s.supplemental_groups.clone())
            .unwrap_or_default(),
        seccomp: psc.and_then(|s| s.seccomp.clone()),
        seccomp_profile_path: psc
            .map(|s| s.seccomp_profile_path.clone())
            .unwrap_or_default(),
        readonly_rootfs: true,
        no_new_privs: true,
        ..Default::default()
    };
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: "POD".into(),
            attempt: pod.metadata.as_ref().map_or(0, |m| m.attempt),
        }),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(api::LinuxContainerResources {
                oom_score_adj: INFRA_OOM_SCORE_ADJ,
                ..Default::default()
            }),
            security_context: Some(sc),
        }),
        ..Default::default()
    }
}

/// What [`generate`] sees of the sandbox for the infra: the namespace files it will be pinned at
/// (so pod sysctls are checked against the namespaces the pod really has; [`adjust_spec`] turns
/// them into new namespaces), the pod's /dev/shm, and no /etc files (the infra needs none).
pub fn infra_view(
    id: &str,
    hostname: &str,
    ns: SandboxNamespaces,
    ns_dir: &Path,
    shm: Option<&Path>,
    pod: &api::PodSandboxConfig,
) -> SandboxView {
    let ns_path = |host: bool, kind: &str| (!host).then(|| ns_dir.join(kind));
    SandboxView {
        id: id.to_string(),
        hostname: hostname.to_string(),
        net_ns: ns_path(ns.host_network, "net"),
        ipc_ns: ns_path(ns.host_ipc, "ipc"),
        uts_ns: ns_path(ns.host_network, "uts"),
        pid_ns: None,
        hostname_file: None,
        hosts_file: None,
        resolv_conf: None,
        shm: shm.map(Path::to_path_buf),
        sysctls: pod
            .linux
            .as_ref()
            .map(|l| l.sysctls.clone().into_iter().collect())
            .unwrap_or_default(),
        privileged: false,
    }
}

/// Turns an app container's spec into the infra's: its net, IPC, UTS and PID namespaces become
/// the ones the infra makes (new, none joined: net and UTS unless the pod uses the host network,
/// IPC unless host IPC, PID when the pod shares one), the pod's hostname is set (when the infra
/// has its own UTS namespace), and it is annotated as the sandbox container.
pub fn adjust_spec(spec: &mut Spec, ns: SandboxNamespaces, hostname: Option<&str>) {
    let new = |typ: LinuxNamespaceType| {
        let mut n = LinuxNamespace::default();
        n.set_typ(typ).set_path(None);
        n
    };
    let own_uts = !ns.host_network;
    if let Some(linux) = spec.linux_mut() {
        let made = |t: LinuxNamespaceType| {
            matches!(
                t,
                LinuxNamespaceType::Network
                    | LinuxNamespaceType::Ipc
                    | LinuxNamespaceType::Uts
                    | LinuxNamespaceType::Pid
            )
        };
        let mut out: Vec<LinuxNamespace> = Vec::new();
        let mut rest: Vec<LinuxNamespace> = Vec::new();
        for n in linux.namespaces().clone().unwrap_or_default() {
            match n.typ() {
                LinuxNamespaceType::Mount => out.push(n),
                t if made(t) => {}
                _ => rest.push(n),
            }
        }
        for (typ, wanted) in [
            (LinuxNamespaceType::Network, !ns.host_network),
            (LinuxNamespaceType::Ipc, !ns.host_ipc),
            (LinuxNamespaceType::Uts, own_uts),
            (LinuxNamespaceType::Pid, ns.pod_pid),
        ] {
            if wanted {
                out.push(new(typ));
            }
        }
        out.extend(rest);
        linux.set_namespaces(Some(out));
    }
    spec.set_hostname(
        hostname
            .filter(|h| own_uts && !h.is_empty())
            .map(str::to_string),
    );
    let annotations = spec.annotations_mut().get_or_insert_with(Default::default);
    annotations.insert(ANNOTATION_CONTAINER_TYPE.into(), "sandbox".into());
    annotations.remove(ANNOTATION_CONTAINER_NAME);
}

/// Everything [`infra_spec`] needs.
pub struct InfraSpecInput<'a> {
    pub id: &'a str,
    pub pod: &'a api::PodSandboxConfig,
    pub ns: SandboxNamespaces,
    /// The hostname the pod's containers see (for `HOSTNAME`).
    pub hostname: &'a str,
    /// Where the namespaces will be pinned.
    pub ns_dir: &'a Path,
    pub shm: Option<&'a Path>,
    pub image: &'a oci_spec::image::Config,
    pub rootfs: &'a Path,
    /// The pause leaf of the pod cgroup.
    pub cgroups_path: String,
    pub host: &'a HostLimits,
}

/// The infra container's OCI spec: [`generate`] with [`infra_config`], then [`adjust_spec`].
pub fn infra_spec(i: &InfraSpecInput) -> Result<Spec> {
    let config = infra_config(i.pod);
    let view = infra_view(i.id, i.hostname, i.ns, i.ns_dir, i.shm, i.pod);
    let mut spec = generate(&SpecInput {
        id: i.id,
        config: &config,
        image: i.image,
        rootfs: i.rootfs,
        sandbox: &view,
        cgroups_path: i.cgroups_path.clone(),
        target_pid_ns: None,
        host: i.host,
    })?;
    // The CRI hostname only: empty leaves the copy of the node's a new UTS namespace starts
    // with, as the built-in pause does.
    adjust_spec(&mut spec, i.ns, Some(i.pod.hostname.as_str()));
    Ok(spec)
}

/// Whether the image can run at all without a command from a CRI config.
fn has_command(image: &oci_spec::image::Config) -> bool {
    let n = |v: &Option<Vec<String>>| v.as_ref().map_or(0, Vec::len);
    n(image.entrypoint()) + n(image.cmd()) > 0
}

/// What [`Engine::start_infra`] needs from run_sandbox.
pub(super) struct InfraArgs<'a> {
    pub id: &'a str,
    pub config: &'a api::PodSandboxConfig,
    pub ns: SandboxNamespaces,
    pub hostname: &'a str,
    pub shm: Option<&'a Path>,
    pub ns_dir: &'a Path,
    pub cgroups_path: &'a str,
    pub runtime: &'a OciRuntime,
}

impl Engine {
    /// The infra container's OCI bundle (config.json, runtime log, exit file).
    pub(super) fn infra_bundle(&self, sandbox_id: &str) -> PathBuf {
        self.paths.sandbox_state_dir(sandbox_id).join("bundle")
    }

    /// The configured sandbox image from the store, pulled when it is not there.
    async fn sandbox_image(&self) -> Result<ImageRecord> {
        let reference = &self.cfg.sandbox_image;
        match self.images.get(reference) {
            Ok(rec) => return Ok(rec),
            Err(ImageError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(image = %reference, "sandbox image not in the store: pulling it");
        Ok(crate::image::pull(self.images.clone(), &self.cfg.registry, reference, None).await?)
    }

    /// Starts the infra container up to a running init process; returns its PID and what the
    /// record keeps of it. Every step registers its undo on `undo`.
    pub(super) async fn start_infra(
        &self,
        a: &InfraArgs<'_>,
        undo: &mut Undo,
    ) -> Result<(i32, InfraContainer)> {
        let image = self.sandbox_image().await?;
        let image_config = image.config.config().clone().unwrap_or_default();
        if !has_command(&image_config) {
            return Err(EngineError::FailedPrecondition(format!(
                "sandbox image {} has neither an entrypoint nor a cmd",
                self.cfg.sandbox_image
            )));
        }

        // The rootfs, under the sandbox dir (whose undo removes what this leaves).
        let dir = self.paths.sandbox_dir(a.id);
        let rootfs = dir.join("rootfs");
        crate::image::snapshot::mount_rootfs(
            &self.images.layer_dirs(&image),
            &dir.join("upper"),
            &dir.join("work"),
            &rootfs,
        )?;
        {
            let r = rootfs.clone();
            undo.push("unmount infra rootfs", move || {
                let _ = crate::image::snapshot::unmount_rootfs(&r);
            });
        }
        tracing::debug!("infra rootfs mounted");

        // The bundle.
        let bundle = self.infra_bundle(a.id);
        std::fs::create_dir_all(&bundle).map_err(EngineError::io("creating the infra bundle"))?;
        {
            let b = bundle.clone();
            undo.push("remove infra bundle", move || {
                let _ = std::fs::remove_dir_all(&b);
                if let Some(p) = b.parent() {
                    let _ = std::fs::remove_dir(p);
                }
            });
        }
        let spec = infra_spec(&InfraSpecInput {
            id: a.id,
            pod: a.config,
            ns: a.ns,
            hostname: a.hostname,
            ns_dir: a.ns_dir,
            shm: a.shm,
            image: &image_config,
            rootfs: &rootfs,
            cgroups_path: a.cgroups_path.to_string(),
            host: &self.host,
        })?;
        let spec_json = serde_json::to_vec(&spec)
            .map_err(|e| EngineError::io("encoding config.json")(e.into()))?;
        crate::fsutil::atomic_write_opts(&bundle.join("config.json"), &spec_json, false)
            .map_err(EngineError::io("writing config.json"))?;

        // The monitor runs `<runtime> create`; the runtime container ID is the sandbox ID.
        let started = monitor::spawn(&MonitorArgs {
            shim: &self.shim,
            id: a.id,
            bundle: &bundle,
            runtime: a.runtime,
            exit_file: &bundle.join("exit"),
            runtime_log: &bundle.join("runtime.log"),
            log_path: None,
            tty: false,
            stdin: false,
            stdin_once: false,
        })
        .await?;
        tracing::debug!(
            pid = started.init_pid,
            "runtime created the infra container"
        );
        {
            let rt = a.runtime.clone();
            let id = a.id.to_string();
            let mp = started.monitor_pid;
            undo.push("delete the infra container", move || {
                // Undo runs synchronously; the runtime CLI is a plain child process.
                let _ = std::process::Command::new(&rt.path)
                    .args(&rt.global_args)
                    .args(["delete", "--force", &id])
                    .output();
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(mp), None);
            });
        }
        let monitor_start = proc::start_time(started.monitor_pid).unwrap_or(0);
        a.runtime.start(a.id).await?;
        tracing::debug!("infra container started");
        Ok((
            started.init_pid,
            InfraContainer {
                image_ref: self.cfg.sandbox_image.clone(),
                image_id: image.id.clone(),
                image_chain_ids: image.chain_ids.clone(),
                rootfs,
                monitor_pid: started.monitor_pid,
                monitor_start,
            },
        ))
    }

    /// Reaps the infra container's monitor (a child of this daemon) when it exits.
    pub(super) fn reap_infra_monitor(&self, infra: &InfraContainer) {
        let pid = infra.monitor_pid;
        tokio::spawn(async move {
            if let Err(e) = proc::wait_exit(pid).await {
                warn!(pid, error = %e, "cannot wait for the infra monitor");
            }
        });
    }

    /// Removes a stopped sandbox's infra container: the runtime's container (killing what is
    /// left of it), its rootfs mount and its bundle. Idempotent.
    pub(super) async fn remove_infra(
        &self,
        rec: &SandboxRecord,
        infra: &InfraContainer,
    ) -> Result<()> {
        let rt = self.runtimes.get(&rec.runtime_handler)?;
        rt.delete(&rec.id, true).await?;
        if proc::is_alive(infra.monitor_pid, infra.monitor_start) {
            // The monitor writes the exit file and exits once its container is gone.
            let _ = tokio::time::timeout(MONITOR_WAIT, proc::wait_exit(infra.monitor_pid)).await;
        }
        crate::image::snapshot::unmount_rootfs(&infra.rootfs)?;
        let bundle = self.infra_bundle(&rec.id);
        std::fs::remove_dir_all(&bundle)
            .or_else(ignore_not_found)
            .map_err(EngineError::io(format!("removing {}", bundle.display())))?;
        let _ = std::fs::remove_dir(self.paths.sandbox_state_dir(&rec.id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: Option<api::NamespaceOption>) -> api::PodSandboxConfig {
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 1,
            }),
            hostname: "web-host".into(),
            linux: Some(api::LinuxPodSandboxConfig {
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: ns,
                    run_as_user: Some(api::Int64Value { value: 65535 }),
                    supplemental_groups: vec![7],
                    ..Default::default()
                }),
                sysctls: [(
                    "net.ipv4.ip_unprivileged_port_start".to_string(),
                    "0".to_string(),
                )]
                .into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn config_runs_the_image_hardened() {
        let c = infra_config(&pod(None));
        assert!(c.command.is_empty() && c.args.is_empty(), "the image's own");
        let l = c.linux.unwrap();
        assert_eq!(l.resources.unwrap().oom_score_adj, -998);
        let sc = l.security_context.unwrap();
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
        assert_eq!(sc.run_as_user.map(|u| u.value), Some(65535));
        assert_eq!(sc.supplemental_groups, vec![7]);
        assert_eq!(
            sc.namespace_options.unwrap().pid,
            api::NamespaceMode::Node as i32,
            "generate must add no PID namespace of its own"
        );
    }

    fn ns_list(s: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        s.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .clone()
            .unwrap()
            .iter()
            .map(|n| (n.typ(), n.path().clone()))
            .collect()
    }

    fn joined_spec() -> Spec {
        let mut spec = Spec::default();
        let ns = |t: LinuxNamespaceType, p: Option<&str>| {
            let mut n = LinuxNamespace::default();
            n.set_typ(t).set_path(p.map(PathBuf::from));
            n
        };
        let mut linux = oci_spec::runtime::Linux::default();
        linux.set_namespaces(Some(vec![
            ns(LinuxNamespaceType::Mount, None),
            ns(LinuxNamespaceType::Network, Some("/run/x/ns/net")),
            ns(LinuxNamespaceType::Ipc, Some("/run/x/ns/ipc")),
            ns(LinuxNamespaceType::Uts, Some("/run/x/ns/uts")),
            ns(LinuxNamespaceType::Pid, Some("/proc/9/ns/pid")),
            ns(LinuxNamespaceType::Cgroup, None),
        ]));
        spec.set_linux(Some(linux));
        spec.set_annotations(Some(
            [
                (
                    ANNOTATION_CONTAINER_TYPE.to_string(),
                    "container".to_string(),
                ),
                (ANNOTATION_CONTAINER_NAME.to_string(), "POD".to_string()),
            ]
            .into(),
        ));
        spec
    }

    #[test]
    fn adjust_makes_new_namespaces_instead_of_joining() {
        use LinuxNamespaceType::*;
        let mut s = joined_spec();
        let ns = SandboxNamespaces {
            pod_pid: true,
            ..Default::default()
        };
        adjust_spec(&mut s, ns, Some("web-host"));
        assert_eq!(
            ns_list(&s),
            vec![
                (Mount, None),
                (Network, None),
                (Ipc, None),
                (Uts, None),
                (Pid, None),
                (Cgroup, None)
            ]
        );
        assert_eq!(s.hostname().as_deref(), Some("web-host"));
        let a = s.annotations().clone().unwrap();
        assert_eq!(a[ANNOTATION_CONTAINER_TYPE], "sandbox");
        assert!(!a.contains_key(ANNOTATION_CONTAINER_NAME));

        // Host network and IPC, per-container PID: only the mount (and cgroup) namespaces; no
        // hostname, which cannot be set without a UTS namespace of its own.
        let mut s = joined_spec();
        let ns = SandboxNamespaces {
            host_network: true,
            host_ipc: true,
            ..Default::default()
        };
        adjust_spec(&mut s, ns, Some("web-host"));
        assert_eq!(ns_list(&s), vec![(Mount, None), (Cgroup, None)]);
        assert_eq!(s.hostname(), &None);

        // Own network, host IPC, no hostname asked for.
        let mut s = joined_spec();
        let ns = SandboxNamespaces {
            host_ipc: true,
            ..Default::default()
        };
        adjust_spec(&mut s, ns, Some(""));
        assert_eq!(
            ns_list(&s),
            vec![(Mount, None), (Network, None), (Uts, None), (Cgroup, None)]
        );
        assert_eq!(s.hostname(), &None);
    }

    #[test]
    fn infra_spec_from_an_image() {
        use LinuxNamespaceType::*;
        let dir = std::env::temp_dir().join(format!("peapod-infra-{}", crate::fsutil::new_id()));
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        let image: oci_spec::image::Config = serde_json::from_str(
            r#"{"Entrypoint":["/bin/sleep","2147483647"],"Env":["PATH=/bin"]}"#,
        )
        .unwrap();
        let host = HostLimits {
            min_oom_score_adj: -500,
            ..Default::default()
        };
        let p = pod(None);
        let ns_dir = dir.join("ns");
        let shm = dir.join("shm");
        let input = InfraSpecInput {
            id: "sb1",
            pod: &p,
            ns: SandboxNamespaces {
                pod_pid: true,
                ..Default::default()
            },
            hostname: "web-host",
            ns_dir: &ns_dir,
            shm: Some(&shm),
            image: &image,
            rootfs: &rootfs,
            cgroups_path: "/peapod/sb1/sb1".into(),
            host: &host,
        };
        let s = infra_spec(&input).unwrap();
        let proc_ = s.process().as_ref().unwrap();
        assert_eq!(
            proc_.args().as_deref().unwrap(),
            ["/bin/sleep", "2147483647"]
        );
        assert_eq!(proc_.user().uid(), 65535, "the pod's run_as_user");
        assert_eq!(proc_.no_new_privileges(), Some(true));
        assert_eq!(proc_.oom_score_adj(), Some(-500), "clamped to the host's");
        assert!(proc_
            .env()
            .as_ref()
            .unwrap()
            .contains(&"HOSTNAME=web-host".to_string()));
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
        assert_eq!(s.hostname().as_deref(), Some("web-host"));
        let linux = s.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/peapod/sb1/sb1"))
        );
        let ns = ns_list(&s);
        for t in [Mount, Network, Ipc, Uts, Pid] {
            assert!(ns.contains(&(t, None)), "{t:?} not new: {ns:?}");
        }
        assert!(ns.iter().all(|(_, p)| p.is_none()), "joins nothing: {ns:?}");
        let sysctl = linux.sysctl().clone().unwrap();
        assert_eq!(sysctl["net.ipv4.ip_unprivileged_port_start"], "0");
        let mounts = s.mounts().clone().unwrap();
        let shm_mount = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/dev/shm"))
            .unwrap();
        assert_eq!(shm_mount.source().as_deref(), Some(shm.as_path()));
        assert!(
            !mounts
                .iter()
                .any(|m| m.destination() == Path::new("/etc/hosts")),
            "the infra needs no pod files"
        );

        // Host network: net sysctls are refused, as for every container of such a pod.
        let e = infra_spec(&InfraSpecInput {
            ns: SandboxNamespaces {
                host_network: true,
                ..Default::default()
            },
            ..input
        })
        .unwrap_err();
        assert!(e.to_string().contains("sysctls"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn images_without_a_command_are_refused() {
        let none: oci_spec::image::Config = serde_json::from_str("{}").unwrap();
        assert!(!has_command(&none));
        let cmd: oci_spec::image::Config = serde_json::from_str(r#"{"Cmd":["/pause"]}"#).unwrap();
        assert!(has_command(&cmd));
    }
}
