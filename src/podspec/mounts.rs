//! A container's mounts, as kubelet's `makeMounts` and the runtime manager's `makeMounts`:
//! one per volumeMount (subPath joined, propagation translated), the managed `/etc/hosts`,
//! and the termination-message file.

use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::api::{Mount, MountPropagation};

use super::context::Context;
use super::env::Env;
use super::error::SpecError;
use super::labels::termination_message_path;
use super::pod;
use super::volumes::host_path;

/// A subPath the executor must create (if missing) and resolve inside its volume before the
/// container starts, with the root-confined resolution that stops symlinks from escaping
/// (kubelet's `SafeMakeDir` and `PrepareSafeSubpath`); the mount's host_path is the join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubPath {
    pub volume_root: PathBuf,
    pub sub_path: PathBuf,
    pub mount_index: usize,
}

/// Mounts plus the subPaths to prepare and the termination-log file to create (empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Mounts {
    pub mounts: Vec<Mount>,
    pub sub_paths: Vec<SubPath>,
    pub termination_log: PathBuf,
}

/// The host file of this container instance's termination message: kubelet's
/// `<pod dir>/containers/<name>/<id>`, the id being the restart count (unique per instance).
pub fn termination_log_host_path(c: &Container, ctx: &Context) -> PathBuf {
    ctx.paths
        .pod_dir
        .join("containers")
        .join(&c.name)
        .join(ctx.restart_count.to_string())
}

pub fn mounts(pod: &Pod, c: &Container, env: &Env, ctx: &Context) -> Result<Mounts, SpecError> {
    let spec = pod::spec(pod)?;
    let cpath = pod::container_path(spec, c);
    let privileged = c.security_context.as_ref().and_then(|s| s.privileged) == Some(true);
    let mut out = Mounts {
        mounts: Vec::new(),
        sub_paths: Vec::new(),
        termination_log: termination_log_host_path(c, ctx),
    };
    let mut hosts_taken = false;
    for (i, vm) in c.volume_mounts.iter().flatten().enumerate() {
        let path = format!("{cpath}.volumeMounts[{i}]");
        let vol = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == vm.name)
            .ok_or_else(|| {
                SpecError::invalid(
                    format!("{path}.name"),
                    format!(
                        "cannot find volume {:?} to mount into container {:?}",
                        vm.name, c.name
                    ),
                )
            })?;
        let volume_root = host_path(vol, ctx)?;
        let container_path = container_path(&vm.mount_path, &format!("{path}.mountPath"))?;
        hosts_taken |= container_path == "/etc/hosts";
        let mut sub = vm.sub_path.clone().unwrap_or_default();
        if let Some(expr) = vm.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            sub = expand_sub_path(expr, env)
                .map_err(|r| SpecError::invalid(format!("{path}.subPathExpr"), r))?;
        }
        let mut host = volume_root.clone();
        if !sub.is_empty() {
            if Path::new(&sub).is_absolute() {
                return Err(SpecError::invalid(
                    format!("{path}.subPath"),
                    format!("error SubPath `{sub}` must not be an absolute path"),
                ));
            }
            if sub.split('/').any(|p| p == "..") {
                return Err(SpecError::invalid(
                    format!("{path}.subPath"),
                    format!("unable to provision SubPath `{sub}`: must not contain '..'"),
                ));
            }
            host = volume_root.join(&sub);
            out.sub_paths.push(SubPath {
                volume_root: volume_root.clone(),
                sub_path: PathBuf::from(&sub),
                mount_index: out.mounts.len(),
            });
        }
        let propagation =
            match vm.mount_propagation.as_deref() {
                None | Some("None") => MountPropagation::PropagationPrivate,
                Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
                Some("Bidirectional") if privileged => MountPropagation::PropagationBidirectional,
                Some("Bidirectional") => return Err(SpecError::invalid(
                    format!("{path}.mountPropagation"),
                    "Bidirectional mount propagation is available only to privileged containers",
                )),
                Some(other) => {
                    return Err(SpecError::invalid(
                        format!("{path}.mountPropagation"),
                        format!("invalid MountPropagation mode: {other:?}"),
                    ))
                }
            };
        match vm.recursive_read_only.as_deref() {
            None | Some("Disabled") | Some("IfPossible") => {}
            Some(other) => {
                return Err(SpecError::unsupported(
                    format!("{path}.recursiveReadOnly"),
                    format!("{other:?}"),
                ))
            }
        }
        // configMap, secret, downwardAPI and projected volumes are always read-only
        // (their mounters say so since CVE-2017-1002102).
        let must_ro = vol.config_map.is_some()
            || vol.secret.is_some()
            || vol.downward_api.is_some()
            || vol.projected.is_some();
        out.mounts.push(Mount {
            container_path,
            host_path: host.to_string_lossy().into_owned(),
            readonly: vm.read_only == Some(true) || must_ro,
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    // kubelet mounts its hosts file once the pod has an address, unless a volume took
    // /etc/hosts.
    if let Some(hosts) = &ctx.paths.etc_hosts {
        if !hosts_taken && !ctx.pod_ips.is_empty() {
            out.mounts.push(Mount {
                container_path: "/etc/hosts".into(),
                host_path: hosts.to_string_lossy().into_owned(),
                ..Default::default()
            });
        }
    }
    out.mounts.push(Mount {
        container_path: termination_message_path(c).to_string(),
        host_path: out.termination_log.to_string_lossy().into_owned(),
        ..Default::default()
    });
    Ok(out)
}

/// A mount path made absolute and clean, as kubelet's `MakeAbsolutePath`; a path that climbs
/// above `/` is refused.
fn container_path(p: &str, path: &str) -> Result<String, SpecError> {
    if p.is_empty() {
        return Err(SpecError::invalid(path, "required"));
    }
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => return Err(SpecError::invalid(path, "must not contain '..'")),
            _ => {}
        }
    }
    let joined: PathBuf = parts.iter().collect();
    Ok(format!("/{}", joined.to_string_lossy()))
}

