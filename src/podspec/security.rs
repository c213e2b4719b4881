//! Security contexts, as kubelet's `NamespacesForPod`, `getSeccompProfile`,
//! `determineEffectiveSecurityContext` and `verifyRunAsNonRoot`.

use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};

use crate::api::{
    security_profile::ProfileType, Capability, Int64Value, LinuxContainerSecurityContext,
    NamespaceMode, NamespaceOption, SecurityProfile,
};

use super::context::Context;
use super::error::SpecError;
use super::pod;

/// Host namespaces for hostNetwork/hostPID/hostIPC; a shared PID namespace for
/// shareProcessNamespace, else one per container.
pub fn namespace_options(spec: &PodSpec) -> NamespaceOption {
    let mode = |host: Option<bool>, otherwise: NamespaceMode| {
        if host == Some(true) {
            NamespaceMode::Node
        } else {
            otherwise
        }
    };
    let pid = if spec.host_pid == Some(true) {
        NamespaceMode::Node
    } else if spec.share_process_namespace == Some(true) {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    NamespaceOption {
        network: mode(spec.host_network, NamespaceMode::Pod) as i32,
        pid: pid as i32,
        ipc: mode(spec.host_ipc, NamespaceMode::Pod) as i32,
        ..Default::default()
    }
}

/// The seccomp profile: the container's, else the pod's, else RuntimeDefault with kubelet's
/// `seccompDefault`, else Unconfined (kubelet's default).
pub fn seccomp(
    pod_sc: Option<&PodSecurityContext>,
    c_sc: Option<&SecurityContext>,
    ctx: &Context,
    path: &str,
) -> Result<SecurityProfile, SpecError> {
    let (profile, p) = match (
        c_sc.and_then(|s| s.seccomp_profile.as_ref()),
        pod_sc.and_then(|s| s.seccomp_profile.as_ref()),
    ) {
        (Some(p), _) => (Some(p), format!("{path}.securityContext.seccompProfile")),
        (None, Some(p)) => (Some(p), "spec.securityContext.seccompProfile".to_string()),
        (None, None) => (None, String::new()),
    };
    let Some(profile) = profile else {
        let t = if ctx.seccomp_default {
            ProfileType::RuntimeDefault
        } else {
            ProfileType::Unconfined
        };
        return Ok(SecurityProfile {
            profile_type: t as i32,
            localhost_ref: String::new(),
        });
    };
    field_profile(profile, ctx, &p)
}

fn field_profile(
    p: &SeccompProfile,
    ctx: &Context,
    path: &str,
) -> Result<SecurityProfile, SpecError> {
    match p.type_.as_str() {
        "RuntimeDefault" => Ok(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        }),
        "Unconfined" => Ok(SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        }),
        "Localhost" => {
            let name = p
                .localhost_profile
                .as_deref()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    SpecError::invalid(
                        format!("{path}.localhostProfile"),
                        "localhostProfile must be set if seccompProfile type is Localhost.",
                    )
                })?;
            // The API requires a relative path that stays under the profile root.
            if !Path::new(name)
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
            {
                return Err(SpecError::invalid(
                    format!("{path}.localhostProfile"),
                    "must be a relative path without '..'",
                ));
            }
            Ok(SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: ctx
                    .paths
                    .seccomp_root
                    .join(name)
                    .to_string_lossy()
                    .into_owned(),
            })
        }
        other => Err(SpecError::invalid(
            format!("{path}.type"),
            format!("unsupported seccomp profile type {other:?}"),
        )),
    }
}

/// fsGroup first, then supplementalGroups, as kubelet lists them.
pub fn supplemental_groups(spec: &PodSpec) -> Vec<i64> {
    let sc = spec.security_context.as_ref();
    sc.and_then(|s| s.fs_group)
        .into_iter()
        .chain(
            sc.and_then(|s| s.supplemental_groups.clone())
                .into_iter()
                .flatten(),
        )
        .collect()
}

