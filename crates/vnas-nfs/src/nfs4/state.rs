//! NFSv4.0 client records (SETCLIENTID, SETCLIENTID_CONFIRM, RENEW, and
//! their leases: renewed by RENEW and by any use of their open states),
//! and the open and lock stateids of every minor version, bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vnas_locks::nfs4 as record;

/// Clients with a record at once; past it, NFS4ERR_RESOURCE.
pub const CLIENTS_MAX: usize = 4096;
/// Open states at once over all clients (and lock states, apart).
pub const OPENS_MAX: usize = 65_536;
/// Open states one client may hold (and lock states, apart), so one
/// client cannot take the whole table.
pub const OPENS_PER_CLIENT: usize = 16_384;

pub struct ClientRecord {
    pub id: Vec<u8>,
    pub verifier: [u8; 8],
    pub confirm: [u8; 8],
    pub confirmed: bool,
    pub renewed: Instant,
}

/// An open-owner's open of a file: one stateid however often it opens
/// the file again (access and deny add up), until CLOSE.
pub struct Open {
    pub clientid: u64,
    pub owner: Vec<u8>,
    pub fh: Vec<u8>,
    pub access: u32,
    pub deny: u32,
    pub seqid: u32,
}

/// The open states, indexed by stateid, by file and by client, so an
/// OPEN looks at the file's opens only, however many there are.
#[derive(Default)]
struct Opens {
    by_other: HashMap<[u8; 12], Open>,
    by_file: HashMap<Vec<u8>, Vec<[u8; 12]>>,
    per_client: HashMap<u64, usize>,
}

impl Opens {
    fn of_file(&self, fh: &[u8]) -> impl Iterator<Item = (&[u8; 12], &Open)> {
        self.by_file.get(fh).into_iter().flatten().filter_map(|o| self.by_other.get_key_value(o))
    }

    fn insert(&mut self, other: [u8; 12], open: Open) {
        self.by_file.entry(open.fh.clone()).or_default().push(other);
        *self.per_client.entry(open.clientid).or_default() += 1;
        self.by_other.insert(other, open);
    }

    fn remove(&mut self, other: &[u8; 12]) -> Option<Open> {
        let open = self.by_other.remove(other)?;
        if let Some(list) = self.by_file.get_mut(&open.fh) {
            list.retain(|o| o != other);
            if list.is_empty() {
                self.by_file.remove(&open.fh);
            }
        }
        if let Some(n) = self.per_client.get_mut(&open.clientid) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&open.clientid);
            }
        }
        Some(open)
    }
}

/// What OPEN could not do.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Another owner's open denies this access, or has the file open in a
    /// way this one denies (NFS4ERR_SHARE_DENIED).
    ShareDenied,
    /// The table is full (NFS4ERR_RESOURCE).
    Full,
}

/// A lock owner's state on one file: its lock stateid.
pub struct LockState {
    pub clientid: u64,
    pub owner: Vec<u8>,
    pub fh: Vec<u8>,
    pub seqid: u32,
}

/// Lock states, indexed by stateid and by (client, owner, file).
#[derive(Default)]
struct LockStates {
    by_other: HashMap<[u8; 12], LockState>,
    by_key: HashMap<(u64, Vec<u8>, Vec<u8>), [u8; 12]>,
    per_client: HashMap<u64, usize>,
}

impl LockStates {
    fn retain(&mut self, keep: impl Fn(&LockState) -> bool) {
        let gone: Vec<[u8; 12]> = self.by_other.iter().filter(|(_, l)| !keep(l)).map(|(k, _)| *k).collect();
        for other in gone {
            if let Some(l) = self.by_other.remove(&other) {
                self.by_key.remove(&(l.clientid, l.owner, l.fh));
                if let Some(n) = self.per_client.get_mut(&l.clientid) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_client.remove(&l.clientid);
                    }
                }
            }
        }
    }
}

