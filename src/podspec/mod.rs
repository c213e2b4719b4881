//! Kubernetes Pod → CRI configs, as kubelet's kuberuntime translates them, so the manifest
//! door speaks to the engine exactly as kubelet speaks to a runtime over the CRI socket.
//!
//! Pure functions: nothing here reads or writes files, mounts, or pulls. The caller gathers
//! the node's facts in a [`Context`] and carries out what the plans say ([`volume_plan`],
//! [`ContainerPlan`]'s subPaths and termination-log file, [`hosts_file`]).

mod container;
mod context;
mod dns;
mod env;
mod error;
mod expand;
mod fieldpath;
mod hostname;
mod labels;
mod mounts;
mod pod;
mod pull_secrets;
mod qos;
mod quantity;
mod resources;
mod sandbox;
mod security;
#[cfg(test)]
mod testutil;
mod volumes;

pub use container::{container_config, ContainerPlan};
pub use context::{CgroupDriver, Context, NodeResources, Paths};
pub use dns::{dns_config, parse_resolv_conf};
pub use env::{environment, Env};
pub use error::{Missing, QuantityError, SpecError};
pub use expand::expand;
pub use hostname::{host_aliases, hosts_file, pod_hostname, PodHostname};
pub use labels::container_hash;
pub use mounts::{termination_log_host_path, SubPath};
pub use pull_secrets::pull_credentials;
pub use qos::{admit, cgroup_parent, pod_requests, qos_class, AdmitError, PodRequests, QosClass};
pub use quantity::Qty;
pub use resources::{milli_cpu_to_quota, milli_cpu_to_shares, oom_score_adj, QUOTA_PERIOD};
pub use sandbox::{port_mappings, sandbox_config};
pub use security::{namespace_options, NonRootCheck};
pub use volumes::{
    volume_plan, File, FileType, HostPathAction, HostPathType, VolumeKind, VolumePlan,
    DEFAULT_MODE, EMPTY_DIR_MODE,
};

/// The label and annotation keys kubelet sets, for the code that reads them back.
pub mod keys {
    pub use super::labels::{
        CONTAINER_HASH, CONTAINER_NAME, CONTAINER_PORTS, POD_DELETION_GRACE_PERIOD, POD_NAME,
        POD_NAMESPACE, POD_TERMINATION_GRACE_PERIOD, POD_UID, PRESTOP_HANDLER, RESTART_COUNT,
        TERMINATION_MESSAGE_PATH, TERMINATION_MESSAGE_POLICY,
    };
}
