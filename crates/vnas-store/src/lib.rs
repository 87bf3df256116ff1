//! The common volume: what every node reads and writes about the cluster —
//! vserver configurations, their service state as applied by their owner,
//! ownership with an epoch (the fencing token), and node sessions.
//!
//! This crate knows nothing about NFS. One trait, [`Store`]; one backend so
//! far, [`DirStore`] (a directory, the embedded default); and one test suite,
//! [`suite`], that every backend must pass.

mod dir;
#[cfg(feature = "etcd")]
pub mod etcd;
mod model;
pub mod suite;

pub use dir::{check_name, DirStore};
#[cfg(feature = "etcd")]
pub use etcd::EtcdStore;
pub use model::*;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Not a matter of waiting: a setting is wrong, or the store says no
    /// (a refused password).
    #[error("the store refused this node: {0}")]
    Refused(String),
    #[error("vserver {0} already exists")]
    VserverExists(String),
    #[error("address {address} is already used by vserver {vserver}")]
    AddressInUse { address: String, vserver: String },
    #[error("vserver {0} not found")]
    VserverNotFound(String),
    #[error("vserver {name}: epoch {expected} expected, the store has {actual}")]
    StaleEpoch { name: String, expected: u64, actual: u64 },
    #[error("node {0} not found")]
    NodeNotFound(String),
    #[error("node {0} is already running")]
    NodeAlreadyRunning(String),
    #[error("invalid name {0:?}: use 1-63 of a-z, 0-9, '-', '_' and '.', starting with a letter or digit")]
    InvalidName(String),
    #[error("record {path} is unreadable: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("vserver {0} was changed by someone else meanwhile; try again")]
    ConfigChanged(String),
}

/// A node's presence in the cluster: held while the node lives. The
/// backend drops it when the process dies (for the directory store, the
/// kernel releases the node's lock).
pub trait Session: Send + Sync {
    /// Marks the node alive now.
    fn renew(&self) -> Result<(), StoreError>;
}

/// The common volume. Every write that only an owner may make carries the
/// owner's epoch, and the store refuses it when the epoch is stale.
pub trait Store: Send + Sync {
    /// Adds a vserver; names and addresses are unique cluster-wide.
    fn create_vserver(&self, config: &VserverConfig) -> Result<(), StoreError>;
    /// Replaces a vserver's configuration (same uniqueness rules).
    fn update_config(&self, config: &VserverConfig) -> Result<(), StoreError>;
    /// Replaces it only if it is still `expected` (else `ConfigChanged`):
    /// a change computed from what was read never undoes another made
    /// meanwhile. See [`change_config`].
    fn update_config_if(&self, expected: &VserverConfig, config: &VserverConfig) -> Result<(), StoreError>;
    fn delete_vserver(&self, name: &str) -> Result<(), StoreError>;
    fn vserver(&self, name: &str) -> Result<VserverRecord, StoreError>;
    fn vservers(&self) -> Result<Vec<VserverRecord>, StoreError>;
    /// Replaces ownership if the stored epoch is still `expected_epoch`
    /// (compare-and-swap). The new record's epoch must not go backwards.
    fn swap_ownership(&self, name: &str, expected_epoch: u64, new: &Ownership) -> Result<(), StoreError>;
    /// Records what the owner applied; refused unless `state.epoch` is the
    /// current ownership epoch.
    fn put_service_state(&self, name: &str, state: &ServiceState) -> Result<(), StoreError>;
    /// The lock state a vserver's owner recorded last (NLM locks, waiters,
    /// clients: opaque here), what a next owner restores; `None`: none yet.
    fn locks(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError>;
    /// Records a vserver's lock state; refused unless `epoch` is the
    /// current ownership epoch. Written on every lock change, so it does
    /// not count as a change of the vserver's record (no generation bump,
    /// no watch event).
    fn put_locks(&self, name: &str, epoch: u64, locks: &serde_json::Value) -> Result<(), StoreError>;
    /// A vserver's NFSv4 state (client IDs, sessions, opens, lock
    /// stateids), as its owner last recorded it.
    fn nfs4_state(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError>;
    /// Records a vserver's NFSv4 state, as `put_locks` its lock table.
    fn put_nfs4_state(&self, name: &str, epoch: u64, state: &serde_json::Value) -> Result<(), StoreError>;
    /// The NFSv4 clients that hold state on a vserver (RFC 8881's stable
    /// storage: who may reclaim if that state cannot be read), apart from
    /// the state itself.
    fn nfs4_clients(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError>;
    fn put_nfs4_clients(&self, name: &str, epoch: u64, clients: &serde_json::Value)
        -> Result<(), StoreError>;
    /// Changes whenever a vserver record changes, so a reader can skip
    /// reading them all when nothing did.
    fn generation(&self) -> Result<u64, StoreError>;
    /// Appends to a vserver's transfer history (under its ownership lock).
    fn append_history(&self, name: &str, entry: &Transfer) -> Result<(), StoreError>;
    /// The most recent transfers, oldest first.
    fn history(&self, name: &str) -> Result<Vec<Transfer>, StoreError>;
    /// Marks a node drained (no vservers placed there) or not.
    fn set_drained(&self, node: &str, drained: bool) -> Result<(), StoreError>;
    /// Joins the cluster as `node`; fails if a live node has that name.
    fn join(&self, node: &NodeInfo) -> Result<Box<dyn Session>, StoreError>;
    fn nodes(&self) -> Result<Vec<NodeStatus>, StoreError>;
    /// Publishes a node's load (replacing its previous report).
    fn put_load(&self, load: &LoadReport) -> Result<(), StoreError>;
    /// Every node's last load report.
    fn loads(&self) -> Result<Vec<LoadReport>, StoreError>;
    /// Calls `changed` soon after any vserver record changes, for as long
    /// as the store lives, so nodes need not poll for changes. `false`:
    /// this backend cannot watch (readers compare [`generation`](Self::generation)).
    fn watch(&self, changed: std::sync::Arc<dyn Fn() + Send + Sync>) -> bool {
        let _ = changed;
        false
    }
}

/// Milliseconds since the Unix epoch.
/// Changes vserver `name`'s configuration by `change`, applied to the
/// configuration as it is in the store; if another change came in
/// between, `change` is applied again to that one.
pub fn change_config<S: Store + ?Sized>(
    store: &S,
    name: &str,
    mut change: impl FnMut(&mut VserverConfig) -> Result<(), StoreError>,
) -> Result<VserverConfig, StoreError> {
    for _ in 0..8 {
        let old = store.vserver(name)?.config;
        let mut new = old.clone();
        change(&mut new)?;
        match store.update_config_if(&old, &new) {
            Ok(()) => return Ok(new),
            Err(StoreError::ConfigChanged(_)) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(StoreError::ConfigChanged(name.to_string()))
}

/// An address as uniqueness sees it: without its prefix (`198.18.1.10/16`
/// and `198.18.1.10/24` are one address), in its canonical form
/// (`2001:DB8:0::5` is `2001:db8::5`).
pub fn address_ip(address: &str) -> String {
    let ip = address.split('/').next().unwrap_or(address);
    ip.parse::<std::net::IpAddr>().map_or_else(|_| ip.to_string(), |ip| ip.to_string())
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
