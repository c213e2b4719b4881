//! Where images are pulled from: the `[registry]` section of the daemon's configuration and the
//! list of endpoints, in order and with their protocol, that a pull of a reference tries.
//!
//! ```toml
//! # Mirrors of a registry, tried in order, then the registry itself (unless fallback = false).
//! # A key is a registry as it appears in normalised references ("docker.io", "quay.io",
//! # "localhost:5000"); "*" applies to every registry without an entry of its own.
//! [registry.mirrors."docker.io"]
//! endpoints = ["http://127.0.0.1:5000", "https://mirror.example.com"]
//! fallback = true
//!
//! # Per-host settings, keyed by host[:port] as requests address it (a mirror endpoint's host,
//! # or the registry itself; "docker.io" also matches its API host registry-1.docker.io).
//! [registry.hosts."127.0.0.1:5000"]
//! insecure = true            # plain HTTP; unset: HTTP for loopback hosts, HTTPS otherwise
//! [registry.hosts."registry.internal:443"]
//! skip_verify = false        # HTTPS without certificate verification
//! ca_file = "/etc/peapod/registry-ca.pem"   # extra trusted CA certificates (PEM)
//! ```
//!
//! As in containerd: a mirror endpoint's scheme (`http://` or `https://`) decides the protocol;
//! an endpoint without one, and the registry itself, use HTTPS unless the host is marked
//! `insecure`; requests for `docker.io` go to `registry-1.docker.io`; requests to a mirror name
//! the upstream registry in an `ns=` query parameter, which pull-through caches use to route.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::ImageError;

/// The registry that short names (`busybox`) normalise to.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves the registry API of [`DOCKER_HUB`].
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
/// Names of Docker Hub that normalise to [`DOCKER_HUB`] in mirror and host keys.
const DOCKER_HUB_ALIASES: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];
/// The mirror key that applies to every registry without an entry of its own.
const ANY_REGISTRY: &str = "*";

/// The `[registry]` configuration section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Mirrors by registry (`docker.io`, `quay.io`, `*`).
    pub mirrors: BTreeMap<String, MirrorConfig>,
    /// Connection settings by host[:port].
    pub hosts: BTreeMap<String, HostConfig>,
}

/// The mirrors of one registry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorConfig {
    /// `http://host[:port]`, `https://host[:port]` or `host[:port]`, tried in order.
    pub endpoints: Vec<String>,
    /// Whether the registry itself is tried after the mirrors (default true).
    pub fallback: bool,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            endpoints: Vec::new(),
            fallback: true,
        }
    }
}

/// How to talk to one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Plain HTTP instead of HTTPS. Unset: plain HTTP for loopback hosts (`localhost`,
    /// `127.0.0.0/8`, `[::1]`, as docker treats them), HTTPS otherwise. A mirror endpoint
    /// written with a scheme ignores this.
    pub insecure: Option<bool>,
    /// HTTPS without verifying the server's certificate.
    pub skip_verify: bool,
    /// A PEM file of CA certificates trusted for this host, besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// The protocol of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// One place to pull a reference from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` the requests go to.
    pub host: String,
    pub scheme: Scheme,
    /// A mirror of the reference's registry (requests then carry `ns=<registry>`), as opposed
    /// to the registry itself.
    pub mirror: bool,
    /// HTTPS without certificate verification.
    pub skip_verify: bool,
    /// Extra CA certificates for this host.
    pub ca_file: Option<PathBuf>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)
    }
}

