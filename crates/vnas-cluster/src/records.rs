//! What each step of a transfer writes to the store: the same records
//! whether the node's controller or the simulation carries the step out.

use vnas_store::{Ownership, ServiceState, Transfer, VserverConfig, VserverRecord, VserverState};

use crate::decide::Why;

/// The source hands a vserver to `to`: epoch + 1, starting there. The
/// pause clients see starts at `stopped_ms`, when the source stopped
/// answering.
pub fn handed_over(me: &str, to: &str, epoch: u64, stopped_ms: u64) -> Ownership {
    Ownership {
        owner: Some(to.to_string()),
        epoch: epoch + 1,
        state: VserverState::Starting,
        reason: Some(format!("moving from {me}")),
        failures: 0,
        since_ms: stopped_ms,
    }
}

/// This node takes a vserver: epoch + 1, starting here.
pub fn taken(me: &str, expected: u64, since_ms: u64) -> Ownership {
    Ownership {
        owner: Some(me.to_string()),
        epoch: expected + 1,
        state: VserverState::Starting,
        reason: None,
        failures: 0,
        since_ms,
    }
}

/// Ownership given back (stopped, no owner), or kept by this node but
/// marked failed with a reason.
pub fn released(me: &str, epoch: u64, state: VserverState, reason: Option<String>, now_ms: u64) -> Ownership {
    let owner = (state == VserverState::Failed).then(|| me.to_string());
    Ownership { owner, epoch, state, reason, failures: 0, since_ms: now_ms }
}

/// The service state of a vserver changed while it serves: what it
/// serves now, with the devices its network applied.
pub fn reconfigured(service: &mut ServiceState, config: &VserverConfig, devices: Vec<String>, now_ms: u64) {
    service.addresses = config.addresses.clone();
    service.mount_table = config.volumes.clone();
    service.routing_table = config.routes.clone();
    service.exports = config.exports.clone();
    service.devices = devices;
    service.updated_ms = now_ms;
}

/// What a node writes once it serves a vserver under `epoch`: the service
/// state (with the devices its network applied), running ownership, and a
/// history entry with the pause. A
/// transfer's `from` may be left for the writer to fill in from the
/// history (see [`fill_from`]).
pub fn confirmed(
    record: &VserverRecord,
    me: &str,
    epoch: u64,
    write_verifier: &str,
    devices: Vec<String>,
    why: Why,
    now_ms: u64,
) -> (ServiceState, Ownership, Transfer) {
    let config = &record.config;
    let service = ServiceState {
        epoch,
        node: me.to_string(),
        mount_table: config.volumes.clone(),
        routing_table: config.routes.clone(),
        devices,
        write_verifier: write_verifier.to_string(),
        updated_ms: now_ms,
        connections: vec![],
        exports: config.exports.clone(),
        addresses: config.addresses.clone(),
        // What the new owner started from, until it records its own.
        counters: record.service.as_ref().and_then(|s| s.counters.clone()),
    };
    let running = Ownership {
        owner: Some(me.to_string()),
        epoch,
        state: VserverState::Running,
        reason: None,
        failures: 0,
        since_ms: now_ms,
    };
    let pause_ms = match why {
        Why::Start | Why::Restart => 0,
        _ => now_ms.saturating_sub(record.ownership.since_ms),
    };
    let from = match why {
        Why::Move => record
            .ownership
            .reason
            .as_deref()
            .and_then(|r| r.strip_prefix("moving from "))
            .map(str::to_string),
        _ => None,
    };
    let transfer = Transfer {
        at_ms: now_ms,
        from,
        to: me.to_string(),
        why: why.as_str().into(),
        epoch,
        pause_ms,
        fence: None,
        locks: None,
    };
    (service, running, transfer)
}

/// What the history says of a transfer whose own record was lost: the
/// node that received it failed between serving and recording it, and a
/// later start on this node finds the history ending elsewhere.
pub const RECOVERED: &str = "recovered";

/// A transfer comes from where the history last put the vserver (a node
/// it was handed through without serving it does not count), else from
/// what the record said; so the history stays a chain. A "restart" that
/// the history places on another node is recorded as [`RECOVERED`].
pub fn fill_from(transfer: &mut Transfer, history: &[Transfer], previous_owner: Option<&str>) {
    if transfer.why != Why::Start.as_str() {
        if let Some(last) = history.last() {
            transfer.from = Some(last.to.clone());
        } else if transfer.from.is_none() {
            transfer.from = previous_owner.map(str::to_string);
        }
    }
    if transfer.why == Why::Restart.as_str() && history.last().is_some_and(|last| last.to != transfer.to) {
        transfer.why = RECOVERED.to_string();
    }
}

/// Whether the history already holds this activation (a retried
/// confirmation whose first answer was lost): it is recorded once.
pub fn already_recorded(history: &[Transfer], transfer: &Transfer) -> bool {
    history.last().is_some_and(|last| last.epoch == transfer.epoch && last.to == transfer.to)
}
