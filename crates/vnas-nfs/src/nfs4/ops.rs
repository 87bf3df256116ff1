//! The operations of a COMPOUND: each decodes its arguments, acts on the
//! current filehandle, and returns its status and result body.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use nfs3_types::nfs3::{nfs_fh3, nfsstat3, ACCESS3_LOOKUP, ACCESS3_READ};
use nfs3_types::xdr_codec::Opaque;

use super::attrs::{self, Facts};
use super::*;
use super::{change, lock, ops41, v42};
use crate::fs::{attr, dir, Export, Obj};
use crate::limits::{NAME_MAX, READDIR_REPLY_MAX, READ_MAX};
use crate::nfs3::{Proc, Req, Target};

pub(super) type Done = (u32, Vec<u8>);

pub(super) fn ok(body: Xdr) -> Result<Done, Garbage> {
    Ok((NFS4_OK, body.0))
}

pub(super) fn fail(status: u32) -> Result<Done, Garbage> {
    Ok((status, Vec::new()))
}

pub(super) fn word(x: &mut XdrReader<'_>) -> Result<u32, Garbage> {
    x.u32().map_err(|_| Garbage)
}

pub(super) fn bitmap(x: &mut XdrReader<'_>) -> Result<Vec<u32>, Garbage> {
    let len = word(x)? as usize;
    if len > 8 {
        return Err(Garbage);
    }
    (0..len).map(|_| word(x)).collect()
}

pub(super) fn fixed<const N: usize>(x: &mut XdrReader<'_>) -> Result<[u8; N], Garbage> {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(4) {
        chunk.copy_from_slice(&word(x)?.to_be_bytes()[..chunk.len()]);
    }
    Ok(out)
}

pub(super) fn name<'a>(x: &mut XdrReader<'a>) -> Result<&'a [u8], Garbage> {
    x.opaque(NAME_MAX + 1).map_err(|_| Garbage)
}

/// A handle checked against its export and the client's rules.
pub(super) fn target<'a>(c: &Compound<'a>, fh: &[u8]) -> Result<Target<'a>, u32> {
    static PROC: Proc = Proc { name: "NFSv4", modifies: false, replay: false, run: |_, _, _| Ok(()) };
    let req = Req {
        state: c.state,
        client: c.conn.peer.ip(),
        port: c.conn.peer.port(),
        auth: c.auth,
        proc_: &PROC,
    };
    req.target(&nfs_fh3 { data: Opaque::owned(fh.to_vec()) }).map_err(status4)
}

pub(super) fn current(c: &Compound<'_>) -> Result<Fh, u32> {
    c.current.clone().ok_or(NFS4ERR_NOFILEHANDLE)
}

/// The exports this client may see under the pseudo-root, by name.
pub(super) fn visible(c: &Compound<'_>) -> Vec<Arc<Export>> {
    let client = c.conn.peer.ip();
    c.state.exports().iter().filter(|e| e.rule_for(client).is_some()).cloned().collect()
}

pub(super) fn root_handle(export: &Export) -> Result<(Vec<u8>, Obj), u32> {
    let root = export.root_obj().map_err(status4)?;
    Ok((export.handle_of(&root).data.to_vec(), root))
}

