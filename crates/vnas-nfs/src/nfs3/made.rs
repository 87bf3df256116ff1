//! What CREATE, MKDIR, SYMLINK and MKNOD share: check the directory and the
//! name, make the object as the caller, set its attributes, and describe
//! the result.

use nfs3_types::nfs3::{diropargs3, nfsstat3, post_op_attr, post_op_fh3, sattr3, wcc_data, Nfs3Option};
use rustix::fs::{AtFlags, Mode, OFlags};

use super::{sattr, Req};
use crate::fs::attr::{self, STATX_MASK};
use crate::fs::export::check_new_name;
use crate::fs::{errno_stat, NfsResult, Obj};

pub struct Made {
    pub obj: post_op_fh3,
    pub obj_attributes: post_op_attr,
    pub dir_wcc: wcc_data,
}

pub type Failed = (nfsstat3, wcc_data);

/// Runs `make(dir, name)` and then applies `attrs` to the new object.
pub fn make_in(
    req: &Req<'_>,
    where_: &diropargs3<'_>,
    attrs: Option<&sattr3>,
    make: impl FnOnce(&Obj, &[u8]) -> NfsResult<()>,
) -> Result<Made, Failed> {
    let target = req.target(&where_.dir).map_err(|s| (s, wcc_data::default()))?;
    let (dir, _changing) =
        target.export.resolve_to_change(&target.fh).map_err(|s| (s, wcc_data::default()))?;
    let failed = |stat: nfsstat3| (stat, target.wcc(Some(&dir.stat), dir.restat().ok()));
    if !attr::is_dir(&dir.stat) {
        return Err(failed(nfsstat3::NFS3ERR_NOTDIR));
    }
    let name = where_.name.as_ref();
    check_new_name(name).map_err(failed)?;
    target.act_as_caller();
    make(&dir, name).map_err(failed)?;
    let fd =
        rustix::fs::openat(&*dir.fd, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| failed(errno_stat(e)))?;
    let obj = Obj { stat: crate::fs::export::stat_fd(&fd).map_err(failed)?, fd: std::sync::Arc::new(fd) };
    target.export.remember(dir.ino(), name, &obj.stat);
    if let Some(attrs) = attrs {
        sattr::apply(&obj, attrs, None).map_err(failed)?;
    }
    let stat = obj.restat().map_err(failed)?;
    Ok(Made {
        obj: Nfs3Option::Some(target.handle(&dir, name, &stat)),
        obj_attributes: target.post_op(Some(stat)),
        dir_wcc: target.wcc(Some(&dir.stat), dir.restat().ok()),
    })
}

/// The attributes of `name` in `dir` without following a symlink.
pub fn stat_at(dir: &Obj, name: &[u8]) -> NfsResult<rustix::fs::Statx> {
    rustix::fs::statx(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW, STATX_MASK).map_err(errno_stat)
}
