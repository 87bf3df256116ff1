//! READDIRPLUS (procedure 17): entries with their attributes and handles.

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::List;

use super::made::stat_at;
use super::readdir::{entry_cost, FIXED_COST};
use super::{decode, reply, Garbage, Req};
use crate::fs::dir;
use crate::handle::HANDLE_LEN_MAX;
use crate::limits::READDIR_REPLY_MAX;
use crate::rpc::Reply;

/// Attributes and handle added to each entry.
const PLUS_COST: usize = (4 + 84) + (4 + 4 + HANDLE_LEN_MAX);

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: READDIRPLUS3args = decode(args)?;
    let mut dir_attributes = Nfs3Option::None;
    let result = (|| {
        let target = req.target(&args.dir)?;
        let obj = target.export.resolve(&target.fh)?;
        dir_attributes = target.post_op(Some(obj.stat));
        let fd = super::readdir::open_listing(&target, &obj)?;
        let max_bytes = args.maxcount.min(READDIR_REPLY_MAX) as usize;
        let max_dir_bytes = args.dircount as usize;
        let (mut used, mut dir_used) = (FIXED_COST, 0);
        let mut entries = Vec::new();
        let at_root = obj.ino() == target.export.root_ino();
        let eof = dir::read(&fd, args.cookie, |entry| {
            let cost = entry_cost(entry.name);
            if used + cost + PLUS_COST > max_bytes || (dir_used + cost > max_dir_bytes && !entries.is_empty())
            {
                return false;
            }
            used += cost + PLUS_COST;
            dir_used += cost;
            let stat = match entry.name {
                b"." => Some(obj.stat),
                b".." if at_root => Some(obj.stat),
                name => stat_at(&obj, name).ok(),
            };
            if let Some(stat) = &stat {
                if entry.name != b"." && entry.name != b".." {
                    target.export.remember(obj.ino(), entry.name, stat);
                }
            }
            entries.push(entryplus3 {
                fileid: stat.as_ref().map_or(entry.ino, |s| s.stx_ino),
                name: filename3::from(entry.name.to_vec()),
                cookie: entry.cookie,
                name_handle: match &stat {
                    Some(stat) => Nfs3Option::Some(target.handle(&obj, entry.name, stat)),
                    None => Nfs3Option::None,
                },
                name_attributes: target.post_op(stat),
            });
            true
        })?;
        if entries.is_empty() && !eof {
            return Err(nfsstat3::NFS3ERR_TOOSMALL);
        }
        Ok(READDIRPLUS3resok {
            dir_attributes: target.post_op(obj.restat().ok()),
            cookieverf: cookieverf3::default(),
            reply: dirlistplus3 { entries: List(entries), eof },
        })
    })();
    reply(out, result.map_err(|stat| (stat, READDIRPLUS3resfail { dir_attributes })));
    Ok(())
}
