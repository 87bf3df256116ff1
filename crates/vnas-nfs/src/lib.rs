//! The data path of a vserver: an NFSv3 server (with MOUNT v3, NLM v4, NSM
//! and portmap v2 on the same port) over TCP.
//!
//! This crate knows nothing about clusters. It serves export trees on sockets
//! it is given, with file handles that name only an export id and an object's
//! identity on the filesystem, so a second process on the same storage
//! resolves the handles the first one issued. The write verifier and the
//! handle keys come from the caller.

pub mod config;
pub mod creds;
mod dispatch;
mod drc;
pub mod fs;
#[cfg(test)]
mod fuzz;
pub mod handle;
pub mod limits;
pub mod locks;
mod mount;
mod nfs3;
pub mod nfs4;
mod nlm;
mod nsm;
mod portmap;
pub mod rpc;
pub mod server;
pub mod stats;

pub use config::{Access, ClientRule, ExportConfig, Gate, GateState, ServerConfig, Squash};
pub use server::{Connections, Server, ServerControl, ServerError, WeakControl};
pub use stats::{Stats, StatsSnapshot};
