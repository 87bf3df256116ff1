//! The operations: what a management call does, as plain functions over
//! the node (create, modify, move, start, stop, delete a vserver; drain,
//! undrain a node; the rebalance plan; history; counters; locks), each with its own
//! error (`OpsError`: a kind and a stable code). The REST API, the console
//! and the automatic rebalancer and failback all call these; none calls
//! another's handlers, and the daemon (`node`) imports nothing from `api`.

pub mod error;
mod forward;
pub mod locks;
pub mod nodes;
pub mod rebalance;
pub mod specs;
pub mod types;
pub mod validate;
pub mod vservers;

pub use error::{Kind, OpsError};
