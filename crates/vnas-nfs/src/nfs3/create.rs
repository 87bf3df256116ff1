//! CREATE (procedure 8): UNCHECKED, GUARDED and EXCLUSIVE. An exclusive
//! create keeps the client's verifier in the new file's atime and mtime
//! (as Linux nfsd does), so a retransmitted create succeeds and a
//! different client's create of the same name fails.

use nfs3_types::nfs3::*;
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::made::{make_in, stat_at};
use super::{decode, reply, sattr, Garbage, Req};
use crate::fs::{errno_stat, NfsResult, Obj};
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: CREATE3args = decode(args)?;
    let result = match &args.how {
        createhow3::UNCHECKED(attrs) => {
            let rest = sattr::without_mode(attrs);
            make_in(req, &args.where_, Some(&rest), |dir, name| {
                open_new(dir, name, OFlags::empty(), sattr::mode_of(attrs, 0o644))
            })
        }
        createhow3::GUARDED(attrs) => {
            let rest = sattr::without_mode(attrs);
            make_in(req, &args.where_, Some(&rest), |dir, name| {
                open_new(dir, name, OFlags::EXCL, sattr::mode_of(attrs, 0o644))
            })
        }
        createhow3::EXCLUSIVE(verf) => {
            make_in(req, &args.where_, None, |dir, name| exclusive(dir, name, verf))
        }
    };
    let result = result.map(|made| CREATE3resok {
        obj: made.obj,
        obj_attributes: made.obj_attributes,
        dir_wcc: made.dir_wcc,
    });
    reply(out, result.map_err(|(stat, dir_wcc)| (stat, CREATE3resfail { dir_wcc })));
    Ok(())
}

fn open_new(dir: &Obj, name: &[u8], extra: OFlags, mode: Mode) -> NfsResult<()> {
    let flags = OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | extra;
    match rustix::fs::openat(&dir.fd, name, flags, mode) {
        Ok(_) => Ok(()),
        // An existing file that the caller may not open for writing is
        // still fine for an unchecked create without a size.
        Err(Errno::ACCESS) if !extra.contains(OFlags::EXCL) => {
            stat_at(dir, name).map(|_| ()).map_err(|_| nfsstat3::NFS3ERR_ACCES)
        }
        Err(errno) => Err(errno_stat(errno)),
    }
}

fn verifier_times(verf: &createverf3) -> Timestamps {
    let half = |at: usize| u32::from_be_bytes(verf.0[at..at + 4].try_into().unwrap());
    Timestamps {
        last_access: Timespec { tv_sec: i64::from(half(0) & 0x7fff_ffff), tv_nsec: 0 },
        last_modification: Timespec { tv_sec: i64::from(half(4) & 0x7fff_ffff), tv_nsec: 0 },
    }
}

fn exclusive(dir: &Obj, name: &[u8], verf: &createverf3) -> NfsResult<()> {
    let times = verifier_times(verf);
    match open_new(dir, name, OFlags::EXCL, Mode::from_raw_mode(0o600)) {
        Ok(()) => rustix::fs::utimensat(&dir.fd, name, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(errno_stat),
        Err(nfsstat3::NFS3ERR_EXIST) => {
            let stat = stat_at(dir, name)?;
            let same = stat.stx_atime.tv_sec == times.last_access.tv_sec
                && stat.stx_mtime.tv_sec == times.last_modification.tv_sec;
            if same {
                Ok(())
            } else {
                Err(nfsstat3::NFS3ERR_EXIST)
            }
        }
        Err(stat) => Err(stat),
    }
}
