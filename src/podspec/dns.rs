//! The pod's resolver configuration, as kubelet's `GetPodDNS` (pkg/kubelet/network/dns).

use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};

use crate::api::DnsConfig;

use super::context::Context;
use super::error::SpecError;
use super::pod;

/// The API's limits; kubelet drops what is beyond them (with a DNSConfigForming event).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

/// `ndots:5` so that names in the cluster resolve through the search list first.
const CLUSTER_OPTIONS: &[&str] = &["ndots:5"];

enum Kind {
    None,
    Cluster,
    Host,
}

/// The resolv.conf a pod gets from its dnsPolicy (default ClusterFirst) and dnsConfig.
pub fn dns_config(pod: &Pod, ctx: &Context) -> Result<DnsConfig, SpecError> {
    let spec = pod::spec(pod)?;
    let host_network = spec.host_network == Some(true);
    let kind = match spec.dns_policy.as_deref().unwrap_or("ClusterFirst") {
        "None" => Kind::None,
        "ClusterFirstWithHostNet" => Kind::Cluster,
        // A hostNetwork pod with ClusterFirst falls back to Default, as kubelet does.
        "ClusterFirst" if !host_network => Kind::Cluster,
        "ClusterFirst" | "Default" => Kind::Host,
        other => {
            return Err(SpecError::invalid(
                "spec.dnsPolicy",
                format!("invalid DNSPolicy={other}"),
            ))
        }
    };
    let host = host_config(ctx);
    let mut cfg = match kind {
        Kind::None => DnsConfig::default(),
        // Without cluster DNS, kubelet warns (MissingClusterDNS) and uses the node's.
        Kind::Cluster if ctx.cluster_dns.is_empty() => host,
        Kind::Cluster => DnsConfig {
            servers: ctx.cluster_dns.clone(),
            searches: cluster_searches(pod::namespace(pod), &ctx.cluster_domain, host.searches),
            options: CLUSTER_OPTIONS.iter().map(|s| s.to_string()).collect(),
        },
        Kind::Host => host,
    };
    if let Some(extra) = &spec.dns_config {
        cfg = append(cfg, extra);
    }
    if matches!(kind, Kind::None) && cfg.servers.is_empty() && cfg.searches.is_empty() {
        return Err(SpecError::invalid(
            "spec.dnsConfig",
            "must provide at least one DNS nameserver or search path when dnsPolicy is None",
        ));
    }
    Ok(fit_limits(cfg))
}

/// The node's resolver: its resolv.conf, or with kubelet's `--resolv-conf=""` the local host.
fn host_config(ctx: &Context) -> DnsConfig {
    match &ctx.resolv_conf {
        Some(text) => parse_resolv_conf(text),
        None => {
            let mut servers: Vec<String> = ctx
                .host_ips
                .iter()
                .map(|ip| if ip.contains(':') { "::1" } else { "127.0.0.1" }.to_string())
                .collect();
            if servers.is_empty() {
                servers.push("127.0.0.1".into());
            }
            DnsConfig {
                servers,
                searches: vec![".".into()],
                options: Vec::new(),
            }
        }
    }
}

/// kubelet's `parseResolvConf`: every `nameserver`, the last `search` line (trailing dots
/// dropped), `options` merged by name.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut cfg = DnsConfig::default();
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first().copied() {
            Some("nameserver") if fields.len() >= 2 => cfg.servers.push(fields[1].to_string()),
            Some("search") => {
                cfg.searches = fields[1..]
                    .iter()
                    .filter(|s| **s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect();
            }
            Some("options") => {
                cfg.options = merge_options(cfg.options, fields[1..].iter().map(|s| s.to_string()))
            }
            _ => {}
        }
    }
    cfg
}