// The ranges at the end catch what the arms above (some guarded by the
// minor version) do not serve.
#[allow(clippy::match_overlapping_arm)]
pub fn run(c: &mut Compound<'_>, op: u32, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let v41 = c.minor >= 1;
    let v42 = c.minor >= 2;
    match op {
        3 => access(c, x),
        4 => sequenced(c, 4, x, close),
        5 => change::commit(c, x),
        6 => change::create(c, x),
        // No delegations are given: none to return.
        8 => {
            stateid(x)?;
            fail(NFS4ERR_BAD_STATEID)
        }
        9 => getattr(c, x),
        10 => match current(c) {
            Ok(Fh::Pseudo) => ok(handle_body(&PSEUDO_ROOT)),
            Ok(Fh::Real(fh)) => ok(handle_body(&fh)),
            Err(status) => fail(status),
        },
        11 => change::link(c, x),
        12 => lock::lock(c, x),
        13 => lock::lockt(c, x),
        14 => lock::locku(c, x),
        15 => lookup(c, x),
        16 => lookupp(c),
        17 => change::verify(c, x, false),
        18 => sequenced(c, 18, x, change::open),
        20 if !v41 => sequenced(c, 20, x, open_confirm),
        21 => sequenced(c, 21, x, change::open_downgrade),
        22 => {
            let fh = x.opaque(128).map_err(|_| Garbage)?;
            if fh == PSEUDO_ROOT {
                c.current = Some(Fh::Pseudo);
                return ok(Xdr::default());
            }
            match target(c, fh) {
                Ok(_) => {
                    c.current = Some(Fh::Real(fh.to_vec()));
                    ok(Xdr::default())
                }
                Err(status) => fail(status),
            }
        }
        // PUTPUBFH, PUTROOTFH: the pseudo-root (an export named "/" is the
        // root itself).
        23 | 24 => {
            let slash = visible(c).into_iter().find(|e| e.name == "/");
            c.current = Some(match slash {
                Some(export) => match root_handle(&export) {
                    Ok((fh, _)) => Fh::Real(fh),
                    Err(status) => return fail(status),
                },
                None => Fh::Pseudo,
            });
            ok(Xdr::default())
        }
        25 => read(c, x),
        26 => readdir(c, x),
        27 => change::readlink(c),
        28 => change::remove(c, x),
        29 => change::rename(c, x),
        30 if !v41 => {
            let clientid = x.u64().map_err(|_| Garbage)?;
            fail(if c.state.v4.known(clientid) { NFS4_OK } else { NFS4ERR_STALE_CLIENTID })
        }
        31 => match c.saved.clone() {
            Some(fh) => {
                c.current = Some(fh);
                ok(Xdr::default())
            }
            None => fail(NFS4ERR_RESTOREFH),
        },
        32 => match current(c) {
            Ok(fh) => {
                c.saved = Some(fh);
                ok(Xdr::default())
            }
            Err(status) => fail(status),
        },
        33 => {
            name(x)?;
            secinfo(c)
        }
        34 => change::setattr(c, x),
        35 if !v41 => setclientid(c, x),
        36 if !v41 => {
            let clientid = x.u64().map_err(|_| Garbage)?;
            let confirm = fixed::<8>(x)?;
            fail(if c.state.v4.confirm(clientid, confirm) { NFS4_OK } else { NFS4ERR_STALE_CLIENTID })
        }
        37 => change::verify(c, x, true),
        38 => change::write(c, x),
        39 if !v41 => lock::release_lockowner(c, x),
        41 if v41 => ops41::bind_conn_to_session(c, x),
        42 if v41 => ops41::exchange_id(c, x),
        43 if v41 => ops41::create_session(c, x),
        44 if v41 => ops41::destroy_session(c, x),
        45 if v41 => ops41::free_stateid(c, x),
        52 if v41 => {
            let _style = word(x)?;
            secinfo(c)
        }
        55 if v41 => ops41::test_stateid(c, x),
        57 if v41 => ops41::destroy_clientid(c, x),
        58 if v41 => ops41::reclaim_complete(c, x),
        59 if v42 => v42::allocate(c, x, false),
        60 if v42 => v42::copy(c, x),
        62 if v42 => v42::allocate(c, x, true),
        69 if v42 => v42::seek(c, x),
        // Operations not served yet (locks, delegations, layouts, 4.2's
        // SEEK, ALLOCATE, COPY...): their arguments cannot be skipped
        // without decoding them, so the COMPOUND ends here. Operations of
        // the other minor version are NOTSUPP as well.
        3..=39 => fail(NFS4ERR_NOTSUPP),
        40..=58 if v41 => fail(NFS4ERR_NOTSUPP),
        59..=OP_MAX if c.minor >= 2 => fail(NFS4ERR_NOTSUPP),
        _ => fail(NFS4ERR_OP_ILLEGAL),
    }
}

