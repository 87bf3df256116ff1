//! RENAME (procedure 14). The handle of the renamed object stays valid: the
//! server moves its record of where the object is.

use nfs3_types::nfs3::*;

use super::made::stat_at;
use super::{decode, reply, Garbage, Req};
use crate::fs::errno_stat;
use crate::fs::export::check_new_name;
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: RENAME3args = decode(args)?;
    let none = || (wcc_data::default(), wcc_data::default());
    let result = (|| {
        let (from, to) = req.target_pair(&args.from.dir, &args.to.dir).map_err(|s| (s, none()))?;
        let (from_dir, to_dir, _changing, _also) =
            from.export.resolve_two_to_change(&from.fh, &to.fh).map_err(|s| (s, none()))?;
        let wccs = || {
            (
                from.wcc(Some(&from_dir.stat), from_dir.restat().ok()),
                to.wcc(Some(&to_dir.stat), to_dir.restat().ok()),
            )
        };
        let (from_name, to_name) = (args.from.name.as_ref(), args.to.name.as_ref());
        check_new_name(from_name).map_err(|s| (s, wccs()))?;
        check_new_name(to_name).map_err(|s| (s, wccs()))?;
        let moving = stat_at(&from_dir, from_name).map_err(|s| (s, wccs()))?;
        let replaced = stat_at(&to_dir, to_name).ok();
        from.act_as_caller();
        rustix::fs::renameat(&from_dir.fd, from_name, &to_dir.fd, to_name)
            .map_err(|e| (errno_stat(e), wccs()))?;
        if let Some(old) = replaced {
            if old.stx_ino != moving.stx_ino && old.stx_nlink <= 1 {
                from.export.forget(old.stx_ino);
            }
        }
        from.export.remember(to_dir.ino(), to_name, &moving);
        Ok(wccs())
    })();
    let result = result.map(|(fromdir_wcc, todir_wcc)| RENAME3resok { fromdir_wcc, todir_wcc });
    let result =
        result.map_err(|(stat, (fromdir_wcc, todir_wcc))| (stat, RENAME3resfail { fromdir_wcc, todir_wcc }));
    reply(out, result);
    Ok(())
}
