//! The lock table of one vserver as data: granted byte-range locks, the
//! requests waiting for them, share reservations and the clients that
//! hold any of them. Pure: no I/O, no clock (callers pass the time), so
//! the same code runs in the server and in the cluster simulation, and its
//! whole state is what a next owner restores.
//!
//! One lock manager for every protocol that locks (NLM now, NFSv4 next):
//! the server runs it (`vnas_nfs::locks`), the cluster simulation runs it
//! across its fault schedules.
//!
//! Ranges follow POSIX (and NLM): a lock owner's new lock replaces its own
//! locks where they overlap and merges with adjacent ones of the same
//! kind; locks of different owners conflict where they overlap and either
//! is exclusive.

pub mod nfs4;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Who holds a lock: the client (its `caller_name`), the process on it
/// (`svid`) and the client's opaque owner handle.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Owner {
    pub caller: String,
    pub svid: u32,
    #[serde(with = "hex_bytes")]
    pub oh: Vec<u8>,
}

/// Bytes `start..end` (`end` exclusive; `u64::MAX`: to the end of the file
/// and beyond, what a length of 0 asks for).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    /// The range of an NLM offset and length (0: to the end).
    pub fn of(offset: u64, len: u64) -> Range {
        let end = if len == 0 { u64::MAX } else { offset.saturating_add(len) };
        Range { start: offset, end }
    }

    /// The NLM length of this range (0: to the end).
    pub fn len(&self) -> u64 {
        if self.end == u64::MAX {
            0
        } else {
            self.end - self.start
        }
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Overlapping or adjacent: same-kind locks of one owner merge.
    fn touches(&self, other: &Range) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub owner: Owner,
    pub exclusive: bool,
    pub range: Range,
    pub since_ms: u64,
}

impl Lock {
    fn conflicts(&self, owner: &Owner, exclusive: bool, range: &Range) -> bool {
        &self.owner != owner && (self.exclusive || exclusive) && self.range.overlaps(range)
    }
}

/// A blocking LOCK that could not be granted yet. When it can, the server
/// grants it and calls the client back (`GRANTED`) with `cookie`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    pub owner: Owner,
    pub exclusive: bool,
    pub range: Range,
    #[serde(with = "hex_bytes")]
    pub cookie: Vec<u8>,
    pub since_ms: u64,
    /// The client's address, where its lock manager is called back.
    pub client: IpAddr,
    /// The vserver's address the client asked on: callbacks come from it
    /// (a client checks that a grant comes from the server it asked).
    pub server: IpAddr,
}

/// A DOS-style share reservation (NLM SHARE): `access` is what the holder
/// does (1 read, 2 write), `deny` what it denies others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub caller: String,
    #[serde(with = "hex_bytes")]
    pub oh: Vec<u8>,
    pub access: u32,
    pub deny: u32,
}

/// A client that holds or waits for locks: the one a client's reboot
/// notice (SM_NOTIFY) and `locks --break` are about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub address: IpAddr,
    /// Its NSM state when it last told us (0: never).
    pub state: u32,
    pub since_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLocks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<Lock>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiters: Vec<Waiter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<Share>,
}

impl FileLocks {
    fn is_empty(&self) -> bool {
        self.locks.is_empty() && self.waiters.is_empty() && self.shares.is_empty()
    }

    fn conflict(&self, owner: &Owner, exclusive: bool, range: &Range) -> Option<&Lock> {
        self.locks.iter().find(|l| l.conflicts(owner, exclusive, range))
    }

    /// `owner`'s locks lose `range` (split where it falls inside one).
    fn cut(&mut self, owner: &Owner, range: &Range) {
        let mut kept = Vec::with_capacity(self.locks.len() + 1);
        for lock in self.locks.drain(..) {
            if &lock.owner != owner || !lock.range.overlaps(range) {
                kept.push(lock);
                continue;
            }
            if lock.range.start < range.start {
                kept.push(Lock {
                    range: Range { start: lock.range.start, end: range.start },
                    ..lock.clone()
                });
            }
            if range.end < lock.range.end {
                kept.push(Lock { range: Range { start: range.end, end: lock.range.end }, ..lock.clone() });
            }
        }
        self.locks = kept;
    }

