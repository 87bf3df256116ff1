//! FSSTAT (procedure 18).

use nfs3_types::nfs3::*;

use super::{decode, reply, Garbage, Req};
use crate::fs::errno_stat;
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: FSSTAT3args = decode(args)?;
    let mut obj_attributes = Nfs3Option::None;
    let result = (|| {
        let target = req.target(&args.fsroot)?;
        let obj = target.export.resolve(&target.fh)?;
        obj_attributes = target.post_op(Some(obj.stat));
        let vfs = rustix::fs::fstatvfs(&obj.fd).map_err(errno_stat)?;
        let unit = vfs.f_frsize;
        Ok(FSSTAT3resok {
            obj_attributes: target.post_op(Some(obj.stat)),
            tbytes: vfs.f_blocks * unit,
            fbytes: vfs.f_bfree * unit,
            abytes: vfs.f_bavail * unit,
            tfiles: vfs.f_files,
            ffiles: vfs.f_ffree,
            afiles: vfs.f_favail,
            invarsec: 0,
        })
    })();
    reply(out, result.map_err(|stat| (stat, FSSTAT3resfail { obj_attributes })));
    Ok(())
}
