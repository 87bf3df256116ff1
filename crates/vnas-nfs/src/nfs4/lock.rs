//! NFSv4 byte-range locks (LOCK, LOCKT, LOCKU, RELEASE_LOCKOWNER) in the
//! one lock manager NLM uses, so a v3 client's lock and a v4 client's
//! conflict. A v4 lock owner is the manager's owner
//! `{caller: "nfs4:CLIENTID", svid: 0, oh: OWNER}`; its lock stateid names
//! the owner and the file. Blocking locks are polled by v4 clients: no
//! waiter is queued. A client whose lease lapses loses its locks.

use std::time::Instant;

use vnas_locks::{Lock, Outcome, Owner, Range};

use super::ops::{current, fail, ok, put_stateid, stateid, target, word, Done};
use super::*;
use crate::locks::NotRecorded;

/// The lock manager's caller name of an NFSv4 client ID.
pub fn caller(clientid: u64) -> String {
    format!("nfs4:{clientid:016x}")
}

fn clientid_of(caller: &str) -> u64 {
    caller.strip_prefix("nfs4:").and_then(|hex| u64::from_str_radix(hex, 16).ok()).unwrap_or(0)
}

/// offset and length as a range: a length of all ones is to the end; zero,
/// or one past the end of the file space, is invalid.
fn range(offset: u64, length: u64) -> Result<Range, u32> {
    if length == 0 {
        return Err(NFS4ERR_INVAL);
    }
    if length == u64::MAX {
        return Ok(Range { start: offset, end: u64::MAX });
    }
    match offset.checked_add(length) {
        Some(end) => Ok(Range { start: offset, end }),
        None => Err(NFS4ERR_INVAL),
    }
}

/// LOCK4denied: who holds what.
fn denied(holder: &Lock) -> Vec<u8> {
    let mut body = Xdr::default();
    let length = if holder.range.end == u64::MAX { u64::MAX } else { holder.range.end - holder.range.start };
    body.u64(holder.range.start).u64(length).u32(if holder.exclusive { 2 } else { 1 });
    body.u64(clientid_of(&holder.owner.caller)).opaque(&holder.owner.oh);
    body.0
}

fn file_of(c: &Compound<'_>) -> Result<Vec<u8>, u32> {
    match current(c)? {
        Fh::Real(fh) => {
            target(c, &fh)?;
            Ok(fh)
        }
        Fh::Pseudo => Err(NFS4ERR_ISDIR),
    }
}

pub fn lock(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let locktype = word(x)?;
    let reclaim = word(x)? != 0;
    let offset = x.u64().map_err(|_| Garbage)?;
    let length = x.u64().map_err(|_| Garbage)?;
    let new_owner = word(x)? != 0;
    // The owner: a new one named beside its open, or an existing lock
    // stateid's.
    let (open_other, owner) = if new_owner {
        let _open_seqid = word(x)?;
        let (_, open_other) = stateid(x)?;
        let _lock_seqid = word(x)?;
        let clientid = x.u64().map_err(|_| Garbage)?;
        let owner = x.opaque(1024).map_err(|_| Garbage)?.to_vec();
        (Some(open_other), Some((c.clientid.unwrap_or(clientid), owner)))
    } else {
        let (_, lock_other) = stateid(x)?;
        let _lock_seqid = word(x)?;
        (None, c.state.v4.lock_owner(&lock_other).map(|(id, owner, _)| (id, owner)))
    };
    if !(1..=4).contains(&locktype) {
        return fail(NFS4ERR_INVAL);
    }
    let Some((clientid, oh)) = owner else { return fail(NFS4ERR_BAD_STATEID) };
    // Outside a grace period a reclaim is a lock like any other (nothing
    // is ever lost to reclaim: state moves with the vserver); counted.
    match super::grace::call(c.state, clientid, reclaim) {
        super::grace::GraceCall::Wait => return fail(NFS4ERR_GRACE),
        super::grace::GraceCall::Go | super::grace::GraceCall::NoGrace => {}
    }
    let fh = tryop!(file_of(c));
    if let Some(open) = open_other {
        if c.state.v4.access(&open, &fh).is_none() {
            return fail(NFS4ERR_BAD_STATEID);
        }
    }
    let range = tryop!(range(offset, length));
    let exclusive = locktype % 2 == 0;
    let owner = Owner { caller: caller(clientid), svid: 0, oh: oh.clone() };
    let open = crate::nlm::opener(c.state);
    match c.state.locks.lock(&open, &fh, &owner, exclusive, range, None, c.conn.peer.ip()) {
        Ok(Outcome::Granted) => {}
        Ok(Outcome::Denied(holder)) => {
            // READW_LT or WRITEW_LT from a client with a back channel: it
            // waits (OPEN told it it may be notified), and is told when
            // the lock may be free.
            if locktype >= 3 && c.minor >= 1 {
                let waiter = super::waiters::Waiter { owner: (clientid, oh), exclusive, range };
                super::callback::wait(c.state, &fh, waiter);
            }
            return Ok((NFS4ERR_DENIED, denied(&holder)));
        }
        // As many as the client may hold (NLM's DENIED_NOLOCKS): no v4
        // error says so, so it is denied, by no one it knows.
        Ok(Outcome::Blocked) | Ok(Outcome::NoLocks) => {
            let none = Lock {
                owner: Owner { caller: String::new(), svid: 0, oh: Vec::new() },
                exclusive,
                range,
                since_ms: 0,
            };
            return Ok((NFS4ERR_DENIED, denied(&none)));
        }
        Err(NotRecorded) => return fail(NFS4ERR_DELAY),
    }
    let Some((seqid, other)) = c.state.v4.lock_state(clientid, &oh, &fh) else {
        return fail(NFS4ERR_RESOURCE);
    };
    let mut body = Xdr::default();
    put_stateid(&mut body, seqid, &other);
    ok(body)
}