/// An NFSv4.0 open-owner's last sequence id, and the result of the call
/// that used it (its status, body and the current filehandle it left), so
/// a retransmission gets that result instead of running again.
#[derive(Clone)]
pub struct OwnerSeq {
    pub seqid: u32,
    pub reply: (u32, Vec<u8>, Option<Vec<u8>>),
    /// The stateid the call named or made (a CLOSE's retransmission
    /// finds its owner by it after the open is gone).
    pub other: Option<[u8; 12]>,
}

/// What a sequence id means for an NFSv4.0 open-owner's call.
#[derive(Debug, PartialEq, Eq)]
pub enum Seq {
    /// The next one (or the owner's first call): run it.
    New,
    /// The last one again: its result.
    Replay(u32, Vec<u8>, Option<Vec<u8>>),
    /// Anything else: NFS4ERR_BAD_SEQID.
    Bad,
}

/// Open-owners whose sequence ids are kept.
pub const OWNERS_MAX: usize = 65_536;

#[derive(Default)]
pub struct V4State {
    owners: Mutex<HashMap<(u64, Vec<u8>), OwnerSeq>>,
    locks: Mutex<LockStates>,
    clients: Mutex<HashMap<u64, ClientRecord>>,
    opens: Mutex<Opens>,
    next: std::sync::atomic::AtomicU64,
    /// Counts changes a journal record carries.
    changes: std::sync::atomic::AtomicU64,
    /// Makes client ids and state ids of this server instance unlike any
    /// other's.
    boot: u32,
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    let _ = getrandom::fill(&mut bytes);
    bytes
}

impl V4State {
    pub fn new() -> V4State {
        V4State { boot: u32::from_ne_bytes(random()), ..V4State::default() }
    }

    /// SETCLIENTID: a new client id and its confirmation verifier; an
    /// earlier record of the same client (its id string) is replaced.
    pub fn set_client(&self, id: &[u8], verifier: [u8; 8]) -> Option<(u64, [u8; 8])> {
        let mut clients = self.clients.lock().expect("not poisoned");
        clients.retain(|_, c| c.id != id);
        if clients.len() >= CLIENTS_MAX {
            return None;
        }
        let clientid = u64::from(self.boot) << 32
            | self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xffff_ffff;
        let confirm = random();
        clients.insert(
            clientid,
            ClientRecord { id: id.to_vec(), verifier, confirm, confirmed: false, renewed: Instant::now() },
        );
        self.changed();
        Some((clientid, confirm))
    }

    /// SETCLIENTID_CONFIRM; false: no such client or a wrong verifier.
    pub fn confirm(&self, clientid: u64, confirm: [u8; 8]) -> bool {
        let mut clients = self.clients.lock().expect("not poisoned");
        match clients.get_mut(&clientid) {
            Some(c) if c.confirm == confirm => {
                c.confirmed = true;
                self.changed();
                true
            }
            _ => false,
        }
    }

    /// RENEW: whether the client is known; its lease starts again.
    pub fn known(&self, clientid: u64) -> bool {
        self.renew(clientid)
    }

    /// An NFSv4.0 client's lease starts again (RENEW, OPEN, any use of its
    /// states); false if it has no record (a 4.1 client has none here).
    pub fn renew(&self, clientid: u64) -> bool {
        match self.clients.lock().expect("not poisoned").get_mut(&clientid) {
            Some(c) => {
                c.renewed = Instant::now();
                true
            }
            None => false,
        }
    }

    /// NFSv4.0 clients silent longer than `after`: their records go, with
    /// their open and lock states; returned so their locks go too.
    pub fn lapsed(&self, now: Instant, after: Duration) -> Vec<u64> {
        let gone: Vec<u64> = {
            let mut clients = self.clients.lock().expect("not poisoned");
            let gone: Vec<u64> = clients
                .iter()
                .filter(|(_, c)| now.saturating_duration_since(c.renewed) > after)
                .map(|(id, _)| *id)
                .collect();
            clients.retain(|id, _| !gone.contains(id));
            gone
        };
        for id in &gone {
            self.release_client(*id);
        }
        if !gone.is_empty() {
            self.changed();
        }
        gone
    }

