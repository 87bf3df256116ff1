//! PATHCONF (procedure 20).

use nfs3_types::nfs3::*;

use super::{decode, reply, Garbage, Req};
use crate::limits::NAME_MAX;
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: PATHCONF3args = decode(args)?;
    let mut obj_attributes = Nfs3Option::None;
    let result = (|| {
        let target = req.target(&args.object)?;
        let obj = target.export.resolve(&target.fh)?;
        obj_attributes = target.post_op(Some(obj.stat));
        Ok(PATHCONF3resok {
            obj_attributes: target.post_op(Some(obj.stat)),
            linkmax: 65000,
            name_max: NAME_MAX as u32,
            no_trunc: true,
            chown_restricted: true,
            case_insensitive: false,
            case_preserving: true,
        })
    })();
    reply(out, result.map_err(|stat| (stat, PATHCONF3resfail { obj_attributes })));
    Ok(())
}
