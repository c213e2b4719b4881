//! Checks of decoded objects: the API server's validation (pkg/apis/core/validation) for the
//! fields that matter to a pod run on this node, plus refusing the fields peapod does not
//! implement. A refused field is named by its path; a field that would be accepted and then
//! ignored is a behaviour the user asked for and silently does not get.
//!
//! Accepted and ignored, because there is one node and no scheduler or API server: nodeSelector,
//! affinity, tolerations, topologySpreadConstraints, schedulerName, priority,
//! priorityClassName, preemptionPolicy, nodeName (set to this node), serviceAccount(Name) (only
//! read by the downward API), automountServiceAccountToken (there is no token to mount),
//! enableServiceLinks (there are no services), container resizePolicy (nothing resizes a
//! static pod), and `status`.
//!
//! Every error is returned, not only the first, each with its path.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, HTTPGetAction, LifecycleHandler, ObjectFieldSelector, Pod,
    PodSpec, Probe, Secret, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::error::{FieldError, Reason};

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const SCHEMES: &[&str] = &["HTTP", "HTTPS"];
const PROPAGATIONS: &[&str] = &["None", "HostToContainer", "Bidirectional"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];
const FS_GROUP_CHANGE_POLICIES: &[&str] = &["Always", "OnRootMismatch"];
const PROBE_HANDLERS: &[&str] = &["exec", "httpGet", "tcpSocket", "grpc"];
const LIFECYCLE_HANDLERS: &[&str] = &["exec", "httpGet", "sleep"];
const ENV_SOURCES: &[&str] = &[
    "fieldRef",
    "resourceFieldRef",
    "configMapKeyRef",
    "secretKeyRef",
];
const ENV_FROM_SOURCES: &[&str] = &["configMapRef", "secretRef"];
const DOWNWARD_SOURCES: &[&str] = &["fieldRef", "resourceFieldRef"];
const PROJECTED_SOURCES: &[&str] = &["configMap", "secret", "downwardAPI"];
const VOLUME_TYPES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "configMap",
    "secret",
    "downwardAPI",
    "projected",
];
/// The pod fields an env var's fieldRef may name (the API server's list, minus none: peapod
/// knows every one of them on its node).
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
];
const RESOURCE_FIELDS: &[&str] = &[
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
];
const RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// Collects errors with short helpers, so each check reads as one line.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, reason: Reason) {
        self.0.push(FieldError::new(path, reason));
    }
    fn required(&mut self, path: impl Into<String>) {
        self.push(path, Reason::Required);
    }
    fn invalid(&mut self, path: impl Into<String>, value: impl ToString, detail: &str) {
        self.push(
            path,
            Reason::Invalid {
                value: value.to_string(),
                detail: detail.to_string(),
            },
        );
    }
    fn one_of(&mut self, path: &str, value: &str, allowed: &'static [&'static str]) {
        if !allowed.contains(&value) {
            self.push(
                path,
                Reason::NotSupported {
                    value: value.to_string(),
                    allowed,
                },
            );
        }
    }
    fn unsupported(&mut self, path: impl Into<String>, detail: &str) {
        self.push(path, Reason::Unsupported(detail.to_string()));
    }
    fn forbidden(&mut self, path: impl Into<String>, detail: &str) {
        self.push(path, Reason::Forbidden(detail.to_string()));
    }
    /// Exactly one of `set` (as (name, is set) pairs) must be set.
    fn exactly_one(&mut self, path: &str, set: &[bool], names: &'static [&'static str]) {
        if set.iter().filter(|s| **s).count() != 1 {
            self.push(path, Reason::OneOf(names));
        }
    }
    fn name(&mut self, path: &str, value: &str, check: fn(&str) -> Result<(), &'static str>) {
        if let Err(detail) = check(value) {
            self.invalid(path, value, detail);
        }
    }
    fn range(&mut self, path: &str, value: i64, lo: i64, hi: i64) {
        if value < lo || value > hi {
            let detail = format!("must be between {lo} and {hi}, inclusive");
            self.invalid(path, value, &detail);
        }
    }
    fn non_negative(&mut self, path: &str, value: Option<impl Into<i64>>) {
        if let Some(v) = value.map(Into::into) {
            if v < 0 {
                self.invalid(path, v, "must be greater than or equal to 0");
            }
        }
    }
}

/// Checks a pod. Empty when it may run.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut e = Errors::default();
    validate_meta(&mut e, &pod.metadata);
    match &pod.spec {
        Some(spec) => validate_spec(&mut e, spec),
        None => e.required("spec"),
    }
    e.0
}

/// Checks a ConfigMap: its name and keys.
pub fn validate_config_map(cm: &ConfigMap) -> Vec<FieldError> {
    let mut e = Errors::default();
    validate_meta(&mut e, &cm.metadata);
    let data = cm.data.iter().flat_map(|d| d.keys());
    for key in data.clone() {
        e.name(&format!("data[{key}]"), key, config_key);
    }
    for key in cm.binary_data.iter().flat_map(|d| d.keys()) {
        e.name(&format!("binaryData[{key}]"), key, config_key);
        if cm.data.as_ref().is_some_and(|d| d.contains_key(key)) {
            e.push(format!("binaryData[{key}]"), Reason::Duplicate(key.clone()));
        }
    }
    e.0
}

/// Checks a Secret: its name and keys (of `data` and `stringData`).
pub fn validate_secret(secret: &Secret) -> Vec<FieldError> {
    let mut e = Errors::default();
    validate_meta(&mut e, &secret.metadata);
    for key in secret.data.iter().flat_map(|d| d.keys()) {
        e.name(&format!("data[{key}]"), key, config_key);
    }
    for key in secret.string_data.iter().flat_map(|d| d.keys()) {
        e.name(&format!("stringData[{key}]"), key, config_key);
    }
    e.0
}

fn validate_meta(e: &mut Errors, meta: &ObjectMeta) {
    match meta.name.as_deref() {
        None | Some("") => e.required("metadata.name"),
        Some(name) => e.name("metadata.name", name, dns1123_subdomain),
    }
    if let Some(ns) = meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        e.name("metadata.namespace", ns, dns1123_label);
    }
    for (key, value) in meta.labels.iter().flatten() {
        let path = format!("metadata.labels[{key}]");
        e.name(&path, key, qualified_name);
        e.name(&path, value, label_value);
    }
    for key in meta.annotations.iter().flat_map(|a| a.keys()) {
        e.name(&format!("metadata.annotations[{key}]"), key, qualified_name);
    }
}