    /// OPEN: the open state of `owner` on `fh`, made or added to; its
    /// stateid's seqid and `other`. Share reservations are checked against
    /// every other owner's opens of the file.
    pub fn open(
        &self,
        clientid: u64,
        owner: &[u8],
        fh: &[u8],
        access: u32,
        deny: u32,
    ) -> Result<(u32, [u8; 12]), Refused> {
        let mut opens = self.opens.lock().expect("not poisoned");
        let mine = |o: &Open| o.clientid == clientid && o.owner == owner;
        let conflict = opens
            .of_file(fh)
            .any(|(_, o)| !mine(o) && record::share_conflict(o.access, o.deny, access, deny));
        if conflict {
            return Err(Refused::ShareDenied);
        }
        let held = opens.of_file(fh).find(|(_, o)| mine(o)).map(|(other, _)| *other);
        if let Some(other) = held {
            let o = opens.by_other.get_mut(&other).expect("indexed");
            o.access |= access;
            o.deny |= deny;
            o.seqid = o.seqid.wrapping_add(1).max(1);
            let seqid = o.seqid;
            self.changed();
            return Ok((seqid, other));
        }
        let at_bound = opens.per_client.get(&clientid).is_some_and(|n| *n >= OPENS_PER_CLIENT);
        if opens.by_other.len() >= OPENS_MAX || at_bound {
            return Err(Refused::Full);
        }
        let mut other = [0u8; 12];
        other[..4].copy_from_slice(&self.boot.to_be_bytes());
        other[4..].copy_from_slice(&random::<8>());
        other[4] &= 0x7f; // apart from lock stateids
        opens
            .insert(other, Open { clientid, owner: owner.to_vec(), fh: fh.to_vec(), access, deny, seqid: 1 });
        self.changed();
        Ok((1, other))
    }

    /// The open-owner of a stateid: its open's, or, once the open is gone,
    /// the owner whose last call named it.
    pub fn owner_of(&self, other: &[u8; 12]) -> Option<(u64, Vec<u8>)> {
        if let Some(o) = self.opens.lock().expect("not poisoned").by_other.get(other) {
            return Some((o.clientid, o.owner.clone()));
        }
        let owners = self.owners.lock().expect("not poisoned");
        owners.iter().find(|(_, o)| o.other.as_ref() == Some(other)).map(|(k, _)| k.clone())
    }

    /// What `seqid` means for the open-owner `key`.
    pub fn seq_check(&self, key: &(u64, Vec<u8>), seqid: u32) -> Seq {
        match self.owners.lock().expect("not poisoned").get(key) {
            None => Seq::New,
            Some(o) if o.seqid == seqid => Seq::Replay(o.reply.0, o.reply.1.clone(), o.reply.2.clone()),
            Some(o) if o.seqid.wrapping_add(1) == seqid => Seq::New,
            Some(_) => Seq::Bad,
        }
    }

    /// A call of the open-owner `key` ran with `seqid`: kept for a
    /// retransmission, unless its status leaves the sequence id unused
    /// (RFC 7530 section 9.1.7).
    pub fn seq_done(
        &self,
        key: (u64, Vec<u8>),
        seqid: u32,
        reply: (u32, Vec<u8>, Option<Vec<u8>>),
        other: Option<[u8; 12]>,
    ) {
        // STALE_CLIENTID, STALE_STATEID, BAD_STATEID, BAD_SEQID, BADXDR,
        // RESOURCE, NOFILEHANDLE.
        if matches!(reply.0, 10022 | 10023 | 10025 | 10026 | 10036 | 10018 | 10020) {
            return;
        }
        let mut owners = self.owners.lock().expect("not poisoned");
        if owners.len() >= OWNERS_MAX && !owners.contains_key(&key) {
            // Full: the oldest owners are not tracked; forget one at random.
            if let Some(k) = owners.keys().next().cloned() {
                owners.remove(&k);
            }
        }
        owners.insert(key, OwnerSeq { seqid, reply, other });
        self.changed();
    }

