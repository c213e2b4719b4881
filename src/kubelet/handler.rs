//! What a probe or a lifecycle hook does, resolved from the Pod's spec into something to run:
//! kubelet's `prober.runProbe` and `lifecycle.handlerRunner` before any I/O. Named ports are
//! looked up in the container's ports, an empty host is the pod's IP, and a field kubelet
//! would refuse is an error with its reason.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, GRPCAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// One action to run against a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run a command in the container.
    Exec(Vec<String>),
    /// An HTTP GET; 200 <= status < 400 succeeds.
    Http(HttpGet),
    /// A TCP connect.
    Tcp { host: String, port: u16 },
    /// grpc.health.v1.Health/Check; SERVING succeeds.
    Grpc {
        host: String,
        port: u16,
        service: String,
    },
    /// Sleep (lifecycle hooks only).
    Sleep(Duration),
}

/// A resolved httpGet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpGet {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// The path with its query, starting with `/`.
    pub path: String,
    /// The request's headers in order; a `Host` header among them names the virtual host.
    pub headers: Vec<(String, String)>,
}

impl HttpGet {
    /// The URL kubelet reports in probe messages.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}{}", self.port, self.path)
    }
}

/// A handler that cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    #[error("no handler set (exec, httpGet, tcpSocket, grpc or sleep)")]
    Missing,
    #[error("port {0:?} is not a named port of the container")]
    UnknownPort(String),
    #[error("port {0} is out of range 1-65535")]
    PortRange(i64),
    #[error("scheme {0:?} is not HTTP or HTTPS")]
    Scheme(String),
    #[error("exec has no command")]
    EmptyCommand,
}

/// The probe's action against `container`, whose pod has the IP `pod_ip`.
pub fn probe_action(
    p: &Probe,
    container: &Container,
    pod_ip: &str,
) -> Result<Action, HandlerError> {
    if let Some(e) = &p.exec {
        return exec(e);
    }
    if let Some(h) = &p.http_get {
        return http(h, container, pod_ip);
    }
    if let Some(t) = &p.tcp_socket {
        return tcp(t, container, pod_ip);
    }
    if let Some(g) = &p.grpc {
        return grpc(g, pod_ip);
    }
    Err(HandlerError::Missing)
}

/// A lifecycle hook's action (postStart, preStop).
pub fn hook_action(
    h: &LifecycleHandler,
    container: &Container,
    pod_ip: &str,
) -> Result<Action, HandlerError> {
    if let Some(e) = &h.exec {
        return exec(e);
    }
    if let Some(g) = &h.http_get {
        return http(g, container, pod_ip);
    }
    if let Some(t) = &h.tcp_socket {
        // Deprecated for hooks and never run by kubelet; kept as a connect.
        return tcp(t, container, pod_ip);
    }
    if let Some(s) = &h.sleep {
        return Ok(Action::Sleep(Duration::from_secs(s.seconds.max(0) as u64)));
    }
    Err(HandlerError::Missing)
}

fn exec(e: &ExecAction) -> Result<Action, HandlerError> {
    match e.command.as_deref() {
        Some(c) if !c.is_empty() => Ok(Action::Exec(c.to_vec())),
        _ => Err(HandlerError::EmptyCommand),
    }
}

fn host_or(host: Option<&String>, pod_ip: &str) -> String {
    match host {
        Some(h) if !h.is_empty() => h.clone(),
        _ => pod_ip.to_string(),
    }
}

fn http(h: &HTTPGetAction, c: &Container, pod_ip: &str) -> Result<Action, HandlerError> {
    let https = match h.scheme.as_deref().unwrap_or("HTTP") {
        s if s.eq_ignore_ascii_case("HTTP") => false,
        s if s.eq_ignore_ascii_case("HTTPS") => true,
        s => return Err(HandlerError::Scheme(s.to_string())),
    };
    let mut path = h.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let headers = h
        .http_headers
        .iter()
        .flatten()
        .map(|hd| (hd.name.clone(), hd.value.clone()))
        .collect();
    Ok(Action::Http(HttpGet {
        https,
        host: host_or(h.host.as_ref(), pod_ip),
        port: port(&h.port, c)?,
        path,
        headers,
    }))
}