fn validate_spec(e: &mut Errors, spec: &PodSpec) {
    // Refused: valid API fields peapod does not implement.
    let unsupported: &[(bool, &str, &str)] = &[
        (
            spec.ephemeral_containers
                .as_ref()
                .is_some_and(|v| !v.is_empty()),
            "spec.ephemeralContainers",
            "ephemeral containers are added through the API server",
        ),
        (
            spec.resource_claims.as_ref().is_some_and(|v| !v.is_empty()),
            "spec.resourceClaims",
            "dynamic resource allocation",
        ),
        (
            spec.scheduling_gates
                .as_ref()
                .is_some_and(|v| !v.is_empty()),
            "spec.schedulingGates",
            "a gated pod would never start: nothing removes the gates",
        ),
        (
            spec.readiness_gates.as_ref().is_some_and(|v| !v.is_empty()),
            "spec.readinessGates",
            "the gates' conditions are set by controllers through the API server",
        ),
        (
            spec.host_users == Some(false),
            "spec.hostUsers",
            "user namespaces",
        ),
        (
            spec.resources.is_some(),
            "spec.resources",
            "pod-level resources",
        ),
        (
            spec.overhead.is_some(),
            "spec.overhead",
            "pod overhead is set by RuntimeClass admission",
        ),
        (
            spec.active_deadline_seconds.is_some(),
            "spec.activeDeadlineSeconds",
            "active deadlines",
        ),
        (
            spec.host_aliases.as_ref().is_some_and(|v| !v.is_empty()),
            "spec.hostAliases",
            "host aliases",
        ),
        (
            spec.set_hostname_as_fqdn == Some(true),
            "spec.setHostnameAsFQDN",
            "there is no cluster domain",
        ),
    ];
    for (set, path, detail) in unsupported {
        if *set {
            e.unsupported(*path, detail);
        }
    }
    if let Some(os) = &spec.os {
        if os.name != "linux" {
            e.push(
                "spec.os.name",
                Reason::NotSupported {
                    value: os.name.clone(),
                    allowed: &["linux"],
                },
            );
        }
    }
    if let Some(policy) = &spec.restart_policy {
        e.one_of("spec.restartPolicy", policy, RESTART_POLICIES);
    }
    if let Some(policy) = &spec.dns_policy {
        e.one_of("spec.dnsPolicy", policy, DNS_POLICIES);
        if policy == "None" && spec.dns_config.is_none() {
            e.required("spec.dnsConfig");
        }
    }
    e.non_negative(
        "spec.terminationGracePeriodSeconds",
        spec.termination_grace_period_seconds,
    );
    if let Some(h) = spec.hostname.as_deref() {
        e.name("spec.hostname", h, dns1123_label);
    }
    if let Some(s) = spec.subdomain.as_deref() {
        e.name("spec.subdomain", s, dns1123_label);
    }
    if let Some(sc) = &spec.security_context {
        let p = "spec.securityContext";
        if sc.se_linux_options.is_some() {
            e.unsupported(format!("{p}.seLinuxOptions"), "SELinux labels");
        }
        if sc.se_linux_change_policy.is_some() {
            e.unsupported(format!("{p}.seLinuxChangePolicy"), "SELinux labels");
        }
        if sc.app_armor_profile.is_some() {
            e.unsupported(format!("{p}.appArmorProfile"), "AppArmor profiles");
        }
        if sc.windows_options.is_some() {
            e.forbidden(format!("{p}.windowsOptions"), "a Linux pod");
        }
        if let Some(policy) = &sc.fs_group_change_policy {
            e.one_of(
                &format!("{p}.fsGroupChangePolicy"),
                policy,
                FS_GROUP_CHANGE_POLICIES,
            );
        }
        if let Some(policy) = &sc.supplemental_groups_policy {
            e.one_of(&format!("{p}.supplementalGroupsPolicy"), policy, &["Merge"]);
        }
        for (i, s) in sc.sysctls.iter().flatten().enumerate() {
            e.name(&format!("{p}.sysctls[{i}].name"), &s.name, sysctl_name);
        }
    }

    let volumes = validate_volumes(e, spec.volumes.as_deref().unwrap_or_default());

    let init = spec.init_containers.as_deref().unwrap_or_default();
    let app = spec.containers.as_slice();
    if app.is_empty() {
        e.required("spec.containers");
    }
    let ctx = Context {
        volumes: &volumes,
        host_network: spec.host_network == Some(true),
        grace_period: spec.termination_grace_period_seconds.unwrap_or(30),
    };
    let mut names = HashSet::new();
    let all = init
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.initContainers[{i}]"), c, true))
        .chain(
            app.iter()
                .enumerate()
                .map(|(i, c)| (format!("spec.containers[{i}]"), c, false)),
        );
    for (path, c, is_init) in all {
        let name_path = format!("{path}.name");
        if c.name.is_empty() {
            e.required(&name_path);
        } else {
            e.name(&name_path, &c.name, dns1123_label);
            if !names.insert(c.name.as_str()) {
                e.push(name_path, Reason::Duplicate(c.name.clone()));
            }
        }
        validate_container(e, &ctx, &path, c, is_init);
    }
}

struct Context<'a> {
    volumes: &'a HashSet<&'a str>,
    host_network: bool,
    grace_period: i64,
}

