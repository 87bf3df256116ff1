//! READLINK (procedure 5). The server never follows a symlink itself; the
//! client resolves the target.

use nfs3_types::nfs3::*;

use super::{decode, reply, Garbage, Req};
use crate::fs::{attr, errno_stat};
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: READLINK3args = decode(args)?;
    let mut symlink_attributes = Nfs3Option::None;
    let result = (|| {
        let target = req.target(&args.symlink)?;
        let obj = target.export.resolve(&target.fh)?;
        symlink_attributes = target.post_op(Some(obj.stat));
        if attr::ftype(&obj.stat) != ftype3::NF3LNK {
            return Err(nfsstat3::NFS3ERR_INVAL);
        }
        let data = rustix::fs::readlinkat(&obj.fd, "", Vec::new()).map_err(errno_stat)?;
        Ok(READLINK3resok {
            symlink_attributes: target.post_op(Some(obj.stat)),
            data: nfspath3::from(data.into_bytes()),
        })
    })();
    reply(out, result.map_err(|stat| (stat, READLINK3resfail { symlink_attributes })));
    Ok(())
}
