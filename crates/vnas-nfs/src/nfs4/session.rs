//! NFSv4.1 client IDs and sessions (RFC 8881 sections 2.4, 2.10): the
//! EXCHANGE_ID and CREATE_SESSION life cycle, and each session's
//! fore-channel slot table whose cached replies give exactly-once
//! semantics to retried calls. Bounded: clients, sessions per client,
//! slots per session, the bytes a slot caches.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;
use vnas_locks::nfs4 as record;

/// Client IDs at once (4.0 and 4.1 together count apart).
pub const CLIENTS_MAX: usize = 4096;
/// Sessions one client may hold.
pub const SESSIONS_PER_CLIENT: usize = 8;
/// Fore-channel slots a session gets at most.
pub const SLOTS_MAX: u32 = 64;
/// Operations a COMPOUND may carry in a session.
pub const SESSION_OPS_MAX: u32 = 64;
/// The largest reply a slot keeps for a retry.
pub const CACHED_REPLY_MAX: u32 = 64 * 1024;
/// The bytes every slot of every session keeps at most, together (the
/// bounds above would allow 128 GiB); past it a reply is not kept, and a
/// retry of it is told so (NFS4ERR_RETRY_UNCACHED_REP), never run twice.
pub const CACHED_TOTAL_MAX: usize = 64 << 20;

pub type SessionId = [u8; 16];

/// What a CREATE_SESSION's channel attributes settle on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    pub max_request: u32,
    pub max_response: u32,
    pub max_response_cached: u32,
    pub max_operations: u32,
    pub max_requests: u32,
}

struct Slot {
    seqid: u32,
    /// The whole COMPOUND reply of the last call in this slot, if kept.
    reply: Option<Vec<u8>>,
    busy: bool,
}

struct Session {
    clientid: u64,
    fore: Channel,
    slots: Vec<Slot>,
    /// The back channel the client asked for, if any.
    callback: Option<record::Callback>,
    /// The connection (this server's number for it) callbacks go on:
    /// bound at CREATE_SESSION or BIND_CONN_TO_SESSION, or by the next
    /// SEQUENCE after it closed (a client reconnects after a move).
    back_conn: Option<u64>,
}

struct Client {
    owner: Vec<u8>,
    verifier: [u8; 8],
    confirmed: bool,
    /// The sequence id the next CREATE_SESSION must carry, and the reply
    /// to the last one (a retried CREATE_SESSION gets it again).
    create_seq: u32,
    last_create: Option<(u32, Vec<u8>)>,
    renewed: Instant,
}

/// What SEQUENCE decided for a call.
#[derive(Debug, PartialEq, Eq)]
pub enum Sequenced {
    /// A new call: run it, then `finish` the slot with its reply.
    New { highest_slot: u32 },
    /// A retry of the slot's last call: this is the reply it got.
    Replay(Vec<u8>),
    /// An NFS4ERR_* for the SEQUENCE operation.
    Refused(u32),
}

pub struct Sessions {
    inner: Mutex<Inner>,
    /// Counts changes a journal record carries (client IDs confirmed or
    /// gone, sessions made or destroyed; not slots).
    changes: std::sync::atomic::AtomicU64,
    lease: Duration,
    /// Part of every client ID and session ID: this instance's, so IDs of
    /// an earlier one are stale, not mistaken.
    boot: u32,
}

#[derive(Default)]
struct Inner {
    clients: HashMap<u64, Client>,
    sessions: HashMap<SessionId, Session>,
    next: u32,
    /// Client IDs dropped whose opens and locks are still to be released.
    dropped: Vec<u64>,
    /// Bytes of replies the slots keep, over all sessions.
    cached: usize,
}