    /// Grants `owner` the range (no conflict checked here), merging with
    /// its adjacent locks of the same kind.
    fn apply(&mut self, owner: &Owner, exclusive: bool, range: Range, now_ms: u64) {
        self.cut(owner, &range);
        let mut merged = Lock { owner: owner.clone(), exclusive, range, since_ms: now_ms };
        self.locks.retain(|l| {
            let joins = &l.owner == owner && l.exclusive == exclusive && l.range.touches(&merged.range);
            if joins {
                merged.range.start = merged.range.start.min(l.range.start);
                merged.range.end = merged.range.end.max(l.range.end);
                merged.since_ms = merged.since_ms.min(l.since_ms);
            }
            !joins
        });
        self.locks.push(merged);
        self.locks.sort_by(|a, b| (a.range, &a.owner).cmp(&(b.range, &b.owner)));
    }

    /// Whether a share reservation of another owner than (`caller`, `oh`)
    /// denies `access` or is denied by `deny`.
    pub fn share_conflict(&self, caller: &str, oh: &[u8], access: u32, deny: u32) -> bool {
        self.shares
            .iter()
            .any(|s| (s.caller != caller || s.oh != oh) && (s.deny & access != 0 || s.access & deny != 0))
    }
}

/// What a LOCK gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Granted,
    /// Held by another: the first conflicting lock.
    Denied(Lock),
    /// Queued: granted later, with a call back.
    Blocked,
    /// The client holds as many as it may.
    NoLocks,
}

/// What a SHARE gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareOutcome {
    Granted,
    Denied,
    NoLocks,
}

/// A waiter granted because what blocked it went away: the server calls
/// its client back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub file: Vec<u8>,
    pub waiter: Waiter,
}

/// How much one client may hold; past it, NLM4_DENIED_NOLOCKS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Locks, waiters and shares of one client (`caller_name`), together.
    pub per_client: usize,
    /// Clients with any state.
    pub clients: usize,
    /// Locks, waiters and shares of all clients together: the table is
    /// recorded whole at every change, so its size is what each costs.
    pub total: usize,
}

/// Locks, blocked requests and share reservations one client may hold
/// together by default; past it, NLM4_DENIED_NOLOCKS.
pub const LOCKS_PER_CLIENT_MAX: usize = 4096;
/// Lock clients with any state on one vserver, by default.
pub const LOCK_CLIENTS_MAX: usize = 4096;
/// Locks, waiters and shares on one vserver, by default.
pub const LOCKS_MAX: usize = 16_384;

impl Default for Limits {
    fn default() -> Self {
        Limits { per_client: LOCKS_PER_CLIENT_MAX, clients: LOCK_CLIENTS_MAX, total: LOCKS_MAX }
    }
}

/// The lock state of one vserver, by file handle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockTable {
    #[serde(with = "hex_keys")]
    pub files: BTreeMap<Vec<u8>, FileLocks>,
    pub clients: BTreeMap<String, Client>,
    /// This vserver's NSM state number (odd: up), what STAT answers.
    pub nsm_state: u32,
}

impl Default for LockTable {
    fn default() -> Self {
        LockTable::new()
    }
}

impl LockTable {
    pub fn new() -> LockTable {
        LockTable { files: BTreeMap::new(), clients: BTreeMap::new(), nsm_state: 1 }
    }

    /// What a TEST answers: the first lock that would stop this one.
    pub fn test(&self, file: &[u8], owner: &Owner, exclusive: bool, range: Range) -> Option<Lock> {
        self.files.get(file)?.conflict(owner, exclusive, &range).cloned()
    }

    /// Whether `owner` could take it now, as far as this table knows.
    pub fn free(&self, file: &[u8], owner: &Owner, exclusive: bool, range: Range) -> bool {
        self.test(file, owner, exclusive, range).is_none()
    }

