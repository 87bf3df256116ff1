//! The NFSv4.1 back channel (RFC 8881 sections 2.10.3.1 and 20): calls
//! from the server to a client, on a connection the client opened and
//! bound to its session. Used to tell a client waiting for a lock that
//! the lock may be free (CB_NOTIFY_LOCK): told, it asks again at once;
//! not told, Linux asks again only every 30 s.
//!
//! Each call is a CB_COMPOUND that starts with CB_SEQUENCE in the
//! client's one back-channel slot; one call at a time per session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::session::SessionId;
use super::waiters::{Waiter, Waiters};
use super::*;

/// How long a client has to answer a callback.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Callbacks queued on one connection; past it a callback is dropped (the
/// client polls).
pub const QUEUED_PER_CONNECTION: usize = 8;
/// Sequence ids tried when the client's slot is elsewhere than ours (a
/// callback lost with a connection).
const TRIES: usize = 4;

const CB_COMPOUND: u32 = 1;
/// The callback program's version: 1 in the XDR of both RFCs, and in
/// practice (RFC 8881 section 18.36.3 says 4; clients take 1).
const CB_VERSION: u32 = 1;
const OP_CB_SEQUENCE: u32 = 11;
const OP_CB_NOTIFY_LOCK: u32 = 13;
const NFS4ERR_SEQ_FALSE_RETRY: u32 = 10076;

/// What the back channels of one server share.
#[derive(Default)]
pub struct BackChannel {
    /// Each open connection's queue of records to send on it.
    conns: Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>,
    /// Calls sent and not yet answered, by xid.
    pending: Mutex<HashMap<u32, oneshot::Sender<Vec<u8>>>>,
    xid: AtomicU32,
    /// One call at a time per session (the client gives one slot).
    lanes: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>>,
    pub waiters: Mutex<Waiters>,
    /// Callbacks answered, and those that failed.
    pub sent: AtomicU64,
    pub failed: AtomicU64,
}

/// Whether a record a client sent is an RPC reply (to a callback), not a
/// call.
pub fn is_reply(record: &[u8]) -> bool {
    record.get(4..8) == Some(&[0, 0, 0, 1])
}

impl BackChannel {
    /// A connection opened: callbacks may go on it.
    pub fn attach(&self, conn: u64, sender: mpsc::Sender<Vec<u8>>) {
        self.conns.lock().expect("not poisoned").insert(conn, sender);
    }

    /// A connection closed.
    pub fn detach(&self, conn: u64) {
        self.conns.lock().expect("not poisoned").remove(&conn);
    }

    /// A reply from a client: to the call that waits for it, if any.
    pub fn reply(&self, record: &[u8]) {
        let Some(xid) = record.get(..4).map(|w| u32::from_be_bytes(w.try_into().unwrap())) else { return };
        if let Some(waiting) = self.pending.lock().expect("not poisoned").remove(&xid) {
            let _ = waiting.send(record.to_vec());
        }
    }

    fn lane(&self, id: &SessionId) -> Arc<tokio::sync::Mutex<()>> {
        self.lanes.lock().expect("not poisoned").entry(*id).or_default().clone()
    }

    fn let_lane_go(&self, id: &SessionId, lane: Arc<tokio::sync::Mutex<()>>) {
        let mut lanes = self.lanes.lock().expect("not poisoned");
        // Ours and the map's: nobody else waits on it.
        if Arc::strong_count(&lane) == 2 {
            lanes.remove(id);
        }
    }
}

/// A blocking LOCK was denied: its owner is told when a lock on the file
/// goes and what it asked for is free. If that happened since the
/// denial, at once.
pub fn wait(state: &State, file: &[u8], waiter: Waiter) {
    let added = state.back.waiters.lock().expect("not poisoned").add(file, waiter.clone(), Instant::now());
    if added && free(state, file, &waiter) {
        state.locks.call_back(crate::locks::Callback::Released(file.to_vec()));
    }
}