impl Inner {
    fn remove_sessions(&mut self, gone: impl Fn(&SessionId, &Session) -> bool) {
        let ids: Vec<SessionId> =
            self.sessions.iter().filter(|(id, s)| gone(id, s)).map(|(id, _)| *id).collect();
        for id in ids {
            if let Some(session) = self.sessions.remove(&id) {
                let kept: usize = session.slots.iter().filter_map(|s| s.reply.as_ref()).map(Vec::len).sum();
                self.cached -= kept;
            }
        }
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    let _ = getrandom::fill(&mut bytes);
    bytes
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(Duration::from_secs(u64::from(LEASE_SECONDS)))
    }
}

impl Sessions {
    pub fn new(lease: Duration) -> Sessions {
        Sessions {
            inner: Mutex::default(),
            changes: Default::default(),
            lease,
            boot: u32::from_ne_bytes(random()),
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// EXCHANGE_ID: the client ID for an owner, the sequence id its next
    /// CREATE_SESSION carries, and whether it is confirmed. A known owner
    /// with the same verifier keeps its ID; a new verifier (the client
    /// rebooted) gets a new, unconfirmed one, and the old one's state goes
    /// when that is confirmed.
    pub fn exchange_id(
        &self,
        owner: &[u8],
        verifier: [u8; 8],
        now: Instant,
    ) -> Result<(u64, u32, bool), u32> {
        let mut inner = self.lock();
        if let Some((id, c)) =
            inner.clients.iter_mut().find(|(_, c)| c.owner == owner && c.verifier == verifier)
        {
            c.renewed = now;
            return Ok((*id, c.create_seq, c.confirmed));
        }
        // An unconfirmed record of the same owner is replaced.
        inner.clients.retain(|_, c| c.owner != owner || c.confirmed);
        if inner.clients.len() >= CLIENTS_MAX {
            return Err(NFS4ERR_RESOURCE);
        }
        inner.next = inner.next.wrapping_add(1);
        let id = u64::from(self.boot) << 32 | u64::from(inner.next);
        inner.clients.insert(
            id,
            Client {
                owner: owner.to_vec(),
                verifier,
                confirmed: false,
                create_seq: 1,
                last_create: None,
                renewed: now,
            },
        );
        Ok((id, 1, false))
    }

    /// CREATE_SESSION: a new session with the channel settled from what
    /// the client asked, or the cached reply of a retried one (`Err(Ok)`),
    /// or an error status (`Err(Err)`). `reply` builds the reply body from
    /// the session id and channel, so a retry can be answered with it.
    pub fn create_session(
        &self,
        clientid: u64,
        seq: u32,
        asked: Channel,
        callback: Option<(record::Callback, u64)>,
        now: Instant,
        reply: impl FnOnce(&SessionId, &Channel) -> Vec<u8>,
    ) -> Result<Vec<u8>, u32> {
        let mut inner = self.lock();
        let Some(client) = inner.clients.get_mut(&clientid) else { return Err(NFS4ERR_STALE_CLIENTID) };
        if let Some((last, body)) = &client.last_create {
            if *last == seq {
                return Ok(body.clone());
            }
        }
        if seq != client.create_seq {
            return Err(NFS4ERR_SEQ_MISORDERED);
        }
        let owner = client.owner.clone();
        let held = inner.sessions.values().filter(|s| s.clientid == clientid).count();
        if held >= SESSIONS_PER_CLIENT {
            return Err(NFS4ERR_NOSPC);
        }
        let fore = Channel {
            max_request: asked.max_request.min(crate::limits::RECORD_MAX as u32),
            max_response: asked.max_response.min(crate::limits::RECORD_MAX as u32),
            max_response_cached: asked.max_response_cached.min(CACHED_REPLY_MAX),
            max_operations: asked.max_operations.clamp(2, SESSION_OPS_MAX),
            max_requests: asked.max_requests.clamp(1, SLOTS_MAX),
        };
        let mut id: SessionId = random();
        id[..4].copy_from_slice(&self.boot.to_be_bytes());
        let body = reply(&id, &fore);
        let slots = (0..fore.max_requests).map(|_| Slot { seqid: 0, reply: None, busy: false }).collect();
        let (callback, back_conn) = callback.map_or((None, None), |(cb, conn)| (Some(cb), Some(conn)));
        inner.sessions.insert(id, Session { clientid, fore, slots, callback, back_conn });
        // Confirming a new client ID ends an older one of the same owner.
        let client = inner.clients.get_mut(&clientid).expect("looked up above");
        let was_confirmed = client.confirmed;
        client.confirmed = true;
        client.create_seq = seq.wrapping_add(1);
        client.last_create = Some((seq, body.clone()));
        client.renewed = now;
        if !was_confirmed {
            let old: Vec<u64> = inner
                .clients
                .iter()
                .filter(|(id, c)| **id != clientid && c.owner == owner)
                .map(|(id, _)| *id)
                .collect();
            for id in old {
                Self::drop_client(&mut inner, id);
            }
        }
        self.changed();
        Ok(body)
    }

    fn drop_client(inner: &mut Inner, clientid: u64) {
        inner.clients.remove(&clientid);
        inner.dropped.push(clientid);
        inner.remove_sessions(|_, s| s.clientid == clientid);
    }

    /// Clients whose lease ran out go, with their sessions; returns them
    /// and those replaced by a rebooted client's new ID, whose opens and
    /// locks the caller releases.
    pub fn lapsed(&self, now: Instant) -> Vec<u64> {
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        let dropped = std::mem::take(&mut inner.dropped);
        if !dropped.is_empty() {
            self.changed();
        }
        dropped
    }

    fn expire(&self, inner: &mut Inner, now: Instant) {
        let lapsed: Vec<u64> = inner
            .clients
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.renewed) > self.lease * 3 / 2)
            .map(|(id, _)| *id)
            .collect();
        for id in lapsed {
            Self::drop_client(inner, id);
        }
    }

