//! GETATTR (procedure 1).

use nfs3_types::nfs3::*;

use super::{decode, reply, void_err, Garbage, Req};
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: GETATTR3args = decode(args)?;
    let result = (|| {
        let target = req.target(&args.object)?;
        let obj = target.export.resolve(&target.fh)?;
        Ok(GETATTR3resok { obj_attributes: target.fattr(&obj.stat) })
    })();
    reply(out, result.map_err(void_err));
    Ok(())
}
