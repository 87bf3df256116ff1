//! RMDIR (procedure 13).

use nfs3_types::nfs3::*;
use rustix::fs::AtFlags;

use super::made::stat_at;
use super::{decode, reply, Garbage, Req};
use crate::fs::errno_stat;
use crate::fs::export::check_name;
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: RMDIR3args = decode(args)?;
    let result = (|| {
        let target = req.target(&args.object.dir).map_err(|s| (s, wcc_data::default()))?;
        let (dir, _changing) =
            target.export.resolve_to_change(&target.fh).map_err(|s| (s, wcc_data::default()))?;
        let failed = |stat| (stat, target.wcc(Some(&dir.stat), dir.restat().ok()));
        let name = args.object.name.as_ref();
        check_name(name).map_err(failed)?;
        match name {
            b"." => return Err(failed(nfsstat3::NFS3ERR_INVAL)),
            b".." => return Err(failed(nfsstat3::NFS3ERR_EXIST)),
            _ => {}
        }
        let victim = stat_at(&dir, name).map_err(failed)?;
        target.act_as_caller();
        rustix::fs::unlinkat(&dir.fd, name, AtFlags::REMOVEDIR).map_err(|e| failed(errno_stat(e)))?;
        target.export.forget(victim.stx_ino);
        Ok(RMDIR3resok { dir_wcc: target.wcc(Some(&dir.stat), dir.restat().ok()) })
    })();
    reply(out, result.map_err(|(stat, dir_wcc)| (stat, RMDIR3resfail { dir_wcc })));
    Ok(())
}