/// Whether nothing stops `waiter`'s lock now.
fn free(state: &State, file: &[u8], waiter: &Waiter) -> bool {
    let owner = vnas_locks::Owner {
        caller: super::lock::caller(waiter.owner.0),
        svid: 0,
        oh: waiter.owner.1.clone(),
    };
    let open = crate::nlm::opener(state);
    state.locks.test(&open, file, &owner, waiter.exclusive, waiter.range).is_none()
}

/// Whether anyone waits on `file` (the lock manager's callback task asks
/// before it does any work for a release).
pub fn anyone_waits(state: &State, file: &[u8]) -> bool {
    state.back.waiters.lock().expect("not poisoned").any(file)
}

/// A lock on `file` went: each client waiting for one on it is told
/// (CB_NOTIFY_LOCK), and asks again.
pub async fn released(state: &State, file: &[u8]) {
    let all = state.back.waiters.lock().expect("not poisoned").take(file, Instant::now());
    // Those still held up (by another lock, or the one they wait for
    // came back) stay waiting: told now, they would only be denied again.
    let (tell, keep): (Vec<_>, Vec<_>) = all.into_iter().partition(|w| free(state, file, w));
    {
        let mut waiters = state.back.waiters.lock().expect("not poisoned");
        for waiter in keep {
            waiters.add(file, waiter, Instant::now());
        }
    }
    for Waiter { owner: (clientid, owner), .. } in tell {
        let mut op = Xdr::default();
        op.u32(OP_CB_NOTIFY_LOCK).opaque(file).u64(clientid).opaque(&owner);
        match call(state, clientid, &op.0).await {
            Ok(()) => {
                state.back.sent.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = %format!("{clientid:016x}"), "told an NFSv4 client a lock it waits for is free");
            }
            Err(error) => {
                state.back.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(client = %format!("{clientid:016x}"), %error, "cannot tell an NFSv4 client a lock it waits for is free; it will ask again itself");
            }
        }
    }
}

/// One CB_COMPOUND of CB_SEQUENCE and `op` to a client, answered.
async fn call(state: &State, clientid: u64, op: &[u8]) -> Result<(), String> {
    let (id, cb, conn) = state.sessions.callback_route(clientid).ok_or("it has no back channel bound")?;
    let back = &state.back;
    let lane = back.lane(&id);
    let result = async {
        let _turn = lane.lock().await;
        for _ in 0..TRIES {
            let seq = state.sessions.next_callback_seq(&id).ok_or("its session is gone")?;
            let xid = back.xid.fetch_add(1, Ordering::Relaxed) ^ 0x5642_0000;
            let (answer, answered) = oneshot::channel();
            back.pending.lock().expect("not poisoned").insert(xid, answer);
            let sender = back.conns.lock().expect("not poisoned").get(&conn).cloned();
            let queued = sender.is_some_and(|s| s.try_send(encode(xid, &cb, &id, seq, op)).is_ok());
            if !queued {
                back.pending.lock().expect("not poisoned").remove(&xid);
                state.sessions.callback_seq_unused(&id, seq);
                return Err("its connection is closed or busy".to_string());
            }
            let reply = tokio::time::timeout(CALL_TIMEOUT, answered).await;
            back.pending.lock().expect("not poisoned").remove(&xid);
            let reply = reply
                .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))?
                .map_err(|_| "the connection closed".to_string())?;
            match sequence_status(&reply)? {
                NFS4_OK => return Ok(()),
                // The client's slot is at another sequence id than ours
                // (a callback lost with a connection): the next one.
                NFS4ERR_SEQ_MISORDERED | NFS4ERR_RETRY_UNCACHED_REP | NFS4ERR_SEQ_FALSE_RETRY => continue,
                status => return Err(format!("CB_SEQUENCE answered {status}")),
            }
        }
        Err("the client's callback slot never took our sequence id".to_string())
    }
    .await;
    back.let_lane_go(&id, lane);
    result
}

