//! Granted locks held in the kernel too, as open-file-description (OFD)
//! locks: local processes, another vserver on the same files and other
//! protocols see them and conflict with them. One descriptor per lock
//! owner and file, so the kernel keeps owners apart as the table does;
//! each table change is mirrored by the same change on that descriptor,
//! whose POSIX split-and-merge rules are the table's.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};

use vnas_locks::{Owner, Range};

/// Opens the file a handle names, for locking (read-write if it can).
pub type Opener<'a> = &'a dyn Fn(&[u8]) -> std::io::Result<OwnedFd>;

#[derive(Default)]
pub struct KernelLocks {
    fds: HashMap<(Owner, Vec<u8>), OwnedFd>,
}

/// What the kernel said to a lock.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    Yes,
    /// Someone outside the table holds a conflicting lock.
    Busy,
    /// The kernel cannot hold this one (the file cannot be opened for it,
    /// the range is past what it can express): the table alone holds it.
    NotHeld,
}

impl KernelLocks {
    /// Takes (or changes to) `exclusive` over `range` for `owner`.
    pub fn take(
        &mut self,
        open: Opener<'_>,
        file: &[u8],
        owner: &Owner,
        exclusive: bool,
        range: Range,
    ) -> Taken {
        let key = (owner.clone(), file.to_vec());
        let fresh = !self.fds.contains_key(&key);
        if fresh {
            match open(file) {
                Ok(fd) => {
                    self.fds.insert(key.clone(), fd);
                }
                Err(error) => {
                    tracing::debug!(%error, "cannot open a locked file to hold its lock in the kernel");
                    return Taken::NotHeld;
                }
            }
        }
        let fd = &self.fds[&key];
        let kind = if exclusive { libc::F_WRLCK } else { libc::F_RDLCK };
        match ofd_setlk(fd, kind, range) {
            Ok(true) => Taken::Yes,
            Ok(false) => {
                // A descriptor opened for this refused lock holds nothing.
                if fresh {
                    self.fds.remove(&key);
                }
                Taken::Busy
            }
            Err(error) => {
                tracing::debug!(%error, "the kernel cannot hold this lock; the table holds it alone");
                Taken::NotHeld
            }
        }
    }

    /// `owner` lets go of `range`; `last`: it holds nothing more on
    /// `file` (its descriptor closes, with whatever the kernel still had).
    pub fn release(&mut self, file: &[u8], owner: &Owner, range: Range, last: bool) {
        let key = (owner.clone(), file.to_vec());
        if last {
            self.fds.remove(&key);
        } else if let Some(fd) = self.fds.get(&key) {
            if let Err(error) = ofd_setlk(fd, libc::F_UNLCK, range) {
                tracing::warn!(%error, "cannot release a lock in the kernel");
            }
        }
    }

    /// A lock held in the kernel by someone outside the table (a process on
    /// the server, another server on the same files) that would stop this
    /// one: its range and whether it is exclusive.
    pub fn outside(
        &self,
        open: Opener<'_>,
        file: &[u8],
        exclusive: bool,
        range: Range,
    ) -> Option<(bool, Range)> {
        let fd = open(file).ok()?;
        let kind = if exclusive { libc::F_WRLCK } else { libc::F_RDLCK };
        let mut probe = flock(kind, range);
        // SAFETY: a valid descriptor and a flock the call fills in.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut probe) } != 0 {
            return None;
        }
        if probe.l_type == libc::F_UNLCK as libc::c_short {
            return None;
        }
        let start = probe.l_start.max(0) as u64;
        Some((probe.l_type == libc::F_WRLCK as libc::c_short, Range::of(start, probe.l_len.max(0) as u64)))
    }

    /// Every kernel lock of `caller` goes.
    pub fn release_caller(&mut self, caller: &str) {
        self.fds.retain(|(owner, _), _| owner.caller != caller);
    }

    /// Every kernel lock goes (the server stops: the next owner takes them).
    pub fn release_all(&mut self) {
        self.fds.clear();
    }

    pub fn held(&self) -> usize {
        self.fds.len()
    }
}

fn flock(kind: libc::c_int, range: Range) -> libc::flock {
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = range.start as libc::off_t;
    // 0: to the end, as NLM's 0; ranges the kernel cannot express end
    // there too (a larger lock in the kernel is the safe side).
    lock.l_len = match range.len() {
        len if len > i64::MAX as u64 || range.start.checked_add(len).is_none_or(|e| e > i64::MAX as u64) => 0,
        len => len as libc::off_t,
    };
    lock
}

/// `Ok(false)`: held by someone else.
fn ofd_setlk(fd: &OwnedFd, kind: libc::c_int, range: Range) -> std::io::Result<bool> {
    if range.start > i64::MAX as u64 {
        return Err(std::io::Error::from_raw_os_error(libc::EOVERFLOW));
    }
    let lock = flock(kind, range);
    // SAFETY: a valid descriptor and a flock the call only reads.
    let result = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if result == 0 {
        return Ok(true);
    }
    match std::io::Error::last_os_error() {
        e if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_conflict_in_the_kernel_as_in_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let open = |_: &[u8]| -> std::io::Result<OwnedFd> {
            Ok(std::fs::OpenOptions::new().read(true).write(true).open(&path)?.into())
        };
        let a = Owner { caller: "a".into(), svid: 1, oh: vec![] };
        let b = Owner { caller: "b".into(), svid: 1, oh: vec![] };
        let mut k = KernelLocks::default();
        assert_eq!(k.take(&open, b"f", &a, true, Range::of(0, 10)), Taken::Yes);
        assert_eq!(k.take(&open, b"f", &b, false, Range::of(5, 1)), Taken::Busy);
        assert_eq!(k.take(&open, b"f", &b, true, Range::of(10, 10)), Taken::Yes);
        // A local process sees it: its own OFD lock is refused.
        let local = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let lock = flock(libc::F_WRLCK, Range::of(0, 1));
        assert_eq!(unsafe { libc::fcntl(local.as_raw_fd(), libc::F_OFD_SETLK, &lock) }, -1);
        k.release(b"f", &a, Range::of(0, 0), true);
        assert_eq!(unsafe { libc::fcntl(local.as_raw_fd(), libc::F_OFD_SETLK, &lock) }, 0);
        assert_eq!(k.take(&open, b"f", &a, true, Range::of(0, 1)), Taken::Busy, "now the local one holds it");
        assert_eq!(k.take(&open, b"f", &a, true, Range::of(u64::MAX - 5, 0)), Taken::NotHeld);
    }
}
