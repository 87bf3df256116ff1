//! The records kept in the common volume. Each stored file carries a format
//! version; a reader refuses versions it does not know rather than guess.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The format of every record written by this version.
pub const FORMAT: u32 = 1;

/// A volume in a vserver's mount table: a directory on shared storage, or
/// a logical unit (a block device holding a filesystem) that only its
/// owner mounts, appearing at `mount` in the vserver's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Volume {
    /// Where clients see it, such as `/data`.
    pub mount: String,
    /// The directory on shared storage, or the block device.
    pub path: String,
    #[serde(default, skip_serializing_if = "VolumeKind::is_dir")]
    pub kind: VolumeKind,
    /// A block volume's filesystem (`ext4`, `xfs`); detected when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
}

impl Volume {
    /// A directory every node reaches.
    pub fn dir(mount: impl Into<String>, path: impl Into<String>) -> Volume {
        Volume { mount: mount.into(), path: path.into(), kind: VolumeKind::Dir, fstype: None }
    }

    /// A logical unit mounted by its owner alone.
    pub fn block(mount: impl Into<String>, device: impl Into<String>, fstype: Option<String>) -> Volume {
        Volume { mount: mount.into(), path: device.into(), kind: VolumeKind::Block, fstype }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VolumeKind {
    #[default]
    Dir,
    Block,
}

impl VolumeKind {
    pub fn is_dir(&self) -> bool {
        *self == VolumeKind::Dir
    }
}

/// Clients an export admits and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientRule {
    /// CIDRs, such as `127.0.0.0/8`.
    pub clients: Vec<String>,
    /// `rw` or `ro`.
    pub access: String,
    /// `none`, `root` (the default) or `all`.
    #[serde(default = "root_squash")]
    #[schema(default = "root")]
    pub squash: String,
    #[serde(default = "anonymous_id")]
    #[schema(default = 65534)]
    pub anon_uid: u32,
    #[serde(default = "anonymous_id")]
    #[schema(default = 65534)]
    pub anon_gid: u32,
    /// exports(5) `secure`: only calls from ports below 1024 (which only
    /// root binds) are answered. Default true; records written before this
    /// field existed read as secure, the safe side.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub secure: bool,
}

fn root_squash() -> String {
    "root".into()
}

fn anonymous_id() -> u32 {
    65534
}

fn yes() -> bool {
    true
}

impl Default for ClientRule {
    /// Everyone, read-write, with the safe defaults of knfsd and Ganesha:
    /// root squashed, calls only from reserved ports.
    fn default() -> Self {
        ClientRule {
            clients: vec!["0.0.0.0/0".into()],
            access: "rw".into(),
            squash: root_squash(),
            anon_uid: anonymous_id(),
            anon_gid: anonymous_id(),
            secure: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Export {
    /// A path in the vserver's namespace, at or below a volume's mount.
    pub path: String,
    pub rules: Vec<ClientRule>,
}

/// A route for replies from the vserver's addresses (applied by the linux
/// network mode; recorded in loopback mode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Route {
    pub destination: String,
    pub gateway: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    Running,
    Stopped,
}

/// A vserver's configuration: its resource allocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VserverConfig {
    pub name: String,
    pub addresses: Vec<String>,
    pub volumes: Vec<Volume>,
    pub exports: Vec<Export>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// The node that should host it.
    pub node: String,
    pub desired: Desired,
    /// Its preferred node: with failback on, it goes back there once that
    /// node has been up for the settle time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// The nodes it may run on (empty: any). Failover, drains, moves and
    /// the rebalancer keep to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_nodes: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VserverState {
    Stopped,
    Starting,
    Running,
    Stopping,
    Failed,
}

/// Who hosts a vserver, under which epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ownership {
    pub owner: Option<String>,
    /// Grows at every change of owner; every owner-only write carries it.
    pub epoch: u64,
    pub state: VserverState,
    /// Why the vserver is in this state, when something went wrong.
    pub reason: Option<String>,
    /// Service failures seen by the owner's monitor in this epoch.
    pub failures: u32,
    pub since_ms: u64,
}

impl Ownership {
    pub fn unowned() -> Ownership {
        Ownership {
            owner: None,
            epoch: 0,
            state: VserverState::Stopped,
            reason: None,
            failures: 0,
            since_ms: crate::now_ms(),
        }
    }
}

/// What the owner applied: the next owner reads this to take over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceState {
    pub epoch: u64,
    pub node: String,
    pub mount_table: Vec<Volume>,
    pub routing_table: Vec<Route>,
    /// Network devices and addresses as applied (`lo 127.0.0.10`).
    pub devices: Vec<String>,
    /// The NFS write verifier of this activation, hex.
    pub write_verifier: String,
    pub updated_ms: u64,
    /// Client connections the owner holds, `server>client`: after a
    /// failover the next owner wakes them (tickle ACKs).
    #[serde(default)]
    pub connections: Vec<String>,
    /// The exports as served (changed live: `vnas vserver modify`).
    #[serde(default)]
    pub exports: Vec<Export>,
    /// The addresses as served (changed live: `vnas vserver modify`).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The NFS counters of the vserver as last recorded (at a hand-off,
    /// and every few seconds): the next owner continues from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub counters: Option<serde_json::Value>,
}

/// A node's load as it last published it (smoothed over minutes): what
/// the rebalancer plans from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LoadReport {
    pub node: String,
    pub at_ms: u64,
    /// CPU the node process used, in cores.
    pub cpu: f64,
    pub ops_per_s: f64,
    pub bytes_per_s: f64,
    /// By vserver served there.
    pub vservers: BTreeMap<String, VserverLoadReport>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VserverLoadReport {
    pub ops_per_s: f64,
    pub bytes_per_s: f64,
    /// The node's CPU in the share of its calls this vserver answered.
    pub cpu: f64,
}

/// Everything the store holds about one vserver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VserverRecord {
    pub config: VserverConfig,
    pub ownership: Ownership,
    pub service: Option<ServiceState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    pub name: String,
    /// Where its management API listens, `http://127.0.0.1:7400`.
    pub api: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub started_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    pub info: NodeInfo,
    /// A live process holds the node's session (a frozen one does too:
    /// compare `last_seen_ms` with the lease).
    pub alive: bool,
    pub last_seen_ms: u64,
    /// Drained nodes host no vservers.
    #[serde(default)]
    pub drained: bool,
}

/// One change of a vserver's owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Transfer {
    pub at_ms: u64,
    pub from: Option<String>,
    pub to: String,
    /// `start`, `move`, `node down`, `vserver failed`, `restart`.
    pub why: String,
    pub epoch: u64,
    /// How long clients could get no answer: from the moment the old owner
    /// stopped serving (or was last seen alive) to the new one serving.
    pub pause_ms: u64,
    /// What fencing the previous owner took, when its units' guards showed
    /// it had not released them (the fence command and its outcome).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<String>,
    /// What became of the clients' locks: the table the new owner restored
    /// (and that no grace period was needed), when it serves NFS locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locks: Option<String>,
}
