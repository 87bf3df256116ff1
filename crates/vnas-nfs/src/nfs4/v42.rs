//! NFSv4.2's operations on file contents (RFC 7862): SEEK (holes and
//! data), ALLOCATE, DEALLOCATE (punching a hole), and COPY within one
//! export (copy_file_range: the filesystem may share the blocks).

use std::os::fd::AsFd;

use nfs3_types::nfs3::{ACCESS3_MODIFY, ACCESS3_READ};
use rustix::fs::{FallocateFlags, SeekFrom};
use rustix::io::Errno;

use super::ops::{current, fail, ok, stateid, target, word, Done};
use super::*;
use crate::config::Access;
use crate::fs::errno_stat;
use crate::nfs3::Target;

/// The most one COPY moves; the client asks again for the rest.
pub const COPY_MAX: u64 = 64 << 20;

const NFS4ERR_NXIO: u32 = 6;
const NFS4ERR_FBIG: u32 = 27;
const NFS4ERR_XDEV: u32 = 18;

/// The file a stateid may use as `access` asks (1 read, 2 write), checked
/// against the export's rules and the file's mode.
fn file_for<'a>(
    c: &Compound<'a>,
    fh: &Fh,
    other: &[u8; 12],
    access: u32,
) -> Result<(Target<'a>, crate::fs::OpenFile), u32> {
    let fh = match fh {
        Fh::Real(fh) => fh,
        Fh::Pseudo => return Err(NFS4ERR_ISDIR),
    };
    match c.state.v4.access(other, fh) {
        Some(a) if a & access == access => {}
        Some(_) => return Err(NFS4ERR_OPENMODE),
        None => return Err(NFS4ERR_BAD_STATEID),
    }
    let target = target(c, fh)?;
    let write = access & 2 != 0;
    if write && target.export.rule_for(c.conn.peer.ip()).is_some_and(|r| r.access == Access::ReadOnly) {
        return Err(NFS4ERR_ROFS);
    }
    let (open, stat) = target.export.file(&target.fh, write).map_err(status4)?;
    let want = if write { ACCESS3_MODIFY } else { ACCESS3_READ };
    if !target.may_data(&stat, want) || (write && !open.writable) {
        return Err(NFS4ERR_ACCESS);
    }
    Ok((target, open))
}

fn errno4(errno: Errno) -> u32 {
    status4(errno_stat(errno))
}

pub fn seek(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let (_, other) = stateid(x)?;
    let offset = x.u64().map_err(|_| Garbage)?;
    let what = word(x)?;
    if what > 1 {
        return fail(NFS4ERR_INVAL);
    }
    let sought = (|| {
        let fh = current(c)?;
        let (_, open) = file_for(c, &fh, &other, 1)?;
        let fd = open.file.as_fd();
        let size = rustix::fs::fstat(fd).map_err(errno4)?.st_size as u64;
        if offset >= size {
            return Err(NFS4ERR_NXIO);
        }
        let to = if what == 0 { SeekFrom::Data(offset) } else { SeekFrom::Hole(offset) };
        match rustix::fs::seek(fd, to) {
            Ok(found) => Ok((found, found >= size)),
            Err(Errno::NXIO) => Err(NFS4ERR_NXIO),
            Err(errno) => Err(errno4(errno)),
        }
    })();
    match sought {
        Ok((found, eof)) => {
            let mut body = Xdr::default();
            body.u32(eof as u32).u64(found);
            ok(body)
        }
        Err(status) => fail(status),
    }
}

/// ALLOCATE (`punch` false) and DEALLOCATE.
pub fn allocate(c: &mut Compound<'_>, x: &mut XdrReader<'_>, punch: bool) -> Result<Done, Garbage> {
    let (_, other) = stateid(x)?;
    let offset = x.u64().map_err(|_| Garbage)?;
    let length = x.u64().map_err(|_| Garbage)?;
    let done = (|| {
        if length == 0 || offset.checked_add(length).is_none_or(|end| end > i64::MAX as u64) {
            return Err(if length == 0 { NFS4ERR_INVAL } else { NFS4ERR_FBIG });
        }
        let fh = current(c)?;
        let (_, open) = file_for(c, &fh, &other, 2)?;
        let flags = if punch {
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE
        } else {
            FallocateFlags::empty()
        };
        rustix::fs::fallocate(open.file.as_fd(), flags, offset, length).map_err(errno4)
    })();
    match done {
        Ok(()) => fail(NFS4_OK),
        Err(status) => fail(status),
    }
}

pub fn copy(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let (_, from_other) = stateid(x)?;
    let (_, to_other) = stateid(x)?;
    let from_offset = x.u64().map_err(|_| Garbage)?;
    let to_offset = x.u64().map_err(|_| Garbage)?;
    let count = x.u64().map_err(|_| Garbage)?;
    let _consecutive = word(x)?;
    let synchronous = word(x)? != 0;
    let sources = word(x)?;
    if sources > 0 {
        // Copies from another server are not offered.
        return fail(NFS4ERR_NOTSUPP);
    }
    let _ = synchronous; // every copy here is synchronous
    let copied = (|| {
        let from_fh = c.saved.clone().ok_or(NFS4ERR_NOFILEHANDLE)?;
        let to_fh = current(c)?;
        let (from, source) = file_for(c, &from_fh, &from_other, 1)?;
        let (to, dest) = file_for(c, &to_fh, &to_other, 2)?;
        if from.export.fsid() != to.export.fsid() {
            return Err(NFS4ERR_XDEV);
        }
        let size = rustix::fs::fstat(source.file.as_fd()).map_err(errno4)?.st_size as u64;
        if from_offset > size {
            return Err(NFS4ERR_INVAL);
        }
        let want = if count == 0 { size - from_offset } else { count.min(size - from_offset) }.min(COPY_MAX);
        let (mut from_at, mut to_at, mut done) = (from_offset, to_offset, 0u64);
        while done < want {
            let n = rustix::fs::copy_file_range(
                source.file.as_fd(),
                Some(&mut from_at),
                dest.file.as_fd(),
                Some(&mut to_at),
                (want - done).min(1 << 30) as usize,
            )
            .map_err(errno4)?;
            if n == 0 {
                break;
            }
            done += n as u64;
        }
        // Stable before the reply, like a FILE_SYNC write.
        rustix::fs::fsync(dest.file.as_fd()).map_err(errno4)?;
        Ok(done)
    })();
    match copied {
        Ok(done) => {
            let mut body = Xdr::default();
            // write_response4: no callback id (synchronous), count, FILE_SYNC4,
            // the write verifier; then copy_requirements4.
            body.u32(0).u64(done).u32(2);
            body.0.extend_from_slice(&c.state.write_verifier);
            body.u32(1).u32(1);
            ok(body)
        }
        Err(status) => fail(status),
    }
}
