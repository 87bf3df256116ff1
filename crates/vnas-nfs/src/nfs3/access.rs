//! ACCESS (procedure 4), and the permission rules the server applies itself
//! where it reads or writes with its own rights.

use nfs3_types::nfs3::*;
use rustix::fs::Statx;

use super::{decode, reply, Garbage, Req};
use crate::creds::Creds;
use crate::fs::attr;
use crate::rpc::Reply;

/// Which of the `want` bits `creds` has on an object, from its mode bits.
pub fn granted(stat: &Statx, creds: &Creds, want: u32) -> u32 {
    let mode = u32::from(stat.stx_mode);
    let is_dir = attr::is_dir(stat);
    let bits = if creds.uid == 0 {
        // Root may read and write anything, and execute what anyone may.
        0o6 | u32::from(is_dir || mode & 0o111 != 0)
    } else if creds.uid == stat.stx_uid {
        (mode >> 6) & 7
    } else if creds.in_group(stat.stx_gid) {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    let mut have = 0;
    if bits & 4 != 0 {
        have |= ACCESS3_READ;
    }
    if bits & 2 != 0 {
        have |= ACCESS3_MODIFY | ACCESS3_EXTEND;
        if is_dir {
            have |= ACCESS3_DELETE;
        }
    }
    if bits & 1 != 0 {
        have |= if is_dir { ACCESS3_LOOKUP } else { ACCESS3_EXECUTE };
    }
    have & want
}

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: ACCESS3args = decode(args)?;
    let result = (|| {
        let target = req.target(&args.object)?;
        let obj = target.export.resolve(&target.fh)?;
        let access = granted(&obj.stat, &target.creds, args.access);
        Ok(ACCESS3resok { obj_attributes: target.post_op(Some(obj.stat)), access })
    })();
    reply(out, result.map_err(|stat| (stat, ACCESS3resfail::default())));
    Ok(())
}
