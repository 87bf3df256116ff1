//! NLM v4 (the Network Lock Manager of XNFS, as NFSv3 clients speak it),
//! on the NFS port: TEST, LOCK, CANCEL, UNLOCK, their asynchronous `_MSG`
//! forms (answered by a `_RES` call back to the client), SHARE, UNSHARE,
//! NM_LOCK and FREE_ALL. Decisions are the lock manager's; this module
//! only decodes, checks and encodes.

use crate::dispatch::Conn;
use crate::locks::{Grant, NotRecorded, Outcome, Owner, Range, Share, ShareOutcome, Waiter};
use crate::nfs3::{Garbage, Proc, Req};
use crate::rpc::xdr::XdrReader;
use crate::rpc::{Auth, Reply};
use crate::server::State;

pub const PROGRAM: u32 = 100021;
pub const VERSION: u32 = 4;

/// XNFS: LM_MAXSTRLEN (caller names), MAXNETOBJ_SZ (cookies, owner handles).
pub const CALLER_MAX: usize = 1024;
pub const NETOBJ_MAX: usize = 1024;
/// NFSv3 handles are at most 64 bytes.
const FH_MAX: usize = 64;

// nlm4_stats
pub const GRANTED: u32 = 0;
pub const DENIED: u32 = 1;
pub const DENIED_NOLOCKS: u32 = 2;
pub const BLOCKED: u32 = 3;
pub const STALE_FH: u32 = 7;
pub const FAILED: u32 = 9;

pub const PROC_GRANTED: u32 = 5;
pub const PROC_GRANTED_MSG: u32 = 10;

/// What the dispatcher does with the result.
pub enum Answer {
    /// Reply with what was packed.
    Reply,
    /// A `_MSG` call: reply with nothing; the result goes back to the
    /// client as a `_RES` call.
    Message { proc_: u32, body: Vec<u8> },
    /// The change could not be recorded: no reply at all (the client
    /// sends the call again).
    Withhold,
}

/// `nlm4_lock`.
struct Alock<'a> {
    caller: &'a [u8],
    fh: &'a [u8],
    oh: &'a [u8],
    svid: u32,
    offset: u64,
    len: u64,
}

fn alock<'a>(x: &mut XdrReader<'a>) -> Result<Alock<'a>, Garbage> {
    Ok(Alock {
        caller: x.opaque(CALLER_MAX).map_err(|_| Garbage)?,
        fh: x.opaque(FH_MAX).map_err(|_| Garbage)?,
        oh: x.opaque(NETOBJ_MAX).map_err(|_| Garbage)?,
        svid: x.u32().map_err(|_| Garbage)?,
        offset: x.u64().map_err(|_| Garbage)?,
        len: x.u64().map_err(|_| Garbage)?,
    })
}

fn boolean(x: &mut XdrReader<'_>) -> Result<bool, Garbage> {
    match x.u32().map_err(|_| Garbage)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Garbage),
    }
}

fn caller_name(bytes: &[u8]) -> Result<String, Garbage> {
    std::str::from_utf8(bytes).map(str::to_string).map_err(|_| Garbage)
}

impl Alock<'_> {
    fn owner(&self) -> Result<Owner, Garbage> {
        Ok(Owner { caller: caller_name(self.caller)?, svid: self.svid, oh: self.oh.to_vec() })
    }

    fn range(&self) -> Range {
        Range::of(self.offset, self.len)
    }
}

/// Writes XDR into a buffer.
#[derive(Default)]
pub struct Xdr(pub Vec<u8>);

impl Xdr {
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn opaque(&mut self, data: &[u8]) -> &mut Self {
        self.u32(data.len() as u32);
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(4) * 4, 0);
        self
    }
}

/// Whether the handle is one this server serves, to this client.
fn check_handle(state: &State, conn: Conn, auth: &Auth, fh: &[u8]) -> Result<(), u32> {
    static PROC: Proc = Proc { name: "NLM", modifies: false, replay: false, run: |_, _, _| Ok(()) };
    let req = Req { state, client: conn.peer.ip(), port: conn.peer.port(), auth, proc_: &PROC };
    let handle = nfs3_types::nfs3::nfs_fh3 { data: nfs3_types::xdr_codec::Opaque::owned(fh.to_vec()) };
    match req.target(&handle) {
        Ok(_) => Ok(()),
        Err(nfs3_types::nfs3::nfsstat3::NFS3ERR_ACCES | nfs3_types::nfs3::nfsstat3::NFS3ERR_PERM) => {
            Err(FAILED)
        }
        Err(_) => Err(STALE_FH),
    }
}