    /// Whether any NFSv4 open of `fh` denies `access` or has the file open
    /// in a way `deny` denies (an NLM SHARE asks).
    pub fn share_conflict(&self, fh: &[u8], access: u32, deny: u32) -> bool {
        let opens = self.opens.lock().expect("not poisoned");
        let conflict = |o: &Open| record::share_conflict(o.access, o.deny, access, deny);
        opens
            .by_file
            .get(fh)
            .is_some_and(|list| list.iter().filter_map(|k| opens.by_other.get(k)).any(conflict))
    }

    /// The access an open state grants to `fh`: `None` if it is not an
    /// open of this file. The special stateids (all zeros, all ones) read
    /// and write without an open.
    pub fn access(&self, other: &[u8; 12], fh: &[u8]) -> Option<u32> {
        if other.iter().all(|b| *b == 0) || other.iter().all(|b| *b == 0xff) {
            return Some(3);
        }
        let opens = self.opens.lock().expect("not poisoned");
        if let Some(open) = opens.by_other.get(other) {
            let (clientid, access) = (open.clientid, (open.fh == fh).then_some(open.access));
            drop(opens);
            self.renew(clientid);
            return access;
        }
        // A lock stateid reads and writes as the client's opens of the file.
        let (clientid, file) = {
            let locks = self.locks.lock().expect("not poisoned");
            let l = locks.by_other.get(other)?;
            (l.clientid, l.fh.clone())
        };
        if file != fh {
            return None;
        }
        opens.of_file(fh).filter(|(_, o)| o.clientid == clientid).map(|(_, o)| o.access).reduce(|a, b| a | b)
    }

    /// Whether a stateid names an open state of this server.
    pub fn known_state(&self, other: &[u8; 12]) -> bool {
        self.opens.lock().expect("not poisoned").by_other.contains_key(other)
            || self.locks.lock().expect("not poisoned").by_other.contains_key(other)
    }

    /// A client's open and lock states go (its client ID was destroyed or
    /// lapsed).
    pub fn release_client(&self, clientid: u64) {
        self.owners.lock().expect("not poisoned").retain(|(id, _), _| *id != clientid);
        let mut opens = self.opens.lock().expect("not poisoned");
        let theirs: Vec<[u8; 12]> =
            opens.by_other.iter().filter(|(_, o)| o.clientid == clientid).map(|(k, _)| *k).collect();
        for other in theirs {
            opens.remove(&other);
        }
        drop(opens);
        self.locks.lock().expect("not poisoned").retain(|l| l.clientid != clientid);
        self.changed();
    }

    /// The lock stateid of an owner on a file, made on its first lock; its
    /// seqid goes up with every lock.
    pub fn lock_state(&self, clientid: u64, owner: &[u8], fh: &[u8]) -> Option<(u32, [u8; 12])> {
        let mut locks = self.locks.lock().expect("not poisoned");
        let key = (clientid, owner.to_vec(), fh.to_vec());
        if let Some(other) = locks.by_key.get(&key).copied() {
            let l = locks.by_other.get_mut(&other).expect("indexed");
            l.seqid = l.seqid.wrapping_add(1).max(1);
            let seqid = l.seqid;
            self.changed();
            return Some((seqid, other));
        }
        let at_bound = locks.per_client.get(&clientid).is_some_and(|n| *n >= OPENS_PER_CLIENT);
        if locks.by_other.len() >= OPENS_MAX || at_bound {
            return None;
        }
        let mut other = [0u8; 12];
        other[..4].copy_from_slice(&self.boot.to_be_bytes());
        other[4..].copy_from_slice(&random::<8>());
        other[4] |= 0x80; // apart from open stateids
        locks.by_key.insert(key, other);
        *locks.per_client.entry(clientid).or_default() += 1;
        locks
            .by_other
            .insert(other, LockState { clientid, owner: owner.to_vec(), fh: fh.to_vec(), seqid: 1 });
        self.changed();
        Some((1, other))
    }

    /// The owner and file of a lock stateid.
    pub fn lock_owner(&self, other: &[u8; 12]) -> Option<(u64, Vec<u8>, Vec<u8>)> {
        let locks = self.locks.lock().expect("not poisoned");
        locks.by_other.get(other).map(|l| (l.clientid, l.owner.clone(), l.fh.clone()))
    }