/// Checks the volumes; returns their names.
fn validate_volumes<'a>(e: &mut Errors, volumes: &'a [Volume]) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        if v.name.is_empty() {
            e.required(format!("{path}.name"));
        } else {
            e.name(&format!("{path}.name"), &v.name, dns1123_label);
            if !names.insert(v.name.as_str()) {
                e.push(format!("{path}.name"), Reason::Duplicate(v.name.clone()));
            }
        }
        let others = unsupported_volume_types(v);
        for field in &others {
            e.unsupported(format!("{path}.{field}"), "this volume type");
        }
        let supported = [
            v.empty_dir.is_some(),
            v.host_path.is_some(),
            v.config_map.is_some(),
            v.secret.is_some(),
            v.downward_api.is_some(),
            v.projected.is_some(),
        ];
        let count = supported.iter().filter(|s| **s).count() + others.len();
        if count == 0 {
            e.push(path.clone(), Reason::OneOf(VOLUME_TYPES));
        } else if count > 1 {
            e.forbidden(path.clone(), "may not specify more than 1 volume type");
        }
        if let Some(ed) = &v.empty_dir {
            if let Some(medium) = ed.medium.as_deref() {
                e.one_of(&format!("{path}.emptyDir.medium"), medium, &["", "Memory"]);
            }
        }
        if let Some(hp) = &v.host_path {
            let p = format!("{path}.hostPath");
            if hp.path.is_empty() {
                e.required(format!("{p}.path"));
            } else if !hp.path.starts_with('/') {
                e.invalid(format!("{p}.path"), &hp.path, "must be an absolute path");
            } else if hp.path.split('/').any(|c| c == "..") {
                e.invalid(format!("{p}.path"), &hp.path, "must not contain '..'");
            }
            if let Some(t) = hp.type_.as_deref() {
                e.one_of(&format!("{p}.type"), t, HOST_PATH_TYPES);
            }
        }
        if let Some(cm) = &v.config_map {
            let p = format!("{path}.configMap");
            if cm.name.is_empty() {
                e.required(format!("{p}.name"));
            }
            validate_mode(e, &format!("{p}.defaultMode"), cm.default_mode);
            validate_items(e, &p, cm.items.as_deref());
        }
        if let Some(s) = &v.secret {
            let p = format!("{path}.secret");
            if s.secret_name.as_deref().is_none_or(str::is_empty) {
                e.required(format!("{p}.secretName"));
            }
            validate_mode(e, &format!("{p}.defaultMode"), s.default_mode);
            validate_items(e, &p, s.items.as_deref());
        }
        if let Some(d) = &v.downward_api {
            let p = format!("{path}.downwardAPI");
            validate_mode(e, &format!("{p}.defaultMode"), d.default_mode);
            validate_downward_items(e, &p, d.items.as_deref());
        }
        if let Some(pr) = &v.projected {
            let p = format!("{path}.projected");
            validate_mode(e, &format!("{p}.defaultMode"), pr.default_mode);
            for (j, s) in pr.sources.iter().flatten().enumerate() {
                let sp = format!("{p}.sources[{j}]");
                if s.service_account_token.is_some() {
                    e.unsupported(
                        format!("{sp}.serviceAccountToken"),
                        "tokens are issued by the API server",
                    );
                }
                if s.cluster_trust_bundle.is_some() {
                    e.unsupported(
                        format!("{sp}.clusterTrustBundle"),
                        "trust bundles are served by the API server",
                    );
                }
                let set = [
                    s.config_map.is_some(),
                    s.secret.is_some(),
                    s.downward_api.is_some(),
                ];
                let count = set.iter().filter(|x| **x).count()
                    + usize::from(s.service_account_token.is_some())
                    + usize::from(s.cluster_trust_bundle.is_some());
                if count != 1 {
                    e.push(sp.clone(), Reason::OneOf(PROJECTED_SOURCES));
                }
                if let Some(cm) = &s.config_map {
                    validate_items(e, &format!("{sp}.configMap"), cm.items.as_deref());
                }
                if let Some(sec) = &s.secret {
                    validate_items(e, &format!("{sp}.secret"), sec.items.as_deref());
                }
                if let Some(d) = &s.downward_api {
                    validate_downward_items(e, &format!("{sp}.downwardAPI"), d.items.as_deref());
                }
            }
        }
    }
    names
}

/// The set volume types peapod does not implement, by API name.
fn unsupported_volume_types(v: &Volume) -> Vec<&'static str> {
    let set = [
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.azure_file.is_some(), "azureFile"),
        (v.cephfs.is_some(), "cephfs"),
        (v.cinder.is_some(), "cinder"),
        (v.csi.is_some(), "csi"),
        (v.ephemeral.is_some(), "ephemeral"),
        (v.fc.is_some(), "fc"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.flocker.is_some(), "flocker"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.image.is_some(), "image"),
        (v.iscsi.is_some(), "iscsi"),
        (v.nfs.is_some(), "nfs"),
        (v.persistent_volume_claim.is_some(), "persistentVolumeClaim"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.quobyte.is_some(), "quobyte"),
        (v.rbd.is_some(), "rbd"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
    ];
    set.iter().filter(|(s, _)| *s).map(|(_, n)| *n).collect()
}

fn validate_mode(e: &mut Errors, path: &str, mode: Option<i32>) {
    if let Some(m) = mode {
        if !(0..=0o777).contains(&m) {
            e.invalid(path, m, "must be a number between 0 and 0777 (octal)");
        }
    }
}

fn validate_items(
    e: &mut Errors,
    path: &str,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) {
    for (i, item) in items.unwrap_or_default().iter().enumerate() {
        let p = format!("{path}.items[{i}]");
        if item.key.is_empty() {
            e.required(format!("{p}.key"));
        } else {
            e.name(&format!("{p}.key"), &item.key, config_key);
        }
        e.name(&format!("{p}.path"), &item.path, relative_path);
        validate_mode(e, &format!("{p}.mode"), item.mode);
    }
}

fn validate_downward_items(
    e: &mut Errors,
    path: &str,
    items: Option<&[k8s_openapi::api::core::v1::DownwardAPIVolumeFile]>,
) {
    for (i, item) in items.unwrap_or_default().iter().enumerate() {
        let p = format!("{path}.items[{i}]");
        e.name(&format!("{p}.path"), &item.path, relative_path);
        validate_mode(e, &format!("{p}.mode"), item.mode);
        e.exactly_one(
            &p,
            &[item.field_ref.is_some(), item.resource_field_ref.is_some()],
            DOWNWARD_SOURCES,
        );
        if let Some(f) = &item.field_ref {
            validate_field_ref(e, &format!("{p}.fieldRef"), f, VOLUME_FIELD_PATHS);
        }
        if let Some(r) = &item.resource_field_ref {
            let rp = format!("{p}.resourceFieldRef");
            if r.container_name.as_deref().is_none_or(str::is_empty) {
                e.required(format!("{rp}.containerName"));
            }
            validate_resource_field(e, &format!("{rp}.resource"), &r.resource);
        }
    }
}

fn validate_field_ref(
    e: &mut Errors,
    path: &str,
    f: &ObjectFieldSelector,
    allowed: &'static [&'static str],
) {
    if let Some(v) = f.api_version.as_deref() {
        e.one_of(&format!("{path}.apiVersion"), v, &["v1"]);
    }
    let fp = format!("{path}.fieldPath");
    // A single label or annotation by key: metadata.labels['key'].
    let subscript = ["metadata.labels['", "metadata.annotations['"]
        .iter()
        .find_map(|pre| f.field_path.strip_prefix(pre))
        .and_then(|rest| rest.strip_suffix("']"));
    match subscript {
        Some(key) => e.name(&fp, key, qualified_name),
        None => e.one_of(&fp, &f.field_path, allowed),
    }
}