/// The call's record: RPC header (the credential flavour the client
/// offered; AUTH_SYS as root, as a server's own calls are), then
/// CB_COMPOUND4args with CB_SEQUENCE in slot 0 and `op`.
fn encode(xid: u32, cb: &vnas_locks::nfs4::Callback, id: &SessionId, seq: u32, op: &[u8]) -> Vec<u8> {
    let mut x = Xdr::default();
    x.u32(0); // record mark, set below
    x.u32(xid).u32(0).u32(2).u32(cb.program).u32(CB_VERSION).u32(CB_COMPOUND);
    if cb.flavor == 1 {
        let mut sys = Xdr::default();
        sys.u32(0).opaque(b"vnas").u32(0).u32(0).u32(0);
        x.u32(1).opaque(&sys.0);
    } else {
        x.u32(0).u32(0);
    }
    x.u32(0).u32(0); // verifier: AUTH_NONE
    x.opaque(b"").u32(cb.minor).u32(0).u32(2);
    x.u32(OP_CB_SEQUENCE);
    x.0.extend_from_slice(id);
    // Slot 0, highest slot 0, not cached, no referring calls.
    x.u32(seq).u32(0).u32(0).u32(0).u32(0);
    x.0.extend_from_slice(op);
    let len = (x.0.len() - 4) as u32;
    x.0[..4].copy_from_slice(&(0x8000_0000 | len).to_be_bytes());
    x.0
}

/// The status of CB_SEQUENCE in a CB_COMPOUND reply (the compound's when
/// it has no result).
fn sequence_status(reply: &[u8]) -> Result<u32, String> {
    let short = |_| "a short callback reply".to_string();
    let mut x = XdrReader::new(reply);
    let (_xid, kind, stat) = (x.u32().map_err(short)?, x.u32().map_err(short)?, x.u32().map_err(short)?);
    if kind != 1 || stat != 0 {
        return Err(format!("the callback was refused (reply status {stat})"));
    }
    let _flavor = x.u32().map_err(short)?;
    x.opaque(400).map_err(short)?;
    let accepted = x.u32().map_err(short)?;
    if accepted != 0 {
        return Err(format!("the callback was not run (accept status {accepted})"));
    }
    let status = x.u32().map_err(short)?;
    x.opaque(TAG_MAX).map_err(short)?;
    if x.u32().map_err(short)? == 0 {
        return Ok(status);
    }
    let _op = x.u32().map_err(short)?;
    x.u32().map_err(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_carries_its_session_and_sequence_and_a_reply_is_read() {
        let cb = vnas_locks::nfs4::Callback { program: 0x4000_0000, flavor: 1, minor: 1, seq: 0 };
        let record = encode(9, &cb, &[7; 16], 3, &[0, 0, 0, 13]);
        let len = u32::from_be_bytes(record[..4].try_into().unwrap());
        assert_eq!(len, 0x8000_0000 | (record.len() as u32 - 4), "one fragment");
        let body = &record[4..];
        assert!(!is_reply(body));
        let word = |at: usize| u32::from_be_bytes(body[at..at + 4].try_into().unwrap());
        assert_eq!((word(0), word(4), word(12), word(16), word(20)), (9, 0, 0x4000_0000, 1, 1));
        let at = body.windows(16).position(|w| w == [7; 16]).unwrap();
        assert_eq!(word(at - 4), OP_CB_SEQUENCE);
        assert_eq!(word(at + 16), 3, "the sequence id follows the session");
        assert_eq!(&body[body.len() - 4..], &[0, 0, 0, 13]);

        let mut reply = Xdr::default();
        reply.u32(9).u32(1).u32(0).u32(0).u32(0).u32(0);
        reply.u32(NFS4ERR_SEQ_MISORDERED).opaque(b"").u32(1).u32(OP_CB_SEQUENCE).u32(NFS4ERR_SEQ_MISORDERED);
        assert!(is_reply(&reply.0));
        assert_eq!(sequence_status(&reply.0), Ok(NFS4ERR_SEQ_MISORDERED));
        assert!(sequence_status(&reply.0[..20]).is_err(), "short");
    }
}
