//! Every request and response body of the API, declared once: the server,
//! the CLI and the OpenAPI document use these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vnas_store::{Desired, Export, Route, Volume, VserverRecord, VserverState};

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateVserver {
    pub name: String,
    /// Addresses in the network mode's range (loopback: 127.0.0.0/8).
    pub addresses: Vec<String>,
    /// The mount table: directories on shared storage and where they appear.
    pub volumes: Vec<Volume>,
    /// Exports with their client rules; by default each volume is exported
    /// read-write to everyone.
    #[serde(default)]
    pub exports: Vec<Export>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// The node to host it; by default its home node if it has one, else
    /// the least loaded live node it may run on.
    #[serde(default)]
    pub node: Option<String>,
    /// Its preferred node (failback goes back there).
    #[serde(default)]
    pub home: Option<String>,
    /// The nodes it may run on (empty: any).
    #[serde(default)]
    pub allowed_nodes: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct VserverView {
    pub name: String,
    /// The node serving it now (its owner), if any.
    pub node: Option<String>,
    /// The node it is assigned to.
    pub assigned_node: String,
    pub state: VserverState,
    pub desired: Desired,
    pub addresses: Vec<String>,
    pub volumes: Vec<Volume>,
    pub exports: Vec<Export>,
    pub routes: Vec<Route>,
    pub epoch: u64,
    pub reason: Option<String>,
    pub failures: u32,
    /// The NFS write verifier of the current activation, hex.
    pub write_verifier: Option<String>,
    /// Interface, addresses and routes as the serving node applied them.
    #[serde(default)]
    pub applied: Vec<String>,
    /// Client connections at the last record.
    #[serde(default)]
    pub connections: usize,
    #[serde(default)]
    pub home: Option<String>,
    #[serde(default)]
    pub allowed_nodes: Vec<String>,
}

impl From<VserverRecord> for VserverView {
    fn from(record: VserverRecord) -> Self {
        let VserverRecord { config, ownership, service } = record;
        VserverView {
            name: config.name,
            node: ownership.owner,
            assigned_node: config.node,
            state: ownership.state,
            desired: config.desired,
            addresses: config.addresses,
            volumes: config.volumes,
            exports: config.exports,
            routes: config.routes,
            epoch: ownership.epoch,
            reason: ownership.reason,
            failures: ownership.failures,
            applied: service.as_ref().map(|s| s.devices.clone()).unwrap_or_default(),
            connections: service.as_ref().map_or(0, |s| s.connections.len()),
            write_verifier: service.map(|s| s.write_verifier),
            home: config.home,
            allowed_nodes: config.allowed_nodes,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    pub name: String,
    pub api: String,
    pub alive: bool,
    pub drained: bool,
    pub last_seen_ms: u64,
    /// Vservers the store names this node the owner of.
    pub vservers: usize,
    /// Vservers the node itself says it answers for now (asked of it, even
    /// when the store counts it down; absent when it did not answer within
    /// a second: dead, frozen, unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<Vec<String>>,
}

/// What one node says of itself (`GET /api/node`): the vservers whose
/// calls it answers now, from its own running set.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LocalView {
    pub name: String,
    pub serving: Vec<ServedView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ServedView {
    pub name: String,
    pub epoch: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    pub nodes_alive: usize,
    pub nodes_total: usize,
    pub vservers_total: usize,
    /// Vservers per state (`running`, `stopped`, `failed`, ...).
    pub vservers_by_state: BTreeMap<String, usize>,
}

/// The body of every error response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: `vserver_not_found`, `address_in_use`, ...
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct MoveVserver {
    /// The node to move to; by default placement picks the least loaded
    /// live node.
    #[serde(default)]
    pub to: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MoveResult {
    pub vserver: VserverView,
    pub from: String,
    pub to: String,
    /// The client-visible pause the target measured: from the source
    /// closing its connections to the target serving.
    pub pause_ms: u64,
}

/// What `vnas cluster rebalance` would do now, and why.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RebalancePlan {
    /// What the plan evens out: `ops` (calls/s), `bytes` (bytes/s) or
    /// `cpu` (cores).
    pub by: String,
    /// (most loaded - least loaded) / mean, over the nodes that may take
    /// vservers, in that measure.
    pub spread: f64,
    /// A plan starts above this spread and goes on above `stop`.
    pub start: f64,
    pub stop: f64,
    /// The mean load is too small to be worth evening out.
    pub idle: bool,
    pub nodes: Vec<NodeLoadView>,
    pub moves: Vec<PlannedMove>,
    /// Vservers whose load no node has measured yet (just started or
    /// moved): no moves are planned until every load is known.
    pub waiting: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeLoadView {
    pub node: String,
    /// NFS calls per second, smoothed over about a minute.
    pub ops_per_s: f64,
    pub bytes_per_s: f64,
    /// CPU of the node process, in cores.
    pub cpu: f64,
    pub vservers: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PlannedMove {
    pub vserver: String,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// A change to a vserver's addresses, routes, volumes and exports,
/// applied while it serves.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ModifyVserver {
    /// Exports to add; one whose path is exported already replaces it
    /// (new client rules).
    #[serde(default)]
    pub add_exports: Vec<Export>,
    /// Paths of exports to remove.
    #[serde(default)]
    pub remove_exports: Vec<String>,
    /// Volumes to add (their exports come with `add_exports`).
    #[serde(default)]
    pub add_volumes: Vec<Volume>,
    /// Mount points of volumes to remove (their exports must go too).
    #[serde(default)]
    pub remove_volumes: Vec<String>,
    /// Addresses to add, as for `create`.
    #[serde(default)]
    pub add_addresses: Vec<String>,
    /// Addresses to remove (a vserver keeps at least one); their clients'
    /// connections close.
    #[serde(default)]
    pub remove_addresses: Vec<String>,
    /// Routes to add to the vserver's routing table.
    #[serde(default)]
    pub add_routes: Vec<Route>,
    /// Destinations of routes to remove.
    #[serde(default)]
    pub remove_routes: Vec<String>,
    /// Client rules to put ahead of an export's others (the first rule
    /// that matches a client applies): `path` names the export.
    #[serde(default)]
    pub add_rules: Vec<Export>,
    /// Client rules to remove: the export's rule whose clients are
    /// exactly `clients`.
    #[serde(default)]
    pub remove_rules: Vec<RuleRef>,
}

/// One client rule of an export, by its clients.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct RuleRef {
    pub path: String,
    pub clients: Vec<String>,
}

/// A vserver's NFS counters as the node serving it reads them now (they
/// continue across moves); two readings give its rates.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CountersView {
    pub vserver: String,
    /// The node that read them (the one serving the vserver).
    pub node: String,
    /// When they were read: ms since the epoch, on that node's clock.
    pub at_ms: u64,
    pub calls: u64,
    pub errors: u64,
    /// Time spent answering all those calls, summed.
    pub latency_sum_seconds: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}
