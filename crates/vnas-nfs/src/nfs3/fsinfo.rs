//! FSINFO (procedure 19): the transfer sizes clients use.

use nfs3_types::nfs3::*;

use super::{decode, reply, Garbage, Req};
use crate::limits::{READDIR_REPLY_MAX, READ_MAX, WRITE_MAX};
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: FSINFO3args = decode(args)?;
    let mut obj_attributes = Nfs3Option::None;
    let result = (|| {
        let target = req.target(&args.fsroot)?;
        let obj = target.export.resolve(&target.fh)?;
        obj_attributes = target.post_op(Some(obj.stat));
        Ok(FSINFO3resok {
            obj_attributes: target.post_op(Some(obj.stat)),
            rtmax: READ_MAX,
            rtpref: READ_MAX,
            rtmult: 4096,
            wtmax: WRITE_MAX,
            wtpref: WRITE_MAX,
            wtmult: 4096,
            dtpref: READDIR_REPLY_MAX.min(64 * 1024),
            maxfilesize: i64::MAX as u64,
            time_delta: nfstime3 { seconds: 0, nseconds: 1 },
            properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
        })
    })();
    reply(out, result.map_err(|stat| (stat, FSINFO3resfail { obj_attributes })));
    Ok(())
}
