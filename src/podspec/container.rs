//! Pod container → `ContainerConfig`, as kubelet's `generateContainerConfig` and
//! `generateLinuxContainerConfig`.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::api::{ContainerConfig, ContainerMetadata, ImageSpec, KeyValue, LinuxContainerConfig};

use super::context::Context;
use super::env::environment;
use super::error::SpecError;
use super::labels;
use super::mounts::{mounts, SubPath};
use super::pod;
use super::resources::container_resources;
use super::security::{container_security, non_root_check, NonRootCheck};

/// The CRI config and what the executor still has to do around it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPlan {
    /// What CreateContainer gets. `image.image` is the name from the spec; the executor puts
    /// the pulled image's reference there, as kubelet passes its image ref.
    pub config: ContainerConfig,
    /// The runAsNonRoot check to run against the image's user before CreateContainer.
    pub non_root: Option<NonRootCheck>,
    /// subPaths to create and resolve inside their volumes.
    pub sub_paths: Vec<SubPath>,
    /// The empty termination-log file to create on the host.
    pub termination_log: PathBuf,
}

/// The container's config, for the restart count in `ctx`. Every error is kubelet's
/// CreateContainerConfigError, with the error's text as the message.
pub fn container_config(
    pod: &Pod,
    c: &Container,
    ctx: &Context,
) -> Result<ContainerPlan, SpecError> {
    let spec = pod::spec(pod)?;
    let path = pod::container_path(spec, c);
    check_supported(c, &path)?;
    let image = c
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| SpecError::invalid(format!("{path}.image"), "required"))?;
    let non_root = non_root_check(pod, c)?;
    let env = environment(pod, c, ctx)?;
    // The command replaces the image's entrypoint and args its cmd; both go to the runtime
    // as written, after $(VAR) expansion against the final environment.
    let command = c.command.iter().flatten().map(|s| env.expand(s)).collect();
    let args = c.args.iter().flatten().map(|s| env.expand(s)).collect();
    let m = mounts(pod, c, &env, ctx)?;
    let mut resources = container_resources(pod, c, ctx)?;
    resources.oom_score_adj = resources.oom_score_adj.clamp(-1000, 1000);
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: c.name.clone(),
            attempt: ctx.restart_count,
        }),
        image: Some(ImageSpec {
            image: image.clone(),
            user_specified_image: image,
            ..Default::default()
        }),
        command,
        args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env
            .vars()
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: v.clone().into_bytes(),
            })
            .collect(),
        mounts: m.mounts,
        labels: labels::container_labels(pod, c),
        annotations: labels::container_annotations(pod, c, ctx.restart_count),
        // Relative to the sandbox's log directory, as kubelet's `buildContainerLogsPath`.
        log_path: format!("{}/{}.log", c.name, ctx.restart_count),
        stdin: c.stdin == Some(true),
        stdin_once: c.stdin_once == Some(true),
        tty: c.tty == Some(true),
        linux: Some(LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(container_security(pod, c, ctx)?),
        }),
        ..Default::default()
    };
    Ok(ContainerPlan {
        config,
        non_root,
        sub_paths: m.sub_paths,
        termination_log: m.termination_log,
    })
}

/// Fields peapod does not implement are refused with their path, never ignored.
fn check_supported(c: &Container, path: &str) -> Result<(), SpecError> {
    if c.volume_devices.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(SpecError::unsupported(
            format!("{path}.volumeDevices"),
            "block volumes",
        ));
    }
    if c.resources
        .as_ref()
        .and_then(|r| r.claims.as_ref())
        .is_some_and(|cl| !cl.is_empty())
    {
        return Err(SpecError::unsupported(
            format!("{path}.resources.claims"),
            "dynamic resource allocation",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podspec::testutil::{container, pod_with};
    use k8s_openapi::api::core::v1::{EnvVar, PodSecurityContext, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn full_config() {
        let mut c = container("app");
        c.command = Some(vec!["/bin/sh".into(), "-c".into()]);
        c.args = Some(vec!["echo $(GREETING) $$(GREETING) $(UNSET)".into()]);
        c.working_dir = Some("/work".into());
        c.env = Some(vec![EnvVar {
            name: "GREETING".into(),
            value: Some("hi".into()),
            value_from: None,
        }]);
        c.tty = Some(true);
        c.resources = Some(ResourceRequirements {
            requests: Some([("cpu".to_string(), Quantity("100m".into()))].into()),
            ..Default::default()
        });
        let p = pod_with(vec![c.clone()]);
        let mut ctx = Context {
            restart_count: 4,
            memory_capacity: 1 << 30,
            ..Default::default()
        };
        ctx.paths.pod_dir = "/pods/uid-1".into();
        let plan = container_config(&p, &c, &ctx).unwrap();
        let cfg = plan.config;
        assert_eq!(
            cfg.metadata.as_ref().map(|m| (m.name.as_str(), m.attempt)),
            Some(("app", 4))
        );
        assert_eq!(
            cfg.image.as_ref().map(|i| i.image.as_str()),
            Some("busybox:1.36")
        );
        assert_eq!(cfg.command, ["/bin/sh", "-c"]);
        assert_eq!(cfg.args, ["echo hi $(GREETING) $(UNSET)"]);
        assert_eq!(cfg.working_dir, "/work");
        assert_eq!(cfg.envs.len(), 1);
        assert_eq!(cfg.log_path, "app/4.log");
        assert!(cfg.tty && !cfg.stdin);
        assert_eq!(
            cfg.annotations
                .get("io.kubernetes.container.restartCount")
                .map(String::as_str),
            Some("4")
        );
        let r = cfg
            .linux
            .as_ref()
            .and_then(|l| l.resources.as_ref())
            .unwrap();
        assert_eq!((r.cpu_shares, r.cpu_quota, r.oom_score_adj), (102, 0, 999));
        assert_eq!(
            plan.termination_log,
            PathBuf::from("/pods/uid-1/containers/app/4")
        );
        assert!(plan.non_root.is_none());
    }

    #[test]
    fn run_as_non_root_is_deferred_to_the_image() {
        let c = container("app");
        let mut p = pod_with(vec![c.clone()]);
        p.spec.as_mut().unwrap().security_context = Some(PodSecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        });
        let plan = container_config(&p, &c, &Context::default()).unwrap();
        assert!(plan.non_root.unwrap().verify("0").is_err());
    }

    #[test]
    fn missing_config_map_is_a_missing_error() {
        let mut c = container("app");
        c.env = Some(vec![EnvVar {
            name: "X".into(),
            value: None,
            value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                config_map_key_ref: Some(k8s_openapi::api::core::v1::ConfigMapKeySelector {
                    name: "x".into(),
                    key: "y".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
        }]);
        let p = pod_with(vec![c.clone()]);
        let e = container_config(&p, &c, &Context::default()).unwrap_err();
        assert!(matches!(e, SpecError::Missing(_)));
        assert_eq!(e.to_string(), "configmap \"x\" not found");
    }
}