/// Opens a locked file for the kernel's copy of its locks.
pub fn opener(state: &State) -> impl Fn(&[u8]) -> std::io::Result<std::os::fd::OwnedFd> + '_ {
    move |fh: &[u8]| {
        let decoded =
            crate::handle::FileHandle::decode(fh).map_err(|_| std::io::Error::other("bad handle"))?;
        let export =
            state.export_by_id(decoded.export_id).ok_or_else(|| std::io::Error::other("no export"))?;
        let fh = export.verify(fh).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let obj = export.resolve(&fh).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let path = obj.proc_path();
        let open = |write| std::fs::OpenOptions::new().read(true).write(write).open(&path);
        Ok(open(true).or_else(|_| open(false))?.into())
    }
}

/// Runs one NLM v4 procedure; `None`: no such procedure.
pub fn run(
    state: &State,
    conn: Conn,
    auth: &Auth,
    proc_: u32,
    args: &[u8],
    out: &mut Reply,
) -> Option<Result<Answer, Garbage>> {
    let mut x = XdrReader::new(args);
    let x = &mut x;
    let result = match proc_ {
        0 => Ok(Answer::Reply),
        1 | 6 => test(state, conn, auth, x).map(|body| respond(out, proc_, 11, body)),
        2 | 7 | 22 => lock(state, conn, auth, x, proc_ == 22).map(|body| respond_opt(out, proc_, 12, body)),
        3 | 8 => cancel(state, conn, auth, x).map(|body| respond_opt(out, proc_, 13, body)),
        4 | 9 => unlock(state, conn, auth, x).map(|body| respond_opt(out, proc_, 14, body)),
        // Calls only a server makes to a client; a server does not take
        // them (a client's lock manager answers them).
        PROC_GRANTED => cookie_then(x, DENIED).map(|body| {
            out.buf_mut().extend_from_slice(&body);
            Answer::Reply
        }),
        PROC_GRANTED_MSG => Ok(Answer::Reply),
        // Results of the calls the server made (GRANTED_RES answers a
        // GRANTED_MSG; the others come from clients acting as servers).
        11..=15 => Ok(Answer::Reply),
        20 => share(state, conn, auth, x, true).map(|body| respond_opt(out, proc_, 0, body)),
        21 => share(state, conn, auth, x, false).map(|body| respond_opt(out, proc_, 0, body)),
        23 => free_all(state, conn, x).map(|()| Answer::Reply),
        _ => return None,
    };
    Some(result)
}

/// The reply body of a synchronous call, or the `_RES` call of a `_MSG`.
fn respond(out: &mut Reply, proc_: u32, res_proc: u32, body: Vec<u8>) -> Answer {
    if (6..=10).contains(&proc_) {
        return Answer::Message { proc_: res_proc, body };
    }
    out.buf_mut().extend_from_slice(&body);
    Answer::Reply
}

fn respond_opt(out: &mut Reply, proc_: u32, res_proc: u32, body: Option<Vec<u8>>) -> Answer {
    match body {
        Some(body) => respond(out, proc_, res_proc, body),
        None => Answer::Withhold,
    }
}

fn cookie_then(x: &mut XdrReader<'_>, stat: u32) -> Result<Vec<u8>, Garbage> {
    let cookie = x.opaque(NETOBJ_MAX).map_err(|_| Garbage)?;
    let mut body = Xdr::default();
    body.opaque(cookie).u32(stat);
    Ok(body.0)
}

