//! SYMLINK (procedure 10). The target is stored as given; the server never
//! follows it, so a target pointing outside the export reaches nothing.

use nfs3_types::nfs3::*;

use super::made::make_in;
use super::{decode, reply, sattr, Garbage, Req};
use crate::fs::errno_stat;
use crate::limits::PATH_MAX;
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: SYMLINK3args = decode(args)?;
    let target_path = args.symlink.symlink_data.0.as_ref();
    let rest = sattr::without_mode(&args.symlink.symlink_attributes);
    let result = make_in(req, &args.where_, Some(&rest), |dir, name| {
        if target_path.is_empty() || target_path.contains(&0) {
            return Err(nfsstat3::NFS3ERR_INVAL);
        }
        if target_path.len() > PATH_MAX {
            return Err(nfsstat3::NFS3ERR_NAMETOOLONG);
        }
        rustix::fs::symlinkat(target_path, &dir.fd, name).map_err(errno_stat)
    });
    let result = result.map(|made| SYMLINK3resok {
        obj: made.obj,
        obj_attributes: made.obj_attributes,
        dir_wcc: made.dir_wcc,
    });
    reply(out, result.map_err(|(stat, dir_wcc)| (stat, SYMLINK3resfail { dir_wcc })));
    Ok(())
}
