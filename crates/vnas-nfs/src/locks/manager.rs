//! The one lock manager of a server: the table (pure decisions), the
//! kernel's copy of each grant, the journal that records every change
//! before it is answered, and the queue of calls back to clients.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::kernel::{KernelLocks, Opener, Taken};
use vnas_locks::{Grant, Limits, Lock, LockTable, Outcome, Owner, Range, Share, ShareOutcome, Waiter};

/// Where the lock table is recorded before any change to it is answered:
/// a next owner restores it whole, so no client reclaims anything and no
/// grace period is needed. The caller (a cluster node) writes it to the
/// vserver's service state, refused there once another node owns it.
pub trait LockJournal: Send + Sync {
    fn record(&self, table: &LockTable) -> Result<(), String>;
}

/// The change could not be recorded: it was not made, and the call is
/// not answered (the client sends it again).
#[derive(Debug)]
pub struct NotRecorded;

/// A call to a client's lock manager that the server owes it.
#[derive(Clone, Debug)]
pub enum Callback {
    /// A waiter's lock is granted now (GRANTED).
    Granted(Grant),
    /// The result of a `_MSG` call, as the `_RES` call `proc_`.
    Result { client: IpAddr, server: IpAddr, proc_: u32, body: Vec<u8> },
    /// A lock on this file went: NFSv4.1 clients waiting on it are told.
    Released(Vec<u8>),
}

