//! Pod → `PodSandboxConfig`, as kubelet's `generatePodSandboxConfig`.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

use crate::api::{
    Int64Value, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, PodSandboxConfig,
    PodSandboxMetadata, PortMapping, Protocol,
};

use super::context::Context;
use super::dns::dns_config;
use super::error::SpecError;
use super::hostname::pod_hostname;
use super::labels;
use super::pod;
use super::qos::{cgroup_parent, qos_class};
use super::resources::sandbox_resources;
use super::security::{check_pod_security, namespace_options, seccomp, supplemental_groups};

/// The sandbox config of `pod` with identity `uid` (kubelet derives a static pod's UID from
/// its manifest) and `attempt` (how many sandboxes the pod had before this one).
pub fn sandbox_config(
    pod: &Pod,
    uid: &str,
    attempt: u32,
    ctx: &Context,
) -> Result<PodSandboxConfig, SpecError> {
    let spec = pod::spec(pod)?;
    check_pod_security(spec)?;
    let name = pod::name(pod);
    let namespace = pod::namespace(pod);
    // A hostNetwork pod keeps the node's hostname: kubelet sets none.
    let hostname = if spec.host_network == Some(true) {
        String::new()
    } else {
        pod_hostname(pod, ctx)?.kernel_name
    };
    Ok(PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: namespace.into(),
            attempt,
        }),
        hostname,
        log_directory: ctx
            .paths
            .log_root
            .join(format!("{namespace}_{name}_{uid}"))
            .to_string_lossy()
            .into_owned(),
        dns_config: Some(dns_config(pod, ctx)?),
        port_mappings: port_mappings(spec)?,
        labels: labels::pod_labels(pod, uid),
        annotations: pod
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(linux(spec, uid, ctx)?),
        windows: None,
    })
}

fn linux(spec: &PodSpec, uid: &str, ctx: &Context) -> Result<LinuxPodSandboxConfig, SpecError> {
    let sc = spec.security_context.as_ref();
    let mut sysctls = BTreeMap::new();
    for (i, s) in sc
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        // A name or value carrying `=` or `+` could smuggle a second key into the runtime's
        // sysctl handling (CRI-O CVE-2022-0811).
        if s.name.is_empty()
            || s.name.contains(['=', '+', ' '])
            || s.value.contains(['=', '+', '\n'])
        {
            return Err(SpecError::invalid(
                format!("spec.securityContext.sysctls[{i}]"),
                format!("invalid sysctl {}={}", s.name, s.value),
            ));
        }
        sysctls.insert(s.name.clone(), s.value.clone());
    }
    let (resources, overhead) = sandbox_resources(spec, ctx)?;
    Ok(LinuxPodSandboxConfig {
        cgroup_parent: cgroup_parent(qos_class(spec)?, uid, ctx),
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(namespace_options(spec)),
            run_as_user: sc
                .and_then(|s| s.run_as_user)
                .map(|value| Int64Value { value }),
            run_as_group: sc
                .and_then(|s| s.run_as_group)
                .map(|value| Int64Value { value }),
            supplemental_groups: supplemental_groups(spec),
            privileged: all_containers(spec).any(is_privileged),
            seccomp: Some(seccomp(sc, None, ctx, "spec")?),
            ..Default::default()
        }),
        sysctls: sysctls.into_iter().collect(),
        overhead,
        resources: Some(resources),
    })
}

fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    pod::init_containers(spec).iter().chain(&spec.containers)
}

fn is_privileged(c: &Container) -> bool {
    c.security_context.as_ref().and_then(|s| s.privileged) == Some(true)
}

