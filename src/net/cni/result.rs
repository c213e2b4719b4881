//! What plugins print: results (the 0.1/0.2 `ip4`/`ip6` form, the 0.3.x/0.4.0 form with
//! `version` on each IP, and the 1.x form) and errors (`{"code", "msg", "details"}`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::config::{Version, V0_3_0};

/// An address with its prefix length, as results write them (`10.22.0.5/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<IpNet, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not an address/prefix"))?;
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?}: bad address"))?;
        let prefix_len: u8 = p.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(format!("{s:?}: prefix length over {max}"));
        }
        Ok(IpNet { addr, prefix_len })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// An interface a plugin created or set up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub mtu: Option<u32>,
    /// The netns path for an interface in the pod, empty for one on the host.
    pub sandbox: String,
    /// 1.1: a vhost-user or similar socket.
    pub socket_path: String,
    /// 1.1: a PCI device ID.
    pub pci_id: String,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`].
    pub interface: Option<usize>,
}

/// A route set up in the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    /// 1.1 fields.
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u32>,
}

/// DNS settings a plugin asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: String,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// The result of ADD: what the last plugin of the list printed, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    pub cni_version: String,
    /// The pod's addresses: those on the pod's interface (`CniConfig::if_name`) in its netns
    /// when the result says which interface each is on, else every non-loopback address;
    /// IPv4 first (the first one is the pod's primary IP).
    pub ips: Vec<IpAddr>,
    /// Every address the result lists, as it lists them.
    pub ip_configs: Vec<IpConfig>,
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    pub dns: Dns,
    /// The result as printed, which the cache keeps and DEL and CHECK get as prevResult.
    pub raw: Value,
}

/// A plugin's error (the spec's well-known codes are 1–7, 11 and, for STATUS, 50–51;
/// 100 and up are the plugin's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl PluginError {
    /// What the spec calls the code, for the well-known ones.
    pub fn code_name(&self) -> Option<&'static str> {
        Some(match self.code {
            1 => "incompatible CNI version",
            2 => "unsupported field in network configuration",
            3 => "container unknown or does not exist",
            4 => "invalid necessary environment variables",
            5 => "I/O failure",
            6 => "failed to decode content",
            7 => "invalid network config",
            11 => "try again later",
            50 => "the plugin is not available",
            51 => "the plugin is not available: existing containers' networking may be limited",
            _ => return None,
        })
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        match self.code_name() {
            Some(n) => write!(f, " (code {}: {n})", self.code),
            None => write!(f, " (code {})", self.code),
        }
    }
}

/// An error object on a failed plugin's stdout; `None` when stdout holds none.
pub fn parse_error(stdout: &[u8]) -> Option<PluginError> {
    let v: Value = serde_json::from_slice(stdout).ok()?;
    let obj = v.as_object()?;
    let code = obj.get("code")?.as_u64()?;
    Some(PluginError {
        code: u32::try_from(code).unwrap_or(u32::MAX),
        msg: obj
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        details: obj
            .get("details")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    })
}

/// A field that is present and not null.
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn opt_str(obj: &Map<String, Value>, at: &str, key: &str) -> Result<String, String> {
    match get(obj, key) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{at}{key}: expected a string")),
    }
}

fn opt_u32(obj: &Map<String, Value>, at: &str, key: &str) -> Result<Option<u32>, String> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("{at}{key}: expected a non-negative integer")),
    }
}

fn opt_ip(obj: &Map<String, Value>, at: &str, key: &str) -> Result<Option<IpAddr>, String> {
    let s = opt_str(obj, at, key)?;
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| format!("{at}{key}: {s:?} is not an IP address"))
}

fn req_net(obj: &Map<String, Value>, at: &str, key: &str) -> Result<IpNet, String> {
    let s = opt_str(obj, at, key)?;
    if s.is_empty() {
        return Err(format!("{at}{key}: missing"));
    }
    s.parse().map_err(|e| format!("{at}{key}: {e}"))
}

fn str_list(obj: &Map<String, Value>, at: &str, key: &str) -> Result<Vec<String>, String> {
    match get(obj, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{at}{key}: expected strings"))
            })
            .collect(),
        Some(_) => Err(format!("{at}{key}: expected an array of strings")),
    }
}

fn objects<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Vec<&'a Map<String, Value>>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_object()
                    .ok_or_else(|| format!("{key}[{i}]: expected an object"))
            })
            .collect(),
        Some(_) => Err(format!("{key}: expected an array")),
    }
}

fn parse_route(r: &Map<String, Value>, at: &str) -> Result<Route, String> {
    Ok(Route {
        dst: req_net(r, at, "dst")?,
        gw: opt_ip(r, at, "gw")?,
        mtu: opt_u32(r, at, "mtu")?,
        advmss: opt_u32(r, at, "advmss")?,
        priority: opt_u32(r, at, "priority")?,
        table: opt_u32(r, at, "table")?,
        scope: opt_u32(r, at, "scope")?,
    })
}

fn parse_dns(obj: &Map<String, Value>) -> Result<Dns, String> {
    match obj.get("dns") {
        None | Some(Value::Null) => Ok(Dns::default()),
        Some(Value::Object(d)) => Ok(Dns {
            nameservers: str_list(d, "dns.", "nameservers")?,
            domain: opt_str(d, "dns.", "domain")?,
            search: str_list(d, "dns.", "search")?,
            options: str_list(d, "dns.", "options")?,
        }),
        Some(_) => Err("dns: expected an object".into()),
    }
}

/// Parses a result printed for a config of version `conf_version` (the result's own
/// `cniVersion` decides its form when it has one). `if_name` picks the pod's addresses.
pub fn parse_result(conf_version: &str, if_name: &str, raw: &Value) -> Result<CniResult, String> {
    let obj = raw.as_object().ok_or("expected a JSON object")?;
    let version = match obj.get("cniVersion") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => conf_version.to_string(),
    };
    let legacy = Version::parse(&version).is_some_and(|v| v < V0_3_0);
    let mut interfaces = Vec::new();
    let mut ip_configs = Vec::new();
    let mut routes = Vec::new();
    if legacy {
        for (key, v4) in [("ip4", true), ("ip6", false)] {
            let Some(ipc) = obj.get(key).filter(|v| !v.is_null()) else {
                continue;
            };
            let ipc = ipc
                .as_object()
                .ok_or_else(|| format!("{key}: expected an object"))?;
            let at = format!("{key}.");
            let address = req_net(ipc, &at, "ip")?;
            if address.addr.is_ipv4() != v4 {
                return Err(format!("{key}.ip: {address} is of the wrong family"));
            }
            ip_configs.push(IpConfig {
                address,
                gateway: opt_ip(ipc, &at, "gateway")?,
                interface: None,
            });
            for (i, r) in objects(ipc, "routes")
                .map_err(|e| format!("{key}.{e}"))?
                .into_iter()
                .enumerate()
            {
                routes.push(parse_route(r, &format!("{key}.routes[{i}].",))?);
            }
        }
    } else {
        for (i, ifc) in objects(obj, "interfaces")?.into_iter().enumerate() {
            let at = format!("interfaces[{i}].");
            interfaces.push(Interface {
                name: opt_str(ifc, &at, "name")?,
                mac: opt_str(ifc, &at, "mac")?,
                mtu: opt_u32(ifc, &at, "mtu")?,
                sandbox: opt_str(ifc, &at, "sandbox")?,
                socket_path: opt_str(ifc, &at, "socketPath")?,
                pci_id: opt_str(ifc, &at, "pciID")?,
            });
        }
        for (i, ipc) in objects(obj, "ips")?.into_iter().enumerate() {
            let at = format!("ips[{i}].");
            let address = req_net(ipc, &at, "address")?;
            // 0.3.x and 0.4.0 say the family; 1.0 dropped the field.
            match opt_str(ipc, &at, "version")?.as_str() {
                "" => {}
                "4" if address.addr.is_ipv4() => {}
                "6" if address.addr.is_ipv6() => {}
                v => return Err(format!("{at}version: {v:?} does not match {address}")),
            }
            let interface = match opt_u32(ipc, &at, "interface")? {
                None => None,
                Some(n) if (n as usize) < interfaces.len() => Some(n as usize),
                Some(n) => {
                    return Err(format!(
                        "{at}interface: index {n} but the result lists {} interfaces",
                        interfaces.len()
                    ))
                }
            };
            ip_configs.push(IpConfig {
                address,
                gateway: opt_ip(ipc, &at, "gateway")?,
                interface,
            });
        }
        for (i, r) in objects(obj, "routes")?.into_iter().enumerate() {
            routes.push(parse_route(r, &format!("routes[{i}]."))?);
        }
    }
    let dns = parse_dns(obj)?;
    let ips = pod_ips(&ip_configs, &interfaces, if_name);
    Ok(CniResult {
        cni_version: version,
        ips,
        ip_configs,
        interfaces,
        routes,
        dns,
        raw: raw.clone(),
    })
}

/// The pod's addresses (see [`CniResult::ips`]).
fn pod_ips(ip_configs: &[IpConfig], interfaces: &[Interface], if_name: &str) -> Vec<IpAddr> {
    let on = |pred: &dyn Fn(&Interface) -> bool| -> Vec<IpAddr> {
        ip_configs
            .iter()
            .filter(|c| c.interface.is_some_and(|i| pred(&interfaces[i])))
            .map(|c| c.address.addr)
            .filter(|a| !a.is_loopback())
            .collect()
    };
    let mut ips = on(&|i| !i.sandbox.is_empty() && i.name == if_name);
    if ips.is_empty() {
        ips = on(&|i| !i.sandbox.is_empty());
    }
    if ips.is_empty() {
        ips = ip_configs
            .iter()
            .map(|c| c.address.addr)
            .filter(|a| !a.is_loopback())
            .collect();
    }
    ips.sort_by_key(|a| a.is_ipv6()); // stable: IPv4 first, each family in result order
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(version: &str, text: &str) -> Result<CniResult, String> {
        parse_result(version, "eth0", &serde_json::from_str(text).unwrap())
    }

    #[test]
    fn parses_a_1_0_0_result() {
        let r = parse(
            "1.0.0",
            r#"{
              "cniVersion": "1.0.0",
              "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/ns/net", "mtu": 1500}
              ],
              "ips": [
                {"address": "fd00:10::5/64", "gateway": "fd00:10::1", "interface": 2},
                {"address": "10.22.0.5/24", "gateway": "10.22.0.1", "interface": 2}
              ],
              "routes": [{"dst": "0.0.0.0/0", "gw": "10.22.0.1"}, {"dst": "::/0"}],
              "dns": {"nameservers": ["10.96.0.10"], "domain": "cluster.local",
                      "search": ["default.svc.cluster.local"], "options": ["ndots:5"]}
            }"#,
        )
        .unwrap();
        assert_eq!(r.cni_version, "1.0.0");
        assert_eq!(
            r.ips,
            [
                "10.22.0.5".parse::<IpAddr>().unwrap(),
                "fd00:10::5".parse().unwrap()
            ]
        );
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.interfaces[2].sandbox, "/run/ns/net");
        assert_eq!(r.interfaces[2].mtu, Some(1500));
        assert_eq!(r.ip_configs[1].address.to_string(), "10.22.0.5/24");
        assert_eq!(r.ip_configs[1].gateway, Some("10.22.0.1".parse().unwrap()));
        assert_eq!(r.ip_configs[1].interface, Some(2));
        assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
        assert_eq!(r.routes[0].gw, Some("10.22.0.1".parse().unwrap()));
        assert_eq!(r.routes[1].gw, None);
        assert_eq!(r.dns.nameservers, ["10.96.0.10"]);
        assert_eq!(r.dns.domain, "cluster.local");
        assert_eq!(r.dns.options, ["ndots:5"]);
    }

    #[test]
    fn parses_a_0_4_0_result_with_versions() {
        let r = parse(
            "0.4.0",
            r#"{
              "cniVersion": "0.4.0",
              "interfaces": [{"name": "eth0", "sandbox": "/proc/1/ns/net"}],
              "ips": [{"version": "4", "address": "10.1.2.3/16", "gateway": "10.1.0.1", "interface": 0}],
              "routes": [{"dst": "0.0.0.0/0"}],
              "dns": {}
            }"#,
        )
        .unwrap();
        assert_eq!(r.ips, ["10.1.2.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.ip_configs[0].address.prefix_len, 16);
        let e = parse(
            "0.4.0",
            r#"{"cniVersion":"0.4.0","ips":[{"version":"6","address":"10.1.2.3/16"}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("ips[0].version"), "{e}");
    }

    #[test]
    fn parses_a_legacy_result() {
        let r = parse(
            "0.2.0",
            r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.5.0.7/24","gateway":"10.5.0.1",
                "routes":[{"dst":"0.0.0.0/0"}]},"dns":{"nameservers":["1.1.1.1"]}}"#,
        )
        .unwrap();
        assert_eq!(r.ips, ["10.5.0.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.routes.len(), 1);
        assert_eq!(r.dns.nameservers, ["1.1.1.1"]);
    }

    #[test]
    fn pod_ips_come_from_the_pod_interface() {
        // A loopback plugin's own result first in the chain, then the real interface.
        let r = parse(
            "1.0.0",
            r#"{"cniVersion":"1.0.0",
                "interfaces":[{"name":"lo","sandbox":"/ns"},{"name":"br0"},{"name":"net1","sandbox":"/ns"},{"name":"eth0","sandbox":"/ns"}],
                "ips":[{"address":"127.0.0.1/8","interface":0},{"address":"10.9.0.1/24","interface":1},
                       {"address":"10.7.0.2/24","interface":2},{"address":"10.8.0.2/24","interface":3}]}"#,
        )
        .unwrap();
        assert_eq!(r.ips, ["10.8.0.2".parse::<IpAddr>().unwrap()]);
        // No interface indexes: every non-loopback address.
        let r = parse(
            "1.0.0",
            r#"{"cniVersion":"1.0.0","ips":[{"address":"127.0.0.1/8"},{"address":"fd00::2/64"},{"address":"10.8.0.2/24"}]}"#,
        )
        .unwrap();
        assert_eq!(
            r.ips,
            [
                "10.8.0.2".parse::<IpAddr>().unwrap(),
                "fd00::2".parse().unwrap()
            ]
        );
    }

    #[test]
    fn the_result_version_decides_the_form() {
        // Printed as 1.0.0 for a 0.2.0 config: read as what it says it is.
        let r = parse(
            "0.2.0",
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/8"}]}"#,
        )
        .unwrap();
        assert_eq!(r.ips.len(), 1);
        // No cniVersion: the config's.
        let r = parse("0.4.0", r#"{"ips":[{"address":"10.0.0.2/8"}]}"#).unwrap();
        assert_eq!(r.cni_version, "0.4.0");
    }

    #[test]
    fn bad_results_say_what_is_wrong() {
        for (text, want) in [
            (r#"[]"#, "expected a JSON object"),
            (
                r#"{"ips":[{"gateway":"10.0.0.1"}]}"#,
                "ips[0].address: missing",
            ),
            (r#"{"ips":[{"address":"10.0.0.1"}]}"#, "ips[0].address"),
            (r#"{"ips":[{"address":"10.0.0.1/33"}]}"#, "prefix length"),
            (
                r#"{"ips":[{"address":"10.0.0.1/8","interface":0}]}"#,
                "ips[0].interface",
            ),
            (
                r#"{"ips":[{"address":"10.0.0.1/8","gateway":"x"}]}"#,
                "ips[0].gateway",
            ),
            (
                r#"{"routes":[{"gw":"10.0.0.1"}]}"#,
                "routes[0].dst: missing",
            ),
            (r#"{"interfaces":{}}"#, "interfaces: expected an array"),
            (r#"{"dns":{"nameservers":"1.1.1.1"}}"#, "dns.nameservers"),
        ] {
            let e = parse("1.0.0", text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn parses_plugin_errors() {
        let e = parse_error(
            br#"{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"no bridge name"}"#,
        )
        .unwrap();
        assert_eq!(e.code, 7);
        assert_eq!(e.msg, "bad config");
        assert_eq!(e.details, "no bridge name");
        assert_eq!(
            e.to_string(),
            "bad config: no bridge name (code 7: invalid network config)"
        );
        let e = parse_error(br#"{"code":999,"msg":"own"}"#).unwrap();
        assert_eq!(e.to_string(), "own (code 999)");
        assert_eq!(parse_error(b""), None);
        assert_eq!(parse_error(b"panic: oops"), None);
        assert_eq!(parse_error(br#"{"msg":"no code"}"#), None);
    }

    #[test]
    fn ipnet_round_trips() {
        for s in ["10.0.0.1/24", "fd00::1/64", "0.0.0.0/0"] {
            assert_eq!(s.parse::<IpNet>().unwrap().to_string(), s);
        }
        assert!("fd00::1/129".parse::<IpNet>().is_err());
        assert!("10.0.0.1".parse::<IpNet>().is_err());
    }
}
