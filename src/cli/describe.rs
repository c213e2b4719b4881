//! `peapod describe pod`: kubectl's `describe pod` layout (kubectl/pkg/describe's
//! describePod), as a pure function of the pod, its events and "now". kubectl writes lines
//! whose cells are separated by tabs and aligns them with Go's text/tabwriter (padding 2);
//! [`tabwrite`] is that algorithm, so columns line up block by block exactly as kubectl's.

use std::path::Path;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStatus, EnvVar, Event, Pod, Probe, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::client::{self, ClientError};
use super::duration::human;
use super::events::last_seen;

/// kubectl's limit for an annotation printed on one line.
const MAX_ANNOTATION_LEN: usize = 140;

/// Go's text/tabwriter with kubectl describe's settings (minwidth 0, padding 2, spaces): a
/// column is as wide as its widest cell in a block of consecutive lines that have a cell in
/// it; a line's last cell (after its last tab) is never padded and widens nothing.
pub fn tabwrite(text: &str, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_terminator('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    let mut out = String::new();
    format_block(&lines, 0, lines.len(), &mut Vec::new(), padding, &mut out);
    out
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = 0;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() {
                let pad = widths[j].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
}

/// kubectl's PrefixWriter: lines at a level of indentation (two spaces a level), tabs kept
/// for [`tabwrite`].
#[derive(Default)]
struct W(String);

impl W {
    fn w(&mut self, level: usize, s: impl AsRef<str>) {
        for _ in 0..level {
            self.0.push_str("  ");
        }
        self.0.push_str(s.as_ref());
    }
}

/// Go's `time.RFC1123Z` in UTC, as kubectl prints times; a missing time is Go's zero time.
pub fn rfc1123z(t: Option<&Time>) -> String {
    match t {
        Some(t) => t.0.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string(),
        None => "Mon, 01 Jan 0001 00:00:00 +0000".into(),
    }
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

fn int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// One probe's line, as kubectl's DescribeProbe, with the API server's defaults for the
/// fields a manifest leaves out.
pub fn describe_probe(p: &Probe) -> String {
    let attrs = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        p.initial_delay_seconds.unwrap_or(0),
        p.timeout_seconds.unwrap_or(1),
        p.period_seconds.unwrap_or(10),
        p.success_threshold.unwrap_or(1),
        p.failure_threshold.unwrap_or(3)
    );
    if let Some(e) = &p.exec {
        return format!(
            "exec [{}] {attrs}",
            e.command.clone().unwrap_or_default().join(" ")
        );
    }
    if let Some(h) = &p.http_get {
        let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let host = h.host.clone().unwrap_or_default();
        let port = int_or_string(&h.port);
        let host = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut path = h.path.clone().unwrap_or_default();
        if !path.is_empty() && !path.starts_with('/') {
            path.insert(0, '/');
        }
        return format!("http-get {scheme}://{host}{path} {attrs}");
    }
    if let Some(t) = &p.tcp_socket {
        return format!(
            "tcp-socket {}:{} {attrs}",
            t.host.as_deref().unwrap_or_default(),
            int_or_string(&t.port)
        );
    }
    if let Some(g) = &p.grpc {
        return format!(
            "grpc <pod>:{} {} {attrs}",
            g.port,
            g.service.as_deref().unwrap_or_default()
        );
    }
    format!("unknown {attrs}")
}

/// A downward-API field of the pod, as kubectl's EnvValueRetriever resolves it.
fn field_value(pod: &Pod, path: &str) -> String {
    let m = &pod.metadata;
    let st = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&std::collections::BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map?.get(key).cloned().unwrap_or_default())
    };
    if let Some(v) = keyed("metadata.labels['", m.labels.as_ref()) {
        return v;
    }
    if let Some(v) = keyed("metadata.annotations['", m.annotations.as_ref()) {
        return v;
    }
    match path {
        "metadata.name" => m.name.clone(),
        "metadata.namespace" => m.namespace.clone(),
        "metadata.uid" => m.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.hostIP" => st.and_then(|s| s.host_ip.clone()),
        "status.podIP" => st.and_then(|s| s.pod_ip.clone()),
        _ => None,
    }
    .unwrap_or_default()
}

