//! Reading directories with cookies that stay valid across processes.
//!
//! A cookie is the directory offset the filesystem itself gives each entry
//! (ext4 and xfs use hash-based offsets), so a second server process, or
//! another node, continues a listing where the first one stopped.

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags, SeekFrom};

use super::error::{errno_stat, NfsResult};
use super::export::Obj;

pub struct DirEntry<'a> {
    pub ino: u64,
    pub name: &'a [u8],
    pub cookie: u64,
}

/// Opens a directory reached through a handle for reading its entries.
pub fn open(dir: &Obj) -> NfsResult<OwnedFd> {
    rustix::fs::openat(&dir.fd, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(errno_stat)
}

/// Calls `take` with each entry after `cookie` until it returns false.
/// Returns whether the end of the directory was reached.
pub fn read(fd: &OwnedFd, cookie: u64, mut take: impl FnMut(DirEntry<'_>) -> bool) -> NfsResult<bool> {
    if cookie != 0 {
        let offset = i64::try_from(cookie).map_err(|_| nfs3_types::nfs3::nfsstat3::NFS3ERR_BAD_COOKIE)?;
        rustix::fs::seek(fd, SeekFrom::Start(offset as u64)).map_err(errno_stat)?;
    }
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 32 * 1024];
    let mut dir = rustix::fs::RawDir::new(fd, &mut buf);
    while let Some(entry) = dir.next() {
        let entry = entry.map_err(errno_stat)?;
        let next = DirEntry {
            ino: entry.ino(),
            name: entry.file_name().to_bytes(),
            cookie: entry.next_entry_cookie(),
        };
        if !take(next) {
            return Ok(false);
        }
    }
    Ok(true)
}