type Op = fn(&mut Compound<'_>, &mut XdrReader<'_>) -> Result<Done, Garbage>;

/// An open-owner (client ID, owner), the sequence id its call carries,
/// and the stateid it names.
type Sequenced = ((u64, Vec<u8>), u32, Option<[u8; 12]>);

/// NFSv4.0's open-owner operations (OPEN, OPEN_CONFIRM, OPEN_DOWNGRADE,
/// CLOSE) run once per sequence id: the next id runs, the last one again
/// gets the result it had (a retransmission after a reconnect), any other
/// is NFS4ERR_BAD_SEQID. NFSv4.1 has its session slots instead.
fn sequenced(c: &mut Compound<'_>, op: u32, x: &mut XdrReader<'_>, run: Op) -> Result<Done, Garbage> {
    if c.minor != 0 {
        return run(c, x);
    }
    let mut peek = XdrReader::new(x.rest());
    let found = (|| -> Result<Option<Sequenced>, Garbage> {
        let owner_of =
            |other: [u8; 12], seqid: u32| c.state.v4.owner_of(&other).map(|k| (k, seqid, Some(other)));
        Ok(match op {
            18 => {
                let seqid = word(&mut peek)?;
                word(&mut peek)?;
                word(&mut peek)?;
                let clientid = peek.u64().map_err(|_| Garbage)?;
                let owner = peek.opaque(1024).map_err(|_| Garbage)?.to_vec();
                Some(((clientid, owner), seqid, None))
            }
            4 => {
                let seqid = word(&mut peek)?;
                let (_, other) = stateid(&mut peek)?;
                owner_of(other, seqid)
            }
            _ => {
                let (_, other) = stateid(&mut peek)?;
                let seqid = word(&mut peek)?;
                owner_of(other, seqid)
            }
        })
    })();
    // Arguments that do not decode, or a stateid of no owner: the
    // operation itself says so.
    let Ok(Some((key, seqid, named))) = found else { return run(c, x) };
    match c.state.v4.seq_check(&key, seqid) {
        state::Seq::Bad => fail(NFS4ERR_BAD_SEQID),
        state::Seq::Replay(status, body, fh) => {
            c.dry = true;
            let decoded = run(c, x);
            c.dry = false;
            decoded?;
            if let Some(fh) = fh {
                c.current = Some(Fh::Real(fh));
            }
            Ok((status, body))
        }
        state::Seq::New => {
            let (status, body) = run(c, x)?;
            let fh = match &c.current {
                Some(Fh::Real(fh)) if status == NFS4_OK => Some(fh.clone()),
                _ => None,
            };
            let made = (op == 18 && status == NFS4_OK && body.len() >= 16)
                .then(|| body[4..16].try_into().expect("12 bytes"));
            c.state.v4.seq_done(key, seqid, (status, body.clone(), fh), named.or(made));
            Ok((status, body))
        }
    }
}

/// SECINFO and SECINFO_NO_NAME: AUTH_SYS only. They consume the current
/// filehandle.
fn secinfo(c: &mut Compound<'_>) -> Result<Done, Garbage> {
    if let Err(status) = current(c) {
        return fail(status);
    }
    if c.minor >= 1 {
        c.current = None;
    }
    let mut body = Xdr::default();
    body.u32(1).u32(1);
    ok(body)
}

fn handle_body(fh: &[u8]) -> Xdr {
    let mut body = Xdr::default();
    body.opaque(fh);
    body
}

pub(super) fn facts<'a>(
    c: &Compound<'a>,
    fh: &'a Fh,
    stat: Option<&'a rustix::fs::Statx>,
    fsid: u64,
) -> Facts<'a> {
    let handle: &[u8] = match fh {
        Fh::Pseudo => &PSEUDO_ROOT,
        Fh::Real(bytes) => bytes,
    };
    Facts {
        stat,
        fileid: stat.map_or(1, |s| s.stx_ino),
        fsid,
        handle,
        lease_seconds: c.state.lease_seconds(),
        space: None,
        minor: c.minor,
        idmap: &c.state.idmap,
    }
}

