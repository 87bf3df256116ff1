//! The test bed's path from one node to a logical unit, as a SAN gives
//! each machine its own path to a LUN: a FUSE file (`unit`) that reads and
//! writes the unit's image with no page cache of its own (direct I/O), a
//! loop device goes on top of it, and a `fence` file. Once anything is
//! written to `fence`, every read, write and flush of this path fails with
//! EIO, as a node's I/O does once its SCSI-3 persistent reservation was
//! preempted: the node may thaw, its kernel may flush, nothing reaches the
//! unit.

use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fuser::{FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty};
use fuser::{ReplyEntry, ReplyOpen, ReplyWrite, Request};

const ROOT: u64 = 1;
const UNIT: u64 = 2;
const FENCE: u64 = 3;
const TTL: Duration = Duration::from_secs(1);
/// FOPEN_DIRECT_IO: each node's page cache is its loop device's, as on a
/// SAN; the path itself caches nothing.
const DIRECT_IO: u32 = 1;

pub struct UnitPath {
    dir: PathBuf,
    _session: fuser::BackgroundSession,
}

impl UnitPath {
    /// Serves a path to `image` at the directory `dir` (made here).
    pub fn mount(image: &Path, dir: &Path) -> UnitPath {
        std::fs::create_dir_all(dir).unwrap();
        let image = std::fs::OpenOptions::new().read(true).write(true).open(image).unwrap();
        let size = image.metadata().unwrap().len();
        let fs = PathFs { image, size, fenced: false };
        let options = [MountOption::FSName("vnas-test-path".into()), MountOption::AllowOther];
        let session =
            fuser::spawn_mount2(fs, dir, &options).expect("a FUSE mount (needs root and /dev/fuse)");
        UnitPath { dir: dir.to_path_buf(), _session: session }
    }

    /// The unit as this path shows it, for `losetup`.
    pub fn file(&self) -> PathBuf {
        self.dir.join("unit")
    }
}

impl Drop for UnitPath {
    fn drop(&mut self) {
        // Detached even if a dead node's loop device still holds the file.
        let _ = rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::DETACH);
    }
}

struct PathFs {
    image: std::fs::File,
    size: u64,
    fenced: bool,
}

fn attr(ino: u64, size: u64) -> FileAttr {
    let (kind, perm, nlink) =
        if ino == ROOT { (FileType::Directory, 0o755, 2) } else { (FileType::RegularFile, 0o600, 1) };
    FileAttr {
        ino,
        size,
        blocks: size.div_ceil(512),
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind,
        perm,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl PathFs {
    fn attr_of(&self, ino: u64) -> Option<FileAttr> {
        match ino {
            ROOT => Some(attr(ROOT, 0)),
            UNIT => Some(attr(UNIT, self.size)),
            FENCE => Some(attr(FENCE, 2)),
            _ => None,
        }
    }
}

impl Filesystem for PathFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let ino = match (parent, name.to_str()) {
            (ROOT, Some("unit")) => UNIT,
            (ROOT, Some("fence")) => FENCE,
            _ => return reply.error(libc::ENOENT),
        };
        reply.entry(&TTL, &self.attr_of(ino).unwrap(), 0);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.attr_of(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(libc::ENOENT),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        // The shell's `>` truncates the fence file: nothing to change.
        match self.attr_of(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(libc::ENOENT),
        }
    }

    fn open(&mut self, _req: &Request<'_>, _ino: u64, _flags: i32, reply: ReplyOpen) {
        reply.opened(0, DIRECT_IO);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        if ino == FENCE {
            let state: &[u8] = if self.fenced { b"1\n" } else { b"0\n" };
            return reply.data(state.get(offset as usize..).unwrap_or_default());
        }
        if self.fenced {
            return reply.error(libc::EIO);
        }
        let mut buf = vec![0u8; size as usize];
        match self.image.read_at(&mut buf, offset as u64) {
            Ok(n) => reply.data(&buf[..n]),
            Err(_) => reply.error(libc::EIO),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        if ino == FENCE {
            self.fenced = true;
            return reply.written(data.len() as u32);
        }
        if self.fenced {
            return reply.error(libc::EIO);
        }
        match self.image.write_all_at(data, offset as u64) {
            Ok(()) => reply.written(data.len() as u32),
            Err(_) => reply.error(libc::EIO),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        if ino == UNIT && self.fenced {
            return reply.error(libc::EIO);
        }
        match self.image.sync_data() {
            Ok(()) => reply.ok(),
            Err(_) => reply.error(libc::EIO),
        }
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        if ino != ROOT {
            return reply.error(libc::ENOTDIR);
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (UNIT, FileType::RegularFile, "unit"),
            (FENCE, FileType::RegularFile, "fence"),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, (i + 1) as i64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
