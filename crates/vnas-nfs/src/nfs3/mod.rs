//! NFSv3 (RFC 1813): one file per procedure, and the table that dispatches
//! to them with what the duplicate-request cache needs to know.

// Failure results carry the wire's wcc_data and attributes; they are built
// once per call and packed at once, so their size does not matter.
#![allow(clippy::result_large_err)]

mod access;
mod commit;
mod create;
mod fsinfo;
mod fsstat;
mod getattr;
mod link;
mod lookup;
mod made;
mod mkdir;
mod mknod;
mod pathconf;
mod read;
mod readdir;
pub use readdir::open_listing as readdir_open_listing;
mod readdirplus;
mod readlink;
mod remove;
mod rename;
mod rmdir;
mod sattr;
mod setattr;
mod symlink;
mod write;

use std::io::Cursor;
use std::net::IpAddr;
use std::sync::Arc;

use nfs3_types::nfs3::{fattr3, nfs_fh3, nfsstat3, post_op_attr, pre_op_attr, wcc_data, Nfs3Option};
use nfs3_types::xdr_codec::{Pack, Unpack, Void};
use rustix::fs::Statx;

use crate::config::{Access, ClientRule};
use crate::creds::{self, Creds};
use crate::fs::{attr, Export, NfsResult, Obj};
use crate::handle::FileHandle;
use crate::rpc::{Auth, Reply};
use crate::server::State;

pub const PROGRAM: u32 = nfs3_types::nfs3::PROGRAM;
pub const VERSION: u32 = nfs3_types::nfs3::VERSION;

/// The arguments could not be decoded (the reply is GARBAGE_ARGS).
#[derive(Debug)]
pub struct Garbage;

pub type Run = fn(&Req<'_>, &[u8], &mut Reply) -> Result<(), Garbage>;

/// One procedure in the dispatch table.
pub struct Proc {
    pub name: &'static str,
    /// Changes the filesystem: refused on read-only exports.
    pub modifies: bool,
    /// Not idempotent: a retransmission gets the first reply from the
    /// duplicate-request cache instead of running again.
    pub replay: bool,
    pub run: Run,
}

const fn proc_(name: &'static str, modifies: bool, replay: bool, run: Run) -> Proc {
    Proc { name, modifies, replay, run }
}

/// RFC 1813 procedure numbers 0 to 21, in order.
pub static PROCS: [Proc; 22] = [
    proc_("NULL", false, false, |_, _, _| Ok(())),
    proc_("GETATTR", false, false, getattr::run),
    proc_("SETATTR", true, true, setattr::run),
    proc_("LOOKUP", false, false, lookup::run),
    proc_("ACCESS", false, false, access::run),
    proc_("READLINK", false, false, readlink::run),
    proc_("READ", false, false, read::run),
    proc_("WRITE", true, false, write::run),
    proc_("CREATE", true, true, create::run),
    proc_("MKDIR", true, true, mkdir::run),
    proc_("SYMLINK", true, true, symlink::run),
    proc_("MKNOD", true, true, mknod::run),
    proc_("REMOVE", true, true, remove::run),
    proc_("RMDIR", true, true, rmdir::run),
    proc_("RENAME", true, true, rename::run),
    proc_("LINK", true, true, link::run),
    proc_("READDIR", false, false, readdir::run),
    proc_("READDIRPLUS", false, false, readdirplus::run),
    proc_("FSSTAT", false, false, fsstat::run),
    proc_("FSINFO", false, false, fsinfo::run),
    proc_("PATHCONF", false, false, pathconf::run),
    proc_("COMMIT", false, false, commit::run),
];

/// One call being served.
pub struct Req<'a> {
    pub state: &'a State,
    pub client: IpAddr,
    /// The caller's source port, for the exports(5) `secure` check.
    pub port: u16,
    pub auth: &'a Auth,
    pub proc_: &'a Proc,
}

/// A handle checked against its export and the client's rights.
pub struct Target<'a> {
    /// Held for the call: a change of the exports meanwhile does not pull
    /// it from under the call.
    pub export: Arc<Export>,
    _call: std::marker::PhantomData<&'a State>,
    pub fh: FileHandle,
    pub creds: Creds,
}