fn env_lines(w: &mut W, pod: &Pod, env: &[EnvVar]) {
    w.w(
        2,
        format!(
            "Environment:{}\n",
            if env.is_empty() { "\t<none>" } else { "" }
        ),
    );
    for e in env {
        let Some(from) = &e.value_from else {
            for (i, s) in e
                .value
                .as_deref()
                .unwrap_or_default()
                .split('\n')
                .enumerate()
            {
                if i == 0 {
                    w.w(3, format!("{}:\t{s}\n", e.name));
                } else {
                    w.w(3, format!("\t{s}\n"));
                }
            }
            continue;
        };
        if let Some(f) = &from.field_ref {
            w.w(
                3,
                format!(
                    "{}:\t{} ({}:{})\n",
                    e.name,
                    field_value(pod, &f.field_path),
                    f.api_version.as_deref().unwrap_or("v1"),
                    f.field_path
                ),
            );
        } else if let Some(r) = &from.resource_field_ref {
            w.w(3, format!("{}:\t ({})\n", e.name, r.resource));
        } else if let Some(s) = &from.secret_key_ref {
            w.w(
                3,
                format!(
                    "{}:\t<set to the key '{}' in secret '{}'>\tOptional: {}\n",
                    e.name,
                    s.key,
                    s.name,
                    s.optional.unwrap_or(false)
                ),
            );
        } else if let Some(c) = &from.config_map_key_ref {
            w.w(
                3,
                format!(
                    "{}:\t<set to the key '{}' of config map '{}'>\tOptional: {}\n",
                    e.name,
                    c.key,
                    c.name,
                    c.optional.unwrap_or(false)
                ),
            );
        }
    }
}

fn state_lines(w: &mut W, title: &str, s: Option<&ContainerState>) {
    let s = s.cloned().unwrap_or_default();
    if let Some(r) = &s.running {
        w.w(2, format!("{title}:\tRunning\n"));
        w.w(
            3,
            format!("Started:\t{}\n", rfc1123z(r.started_at.as_ref())),
        );
    } else if let Some(t) = &s.terminated {
        w.w(2, format!("{title}:\tTerminated\n"));
        if let Some(r) = t.reason.as_deref().filter(|r| !r.is_empty()) {
            w.w(3, format!("Reason:\t{r}\n"));
        }
        if let Some(m) = t.message.as_deref().filter(|m| !m.is_empty()) {
            w.w(3, format!("Message:\t{m}\n"));
        }
        w.w(3, format!("Exit Code:\t{}\n", t.exit_code));
        if let Some(sig) = t.signal.filter(|s| *s > 0) {
            w.w(3, format!("Signal:\t{sig}\n"));
        }
        w.w(
            3,
            format!("Started:\t{}\n", rfc1123z(t.started_at.as_ref())),
        );
        w.w(
            3,
            format!("Finished:\t{}\n", rfc1123z(t.finished_at.as_ref())),
        );
    } else {
        w.w(2, format!("{title}:\tWaiting\n"));
        if let Some(r) = s
            .waiting
            .as_ref()
            .and_then(|x| x.reason.as_deref())
            .filter(|r| !r.is_empty())
        {
            w.w(3, format!("Reason:\t{r}\n"));
        }
    }
}

