//! READDIR (procedure 16).

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::List;

use super::{decode, reply, Garbage, Req};
use crate::fs::{attr, dir};
use crate::limits::READDIR_REPLY_MAX;
use crate::rpc::Reply;

/// Reply bytes before the first entry: status, attributes, verifier;
/// after the last: list end and eof.
pub const FIXED_COST: usize = 4 + (4 + 84) + 8 + 4 + 4;

/// What one entry costs in a READDIR reply (and in READDIRPLUS's dircount).
pub fn entry_cost(name: &[u8]) -> usize {
    4 + 8 + 4 + name.len().div_ceil(4) * 4 + 8
}

/// What READDIR and READDIRPLUS check before listing: a directory the
/// caller may read. Returns it opened for reading entries.
pub fn open_listing(
    target: &super::Target<'_>,
    obj: &crate::fs::Obj,
) -> crate::fs::NfsResult<std::os::fd::OwnedFd> {
    if !attr::is_dir(&obj.stat) {
        return Err(nfsstat3::NFS3ERR_NOTDIR);
    }
    if !target.may(&obj.stat, ACCESS3_READ) {
        return Err(nfsstat3::NFS3ERR_ACCES);
    }
    dir::open(obj)
}

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: READDIR3args = decode(args)?;
    let mut dir_attributes = Nfs3Option::None;
    let result = (|| {
        let target = req.target(&args.dir)?;
        let obj = target.export.resolve(&target.fh)?;
        dir_attributes = target.post_op(Some(obj.stat));
        let fd = open_listing(&target, &obj)?;
        let budget = args.count.min(READDIR_REPLY_MAX) as usize;
        let mut used = FIXED_COST;
        let mut entries = Vec::new();
        let at_root = obj.ino() == target.export.root_ino();
        let eof = dir::read(&fd, args.cookie, |entry| {
            let cost = entry_cost(entry.name);
            if used + cost > budget {
                return false;
            }
            used += cost;
            let fileid = if at_root && entry.name == b".." { obj.ino() } else { entry.ino };
            entries.push(entry3 { fileid, name: filename3::from(entry.name.to_vec()), cookie: entry.cookie });
            true
        })?;
        if entries.is_empty() && !eof {
            return Err(nfsstat3::NFS3ERR_TOOSMALL);
        }
        Ok(READDIR3resok {
            dir_attributes: target.post_op(obj.restat().ok()),
            cookieverf: cookieverf3::default(),
            reply: dirlist3 { entries: List(entries), eof },
        })
    })();
    reply(out, result.map_err(|stat| (stat, READDIR3resfail { dir_attributes })));
    Ok(())
}