    /// Locks, waiters and shares, over all clients.
    pub fn size(&self) -> usize {
        self.files.values().map(|f| f.locks.len() + f.waiters.len() + f.shares.len()).sum()
    }

    /// Things one client holds or waits for.
    pub fn held_by(&self, caller: &str) -> usize {
        self.files
            .values()
            .map(|f| {
                f.locks.iter().filter(|l| l.owner.caller == caller).count()
                    + f.waiters.iter().filter(|w| w.owner.caller == caller).count()
                    + f.shares.iter().filter(|s| s.caller == caller).count()
            })
            .sum()
    }

    fn admit(&mut self, limits: &Limits, caller: &str, client: IpAddr, now_ms: u64) -> bool {
        if !self.clients.contains_key(caller) && self.clients.len() >= limits.clients {
            return false;
        }
        if self.held_by(caller) >= limits.per_client || self.size() >= limits.total {
            return false;
        }
        self.clients.entry(caller.to_string()).or_insert(Client {
            address: client,
            state: 0,
            since_ms: now_ms,
        });
        true
    }

    /// A LOCK. `waiter` is what a blocking request queues (its cookie and
    /// addresses); `None`: do not wait.
    #[allow(clippy::too_many_arguments)]
    pub fn lock(
        &mut self,
        limits: &Limits,
        file: &[u8],
        owner: &Owner,
        exclusive: bool,
        range: Range,
        waiter: Option<Waiter>,
        client: IpAddr,
        now_ms: u64,
    ) -> Outcome {
        if let Some(holder) = self.test(file, owner, exclusive, range) {
            let Some(waiter) = waiter else { return Outcome::Denied(holder) };
            let queued = self.files.get(file).is_some_and(|f| {
                f.waiters.iter().any(|w| &w.owner == owner && w.range == range && w.exclusive == exclusive)
            });
            if !queued {
                if !self.admit(limits, &owner.caller, client, now_ms) {
                    return Outcome::NoLocks;
                }
                self.files.entry(file.to_vec()).or_default().waiters.push(waiter);
            }
            return Outcome::Blocked;
        }
        // A change inside a lock it holds (a conversion, an unlock's
        // opposite) is not more; anything else counts against its limit.
        let within = self.files.get(file).is_some_and(|f| {
            f.locks
                .iter()
                .any(|l| &l.owner == owner && l.range.start <= range.start && range.end <= l.range.end)
        });
        if !within && !self.admit(limits, &owner.caller, client, now_ms) {
            return Outcome::NoLocks;
        }
        let entry = self.files.entry(file.to_vec()).or_default();
        // A granted request is no longer waiting (a client that polls
        // while it waits, as Linux does every 30 s, gets it this way).
        entry.waiters.retain(|w| !(&w.owner == owner && w.range == range && w.exclusive == exclusive));
        entry.apply(owner, exclusive, range, now_ms);
        Outcome::Granted
    }

    /// An UNLOCK. Waiters it unblocks are granted by [`wake`](Self::wake),
    /// which the caller runs next (with the kernel's say).
    pub fn unlock(&mut self, file: &[u8], owner: &Owner, range: Range) {
        if let Some(entry) = self.files.get_mut(file) {
            entry.cut(owner, &range);
        }
        self.tidy(file);
    }

    /// Queues a blocking request that the table would grant but something
    /// outside it (a local process's lock) holds up.
    pub fn queue(
        &mut self,
        limits: &Limits,
        file: &[u8],
        waiter: Waiter,
        client: IpAddr,
        now_ms: u64,
    ) -> Outcome {
        let queued = self.files.get(file).is_some_and(|f| {
            f.waiters.iter().any(|w| {
                w.owner == waiter.owner && w.range == waiter.range && w.exclusive == waiter.exclusive
            })
        });
        if !queued {
            if !self.admit(limits, &waiter.owner.caller, client, now_ms) {
                return Outcome::NoLocks;
            }
            self.files.entry(file.to_vec()).or_default().waiters.push(waiter);
        }
        Outcome::Blocked
    }