fn validate_resource_field(e: &mut Errors, path: &str, resource: &str) {
    let hugepages = ["limits.hugepages-", "requests.hugepages-"]
        .iter()
        .any(|p| resource.starts_with(p));
    if !hugepages {
        e.one_of(path, resource, RESOURCE_FIELDS);
    }
}

fn validate_container(e: &mut Errors, ctx: &Context, path: &str, c: &Container, is_init: bool) {
    let sidecar = is_init && c.restart_policy.as_deref() == Some("Always");
    match c.image.as_deref() {
        None | Some("") => e.required(format!("{path}.image")),
        Some(image) if image.trim() != image => e.invalid(
            format!("{path}.image"),
            image,
            "must not have leading or trailing whitespace",
        ),
        Some(_) => {}
    }
    if let Some(p) = &c.image_pull_policy {
        e.one_of(&format!("{path}.imagePullPolicy"), p, PULL_POLICIES);
    }
    if let Some(p) = &c.termination_message_policy {
        e.one_of(
            &format!("{path}.terminationMessagePolicy"),
            p,
            TERMINATION_MESSAGE_POLICIES,
        );
    }
    if let Some(policy) = &c.restart_policy {
        let rp = format!("{path}.restartPolicy");
        if is_init {
            e.one_of(&rp, policy, &["Always"]);
        } else {
            e.forbidden(rp, "may not be set for non-init containers");
        }
    }

    // Ports: numbers, protocols, unique names.
    let mut port_names = HashSet::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let pp = format!("{path}.ports[{i}]");
        e.range(
            &format!("{pp}.containerPort"),
            p.container_port.into(),
            1,
            65535,
        );
        if let Some(hp) = p.host_port.filter(|hp| *hp != 0) {
            e.range(&format!("{pp}.hostPort"), hp.into(), 1, 65535);
            if ctx.host_network && hp != p.container_port {
                e.invalid(
                    format!("{pp}.hostPort"),
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                );
            }
        }
        if let Some(proto) = &p.protocol {
            e.one_of(&format!("{pp}.protocol"), proto, PROTOCOLS);
        }
        if let Some(ip) = p.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
            if ip.parse::<std::net::IpAddr>().is_err() {
                e.invalid(format!("{pp}.hostIP"), ip, "must be a valid IP address");
            }
        }
        if let Some(name) = p.name.as_deref() {
            e.name(&format!("{pp}.name"), name, iana_svc_name);
            if !port_names.insert(name) {
                e.push(format!("{pp}.name"), Reason::Duplicate(name.to_string()));
            }
        }
    }

    for (i, env) in c.env.iter().flatten().enumerate() {
        validate_env(e, &format!("{path}.env[{i}]"), env);
    }
    for (i, src) in c.env_from.iter().flatten().enumerate() {
        let p = format!("{path}.envFrom[{i}]");
        e.exactly_one(
            &p,
            &[src.config_map_ref.is_some(), src.secret_ref.is_some()],
            ENV_FROM_SOURCES,
        );
        if let Some(prefix) = src.prefix.as_deref().filter(|p| !p.is_empty()) {
            e.name(&format!("{p}.prefix"), prefix, env_var_name);
        }
    }

    // Mounts: a declared volume, once per path.
    let mut mount_paths = HashSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = format!("{path}.volumeMounts[{i}]");
        if m.name.is_empty() {
            e.required(format!("{mp}.name"));
        } else if !ctx.volumes.contains(m.name.as_str()) {
            e.push(
                format!("{mp}.name"),
                Reason::Invalid {
                    value: m.name.clone(),
                    detail: "not a volume of the pod (spec.volumes)".to_string(),
                },
            );
        }
        if m.mount_path.is_empty() {
            e.required(format!("{mp}.mountPath"));
        } else if !mount_paths.insert(m.mount_path.as_str()) {
            e.push(
                format!("{mp}.mountPath"),
                Reason::Duplicate(m.mount_path.clone()),
            );
        }
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            e.name(&format!("{mp}.subPath"), sub, relative_path);
            if m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty()) {
                e.forbidden(
                    format!("{mp}.subPathExpr"),
                    "subPathExpr and subPath are mutually exclusive",
                );
            }
        }
        if let Some(prop) = &m.mount_propagation {
            let pp = format!("{mp}.mountPropagation");
            e.one_of(&pp, prop, PROPAGATIONS);
            let privileged = c
                .security_context
                .as_ref()
                .and_then(|s| s.privileged)
                .unwrap_or(false);
            if prop == "Bidirectional" && !privileged {
                e.forbidden(
                    pp,
                    "Bidirectional mount propagation is available only to privileged containers",
                );
            }
        }
        if let Some(rro) = m.recursive_read_only.as_deref() {
            if rro != "Disabled" {
                e.unsupported(
                    format!("{mp}.recursiveReadOnly"),
                    "recursive read-only mounts",
                );
            }
        }
    }
    if c.volume_devices.as_ref().is_some_and(|v| !v.is_empty()) {
        e.unsupported(format!("{path}.volumeDevices"), "block devices from claims");
    }

    if let Some(res) = &c.resources {
        let rp = format!("{path}.resources");
        if res.claims.as_ref().is_some_and(|v| !v.is_empty()) {
            e.unsupported(format!("{rp}.claims"), "dynamic resource allocation");
        }
        // Quantities themselves are checked where they become cgroup values.
        for (kind, map) in [("limits", &res.limits), ("requests", &res.requests)] {
            for name in map.iter().flat_map(BTreeMap::keys) {
                if !RESOURCES.contains(&name.as_str()) && !name.starts_with("hugepages-") {
                    e.unsupported(
                        format!("{rp}.{kind}[{name}]"),
                        "extended resources (there are no device plugins)",
                    );
                }
            }
        }
    }

    if let Some(sc) = &c.security_context {
        let sp = format!("{path}.securityContext");
        if sc.se_linux_options.is_some() {
            e.unsupported(format!("{sp}.seLinuxOptions"), "SELinux labels");
        }
        if sc.app_armor_profile.is_some() {
            e.unsupported(format!("{sp}.appArmorProfile"), "AppArmor profiles");
        }
        if sc.windows_options.is_some() {
            e.forbidden(format!("{sp}.windowsOptions"), "a Linux pod");
        }
        if let Some(pm) = sc.proc_mount.as_deref() {
            e.one_of(&format!("{sp}.procMount"), pm, &["Default"]);
        }
    }

    // Probes and hooks. A plain init container runs to completion: it has neither (the API
    // server forbids them); a sidecar has both, like an app container.
    let probes = [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ];
    for (kind, probe) in probes {
        let Some(probe) = probe else { continue };
        let pp = format!("{path}.{kind}");
        if is_init && !sidecar {
            e.forbidden(
                pp,
                "may not be set for init containers without restartPolicy=Always",
            );
            continue;
        }
        validate_probe(e, &pp, kind, probe, c);
    }
    if let Some(lc) = &c.lifecycle {
        let lp = format!("{path}.lifecycle");
        if is_init && !sidecar {
            e.forbidden(
                lp,
                "may not be set for init containers without restartPolicy=Always",
            );
        } else {
            for (kind, h) in [("postStart", &lc.post_start), ("preStop", &lc.pre_stop)] {
                if let Some(h) = h {
                    validate_hook(e, ctx, &format!("{lp}.{kind}"), h, c);
                }
            }
            if lc.stop_signal.is_some() {
                e.unsupported(
                    format!("{lp}.stopSignal"),
                    "the stop signal is the image's STOPSIGNAL or SIGTERM",
                );
            }
        }
    }
}

