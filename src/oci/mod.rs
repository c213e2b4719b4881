//! OCI adapters: runtime spec generation and the runtime binary driver.
pub mod spec;
pub mod user;