/// Refuses what peapod cannot honour rather than ignoring it.
pub fn check_pod_security(spec: &PodSpec) -> Result<(), SpecError> {
    if spec.host_users == Some(false) {
        return Err(SpecError::unsupported("spec.hostUsers", "user namespaces"));
    }
    if let Some(sc) = &spec.security_context {
        if sc
            .supplemental_groups_policy
            .as_deref()
            .is_some_and(|p| p != "Merge")
        {
            return Err(SpecError::unsupported(
                "spec.securityContext.supplementalGroupsPolicy",
                "only Merge",
            ));
        }
        if sc.se_linux_options.is_some() {
            return Err(SpecError::unsupported(
                "spec.securityContext.seLinuxOptions",
                "SELinux",
            ));
        }
        if sc.app_armor_profile.is_some() {
            return Err(SpecError::unsupported(
                "spec.securityContext.appArmorProfile",
                "AppArmor",
            ));
        }
        if sc.windows_options.is_some() {
            return Err(SpecError::unsupported(
                "spec.securityContext.windowsOptions",
                "Windows",
            ));
        }
    }
    Ok(())
}

/// The container's effective security context: its own fields over the pod's
/// (`DetermineEffectiveSecurityContext`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effective {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
}

pub fn effective(spec: &PodSpec, c: &Container) -> Effective {
    let p = spec.security_context.as_ref();
    let s = c.security_context.as_ref();
    Effective {
        run_as_user: s
            .and_then(|s| s.run_as_user)
            .or(p.and_then(|p| p.run_as_user)),
        run_as_group: s
            .and_then(|s| s.run_as_group)
            .or(p.and_then(|p| p.run_as_group)),
        run_as_non_root: s
            .and_then(|s| s.run_as_non_root)
            .or(p.and_then(|p| p.run_as_non_root)),
    }
}

/// The runAsNonRoot check kubelet runs when it creates a container, once the image's user
/// is known; the executor calls [`NonRootCheck::verify`] with the image config's `User`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonRootCheck {
    pod: String,
    container: String,
}

impl NonRootCheck {
    /// `image_user` is the image config's `User` (`1000`, `1000:1000`, `nginx`, or empty for
    /// root, as kubelet treats an image without a user).
    pub fn verify(&self, image_user: &str) -> Result<(), SpecError> {
        let user = image_user.split(':').next().unwrap_or("");
        if user.is_empty() {
            return Err(self.as_root());
        }
        match user.parse::<u64>() {
            Ok(0) => Err(self.as_root()),
            Ok(_) => Ok(()),
            Err(_) => Err(SpecError::RunAsNonRoot(format!(
                "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {:?}, container: {})",
                self.pod, self.container
            ))),
        }
    }

    fn as_root(&self) -> SpecError {
        SpecError::RunAsNonRoot(format!(
            "container has runAsNonRoot and image will run as root (pod: {:?}, container: {})",
            self.pod, self.container
        ))
    }
}

/// None when runAsNonRoot is off or runAsUser settles it; an error when runAsUser is 0.
pub fn non_root_check(pod: &Pod, c: &Container) -> Result<Option<NonRootCheck>, SpecError> {
    let e = effective(pod::spec(pod)?, c);
    if e.run_as_non_root != Some(true) {
        return Ok(None);
    }
    match e.run_as_user {
        Some(0) => Err(SpecError::RunAsNonRoot(format!(
            "container's runAsUser breaks non-root policy (pod: {:?}, container: {})",
            pod::format_pod(pod),
            c.name
        ))),
        Some(_) => Ok(None),
        None => Ok(Some(NonRootCheck {
            pod: pod::format_pod(pod),
            container: c.name.clone(),
        })),
    }
}

