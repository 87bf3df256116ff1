//! REMOVE (procedure 12).

use nfs3_types::nfs3::*;
use rustix::fs::AtFlags;

use super::made::stat_at;
use super::{decode, reply, Garbage, Req};
use crate::fs::export::check_new_name;
use crate::fs::{attr, errno_stat};
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: REMOVE3args = decode(args)?;
    let result = (|| {
        let target = req.target(&args.object.dir).map_err(|s| (s, wcc_data::default()))?;
        let (dir, _changing) =
            target.export.resolve_to_change(&target.fh).map_err(|s| (s, wcc_data::default()))?;
        let failed = |stat| (stat, target.wcc(Some(&dir.stat), dir.restat().ok()));
        let name = args.object.name.as_ref();
        check_new_name(name).map_err(failed)?;
        let victim = stat_at(&dir, name).map_err(failed)?;
        if attr::is_dir(&victim) {
            return Err(failed(nfsstat3::NFS3ERR_ISDIR));
        }
        target.act_as_caller();
        rustix::fs::unlinkat(&dir.fd, name, AtFlags::empty()).map_err(|e| failed(errno_stat(e)))?;
        if victim.stx_nlink <= 1 {
            target.export.forget(victim.stx_ino);
        }
        Ok(REMOVE3resok { dir_wcc: target.wcc(Some(&dir.stat), dir.restat().ok()) })
    })();
    reply(out, result.map_err(|(stat, dir_wcc)| (stat, REMOVE3resfail { dir_wcc })));
    Ok(())
}
