//! The lock state of a vserver, asked of the node that serves it (any node
//! forwards there), and an administrator's release of a dead client's
//! locks.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{Kind, OpsError};
use crate::metrics::Meters;
use crate::node::Node;

/// One lock, held or waited for.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LockView {
    /// The client's name for itself (NLM caller_name).
    pub client: String,
    /// The process on it (NLM svid).
    pub svid: u32,
    /// The file, as clients see it (`/data/dir/file`), or its handle
    /// (hex) when it cannot be found.
    pub file: String,
    pub start: u64,
    /// 0: to the end of the file.
    pub length: u64,
    /// `read` (shared) or `write` (exclusive).
    #[serde(rename = "type")]
    pub kind: String,
    pub since_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LockClientView {
    pub client: String,
    pub address: String,
    /// Its NSM state as it last told it.
    pub state: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LocksView {
    pub vserver: String,
    /// The node that answered (the one serving the vserver).
    pub node: String,
    pub held: Vec<LockView>,
    pub waiting: Vec<LockView>,
    pub clients: Vec<LockClientView>,
    /// Granted, denied and blocked requests since the vserver was started
    /// here; the lock table itself moves with the vserver.
    pub granted: u64,
    pub denied: u64,
    pub blocked: u64,
    pub callbacks_failed: u64,
    pub released_by_reboot: u64,
    /// Changes recorded in the store before they were answered, and the
    /// mean time one took (µs).
    pub recorded: u64,
    pub record_us_mean: u64,
    /// Its NFSv4 state, if it serves NFSv4.
    pub nfs4: Option<Nfs4View>,
}

/// A vserver's NFSv4 state: what moves with it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Nfs4View {
    pub clients: u64,
    pub sessions: u64,
    pub opens: u64,
    pub lock_states: u64,
    /// Since it started on this node: OPENs with CLAIM_PREVIOUS and LOCKs
    /// with reclaim set (a client that believed its state lost: taken in
    /// a grace period, which only an unreadable record starts; refused
    /// outside one), and RECLAIM_COMPLETEs (one per mount).
    pub reclaims: u64,
    pub reclaim_completes: u64,
    /// While this vserver is in a grace period (its v4 state could not be
    /// read): the listed clients still to reclaim.
    pub grace_waiting: Option<u64>,
    /// Changes recorded in the store before they were answered, and the
    /// mean time one took (µs).
    pub recorded: u64,
    pub record_us_mean: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BreakLocks {
    /// The client whose locks go (its caller name, as `locks` lists it).
    pub client: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BreakResult {
    pub vserver: String,
    pub client: String,
    /// Locks released.
    pub released: usize,
}

fn view(node: &Node, name: &str, meters: &Meters) -> LocksView {
    let table = meters.locks.snapshot();
    let stats = meters.locks.stats();
    let control = meters.control.upgrade();
    let file =
        |fh: &[u8]| control.as_ref().and_then(|c| c.path_of(fh)).unwrap_or_else(|| vnas_nfs::locks::hex(fh));
    let kind = |exclusive: bool| if exclusive { "write" } else { "read" }.to_string();
    let held = table
        .locks()
        .map(|(fh, l)| LockView {
            client: l.owner.caller.clone(),
            svid: l.owner.svid,
            file: file(fh),
            start: l.range.start,
            length: l.range.len(),
            kind: kind(l.exclusive),
            since_ms: l.since_ms,
        })
        .collect();
    let waiting = table
        .waiters()
        .map(|(fh, w)| LockView {
            client: w.owner.caller.clone(),
            svid: w.owner.svid,
            file: file(fh),
            start: w.range.start,
            length: w.range.len(),
            kind: kind(w.exclusive),
            since_ms: w.since_ms,
        })
        .collect();
    let clients = table
        .clients
        .iter()
        .map(|(name, c)| LockClientView {
            client: name.clone(),
            address: c.address.to_string(),
            state: c.state,
        })
        .collect();
    LocksView {
        vserver: name.to_string(),
        node: node.name.clone(),
        held,
        waiting,
        clients,
        granted: stats.granted,
        denied: stats.denied,
        blocked: stats.blocked,
        callbacks_failed: stats.callbacks_failed,
        released_by_reboot: stats.released_by_reboot,
        recorded: stats.recorded,
        record_us_mean: stats.record_us.checked_div(stats.recorded).unwrap_or(0),
        nfs4: control.as_ref().filter(|c| c.serves_nfs4()).map(|c| {
            let v4 = c.nfs4_stats();
            Nfs4View {
                clients: v4.clients,
                sessions: v4.sessions,
                opens: v4.opens,
                lock_states: v4.lock_states,
                reclaims: v4.reclaims,
                reclaim_completes: v4.reclaim_completes,
                grace_waiting: v4.grace_waiting,
                recorded: v4.recorded,
                record_us_mean: v4.record_us.checked_div(v4.recorded).unwrap_or(0),
            }
        }),
    }
}

/// The locks of vserver `name`, from the node that serves it.
pub async fn list(node: &Arc<Node>, name: &str) -> Result<LocksView, OpsError> {
    vnas_store::check_name(name)?;
    if let Some(meters) = node.metrics.served(name) {
        return Ok(view(node, name, &meters));
    }
    // Owned here and confirmed, but not yet among what this node serves
    // (that list is published once per controller step): a move that just
    // returned, asked at once.
    let name2 = name.to_string();
    let owner = node.store(move |s| Ok(s.vserver(&name2)?.ownership.owner)).await?;
    if owner.as_deref() == Some(node.name.as_str()) {
        for _ in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if let Some(meters) = node.metrics.served(name) {
                return Ok(view(node, name, &meters));
            }
        }
    }
    let path = format!("/api/vservers/{name}/locks");
    super::forward::to_owner(node, name, &path, None).await
}

/// Releases every lock `client` holds on vserver `name` (a client that
/// will not come back), on the node that serves it.
pub async fn break_client(
    node: &Arc<Node>,
    name: &str,
    request: BreakLocks,
) -> Result<BreakResult, OpsError> {
    vnas_store::check_name(name)?;
    if request.client.is_empty() || request.client.len() > 1024 {
        return Err(OpsError::invalid("bad_client", "name the client: 1 to 1024 bytes"));
    }
    let Some(meters) = node.metrics.served(name) else {
        let path = format!("/api/vservers/{name}/locks/break");
        let body = serde_json::json!({ "client": request.client });
        return super::forward::to_owner(node, name, &path, Some(body)).await;
    };
    let known = meters.locks.snapshot().clients.contains_key(&request.client);
    if !known {
        return Err(OpsError::not_found(
            "client_not_found",
            format!("client {} holds no locks on vserver {name}", request.client),
        ));
    }
    let Some(control) = meters.control.upgrade() else {
        return Err(OpsError::conflict(
            "not_running",
            format!("vserver {name} just stopped here; try again"),
        ));
    };
    let client = request.client.clone();
    let released = tokio::task::spawn_blocking(move || control.break_locks(&client))
        .await
        .map_err(|e| OpsError::new(Kind::Internal, "internal", e.to_string()))?
        .map_err(|_| {
            OpsError::new(
                Kind::Unavailable,
                "store_unavailable",
                "the lock table could not be recorded; nothing was released",
            )
        })?;
    tracing::warn!(vserver = %name, client = %request.client, released, "locks broken by an administrator");
    Ok(BreakResult { vserver: name.to_string(), client: request.client, released })
}
