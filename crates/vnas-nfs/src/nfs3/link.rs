//! LINK (procedure 15): a hard link to a file.

use nfs3_types::nfs3::*;
use rustix::fs::AtFlags;

use super::{decode, reply, Garbage, Req};
use crate::fs::export::check_new_name;
use crate::fs::{attr, errno_stat};
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: LINK3args = decode(args)?;
    let result = (|| {
        let none = |s| (s, Nfs3Option::None, wcc_data::default());
        let (file_t, dir_t) = req.target_pair(&args.file, &args.link.dir).map_err(none)?;
        let file = file_t.export.resolve(&file_t.fh).map_err(none)?;
        let (dir, _changing) = dir_t.export.resolve_to_change(&dir_t.fh).map_err(none)?;
        let failed =
            |stat| (stat, file_t.post_op(file.restat().ok()), dir_t.wcc(Some(&dir.stat), dir.restat().ok()));
        let name = args.link.name.as_ref();
        check_new_name(name).map_err(failed)?;
        if attr::is_dir(&file.stat) {
            return Err(failed(nfsstat3::NFS3ERR_ISDIR));
        }
        if !attr::is_dir(&dir.stat) {
            return Err(failed(nfsstat3::NFS3ERR_NOTDIR));
        }
        dir_t.act_as_caller();
        rustix::fs::linkat(rustix::fs::CWD, file.proc_path(), &dir.fd, name, AtFlags::SYMLINK_FOLLOW)
            .map_err(|e| failed(errno_stat(e)))?;
        dir_t.export.remember(dir.ino(), name, &file.stat);
        Ok(LINK3resok {
            file_attributes: file_t.post_op(file.restat().ok()),
            linkdir_wcc: dir_t.wcc(Some(&dir.stat), dir.restat().ok()),
        })
    })();
    let result = result.map_err(|(stat, file_attributes, linkdir_wcc)| {
        (stat, LINK3resfail { file_attributes, linkdir_wcc })
    });
    reply(out, result);
    Ok(())
}
