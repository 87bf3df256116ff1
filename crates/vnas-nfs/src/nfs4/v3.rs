//! NFSv4 operations that change the filesystem run NFSv3's procedures
//! underneath, so both versions share one implementation of creates,
//! writes, renames and their checks (export rules, squashing, the
//! caller's identity, exclusive-create verifiers).

use std::io::Cursor;

use nfs3_types::nfs3::nfsstat3;
use nfs3_types::xdr_codec::{Pack, Unpack};

use super::{Compound, NFS4ERR_SERVERFAULT};
use crate::nfs3::{Req, PROCS};
use crate::rpc::Reply;

/// NFSv3 procedure numbers used here.
pub const SETATTR: usize = 2;
pub const READLINK: usize = 5;
pub const WRITE: usize = 7;
pub const CREATE: usize = 8;
pub const MKDIR: usize = 9;
pub const SYMLINK: usize = 10;
pub const MKNOD: usize = 11;
pub const REMOVE: usize = 12;
pub const RMDIR: usize = 13;
pub const RENAME: usize = 14;
pub const LINK: usize = 15;
pub const COMMIT: usize = 21;

/// Runs NFSv3 procedure `proc_` with `args` as this COMPOUND's caller; its
/// result body, or the error as an NFSv4 status (the numbers agree).
pub fn call<A: Pack, T: Unpack>(c: &Compound<'_>, proc_: usize, args: &A) -> Result<T, u32> {
    let mut packed = Vec::new();
    args.pack(&mut packed).map_err(|_| NFS4ERR_SERVERFAULT)?;
    let req = Req {
        state: c.state,
        client: c.conn.peer.ip(),
        port: c.conn.peer.port(),
        auth: c.auth,
        proc_: &PROCS[proc_],
    };
    let mut reply = Reply::success(0, 0);
    let at = reply.buf_mut().len();
    (PROCS[proc_].run)(&req, &packed, &mut reply).map_err(|_| NFS4ERR_SERVERFAULT)?;
    let body = &reply.buf_mut()[at..];
    let mut cursor = Cursor::new(body);
    let (stat, _) = u32::unpack(&mut cursor).map_err(|_| NFS4ERR_SERVERFAULT)?;
    if stat != nfsstat3::NFS3_OK as u32 {
        return Err(stat);
    }
    T::unpack(&mut cursor).map(|(value, _)| value).map_err(|_| NFS4ERR_SERVERFAULT)
}