pub fn lockt(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let locktype = word(x)?;
    let offset = x.u64().map_err(|_| Garbage)?;
    let length = x.u64().map_err(|_| Garbage)?;
    let clientid = x.u64().map_err(|_| Garbage)?;
    let oh = x.opaque(1024).map_err(|_| Garbage)?.to_vec();
    if !(1..=4).contains(&locktype) {
        return fail(NFS4ERR_INVAL);
    }
    let fh = tryop!(file_of(c));
    let range = tryop!(range(offset, length));
    if super::grace::call(c.state, c.clientid.unwrap_or(clientid), false) == super::grace::GraceCall::Wait {
        return fail(NFS4ERR_GRACE);
    }
    let owner = Owner { caller: caller(c.clientid.unwrap_or(clientid)), svid: 0, oh };
    let open = crate::nlm::opener(c.state);
    match c.state.locks.test(&open, &fh, &owner, locktype % 2 == 0, range) {
        Some(holder) => Ok((NFS4ERR_DENIED, denied(&holder))),
        None => fail(NFS4_OK),
    }
}

pub fn locku(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let _locktype = word(x)?;
    let _seqid = word(x)?;
    let (_, other) = stateid(x)?;
    let offset = x.u64().map_err(|_| Garbage)?;
    let length = x.u64().map_err(|_| Garbage)?;
    let Some((clientid, oh, file)) = c.state.v4.lock_owner(&other) else { return fail(NFS4ERR_BAD_STATEID) };
    let range = tryop!(range(offset, length));
    let owner = Owner { caller: caller(clientid), svid: 0, oh };
    let open = crate::nlm::opener(c.state);
    if c.state.locks.unlock(&open, &file, &owner, range).is_err() {
        return fail(NFS4ERR_DELAY);
    }
    let seqid = c.state.v4.bump_lock(&other);
    let mut body = Xdr::default();
    put_stateid(&mut body, seqid, &other);
    ok(body)
}

/// RELEASE_LOCKOWNER (NFSv4.0): the owner's lock stateids go; refused
/// while it still holds locks.
pub fn release_lockowner(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let clientid = x.u64().map_err(|_| Garbage)?;
    let oh = x.opaque(1024).map_err(|_| Garbage)?.to_vec();
    let owner = Owner { caller: caller(clientid), svid: 0, oh: oh.clone() };
    let holds = c.state.locks.snapshot().locks().any(|(_, l)| l.owner == owner);
    if holds {
        return fail(NFS4ERR_LOCKS_HELD);
    }
    c.state.v4.forget_lock_owner(clientid, &oh);
    fail(NFS4_OK)
}

/// Clients whose lease lapsed (or that a rebooted client replaced) lose
/// their opens and locks. Run with the lock manager's tick.
pub fn expire(state: &State) {
    let now = Instant::now();
    let mut lapsed = state.sessions.lapsed(now);
    lapsed.extend(state.v4.lapsed(now, state.sessions.lease() * 3 / 2));
    if lapsed.is_empty() {
        return;
    }
    let open = crate::nlm::opener(state);
    for clientid in lapsed {
        state.v4.release_client(clientid);
        match state.locks.release_client(&open, &caller(clientid)) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(client = %format!("{clientid:016x}"), locks = n, "NFSv4 client's lease lapsed: its locks released")
            }
            Err(NotRecorded) => {
                tracing::warn!(client = %format!("{clientid:016x}"), "NFSv4 client's lease lapsed, but the release of its locks could not be recorded")
            }
        }
    }
}

/// DESTROY_CLIENTID's release of what the client held.
pub fn release(state: &State, clientid: u64) {
    state.v4.release_client(clientid);
    let open = crate::nlm::opener(state);
    let _ = state.locks.release_client(&open, &caller(clientid));
}