/// `ExpandContainerVolumeMounts`: every referenced variable must have a non-empty value.
fn expand_sub_path(expr: &str, env: &Env) -> Result<String, String> {
    let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let out = super::expand::expand(expr, |name| match env.get(name) {
        Some(v) if !v.is_empty() => Some(v.to_string()),
        _ => {
            missing.borrow_mut().insert(name.to_string());
            Some(String::new())
        }
    });
    let missing = missing.into_inner();
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "missing value for {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podspec::env::environment;
    use crate::podspec::testutil::{container, pod_with};
    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, EmptyDirVolumeSource, EnvVar, SecurityContext, Volume, VolumeMount,
    };

    fn vm(name: &str, path: &str, f: impl FnOnce(&mut VolumeMount)) -> VolumeMount {
        let mut m = VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..Default::default()
        };
        f(&mut m);
        m
    }

    fn run(
        mounts_: Vec<VolumeMount>,
        privileged: bool,
        ctx: &Context,
    ) -> Result<Mounts, SpecError> {
        let mut c = container("app");
        c.volume_mounts = Some(mounts_);
        c.env = Some(vec![EnvVar {
            name: "POD".into(),
            value: Some("p1".into()),
            value_from: None,
        }]);
        if privileged {
            c.security_context = Some(SecurityContext {
                privileged: Some(true),
                ..Default::default()
            });
        }
        let mut p = pod_with(vec![c.clone()]);
        p.spec.as_mut().unwrap().volumes = Some(vec![
            Volume {
                name: "data".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
            Volume {
                name: "cfg".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: "cfg".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]);
        let env = environment(&p, &c, ctx)?;
        mounts(&p, &c, &env, ctx)
    }

    fn ctx() -> Context {
        let mut c = Context::default();
        c.paths.pod_dir = "/pods/u".into();
        c.paths.etc_hosts = Some("/pods/u/etc-hosts".into());
        c.pod_ips = vec!["10.0.0.2".into()];
        c.restart_count = 2;
        c
    }

    #[test]
    fn volume_mounts() {
        let m = run(
            vec![
                vm("data", "/data", |_| {}),
                vm("data", "logs", |m| {
                    m.sub_path = Some("a/b".into());
                    m.read_only = Some(true);
                    m.mount_propagation = Some("HostToContainer".into());
                }),
                vm("data", "/per-pod", |m| {
                    m.sub_path_expr = Some("x/$(POD)".into())
                }),
                vm("cfg", "/etc/cfg", |_| {}),
            ],
            false,
            &ctx(),
        )
        .unwrap();
        let got: Vec<_> = m
            .mounts
            .iter()
            .map(|m| {
                (
                    m.container_path.as_str(),
                    m.host_path.as_str(),
                    m.readonly,
                    m.propagation,
                )
            })
            .collect();
        let ed = "/pods/u/volumes/kubernetes.io~empty-dir/data";
        let private = MountPropagation::PropagationPrivate as i32;
        assert_eq!(
            got,
            [
                ("/data", ed, false, private),
                (
                    "/logs",
                    &format!("{ed}/a/b")[..],
                    true,
                    MountPropagation::PropagationHostToContainer as i32
                ),
                ("/per-pod", &format!("{ed}/x/p1")[..], false, private),
                (
                    "/etc/cfg",
                    "/pods/u/volumes/kubernetes.io~configmap/cfg",
                    true,
                    private
                ),
                ("/etc/hosts", "/pods/u/etc-hosts", false, private),
                (
                    "/dev/termination-log",
                    "/pods/u/containers/app/2",
                    false,
                    private
                ),
            ]
        );
        assert_eq!(m.sub_paths.len(), 2);
        assert_eq!(m.sub_paths[0].mount_index, 1);
    }

    #[test]
    fn refused_mounts() {
        let c = ctx();
        let cases: Vec<(VolumeMount, bool, &str)> = vec![
            (
                vm("data", "/d", |m| m.sub_path = Some("../../etc".into())),
                false,
                "unable to provision SubPath `../../etc`: must not contain '..'",
            ),
            (
                vm("data", "/d", |m| m.sub_path = Some("a/../../x".into())),
                false,
                "must not contain '..'",
            ),
            (
                vm("data", "/d", |m| m.sub_path = Some("/etc".into())),
                false,
                "error SubPath `/etc` must not be an absolute path",
            ),
            (
                vm("data", "/d", |m| m.sub_path_expr = Some("$(NOPE)".into())),
                false,
                "missing value for NOPE",
            ),
            (
                vm("data", "/d", |m| {
                    m.mount_propagation = Some("Bidirectional".into())
                }),
                false,
                "only to privileged containers",
            ),
            (
                vm("data", "/d", |m| {
                    m.mount_propagation = Some("Sideways".into())
                }),
                false,
                "invalid MountPropagation mode",
            ),
            (
                vm("gone", "/d", |_| {}),
                false,
                "cannot find volume \"gone\" to mount into container \"app\"",
            ),
            (vm("data", "/../d", |_| {}), false, "must not contain '..'"),
        ];
        for (m, privileged, want) in cases {
            let e = run(vec![m.clone()], privileged, &c)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{m:?}: {e}");
        }
        let ok = run(
            vec![vm("data", "/d", |m| {
                m.mount_propagation = Some("Bidirectional".into())
            })],
            true,
            &c,
        )
        .unwrap();
        assert_eq!(
            ok.mounts[0].propagation,
            MountPropagation::PropagationBidirectional as i32
        );
    }

    #[test]
    fn hosts_mount_rules() {
        let mut c = ctx();
        // A volume at /etc/hosts wins.
        let m = run(
            vec![vm("data", "/etc/hosts", |m| {
                m.sub_path = Some("hosts".into())
            })],
            false,
            &c,
        )
        .unwrap();
        assert_eq!(
            m.mounts
                .iter()
                .filter(|m| m.container_path == "/etc/hosts")
                .count(),
            1
        );
        // No pod IP yet: no hosts mount, as kubelet.
        c.pod_ips.clear();
        let m = run(vec![], false, &c).unwrap();
        assert!(m.mounts.iter().all(|m| m.container_path != "/etc/hosts"));
    }
}
