//! A vserver's NFSv4 state as data: client IDs, sessions, open and lock
//! stateids, NFSv4.0 open-owner sequence ids. The server records it in the
//! common volume (as it records the lock table) and a next owner restores
//! it; what a next owner may serve of it, and whether the vserver needs a
//! grace period, are decided here, without I/O, so the cluster simulation
//! runs the same rules.
//!
//! Two kinds of record:
//! - **a hand-off**: written by an owner that stopped serving (a planned
//!   move), whole: sessions with every slot's sequence id and cached reply.
//!   The next owner serves the same sessions; a client carries on over a
//!   new connection as if nothing happened.
//! - **a journal record**: written while serving, before a change of client
//!   IDs, opens or lock stateids is answered. Slots change on every call
//!   and are not in it: after a failover the sessions are gone
//!   (NFS4ERR_BADSESSION), a client makes a new one under its client ID
//!   and goes on with its stateids. Nothing to reclaim.

use serde::{Deserialize, Serialize};

use crate::hex_bytes;

/// An NFSv4.1 client ID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client41 {
    pub id: u64,
    #[serde(with = "hex_bytes")]
    pub owner: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub verifier: Vec<u8>,
    pub confirmed: bool,
    /// The sequence id the client's next CREATE_SESSION carries.
    pub create_seq: u32,
    /// The last CREATE_SESSION's sequence id and reply (for its retry).
    pub last_create: Option<(u32, Hex)>,
}

/// Bytes written as hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hex(#[serde(with = "hex_bytes")] pub Vec<u8>);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub seqid: u32,
    /// The reply the slot keeps for a retry of its last call.
    pub reply: Option<Hex>,
}

/// A session with its fore channel as CREATE_SESSION settled it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(with = "hex_bytes")]
    pub id: Vec<u8>,
    pub clientid: u64,
    pub max_request: u32,
    pub max_response: u32,
    pub max_response_cached: u32,
    pub max_operations: u32,
    pub slots: Vec<Slot>,
    /// The back channel the client asked for, if it did (records made
    /// before it existed have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<Callback>,
}

/// A session's back channel (RFC 8881 section 2.10.3.1): how to call the
/// client on the connection it binds, and the sequence id of the last
/// callback, which the client's one back-channel slot expects next plus one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    pub program: u32,
    /// AUTH_NONE (0) or AUTH_SYS (1), one the client offered.
    pub flavor: u32,
    /// The minor version the client speaks (its callbacks carry it).
    pub minor: u32,
    pub seq: u32,
}

/// An NFSv4.0 client record (SETCLIENTID).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client40 {
    pub id: u64,
    #[serde(with = "hex_bytes")]
    pub name: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub verifier: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub confirm: Vec<u8>,
    pub confirmed: bool,
}

/// An open or lock stateid: its owner's state on one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(with = "hex_bytes")]
    pub other: Vec<u8>,
    pub clientid: u64,
    #[serde(with = "hex_bytes")]
    pub owner: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub fh: Vec<u8>,
    pub seqid: u32,
    /// An open's share access and deny bits (0 for a lock stateid).
    pub access: u32,
    pub deny: u32,
}

/// An NFSv4.0 open-owner's last sequence id and the result it got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerSeq {
    pub clientid: u64,
    #[serde(with = "hex_bytes")]
    pub owner: Vec<u8>,
    pub seqid: u32,
    pub status: u32,
    #[serde(with = "hex_bytes")]
    pub body: Vec<u8>,
    pub fh: Option<Hex>,
    pub other: Option<Hex>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Written by an owner that stopped serving: sessions included.
    pub handoff: bool,
    pub clients41: Vec<Client41>,
    pub sessions: Vec<Session>,
    pub clients40: Vec<Client40>,
    pub opens: Vec<State>,
    pub locks: Vec<State>,
    pub owners40: Vec<OwnerSeq>,
}

/// Whether an OPEN asking `access` and `deny` (bits: 1 read, 2 write)
/// conflicts with another owner's open of the same file holding
/// `held_access` and `held_deny`: either denies what the other has or asks.
pub fn share_conflict(held_access: u32, held_deny: u32, access: u32, deny: u32) -> bool {
    held_deny & access != 0 || held_access & deny != 0
}