impl RegistryConfig {
    /// Checks every mirror key and endpoint and every host key, so a typo fails at start-up
    /// rather than at the first pull. The error names the offending entry.
    pub fn validate(&self) -> Result<(), String> {
        for (registry, mirror) in &self.mirrors {
            if registry != ANY_REGISTRY && !valid_host(registry) {
                return Err(format!(
                    "registry.mirrors.{registry:?}: not a registry host"
                ));
            }
            if mirror.endpoints.is_empty() && !mirror.fallback {
                return Err(format!(
                    "registry.mirrors.{registry:?}: no endpoints and fallback = false leaves \
                     nothing to pull from"
                ));
            }
            for e in &mirror.endpoints {
                parse_endpoint(e)
                    .map_err(|reason| format!("registry.mirrors.{registry:?}: {e:?}: {reason}"))?;
            }
        }
        for (host, h) in &self.hosts {
            if !valid_host(host) {
                return Err(format!("registry.hosts.{host:?}: not a host[:port]"));
            }
            if h.insecure == Some(true) && (h.skip_verify || h.ca_file.is_some()) {
                return Err(format!(
                    "registry.hosts.{host:?}: insecure (plain HTTP) contradicts skip_verify and \
                     ca_file, which are HTTPS settings"
                ));
            }
        }
        Ok(())
    }

    /// The endpoints a pull of an image from `registry` (the domain of a normalised reference:
    /// `docker.io`, `quay.io`, `localhost:5000`) tries, in order: the registry's mirrors (or
    /// those of `*`), then the registry itself unless the mirror entry says `fallback = false`.
    pub fn endpoints(&self, registry: &str) -> Result<Vec<Endpoint>, ImageError> {
        let registry = canonical_registry(registry);
        let mirror = self
            .mirrors
            .iter()
            .find(|(k, _)| canonical_registry(k) == registry)
            .or_else(|| self.mirrors.get_key_value(ANY_REGISTRY))
            .map(|(_, m)| m);
        let mut out = Vec::new();
        if let Some(m) = mirror {
            for e in &m.endpoints {
                let (scheme, host) = parse_endpoint(e).map_err(|reason| ImageError::Registry {
                    registry: registry.to_string(),
                    reason: format!("mirror endpoint {e:?}: {reason}"),
                })?;
                let host_cfg = self.host_config(&host, None);
                out.push(Endpoint {
                    scheme: scheme.unwrap_or_else(|| default_scheme(&host, host_cfg)),
                    skip_verify: host_cfg.is_some_and(|h| h.skip_verify),
                    ca_file: host_cfg.and_then(|h| h.ca_file.clone()),
                    host,
                    mirror: true,
                });
            }
        }
        if mirror.is_none_or(|m| m.fallback) {
            let host = if registry == DOCKER_HUB {
                DOCKER_HUB_HOST.to_string()
            } else {
                registry.to_string()
            };
            let host_cfg = self.host_config(&host, Some(registry));
            out.push(Endpoint {
                scheme: default_scheme(&host, host_cfg),
                skip_verify: host_cfg.is_some_and(|h| h.skip_verify),
                ca_file: host_cfg.and_then(|h| h.ca_file.clone()),
                host,
                mirror: false,
            });
        }
        Ok(out)
    }

    /// The settings of `host`, falling back to those of the registry name it serves
    /// (`hosts."docker.io"` applies to `registry-1.docker.io`).
    fn host_config(&self, host: &str, registry: Option<&str>) -> Option<&HostConfig> {
        self.hosts.get(host).or_else(|| {
            let registry = registry?;
            self.hosts
                .iter()
                .find(|(k, _)| canonical_registry(k) == registry)
                .map(|(_, h)| h)
        })
    }
}

/// `index.docker.io` and `registry-1.docker.io` are `docker.io`; other names are themselves.
fn canonical_registry(name: &str) -> &str {
    if DOCKER_HUB_ALIASES.contains(&name) {
        DOCKER_HUB
    } else {
        name
    }
}