fn test(state: &State, conn: Conn, auth: &Auth, x: &mut XdrReader<'_>) -> Result<Vec<u8>, Garbage> {
    let cookie = x.opaque(NETOBJ_MAX).map_err(|_| Garbage)?;
    let exclusive = boolean(x)?;
    let lock = alock(x)?;
    let owner = lock.owner()?;
    let mut body = Xdr::default();
    body.opaque(cookie);
    if let Err(stat) = check_handle(state, conn, auth, lock.fh) {
        body.u32(stat);
        return Ok(body.0);
    }
    let open = opener(state);
    match state.locks.test(&open, lock.fh, &owner, exclusive, lock.range()) {
        None => {
            body.u32(GRANTED);
        }
        Some(holder) => {
            body.u32(DENIED).u32(holder.exclusive as u32).u32(holder.owner.svid).opaque(&holder.owner.oh);
            body.u64(holder.range.start).u64(holder.range.len());
        }
    }
    Ok(body.0)
}

/// `None`: the change could not be recorded; no answer.
fn lock(
    state: &State,
    conn: Conn,
    auth: &Auth,
    x: &mut XdrReader<'_>,
    unmonitored: bool,
) -> Result<Option<Vec<u8>>, Garbage> {
    let cookie = x.opaque(NETOBJ_MAX).map_err(|_| Garbage)?;
    let block = boolean(x)?;
    let exclusive = boolean(x)?;
    let lock = alock(x)?;
    let reclaim = boolean(x)?;
    let nsm_state = x.u32().map_err(|_| Garbage)?;
    let owner = lock.owner()?;
    let mut body = Xdr::default();
    body.opaque(cookie);
    if let Err(stat) = check_handle(state, conn, auth, lock.fh) {
        return Ok(Some(body.u32(stat).0.clone()));
    }
    // NFSv4 clients reclaim (their state could not be read): no new lock
    // until they are done (DENIED_GRACE_PERIOD).
    if !reclaim && crate::nfs4::grace::holds_nlm(state) {
        return Ok(Some(body.u32(4).0.clone()));
    }
    // No grace period is ever needed (every change is recorded before it
    // is answered, and a next owner restores it), so a reclaim is a lock
    // like any other: granted again to its owner.
    let waiter = (block && !unmonitored).then(|| Waiter {
        owner: owner.clone(),
        exclusive,
        range: lock.range(),
        cookie: cookie.to_vec(),
        since_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        client: conn.peer.ip(),
        server: conn.local.unwrap_or(conn.peer.ip()),
    });
    let open = opener(state);
    let outcome =
        match state.locks.lock(&open, lock.fh, &owner, exclusive, lock.range(), waiter, conn.peer.ip()) {
            Ok(outcome) => outcome,
            Err(NotRecorded) => return Ok(None),
        };
    if !unmonitored {
        state.locks.note_state(&owner.caller, nsm_state);
    }
    let stat = match outcome {
        Outcome::Granted => GRANTED,
        Outcome::Denied(_) => DENIED,
        Outcome::Blocked => BLOCKED,
        Outcome::NoLocks => DENIED_NOLOCKS,
    };
    Ok(Some(body.u32(stat).0.clone()))
}

fn cancel(state: &State, conn: Conn, auth: &Auth, x: &mut XdrReader<'_>) -> Result<Option<Vec<u8>>, Garbage> {
    let cookie = x.opaque(NETOBJ_MAX).map_err(|_| Garbage)?;
    let _block = boolean(x)?;
    let exclusive = boolean(x)?;
    let lock = alock(x)?;
    let owner = lock.owner()?;
    let mut body = Xdr::default();
    body.opaque(cookie);
    if let Err(stat) = check_handle(state, conn, auth, lock.fh) {
        return Ok(Some(body.u32(stat).0.clone()));
    }
    match state.locks.cancel(lock.fh, &owner, exclusive, lock.range()) {
        // Cancelling what no longer waits is granted too (knfsd does so):
        // the client is told its request is gone either way.
        Ok(_) => Ok(Some(body.u32(GRANTED).0.clone())),
        Err(NotRecorded) => Ok(None),
    }
}

