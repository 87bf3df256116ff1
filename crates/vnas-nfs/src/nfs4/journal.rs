//! The vserver's NFSv4 state recorded before a change of it is answered
//! (client IDs, sessions made or gone, opens, lock stateids), so a next
//! owner serves it after a failover; and written whole, slots included,
//! by an owner that stopped for a hand-off (`vnas_locks::nfs4`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vnas_locks::nfs4::Record;

use crate::server::State;

/// Where the record goes: the vserver's service state, refused there once
/// another node owns the vserver.
pub trait V4Journal: Send + Sync {
    fn record(&self, record: &Record) -> Result<(), String>;
    /// The names of the clients that hold state (who may reclaim if the
    /// record is ever unreadable), written apart when they change.
    fn record_clients(&self, clients: &[Vec<u8>]) -> Result<(), String>;
}

#[derive(Default)]
pub struct Journal {
    sink: Option<Arc<dyn V4Journal>>,
    /// The changes the store holds (a count of `State`'s changes).
    recorded: AtomicU64,
    /// One write at a time, each of a record taken after the last: the
    /// store never ends with an older record than it had.
    writing: Mutex<()>,
    /// Hand-off records taken: each must give way to a journal record
    /// before the first reply (its slots move on from then).
    handoffs: AtomicU64,
    /// The client list as last written (`None`: not known to be written).
    clients: Mutex<Option<Vec<Vec<u8>>>>,
    /// Records written, and the time that took (µs).
    pub written: AtomicU64,
    pub write_us: AtomicU64,
}

fn changes(state: &State) -> u64 {
    state.sessions.changes() + state.v4.changes() + state.v4_journal.handoffs.load(Ordering::SeqCst)
}

/// The state as data; with `handoff` (no call runs: the server drained)
/// the sessions with their slots too.
pub fn snapshot(state: &State, handoff: bool) -> Record {
    let (clients41, sessions) = state.sessions.export(handoff);
    let mut record = Record { handoff, clients41, sessions, ..Record::default() };
    state.v4.export(&mut record);
    record
}

/// What NFSv4 state a server holds, and what keeping it took.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Nfs4Stats {
    pub clients: u64,
    pub sessions: u64,
    pub opens: u64,
    pub lock_states: u64,
    /// OPENs with CLAIM_PREVIOUS and LOCKs with reclaim set taken here
    /// (taken in a grace period, refused outside one), and
    /// RECLAIM_COMPLETEs (a client sends one after it mounts).
    pub reclaims: u64,
    pub reclaim_completes: u64,
    /// While a grace period runs: the clients still to reclaim.
    pub grace_waiting: Option<u64>,
    /// Journal records written, and the time that took (µs).
    pub recorded: u64,
    pub record_us: u64,
}

pub fn stats(state: &State) -> Nfs4Stats {
    let (clients41, sessions) = state.sessions.counts();
    let (clients40, opens, lock_states) = state.v4.counts();
    let j = &state.v4_journal;
    Nfs4Stats {
        clients: (clients41 + clients40) as u64,
        sessions: sessions as u64,
        opens: opens as u64,
        lock_states: lock_states as u64,
        reclaims: state.v4_reclaims.load(Ordering::Relaxed),
        reclaim_completes: state.v4_reclaim_completes.load(Ordering::Relaxed),
        grace_waiting: super::grace::waiting(state).map(|n| n as u64),
        recorded: j.written.load(Ordering::Relaxed),
        record_us: j.write_us.load(Ordering::Relaxed),
    }
}

/// Takes a previous owner's state whole, before any call is served; how
/// many entries did not fit this server's bounds.
pub fn restore(state: &State, record: &Record) -> usize {
    let now = Instant::now();
    let skipped =
        state.sessions.import(&record.clients41, &record.sessions, now) + state.v4.import(record, now);
    state.v4_journal.recorded.store(changes(state), Ordering::SeqCst);
    *state.v4_journal.clients.lock().unwrap_or_else(|e| e.into_inner()) = Some(record.clients());
    // A hand-off's sessions are good until a call moves a slot on: the
    // store must hold a record without them before any call runs here,
    // or a next owner after a failover would take stale slots for current
    // (and run a call this node ran again, in the same session).
    if record.handoff {
        state.v4_journal.handoffs.fetch_add(1, Ordering::SeqCst);
    }
    skipped
}

impl Journal {
    pub fn new(sink: Option<Arc<dyn V4Journal>>) -> Journal {
        Journal { sink, ..Journal::default() }
    }

    /// Before a reply leaves: every change made so far is recorded (by
    /// this call or one before); false if that failed, and the reply must
    /// not leave (the client sends the call again, and gets this answer
    /// only once it is recorded).
    pub fn flush(&self, state: &State) -> bool {
        let Some(sink) = &self.sink else { return true };
        if self.recorded.load(Ordering::SeqCst) >= changes(state) {
            return true;
        }
        let _one = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        // Read before the snapshot: every change counted is in it.
        let now = changes(state);
        if self.recorded.load(Ordering::SeqCst) >= now {
            return true;
        }
        let started = Instant::now();
        let record = snapshot(state, false);
        // Who holds state is written first: a client in the record is
        // always in the list.
        let clients = record.clients();
        let mut written = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if written.as_ref() != Some(&clients) {
            if let Err(error) = sink.record_clients(&clients) {
                tracing::warn!(%error, "NFSv4 client list not recorded; the reply is held back");
                return false;
            }
            *written = Some(clients);
        }
        drop(written);
        match sink.record(&record) {
            Ok(()) => {
                self.recorded.store(now, Ordering::SeqCst);
                self.written.fetch_add(1, Ordering::Relaxed);
                self.write_us.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "NFSv4 state not recorded; the reply is held back");
                false
            }
        }
    }
}
