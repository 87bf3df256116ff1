//! NFSv4.0 (RFC 7530), the first part: COMPOUND with the current and saved
//! filehandles, the pseudo-filesystem (the exports under one root), client
//! records, and what a client needs to list, look up, read and open files:
//! PUTROOTFH, PUTPUBFH, PUTFH, GETFH, SAVEFH, RESTOREFH, LOOKUP, LOOKUPP,
//! GETATTR, ACCESS, READDIR, OPEN (existing files), OPEN_CONFIRM, CLOSE,
//! READ, SECINFO, SETCLIENTID, SETCLIENTID_CONFIRM, RENEW. Every other
//! operation answers NFS4ERR_NOTSUPP. Served only when the caller asks
//! (`ServerConfig::nfs4`): until it writes too, a client that mounts with
//! no options must keep falling back to v3.

/// An operation's step that may fail with an NFSv4 status: its value, or
/// the operation ends with that status.
macro_rules! tryop {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(status) => return fail(status),
        }
    };
}

pub mod attrs;
pub mod callback;
mod change;
pub mod grace;
pub mod idmap;
pub mod journal;
pub mod lock;
mod ops;
mod ops41;
pub mod session;
pub mod state;
mod v3;
mod v42;
pub mod waiters;

use crate::dispatch::Conn;
use crate::nfs3::Garbage;
use crate::nlm::Xdr;
use crate::rpc::xdr::XdrReader;
use crate::rpc::{Auth, Reply};
use crate::server::State;

pub const VERSION: u32 = 4;
/// Operations one COMPOUND may carry; past it, NFS4ERR_RESOURCE.
pub const OPS_MAX: usize = 64;
/// The lease a client renews (seconds).
pub const LEASE_SECONDS: u32 = 90;
/// The longest COMPOUND tag taken.
const TAG_MAX: usize = 1024;

pub const NFS4_OK: u32 = 0;
pub const NFS4ERR_NOENT: u32 = 2;
pub const NFS4ERR_ACCESS: u32 = 13;
pub const NFS4ERR_EXIST: u32 = 17;
pub const NFS4ERR_NOTDIR: u32 = 20;
pub const NFS4ERR_ISDIR: u32 = 21;
pub const NFS4ERR_INVAL: u32 = 22;
pub const NFS4ERR_NOSPC: u32 = 28;
pub const NFS4ERR_ROFS: u32 = 30;
pub const NFS4ERR_STALE: u32 = 70;
pub const NFS4ERR_BADHANDLE: u32 = 10001;
pub const NFS4ERR_NOTSUPP: u32 = 10004;
pub const NFS4ERR_TOOSMALL: u32 = 10005;
pub const NFS4ERR_SERVERFAULT: u32 = 10006;
pub const NFS4ERR_BADTYPE: u32 = 10007;
pub const NFS4ERR_DELAY: u32 = 10008;
pub const NFS4ERR_DENIED: u32 = 10010;
pub const NFS4ERR_GRACE: u32 = 10013;
pub const NFS4ERR_NO_GRACE: u32 = 10033;
pub const NFS4ERR_SHARE_DENIED: u32 = 10015;
pub const NFS4ERR_RESOURCE: u32 = 10018;
pub const NFS4ERR_NOFILEHANDLE: u32 = 10020;
pub const NFS4ERR_MINOR_VERS_MISMATCH: u32 = 10021;
pub const NFS4ERR_STALE_CLIENTID: u32 = 10022;
pub const NFS4ERR_BAD_STATEID: u32 = 10025;
pub const NFS4ERR_BAD_SEQID: u32 = 10026;
pub const NFS4ERR_SYMLINK: u32 = 10029;
pub const NFS4ERR_RESTOREFH: u32 = 10030;
pub const NFS4ERR_ATTRNOTSUPP: u32 = 10032;
pub const NFS4ERR_BADXDR: u32 = 10036;
pub const NFS4ERR_LOCKS_HELD: u32 = 10037;
pub const NFS4ERR_OPENMODE: u32 = 10038;
pub const NFS4ERR_BADOWNER: u32 = 10039;
pub const NFS4ERR_OP_ILLEGAL: u32 = 10044;
pub const OP_ILLEGAL: u32 = 10044;
pub const NFS4ERR_BADSESSION: u32 = 10052;
pub const NFS4ERR_BADSLOT: u32 = 10053;
pub const NFS4ERR_SEQ_MISORDERED: u32 = 10063;
pub const NFS4ERR_SEQUENCE_POS: u32 = 10064;
pub const NFS4ERR_REP_TOO_BIG_TO_CACHE: u32 = 10067;
pub const NFS4ERR_RETRY_UNCACHED_REP: u32 = 10068;
pub const NFS4ERR_TOO_MANY_OPS: u32 = 10070;
pub const NFS4ERR_OP_NOT_IN_SESSION: u32 = 10071;
pub const NFS4ERR_CLIENTID_BUSY: u32 = 10074;
pub const NFS4ERR_NOT_ONLY_OP: u32 = 10081;

/// A current or saved filehandle: the pseudo-root above the exports, or
/// a handle of an export (the same bytes as v3's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fh {
    Pseudo,
    Real(Vec<u8>),
}

/// The pseudo-root's handle: no v3 handle starts with 0xff.
pub const PSEUDO_ROOT: [u8; 16] = *b"\xffvnas-v4-pseudo\x00";