    /// SEQUENCE: checks the slot and renews the client's lease.
    pub fn sequence(
        &self,
        id: &SessionId,
        seqid: u32,
        slot: u32,
        ops: u32,
        conn: u64,
        now: Instant,
    ) -> (Sequenced, u64) {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(id) else {
            return (Sequenced::Refused(NFS4ERR_BADSESSION), 0);
        };
        let clientid = session.clientid;
        // Its back channel's connection closed (a move, a reconnect): the
        // one the client now calls on carries callbacks too, as the
        // client's transport expects (no BIND_CONN_TO_SESSION round trip).
        if session.callback.is_some() && session.back_conn.is_none() {
            session.back_conn = Some(conn);
        }
        if ops > session.fore.max_operations {
            return (Sequenced::Refused(NFS4ERR_TOO_MANY_OPS), clientid);
        }
        let highest_slot = session.fore.max_requests - 1;
        let Some(s) = session.slots.get_mut(slot as usize) else {
            return (Sequenced::Refused(NFS4ERR_BADSLOT), clientid);
        };
        let decided = match record::slot_call(s.seqid, s.busy, s.reply.is_some(), seqid) {
            record::SlotCall::Replay => Sequenced::Replay(s.reply.clone().expect("kept")),
            record::SlotCall::Uncached => Sequenced::Refused(NFS4ERR_RETRY_UNCACHED_REP),
            record::SlotCall::Busy => Sequenced::Refused(NFS4ERR_DELAY),
            record::SlotCall::Misordered => Sequenced::Refused(NFS4ERR_SEQ_MISORDERED),
            record::SlotCall::New => {
                s.seqid = seqid;
                s.busy = true;
                inner.cached -= s.reply.take().map_or(0, |r| r.len());
                Sequenced::New { highest_slot }
            }
        };
        if let Some(c) = inner.clients.get_mut(&clientid) {
            c.renewed = now;
        }
        (decided, clientid)
    }