impl Target<'_> {
    /// Performs the namespace change that follows as the client's user, so
    /// the kernel checks permissions and sets ownership.
    pub fn act_as_caller(&self) {
        creds::assume(&self.creds);
    }

    pub fn fattr(&self, stat: &Statx) -> fattr3 {
        attr::fattr(stat, self.export.fsid())
    }

    pub fn post_op(&self, stat: Option<Statx>) -> post_op_attr {
        match stat {
            Some(stat) => Nfs3Option::Some(self.fattr(&stat)),
            None => Nfs3Option::None,
        }
    }

    pub fn wcc(&self, before: Option<&Statx>, after: Option<Statx>) -> wcc_data {
        let before: pre_op_attr = match before {
            Some(stat) => Nfs3Option::Some(attr::wcc(stat)),
            None => Nfs3Option::None,
        };
        wcc_data { before, after: self.post_op(after) }
    }

    /// The handle of `name` in `dir`, whose attributes are `stat`.
    pub fn handle(&self, dir: &Obj, name: &[u8], stat: &Statx) -> nfs_fh3 {
        self.export.handle_at(&dir.fd, name, stat)
    }

    /// Whether the caller may do `want` (ACCESS3_* bits) to an object,
    /// checked by the server where it performs the call with its own rights.
    pub fn may(&self, stat: &Statx, want: u32) -> bool {
        access::granted(stat, &self.creds, want) == want
    }

    /// For READ and WRITE: mode bits, or owning the file (NFS clients
    /// check permission at open, and may keep writing after a chmod).
    pub fn may_data(&self, stat: &Statx, want: u32) -> bool {
        stat.stx_uid == self.creds.uid || self.may(stat, want)
    }
}

impl<'a> Req<'a> {
    /// Finds the export a handle names, verifies the handle, and applies
    /// the export's client rules.
    pub fn target(&self, fh: &nfs_fh3) -> NfsResult<Target<'a>> {
        let decoded = FileHandle::decode(&fh.data).map_err(|_| nfsstat3::NFS3ERR_BADHANDLE)?;
        let export = self.state.export_by_id(decoded.export_id).ok_or(nfsstat3::NFS3ERR_BADHANDLE)?;
        let fh = export.verify(&fh.data)?;
        let rule = export.rule_for(self.client).ok_or(nfsstat3::NFS3ERR_ACCES)?;
        let rule = &rule;
        if !rule.port_allowed(self.port, creds::can_switch()) {
            // knfsd's answer to a call from an unreserved port (nfserr_perm).
            return Err(nfsstat3::NFS3ERR_PERM);
        }
        if self.proc_.modifies && rule.access == Access::ReadOnly {
            return Err(nfsstat3::NFS3ERR_ROFS);
        }
        Ok(Target { creds: self.creds(rule), export, fh, _call: std::marker::PhantomData })
    }

    /// Two handles of one call (RENAME, LINK) must name the same export.
    pub fn target_pair(&self, a: &nfs_fh3, b: &nfs_fh3) -> NfsResult<(Target<'a>, Target<'a>)> {
        let a = self.target(a)?;
        let b = self.target(b)?;
        if a.export.id != b.export.id {
            return Err(nfsstat3::NFS3ERR_XDEV);
        }
        Ok((a, b))
    }

    fn creds(&self, rule: &ClientRule) -> Creds {
        if !creds::can_switch() {
            // Not root: everything happens with the server's own rights.
            return Creds {
                uid: rustix::process::geteuid().as_raw(),
                gid: rustix::process::getegid().as_raw(),
                gids: Vec::new(),
            };
        }
        match self.auth {
            Auth::None => Creds::anonymous(rule),
            Auth::Sys { uid, gid, gids } => Creds { uid: *uid, gid: *gid, gids: gids.clone() }.squashed(rule),
        }
    }
}

pub fn decode<T: Unpack>(args: &[u8]) -> Result<T, Garbage> {
    T::unpack(&mut Cursor::new(args)).map(|(value, _)| value).map_err(|_| Garbage)
}

/// Packs a procedure's result: `Ok` with its body, or an error status with
/// the failure body the procedure built.
pub fn reply<T: Pack, E: Pack>(reply: &mut Reply, result: Result<T, (nfsstat3, E)>) {
    match result {
        Ok(ok) => reply.pack(&nfs3_types::nfs3::Nfs3Result::<T, E>::Ok(ok)),
        Err(err) => reply.pack(&nfs3_types::nfs3::Nfs3Result::<T, E>::Err(err)),
    }
}

/// For results whose failure body is empty.
pub fn void_err(stat: nfsstat3) -> (nfsstat3, Void) {
    (stat, Void)
}
