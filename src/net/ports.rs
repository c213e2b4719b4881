//! CRI port mappings: validation, the host ports they ask for, and the conflicts between pods.
//!
//! Pure functions; the nf_tables side (`nft.rs`) turns a [`HostPort`] into DNAT rules and
//! stores it, in the rule's comment, as the [`tag`] read back to find conflicts and a pod's
//! rules.

use std::fmt;
use std::net::IpAddr;

use crate::api::{PortMapping, Protocol};

use super::error::NetError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => libc::IPPROTO_TCP as u8,
            Proto::Udp => libc::IPPROTO_UDP as u8,
            Proto::Sctp => libc::IPPROTO_SCTP as u8,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One mapping that asks for a host port, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub proto: Proto,
    /// The host address it is reached on: None for every address of both families (an empty
    /// host_ip); an unspecified address (0.0.0.0, ::) for every address of that family.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
}

impl HostPort {
    /// Whether this mapping catches traffic of IPv6 (true) or IPv4 (false).
    pub fn covers_family(&self, v6: bool) -> bool {
        self.host_ip.is_none_or(|ip| ip.is_ipv6() == v6)
    }

    /// Whether two mappings would catch the same packets.
    pub fn overlaps(&self, other: &HostPort) -> bool {
        if self.proto != other.proto || self.host_port != other.host_port {
            return false;
        }
        match (self.host_ip, other.host_ip) {
            (None, _) | (_, None) => true,
            (Some(a), Some(b)) => {
                a.is_ipv6() == b.is_ipv6() && (a.is_unspecified() || b.is_unspecified() || a == b)
            }
        }
    }
}

/// Checks every mapping and returns those with a host port (host_port 0 means none).
///
/// A container or host port outside 1-65535, a protocol that is not TCP, UDP or SCTP, a
/// host_ip that is not an IP address, or two mappings of the pod catching the same host port
/// is an error naming the mapping's index and field.
pub fn validate_port_mappings(ports: &[PortMapping]) -> Result<Vec<HostPort>, NetError> {
    let bad = |index, field, reason: String| NetError::InvalidPortMapping {
        index,
        field,
        reason,
    };
    let mut out: Vec<(usize, HostPort)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = match Protocol::try_from(p.protocol) {
            Ok(Protocol::Tcp) => Proto::Tcp,
            Ok(Protocol::Udp) => Proto::Udp,
            Ok(Protocol::Sctp) => Proto::Sctp,
            Err(_) => {
                return Err(bad(
                    i,
                    "protocol",
                    format!("unknown protocol {}", p.protocol),
                ))
            }
        };
        if !(1..=65535).contains(&p.container_port) {
            return Err(bad(
                i,
                "container_port",
                format!("{} is not a port (1-65535)", p.container_port),
            ));
        }
        if !(0..=65535).contains(&p.host_port) {
            return Err(bad(
                i,
                "host_port",
                format!("{} is not a port (1-65535, or 0 for none)", p.host_port),
            ));
        }
        let host_ip = if p.host_ip.is_empty() {
            None
        } else {
            Some(p.host_ip.parse::<IpAddr>().map_err(|_| {
                bad(
                    i,
                    "host_ip",
                    format!("{:?} is not an IP address", p.host_ip),
                )
            })?)
        };
        if p.host_port == 0 {
            continue;
        }
        let hp = HostPort {
            proto,
            host_ip,
            host_port: p.host_port as u16,
            container_port: p.container_port as u16,
        };
        if let Some((j, _)) = out.iter().find(|(_, o)| o.overlaps(&hp)) {
            return Err(bad(
                i,
                "host_port",
                format!(
                    "{proto}/{} is already mapped by port_mappings[{j}]",
                    hp.host_port
                ),
            ));
        }
        out.push((i, hp));
    }
    Ok(out.into_iter().map(|(_, h)| h).collect())
}

/// The text stored with a pod's DNAT rule: `peapod POD PROTO HOSTIP|* HOSTPORT CONTAINERPORT`.
pub(crate) fn tag(pod: &str, hp: &HostPort) -> String {
    let ip = hp
        .host_ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "*".into());
    format!(
        "peapod {pod} {} {ip} {} {}",
        hp.proto, hp.host_port, hp.container_port
    )
}

/// Reads a [`tag`] back.
pub(crate) fn parse_tag(s: &str) -> Option<(String, HostPort)> {
    let f: Vec<&str> = s.split(' ').collect();
    if f.len() != 6 || f[0] != "peapod" {
        return None;
    }
    let host_ip = match f[3] {
        "*" => None,
        ip => Some(ip.parse().ok()?),
    };
    Some((
        f[1].to_string(),
        HostPort {
            proto: Proto::parse(f[2])?,
            host_ip,
            host_port: f[4].parse().ok()?,
            container_port: f[5].parse().ok()?,
        },
    ))
}

