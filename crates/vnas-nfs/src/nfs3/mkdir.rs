//! MKDIR (procedure 9).

use nfs3_types::nfs3::*;

use super::made::make_in;
use super::{decode, reply, sattr, Garbage, Req};
use crate::fs::errno_stat;
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: MKDIR3args = decode(args)?;
    let rest = sattr::without_mode(&args.attributes);
    let result = make_in(req, &args.where_, Some(&rest), |dir, name| {
        rustix::fs::mkdirat(&dir.fd, name, sattr::mode_of(&args.attributes, 0o755)).map_err(errno_stat)
    });
    let result = result.map(|made| MKDIR3resok {
        obj: made.obj,
        obj_attributes: made.obj_attributes,
        dir_wcc: made.dir_wcc,
    });
    reply(out, result.map_err(|(stat, dir_wcc)| (stat, MKDIR3resfail { dir_wcc })));
    Ok(())
}