/// kubelet's rule: every app container port with a hostPort is mapped; a port repeated in a
/// container (same name, or same family, protocol, host IP and ports) is kept once.
pub fn port_mappings(spec: &PodSpec) -> Result<Vec<PortMapping>, SpecError> {
    let mut out = Vec::new();
    for (ci, c) in spec.containers.iter().enumerate() {
        let mut names = HashSet::new();
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let path = format!("spec.containers[{ci}].ports[{pi}]");
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                "SCTP" => Protocol::Sctp,
                other => {
                    return Err(SpecError::invalid(
                        format!("{path}.protocol"),
                        format!("unsupported protocol {other:?}"),
                    ))
                }
            };
            let host_ip = p.host_ip.clone().unwrap_or_default();
            let host_port = p.host_port.unwrap_or(0);
            let family = if host_ip.is_empty() {
                "any"
            } else if host_ip.contains(':') {
                "v6"
            } else {
                "v4"
            };
            let name = match p.name.as_deref().filter(|n| !n.is_empty()) {
                Some(n) => n.to_string(),
                None => format!(
                    "{family}-{}-{host_ip}:{}:{host_port}",
                    protocol.as_str_name(),
                    p.container_port
                ),
            };
            if !names.insert(name) || host_port <= 0 {
                continue;
            }
            if !(1..=65535).contains(&p.container_port) || host_port > 65535 {
                return Err(SpecError::invalid(path, "port out of range"));
            }
            out.push(PortMapping {
                protocol: protocol as i32,
                container_port: p.container_port,
                host_port,
                host_ip,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NamespaceMode;
    use crate::podspec::testutil::{container, pod_with};
    use k8s_openapi::api::core::v1::{ContainerPort, PodSecurityContext, SecurityContext, Sysctl};

    fn port(
        name: Option<&str>,
        cport: i32,
        hport: Option<i32>,
        proto: Option<&str>,
        ip: Option<&str>,
    ) -> ContainerPort {
        ContainerPort {
            name: name.map(str::to_string),
            container_port: cport,
            host_port: hport,
            protocol: proto.map(str::to_string),
            host_ip: ip.map(str::to_string),
        }
    }

    #[test]
    fn host_port_mappings() {
        let mut a = container("a");
        a.ports = Some(vec![
            port(Some("http"), 80, Some(8080), None, None),
            port(Some("metrics"), 9090, None, None, None),
            port(None, 53, Some(5353), Some("UDP"), Some("127.0.0.1")),
            port(None, 53, Some(5353), Some("UDP"), Some("127.0.0.1")),
            port(Some("http"), 81, Some(8081), None, None),
        ]);
        let mut b = container("b");
        b.ports = Some(vec![port(None, 443, Some(8443), Some("TCP"), Some("::1"))]);
        let p = pod_with(vec![a, b]);
        let got: Vec<_> = port_mappings(p.spec.as_ref().unwrap())
            .unwrap()
            .into_iter()
            .map(|m| (m.protocol, m.container_port, m.host_port, m.host_ip))
            .collect();
        assert_eq!(
            got,
            [
                (Protocol::Tcp as i32, 80, 8080, String::new()),
                (Protocol::Udp as i32, 53, 5353, "127.0.0.1".into()),
                (Protocol::Tcp as i32, 443, 8443, "::1".into()),
            ]
        );
    }

    #[test]
    fn sandbox_fields() {
        let mut c = container("c");
        c.security_context = Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        });
        let mut p = pod_with(vec![c]);
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        p.metadata.annotations = Some([("note".to_string(), "n".to_string())].into());
        let s = p.spec.as_mut().unwrap();
        s.share_process_namespace = Some(true);
        s.security_context = Some(PodSecurityContext {
            run_as_user: Some(1000),
            fs_group: Some(2000),
            sysctls: Some(vec![Sysctl {
                name: "net.core.somaxconn".into(),
                value: "1024".into(),
            }]),
            ..Default::default()
        });
        let ctx = Context::default();
        let cfg = sandbox_config(&p, "uid-9", 1, &ctx).unwrap();
        let m = cfg.metadata.unwrap();
        assert_eq!(
            (
                m.name.as_str(),
                m.namespace.as_str(),
                m.uid.as_str(),
                m.attempt
            ),
            ("web", "default", "uid-9", 1)
        );
        assert_eq!(cfg.hostname, "web");
        assert_eq!(cfg.log_directory, "/var/log/pods/default_web_uid-9");
        assert_eq!(cfg.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(
            cfg.labels.get("io.kubernetes.pod.uid").map(String::as_str),
            Some("uid-9")
        );
        assert_eq!(
            cfg.labels.get("io.kubernetes.pod.name").map(String::as_str),
            Some("web")
        );
        assert_eq!(
            cfg.labels
                .get("io.kubernetes.pod.namespace")
                .map(String::as_str),
            Some("default")
        );
        assert_eq!(cfg.annotations.get("note").map(String::as_str), Some("n"));
        let l = cfg.linux.unwrap();
        assert_eq!(l.cgroup_parent, "/kubepods/besteffort/poduid-9");
        assert_eq!(
            l.sysctls.get("net.core.somaxconn").map(String::as_str),
            Some("1024")
        );
        let sc = l.security_context.unwrap();
        assert!(sc.privileged);
        assert_eq!(sc.run_as_user, Some(Int64Value { value: 1000 }));
        assert_eq!(sc.supplemental_groups, [2000]);
        assert_eq!(sc.namespace_options.unwrap().pid, NamespaceMode::Pod as i32);
        assert_eq!(l.resources.unwrap().cpu_shares, 2);
        assert!(l.overhead.is_none());
    }

    #[test]
    fn host_network_keeps_node_hostname_and_smuggled_sysctls_refused() {
        let mut p = pod_with(vec![container("c")]);
        p.spec.as_mut().unwrap().host_network = Some(true);
        let cfg = sandbox_config(&p, "u", 0, &Context::default()).unwrap();
        assert_eq!(cfg.hostname, "");
        assert_eq!(
            cfg.linux
                .unwrap()
                .security_context
                .unwrap()
                .namespace_options
                .unwrap()
                .network,
            NamespaceMode::Node as i32
        );
        p.spec.as_mut().unwrap().security_context = Some(PodSecurityContext {
            sysctls: Some(vec![Sysctl {
                name: "kernel.shm_rmid_forced".into(),
                value: "1+kernel.core_pattern=|/x".into(),
            }]),
            ..Default::default()
        });
        assert!(sandbox_config(&p, "u", 0, &Context::default()).is_err());
    }
}
