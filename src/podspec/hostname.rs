//! The pod's hostname and domain (kubelet's `GeneratePodHostNameAndDomain` and
//! `GetNodenameForKernel`) and the managed hosts file (`managedHostsFileContent`), which the
//! executor writes where `Paths::etc_hosts` says.

use k8s_openapi::api::core::v1::Pod;

use super::context::Context;
use super::error::SpecError;
use super::pod;

const MAX_HOSTNAME: usize = 63;
const MAX_FQDN: usize = 64;

/// The pod's hostname and, with a subdomain, its domain (`<subdomain>.<ns>.svc.<cluster>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodHostname {
    pub hostname: String,
    pub domain: Option<String>,
    /// What the kernel's UTS name is set to: the FQDN with `setHostnameAsFQDN`, else the
    /// hostname.
    pub kernel_name: String,
}

pub fn pod_hostname(pod: &Pod, ctx: &Context) -> Result<PodHostname, SpecError> {
    let spec = pod::spec(pod)?;
    let mut hostname = pod::name(pod).to_string();
    if let Some(h) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        if !is_dns1123_label(h) {
            return Err(SpecError::invalid(
                "spec.hostname",
                format!("pod Hostname {h:?} is not a valid DNS label"),
            ));
        }
        hostname = h.to_string();
    }
    if hostname.len() > MAX_HOSTNAME {
        // kubelet truncates to 63 and trims a trailing '-' or '.'.
        hostname.truncate(MAX_HOSTNAME);
        let trimmed = hostname.trim_end_matches(['-', '.']).to_string();
        if trimmed.is_empty() {
            return Err(SpecError::invalid(
                "metadata.name",
                "hostname is empty after truncation",
            ));
        }
        hostname = trimmed;
    }
    let domain = match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) if !is_dns1123_label(s) => {
            return Err(SpecError::invalid(
                "spec.subdomain",
                format!("pod Subdomain {s:?} is not a valid DNS label"),
            ))
        }
        Some(s) => Some(format!(
            "{s}.{}.svc.{}",
            pod::namespace(pod),
            ctx.cluster_domain
        )),
    };
    let kernel_name = match (&domain, spec.set_hostname_as_fqdn) {
        (Some(d), Some(true)) => {
            let fqdn = format!("{hostname}.{d}");
            if fqdn.len() > MAX_FQDN {
                return Err(SpecError::invalid(
                    "spec.setHostnameAsFQDN",
                    format!(
                        "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long ({MAX_FQDN} characters is the max, {} characters requested)",
                        fqdn.len()
                    ),
                ));
            }
            fqdn
        }
        _ => hostname.clone(),
    };
    Ok(PodHostname {
        hostname,
        domain,
        kernel_name,
    })
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_HOSTNAME
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// kubelet's managed /etc/hosts for a pod on its own network: the loopback entries, one line
/// per pod IP naming the pod (with its FQDN when it has a subdomain), then hostAliases.
pub fn hosts_file(pod: &Pod, ctx: &Context) -> Result<String, SpecError> {
    let spec = pod::spec(pod)?;
    let h = pod_hostname(pod, ctx)?;
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in &ctx.pod_ips {
        match &h.domain {
            Some(d) => out.push_str(&format!("{ip}\t{}.{d}\t{}\n", h.hostname, h.hostname)),
            None => out.push_str(&format!("{ip}\t{}\n", h.hostname)),
        }
    }
    out.push_str(&host_aliases(spec));
    Ok(out)
}

/// The `# Entries added by HostAliases.` block; kubelet appends it to the node's own hosts
/// file for hostNetwork pods.
pub fn host_aliases(spec: &k8s_openapi::api::core::v1::PodSpec) -> String {
    let aliases = spec.host_aliases.as_deref().unwrap_or(&[]);
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        for name in a.hostnames.iter().flatten() {
            out.push_str(&format!("{}\t{name}\n", a.ip));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podspec::testutil::{container, pod_with};
    use k8s_openapi::api::core::v1::HostAlias;

    #[test]
    fn hostnames() {
        let ctx = Context {
            cluster_domain: "cluster.local".into(),
            ..Default::default()
        };
        let mut p = pod_with(vec![container("c")]);
        assert_eq!(pod_hostname(&p, &ctx).unwrap().hostname, "web");
        let s = p.spec.as_mut().unwrap();
        s.hostname = Some("box".into());
        s.subdomain = Some("sub".into());
        let h = pod_hostname(&p, &ctx).unwrap();
        assert_eq!(
            (
                h.hostname.as_str(),
                h.domain.as_deref(),
                h.kernel_name.as_str()
            ),
            ("box", Some("sub.default.svc.cluster.local"), "box")
        );
        p.spec.as_mut().unwrap().set_hostname_as_fqdn = Some(true);
        assert_eq!(
            pod_hostname(&p, &ctx).unwrap().kernel_name,
            "box.sub.default.svc.cluster.local"
        );
        p.spec.as_mut().unwrap().hostname = Some("Bad_Name".into());
        assert!(pod_hostname(&p, &ctx).is_err());
        let mut long = pod_with(vec![container("c")]);
        long.metadata.name = Some(format!("{}-{}", "a".repeat(62), "b"));
        assert_eq!(pod_hostname(&long, &ctx).unwrap().hostname, "a".repeat(62));
    }

    #[test]
    fn managed_hosts_file() {
        let ctx = Context {
            cluster_domain: "cluster.local".into(),
            pod_ips: vec!["10.88.0.5".into()],
            ..Default::default()
        };
        let mut p = pod_with(vec![container("c")]);
        let s = p.spec.as_mut().unwrap();
        s.subdomain = Some("sub".into());
        s.host_aliases = Some(vec![HostAlias {
            ip: "1.2.3.4".into(),
            hostnames: Some(vec!["foo".into(), "bar".into()]),
        }]);
        let text = hosts_file(&p, &ctx).unwrap();
        assert!(text.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.88.0.5\tweb.sub.default.svc.cluster.local\tweb\n"));
        assert!(text.ends_with("\n# Entries added by HostAliases.\n1.2.3.4\tfoo\n1.2.3.4\tbar\n"));
    }
}
