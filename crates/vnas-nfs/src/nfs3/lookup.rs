//! LOOKUP (procedure 3).

use nfs3_types::nfs3::*;

use super::{decode, reply, Garbage, Req};
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: LOOKUP3args = decode(args)?;
    let mut dir_attributes = Nfs3Option::None;
    let result = (|| {
        let target = req.target(&args.what.dir)?;
        let dir = target.export.resolve(&target.fh)?;
        dir_attributes = target.post_op(Some(dir.stat));
        if !crate::fs::attr::is_dir(&dir.stat) {
            return Err(nfsstat3::NFS3ERR_NOTDIR);
        }
        if !target.may(&dir.stat, ACCESS3_LOOKUP) {
            return Err(nfsstat3::NFS3ERR_ACCES);
        }
        let stat = target.export.lookup(&dir, args.what.name.as_ref())?;
        Ok(LOOKUP3resok {
            object: target.handle(&dir, args.what.name.as_ref(), &stat),
            obj_attributes: target.post_op(Some(stat)),
            dir_attributes: target.post_op(Some(dir.stat)),
        })
    })();
    reply(out, result.map_err(|stat| (stat, LOOKUP3resfail { dir_attributes })));
    Ok(())
}
