//! Named crash points for the crash-consistency tests: with `PEAPOD_FAILPOINT=NAME` in its
//! environment, a debug build of the daemon SIGKILLs itself when it reaches the step `NAME`,
//! exactly as `kill -9` would (no unwinding, no destructors, no undo). Release builds compile
//! every point to nothing.
//!
//! The names are listed here so the tests can walk every step of an operation.

/// The steps of RunPodSandbox, in order.
pub const RUN_SANDBOX: &[&str] = &[
    "sandbox.dir",      // the sandbox directory exists, no record yet
    "sandbox.intent",   // the intent record is on disk, nothing else made
    "sandbox.shm",      // the pod's /dev/shm is mounted
    "sandbox.pause",    // the pause is cloned, not yet ready nor in its cgroup
    "sandbox.placed",   // the pause is ready in its cgroup
    "sandbox.pinned",   // the namespaces are pinned
    "net.address",      // built-in network: the pod's addresses are allocated, nothing else
    "net.veth",         // built-in network: the veth pair exists, the pod side is bare
    "net.configured",   // built-in network: addresses and routes in the pod, no port rules
    "sandbox.network",  // the pod's network is set up (veth, address, rules)
    "sandbox.recorded", // the final record is on disk; the client has not been answered
];

/// The steps of CreateContainer, in order.
pub const CREATE_CONTAINER: &[&str] = &[
    "container.dir",      // the container's directories exist, no record yet
    "container.intent",   // the intent record is on disk
    "container.rootfs",   // the overlay rootfs is mounted
    "container.bundle",   // config.json is written
    "container.monitor",  // the monitor runs and the runtime created the container
    "container.recorded", // the final record is on disk; the client has not been answered
];

/// Steps of the other operations that change state on disk.
pub const OTHER: &[&str] = &[
    "container.started", // the runtime started the container; the record still says created
    "container.removing", // the runtime deleted the container; rootfs and dirs are still there
    "sandbox.stopping",  // the pause is killed; namespaces and /dev/shm are still there
    "sandbox.removing",  // the containers are removed; cgroups and dirs are still there
];

/// Steps that run after the client has been answered.
pub const BACKGROUND: &[&str] = &[
    "net.veth_deleted", // built-in network, after StopPodSandbox: the veth is gone, the addresses not yet
];

pub use crate::failpoint::hit;