/// What a slot makes of a call's sequence id (RFC 8881 section 2.10.6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotCall {
    /// The next one: a new call, to run.
    New,
    /// The slot's last call again: answered with the reply it keeps.
    Replay,
    /// A retry of the last call, whose reply was not kept: told so, never
    /// run again (NFS4ERR_RETRY_UNCACHED_REP).
    Uncached,
    /// The slot is busy with the last call (NFS4ERR_DELAY).
    Busy,
    /// Anything else (NFS4ERR_SEQ_MISORDERED).
    Misordered,
}

/// The slot's decision for `seqid`, given its last sequence id, whether a
/// call runs in it and whether it keeps that call's reply.
pub fn slot_call(last: u32, busy: bool, kept: bool, seqid: u32) -> SlotCall {
    if seqid == last && last != 0 {
        match (busy, kept) {
            (true, _) => SlotCall::Busy,
            (false, true) => SlotCall::Replay,
            (false, false) => SlotCall::Uncached,
        }
    } else if seqid == last.wrapping_add(1) {
        if busy {
            SlotCall::Busy
        } else {
            SlotCall::New
        }
    } else {
        SlotCall::Misordered
    }
}

/// What a next owner does with what it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restore {
    /// Serve this state as it is: no grace period.
    Serve(Record),
    /// Nothing could be read that proves the state clients hold: this
    /// vserver (only it) waits out a grace period in which the clients of
    /// the last record it could read reclaim; none known: none at all.
    Grace { reclaimers: Vec<Vec<u8>> },
}

impl Record {
    /// The client owners (4.1) and names (4.0) that hold state here: who
    /// may reclaim in a grace period (RFC 8881's stable storage).
    pub fn clients(&self) -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> =
            self.clients41.iter().filter(|c| c.confirmed).map(|c| c.owner.clone()).collect();
        all.extend(self.clients40.iter().filter(|c| c.confirmed).map(|c| c.name.clone()));
        all.sort();
        all.dedup();
        all
    }

    /// Lock stateids whose open-owner's client has no record, opens of
    /// clients with none: what a record that proves itself never holds.
    pub fn orphans(&self) -> usize {
        let known =
            |id: u64| self.clients41.iter().any(|c| c.id == id) || self.clients40.iter().any(|c| c.id == id);
        self.opens.iter().chain(&self.locks).filter(|s| !known(s.clientid)).count()
            + self.sessions.iter().filter(|s| !known(s.clientid)).count()
    }
}

/// The decision of a next owner: `read` is the vserver's record as the
/// store gave it (`None`: never written; `Err`: unreadable).
///
/// - A hand-off record is served whole, sessions included.
/// - A journal record is served without sessions: their slots moved on
///   after it was written, and a session whose slots are unknown would
///   answer a retry wrongly (a new call taken for a retry, or the reverse).
///   Every open and lock in it was recorded before the client heard of it.
/// - Nothing written: no NFSv4 client ever held state here; nothing to wait
///   for.
/// - Unreadable: the state clients hold cannot be proven: grace for this
///   vserver, with the clients `last_known` lists as reclaimers.
pub fn restore(read: Result<Option<Record>, String>, last_known: &[Vec<u8>]) -> Restore {
    match read {
        Ok(Some(record)) if record.handoff => Restore::Serve(record),
        Ok(Some(mut record)) => {
            record.sessions.clear();
            Restore::Serve(record)
        }
        Ok(None) => Restore::Serve(Record::default()),
        Err(_) => Restore::Grace { reclaimers: last_known.to_vec() },
    }
}

/// A grace period of one vserver: until `until_ms`, or until every client
/// in `waiting` has said it reclaimed all it had (RECLAIM_COMPLETE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grace {
    pub until_ms: u64,
    pub waiting: std::collections::BTreeSet<Vec<u8>>,
}

/// What a grace period makes of a call that takes state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraceCall {
    /// Runs as usual.
    Go,
    /// A new open or lock while clients still reclaim (NFS4ERR_GRACE).
    Wait,
    /// A reclaim with nothing to reclaim from: no grace, or a client not
    /// on the list (NFS4ERR_NO_GRACE).
    NoGrace,
}

impl Grace {
    /// A grace period for `reclaimers` of `lease_ms`, from `now_ms`; none
    /// if nobody may reclaim.
    pub fn begin(reclaimers: &[Vec<u8>], now_ms: u64, lease_ms: u64) -> Option<Grace> {
        (!reclaimers.is_empty())
            .then(|| Grace { until_ms: now_ms + lease_ms, waiting: reclaimers.iter().cloned().collect() })
    }