/// The container's CRI security context.
pub fn container_security(
    pod: &Pod,
    c: &Container,
    ctx: &Context,
) -> Result<LinuxContainerSecurityContext, SpecError> {
    let spec = pod::spec(pod)?;
    let path = pod::container_path(spec, c);
    let s = c.security_context.as_ref();
    if let Some(s) = s {
        if s.proc_mount.as_deref().is_some_and(|m| m != "Default") {
            // Unmasked needs a user namespace (the API says so), which peapod does not make.
            return Err(SpecError::unsupported(
                format!("{path}.securityContext.procMount"),
                "only Default",
            ));
        }
        if s.se_linux_options.is_some() {
            return Err(SpecError::unsupported(
                format!("{path}.securityContext.seLinuxOptions"),
                "SELinux",
            ));
        }
        if s.app_armor_profile.is_some() {
            return Err(SpecError::unsupported(
                format!("{path}.securityContext.appArmorProfile"),
                "AppArmor",
            ));
        }
    }
    let e = effective(spec, c);
    let caps = s.and_then(|s| s.capabilities.as_ref());
    Ok(LinuxContainerSecurityContext {
        capabilities: caps.map(|c| Capability {
            add_capabilities: c.add.clone().unwrap_or_default(),
            drop_capabilities: c.drop.clone().unwrap_or_default(),
            add_ambient_capabilities: Vec::new(),
        }),
        privileged: s.and_then(|s| s.privileged).unwrap_or(false),
        namespace_options: Some(namespace_options(spec)),
        run_as_user: e.run_as_user.map(|value| Int64Value { value }),
        run_as_group: e.run_as_group.map(|value| Int64Value { value }),
        readonly_rootfs: s.and_then(|s| s.read_only_root_filesystem).unwrap_or(false),
        supplemental_groups: supplemental_groups(spec),
        // kubelet's AddNoNewPrivileges: only an explicit allowPrivilegeEscalation: false.
        no_new_privs: s.and_then(|s| s.allow_privilege_escalation) == Some(false),
        seccomp: Some(seccomp(spec.security_context.as_ref(), s, ctx, &path)?),
        // Empty: the engine's defaults, the same lists kubelet sends for procMount Default.
        masked_paths: Vec::new(),
        readonly_paths: Vec::new(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podspec::testutil::{container, pod_with};
    use k8s_openapi::api::core::v1::Capabilities;

    #[test]
    fn namespace_modes() {
        let n = NamespaceMode::Node as i32;
        let p = NamespaceMode::Pod as i32;
        let c = NamespaceMode::Container as i32;
        // (hostNetwork, hostPID, hostIPC, shareProcessNamespace) → (network, pid, ipc)
        let cases = [
            ((None, None, None, None), (p, c, p)),
            ((Some(true), None, None, None), (n, c, p)),
            ((None, Some(true), None, None), (p, n, p)),
            ((None, None, Some(true), None), (p, c, n)),
            ((None, None, None, Some(true)), (p, p, p)),
            ((None, Some(true), None, Some(true)), (p, n, p)),
            (
                (Some(false), Some(false), Some(false), Some(false)),
                (p, c, p),
            ),
        ];
        for ((hn, hp, hi, share), want) in cases {
            let spec = PodSpec {
                host_network: hn,
                host_pid: hp,
                host_ipc: hi,
                share_process_namespace: share,
                ..Default::default()
            };
            let o = namespace_options(&spec);
            assert_eq!(
                (o.network, o.pid, o.ipc),
                want,
                "{hn:?} {hp:?} {hi:?} {share:?}"
            );
        }
    }

    #[test]
    fn seccomp_precedence() {
        let ctx = Context::default();
        let prof = |t: &str, l: Option<&str>| SeccompProfile {
            type_: t.into(),
            localhost_profile: l.map(str::to_string),
        };
        let pod_sc = PodSecurityContext {
            seccomp_profile: Some(prof("RuntimeDefault", None)),
            ..Default::default()
        };
        let c_sc = SecurityContext {
            seccomp_profile: Some(prof("Localhost", Some("profiles/a.json"))),
            ..Default::default()
        };
        let t = |p: SecurityProfile| (p.profile_type, p.localhost_ref);
        assert_eq!(
            t(seccomp(None, None, &ctx, "c").unwrap()),
            (ProfileType::Unconfined as i32, String::new())
        );
        let with_default = Context {
            seccomp_default: true,
            ..Default::default()
        };
        assert_eq!(
            t(seccomp(None, None, &with_default, "c").unwrap()).0,
            ProfileType::RuntimeDefault as i32
        );
        assert_eq!(
            t(seccomp(Some(&pod_sc), None, &ctx, "c").unwrap()).0,
            ProfileType::RuntimeDefault as i32
        );
        assert_eq!(
            t(seccomp(Some(&pod_sc), Some(&c_sc), &ctx, "c").unwrap()),
            (
                ProfileType::Localhost as i32,
                "/var/lib/kubelet/seccomp/profiles/a.json".into()
            )
        );
        let esc = SecurityContext {
            seccomp_profile: Some(prof("Localhost", Some("../etc/x"))),
            ..Default::default()
        };
        assert!(seccomp(None, Some(&esc), &ctx, "c").is_err());
        let none = SecurityContext {
            seccomp_profile: Some(prof("Localhost", None)),
            ..Default::default()
        };
        assert!(seccomp(None, Some(&none), &ctx, "c").is_err());
    }

    #[test]
    fn container_context_fields() {
        let mut c = container("c");
        c.security_context = Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            privileged: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            run_as_group: Some(7),
            ..Default::default()
        });
        let mut p = pod_with(vec![c.clone()]);
        p.spec.as_mut().unwrap().security_context = Some(PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(1),
            fs_group: Some(2000),
            supplemental_groups: Some(vec![3000, 3001]),
            ..Default::default()
        });
        let sc = container_security(&p, &c, &Context::default()).unwrap();
        let caps = sc.capabilities.unwrap();
        assert_eq!(
            (caps.add_capabilities, caps.drop_capabilities),
            (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
        );
        assert!(sc.privileged && sc.readonly_rootfs && sc.no_new_privs);
        assert_eq!(sc.run_as_user, Some(Int64Value { value: 1000 }));
        assert_eq!(sc.run_as_group, Some(Int64Value { value: 7 }));
        assert_eq!(sc.supplemental_groups, [2000, 3000, 3001]);
        // allowPrivilegeEscalation unset → no_new_privs false, as kubelet.
        let plain = container("d");
        let p2 = pod_with(vec![plain.clone()]);
        assert!(
            !container_security(&p2, &plain, &Context::default())
                .unwrap()
                .no_new_privs
        );
        let mut unmasked = container("u");
        unmasked.security_context = Some(SecurityContext {
            proc_mount: Some("Unmasked".into()),
            ..Default::default()
        });
        let p3 = pod_with(vec![unmasked.clone()]);
        assert!(matches!(
            container_security(&p3, &unmasked, &Context::default()),
            Err(SpecError::Unsupported { .. })
        ));
    }

    #[test]
    fn run_as_non_root() {
        let with = |pod_sc: Option<(Option<bool>, Option<i64>)>,
                    c_sc: Option<(Option<bool>, Option<i64>)>| {
            let mut c = container("app");
            c.security_context = c_sc.map(|(n, u)| SecurityContext {
                run_as_non_root: n,
                run_as_user: u,
                ..Default::default()
            });
            let mut p = pod_with(vec![c.clone()]);
            p.spec.as_mut().unwrap().security_context = pod_sc.map(|(n, u)| PodSecurityContext {
                run_as_non_root: n,
                run_as_user: u,
                ..Default::default()
            });
            non_root_check(&p, &c)
        };
        assert_eq!(with(None, None), Ok(None));
        assert_eq!(with(Some((Some(true), Some(1000))), None), Ok(None));
        assert_eq!(
            with(Some((Some(true), None)), Some((None, Some(0)))).unwrap_err().to_string(),
            "container's runAsUser breaks non-root policy (pod: \"web_default(uid-1)\", container: app)"
        );
        // The container's runAsNonRoot: false overrides the pod's.
        assert_eq!(
            with(Some((Some(true), None)), Some((Some(false), None))),
            Ok(None)
        );
        let check = with(Some((Some(true), None)), None).unwrap().unwrap();
        assert_eq!(check.verify("1000"), Ok(()));
        assert_eq!(check.verify("1000:0"), Ok(()));
        for root in ["", "0", "0:0"] {
            assert_eq!(
                check.verify(root).unwrap_err().to_string(),
                "container has runAsNonRoot and image will run as root (pod: \"web_default(uid-1)\", container: app)",
                "{root:?}"
            );
        }
        assert!(check
            .verify("nginx")
            .unwrap_err()
            .to_string()
            .contains("non-numeric user (nginx)"));
    }
}