fn default_scheme(host: &str, cfg: Option<&HostConfig>) -> Scheme {
    match cfg.and_then(|h| h.insecure) {
        Some(true) => Scheme::Http,
        Some(false) => Scheme::Https,
        None if is_loopback(host) => Scheme::Http,
        None => Scheme::Https,
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// `[scheme://]host[:port][/][v2[/]]` → (scheme if given, host[:port]).
fn parse_endpoint(s: &str) -> Result<(Option<Scheme>, String), String> {
    let (scheme, rest) = if let Some(r) = s.strip_prefix("http://") {
        (Some(Scheme::Http), r)
    } else if let Some(r) = s.strip_prefix("https://") {
        (Some(Scheme::Https), r)
    } else if let Some((scheme, _)) = s.split_once("://") {
        return Err(format!("unsupported scheme {scheme:?} (http or https)"));
    } else {
        (None, s)
    };
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, p),
        None => (rest, ""),
    };
    if !matches!(path, "" | "v2" | "v2/") {
        return Err("endpoints with a path are not supported (only host[:port])".into());
    }
    if !valid_host(host) {
        return Err(format!("{host:?} is not a host[:port]"));
    }
    Ok((scheme, host.to_string()))
}

/// A DNS name, IPv4 address or bracketed IPv6 address, with an optional numeric port.
fn valid_host(h: &str) -> bool {
    let (name, port) = if let Some(rest) = h.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                match tail {
                    "" => return true,
                    t => ("x", t.strip_prefix(':').unwrap_or("bad")),
                }
            }
            None => return false,
        }
    } else {
        match h.split_once(':') {
            Some((n, p)) => (n, p),
            None => (h, "0"),
        }
    };
    let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    port_ok
        && !name.is_empty()
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Daemon {
        #[serde(default)]
        registry: RegistryConfig,
    }

    fn parse(text: &str) -> RegistryConfig {
        let cfg = toml::from_str::<Daemon>(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .registry;
        cfg.validate().unwrap();
        cfg
    }

    fn ep(host: &str, scheme: Scheme, mirror: bool) -> Endpoint {
        Endpoint {
            host: host.into(),
            scheme,
            mirror,
            skip_verify: false,
            ca_file: None,
        }
    }

    #[test]
    fn parses_the_documented_format() {
        let cfg = parse(
            r#"
            [registry.mirrors."docker.io"]
            endpoints = ["http://127.0.0.1:5000", "https://mirror.example.com/v2/", "cache.local:8443"]
            [registry.mirrors."quay.io"]
            endpoints = ["https://quay-mirror.example.com"]
            fallback = false
            [registry.hosts."127.0.0.1:5000"]
            insecure = true
            [registry.hosts."cache.local:8443"]
            skip_verify = true
            ca_file = "/etc/ca.pem"
            "#,
        );
        assert_eq!(cfg.mirrors.len(), 2);
        assert!(
            cfg.mirrors["docker.io"].fallback,
            "fallback defaults to true"
        );
        assert!(!cfg.mirrors["quay.io"].fallback);
        assert_eq!(cfg.hosts["127.0.0.1:5000"].insecure, Some(true));
        assert_eq!(
            cfg.hosts["cache.local:8443"].ca_file,
            Some(PathBuf::from("/etc/ca.pem"))
        );
        // An empty section and a missing one are the defaults.
        assert_eq!(parse(""), RegistryConfig::default());
        assert_eq!(parse("[registry]"), RegistryConfig::default());
    }

    #[test]
    fn unknown_fields_and_bad_entries_are_refused() {
        for text in [
            "[registry]\nmirror = {}",
            "[registry.mirrors.\"docker.io\"]\nendpoint = [\"x\"]",
            "[registry.hosts.\"a:1\"]\ninsecure = \"yes\"",
            "[registry.hosts.\"a:1\"]\ntls = true",
        ] {
            assert!(toml::from_str::<Daemon>(text).is_err(), "{text} accepted");
        }
        let bad: &[(&str, &str)] = &[
            (
                "[registry.mirrors.\"docker.io\"]\nendpoints = [\"ftp://x\"]",
                "unsupported scheme",
            ),
            (
                "[registry.mirrors.\"docker.io\"]\nendpoints = [\"https://x/some/path\"]",
                "path",
            ),
            (
                "[registry.mirrors.\"docker.io\"]\nendpoints = [\"http://bad host\"]",
                "host",
            ),
            (
                "[registry.mirrors.\"docker.io\"]\nendpoints = [\"http://h:port\"]",
                "host",
            ),
            (
                "[registry.mirrors.\"docker.io\"]\nfallback = false",
                "nothing to pull from",
            ),
            ("[registry.mirrors.\"not a host\"]", "not a registry host"),
            ("[registry.hosts.\"h:99999999\"]", "not a host"),
            (
                "[registry.hosts.\"h\"]\ninsecure = true\nskip_verify = true",
                "contradicts",
            ),
        ];
        for (text, want) in bad {
            let cfg = toml::from_str::<Daemon>(text).unwrap().registry;
            let err = cfg.validate().expect_err(text);
            assert!(err.contains(want), "{text}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn endpoints_for_a_reference() {
        let cfg = parse(
            r#"
            [registry.mirrors."docker.io"]
            endpoints = ["http://127.0.0.1:5000", "https://mirror.example.com", "cache.local:8443", "plain.local"]
            [registry.mirrors."quay.io"]
            endpoints = ["https://quay-mirror.example.com"]
            fallback = false
            [registry.hosts."plain.local"]
            insecure = true
            [registry.hosts."cache.local:8443"]
            skip_verify = true
            "#,
        );
        let mut cache = ep("cache.local:8443", Scheme::Https, true);
        cache.skip_verify = true;
        assert_eq!(
            cfg.endpoints("docker.io").unwrap(),
            vec![
                ep("127.0.0.1:5000", Scheme::Http, true),
                ep("mirror.example.com", Scheme::Https, true),
                cache,
                ep("plain.local", Scheme::Http, true),
                ep("registry-1.docker.io", Scheme::Https, false),
            ]
        );
        // No fallback: the mirror only.
        assert_eq!(
            cfg.endpoints("quay.io").unwrap(),
            vec![ep("quay-mirror.example.com", Scheme::Https, true)]
        );
        // No entry: the registry itself, over HTTPS unless it is on loopback.
        assert_eq!(
            cfg.endpoints("ghcr.io").unwrap(),
            vec![ep("ghcr.io", Scheme::Https, false)]
        );
        for local in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert_eq!(
                cfg.endpoints(local).unwrap(),
                vec![ep(local, Scheme::Http, false)],
                "{local}"
            );
        }
    }

    #[test]
    fn hosts_settings_and_aliases() {
        let cfg = parse(
            r#"
            [registry.mirrors."index.docker.io"]
            endpoints = ["mirror.local:5000"]
            [registry.mirrors."*"]
            endpoints = ["https://everything.example.com"]
            [registry.hosts."docker.io"]
            ca_file = "/hub-ca.pem"
            [registry.hosts."localhost:5000"]
            insecure = false
            [registry.hosts."registry.internal"]
            insecure = true
            "#,
        );
        let mut hub = ep("registry-1.docker.io", Scheme::Https, false);
        hub.ca_file = Some(PathBuf::from("/hub-ca.pem"));
        // index.docker.io as a key means docker.io; a scheme-less endpoint is HTTPS.
        assert_eq!(
            cfg.endpoints("docker.io").unwrap(),
            vec![ep("mirror.local:5000", Scheme::Https, true), hub]
        );
        // The wildcard covers registries without an entry; insecure = false beats loopback.
        assert_eq!(
            cfg.endpoints("localhost:5000").unwrap(),
            vec![
                ep("everything.example.com", Scheme::Https, true),
                ep("localhost:5000", Scheme::Https, false),
            ]
        );
        assert_eq!(
            cfg.endpoints("registry.internal").unwrap()[1],
            ep("registry.internal", Scheme::Http, false)
        );
        assert_eq!(
            ep("h:1", Scheme::Http, true).to_string(),
            "http://h:1",
            "Display"
        );
    }
}