fn getattr(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let requested = bitmap(x)?;
    let fh = tryop!(current(c));
    let mut body = Xdr::default();
    match &fh {
        Fh::Pseudo => attrs::put_fattr(&mut body, &requested, &facts(c, &fh, None, 0)),
        Fh::Real(bytes) => {
            let target = tryop!(target(c, bytes));
            let stat = match target.export.resolve_stat(&target.fh) {
                Ok(stat) => stat,
                Err(stat) => return fail(status4(stat)),
            };
            let mut fact = facts(c, &fh, Some(&stat), target.export.fsid());
            if attrs::wants_space(&requested) {
                fact.space = space_of(&target);
            }
            attrs::put_fattr(&mut body, &requested, &fact);
        }
    }
    ok(body)
}

fn access(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let want = word(x)?;
    let (supported, granted) = match current(c) {
        Err(status) => return fail(status),
        // The pseudo-root: read and look up.
        Ok(Fh::Pseudo) => {
            let supported = want & (ACCESS3_READ | ACCESS3_LOOKUP);
            (want, supported)
        }
        Ok(Fh::Real(bytes)) => {
            let target = tryop!(target(c, &bytes));
            let stat = match target.export.resolve_stat(&target.fh) {
                Ok(stat) => stat,
                Err(stat) => return fail(status4(stat)),
            };
            let mut granted = 0;
            for bit in [1u32, 2, 4, 8, 16, 32] {
                if want & bit != 0 && target.may(&stat, bit) {
                    granted |= bit;
                }
            }
            (want & 0x3f, granted)
        }
    };
    let mut body = Xdr::default();
    body.u32(supported).u32(granted);
    ok(body)
}

fn lookup(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let name = name(x)?;
    if name.is_empty() || name.len() > NAME_MAX {
        return fail(NFS4ERR_INVAL);
    }
    match current(c) {
        Err(status) => fail(status),
        Ok(Fh::Pseudo) => {
            let found = visible(c).into_iter().find(|e| e.name.trim_start_matches('/').as_bytes() == name);
            let Some(export) = found else { return fail(NFS4ERR_NOENT) };
            match root_handle(&export) {
                Ok((fh, _)) => {
                    c.current = Some(Fh::Real(fh));
                    ok(Xdr::default())
                }
                Err(status) => fail(status),
            }
        }
        Ok(Fh::Real(bytes)) => {
            let target = tryop!(target(c, &bytes));
            let found = (|| {
                let dir = target.export.resolve(&target.fh)?;
                if !attr::is_dir(&dir.stat) {
                    return Err(nfsstat3::NFS3ERR_NOTDIR);
                }
                if !target.may(&dir.stat, ACCESS3_LOOKUP) {
                    return Err(nfsstat3::NFS3ERR_ACCES);
                }
                let stat = target.export.lookup(&dir, name)?;
                Ok(target.export.handle_at(&dir.fd, name, &stat).data.to_vec())
            })();
            match found {
                Ok(fh) => {
                    c.current = Some(Fh::Real(fh));
                    ok(Xdr::default())
                }
                Err(stat) => fail(status4(stat)),
            }
        }
    }
}

fn lookupp(c: &mut Compound<'_>) -> Result<Done, Garbage> {
    match current(c) {
        Err(status) => fail(status),
        Ok(Fh::Pseudo) => fail(NFS4ERR_NOENT),
        Ok(Fh::Real(bytes)) => {
            let target = tryop!(target(c, &bytes));
            let parent = (|| {
                let dir = target.export.resolve(&target.fh)?;
                if dir.ino() == target.export.root_ino() {
                    return Ok(None);
                }
                let stat = target.export.lookup(&dir, b"..")?;
                Ok(Some(target.export.handle_at(&dir.fd, b"..", &stat).data.to_vec()))
            })();
            match parent {
                Ok(Some(fh)) => c.current = Some(Fh::Real(fh)),
                // Above an export's root: the pseudo-root.
                Ok(None) => c.current = Some(Fh::Pseudo),
                Err(stat) => return fail(status4(stat)),
            }
            ok(Xdr::default())
        }
    }
}