/// One COMPOUND being run.
pub struct Compound<'a> {
    pub state: &'a State,
    pub conn: Conn,
    pub auth: &'a Auth,
    pub minor: u32,
    pub current: Option<Fh>,
    pub saved: Option<Fh>,
    /// The client ID SEQUENCE named (NFSv4.1).
    pub clientid: Option<u64>,
    /// The operation running is the COMPOUND's last, and SEQUENCE did not
    /// ask for the reply to be kept: a READ may then send its data from
    /// the file (`file`) instead of through the reply's buffer.
    pub last_uncached: bool,
    pub cachethis: bool,
    pub file: Option<crate::rpc::FileBody>,
    /// Decode the operation's arguments only: its result is replayed
    /// (NFSv4.0's open-owner sequence ids).
    pub dry: bool,
}

/// Minor versions served: 4.0, 4.1 and 4.2.
pub const MINOR_MAX: u32 = 2;

const OP_SEQUENCE: u32 = 53;

/// Operations that may come without SEQUENCE, alone in their COMPOUND:
/// BIND_CONN_TO_SESSION, EXCHANGE_ID, CREATE_SESSION, DESTROY_SESSION,
/// DESTROY_CLIENTID.
fn sessionless(op: u32) -> bool {
    matches!(op, 41..=44 | 57)
}

/// COMPOUND (procedure 1): each operation in order until one fails; the
/// reply holds the results up to that one. In NFSv4.1 the first operation
/// is SEQUENCE, and a retry in its slot gets the first reply again.
pub fn compound(state: &State, conn: Conn, auth: &Auth, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let mut x = XdrReader::new(args);
    let tag = x.opaque(TAG_MAX).map_err(|_| Garbage)?;
    let minor = x.u32().map_err(|_| Garbage)?;
    let count = x.u32().map_err(|_| Garbage)? as usize;
    let mut results = Xdr::default();
    let mut done = 0u32;
    let mut status = NFS4_OK;
    // The session slot this call holds, to keep its reply in; let go
    // (reply not kept) if the call ends otherwise, even by a panic.
    let mut slot = Held { sessions: &state.sessions, at: None };
    let mut file: Option<crate::rpc::FileBody> = None;
    if minor > MINOR_MAX {
        status = NFS4ERR_MINOR_VERS_MISMATCH;
    } else if count > OPS_MAX {
        status = if minor == 0 { NFS4ERR_RESOURCE } else { NFS4ERR_TOO_MANY_OPS };
    } else {
        let mut run = Compound {
            state,
            conn,
            auth,
            minor,
            current: None,
            saved: None,
            clientid: None,
            last_uncached: false,
            cachethis: minor == 0,
            file: None,
            dry: false,
        };
        for i in 0..count {
            run.last_uncached = i + 1 == count && !run.cachethis;
            let Ok(op) = x.u32() else {
                status = NFS4ERR_BADXDR;
                break;
            };
            let result = if minor >= 1 && i == 0 && op == OP_SEQUENCE {
                match ops41::sequence(&mut run, &mut x, count as u32) {
                    Ok(ops41::Seq::Replay(reply)) => {
                        out.buf_mut().extend_from_slice(&reply);
                        return Ok(());
                    }
                    Ok(ops41::Seq::Go(held, body)) => {
                        slot.at = Some(held);
                        Ok((NFS4_OK, body))
                    }
                    Ok(ops41::Seq::Refused(stat)) => Ok((stat, Vec::new())),
                    Err(Garbage) => Err(Garbage),
                }
            } else if minor >= 1 && op == OP_SEQUENCE {
                Ok((NFS4ERR_SEQUENCE_POS, Vec::new()))
            } else if minor >= 1 && i == 0 && !sessionless(op) && (3..=OP_MAX).contains(&op) {
                Ok((NFS4ERR_OP_NOT_IN_SESSION, Vec::new()))
            } else if minor >= 1 && sessionless(op) && count > 1 && op != 44 {
                Ok((NFS4ERR_NOT_ONLY_OP, Vec::new()))
            } else {
                ops::run(&mut run, op, &mut x)
            };
            let (stat, body) = result.unwrap_or((NFS4ERR_BADXDR, Vec::new()));
            let op = if stat == NFS4ERR_OP_ILLEGAL { OP_ILLEGAL } else { op };
            results.u32(op).u32(stat);
            // A failed operation's body is empty, but for the few whose
            // result carries something whatever the status (SETATTR).
            results.0.extend_from_slice(&body);
            done += 1;
            status = stat;
            if stat != NFS4_OK {
                tracing::debug!(op, status = stat, minor, "NFSv4 operation failed");
                break;
            }
        }
        file = run.file.take();
    }
    let mut head = Xdr::default();
    head.u32(status).opaque(tag).u32(done);
    let at = out.buf_mut().len();
    out.buf_mut().extend_from_slice(&head.0);
    out.buf_mut().extend_from_slice(&results.0);
    if let Some((id, slot)) = slot.at.take() {
        let kept = if file.is_some() { None } else { Some(&out.buf_mut()[at..]) };
        state.sessions.finish(&id, slot, kept);
    }
    if let Some(file) = file {
        out.attach_file(file);
    }
    Ok(())
}

/// A session slot held by a call.
struct Held<'a> {
    sessions: &'a session::Sessions,
    at: Option<(session::SessionId, u32)>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some((id, slot)) = self.at.take() {
            self.sessions.finish(&id, slot, None);
        }
    }
}

/// The highest operation number known (NFSv4.2's CLONE).
pub const OP_MAX: u32 = 71;

/// An NFSv3 status as NFSv4's (the numbers are the same where both have
/// the error; JUKEBOX is DELAY).
pub fn status4(stat: nfs3_types::nfs3::nfsstat3) -> u32 {
    stat as u32
}