    /// A CANCEL: `owner` no longer waits for this range.
    pub fn cancel(&mut self, file: &[u8], owner: &Owner, exclusive: bool, range: Range) -> bool {
        let Some(entry) = self.files.get_mut(file) else { return false };
        let before = entry.waiters.len();
        entry.waiters.retain(|w| !(&w.owner == owner && w.range == range && w.exclusive == exclusive));
        let cancelled = entry.waiters.len() != before;
        self.tidy(file);
        cancelled
    }

    /// Grants, in arrival order, the waiters on `file` that conflict with
    /// nothing now and that `also` lets through (the kernel's say, for
    /// holders outside this table).
    pub fn wake(
        &mut self,
        file: &[u8],
        now_ms: u64,
        also: &mut dyn FnMut(&[u8], &Waiter) -> bool,
    ) -> Vec<Grant> {
        let mut grants = Vec::new();
        let Some(entry) = self.files.get_mut(file) else { return grants };
        let mut i = 0;
        // A waiter granted here may block a later one: each is checked
        // against the locks as they are by then.
        while i < entry.waiters.len() {
            let w = &entry.waiters[i];
            if entry.conflict(&w.owner, w.exclusive, &w.range).is_none() && also(file, w) {
                let w = entry.waiters.remove(i);
                entry.apply(&w.owner, w.exclusive, w.range, now_ms);
                grants.push(Grant { file: file.to_vec(), waiter: w });
            } else {
                i += 1;
            }
        }
        grants
    }

    /// Everything `caller` holds or waits for goes (FREE_ALL, its reboot,
    /// `locks --break`); returns the locks released (their files' waiters
    /// are for [`wake`](Self::wake) next).
    pub fn release_client(&mut self, caller: &str) -> Vec<(Vec<u8>, Lock)> {
        let mut released = Vec::new();
        let files: Vec<Vec<u8>> = self.files.keys().cloned().collect();
        for file in &files {
            let entry = self.files.get_mut(file).expect("listed");
            entry.locks.retain(|l| {
                let theirs = l.owner.caller == caller;
                if theirs {
                    released.push((file.clone(), l.clone()));
                }
                !theirs
            });
            entry.waiters.retain(|w| w.owner.caller != caller);
            entry.shares.retain(|s| s.caller != caller);
        }
        self.clients.remove(caller);
        for file in &files {
            self.tidy(file);
        }
        released
    }

    /// A SHARE reservation.
    pub fn share(
        &mut self,
        limits: &Limits,
        file: &[u8],
        share: Share,
        client: IpAddr,
        now_ms: u64,
    ) -> ShareOutcome {
        if self
            .files
            .get(file)
            .is_some_and(|f| f.share_conflict(&share.caller, &share.oh, share.access, share.deny))
        {
            return ShareOutcome::Denied;
        }
        if !self.admit(limits, &share.caller, client, now_ms) {
            return ShareOutcome::NoLocks;
        }
        let entry = self.files.entry(file.to_vec()).or_default();
        entry.shares.retain(|s| !(s.caller == share.caller && s.oh == share.oh));
        entry.shares.push(share);
        ShareOutcome::Granted
    }

    pub fn unshare(&mut self, file: &[u8], caller: &str, oh: &[u8]) {
        if let Some(entry) = self.files.get_mut(file) {
            entry.shares.retain(|s| !(s.caller == caller && s.oh == oh));
        }
        self.tidy(file);
    }

    /// Locks granted, over all files.
    pub fn locks(&self) -> impl Iterator<Item = (&Vec<u8>, &Lock)> {
        self.files.iter().flat_map(|(f, e)| e.locks.iter().map(move |l| (f, l)))
    }

    pub fn waiters(&self) -> impl Iterator<Item = (&Vec<u8>, &Waiter)> {
        self.files.iter().flat_map(|(f, e)| e.waiters.iter().map(move |w| (f, w)))
    }

