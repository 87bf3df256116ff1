//! One running vserver: its NFS server on its addresses, with the exports
//! its mount table maps to directories, a gate that holds or answers calls,
//! and a monitor of its health.
//!
//! *Architecture invariant:* no decisions here. What runs, where and under
//! which epoch comes from the caller (the node's controller, which asks
//! vnas-cluster). The parts that differ between deployments sit behind
//! small traits: [`Network`] (loopback addresses, or a namespace and an
//! interface per vserver) and [`Volumes`] (directories today; block devices
//! next).

pub mod exports;
pub mod monitor;
pub mod network;
pub mod running;
pub mod units;
pub mod volumes;

pub use monitor::Failure;
pub use network::{Attachment, Linux, Loopback, Network};
pub use running::{Lease, LockRecords, Params, Running};
pub use units::{Units, UNIT_FILESYSTEMS};
pub use volumes::{Claim, Directories, Volumes};