/// Counters for metrics and `vnas vserver locks`.
#[derive(Default)]
pub struct LockCounters {
    pub granted: AtomicU64,
    pub denied: AtomicU64,
    pub blocked: AtomicU64,
    pub callbacks: AtomicU64,
    pub callbacks_failed: AtomicU64,
    pub released_by_reboot: AtomicU64,
    /// Changes recorded in the journal, and the time that took (µs): what
    /// recording each change before answering it costs.
    pub recorded: AtomicU64,
    pub record_us: AtomicU64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LockStats {
    pub held: u64,
    pub waiting: u64,
    pub clients: u64,
    pub granted: u64,
    pub denied: u64,
    pub blocked: u64,
    pub callbacks: u64,
    pub callbacks_failed: u64,
    pub released_by_reboot: u64,
    pub recorded: u64,
    pub record_us: u64,
}

struct Inner {
    table: LockTable,
    kernel: KernelLocks,
    /// Grants restored from a previous owner that the kernel did not take
    /// yet (that owner's process had not let go): retried.
    unheld: Vec<(Vec<u8>, Owner, bool, Range)>,
    /// A record failed: the store may hold a table other than this one
    /// (a write applied whose answer was lost), so the next call records
    /// even if it changes nothing.
    dirty: bool,
}

pub struct LockManager {
    inner: Mutex<Inner>,
    limits: Limits,
    journal: Option<Arc<dyn LockJournal>>,
    callbacks: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Callback>>>,
    pub counters: LockCounters,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl LockManager {
    /// Starts from `restored` (a previous owner's table) or empty.
    pub fn new(
        restored: Option<LockTable>,
        journal: Option<Arc<dyn LockJournal>>,
        limits: Limits,
    ) -> LockManager {
        let table = restored.unwrap_or_default();
        let unheld = table.locks().map(|(f, l)| (f.clone(), l.owner.clone(), l.exclusive, l.range)).collect();
        LockManager {
            inner: Mutex::new(Inner { table, kernel: KernelLocks::default(), unheld, dirty: false }),
            limits,
            journal,
            callbacks: Mutex::new(None),
            counters: LockCounters::default(),
        }
    }

    /// Takes a previous owner's table whole (before any call is served):
    /// its grants go into the kernel as that owner lets go of them.
    pub fn restore(&self, table: LockTable) {
        let mut inner = self.inner.lock().expect("not poisoned");
        inner.kernel.release_all();
        inner.unheld =
            table.locks().map(|(f, l)| (f.clone(), l.owner.clone(), l.exclusive, l.range)).collect();
        inner.table = table;
    }

    /// Where grants owed to waiting clients go (the server's callback task).
    pub fn set_callbacks(&self, sender: tokio::sync::mpsc::UnboundedSender<Callback>) {
        *self.callbacks.lock().expect("not poisoned") = Some(sender);
    }

    /// This vserver's NSM state number (what STAT answers).
    pub fn nsm_state(&self) -> u32 {
        self.inner.lock().expect("not poisoned").table.nsm_state
    }

    pub fn snapshot(&self) -> LockTable {
        self.inner.lock().expect("not poisoned").table.clone()
    }

    pub fn stats(&self) -> LockStats {
        let inner = self.inner.lock().expect("not poisoned");
        let c = &self.counters;
        LockStats {
            held: inner.table.locks().count() as u64,
            waiting: inner.table.waiters().count() as u64,
            clients: inner.table.clients.len() as u64,
            granted: c.granted.load(Ordering::Relaxed),
            denied: c.denied.load(Ordering::Relaxed),
            blocked: c.blocked.load(Ordering::Relaxed),
            callbacks: c.callbacks.load(Ordering::Relaxed),
            callbacks_failed: c.callbacks_failed.load(Ordering::Relaxed),
            released_by_reboot: c.released_by_reboot.load(Ordering::Relaxed),
            recorded: c.recorded.load(Ordering::Relaxed),
            record_us: c.record_us.load(Ordering::Relaxed),
        }
    }

    /// Runs `change` on the table and records the result before returning;
    /// if it cannot be recorded the table goes back as it was (the
    /// kernel's copy is put right by `undo`).
    fn change<T>(
        &self,
        change: impl FnOnce(&mut Inner) -> T,
        undo: impl FnOnce(&mut Inner, &T),
    ) -> Result<T, NotRecorded> {
        let mut inner = self.inner.lock().expect("not poisoned");
        let before = inner.table.clone();
        let result = change(&mut inner);
        if inner.table == before && !inner.dirty {
            return Ok(result);
        }
        if let Some(journal) = &self.journal {
            let started = std::time::Instant::now();
            let recorded = journal.record(&inner.table);
            self.counters.recorded.fetch_add(1, Ordering::Relaxed);
            self.counters.record_us.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            if let Err(error) = recorded {
                tracing::error!(%error, "cannot record the lock table; the call is not answered");
                undo(&mut inner, &result);
                inner.table = before;
                inner.dirty = true;
                return Err(NotRecorded);
            }
            inner.dirty = false;
        }
        Ok(result)
    }

    fn send(&self, grants: Vec<Grant>) {
        if grants.is_empty() {
            return;
        }
        let callbacks = self.callbacks.lock().expect("not poisoned");
        for grant in grants {
            self.counters.granted.fetch_add(1, Ordering::Relaxed);
            if let Some(sender) = callbacks.as_ref() {
                let _ = sender.send(Callback::Granted(grant));
            }
        }
    }

    /// Queues a call back to a client.
    pub fn call_back(&self, callback: Callback) {
        if let Some(sender) = self.callbacks.lock().expect("not poisoned").as_ref() {
            let _ = sender.send(callback);
        }
    }

    /// A TEST: the lock that would stop this one, from the table, or one
    /// the kernel holds for someone outside it (reported with no owner).
    pub fn test(
        &self,
        open: Opener<'_>,
        file: &[u8],
        owner: &Owner,
        exclusive: bool,
        range: Range,
    ) -> Option<Lock> {
        let inner = self.inner.lock().expect("not poisoned");
        if let Some(holder) = inner.table.test(file, owner, exclusive, range) {
            return Some(holder);
        }
        // The kernel also shows this server's own copies; ask it only
        // where every copy it holds belongs to another owner's lock the
        // table already weighed (none overlap, or the owner holds none).
        let theirs =
            inner.table.files.get(file).is_some_and(|f| f.locks.iter().any(|l| l.range.overlaps(&range)));
        if theirs {
            return None;
        }
        let (exclusive, range) = inner.kernel.outside(open, file, exclusive, range)?;
        Some(Lock {
            owner: Owner { caller: String::new(), svid: 0, oh: Vec::new() },
            exclusive,
            range,
            since_ms: 0,
        })
    }

    /// A LOCK (blocking when `waiter` is given).
    #[allow(clippy::too_many_arguments)]
    pub fn lock(
        &self,
        open: Opener<'_>,
        file: &[u8],
        owner: &Owner,
        exclusive: bool,
        range: Range,
        waiter: Option<Waiter>,
        client: IpAddr,
    ) -> Result<Outcome, NotRecorded> {
        let now = now_ms();
        let limits = self.limits;
        let outcome = self.change(
            |inner| {
                if !inner.table.free(file, owner, exclusive, range) {
                    return inner.table.lock(&limits, file, owner, exclusive, range, waiter, client, now);
                }
                match inner.kernel.take(open, file, owner, exclusive, range) {
                    Taken::Yes | Taken::NotHeld => {
                        inner.table.lock(&limits, file, owner, exclusive, range, None, client, now)
                    }
                    Taken::Busy => match waiter {
                        Some(waiter) => inner.table.queue(&limits, file, waiter, client, now),
                        // Held outside the table: a holder the client can
                        // be told of, with no owner it knows.
                        None => Outcome::Denied(Lock {
                            owner: Owner { caller: String::new(), svid: 0, oh: Vec::new() },
                            exclusive: true,
                            range,
                            since_ms: now,
                        }),
                    },
                }
            },
            |inner, outcome| {
                if *outcome == Outcome::Granted {
                    let last = !inner
                        .table
                        .files
                        .get(file)
                        .is_some_and(|f| f.locks.iter().any(|l| &l.owner == owner));
                    inner.kernel.release(file, owner, range, last);
                }
            },
        )?;
        let counter = match outcome {
            Outcome::Granted => &self.counters.granted,
            Outcome::Blocked => &self.counters.blocked,
            Outcome::Denied(_) | Outcome::NoLocks => &self.counters.denied,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(outcome)
    }

    /// An UNLOCK; waiters it unblocks are granted and called back.
    pub fn unlock(
        &self,
        open: Opener<'_>,
        file: &[u8],
        owner: &Owner,
        range: Range,
    ) -> Result<(), NotRecorded> {
        let now = now_ms();
        let grants = self.change(
            |inner| {
                inner.table.unlock(file, owner, range);
                let last =
                    !inner.table.files.get(file).is_some_and(|f| f.locks.iter().any(|l| &l.owner == owner));
                inner.kernel.release(file, owner, range, last);
                wake(inner, open, file, now)
            },
            |_, _| {},
        )?;
        self.send(grants);
        self.call_back(Callback::Released(file.to_vec()));
        Ok(())
    }

    pub fn cancel(
        &self,
        file: &[u8],
        owner: &Owner,
        exclusive: bool,
        range: Range,
    ) -> Result<bool, NotRecorded> {
        self.change(|inner| inner.table.cancel(file, owner, exclusive, range), |_, _| {})
    }

    /// Everything `caller` holds goes (FREE_ALL, its reboot, an
    /// administrator's break); returns how many locks were released.
    pub fn release_client(&self, open: Opener<'_>, caller: &str) -> Result<usize, NotRecorded> {
        let now = now_ms();
        let (released, grants, files) = self.change(
            |inner| {
                let released = inner.table.release_client(caller);
                inner.kernel.release_caller(caller);
                let files: std::collections::BTreeSet<Vec<u8>> =
                    released.iter().map(|(f, _)| f.clone()).collect();
                let grants: Vec<Grant> = files.iter().flat_map(|f| wake(inner, open, f, now)).collect();
                (released.len(), grants, files)
            },
            |_, _| {},
        )?;
        self.send(grants);
        for file in files {
            self.call_back(Callback::Released(file));
        }
        Ok(released)
    }

    /// A client's reboot notice (SM_NOTIFY) with its new NSM state, sent
    /// from `from`. Taken only from the address the client locked from (as
    /// a server's statd takes a notice only from the host it is about):
    /// anyone else could otherwise free another client's locks.
    pub fn rebooted(
        &self,
        open: Opener<'_>,
        caller: &str,
        state: u32,
        from: IpAddr,
    ) -> Result<usize, NotRecorded> {
        let known = self.inner.lock().expect("not poisoned").table.clients.get(caller).cloned();
        let Some(known) = known else { return Ok(0) };
        if known.address != from {
            tracing::warn!(client = %caller, address = %known.address, %from, "reboot notice from another address; ignored");
            return Ok(0);
        }
        if known.state == state && state != 0 {
            return Ok(0);
        }
        let released = self.release_client(open, caller)?;
        self.counters.released_by_reboot.fetch_add(released as u64, Ordering::Relaxed);
        Ok(released)
    }

    pub fn share(&self, file: &[u8], share: Share, client: IpAddr) -> Result<ShareOutcome, NotRecorded> {
        let limits = self.limits;
        self.change(|inner| inner.table.share(&limits, file, share, client, now_ms()), |_, _| {})
    }

    /// Whether an NLM share reservation on `file` stands against an open
    /// with `access` and `deny` (an NFSv4 OPEN asks).
    pub fn share_conflict(&self, file: &[u8], access: u32, deny: u32) -> bool {
        let inner = self.inner.lock().expect("not poisoned");
        inner.table.files.get(file).is_some_and(|f| f.share_conflict("", &[], access, deny))
    }

    pub fn unshare(&self, file: &[u8], caller: &str, oh: &[u8]) -> Result<(), NotRecorded> {
        self.change(|inner| inner.table.unshare(file, caller, oh), |_, _| {})
    }

    /// The client told its NSM state with a lock: remembered, so a later
    /// reboot notice with the same state is a repeat.
    pub fn note_state(&self, caller: &str, state: u32) {
        if let Some(client) = self.inner.lock().expect("not poisoned").table.clients.get_mut(caller) {
            client.state = state;
        }
    }

    /// The client did not want a grant after all (its answer to GRANTED):
    /// released as an UNLOCK would.
    pub fn refused(&self, open: Opener<'_>, grant: &Grant) {
        let w = &grant.waiter;
        if self.unlock(open, &grant.file, &w.owner, w.range).is_err() {
            tracing::warn!(caller = %w.owner.caller, "cannot release a grant its client refused");
        }
    }

    /// Periodic: grants restored from a previous owner are taken in the
    /// kernel once it lets go; waiters held up only by a lock outside
    /// the table are granted once it goes.
    pub fn tick(&self, open: Opener<'_>) {
        let now = now_ms();
        let grants = {
            let mut inner = self.inner.lock().expect("not poisoned");
            let unheld = std::mem::take(&mut inner.unheld);
            for (file, owner, exclusive, range) in unheld {
                if inner.kernel.take(open, &file, &owner, exclusive, range) == Taken::Busy {
                    inner.unheld.push((file, owner, exclusive, range));
                }
            }
            let files: Vec<Vec<u8>> = inner.table.waiters().map(|(f, _)| f.clone()).collect();
            let mut grants = Vec::new();
            if !files.is_empty() {
                let before = inner.table.clone();
                for file in files {
                    grants.extend(wake(&mut inner, open, &file, now));
                }
                if let (Some(journal), false) = (&self.journal, grants.is_empty()) {
                    if let Err(error) = journal.record(&inner.table) {
                        inner.dirty = true;
                        tracing::error!(%error, "cannot record the lock table; waiters stay waiting");
                        for g in &grants {
                            let w = &g.waiter;
                            inner.kernel.release(&g.file, &w.owner, w.range, false);
                        }
                        inner.table = before;
                        grants.clear();
                    }
                }
            }
            grants
        };
        self.send(grants);
    }

    /// The server stops: the kernel's copies go, so the next owner can
    /// take them.
    pub fn let_go(&self) {
        self.inner.lock().expect("not poisoned").kernel.release_all();
    }

    /// Kernel descriptors held (for tests).
    pub fn kernel_held(&self) -> usize {
        self.inner.lock().expect("not poisoned").kernel.held()
    }
}

/// Grants the waiters on `file` that nothing blocks now, in the table and
/// in the kernel.
fn wake(inner: &mut Inner, open: Opener<'_>, file: &[u8], now: u64) -> Vec<Grant> {
    let Inner { table, kernel, .. } = inner;
    table.wake(file, now, &mut |file, w| {
        kernel.take(open, file, &w.owner, w.exclusive, w.range) != Taken::Busy
    })
}

/// An opener that opens nothing: the kernel holds no copies (tests of the
/// table alone).
pub fn no_kernel(_: &[u8]) -> std::io::Result<OwnedFd> {
    Err(std::io::Error::from_raw_os_error(libc::ENOTSUP))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose second write is applied but answered with an error
    /// (the answer lost), as the simulation's seed 73 found.
    #[derive(Default)]
    struct LosesAnAnswer {
        stored: Mutex<Option<LockTable>>,
        writes: std::sync::atomic::AtomicUsize,
    }

    impl LockJournal for LosesAnAnswer {
        fn record(&self, table: &LockTable) -> Result<(), String> {
            *self.stored.lock().unwrap() = Some(table.clone());
            match self.writes.fetch_add(1, Ordering::SeqCst) {
                1 => Err("the answer was lost".into()),
                _ => Ok(()),
            }
        }
    }

    #[test]
    fn after_a_failed_record_the_next_call_records_again() {
        let journal = Arc::new(LosesAnAnswer::default());
        let locks = LockManager::new(None, Some(journal.clone()), Limits::default());
        let a = Owner { caller: "a".into(), svid: 1, oh: vec![] };
        let ip = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let open = no_kernel;
        assert_eq!(locks.lock(&open, b"f", &a, false, Range::of(0, 10), None, ip).unwrap(), Outcome::Granted);
        // Exclusive over part of it: applied in the store, not answered.
        assert!(locks.lock(&open, b"f", &a, true, Range::of(4, 2), None, ip).is_err());
        assert_eq!(locks.snapshot().locks().count(), 1, "undone here");
        // A call that changes nothing here still records: the store must
        // hold what the clients were answered from.
        assert_eq!(locks.lock(&open, b"f", &a, false, Range::of(4, 2), None, ip).unwrap(), Outcome::Granted);
        assert_eq!(journal.stored.lock().unwrap().as_ref(), Some(&locks.snapshot()));
    }

    #[test]
    fn a_reboot_notice_counts_only_from_the_client_itself() {
        let locks = LockManager::new(None, None, Limits::default());
        let a = Owner { caller: "a".into(), svid: 1, oh: vec![] };
        let (ip, other) =
            (IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 201)), IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let open = no_kernel;
        locks.lock(&open, b"f", &a, true, Range::of(0, 0), None, ip).unwrap();
        locks.note_state("a", 3);
        assert_eq!(locks.rebooted(&open, "a", 5, other).unwrap(), 0, "from another host: ignored");
        assert_eq!(locks.rebooted(&open, "a", 3, ip).unwrap(), 0, "the state it had: a repeat");
        assert_eq!(locks.rebooted(&open, "b", 5, ip).unwrap(), 0, "a client holding nothing");
        assert_eq!(locks.snapshot().locks().count(), 1);
        assert_eq!(locks.rebooted(&open, "a", 5, ip).unwrap(), 1);
        assert_eq!(locks.snapshot().locks().count(), 0);
    }
}
