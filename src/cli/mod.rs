//! The operator's CLI, kubectl's conventions over peapod's local API: what it prints is
//! computed here, as pure functions of the API's objects, so the output is tested without a
//! daemon.

pub mod apply;
pub mod client;
pub mod describe;
pub mod duration;
pub mod events;
pub mod exec;
pub mod get;
pub mod logs;
pub mod pods;
pub mod status;
pub mod table;
pub mod top;