fn validate_env(e: &mut Errors, path: &str, env: &EnvVar) {
    if env.name.is_empty() {
        e.required(format!("{path}.name"));
    } else {
        e.name(&format!("{path}.name"), &env.name, env_var_name);
    }
    let Some(from) = &env.value_from else { return };
    let vp = format!("{path}.valueFrom");
    if env.value.as_deref().is_some_and(|v| !v.is_empty()) {
        e.invalid(&vp, "", "may not be specified when `value` is not empty");
    }
    e.exactly_one(
        &vp,
        &[
            from.field_ref.is_some(),
            from.resource_field_ref.is_some(),
            from.config_map_key_ref.is_some(),
            from.secret_key_ref.is_some(),
        ],
        ENV_SOURCES,
    );
    if let Some(f) = &from.field_ref {
        validate_field_ref(e, &format!("{vp}.fieldRef"), f, ENV_FIELD_PATHS);
    }
    if let Some(r) = &from.resource_field_ref {
        validate_resource_field(e, &format!("{vp}.resourceFieldRef.resource"), &r.resource);
    }
    let refs = [
        (
            "configMapKeyRef",
            from.config_map_key_ref.as_ref().map(|r| (&r.name, &r.key)),
        ),
        (
            "secretKeyRef",
            from.secret_key_ref.as_ref().map(|r| (&r.name, &r.key)),
        ),
    ];
    for (kind, r) in refs {
        let Some((name, key)) = r else { continue };
        let rp = format!("{vp}.{kind}");
        if name.is_empty() {
            e.required(format!("{rp}.name"));
        }
        if key.is_empty() {
            e.required(format!("{rp}.key"));
        } else {
            e.name(&format!("{rp}.key"), key, config_key);
        }
    }
}

fn validate_probe(e: &mut Errors, path: &str, kind: &str, p: &Probe, c: &Container) {
    e.exactly_one(
        path,
        &[
            p.exec.is_some(),
            p.http_get.is_some(),
            p.tcp_socket.is_some(),
            p.grpc.is_some(),
        ],
        PROBE_HANDLERS,
    );
    for (field, value) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        e.non_negative(&format!("{path}.{field}"), value);
    }
    // 0 is the API's "unset", defaulted to 1.
    if kind != "readinessProbe" && p.success_threshold.is_some_and(|s| s > 1) {
        e.invalid(
            format!("{path}.successThreshold"),
            p.success_threshold.unwrap_or_default(),
            "must be 1",
        );
    }
    if let Some(grace) = p.termination_grace_period_seconds {
        let gp = format!("{path}.terminationGracePeriodSeconds");
        if kind == "readinessProbe" {
            e.forbidden(gp, "must not be set for readinessProbes");
        } else if grace <= 0 {
            e.invalid(gp, grace, "must be greater than 0");
        }
    }
    if let Some(exec) = &p.exec {
        if exec.command.as_ref().is_none_or(Vec::is_empty) {
            e.required(format!("{path}.exec.command"));
        }
    }
    if let Some(h) = &p.http_get {
        validate_http_get(e, &format!("{path}.httpGet"), h, c);
    }
    if let Some(t) = &p.tcp_socket {
        validate_port(e, &format!("{path}.tcpSocket.port"), &t.port, c);
    }
    if let Some(g) = &p.grpc {
        e.range(&format!("{path}.grpc.port"), g.port.into(), 1, 65535);
    }
}

fn validate_hook(e: &mut Errors, ctx: &Context, path: &str, h: &LifecycleHandler, c: &Container) {
    if h.tcp_socket.is_some() {
        // Deprecated in the API and never run by kubelet: refused rather than ignored.
        e.unsupported(format!("{path}.tcpSocket"), "tcpSocket lifecycle hooks");
    }
    let set = [h.exec.is_some(), h.http_get.is_some(), h.sleep.is_some()];
    if set.iter().filter(|s| **s).count() + usize::from(h.tcp_socket.is_some()) != 1 {
        e.push(path, Reason::OneOf(LIFECYCLE_HANDLERS));
    }
    if let Some(exec) = &h.exec {
        if exec.command.as_ref().is_none_or(Vec::is_empty) {
            e.required(format!("{path}.exec.command"));
        }
    }
    if let Some(http) = &h.http_get {
        validate_http_get(e, &format!("{path}.httpGet"), http, c);
    }
    if let Some(sleep) = &h.sleep {
        // The sleep spends the pod's grace period, so it cannot be longer.
        e.range(
            &format!("{path}.sleep.seconds"),
            sleep.seconds,
            0,
            ctx.grace_period,
        );
    }
}

fn validate_http_get(e: &mut Errors, path: &str, h: &HTTPGetAction, c: &Container) {
    validate_port(e, &format!("{path}.port"), &h.port, c);
    if let Some(s) = &h.scheme {
        e.one_of(&format!("{path}.scheme"), s, SCHEMES);
    }
    for (i, header) in h.http_headers.iter().flatten().enumerate() {
        e.name(
            &format!("{path}.httpHeaders[{i}].name"),
            &header.name,
            http_header_name,
        );
    }
}