/// The first of `wanted` that a pod other than `pod` already maps, with that pod.
pub(crate) fn find_conflict<'a>(
    pod: &str,
    wanted: &[HostPort],
    existing: &'a [(String, HostPort)],
) -> Option<(HostPort, &'a str)> {
    wanted.iter().find_map(|w| {
        existing
            .iter()
            .find(|(p, e)| p != pod && e.overlaps(w))
            .map(|(p, _)| (*w, p.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(protocol: i32, container_port: i32, host_port: i32, host_ip: &str) -> PortMapping {
        PortMapping {
            protocol,
            container_port,
            host_port,
            host_ip: host_ip.into(),
        }
    }

    fn err_of(ports: &[PortMapping]) -> (usize, &'static str) {
        match validate_port_mappings(ports).unwrap_err() {
            NetError::InvalidPortMapping { index, field, .. } => (index, field),
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn valid_mappings_keep_only_host_ports() {
        let got = validate_port_mappings(&[
            pm(0, 80, 8080, ""),
            pm(1, 53, 5353, "127.0.0.1"),
            pm(0, 9000, 0, ""), // no host port
            pm(2, 7, 7007, "::"),
        ])
        .unwrap();
        assert_eq!(
            got,
            vec![
                HostPort {
                    proto: Proto::Tcp,
                    host_ip: None,
                    host_port: 8080,
                    container_port: 80
                },
                HostPort {
                    proto: Proto::Udp,
                    host_ip: Some("127.0.0.1".parse().unwrap()),
                    host_port: 5353,
                    container_port: 53
                },
                HostPort {
                    proto: Proto::Sctp,
                    host_ip: Some("::".parse().unwrap()),
                    host_port: 7007,
                    container_port: 7
                },
            ]
        );
        assert!(validate_port_mappings(&[]).unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_index_and_field() {
        assert_eq!(
            err_of(&[pm(0, 80, 80, ""), pm(0, 0, 81, "")]),
            (1, "container_port")
        );
        assert_eq!(err_of(&[pm(0, 65536, 80, "")]), (0, "container_port"));
        assert_eq!(err_of(&[pm(0, -1, 80, "")]), (0, "container_port"));
        assert_eq!(err_of(&[pm(0, 80, 65536, "")]), (0, "host_port"));
        assert_eq!(err_of(&[pm(0, 80, -5, "")]), (0, "host_port"));
        assert_eq!(err_of(&[pm(7, 80, 80, "")]), (0, "protocol"));
        assert_eq!(err_of(&[pm(0, 80, 80, "10.0.0.300")]), (0, "host_ip"));
        assert_eq!(err_of(&[pm(0, 80, 80, "localhost")]), (0, "host_ip"));
        // The same host port twice in one pod.
        assert_eq!(
            err_of(&[pm(0, 80, 80, ""), pm(0, 81, 80, "10.0.0.1")]),
            (1, "host_port")
        );
        let e = validate_port_mappings(&[pm(0, 80, 80, "x")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "port_mappings[0].host_ip: \"x\" is not an IP address"
        );
    }

    #[test]
    fn overlap_follows_protocol_port_and_address() {
        let h = |proto, ip: Option<&str>, port| HostPort {
            proto,
            host_ip: ip.map(|s| s.parse().unwrap()),
            host_port: port,
            container_port: 1,
        };
        let any = h(Proto::Tcp, None, 80);
        assert!(any.overlaps(&h(Proto::Tcp, Some("10.0.0.1"), 80)));
        assert!(!any.overlaps(&h(Proto::Udp, None, 80)));
        assert!(!any.overlaps(&h(Proto::Tcp, None, 81)));
        let a = h(Proto::Tcp, Some("10.0.0.1"), 80);
        assert!(!a.overlaps(&h(Proto::Tcp, Some("10.0.0.2"), 80)));
        assert!(a.overlaps(&h(Proto::Tcp, Some("0.0.0.0"), 80)));
        assert!(!a.overlaps(&h(Proto::Tcp, Some("::"), 80)));
        assert!(h(Proto::Tcp, Some("::"), 80).overlaps(&h(Proto::Tcp, Some("fd00::1"), 80)));
        assert!(any.covers_family(true) && any.covers_family(false));
        assert!(!a.covers_family(true) && a.covers_family(false));
    }

    #[test]
    fn tags_round_trip_and_find_conflicts() {
        let hp = HostPort {
            proto: Proto::Udp,
            host_ip: Some("fd00::1".parse().unwrap()),
            host_port: 53,
            container_port: 5353,
        };
        let t = tag("abc", &hp);
        assert_eq!(t, "peapod abc udp fd00::1 53 5353");
        assert_eq!(parse_tag(&t), Some(("abc".to_string(), hp)));
        let any = HostPort {
            host_ip: None,
            ..hp
        };
        assert_eq!(parse_tag(&tag("p", &any)), Some(("p".to_string(), any)));
        assert_eq!(parse_tag("something else"), None);
        assert_eq!(parse_tag("peapod p tcp * 99999 1"), None);

        let existing = vec![("other".to_string(), any)];
        assert_eq!(find_conflict("mine", &[hp], &existing), Some((hp, "other")));
        // A pod's own earlier rules (a retried setup) are no conflict.
        assert_eq!(find_conflict("other", &[hp], &existing), None);
        let tcp = HostPort {
            proto: Proto::Tcp,
            ..hp
        };
        assert_eq!(find_conflict("mine", &[tcp], &existing), None);
    }
}