    /// The reply of a call that SEQUENCE let through: kept for a retry if
    /// it fits what the session caches (`None`: not kept, as for a READ
    /// whose data goes from the file to the socket; a retry of it is told
    /// so).
    pub fn finish(&self, id: &SessionId, slot: u32, reply: Option<&[u8]>) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(session) = inner.sessions.get_mut(id) {
            let cached = session.fore.max_response_cached as usize;
            if let Some(s) = session.slots.get_mut(slot as usize) {
                s.busy = false;
                inner.cached -= s.reply.take().map_or(0, |r| r.len());
                let room = CACHED_TOTAL_MAX.saturating_sub(inner.cached);
                s.reply = reply.filter(|r| r.len() <= cached && r.len() <= room).map(<[u8]>::to_vec);
                inner.cached += s.reply.as_ref().map_or(0, Vec::len);
            }
        }
    }

    pub fn destroy_session(&self, id: &SessionId) -> bool {
        let mut inner = self.lock();
        let found = inner.sessions.contains_key(id);
        inner.remove_sessions(|sid, _| sid == id);
        self.changed();
        found
    }

    /// Bytes of replies kept, over all sessions.
    pub fn cached_bytes(&self) -> usize {
        self.lock().cached
    }

    /// DESTROY_CLIENTID: refused while the client has sessions.
    pub fn destroy_client(&self, clientid: u64) -> Result<(), u32> {
        let mut inner = self.lock();
        if !inner.clients.contains_key(&clientid) {
            return Err(NFS4ERR_STALE_CLIENTID);
        }
        if inner.sessions.values().any(|s| s.clientid == clientid) {
            return Err(NFS4ERR_CLIENTID_BUSY);
        }
        inner.clients.remove(&clientid);
        self.changed();
        Ok(())
    }

    fn changed(&self) {
        self.changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many recordable changes so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Client IDs, and with `slots` (a hand-off: no call runs) the
    /// sessions with their slots, as data.
    pub fn export(&self, slots: bool) -> (Vec<record::Client41>, Vec<record::Session>) {
        let inner = self.lock();
        let clients = inner
            .clients
            .iter()
            .map(|(id, c)| record::Client41 {
                id: *id,
                owner: c.owner.clone(),
                verifier: c.verifier.to_vec(),
                confirmed: c.confirmed,
                create_seq: c.create_seq,
                last_create: c.last_create.clone().map(|(seq, body)| (seq, record::Hex(body))),
            })
            .collect();
        if !slots {
            return (clients, Vec::new());
        }
        let sessions = inner
            .sessions
            .iter()
            .map(|(id, s)| record::Session {
                id: id.to_vec(),
                clientid: s.clientid,
                max_request: s.fore.max_request,
                max_response: s.fore.max_response,
                max_response_cached: s.fore.max_response_cached,
                max_operations: s.fore.max_operations,
                callback: s.callback,
                slots: s
                    .slots
                    .iter()
                    .map(|slot| record::Slot {
                        seqid: slot.seqid,
                        reply: slot.reply.clone().map(record::Hex),
                    })
                    .collect(),
            })
            .collect();
        (clients, sessions)
    }

    /// Takes a previous owner's client IDs and sessions (replacing what
    /// is here, before any call is served); every lease starts at `now`.
    /// Entries that break this server's bounds are left out, counted.
    pub fn import(&self, clients: &[record::Client41], sessions: &[record::Session], now: Instant) -> usize {
        let mut inner = self.lock();
        *inner = Inner::default();
        let mut skipped = 0;
        for c in clients.iter().take(CLIENTS_MAX) {
            let Ok(verifier) = c.verifier.as_slice().try_into() else {
                skipped += 1;
                continue;
            };
            inner.clients.insert(
                c.id,
                Client {
                    owner: c.owner.clone(),
                    verifier,
                    confirmed: c.confirmed,
                    create_seq: c.create_seq,
                    last_create: c.last_create.clone().map(|(seq, body)| (seq, body.0)),
                    renewed: now,
                },
            );
        }
        skipped += clients.len().saturating_sub(CLIENTS_MAX);
        for s in sessions {
            let (Ok(id), true) = (
                <SessionId>::try_from(s.id.as_slice()),
                inner.clients.contains_key(&s.clientid)
                    && !s.slots.is_empty()
                    && s.slots.len() <= SLOTS_MAX as usize,
            ) else {
                skipped += 1;
                continue;
            };
            let fore = Channel {
                max_request: s.max_request.min(crate::limits::RECORD_MAX as u32),
                max_response: s.max_response.min(crate::limits::RECORD_MAX as u32),
                max_response_cached: s.max_response_cached.min(CACHED_REPLY_MAX),
                max_operations: s.max_operations.clamp(2, SESSION_OPS_MAX),
                max_requests: s.slots.len() as u32,
            };
            let mut slots = Vec::with_capacity(s.slots.len());
            for slot in &s.slots {
                let room = CACHED_TOTAL_MAX.saturating_sub(inner.cached);
                let reply = slot.reply.clone().map(|r| r.0).filter(|r| r.len() <= room);
                inner.cached += reply.as_ref().map_or(0, Vec::len);
                slots.push(Slot { seqid: slot.seqid, reply, busy: false });
            }
            let session =
                Session { clientid: s.clientid, fore, slots, callback: s.callback, back_conn: None };
            inner.sessions.insert(id, session);
        }
        skipped
    }

    /// The owner a client ID was made for.
    pub fn owner_of(&self, clientid: u64) -> Option<Vec<u8>> {
        self.lock().clients.get(&clientid).map(|c| c.owner.clone())
    }

    pub fn has_session(&self, id: &SessionId) -> bool {
        self.lock().sessions.contains_key(id)
    }

    /// BIND_CONN_TO_SESSION asking for the back channel too: `conn` carries
    /// callbacks from now on; false if the session has no back channel
    /// (or is not known).
    pub fn bind_back(&self, id: &SessionId, conn: u64) -> bool {
        match self.lock().sessions.get_mut(id) {
            Some(session) if session.callback.is_some() => {
                session.back_conn = Some(conn);
                true
            }
            _ => false,
        }
    }

    /// `conn` closed: no callback goes on it any more.
    pub fn unbind(&self, conn: u64) {
        for session in self.lock().sessions.values_mut() {
            if session.back_conn == Some(conn) {
                session.back_conn = None;
            }
        }
    }

    /// Whether `clientid` has a session with a back channel (it may then
    /// be told of locks that become free).
    pub fn has_callbacks(&self, clientid: u64) -> bool {
        self.lock().sessions.values().any(|s| s.clientid == clientid && s.callback.is_some())
    }

    /// Where a callback to `clientid` goes now: a session of its with a
    /// bound back channel, its callback parameters and the connection.
    pub fn callback_route(&self, clientid: u64) -> Option<(SessionId, record::Callback, u64)> {
        let inner = self.lock();
        inner.sessions.iter().find_map(|(id, s)| match (s.clientid == clientid, s.callback, s.back_conn) {
            (true, Some(cb), Some(conn)) => Some((*id, cb, conn)),
            _ => None,
        })
    }

    /// A sequence id taken and never sent (the connection was gone): the
    /// next call takes it again, so the client's slot sees no gap.
    pub fn callback_seq_unused(&self, id: &SessionId, seq: u32) {
        let mut inner = self.lock();
        if let Some(cb) = inner.sessions.get_mut(id).and_then(|s| s.callback.as_mut()) {
            if cb.seq == seq {
                cb.seq = seq.wrapping_sub(1);
            }
        }
    }

    /// The session's next callback sequence id, taken (the last one sent,
    /// answered or not, is never sent again with other content).
    pub fn next_callback_seq(&self, id: &SessionId) -> Option<u32> {
        let mut inner = self.lock();
        let cb = inner.sessions.get_mut(id)?.callback.as_mut()?;
        cb.seq = cb.seq.wrapping_add(1);
        Some(cb.seq)
    }

    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.clients.len(), inner.sessions.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> Channel {
        Channel {
            max_request: 1 << 20,
            max_response: 1 << 20,
            max_response_cached: 4096,
            max_operations: 16,
            max_requests: 4,
        }
    }

    fn session(s: &Sessions, now: Instant) -> SessionId {
        let (id, seq, confirmed) = s.exchange_id(b"client-a", [1; 8], now).unwrap();
        assert!(!confirmed);
        let body = s.create_session(id, seq, channel(), None, now, |sid, _| sid.to_vec()).unwrap();
        body.try_into().unwrap()
    }

    #[test]
    fn a_retry_in_a_slot_gets_the_first_reply_and_is_not_run_again() {
        let s = Sessions::default();
        let now = Instant::now();
        let sid = session(&s, now);
        assert_eq!(s.sequence(&sid, 1, 0, 3, 0, now).0, Sequenced::New { highest_slot: 3 });
        // The same call again while the first still runs: wait.
        assert_eq!(s.sequence(&sid, 1, 0, 3, 0, now).0, Sequenced::Refused(NFS4ERR_DELAY));
        s.finish(&sid, 0, Some(b"first reply"));
        assert_eq!(s.sequence(&sid, 1, 0, 3, 0, now).0, Sequenced::Replay(b"first reply".to_vec()));
        assert_eq!(s.sequence(&sid, 3, 0, 3, 0, now).0, Sequenced::Refused(NFS4ERR_SEQ_MISORDERED));
        assert_eq!(s.sequence(&sid, 2, 0, 3, 0, now).0, Sequenced::New { highest_slot: 3 });
        assert_eq!(s.sequence(&sid, 1, 4, 3, 0, now).0, Sequenced::Refused(NFS4ERR_BADSLOT));
        assert_eq!(s.sequence(&sid, 1, 1, 17, 0, now).0, Sequenced::Refused(NFS4ERR_TOO_MANY_OPS));
        // Too big to keep: a retry is told so rather than run twice.
        s.finish(&sid, 0, Some(&[0; 5000]));
        assert_eq!(s.sequence(&sid, 2, 0, 3, 0, now).0, Sequenced::Refused(NFS4ERR_RETRY_UNCACHED_REP));
        assert_eq!(s.cached_bytes(), 0);
    }

    #[test]
    fn the_replies_kept_are_bounded_together_and_counted_out_with_their_sessions() {
        let s = Sessions::default();
        let now = Instant::now();
        let big = Channel { max_response_cached: CACHED_REPLY_MAX, max_requests: 64, ..channel() };
        let reply = vec![0u8; CACHED_REPLY_MAX as usize];
        let mut sessions = Vec::new();
        // 2,048 slots of 64 KiB would be 128 MiB: only 64 MiB are kept.
        for c in 0..32u8 {
            let (id, seq, _) = s.exchange_id(&[c], [1; 8], now).unwrap();
            let sid: SessionId =
                s.create_session(id, seq, big, None, now, |sid, _| sid.to_vec()).unwrap().try_into().unwrap();
            for slot in 0..64 {
                assert!(matches!(s.sequence(&sid, 1, slot, 1, 0, now).0, Sequenced::New { .. }));
                s.finish(&sid, slot, Some(&reply));
            }
            sessions.push(sid);
        }
        assert_eq!(s.cached_bytes(), CACHED_TOTAL_MAX);
        assert_eq!(
            s.sequence(&sessions[31], 1, 63, 1, 0, now).0,
            Sequenced::Refused(NFS4ERR_RETRY_UNCACHED_REP)
        );
        assert!(matches!(s.sequence(&sessions[0], 1, 0, 1, 0, now).0, Sequenced::Replay(_)));
        // A new call in a slot lets its old reply go.
        assert!(matches!(s.sequence(&sessions[0], 2, 0, 1, 0, now).0, Sequenced::New { .. }));
        assert_eq!(s.cached_bytes(), CACHED_TOTAL_MAX - reply.len());
        s.finish(&sessions[0], 0, Some(b"small"));
        assert!(s.destroy_session(&sessions[0]));
        assert_eq!(s.cached_bytes(), CACHED_TOTAL_MAX - 64 * reply.len());
        assert_eq!(s.lapsed(now + Duration::from_secs(1000)).len(), 32);
        assert_eq!(s.cached_bytes(), 0);
    }

    #[test]
    fn sessions_handed_over_go_on_where_they_were() {
        let s = Sessions::default();
        let now = Instant::now();
        let sid = session(&s, now);
        assert!(matches!(s.sequence(&sid, 1, 2, 1, 0, now).0, Sequenced::New { .. }));
        s.finish(&sid, 2, Some(b"created"));
        let before = s.changes();
        let (clients, sessions) = s.export(true);
        let next = Sessions::default();
        assert_eq!(next.import(&clients, &sessions, now), 0);
        assert_eq!(next.counts(), (1, 1));
        assert_eq!(
            next.sequence(&sid, 1, 2, 1, 0, now).0,
            Sequenced::Replay(b"created".to_vec()),
            "its cached reply"
        );
        assert_eq!(next.sequence(&sid, 2, 2, 1, 0, now).0, Sequenced::New { highest_slot: 3 });
        assert_eq!(next.sequence(&sid, 1, 0, 1, 0, now).0, Sequenced::New { highest_slot: 3 });
        assert_eq!(next.cached_bytes(), 0, "the replies taken in were let go with their slots");
        assert_eq!(s.changes(), before, "slots are not journal changes");
        // A journal record has no sessions: the client makes a new one
        // under the same ID, with the sequence id CREATE_SESSION expects.
        let (clients, sessions) = s.export(false);
        assert!(sessions.is_empty());
        let after = Sessions::default();
        after.import(&clients, &sessions, now);
        assert_eq!(after.sequence(&sid, 2, 2, 1, 0, now).0, Sequenced::Refused(NFS4ERR_BADSESSION));
        let id = clients[0].id;
        assert!(after.create_session(id, 2, channel(), None, now, |sid, _| sid.to_vec()).is_ok());
        assert!(after.changes() > 0, "a session made is a journal change");
        // Garbage in a record is left out, not taken.
        let mut bad = s.export(true);
        bad.1[0].slots.clear();
        bad.0[0].verifier = vec![1];
        assert_eq!(Sessions::default().import(&bad.0, &bad.1, now), 2);
    }

    #[test]
    fn client_ids_through_reboots_retries_and_lapsed_leases() {
        let s = Sessions::new(Duration::from_secs(10));
        let now = Instant::now();
        let (id, seq, _) = s.exchange_id(b"c", [1; 8], now).unwrap();
        let first = s.create_session(id, seq, channel(), None, now, |sid, _| sid.to_vec()).unwrap();
        // A retried CREATE_SESSION: the same session, not a second one.
        assert_eq!(s.create_session(id, seq, channel(), None, now, |sid, _| sid.to_vec()).unwrap(), first);
        assert_eq!(s.counts(), (1, 1));
        assert_eq!(s.exchange_id(b"c", [1; 8], now).unwrap(), (id, seq + 1, true));
        // The client rebooted: a new ID; confirming it ends the old one.
        let (new, seq2, confirmed) = s.exchange_id(b"c", [2; 8], now).unwrap();
        assert!(new != id && !confirmed);
        s.create_session(new, seq2, channel(), None, now, |sid, _| sid.to_vec()).unwrap();
        assert_eq!(s.counts(), (1, 1));
        assert_eq!(s.destroy_client(new), Err(NFS4ERR_CLIENTID_BUSY));
        assert_eq!(s.lapsed(now), vec![id], "the rebooted client's old ID");
        // Silent past one and a half leases: gone.
        let later = now + Duration::from_secs(16);
        assert_eq!(s.lapsed(later), vec![new]);
        assert_eq!(s.counts(), (0, 0));
        let sid: SessionId = first.try_into().unwrap();
        assert_eq!(s.sequence(&sid, 1, 0, 1, 0, later).0, Sequenced::Refused(NFS4ERR_BADSESSION));
    }
}