    fn tidy(&mut self, file: &[u8]) {
        if self.files.get(file).is_some_and(FileLocks::is_empty) {
            self.files.remove(file);
        }
        let callers: std::collections::BTreeSet<String> = self
            .files
            .values()
            .flat_map(|f| {
                f.locks
                    .iter()
                    .map(|l| l.owner.caller.clone())
                    .chain(f.waiters.iter().map(|w| w.owner.caller.clone()))
                    .chain(f.shares.iter().map(|s| s.caller.clone()))
            })
            .collect();
        self.clients.retain(|c, _| callers.contains(c));
    }

    /// Two locks of different owners that conflict: never, whatever
    /// happened (the invariant the simulation and the tests check).
    pub fn conflicting_pair(&self) -> Option<(Lock, Lock)> {
        for entry in self.files.values() {
            for (i, a) in entry.locks.iter().enumerate() {
                for b in &entry.locks[i + 1..] {
                    if a.conflicts(&b.owner, b.exclusive, &b.range) {
                        return Some((a.clone(), b.clone()));
                    }
                }
            }
        }
        None
    }
}

pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        super::unhex(&text).ok_or_else(|| serde::de::Error::custom("not hex"))
    }
}

mod hex_keys {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, V: Serialize>(
        map: &BTreeMap<Vec<u8>, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let keyed: BTreeMap<String, &V> = map.iter().map(|(k, v)| (super::hex(k), v)).collect();
        keyed.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        d: D,
    ) -> Result<BTreeMap<Vec<u8>, V>, D::Error> {
        let keyed = BTreeMap::<String, V>::deserialize(d)?;
        keyed
            .into_iter()
            .map(|(k, v)| super::unhex(&k).map(|k| (k, v)).ok_or_else(|| serde::de::Error::custom("not hex")))
            .collect()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(caller: &str, svid: u32) -> Owner {
        Owner { caller: caller.into(), svid, oh: format!("{svid}@{caller}").into_bytes() }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn waiter(owner: &Owner, exclusive: bool, range: Range) -> Waiter {
        Waiter {
            owner: owner.clone(),
            exclusive,
            range,
            cookie: vec![1],
            since_ms: 0,
            client: IP,
            server: IP,
        }
    }

    fn lock(t: &mut LockTable, o: &Owner, x: bool, r: Range, block: bool) -> Outcome {
        let w = block.then(|| waiter(o, x, r));
        t.lock(&Limits::default(), b"f", o, x, r, w, IP, 0)
    }

    #[test]
    fn exclusive_excludes_shared_shares() {
        let mut t = LockTable::new();
        let (a, b) = (owner("a", 1), owner("b", 2));
        assert_eq!(lock(&mut t, &a, false, Range::of(0, 0), false), Outcome::Granted);
        assert_eq!(lock(&mut t, &b, false, Range::of(0, 10), false), Outcome::Granted);
        assert!(matches!(lock(&mut t, &b, true, Range::of(5, 1), false), Outcome::Denied(l) if l.owner == a));
        t.unlock(b"f", &a, Range::of(0, 0));
        assert!(matches!(lock(&mut t, &a, true, Range::of(5, 1), false), Outcome::Denied(l) if l.owner == b));
        assert_eq!(lock(&mut t, &a, true, Range::of(10, 5), false), Outcome::Granted, "disjoint");
        assert_eq!(t.conflicting_pair(), None);
    }

    #[test]
    fn ranges_split_and_merge() {
        let mut t = LockTable::new();
        let a = owner("a", 1);
        lock(&mut t, &a, true, Range::of(0, 100), false);
        t.unlock(b"f", &a, Range::of(40, 20));
        let ranges: Vec<_> = t.locks().map(|(_, l)| (l.range.start, l.range.len())).collect();
        assert_eq!(ranges, [(0, 40), (60, 40)]);
        // Converting a middle part to shared splits in three.
        lock(&mut t, &a, true, Range::of(40, 20), false);
        lock(&mut t, &a, false, Range::of(30, 10), false);
        let kinds: Vec<_> = t.locks().map(|(_, l)| (l.range.start, l.range.len(), l.exclusive)).collect();
        assert_eq!(kinds, [(0, 30, true), (30, 10, false), (40, 60, true)]);
        lock(&mut t, &a, true, Range::of(30, 10), false);
        let merged: Vec<_> = t.locks().map(|(_, l)| (l.range.start, l.range.len())).collect();
        assert_eq!(merged, [(0, 100)]);
        t.unlock(b"f", &a, Range::of(0, 0));
        assert!(t.files.is_empty() && t.clients.is_empty(), "{t:?}");
    }

    #[test]
    fn a_waiter_is_granted_when_the_holder_unlocks() {
        let mut t = LockTable::new();
        let (a, b, c) = (owner("a", 1), owner("b", 2), owner("c", 3));
        lock(&mut t, &a, true, Range::of(0, 0), false);
        assert_eq!(lock(&mut t, &b, true, Range::of(0, 10), true), Outcome::Blocked);
        assert_eq!(lock(&mut t, &b, true, Range::of(0, 10), true), Outcome::Blocked, "again: queued once");
        assert_eq!(lock(&mut t, &c, true, Range::of(5, 10), true), Outcome::Blocked);
        t.unlock(b"f", &a, Range::of(0, 0));
        let grants = t.wake(b"f", 0, &mut |_, _| true);
        assert_eq!(grants.len(), 1, "b first, c still conflicts with b: {grants:?}");
        assert_eq!(grants[0].waiter.owner, b);
        assert!(t.cancel(b"f", &c, true, Range::of(5, 10)));
        t.unlock(b"f", &b, Range::of(0, 0));
        assert!(t.wake(b"f", 0, &mut |_, _| true).is_empty());
        assert!(t.files.is_empty());
    }

    #[test]
    fn a_client_is_bounded_and_released_whole() {
        let mut t = LockTable::new();
        let limits = Limits { per_client: 3, clients: 2, total: 5 };
        let a = owner("a", 1);
        for i in 0..3 {
            assert_eq!(t.lock(&limits, b"f", &a, true, Range::of(i * 10, 1), None, IP, 0), Outcome::Granted);
        }
        assert_eq!(t.lock(&limits, b"f", &a, true, Range::of(100, 1), None, IP, 0), Outcome::NoLocks);
        // Changing what it holds is not more.
        assert_eq!(t.lock(&limits, b"f", &a, false, Range::of(0, 1), None, IP, 0), Outcome::Granted);
        let b = owner("b", 1);
        let w = waiter(&b, true, Range::of(0, 1));
        assert_eq!(t.lock(&limits, b"f", &b, true, Range::of(0, 1), Some(w), IP, 0), Outcome::Blocked);
        let c = owner("c", 1);
        assert_eq!(
            t.lock(&limits, b"g", &c, true, Range::of(0, 1), None, IP, 0),
            Outcome::NoLocks,
            "third client"
        );
        let released = t.release_client("a");
        let grants = t.wake(b"f", 0, &mut |_, _| true);
        assert_eq!(released.len(), 3);
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0].waiter.owner, b);
        assert_eq!(t.clients.keys().collect::<Vec<_>>(), ["b"]);
        // The vserver's whole table is bounded too, whoever asks.
        let mut t = LockTable::new();
        let limits = Limits { per_client: 10, clients: 10, total: 2 };
        for (i, who) in ["x", "y"].iter().enumerate() {
            let o = owner(who, 1);
            assert_eq!(
                t.lock(&limits, b"f", &o, true, Range::of(i as u64, 1), None, IP, 0),
                Outcome::Granted
            );
        }
        let z = owner("z", 1);
        assert_eq!(t.lock(&limits, b"f", &z, true, Range::of(9, 1), None, IP, 0), Outcome::NoLocks);
        assert_eq!(t.size(), 2);
    }