fn cluster_searches(ns: &str, domain: &str, host: Vec<String>) -> Vec<String> {
    if domain.is_empty() {
        return host;
    }
    let mut s = vec![
        format!("{ns}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.to_string(),
    ];
    s.extend(host);
    dedup(s)
}

/// `appendDNSConfig`: servers and searches appended without duplicates, options merged.
fn append(mut cfg: DnsConfig, extra: &PodDNSConfig) -> DnsConfig {
    cfg.servers
        .extend(extra.nameservers.iter().flatten().cloned());
    cfg.servers = dedup(cfg.servers);
    cfg.searches
        .extend(extra.searches.iter().flatten().cloned());
    cfg.searches = dedup(cfg.searches);
    let opts = extra.options.iter().flatten().filter_map(|o| {
        let name = o.name.as_deref()?;
        Some(match o.value.as_deref() {
            Some(v) => format!("{name}:{v}"),
            None => name.to_string(),
        })
    });
    cfg.options = merge_options(cfg.options, opts);
    cfg
}

/// An option is `name` or `name:value`; a later one with the same name replaces it in place.
fn merge_options(mut base: Vec<String>, more: impl Iterator<Item = String>) -> Vec<String> {
    let key = |o: &str| o.split(':').next().unwrap_or("").to_string();
    for o in more {
        match base.iter_mut().find(|b| key(b) == key(&o)) {
            Some(b) => *b = o,
            None => base.push(o),
        }
    }
    base
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for s in v {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn fit_limits(mut cfg: DnsConfig) -> DnsConfig {
    cfg.servers.truncate(MAX_NAMESERVERS);
    cfg.searches.truncate(MAX_SEARCHES);
    let mut chars = 0;
    let mut keep = 0;
    for s in &cfg.searches {
        // The limit counts the names and the spaces between them, as resolv.conf's line.
        chars += s.len() + usize::from(keep > 0);
        if chars > MAX_SEARCH_CHARS {
            break;
        }
        keep += 1;
    }
    cfg.searches.truncate(keep);
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podspec::testutil::{container, pod_with};
    use k8s_openapi::api::core::v1::PodDNSConfigOption;

    const RESOLV: &str = "# generated\nnameserver 192.168.1.1\nnameserver 8.8.8.8\nsearch old.example\nsearch example.com. lan\noptions ndots:2 timeout:1\n; comment\noptions ndots:3\n";

    fn pod(policy: Option<&str>, host_network: bool, extra: Option<PodDNSConfig>) -> Pod {
        let mut p = pod_with(vec![container("c")]);
        let s = p.spec.as_mut().unwrap();
        s.dns_policy = policy.map(str::to_string);
        s.host_network = Some(host_network);
        s.dns_config = extra;
        p
    }

    fn ctx(cluster: bool) -> Context {
        Context {
            resolv_conf: Some(RESOLV.into()),
            cluster_dns: if cluster {
                vec!["10.96.0.10".into()]
            } else {
                vec![]
            },
            cluster_domain: "cluster.local".into(),
            ..Default::default()
        }
    }

    fn triple(c: DnsConfig) -> (Vec<String>, Vec<String>, Vec<String>) {
        (c.servers, c.searches, c.options)
    }

    fn v(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_resolv_conf() {
        assert_eq!(
            triple(parse_resolv_conf(RESOLV)),
            (
                v(&["192.168.1.1", "8.8.8.8"]),
                v(&["example.com", "lan"]),
                v(&["ndots:3", "timeout:1"])
            )
        );
    }

    #[test]
    fn policies() {
        let host = (
            v(&["192.168.1.1", "8.8.8.8"]),
            v(&["example.com", "lan"]),
            v(&["ndots:3", "timeout:1"]),
        );
        let cluster = (
            v(&["10.96.0.10"]),
            v(&[
                "default.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "example.com",
                "lan",
            ]),
            v(&["ndots:5"]),
        );
        let extra = PodDNSConfig {
            nameservers: Some(v(&["1.1.1.1", "8.8.8.8"])),
            searches: Some(v(&["extra.test"])),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("1".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        };
        let cases = [
            (
                "ClusterFirst without cluster DNS",
                pod(None, false, None),
                ctx(false),
                host.clone(),
            ),
            (
                "ClusterFirst",
                pod(Some("ClusterFirst"), false, None),
                ctx(true),
                cluster.clone(),
            ),
            (
                "ClusterFirst on host network",
                pod(Some("ClusterFirst"), true, None),
                ctx(true),
                host.clone(),
            ),
            (
                "ClusterFirstWithHostNet",
                pod(Some("ClusterFirstWithHostNet"), true, None),
                ctx(true),
                cluster.clone(),
            ),
            (
                "Default",
                pod(Some("Default"), false, None),
                ctx(true),
                host.clone(),
            ),
            (
                "None with dnsConfig",
                pod(Some("None"), false, Some(extra.clone())),
                ctx(true),
                (
                    v(&["1.1.1.1", "8.8.8.8"]),
                    v(&["extra.test"]),
                    v(&["ndots:1", "edns0"]),
                ),
            ),
            (
                "Default plus dnsConfig",
                pod(Some("Default"), false, Some(extra)),
                ctx(false),
                (
                    v(&["192.168.1.1", "8.8.8.8", "1.1.1.1"]),
                    v(&["example.com", "lan", "extra.test"]),
                    v(&["ndots:1", "timeout:1", "edns0"]),
                ),
            ),
        ];
        for (name, p, c, want) in cases {
            assert_eq!(triple(dns_config(&p, &c).unwrap()), want, "{name}");
        }
        assert!(dns_config(&pod(Some("None"), false, None), &ctx(false)).is_err());
        assert!(dns_config(&pod(Some("Bogus"), false, None), &ctx(false)).is_err());
        let no_resolv = Context {
            resolv_conf: None,
            ..Default::default()
        };
        assert_eq!(
            triple(dns_config(&pod(Some("Default"), false, None), &no_resolv).unwrap()),
            (v(&["127.0.0.1"]), v(&["."]), vec![])
        );
    }

    #[test]
    fn limits_applied() {
        let extra = PodDNSConfig {
            nameservers: Some(v(&["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"])),
            searches: Some((0..40).map(|i| format!("s{i}.test")).collect()),
            options: None,
        };
        let c = dns_config(&pod(Some("None"), false, Some(extra)), &ctx(false)).unwrap();
        assert_eq!(c.servers.len(), 3);
        assert_eq!(c.searches.len(), 32);
    }
}