    pub fn bump_lock(&self, other: &[u8; 12]) -> u32 {
        let mut locks = self.locks.lock().expect("not poisoned");
        let seqid = locks.by_other.get_mut(other).map_or(0, |l| {
            l.seqid = l.seqid.wrapping_add(1).max(1);
            l.seqid
        });
        self.changed();
        seqid
    }

    pub fn forget_lock_owner(&self, clientid: u64, owner: &[u8]) {
        self.locks.lock().expect("not poisoned").retain(|l| l.clientid != clientid || l.owner != owner);
        self.changed();
    }

    /// OPEN_DOWNGRADE: the open keeps only `access` (a subset of its own).
    pub fn downgrade(&self, other: &[u8; 12], access: u32, deny: u32) -> Option<u32> {
        let mut opens = self.opens.lock().expect("not poisoned");
        match opens.by_other.get_mut(other) {
            Some(o) if o.access & access == access && o.deny & deny == deny => {
                o.access = access;
                o.deny = deny;
                o.seqid = o.seqid.wrapping_add(1).max(1);
                self.changed();
                Some(o.seqid)
            }
            _ => None,
        }
    }

    /// CLOSE: the open state goes; its last seqid.
    pub fn close(&self, other: &[u8; 12]) -> Option<u32> {
        let closed = self.opens.lock().expect("not poisoned").remove(other).map(|o| o.seqid.wrapping_add(1));
        self.changed();
        closed
    }

    /// The name an NFSv4.0 client ID was made for.
    pub fn name_of(&self, clientid: u64) -> Option<Vec<u8>> {
        self.clients.lock().expect("not poisoned").get(&clientid).map(|c| c.id.clone())
    }

    /// NFSv4.0 clients, open states and lock states held.
    pub fn counts(&self) -> (usize, usize, usize) {
        let clients = self.clients.lock().expect("not poisoned").len();
        let opens = self.opens.lock().expect("not poisoned").by_other.len();
        (clients, opens, self.locks.lock().expect("not poisoned").by_other.len())
    }