    #[test]
    fn shares_deny_what_they_say() {
        let mut t = LockTable::new();
        let l = Limits::default();
        let s = |caller: &str, access, deny| Share { caller: caller.into(), oh: vec![1], access, deny };
        assert_eq!(t.share(&l, b"f", s("a", 1, 2), IP, 0), ShareOutcome::Granted);
        assert_eq!(t.share(&l, b"f", s("b", 2, 0), IP, 0), ShareOutcome::Denied, "a denies writers");
        assert_eq!(t.share(&l, b"f", s("b", 1, 0), IP, 0), ShareOutcome::Granted);
        t.unshare(b"f", "a", &[1]);
        assert_eq!(t.share(&l, b"f", s("c", 2, 0), IP, 0), ShareOutcome::Granted);
    }

    #[test]
    fn the_table_round_trips_as_json() {
        let mut t = LockTable::new();
        let a = owner("a", 1);
        lock(&mut t, &a, true, Range::of(7, 0), false);
        lock(&mut t, &owner("b", 2), false, Range::of(0, 1), true);
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<LockTable>(&text).unwrap(), t);
    }

    /// Random operations by a few owners: no two conflicting locks, and
    /// each owner's locks are exactly what a byte map of its operations
    /// says.
    #[test]
    #[allow(clippy::needless_range_loop)] // byte maps, indexed as the ranges say
    fn random_operations_keep_the_invariants() {
        use proptest::prelude::*;
        let op = (0u32..4, 0u8..4, 0u64..16, 0u64..6, any::<bool>());
        proptest!(|(ops in proptest::collection::vec(op, 1..80))| {
            let mut t = LockTable::new();
            let limits = Limits { per_client: 10_000, clients: 100, total: 100_000 };
            // Expected: per owner, per byte 0..24 (len 0 reaches 24).
            let mut bytes = [[0u8; 24]; 4];
            for (who, kind, start, len, block) in ops {
                let o = owner(&format!("c{who}"), who);
                let r = Range::of(start, len);
                let span = start as usize..if len == 0 { 24 } else { (start + len).min(24) as usize };
                match kind {
                    0 | 1 => {
                        let x = kind == 1;
                        let w = block.then(|| waiter(&o, x, r));
                        let before = t.clone();
                        match t.lock(&limits, b"f", &o, x, r, w, IP, 0) {
                            Outcome::Granted => {
                                for b in span { bytes[who as usize][b] = if x { 2 } else { 1 }; }
                            }
                            Outcome::Denied(_) => prop_assert_eq!(&t, &before),
                            Outcome::Blocked => {}
                            Outcome::NoLocks => prop_assert!(false),
                        }
                    }
                    2 => {
                        t.unlock(b"f", &o, r);
                        let grants = t.wake(b"f", 0, &mut |_, _| true);
                        for b in span { bytes[who as usize][b] = 0; }
                        for g in grants {
                            let gw = g.waiter.owner.svid as usize;
                            let end = if g.waiter.range.end == u64::MAX { 24 } else { g.waiter.range.end.min(24) };
                            for b in g.waiter.range.start as usize..end as usize {
                                bytes[gw][b] = if g.waiter.exclusive { 2 } else { 1 };
                            }
                        }
                    }
                    _ => {
                        t.release_client(&o.caller);
                        let grants = t.wake(b"f", 0, &mut |_, _| true);
                        bytes[who as usize] = [0; 24];
                        for g in grants {
                            let gw = g.waiter.owner.svid as usize;
                            let end = if g.waiter.range.end == u64::MAX { 24 } else { g.waiter.range.end.min(24) };
                            for b in g.waiter.range.start as usize..end as usize {
                                bytes[gw][b] = if g.waiter.exclusive { 2 } else { 1 };
                            }
                        }
                    }
                }
                prop_assert_eq!(t.conflicting_pair(), None);
                for (w, expect) in bytes.iter().enumerate() {
                    let mut seen = [0u8; 24];
                    for (_, l) in t.locks().filter(|(_, l)| l.owner.svid == w as u32) {
                        let end = if l.range.end == u64::MAX { 24 } else { l.range.end.min(24) };
                        for b in l.range.start as usize..end as usize {
                            prop_assert_eq!(seen[b], 0, "overlapping locks of one owner");
                            seen[b] = if l.exclusive { 2 } else { 1 };
                        }
                    }
                    prop_assert_eq!(&seen, expect, "owner {}", w);
                }
            }
        });
    }
}