fn readdir(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let cookie = x.u64().map_err(|_| Garbage)?;
    let _verifier = fixed::<8>(x)?;
    let _dircount = word(x)?;
    let maxcount = word(x)?;
    let requested = bitmap(x)?;
    let budget = (maxcount.min(READDIR_REPLY_MAX) as usize).saturating_sub(16);
    let mut entries = Xdr::default();
    let mut count = 0usize;
    let fh = tryop!(current(c));
    let eof = match &fh {
        Fh::Pseudo => {
            let exports = visible(c);
            let mut eof = true;
            for (i, export) in exports.iter().enumerate() {
                let entry_cookie = i as u64 + 3;
                if entry_cookie <= cookie || export.name == "/" {
                    continue;
                }
                let Ok((handle, root)) = root_handle(export) else { continue };
                let mut one = Xdr::default();
                one.u32(1).u64(entry_cookie).opaque(export.name.trim_start_matches('/').as_bytes());
                let fact = Facts {
                    stat: Some(&root.stat),
                    fileid: root.stat.stx_ino,
                    fsid: export.fsid(),
                    handle: &handle,
                    lease_seconds: c.state.lease_seconds(),
                    space: None,
                    minor: c.minor,
                    idmap: &c.state.idmap,
                };
                attrs::put_fattr(&mut one, &requested, &fact);
                if entries.0.len() + one.0.len() > budget {
                    eof = false;
                    break;
                }
                entries.0.extend_from_slice(&one.0);
                count += 1;
            }
            eof
        }
        Fh::Real(bytes) => {
            let target = tryop!(target(c, bytes));
            let listed = (|| {
                let obj = target.export.resolve(&target.fh)?;
                let fd = crate::nfs3::readdir_open_listing(&target, &obj)?;
                let fsid = target.export.fsid();
                dir::read(&fd, cookie, |entry| {
                    if entry.name == b"." || entry.name == b".." {
                        return true;
                    }
                    let Ok(stat) = target.export.lookup(&obj, entry.name) else { return true };
                    let handle = target.export.handle_at(&obj.fd, entry.name, &stat).data.to_vec();
                    let mut one = Xdr::default();
                    one.u32(1).u64(entry.cookie).opaque(entry.name);
                    let fact = Facts {
                        stat: Some(&stat),
                        fileid: stat.stx_ino,
                        fsid,
                        handle: &handle,
                        lease_seconds: c.state.lease_seconds(),
                        space: None,
                        minor: c.minor,
                        idmap: &c.state.idmap,
                    };
                    attrs::put_fattr(&mut one, &requested, &fact);
                    if entries.0.len() + one.0.len() > budget {
                        return false;
                    }
                    entries.0.extend_from_slice(&one.0);
                    count += 1;
                    true
                })
            })();
            match listed {
                Ok(eof) => eof,
                Err(stat) => return fail(status4(stat)),
            }
        }
    };
    if count == 0 && !eof {
        return fail(NFS4ERR_TOOSMALL);
    }
    let mut body = Xdr::default();
    body.u64(0); // cookie verifier
    body.0.extend_from_slice(&entries.0);
    body.u32(0).u32(eof as u32);
    ok(body)
}

fn setclientid(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let verifier = fixed::<8>(x)?;
    let id = x.opaque(1024).map_err(|_| Garbage)?;
    let _cb_program = word(x)?;
    let _netid = x.opaque(64).map_err(|_| Garbage)?;
    let _addr = x.opaque(128).map_err(|_| Garbage)?;
    let _ident = word(x)?;
    match c.state.v4.set_client(id, verifier) {
        Some((clientid, confirm)) => {
            let mut body = Xdr::default();
            body.u64(clientid);
            body.0.extend_from_slice(&confirm);
            ok(body)
        }
        None => fail(NFS4ERR_RESOURCE),
    }
}

