//! NFSv4.0 (RFC 7530), the first part: COMPOUND with the current and saved
//! filehandles, the pseudo-filesystem (the exports under one root), client
//! records, and what a client needs to list, look up, read and open files:
//! PUTROOTFH, PUTPUBFH, PUTFH, GETFH, SAVEFH, RESTOREFH, LOOKUP, LOOKUPP,
//! GETATTR, ACCESS, READDIR, OPEN (existing files), OPEN_CONFIRM, CLOSE,
//! READ, SECINFO, SETCLIENTID, SETCLIENTID_CONFIRM, RENEW. Every other
//! operation answers NFS4ERR_NOTSUPP. Served only when the caller asks
//! (`ServerConfig::nfs4`): until it writes too, a client that mounts with
//! no options must keep falling back to v3.

pub mod attrs;
mod ops;
pub mod state;

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
pub const NFS4ERR_NOTDIR: u32 = 20;
pub const NFS4ERR_ISDIR: u32 = 21;
pub const NFS4ERR_INVAL: u32 = 22;
pub const NFS4ERR_ROFS: u32 = 30;
pub const NFS4ERR_STALE: u32 = 70;
pub const NFS4ERR_BADHANDLE: u32 = 10001;
pub const NFS4ERR_NOTSUPP: u32 = 10004;
pub const NFS4ERR_TOOSMALL: u32 = 10005;
pub const NFS4ERR_SERVERFAULT: u32 = 10006;
pub const NFS4ERR_RESOURCE: u32 = 10018;
pub const NFS4ERR_NOFILEHANDLE: u32 = 10020;
pub const NFS4ERR_MINOR_VERS_MISMATCH: u32 = 10021;
pub const NFS4ERR_STALE_CLIENTID: u32 = 10022;
pub const NFS4ERR_BAD_STATEID: u32 = 10025;
pub const NFS4ERR_SYMLINK: u32 = 10029;
pub const NFS4ERR_RESTOREFH: u32 = 10030;
pub const NFS4ERR_BADXDR: u32 = 10036;
pub const NFS4ERR_OPENMODE: u32 = 10038;
pub const NFS4ERR_OP_ILLEGAL: u32 = 10044;
pub const OP_ILLEGAL: u32 = 10044;

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
    pub current: Option<Fh>,
    pub saved: Option<Fh>,
}

/// COMPOUND (procedure 1): each operation in order until one fails; the
/// reply holds the results up to that one.
pub fn compound(state: &State, conn: Conn, auth: &Auth, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let mut x = XdrReader::new(args);
    let tag = x.opaque(TAG_MAX).map_err(|_| Garbage)?;
    let minor = x.u32().map_err(|_| Garbage)?;
    let count = x.u32().map_err(|_| Garbage)? as usize;
    let mut results = Xdr::default();
    let mut done = 0u32;
    let mut status = NFS4_OK;
    if minor != 0 {
        status = NFS4ERR_MINOR_VERS_MISMATCH;
    } else if count > OPS_MAX {
        status = NFS4ERR_RESOURCE;
    } else {
        let mut run = Compound { state, conn, auth, current: None, saved: None };
        for _ in 0..count {
            let Ok(op) = x.u32() else {
                status = NFS4ERR_BADXDR;
                break;
            };
            let (op, (stat, body)) = match ops::run(&mut run, op, &mut x) {
                Ok(result) => (op, result),
                Err(Garbage) => (op, (NFS4ERR_BADXDR, Vec::new())),
            };
            let op = if stat == NFS4ERR_OP_ILLEGAL { OP_ILLEGAL } else { op };
            results.u32(op).u32(stat);
            if stat == NFS4_OK {
                results.0.extend_from_slice(&body);
            }
            done += 1;
            status = stat;
            if stat != NFS4_OK {
                break;
            }
        }
    }
    let mut head = Xdr::default();
    head.u32(status).opaque(tag).u32(done);
    out.buf_mut().extend_from_slice(&head.0);
    out.buf_mut().extend_from_slice(&results.0);
    Ok(())
}

/// An NFSv3 status as NFSv4's (the numbers are the same where both have
/// the error; JUKEBOX is DELAY).
pub fn status4(stat: nfs3_types::nfs3::nfsstat3) -> u32 {
    stat as u32
}
