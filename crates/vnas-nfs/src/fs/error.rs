use nfs3_types::nfs3::nfsstat3;
use rustix::io::Errno;

pub type NfsResult<T> = Result<T, nfsstat3>;

/// The NFS status a client should see for a failed system call.
pub fn errno_stat(errno: Errno) -> nfsstat3 {
    use nfsstat3::*;
    match errno {
        Errno::PERM => NFS3ERR_PERM,
        Errno::NOENT => NFS3ERR_NOENT,
        Errno::NXIO => NFS3ERR_NXIO,
        Errno::ACCESS => NFS3ERR_ACCES,
        Errno::EXIST => NFS3ERR_EXIST,
        Errno::XDEV => NFS3ERR_XDEV,
        Errno::NODEV => NFS3ERR_NODEV,
        Errno::NOTDIR => NFS3ERR_NOTDIR,
        Errno::ISDIR => NFS3ERR_ISDIR,
        Errno::INVAL => NFS3ERR_INVAL,
        Errno::FBIG => NFS3ERR_FBIG,
        Errno::NOSPC => NFS3ERR_NOSPC,
        Errno::ROFS => NFS3ERR_ROFS,
        Errno::MLINK => NFS3ERR_MLINK,
        Errno::NAMETOOLONG => NFS3ERR_NAMETOOLONG,
        Errno::NOTEMPTY => NFS3ERR_NOTEMPTY,
        Errno::DQUOT => NFS3ERR_DQUOT,
        Errno::STALE => NFS3ERR_STALE,
        Errno::NOTSUP => NFS3ERR_NOTSUPP,
        // A symlink met where the walk forbids them, or a path that would
        // leave the export: the object cannot be reached through this export.
        Errno::LOOP => NFS3ERR_ACCES,
        _ => NFS3ERR_IO,
    }
}
