//! Applying a client's sattr3 to an object (SETATTR, and the initial
//! attributes of CREATE, MKDIR, SYMLINK and MKNOD).

use nfs3_types::nfs3::{nfsstat3, nfstime3, sattr3, set_atime, set_mtime, Nfs3Option};
use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, Uid};

use crate::creds::{self, Creds};
use crate::fs::{attr, errno_stat, NfsResult, Obj};

/// Applies `sattr` as the thread's current identity. `caller`: who asked,
/// for the owner's right to change the size of a file whose mode denies
/// them write (a process that created it with mode 0 and ftruncates the
/// descriptor it holds), as knfsd and Ganesha allow.
pub fn apply(obj: &Obj, sattr: &sattr3, caller: Option<&Creds>) -> NfsResult<()> {
    let is_link = attr::ftype(&obj.stat) == nfs3_types::nfs3::ftype3::NF3LNK;
    let uid = match sattr.uid {
        Nfs3Option::Some(uid) => Some(Uid::from_raw(uid)),
        Nfs3Option::None => None,
    };
    let gid = match sattr.gid {
        Nfs3Option::Some(gid) => Some(Gid::from_raw(gid)),
        Nfs3Option::None => None,
    };
    // Owner first: chown clears set-id bits that a mode change may set.
    if uid.is_some() || gid.is_some() {
        rustix::fs::chownat(&obj.fd, "", uid, gid, AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno_stat)?;
    }
    if let Nfs3Option::Some(mode) = sattr.mode {
        if !is_link {
            rustix::fs::chmod(obj.proc_path(), Mode::from_raw_mode(mode & 0o7777)).map_err(errno_stat)?;
        }
    }
    if let Nfs3Option::Some(size) = sattr.size {
        if !attr::is_regular(&obj.stat) {
            return Err(if attr::is_dir(&obj.stat) {
                nfsstat3::NFS3ERR_ISDIR
            } else {
                nfsstat3::NFS3ERR_INVAL
            });
        }
        let io_stat = |e: std::io::Error| {
            errno_stat(rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO))
        };
        let open = || std::fs::OpenOptions::new().write(true).open(obj.proc_path());
        let file = match (open(), caller) {
            (Err(e), Some(caller))
                if e.kind() == std::io::ErrorKind::PermissionDenied && caller.uid == obj.stat.stx_uid =>
            {
                creds::assume(&Creds::ROOT);
                let reopened = open();
                creds::assume(caller);
                reopened.map_err(io_stat)?
            }
            (opened, _) => opened.map_err(io_stat)?,
        };
        file.set_len(size).map_err(io_stat)?;
    }
    let atime = match sattr.atime {
        set_atime::DONT_CHANGE => None,
        set_atime::SET_TO_SERVER_TIME => Some(now()),
        set_atime::SET_TO_CLIENT_TIME(t) => Some(timespec(t)),
    };
    let mtime = match sattr.mtime {
        set_mtime::DONT_CHANGE => None,
        set_mtime::SET_TO_SERVER_TIME => Some(now()),
        set_mtime::SET_TO_CLIENT_TIME(t) => Some(timespec(t)),
    };
    if (atime.is_some() || mtime.is_some()) && !is_link {
        let times = Timestamps {
            last_access: atime.unwrap_or_else(omit),
            last_modification: mtime.unwrap_or_else(omit),
        };
        rustix::fs::utimensat(rustix::fs::CWD, obj.proc_path(), &times, AtFlags::empty())
            .map_err(errno_stat)?;
    }
    Ok(())
}

/// The mode a new object gets: what the client asked, or a default.
pub fn mode_of(sattr: &sattr3, default: u32) -> Mode {
    match sattr.mode {
        Nfs3Option::Some(mode) => Mode::from_raw_mode(mode & 0o7777),
        Nfs3Option::None => Mode::from_raw_mode(default),
    }
}

/// The attributes left to apply after creating with `mode_of`.
pub fn without_mode(sattr: &sattr3) -> sattr3 {
    sattr3 { mode: Nfs3Option::None, ..sattr.clone() }
}

fn timespec(t: nfstime3) -> Timespec {
    Timespec { tv_sec: i64::from(t.seconds), tv_nsec: i64::from(t.nseconds).min(999_999_999) as _ }
}

fn now() -> Timespec {
    Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_NOW as _ }
}

fn omit() -> Timespec {
    Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT as _ }
}