    fn changed(&self) {
        self.changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many recordable changes so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// NFSv4.0 clients, open and lock states and open-owner sequence ids
    /// as data, into `to`.
    pub fn export(&self, to: &mut record::Record) {
        let hex = |b: &[u8]| record::Hex(b.to_vec());
        // In the order calls take them: owners, then opens, then locks.
        to.owners40 = self
            .owners
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|((clientid, owner), o)| record::OwnerSeq {
                clientid: *clientid,
                owner: owner.clone(),
                seqid: o.seqid,
                status: o.reply.0,
                body: o.reply.1.clone(),
                fh: o.reply.2.as_deref().map(hex),
                other: o.other.as_ref().map(|b| hex(b)),
            })
            .collect();
        to.clients40 = self
            .clients
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(id, c)| record::Client40 {
                id: *id,
                name: c.id.clone(),
                verifier: c.verifier.to_vec(),
                confirm: c.confirm.to_vec(),
                confirmed: c.confirmed,
            })
            .collect();
        to.opens = self
            .opens
            .lock()
            .expect("not poisoned")
            .by_other
            .iter()
            .map(|(other, o)| record::State {
                other: other.to_vec(),
                clientid: o.clientid,
                owner: o.owner.clone(),
                fh: o.fh.clone(),
                seqid: o.seqid,
                access: o.access,
                deny: o.deny,
            })
            .collect();
        to.locks = self
            .locks
            .lock()
            .expect("not poisoned")
            .by_other
            .iter()
            .map(|(other, l)| record::State {
                other: other.to_vec(),
                clientid: l.clientid,
                owner: l.owner.clone(),
                fh: l.fh.clone(),
                seqid: l.seqid,
                access: 0,
                deny: 0,
            })
            .collect();
    }

    /// Takes a previous owner's NFSv4.0 clients and states (replacing
    /// what is here, before any call is served); leases start at `now`.
    /// Entries that do not fit this server's bounds are left out, counted.
    pub fn import(&self, from: &record::Record, now: Instant) -> usize {
        let mut skipped = 0;
        let array = |b: &[u8]| <[u8; 12]>::try_from(b).ok();
        {
            let mut clients = self.clients.lock().expect("not poisoned");
            clients.clear();
            for c in from.clients40.iter().take(CLIENTS_MAX) {
                let (Ok(verifier), Ok(confirm)) =
                    (c.verifier.as_slice().try_into(), c.confirm.as_slice().try_into())
                else {
                    skipped += 1;
                    continue;
                };
                clients.insert(
                    c.id,
                    ClientRecord {
                        id: c.name.clone(),
                        verifier,
                        confirm,
                        confirmed: c.confirmed,
                        renewed: now,
                    },
                );
            }
        }
        {
            let mut opens = self.opens.lock().expect("not poisoned");
            *opens = Opens::default();
            for o in &from.opens {
                let at_bound = opens.per_client.get(&o.clientid).is_some_and(|n| *n >= OPENS_PER_CLIENT);
                match array(&o.other) {
                    Some(other) if opens.by_other.len() < OPENS_MAX && !at_bound => opens.insert(
                        other,
                        Open {
                            clientid: o.clientid,
                            owner: o.owner.clone(),
                            fh: o.fh.clone(),
                            access: o.access,
                            deny: o.deny,
                            seqid: o.seqid,
                        },
                    ),
                    _ => skipped += 1,
                }
            }
        }
        {
            let mut locks = self.locks.lock().expect("not poisoned");
            *locks = LockStates::default();
            for l in &from.locks {
                let at_bound = locks.per_client.get(&l.clientid).is_some_and(|n| *n >= OPENS_PER_CLIENT);
                match array(&l.other) {
                    Some(other) if locks.by_other.len() < OPENS_MAX && !at_bound => {
                        locks.by_key.insert((l.clientid, l.owner.clone(), l.fh.clone()), other);
                        *locks.per_client.entry(l.clientid).or_default() += 1;
                        locks.by_other.insert(
                            other,
                            LockState {
                                clientid: l.clientid,
                                owner: l.owner.clone(),
                                fh: l.fh.clone(),
                                seqid: l.seqid,
                            },
                        );
                    }
                    _ => skipped += 1,
                }
            }
        }
        let mut owners = self.owners.lock().expect("not poisoned");
        owners.clear();
        for o in from.owners40.iter().take(OWNERS_MAX) {
            let other = match &o.other {
                Some(b) => match array(&b.0) {
                    Some(a) => Some(a),
                    None => {
                        skipped += 1;
                        continue;
                    }
                },
                None => None,
            };
            owners.insert(
                (o.clientid, o.owner.clone()),
                OwnerSeq {
                    seqid: o.seqid,
                    reply: (o.status, o.body.clone(), o.fh.clone().map(|f| f.0)),
                    other,
                },
            );
        }
        skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stateid_per_owner_and_file_and_share_reservations_between_owners() {
        let v4 = V4State::new();
        let (seq, a) = v4.open(1, b"alice", b"f", 1, 0).unwrap();
        // The same owner again: the same stateid, a later seqid, more access.
        let (seq2, a2) = v4.open(1, b"alice", b"f", 2, 2).unwrap();
        assert_eq!((a2, seq2), (a, seq + 1));
        assert_eq!(v4.access(&a, b"f"), Some(3));
        // Alice denies writing: Bob may read, not write.
        assert_eq!(v4.open(2, b"bob", b"f", 2, 0), Err(Refused::ShareDenied));
        let (_, b) = v4.open(2, b"bob", b"f", 1, 0).unwrap();
        // Bob reads: nobody may now deny reading.
        assert_eq!(v4.open(3, b"carol", b"f", 1, 1), Err(Refused::ShareDenied));
        assert_eq!(v4.downgrade(&a, 1, 0), Some(seq + 2));
        assert!(v4.open(2, b"bob", b"f", 2, 0).is_ok(), "no longer denied");
        assert!(v4.close(&b).is_some());
        assert_eq!(v4.open(3, b"carol", b"f", 1, 1), Err(Refused::ShareDenied), "alice still reads");
        v4.close(&a);
        assert!(v4.open(3, b"carol", b"f", 1, 1).is_ok());
        assert!(v4.open(3, b"carol", b"g", 1, 1).is_ok(), "another file");
    }

    #[test]
    fn states_recorded_are_the_states_restored() {
        let v4 = V4State::new();
        let (id, confirm) = v4.set_client(b"c40", [1; 8]).unwrap();
        assert!(v4.confirm(id, confirm));
        let (_, open) = v4.open(id, b"o", b"f", 3, 2).unwrap();
        let (_, lock) = v4.lock_state(id, b"l", b"f").unwrap();
        v4.seq_done((id, b"o".to_vec()), 4, (0, b"opened".to_vec(), Some(b"f".to_vec())), Some(open));
        let mut record = vnas_locks::nfs4::Record::default();
        v4.export(&mut record);
        let next = V4State::new();
        assert_eq!(next.import(&record, Instant::now()), 0);
        assert!(next.known(id) && next.known_state(&open) && next.known_state(&lock));
        assert_eq!(next.access(&open, b"f"), Some(3));
        assert_eq!(next.open(9, b"x", b"f", 2, 0), Err(Refused::ShareDenied), "its deny moved too");
        assert_eq!(next.lock_owner(&lock), Some((id, b"l".to_vec(), b"f".to_vec())));
        assert_eq!(
            next.lock_state(id, b"l", b"f").map(|(_, other)| other),
            Some(lock),
            "the same lock stateid"
        );
        let key = (id, b"o".to_vec());
        assert_eq!(next.seq_check(&key, 4), Seq::Replay(0, b"opened".to_vec(), Some(b"f".to_vec())));
        let mut again = vnas_locks::nfs4::Record::default();
        next.export(&mut again);
        assert_eq!((again.clients40, again.opens), (record.clients40, record.opens));
    }

    #[test]
    fn one_client_cannot_take_the_whole_table() {
        let v4 = V4State::new();
        for i in 0..OPENS_PER_CLIENT {
            v4.open(1, b"o", format!("f{i}").as_bytes(), 1, 0).unwrap();
        }
        assert_eq!(v4.open(1, b"o", b"one-more", 1, 0), Err(Refused::Full));
        assert!(v4.open(2, b"o", b"one-more", 1, 0).is_ok(), "another client still opens");
        assert!(v4.open(1, b"o", b"f7", 2, 0).is_ok(), "an open it holds still upgrades");
    }

    #[test]
    fn open_owner_sequence_ids() {
        let v4 = V4State::new();
        let key = (1u64, b"o".to_vec());
        assert_eq!(v4.seq_check(&key, 5), Seq::New, "an owner's first call takes any seqid");
        v4.seq_done(key.clone(), 5, (0, b"opened".to_vec(), Some(b"fh".to_vec())), Some([1; 12]));
        assert_eq!(v4.seq_check(&key, 5), Seq::Replay(0, b"opened".to_vec(), Some(b"fh".to_vec())));
        assert_eq!(v4.seq_check(&key, 6), Seq::New);
        assert_eq!(v4.seq_check(&key, 7), Seq::Bad);
        assert_eq!(v4.owner_of(&[1; 12]), Some(key.clone()), "found by its last stateid");
        // A status that leaves the seqid unused.
        v4.seq_done(key.clone(), 6, (10025, Vec::new(), None), None);
        assert_eq!(v4.seq_check(&key, 6), Seq::New);
        v4.release_client(1);
        assert_eq!(v4.seq_check(&key, 99), Seq::New);
    }

    #[test]
    fn a_silent_v40_client_loses_its_record_and_states() {
        let v4 = V4State::new();
        let (id, confirm) = v4.set_client(b"c", [1; 8]).unwrap();
        assert!(v4.confirm(id, confirm));
        let (_, open) = v4.open(id, b"o", b"f", 1, 0).unwrap();
        let later = Instant::now() + Duration::from_secs(10);
        assert!(v4.lapsed(Instant::now(), Duration::from_secs(5)).is_empty());
        assert_eq!(v4.lapsed(later, Duration::from_secs(5)), vec![id]);
        assert!(!v4.known_state(&open) && !v4.known(id));
    }
}