/// A probe or hook port: a number, or the name of one of the container's ports. The API server
/// only checks the name's form; a name no port has would fail every probe, so it is refused.
fn validate_port(e: &mut Errors, path: &str, port: &IntOrString, c: &Container) {
    match port {
        IntOrString::Int(n) => e.range(path, (*n).into(), 1, 65535),
        IntOrString::String(name) => {
            if let Err(detail) = iana_svc_name(name) {
                e.invalid(path, name, detail);
            } else if !c
                .ports
                .iter()
                .flatten()
                .any(|p| p.name.as_deref() == Some(name.as_str()))
            {
                e.invalid(path, name, "not the name of a port of the container");
            }
        }
    }
}

// Name rules of k8s.io/apimachinery/pkg/util/validation.

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn dns1123_label(s: &str) -> Result<(), &'static str> {
    const DETAIL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
                          characters or '-', and must start and end with an alphanumeric \
                          character";
    if s.len() > 63 {
        return Err("must be no more than 63 characters");
    }
    let ok = !s.is_empty()
        && s.chars().all(|c| is_alnum_lower(c) || c == '-')
        && s.starts_with(is_alnum_lower)
        && s.ends_with(is_alnum_lower);
    if ok {
        Ok(())
    } else {
        Err(DETAIL)
    }
}

/// RFC 1123 subdomain: at most 253 characters, dot-separated labels.
pub fn dns1123_subdomain(s: &str) -> Result<(), &'static str> {
    const DETAIL: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
                          alphanumeric characters, '-' or '.', and must start and end with an \
                          alphanumeric character";
    if s.len() > 253 {
        return Err("must be no more than 253 characters");
    }
    let ok = !s.is_empty()
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| is_alnum_lower(c) || c == '-')
                && part.starts_with(is_alnum_lower)
                && part.ends_with(is_alnum_lower)
        });
    if ok {
        Ok(())
    } else {
        Err(DETAIL)
    }
}

/// IANA service name (a named port): at most 15 of `[a-z0-9-]`, at least one letter, no
/// leading, trailing or doubled '-'.
pub fn iana_svc_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > 15 {
        return Err("must be no more than 15 characters");
    }
    if !s.chars().all(|c| is_alnum_lower(c) || c == '-') {
        return Err("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        return Err("must contain at least one letter (a-z)");
    }
    if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
        return Err("must not begin or end with a hyphen, or contain adjacent hyphens");
    }
    Ok(())
}

/// A label or annotation key: `[prefix/]name`, the prefix a DNS subdomain, the name at most 63
/// of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
pub fn qualified_name(s: &str) -> Result<(), &'static str> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err("prefix part must be non-empty");
        }
        dns1123_subdomain(p).map_err(|_| "prefix part must be a DNS subdomain")?;
    }
    if name.is_empty() {
        return Err("name part must be non-empty");
    }
    if name.len() > 63 {
        return Err("name part must be no more than 63 characters");
    }
    label_value(name).map_err(|_| {
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and \
         end with an alphanumeric character"
    })
}

/// A label value: empty, or at most 63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
pub fn label_value(s: &str) -> Result<(), &'static str> {
    if s.len() > 63 {
        return Err("must be no more than 63 characters");
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let ok = s.is_empty()
        || (s
            .chars()
            .all(|c| alnum(c) || c == '-' || c == '_' || c == '.')
            && s.starts_with(alnum)
            && s.ends_with(alnum));
    if ok {
        Ok(())
    } else {
        Err(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', \
             '_' or '.', and must start and end with an alphanumeric character",
        )
    }
}

/// An environment variable name, by the rule of Kubernetes 1.32+ (RelaxedEnvironmentVariable
/// Validation, on by default since 1.30): printable ASCII, no '='.
pub fn env_var_name(s: &str) -> Result<(), &'static str> {
    if !s.is_empty() && s.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b'=') {
        Ok(())
    } else {
        Err(
            "a valid environment variable name must consist only of printable ASCII characters \
             other than '='",
        )
    }
}

/// A ConfigMap or Secret key: at most 253 of `[-._a-zA-Z0-9]`, not `.` or `..` or starting
/// with `..` (the file names a volume writes).
pub fn config_key(s: &str) -> Result<(), &'static str> {
    if s.len() > 253 {
        return Err("must be no more than 253 characters");
    }
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err("a valid config key must consist of alphanumeric characters, '-', '_' or '.'");
    }
    if s == "." || s.starts_with("..") {
        return Err("must not be '.' or '..' or start with '..'");
    }
    Ok(())
}

/// A path inside a volume: relative, no `..` component.
fn relative_path(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.starts_with('/') {
        return Err("must be a relative path");
    }
    if s.split('/').any(|c| c == "..") {
        return Err("must not contain '..'");
    }
    Ok(())
}

fn sysctl_name(s: &str) -> Result<(), &'static str> {
    let ok = !s.is_empty()
        && s.split(['.', '/']).all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| is_alnum_lower(c) || c == '-' || c == '_')
                && part.starts_with(is_alnum_lower)
                && part.ends_with(is_alnum_lower)
        });
    if ok {
        Ok(())
    } else {
        Err("must consist of lower case alphanumeric characters, '-', '_', '.' or '/'")
    }
}