fn unlock(state: &State, conn: Conn, auth: &Auth, x: &mut XdrReader<'_>) -> Result<Option<Vec<u8>>, Garbage> {
    let cookie = x.opaque(NETOBJ_MAX).map_err(|_| Garbage)?;
    let lock = alock(x)?;
    let owner = lock.owner()?;
    let mut body = Xdr::default();
    body.opaque(cookie);
    if let Err(stat) = check_handle(state, conn, auth, lock.fh) {
        return Ok(Some(body.u32(stat).0.clone()));
    }
    let open = opener(state);
    match state.locks.unlock(&open, lock.fh, &owner, lock.range()) {
        Ok(()) => Ok(Some(body.u32(GRANTED).0.clone())),
        Err(NotRecorded) => Ok(None),
    }
}

fn share(
    state: &State,
    conn: Conn,
    auth: &Auth,
    x: &mut XdrReader<'_>,
    take: bool,
) -> Result<Option<Vec<u8>>, Garbage> {
    let cookie = x.opaque(NETOBJ_MAX).map_err(|_| Garbage)?;
    let caller = caller_name(x.opaque(CALLER_MAX).map_err(|_| Garbage)?)?;
    let fh = x.opaque(FH_MAX).map_err(|_| Garbage)?;
    let oh = x.opaque(NETOBJ_MAX).map_err(|_| Garbage)?;
    let deny = x.u32().map_err(|_| Garbage)?;
    let access = x.u32().map_err(|_| Garbage)?;
    let _reclaim = boolean(x)?;
    if deny > 3 || access > 3 {
        return Err(Garbage);
    }
    let mut body = Xdr::default();
    body.opaque(cookie);
    let stat = match check_handle(state, conn, auth, fh) {
        Err(stat) => stat,
        // NFSv4 opens of the file count as share reservations too.
        Ok(()) if take && state.v4.share_conflict(fh, access, deny) => DENIED,
        Ok(()) if take => {
            let share = Share { caller, oh: oh.to_vec(), access, deny };
            match state.locks.share(fh, share, conn.peer.ip()) {
                Ok(ShareOutcome::Granted) => GRANTED,
                Ok(ShareOutcome::Denied) => DENIED,
                Ok(ShareOutcome::NoLocks) => DENIED_NOLOCKS,
                Err(NotRecorded) => return Ok(None),
            }
        }
        Ok(()) => match state.locks.unshare(fh, &caller, oh) {
            Ok(()) => GRANTED,
            Err(NotRecorded) => return Ok(None),
        },
    };
    // nlm4_shareres: cookie, stat, sequence.
    Ok(Some(body.u32(stat).u32(0).0.clone()))
}

/// FREE_ALL (a message: no reply): everything the named client holds goes,
/// when the client itself asks (from the address it locked from).
fn free_all(state: &State, conn: Conn, x: &mut XdrReader<'_>) -> Result<(), Garbage> {
    let name = caller_name(x.opaque(CALLER_MAX).map_err(|_| Garbage)?)?;
    let _state = x.u32().map_err(|_| Garbage)?;
    let known = state.locks.snapshot().clients.get(&name).map(|c| c.address);
    if known != Some(conn.peer.ip()) {
        tracing::warn!(client = %name, from = %conn.peer.ip(), "FREE_ALL for a client from another address; ignored");
        return Ok(());
    }
    let open = opener(state);
    match state.locks.release_client(&open, &name) {
        Ok(released) => tracing::info!(client = %name, released, "FREE_ALL: the client's locks released"),
        Err(NotRecorded) => tracing::warn!(client = %name, "FREE_ALL not recorded; nothing released"),
    }
    Ok(())
}

/// The arguments of the GRANTED call back to a waiter's client
/// (`nlm4_testargs`: its cookie, and the lock as it asked for it).
pub fn granted_args(grant: &Grant) -> Vec<u8> {
    let w = &grant.waiter;
    let mut body = Xdr::default();
    body.opaque(&w.cookie).u32(w.exclusive as u32);
    body.opaque(w.owner.caller.as_bytes()).opaque(&grant.file).opaque(&w.owner.oh).u32(w.owner.svid);
    body.u64(w.range.start).u64(w.range.len());
    body.0
}

/// The status of an `nlm4_res` (cookie, stat).
pub fn res_stat(body: &[u8]) -> Option<u32> {
    let mut x = XdrReader::new(body);
    x.opaque(NETOBJ_MAX).ok()?;
    x.u32().ok()
}
