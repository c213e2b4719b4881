//! OCI adapters: runtime spec generation and the runtime binary driver.
pub mod runtime;
pub mod seccomp;
pub mod spec;
pub mod user;