pub(super) fn stateid(x: &mut XdrReader<'_>) -> Result<(u32, [u8; 12]), Garbage> {
    Ok((word(x)?, fixed::<12>(x)?))
}

pub(super) fn put_stateid(body: &mut Xdr, seqid: u32, other: &[u8; 12]) {
    body.u32(seqid);
    body.0.extend_from_slice(other);
}

fn open_confirm(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let (seqid, other) = stateid(x)?;
    let _seqid = word(x)?;
    if c.dry {
        return fail(NFS4_OK);
    }
    let mut body = Xdr::default();
    put_stateid(&mut body, seqid.wrapping_add(1), &other);
    ok(body)
}

fn close(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let _seqid = word(x)?;
    let (_, other) = stateid(x)?;
    if c.dry {
        return fail(NFS4_OK);
    }
    match c.state.v4.close(&other) {
        Some(seqid) => {
            let mut body = Xdr::default();
            put_stateid(&mut body, seqid, &other);
            ok(body)
        }
        None => fail(NFS4ERR_BAD_STATEID),
    }
}

fn read(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let (_, other) = stateid(x)?;
    let offset = x.u64().map_err(|_| Garbage)?;
    let count = word(x)?.min(READ_MAX);
    let fh = match current(c) {
        Ok(Fh::Real(fh)) => fh,
        Ok(Fh::Pseudo) => return fail(NFS4ERR_ISDIR),
        Err(status) => return fail(status),
    };
    match c.state.v4.access(&other, &fh) {
        Some(access) if access & 1 != 0 => {}
        Some(_) => return fail(NFS4ERR_OPENMODE),
        None => return fail(NFS4ERR_BAD_STATEID),
    }
    let target = tryop!(target(c, &fh));
    let zero_copy = c.last_uncached;
    let read = (|| {
        let (open, stat) = target.export.file(&target.fh, false)?;
        let len = stat.stx_size.saturating_sub(offset).min(u64::from(count)) as usize;
        let eof = offset + len as u64 >= stat.stx_size;
        if len > 0 {
            // SAFETY: a plain system call on an open descriptor.
            unsafe { libc::readahead(open.file.as_raw_fd(), offset as i64, len) };
        }
        if zero_copy {
            // The data goes from the page cache to the socket after the
            // reply's bytes (see nfs3's READ); the opaque's length is ours.
            c.file = Some(crate::rpc::FileBody { file: open.file.clone(), offset, len });
            return Ok::<_, nfsstat3>((None, len, eof));
        }
        let mut data = vec![0u8; len];
        let mut done = 0;
        while done < len {
            // SAFETY: a buffer of `len - done` bytes, an open descriptor.
            let n = unsafe {
                libc::pread(
                    open.file.as_raw_fd(),
                    data[done..].as_mut_ptr().cast(),
                    len - done,
                    (offset + done as u64) as i64,
                )
            };
            if n <= 0 {
                break;
            }
            done += n as usize;
        }
        data.truncate(done);
        let eof = offset + done as u64 >= stat.stx_size;
        Ok((Some(data), done, eof))
    })();
    match read {
        Ok((Some(data), _, eof)) => {
            let mut body = Xdr::default();
            body.u32(eof as u32).opaque(&data);
            ok(body)
        }
        Ok((None, len, eof)) => {
            let mut body = Xdr::default();
            body.u32(eof as u32).u32(len as u32);
            ok(body)
        }
        Err(stat) => fail(status4(stat)),
    }
}

/// The export's filesystem's space and files (statvfs), as the caller
/// sees them.
fn space_of(target: &Target<'_>) -> Option<attrs::Space> {
    let obj = target.export.resolve(&target.fh).ok()?;
    let vfs = rustix::fs::fstatvfs(&obj.fd).ok()?;
    let unit = vfs.f_frsize;
    Some(attrs::Space {
        avail: vfs.f_bavail * unit,
        free: vfs.f_bfree * unit,
        total: vfs.f_blocks * unit,
        files_avail: vfs.f_favail,
        files_free: vfs.f_ffree,
        files_total: vfs.f_files,
    })
}
