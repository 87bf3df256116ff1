//! A grace period of one vserver, only when its NFSv4 state could not be
//! read (`vnas_locks::nfs4::restore`): the clients listed in the store may
//! reclaim their opens and locks, nobody takes a new one (NFSv4 or NLM)
//! until each listed client has said it is done, or a lease has passed.
//! Other vservers, on this node or any, never wait.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use vnas_locks::nfs4::Grace;
pub use vnas_locks::nfs4::GraceCall;

use crate::server::State;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Starts one for `reclaimers` (none: no grace at all). The NFSv4 locks in
/// the lock table belonged to client IDs that are gone with the state:
/// they go, to be reclaimed.
pub fn begin(state: &State, reclaimers: &[Vec<u8>]) -> usize {
    let lease_ms = state.sessions.lease().as_millis() as u64;
    let grace = Grace::begin(reclaimers, now_ms(), lease_ms);
    let open = crate::nlm::opener(state);
    // Every lock of an NFSv4 owner (the lock table's caller "nfs4:ID").
    let orphans: std::collections::BTreeSet<String> = state
        .locks
        .snapshot()
        .locks()
        .map(|(_, l)| l.owner.caller.clone())
        .filter(|caller| caller.starts_with("nfs4:"))
        .collect();
    let mut released = 0;
    for caller in orphans {
        released += state.locks.release_client(&open, &caller).unwrap_or(0);
    }
    *state.grace.lock().unwrap_or_else(|e| e.into_inner()) = grace;
    released
}

/// Clients still to reclaim, while a grace period runs.
pub fn waiting(state: &State) -> Option<usize> {
    let mut grace = state.grace.lock().unwrap_or_else(|e| e.into_inner());
    end_if_over(&mut grace);
    grace.as_ref().map(|g| g.waiting.len())
}

fn end_if_over(grace: &mut Option<Grace>) {
    if grace.as_ref().is_some_and(|g| g.over(now_ms())) {
        tracing::info!(left = grace.as_ref().map_or(0, |g| g.waiting.len()), "NFSv4 grace period over");
        *grace = None;
    }
}

/// The client name of a client ID (4.1 owner or 4.0 name).
fn owner_of(state: &State, clientid: u64) -> Option<Vec<u8>> {
    state.sessions.owner_of(clientid).or_else(|| state.v4.name_of(clientid))
}

/// What the grace period makes of a call of `clientid` that takes state
/// (`reclaim`: CLAIM_PREVIOUS or a LOCK's reclaim); reclaims are counted.
pub fn call(state: &State, clientid: u64, reclaim: bool) -> GraceCall {
    if reclaim {
        state.v4_reclaims.fetch_add(1, Ordering::Relaxed);
    }
    if waiting(state).is_none() {
        return Grace::call(None, 0, None, reclaim);
    }
    // Not under the grace lock: the session table has its own.
    let owner = owner_of(state, clientid);
    let grace = state.grace.lock().unwrap_or_else(|e| e.into_inner());
    Grace::call(grace.as_ref(), now_ms(), owner.as_deref(), reclaim)
}

/// An NLM lock (not a reclaim) while NFSv4 clients reclaim: refused.
pub fn holds_nlm(state: &State) -> bool {
    waiting(state).is_some()
}

/// RECLAIM_COMPLETE of `clientid`.
pub fn complete(state: &State, clientid: u64) {
    let owner = owner_of(state, clientid);
    let mut grace = state.grace.lock().unwrap_or_else(|e| e.into_inner());
    if let (Some(g), Some(owner)) = (grace.as_mut(), owner) {
        g.complete(&owner);
    }
    end_if_over(&mut grace);
}