/// An HTTP header name: an RFC 7230 token.
fn http_header_name(s: &str) -> Result<(), &'static str> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !s.is_empty() && s.bytes().all(token) {
        Ok(())
    } else {
        Err("must be a valid HTTP header name")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::manifest::load;

    /// The errors `load` reports for a pod built from `spec` (the YAML under `spec:`), as
    /// "path: reason" strings.
    fn errors_of(text: &str) -> Vec<String> {
        match load(Path::new("p.yaml"), text.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(errs) => errs
                .iter()
                .map(|e| match e.field() {
                    Some(f) => f.to_string(),
                    None => e.to_string(),
                })
                .collect(),
        }
    }

    fn pod(spec: &str) -> String {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{spec}")
    }

    const C: &str = "  containers:\n  - name: c\n    image: busybox\n";

    #[test]
    fn valid_pods() {
        let full = pod(
            "  restartPolicy: OnFailure\n  hostNetwork: false\n  dnsPolicy: ClusterFirst\n  nodeSelector: {a: b}\n  tolerations: [{operator: Exists}]\n  os: {name: linux}\n  hostUsers: true\n  securityContext: {runAsUser: 1000, fsGroup: 2000, sysctls: [{name: net.ipv4.ip_forward, value: '1'}]}\n  volumes:\n  - {name: data, emptyDir: {medium: Memory, sizeLimit: 64Mi}}\n  - {name: host, hostPath: {path: /var/log, type: Directory}}\n  - {name: cm, configMap: {name: cfg, items: [{key: a.conf, path: conf/a.conf}]}}\n  - {name: sec, secret: {secretName: s, defaultMode: 0400}}\n  - {name: dw, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}\n  - {name: pr, projected: {sources: [{configMap: {name: cfg}}, {secret: {name: s}}]}}\n  initContainers:\n  - {name: init, image: busybox, command: [sh, -c, 'true']}\n  - name: sidecar\n    image: busybox\n    restartPolicy: Always\n    startupProbe: {exec: {command: ['true']}}\n  containers:\n  - name: web\n    image: nginx:1.27\n    imagePullPolicy: IfNotPresent\n    ports: [{name: http, containerPort: 80, hostPort: 8080, protocol: TCP}]\n    env:\n    - {name: A, value: x}\n    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}\n    - {name: APP, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['app']\"}}}\n    - {name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}\n    - {name: K, valueFrom: {configMapKeyRef: {name: cfg, key: k}}}\n    envFrom: [{secretRef: {name: s}, prefix: S_}]\n    resources: {limits: {cpu: 500m, memory: 128Mi}}\n    volumeMounts:\n    - {name: data, mountPath: /data, subPath: web}\n    - {name: cm, mountPath: /etc/cfg, readOnly: true}\n    livenessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}\n    readinessProbe: {tcpSocket: {port: 80}, successThreshold: 2}\n    lifecycle:\n      preStop: {sleep: {seconds: 5}}\n      postStart: {exec: {command: [sh, -c, 'echo hi']}}\n",
        );
        let docs = load(Path::new("full.yaml"), full.as_bytes());
        assert!(docs.is_ok(), "{docs:?}");
    }

    #[test]
    fn invalid_fields() {
        let table: &[(&str, String, &[&str])] = &[
            (
                "name required",
                "apiVersion: v1\nkind: Pod\nspec:\n  containers: [{name: c, image: x}]\n".into(),
                &["metadata.name: missing field"],
            ),
            (
                "bad names",
                format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: Web_1\n  namespace: a.b\n  labels: {{'x/y/z': '-'}}\nspec:\n{C}"),
                &[
                    "metadata.name: invalid value \"Web_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                    "metadata.namespace: invalid value \"a.b\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                    "metadata.labels[x/y/z]: invalid value \"x/y/z\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                    "metadata.labels[x/y/z]: invalid value \"-\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                ],
            ),
            ("no spec", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n".into(), &["spec: missing field"]),
            ("no containers", pod("  containers: []\n"), &["spec.containers: missing field"]),
            (
                "container names",
                pod("  initContainers: [{name: c, image: x}]\n  containers:\n  - {name: c, image: x}\n  - {name: C, image: ''}\n"),
                &[
                    "spec.containers[0].name: duplicate value \"c\"",
                    "spec.containers[1].name: invalid value \"C\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                    "spec.containers[1].image: missing field",
                ],
            ),
            (
                "ports",
                pod(&format!("{C}    ports:\n    - containerPort: 80\n    - {{containerPort: 70000, hostPort: -1, protocol: tcp, name: HTTP}}\n    - {{containerPort: 1, name: a}}\n    - {{containerPort: 2, name: a}}\n")),
                &[
                    "spec.containers[0].ports[1].containerPort: invalid value \"70000\": must be between 1 and 65535, inclusive",
                    "spec.containers[0].ports[1].hostPort: invalid value \"-1\": must be between 1 and 65535, inclusive",
                    "spec.containers[0].ports[1].protocol: unsupported value \"tcp\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
                    "spec.containers[0].ports[1].name: invalid value \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                    "spec.containers[0].ports[3].name: duplicate value \"a\"",
                ],
            ),
            (
                "hostNetwork ports",
                pod(&format!("  hostNetwork: true\n{C}    ports: [{{containerPort: 80, hostPort: 8080}}]\n")),
                &["spec.containers[0].ports[0].hostPort: invalid value \"8080\": must match `containerPort` when `hostNetwork` is true"],
            ),
            (
                "probe handlers",
                pod(&format!("{C}    livenessProbe: {{periodSeconds: 1}}\n    readinessProbe: {{exec: {{command: [x]}}, tcpSocket: {{port: 1}}, terminationGracePeriodSeconds: 3}}\n    startupProbe: {{httpGet: {{port: web, scheme: FTP}}, successThreshold: 3}}\n")),
                &[
                    "spec.containers[0].livenessProbe: exactly one of \"exec\", \"httpGet\", \"tcpSocket\", \"grpc\" must be set",
                    "spec.containers[0].readinessProbe: exactly one of \"exec\", \"httpGet\", \"tcpSocket\", \"grpc\" must be set",
                    "spec.containers[0].readinessProbe.terminationGracePeriodSeconds: forbidden: must not be set for readinessProbes",
                    "spec.containers[0].startupProbe.successThreshold: invalid value \"3\": must be 1",
                    "spec.containers[0].startupProbe.httpGet.port: invalid value \"web\": not the name of a port of the container",
                    "spec.containers[0].startupProbe.httpGet.scheme: unsupported value \"FTP\": supported values: \"HTTP\", \"HTTPS\"",
                ],
            ),
            (
                "plain init container probes",
                pod(&format!("  initContainers:\n  - {{name: i, image: x, readinessProbe: {{exec: {{command: [x]}}}}, restartPolicy: OnFailure}}\n{C}    restartPolicy: Always\n")),
                &[
                    "spec.initContainers[0].restartPolicy: unsupported value \"OnFailure\": supported values: \"Always\"",
                    "spec.initContainers[0].readinessProbe: forbidden: may not be set for init containers without restartPolicy=Always",
                    "spec.containers[0].restartPolicy: forbidden: may not be set for non-init containers",
                ],
            ),
            (
                "restart policy",
                pod(&format!("  restartPolicy: Sometimes\n{C}")),
                &["spec.restartPolicy: unsupported value \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""],
            ),
            (
                "volumes and mounts",
                pod(&format!("  volumes:\n  - {{name: a, emptyDir: {{}}}}\n  - {{name: a, hostPath: {{path: relative}}}}\n  - {{name: n, nfs: {{server: s, path: /x}}}}\n  - {{name: none}}\n{C}    volumeMounts:\n    - {{name: a, mountPath: /a}}\n    - {{name: missing, mountPath: /a, subPath: ../x}}\n")),
                &[
                    "spec.volumes[1].name: duplicate value \"a\"",
                    "spec.volumes[1].hostPath.path: invalid value \"relative\": must be an absolute path",
                    "spec.volumes[2].nfs: not supported by peapod: this volume type",
                    "spec.volumes[3]: exactly one of \"emptyDir\", \"hostPath\", \"configMap\", \"secret\", \"downwardAPI\", \"projected\" must be set",
                    "spec.containers[0].volumeMounts[1].name: invalid value \"missing\": not a volume of the pod (spec.volumes)",
                    "spec.containers[0].volumeMounts[1].mountPath: duplicate value \"/a\"",
                    "spec.containers[0].volumeMounts[1].subPath: invalid value \"../x\": must not contain '..'",
                ],
            ),
            (
                "env",
                pod(&format!("{C}    env:\n    - {{name: 'A=B', value: x}}\n    - {{name: ''}}\n    - {{name: X, value: v, valueFrom: {{fieldRef: {{fieldPath: status.phase}}}}}}\n    - {{name: Y, valueFrom: {{}}}}\n")),
                &[
                    "spec.containers[0].env[0].name: invalid value \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                    "spec.containers[0].env[1].name: missing field",
                    "spec.containers[0].env[2].valueFrom: invalid value \"\": may not be specified when `value` is not empty",
                    "spec.containers[0].env[2].valueFrom.fieldRef.fieldPath: unsupported value \"status.phase\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\"",
                    "spec.containers[0].env[3].valueFrom: exactly one of \"fieldRef\", \"resourceFieldRef\", \"configMapKeyRef\", \"secretKeyRef\" must be set",
                ],
            ),
            (
                "unsupported pod fields",
                pod(&format!("  os: {{name: windows}}\n  hostUsers: false\n  schedulingGates: [{{name: g}}]\n  resourceClaims: [{{name: r}}]\n  ephemeralContainers: [{{name: e, image: x}}]\n  affinity: {{}}\n  topologySpreadConstraints: []\n{C}")),
                &[
                    "spec.ephemeralContainers: not supported by peapod: ephemeral containers are added through the API server",
                    "spec.resourceClaims: not supported by peapod: dynamic resource allocation",
                    "spec.schedulingGates: not supported by peapod: a gated pod would never start: nothing removes the gates",
                    "spec.hostUsers: not supported by peapod: user namespaces",
                    "spec.os.name: unsupported value \"windows\": supported values: \"linux\"",
                ],
            ),
            (
                "unsupported container fields",
                pod(&format!("{C}    resources: {{limits: {{nvidia.com/gpu: 1}}}}\n    lifecycle: {{preStop: {{tcpSocket: {{port: 1}}}}, postStart: {{sleep: {{seconds: 60}}}}}}\n    securityContext: {{seLinuxOptions: {{level: s0}}}}\n")),
                &[
                    "spec.containers[0].resources.limits[nvidia.com/gpu]: not supported by peapod: extended resources (there are no device plugins)",
                    "spec.containers[0].securityContext.seLinuxOptions: not supported by peapod: SELinux labels",
                    "spec.containers[0].lifecycle.postStart.sleep.seconds: invalid value \"60\": must be between 0 and 30, inclusive",
                    "spec.containers[0].lifecycle.preStop.tcpSocket: not supported by peapod: tcpSocket lifecycle hooks",
                ],
            ),
            (
                "list item paths",
                r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ok"}},{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bad"},"data":{"../x":"y"}}]}"#.into(),
                &["items[1].data[../x]: invalid value \"../x\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'"],
            ),
        ];
        for (what, text, want) in table {
            let got = errors_of(text);
            assert_eq!(&got, want, "{what}");
        }
    }

    /// k8s-openapi fills an absent required field with its zero value; validation names it.
    #[test]
    fn missing_required_fields_are_named() {
        let text = format!(
            "{}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: b}}\nspec:\n  containers:\n  - name: c\n    env: [{{value: x}}]\n    ports: [{{name: http}}]\n",
            pod(C)
        );
        let errs: Vec<String> = match load(Path::new("pods.yaml"), text.as_bytes()) {
            Ok(docs) => panic!("{docs:?}"),
            Err(errs) => errs.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(
            errs,
            [
                "pods.yaml: document 2: spec.containers[0].image: missing field",
                "pods.yaml: document 2: spec.containers[0].ports[0].containerPort: invalid value \"0\": must be between 1 and 65535, inclusive",
                "pods.yaml: document 2: spec.containers[0].env[0].name: missing field",
            ]
        );
    }

    #[test]
    fn name_rules() {
        use super::*;
        type Check = fn(&str) -> Result<(), &'static str>;
        let table: &[(Check, &str, bool)] = &[
            (dns1123_label, "a", true),
            (dns1123_label, "a-1", true),
            (dns1123_label, "-a", false),
            (dns1123_label, "a.b", false),
            (dns1123_label, &"a".repeat(64), false),
            (dns1123_subdomain, "a.b-c.d", true),
            (dns1123_subdomain, "a..b", false),
            (dns1123_subdomain, "A", false),
            (iana_svc_name, "http", true),
            (iana_svc_name, "80", false),
            (iana_svc_name, "a--b", false),
            (iana_svc_name, "abcdefghijklmnop", false),
            (qualified_name, "app.kubernetes.io/name", true),
            (qualified_name, "app", true),
            (qualified_name, "/app", false),
            (qualified_name, "Ab_c.d", true),
            (label_value, "", true),
            (label_value, "v1.2", true),
            (label_value, "v1.", false),
            (env_var_name, "MY_VAR.1", true),
            (env_var_name, "1 x", true),
            (env_var_name, "A=B", false),
            (env_var_name, "tab\t", false),
            (config_key, "a.conf", true),
            (config_key, "..data", false),
            (config_key, "a/b", false),
        ];
        for (check, value, ok) in table {
            assert_eq!(check(value).is_ok(), *ok, "{value:?}");
        }
    }
}