    pub fn over(&self, now_ms: u64) -> bool {
        self.waiting.is_empty() || now_ms >= self.until_ms
    }

    /// A call of the client `owner` that takes state, a reclaim or not.
    pub fn call(grace: Option<&Grace>, now_ms: u64, owner: Option<&[u8]>, reclaim: bool) -> GraceCall {
        match grace.filter(|g| !g.over(now_ms)) {
            None if reclaim => GraceCall::NoGrace,
            None => GraceCall::Go,
            Some(g) if reclaim => {
                if owner.is_some_and(|o| g.waiting.contains(o)) {
                    GraceCall::Go
                } else {
                    GraceCall::NoGrace
                }
            }
            Some(_) => GraceCall::Wait,
        }
    }

    /// RECLAIM_COMPLETE from `owner`.
    pub fn complete(&mut self, owner: &[u8]) {
        self.waiting.remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(handoff: bool) -> Record {
        Record {
            handoff,
            clients41: vec![Client41 {
                id: 7,
                owner: b"linux-guest".to_vec(),
                verifier: vec![1; 8],
                confirmed: true,
                create_seq: 2,
                last_create: Some((1, Hex(b"reply".to_vec()))),
            }],
            sessions: vec![Session {
                id: vec![9; 16],
                clientid: 7,
                max_request: 1 << 20,
                max_response: 1 << 20,
                max_response_cached: 4096,
                max_operations: 16,
                slots: vec![Slot { seqid: 41, reply: Some(Hex(b"cached".to_vec())) }],
                callback: Some(Callback { program: 0x4000_0000, flavor: 1, minor: 1, seq: 3 }),
            }],
            opens: vec![State {
                other: vec![1; 12],
                clientid: 7,
                owner: b"open-owner".to_vec(),
                fh: b"fh".to_vec(),
                seqid: 3,
                access: 3,
                deny: 0,
            }],
            ..Record::default()
        }
    }

    #[test]
    fn a_handoff_keeps_sessions_a_journal_record_does_not() {
        let Restore::Serve(whole) = restore(Ok(Some(record(true))), &[]) else { panic!() };
        assert_eq!(whole, record(true));
        let Restore::Serve(journal) = restore(Ok(Some(record(false))), &[]) else { panic!() };
        assert!(journal.sessions.is_empty());
        assert_eq!((journal.clients41, journal.opens), (record(false).clients41, record(false).opens));
        assert_eq!(restore(Ok(None), &[]), Restore::Serve(Record::default()));
        let known = record(false).clients();
        assert_eq!(known, vec![b"linux-guest".to_vec()]);
        assert_eq!(restore(Err("garbled".into()), &known), Restore::Grace { reclaimers: known });
        assert_eq!(record(true).orphans(), 0);
    }

    #[test]
    fn a_grace_period_lets_listed_clients_reclaim_and_ends_when_they_are_done() {
        assert_eq!(Grace::begin(&[], 0, 90_000), None, "nobody to wait for: no grace");
        let mut g = Grace::begin(&[b"a".to_vec(), b"b".to_vec()], 1_000, 90_000).unwrap();
        assert_eq!(Grace::call(Some(&g), 2_000, Some(b"a"), true), GraceCall::Go);
        assert_eq!(Grace::call(Some(&g), 2_000, Some(b"z"), true), GraceCall::NoGrace, "not listed");
        assert_eq!(Grace::call(Some(&g), 2_000, Some(b"a"), false), GraceCall::Wait);
        g.complete(b"a");
        assert_eq!(Grace::call(Some(&g), 2_000, Some(b"z"), false), GraceCall::Wait, "b has not finished");
        g.complete(b"b");
        assert!(g.over(2_000));
        assert_eq!(Grace::call(Some(&g), 2_000, Some(b"z"), false), GraceCall::Go);
        assert_eq!(Grace::call(Some(&g), 2_000, Some(b"a"), true), GraceCall::NoGrace, "over");
        let g = Grace::begin(&[b"a".to_vec()], 1_000, 90_000).unwrap();
        assert_eq!(Grace::call(Some(&g), 91_000, None, false), GraceCall::Go, "a lease later it ends anyway");
        assert_eq!(Grace::call(None, 0, None, false), GraceCall::Go);
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let text = serde_json::to_string(&record(true)).unwrap();
        assert!(text.contains("\"owner\":\"6c696e75782d6775657374\""), "bytes as hex: {text}");
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), record(true));
    }
}