fn tcp(t: &TCPSocketAction, c: &Container, pod_ip: &str) -> Result<Action, HandlerError> {
    Ok(Action::Tcp {
        host: host_or(t.host.as_ref(), pod_ip),
        port: port(&t.port, c)?,
    })
}

fn grpc(g: &GRPCAction, pod_ip: &str) -> Result<Action, HandlerError> {
    Ok(Action::Grpc {
        host: pod_ip.to_string(),
        port: in_range(g.port.into())?,
        service: g.service.clone().unwrap_or_default(),
    })
}

/// A port by number, or by the name of one of the container's ports (kubelet's
/// `findPortByName`: a name matches a containerPort's name).
fn port(p: &IntOrString, c: &Container) -> Result<u16, HandlerError> {
    match p {
        IntOrString::Int(n) => in_range((*n).into()),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<i64>() {
                return in_range(n);
            }
            c.ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .map(|cp| in_range(cp.container_port.into()))
                .unwrap_or_else(|| Err(HandlerError::UnknownPort(name.clone())))
        }
    }
}

fn in_range(n: i64) -> Result<u16, HandlerError> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or(HandlerError::PortRange(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPHeader, SleepAction};

    fn container() -> Container {
        Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn http_get_resolves_named_ports_and_the_pod_ip() {
        let p = Probe {
            http_get: Some(HTTPGetAction {
                path: Some("healthz?full=1".into()),
                port: IntOrString::String("http".into()),
                http_headers: Some(vec![HTTPHeader {
                    name: "Host".into(),
                    value: "example.test".into(),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let Action::Http(h) = probe_action(&p, &container(), "10.88.0.5").unwrap() else {
            panic!("not http");
        };
        assert_eq!(h.url(), "http://10.88.0.5:8080/healthz?full=1");
        assert_eq!(h.headers, vec![("Host".into(), "example.test".into())]);
        assert!(!h.https);
    }

    #[test]
    fn an_unknown_port_name_or_a_bad_scheme_is_refused() {
        let mut p = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("metrics".into()),
                host: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            probe_action(&p, &container(), "10.0.0.1"),
            Err(HandlerError::UnknownPort("metrics".into()))
        );
        p.tcp_socket = Some(TCPSocketAction {
            port: IntOrString::Int(70000),
            host: None,
        });
        assert_eq!(
            probe_action(&p, &container(), "10.0.0.1"),
            Err(HandlerError::PortRange(70000))
        );
        let p = Probe {
            http_get: Some(HTTPGetAction {
                scheme: Some("FTP".into()),
                port: IntOrString::Int(21),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            probe_action(&p, &container(), "10.0.0.1"),
            Err(HandlerError::Scheme("FTP".into()))
        );
        assert_eq!(
            probe_action(&Probe::default(), &container(), "x"),
            Err(HandlerError::Missing)
        );
    }

    #[test]
    fn tcp_host_and_numeric_port_names_are_kept() {
        let p = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("5432".into()),
                host: Some("127.0.0.1".into()),
            }),
            ..Default::default()
        };
        assert_eq!(
            probe_action(&p, &container(), "10.0.0.1"),
            Ok(Action::Tcp {
                host: "127.0.0.1".into(),
                port: 5432
            })
        );
    }

    #[test]
    fn hooks_sleep_and_exec() {
        let h = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 3 }),
            ..Default::default()
        };
        assert_eq!(
            hook_action(&h, &container(), "ip"),
            Ok(Action::Sleep(Duration::from_secs(3)))
        );
        let h = LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![]),
            }),
            ..Default::default()
        };
        assert_eq!(
            hook_action(&h, &container(), "ip"),
            Err(HandlerError::EmptyCommand)
        );
    }

    #[test]
    fn https_urls_bracket_ipv6_hosts() {
        let h = HttpGet {
            https: true,
            host: "fd00::5".into(),
            port: 443,
            path: "/".into(),
            headers: vec![],
        };
        assert_eq!(h.url(), "https://[fd00::5]:443/");
    }
}
