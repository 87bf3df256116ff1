//! Object attributes as NFSv3 puts them on the wire.

use nfs3_types::nfs3::{fattr3, ftype3, nfstime3, specdata3, wcc_attr};
use rustix::fs::{Statx, StatxFlags, StatxTimestamp};

/// What every statx call asks for: the basic fields and the birth time,
/// which is the generation part of a handle.
pub const STATX_MASK: StatxFlags = StatxFlags::BASIC_STATS.union(StatxFlags::BTIME);

pub fn ftype(stat: &Statx) -> ftype3 {
    match u32::from(stat.stx_mode) & libc::S_IFMT {
        libc::S_IFDIR => ftype3::NF3DIR,
        libc::S_IFLNK => ftype3::NF3LNK,
        libc::S_IFBLK => ftype3::NF3BLK,
        libc::S_IFCHR => ftype3::NF3CHR,
        libc::S_IFSOCK => ftype3::NF3SOCK,
        libc::S_IFIFO => ftype3::NF3FIFO,
        _ => ftype3::NF3REG,
    }
}

pub fn is_dir(stat: &Statx) -> bool {
    u32::from(stat.stx_mode) & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_regular(stat: &Statx) -> bool {
    u32::from(stat.stx_mode) & libc::S_IFMT == libc::S_IFREG
}

/// Tells a reused inode number from the object a handle was issued for.
/// Filesystems without birth times give 0: inode numbers alone then.
pub fn generation(stat: &Statx) -> u32 {
    if stat.stx_mask & StatxFlags::BTIME.bits() == 0 {
        return 0;
    }
    let born = stat.stx_btime;
    (born.tv_sec as u32).wrapping_mul(0x9E37_79B1) ^ born.tv_nsec
}

fn time(ts: StatxTimestamp) -> nfstime3 {
    nfstime3 { seconds: ts.tv_sec as u32, nseconds: ts.tv_nsec }
}

pub fn fattr(stat: &Statx, fsid: u64) -> fattr3 {
    fattr3 {
        type_: ftype(stat),
        mode: u32::from(stat.stx_mode) & 0o7777,
        nlink: stat.stx_nlink,
        uid: stat.stx_uid,
        gid: stat.stx_gid,
        size: stat.stx_size,
        used: stat.stx_blocks * 512,
        rdev: specdata3 { specdata1: stat.stx_rdev_major, specdata2: stat.stx_rdev_minor },
        fsid,
        fileid: stat.stx_ino,
        atime: time(stat.stx_atime),
        mtime: time(stat.stx_mtime),
        ctime: time(stat.stx_ctime),
    }
}

pub fn wcc(stat: &Statx) -> wcc_attr {
    wcc_attr { size: stat.stx_size, mtime: time(stat.stx_mtime), ctime: time(stat.stx_ctime) }
}