fn ports(c: &Container, host: bool) -> String {
    c.ports
        .iter()
        .flatten()
        .map(|p| {
            let n = if host {
                p.host_port.unwrap_or(0)
            } else {
                p.container_port
            };
            format!("{n}/{}", p.protocol.as_deref().unwrap_or("TCP"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn containers(w: &mut W, pod: &Pod, title: &str, cs: &[Container], st: &[ContainerStatus]) {
    if cs.is_empty() {
        w.w(0, format!("{title}: <none>\n"));
        return;
    }
    w.w(0, format!("{title}:\n"));
    for c in cs {
        let s = st.iter().find(|s| s.name == c.name);
        w.w(1, format!("{}:\n", c.name));
        if let Some(s) = s {
            w.w(
                2,
                format!(
                    "Container ID:\t{}\n",
                    s.container_id.as_deref().unwrap_or_default()
                ),
            );
        }
        w.w(
            2,
            format!("Image:\t{}\n", c.image.as_deref().unwrap_or_default()),
        );
        if let Some(s) = s {
            w.w(2, format!("Image ID:\t{}\n", s.image_id));
        }
        for (host, one, many) in [(false, "Port", "Ports"), (true, "Host Port", "Host Ports")] {
            let p = ports(c, host);
            if p.contains(',') {
                w.w(2, format!("{many}:\t{p}\n"));
            } else if p.is_empty() {
                w.w(2, format!("{one}:\t<none>\n"));
            } else {
                w.w(2, format!("{one}:\t{p}\n"));
            }
        }
        for (t, items) in [("Command", &c.command), ("Args", &c.args)] {
            if let Some(items) = items.as_ref().filter(|i| !i.is_empty()) {
                w.w(2, format!("{t}:\n"));
                for s in items.iter().flat_map(|i| i.split('\n')) {
                    w.w(3, format!("{s}\n"));
                }
            }
        }
        if let Some(s) = s {
            state_lines(w, "State", s.state.as_ref());
            if s.last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some())
            {
                state_lines(w, "Last State", s.last_state.as_ref());
            }
            w.w(2, format!("Ready:\t{}\n", bool_str(s.ready)));
            w.w(2, format!("Restart Count:\t{}\n", s.restart_count));
        }
        let res = c.resources.clone().unwrap_or_default();
        for (t, m) in [("Limits", &res.limits), ("Requests", &res.requests)] {
            if let Some(m) = m.as_ref().filter(|m| !m.is_empty()) {
                w.w(2, format!("{t}:\n"));
                for (k, q) in m {
                    w.w(3, format!("{k}:\t{}\n", q.0));
                }
            }
        }
        for (t, p) in [
            ("Liveness", &c.liveness_probe),
            ("Readiness", &c.readiness_probe),
            ("Startup", &c.startup_probe),
        ] {
            if let Some(p) = p {
                w.w(2, format!("{t}:\t{}\n", describe_probe(p)));
            }
        }
        if let Some(from) = c.env_from.as_ref().filter(|f| !f.is_empty()) {
            w.w(2, "Environment Variables from:\n");
            for e in from {
                let (name, kind, optional) = match (&e.config_map_ref, &e.secret_ref) {
                    (Some(c), _) => (c.name.clone(), "ConfigMap", c.optional),
                    (None, Some(s)) => (s.name.clone(), "Secret", s.optional),
                    (None, None) => (String::new(), "", None),
                };
                let kind = match e.prefix.as_deref().filter(|p| !p.is_empty()) {
                    Some(p) => format!("{kind} with prefix '{p}'"),
                    None => kind.to_string(),
                };
                w.w(
                    3,
                    format!("{name}\t{kind}\tOptional: {}\n", optional.unwrap_or(false)),
                );
            }
        }
        env_lines(w, pod, c.env.as_deref().unwrap_or_default());
        let mut mounts = c.volume_mounts.clone().unwrap_or_default();
        w.w(
            2,
            format!(
                "Mounts:{}\n",
                if mounts.is_empty() { "\t<none>" } else { "" }
            ),
        );
        mounts.sort_by(|a, b| a.mount_path.cmp(&b.mount_path));
        for m in mounts {
            let mut flags = vec![if m.read_only.unwrap_or(false) {
                "ro"
            } else {
                "rw"
            }
            .to_string()];
            if let Some(sp) = m.sub_path.as_deref().filter(|p| !p.is_empty()) {
                flags.push(format!("path={sp:?}"));
            }
            w.w(
                3,
                format!("{} from {} ({})\n", m.mount_path, m.name, flags.join(",")),
            );
        }
    }
}

fn volumes(w: &mut W, vols: &[Volume]) {
    if vols.is_empty() {
        w.w(0, "Volumes:\t<none>\n");
        return;
    }
    w.w(0, "Volumes:\n");
    for v in vols {
        w.w(1, format!("{}:\n", v.name));
        if let Some(h) = &v.host_path {
            w.w(2, "Type:\tHostPath (bare host directory volume)\n");
            w.w(2, format!("Path:\t{}\n", h.path));
            w.w(
                2,
                format!(
                    "HostPathType:\t{}\n",
                    h.type_.as_deref().unwrap_or("<none>")
                ),
            );
        } else if let Some(e) = &v.empty_dir {
            w.w(
                2,
                "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n",
            );
            w.w(
                2,
                format!("Medium:\t{}\n", e.medium.as_deref().unwrap_or_default()),
            );
            let limit = e
                .size_limit
                .as_ref()
                .map(|q| q.0.clone())
                .filter(|q| !q.is_empty() && q != "0")
                .unwrap_or_else(|| "<unset>".into());
            w.w(2, format!("SizeLimit:\t{limit}\n"));
        } else if let Some(s) = &v.secret {
            w.w(2, "Type:\tSecret (a volume populated by a Secret)\n");
            w.w(
                2,
                format!(
                    "SecretName:\t{}\n",
                    s.secret_name.as_deref().unwrap_or_default()
                ),
            );
            w.w(2, format!("Optional:\t{}\n", s.optional.unwrap_or(false)));
        } else if let Some(c) = &v.config_map {
            w.w(2, "Type:\tConfigMap (a volume populated by a ConfigMap)\n");
            w.w(2, format!("Name:\t{}\n", c.name));
            w.w(2, format!("Optional:\t{}\n", c.optional.unwrap_or(false)));
        } else if let Some(d) = &v.downward_api {
            w.w(
                2,
                "Type:\tDownwardAPI (a volume populated by information about the pod)\n",
            );
            w.w(2, "Items:\n");
            for i in d.items.iter().flatten() {
                if let Some(f) = &i.field_ref {
                    w.w(3, format!("{} -> {}\n", f.field_path, i.path));
                }
                if let Some(r) = &i.resource_field_ref {
                    w.w(3, format!("{} -> {}\n", r.resource, i.path));
                }
            }
        } else if v.projected.is_some() {
            w.w(
                2,
                "Type:\tProjected (a volume that contains injected data from multiple sources)\n",
            );
        } else {
            w.w(1, "<unknown>\n");
        }
    }
}

/// `Labels:`-style lines: the first on the title's line, the others aligned under it.
fn multiline(w: &mut W, title: &str, map: Option<&std::collections::BTreeMap<String, String>>) {
    w.w(0, format!("{title}:\t"));
    let Some(map) = map.filter(|m| !m.is_empty()) else {
        w.w(0, "<none>\n");
        return;
    };
    for (i, (k, v)) in map.iter().enumerate() {
        if i != 0 {
            w.w(0, "\t");
        }
        w.w(0, format!("{k}={v}\n"));
    }
}

fn annotations(w: &mut W, map: Option<&std::collections::BTreeMap<String, String>>) {
    w.w(0, "Annotations:\t");
    let Some(map) = map.filter(|m| !m.is_empty()) else {
        w.w(0, "<none>\n");
        return;
    };
    for (i, (k, v)) in map.iter().enumerate() {
        if i != 0 {
            w.w(0, "\t");
        }
        let v = v.strip_suffix('\n').unwrap_or(v);
        if v.len() + k.len() + 2 > MAX_ANNOTATION_LEN || v.contains('\n') {
            w.w(0, format!("{k}:\n"));
            for s in v.split('\n') {
                let s = if s.len() > MAX_ANNOTATION_LEN - 2 {
                    let mut end = MAX_ANNOTATION_LEN - 2;
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    format!("{}...", &s[..end])
                } else {
                    s.to_string()
                };
                w.w(0, format!("\t  {s}\n"));
            }
        } else {
            w.w(0, format!("{k}: {v}\n"));
        }
    }
}

fn events_lines(w: &mut W, events: &[Event], now: Timestamp) {
    if events.is_empty() {
        w.w(0, "Events:\t<none>\n");
        return;
    }
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| last_seen(e));
    w.w(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    w.w(1, "----\t------\t----\t----\t-------\n");
    let age = |t: Option<Timestamp>| match t {
        Some(t) => human(now.as_second() - t.as_second()),
        None => "<unknown>".into(),
    };
    for e in sorted {
        let first = age(e
            .event_time
            .as_ref()
            .map(|t| t.0)
            .or(e.first_timestamp.as_ref().map(|t| t.0)));
        let count = e.count.unwrap_or(1);
        let interval = if count > 1 {
            format!(
                "{} (x{count} over {first})",
                age(e.last_timestamp.as_ref().map(|t| t.0))
            )
        } else {
            first
        };
        let source = e
            .source
            .as_ref()
            .and_then(|s| s.component.clone())
            .filter(|c| !c.is_empty())
            .or_else(|| e.reporting_component.clone())
            .unwrap_or_default();
        w.w(
            1,
            format!(
                "{}\t{}\t{interval}\t{source}\t{}\n",
                e.type_.as_deref().unwrap_or_default(),
                e.reason.as_deref().unwrap_or_default(),
                e.message.as_deref().unwrap_or_default().trim()
            ),
        );
    }
}

/// `kubectl describe pod` for `pod` and its `events` at `now`.
pub fn describe_pod(pod: &Pod, events: &[Event], now: Timestamp) -> String {
    let m = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let st = pod.status.clone().unwrap_or_default();
    let mut w = W::default();
    w.w(
        0,
        format!("Name:\t{}\n", m.name.as_deref().unwrap_or_default()),
    );
    w.w(
        0,
        format!(
            "Namespace:\t{}\n",
            m.namespace.as_deref().unwrap_or_default()
        ),
    );
    // The API server gives every pod a priority (0 without a priority class).
    w.w(0, format!("Priority:\t{}\n", spec.priority.unwrap_or(0)));
    if let Some(p) = spec
        .priority_class_name
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        w.w(0, format!("Priority Class Name:\t{p}\n"));
    }
    if let Some(r) = spec.runtime_class_name.as_deref().filter(|p| !p.is_empty()) {
        w.w(0, format!("Runtime Class Name:\t{r}\n"));
    }
    if let Some(sa) = spec
        .service_account_name
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        w.w(0, format!("Service Account:\t{sa}\n"));
    }
    match spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        None => w.w(0, "Node:\t<none>\n"),
        Some(n) => w.w(
            0,
            format!("Node:\t{n}/{}\n", st.host_ip.as_deref().unwrap_or_default()),
        ),
    }
    if st.start_time.is_some() {
        w.w(
            0,
            format!("Start Time:\t{}\n", rfc1123z(st.start_time.as_ref())),
        );
    }
    multiline(&mut w, "Labels", m.labels.as_ref());
    annotations(&mut w, m.annotations.as_ref());
    let phase = st.phase.clone().unwrap_or_default();
    match &m.deletion_timestamp {
        Some(t) if phase != "Failed" && phase != "Succeeded" => {
            let until = t.0.as_second() - now.as_second();
            w.w(
                0,
                format!("Status:\tTerminating (lasts {})\n", human(until)),
            );
            if let Some(g) = m.deletion_grace_period_seconds {
                w.w(0, format!("Termination Grace Period:\t{g}s\n"));
            }
        }
        _ => w.w(0, format!("Status:\t{phase}\n")),
    }
    if let Some(r) = st.reason.as_deref().filter(|r| !r.is_empty()) {
        w.w(0, format!("Reason:\t{r}\n"));
    }
    if let Some(msg) = st.message.as_deref().filter(|r| !r.is_empty()) {
        w.w(0, format!("Message:\t{msg}\n"));
    }
    w.w(
        0,
        format!("IP:\t{}\n", st.pod_ip.as_deref().unwrap_or_default()),
    );
    match st.pod_ips.as_ref().filter(|i| !i.is_empty()) {
        None => w.w(0, "IPs:\t<none>\n"),
        Some(ips) => {
            w.w(0, "IPs:\n");
            for ip in ips {
                w.w(1, format!("IP:\t{}\n", ip.ip));
            }
        }
    }
    if let Some(init) = spec.init_containers.as_ref().filter(|i| !i.is_empty()) {
        let s = st.init_container_statuses.clone().unwrap_or_default();
        containers(&mut w, pod, "Init Containers", init, &s);
    }
    let s = st.container_statuses.clone().unwrap_or_default();
    containers(&mut w, pod, "Containers", &spec.containers, &s);
    if let Some(conds) = st.conditions.as_ref().filter(|c| !c.is_empty()) {
        w.w(0, "Conditions:\n  Type\tStatus\n");
        for c in conds {
            w.w(1, format!("{} \t{} \n", c.type_, c.status));
        }
    }
    volumes(&mut w, spec.volumes.as_deref().unwrap_or_default());
    let qos = st
        .qos_class
        .clone()
        .filter(|q| !q.is_empty())
        .unwrap_or_else(|| {
            crate::podspec::qos_class(&spec)
                .map(|q| q.as_str().to_string())
                .unwrap_or_default()
        });
    w.w(0, format!("QoS Class:\t{qos}\n"));
    multiline(&mut w, "Node-Selectors", spec.node_selector.as_ref());
    w.w(0, "Tolerations:\t");
    match spec.tolerations.as_ref().filter(|t| !t.is_empty()) {
        None => w.w(0, "<none>\n"),
        Some(ts) => {
            for (i, t) in ts.iter().enumerate() {
                if i != 0 {
                    w.w(0, "\t");
                }
                let mut line = t.key.clone().unwrap_or_default();
                let value = t.value.clone().unwrap_or_default();
                if !value.is_empty() {
                    line.push_str(&format!("={value}"));
                }
                if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty()) {
                    line.push_str(&format!(":{e}"));
                }
                if t.operator.as_deref() == Some("Exists") && value.is_empty() {
                    line.push_str(if line.is_empty() {
                        "op=Exists"
                    } else {
                        " op=Exists"
                    });
                }
                if let Some(s) = t.toleration_seconds {
                    line.push_str(&format!(" for {s}s"));
                }
                w.w(0, format!("{line}\n"));
            }
        }
    }
    events_lines(&mut w, events, now);
    tabwrite(&w.0, 2)
}

/// `describe pod NAME` in `namespace`: the pod and its events from the API.
pub async fn describe(socket: &Path, namespace: &str, name: &str) -> Result<String, ClientError> {
    let body = client::get(
        socket,
        &format!("/api/v1/namespaces/{namespace}/pods/{name}"),
    )
    .await?;
    let pod: Pod = serde_json::from_slice(&body).map_err(|e| ClientError::Http(e.to_string()))?;
    let events = super::events::fetch(socket, Some(namespace), Some(name)).await?;
    // Events of an earlier pod of the same name are not this pod's.
    let events: Vec<Event> = events
        .into_iter()
        .filter(|e| pod.metadata.uid.is_none() || e.involved_object.uid == pod.metadata.uid)
        .collect();
    Ok(describe_pod(
        &pod,
        &events,
        crate::kubelet::clock::system_wall(),
    ))
}

#[cfg(test)]
#[path = "describe_tests.rs"]
mod tests;
