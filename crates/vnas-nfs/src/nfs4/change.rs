//! The operations that open, create, write and change files: OPEN (every
//! create mode), OPEN_DOWNGRADE, WRITE, COMMIT, SETATTR, CREATE, REMOVE,
//! RENAME, LINK, READLINK, VERIFY and NVERIFY. The changes themselves are
//! NFSv3's procedures (see `v3`).

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::Opaque;

use super::attrs::{self, Facts};
use super::ops::{bitmap, current, facts, fail, fixed, name, ok, put_stateid, stateid, target, word, Done};
use super::*;
use crate::limits::{NAME_MAX, WRITE_MAX};

fn fh3(bytes: &[u8]) -> nfs_fh3 {
    nfs_fh3 { data: Opaque::owned(bytes.to_vec()) }
}

/// The current filehandle, which must be an export's (the pseudo-root
/// cannot be changed).
fn real(c: &Compound<'_>) -> Result<Vec<u8>, u32> {
    match current(c)? {
        Fh::Real(bytes) => Ok(bytes),
        Fh::Pseudo => Err(NFS4ERR_ROFS),
    }
}

fn saved_real(c: &Compound<'_>) -> Result<Vec<u8>, u32> {
    match c.saved.clone().ok_or(NFS4ERR_NOFILEHANDLE)? {
        Fh::Real(bytes) => Ok(bytes),
        Fh::Pseudo => Err(NFS4ERR_ROFS),
    }
}

fn change_of(ctime: (u64, u32)) -> u64 {
    ctime.0 << 32 | u64::from(ctime.1)
}

/// change_info4 from a directory's weak cache consistency data. Atomic
/// when both are there: every change to a directory here runs alone
/// between the two (`Export::resolve_to_change`), so a client whose
/// cached change attribute is `before` knows the change was its own and
/// keeps its cache of the directory; otherwise it looks every name up
/// again.
fn put_cinfo(body: &mut Xdr, wcc: &wcc_data) {
    let (before, after) = match (&wcc.before, &wcc.after) {
        (Nfs3Option::Some(b), Nfs3Option::Some(a)) => (
            Some(change_of((u64::from(b.ctime.seconds), b.ctime.nseconds))),
            Some(change_of((u64::from(a.ctime.seconds), a.ctime.nseconds))),
        ),
        (Nfs3Option::Some(b), Nfs3Option::None) => {
            (Some(change_of((u64::from(b.ctime.seconds), b.ctime.nseconds))), None)
        }
        (Nfs3Option::None, Nfs3Option::Some(a)) => {
            (None, Some(change_of((u64::from(a.ctime.seconds), a.ctime.nseconds))))
        }
        (Nfs3Option::None, Nfs3Option::None) => (None, None),
    };
    let atomic = before.is_some() && after.is_some();
    body.u32(u32::from(atomic)).u64(before.unwrap_or(0)).u64(after.unwrap_or(0));
}

fn fattr4(x: &mut XdrReader<'_>) -> Result<(Vec<u32>, Vec<u8>), Garbage> {
    let words = bitmap(x)?;
    let values = x.opaque(64 * 1024).map_err(|_| Garbage)?.to_vec();
    Ok((words, values))
}

fn component<'a>(x: &mut XdrReader<'a>) -> Result<&'a [u8], Garbage> {
    name(x)
}

fn check_component(name: &[u8]) -> Result<(), u32> {
    if name.is_empty() {
        return Err(NFS4ERR_INVAL);
    }
    if name.len() > NAME_MAX {
        return Err(63); // NFS4ERR_NAMETOOLONG
    }
    if name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(10041); // NFS4ERR_BADNAME
    }
    Ok(())
}

/// The object handle a create returned.
fn made(obj: post_op_fh3) -> Result<Vec<u8>, u32> {
    match obj {
        Nfs3Option::Some(fh) => Ok(fh.data.to_vec()),
        Nfs3Option::None => Err(NFS4ERR_SERVERFAULT),
    }
}

pub fn write(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let (_, other) = stateid(x)?;
    let offset = x.u64().map_err(|_| Garbage)?;
    let stable = match word(x)? {
        0 => stable_how::UNSTABLE,
        1 => stable_how::DATA_SYNC,
        2 => stable_how::FILE_SYNC,
        _ => return Err(Garbage),
    };
    let data = x.opaque(WRITE_MAX as usize).map_err(|_| Garbage)?;
    let fh = tryop!(real(c));
    match c.state.v4.access(&other, &fh) {
        Some(access) if access & 2 != 0 => {}
        Some(_) => return fail(NFS4ERR_OPENMODE),
        None => return fail(NFS4ERR_BAD_STATEID),
    }
    let args =
        WRITE3args { file: fh3(&fh), offset, count: data.len() as u32, stable, data: Opaque::borrowed(data) };
    let done: WRITE3resok = tryop!(v3::call(c, v3::WRITE, &args));
    let mut body = Xdr::default();
    body.u32(done.count).u32(done.committed as u32);
    body.0.extend_from_slice(&done.verf.0);
    ok(body)
}

pub fn commit(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let offset = x.u64().map_err(|_| Garbage)?;
    let count = word(x)?;
    let fh = tryop!(real(c));
    let done: COMMIT3resok = tryop!(v3::call(c, v3::COMMIT, &COMMIT3args { file: fh3(&fh), offset, count }));
    let mut body = Xdr::default();
    body.0.extend_from_slice(&done.verf.0);
    ok(body)
}

fn set_attrs(c: &Compound<'_>, fh: &[u8], set: sattr3) -> Result<(), u32> {
    let args = SETATTR3args { object: fh3(fh), new_attributes: set, guard: Nfs3Option::None };
    v3::call::<_, SETATTR3resok>(c, v3::SETATTR, &args).map(|_| ())
}

pub fn setattr(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let (_, _other) = stateid(x)?;
    let (words, values) = fattr4(x)?;
    // SETATTR4res carries the bitmap of what was set whatever the status.
    let failed = |status: u32| Ok((status, 0u32.to_be_bytes().to_vec()));
    let fh = match real(c) {
        Ok(fh) => fh,
        Err(status) => return failed(status),
    };
    let (set, given) = match attrs::settable(&words, &values, &c.state.idmap) {
        Ok(found) => found,
        Err(status) => return failed(status),
    };
    if let Err(status) = set_attrs(c, &fh, set) {
        return failed(status);
    }
    let mut body = Xdr::default();
    attrs::put_bitmap(&mut body, &attrs::bitmap(&given));
    ok(body)
}

pub fn create(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    enum Kind<'a> {
        Dir,
        Link(&'a [u8]),
        Device(u32, u32, u32),
        Special(u32),
    }
    let kind = match word(x)? {
        2 => Kind::Dir,
        5 => Kind::Link(x.opaque(4096).map_err(|_| Garbage)?),
        t @ (3 | 4) => Kind::Device(t, word(x)?, word(x)?),
        t @ (6 | 7) => Kind::Special(t),
        _ => return fail(NFS4ERR_BADTYPE),
    };
    let file = component(x)?;
    let (words, values) = fattr4(x)?;
    tryop!(check_component(file));
    let dir = tryop!(real(c));
    let (set, given) = tryop!(attrs::settable(&words, &values, &c.state.idmap));
    let where_ = diropargs3 { dir: fh3(&dir), name: filename3(Opaque::borrowed(file)) };
    let (obj, wcc) = match kind {
        Kind::Dir => {
            let done: MKDIR3resok = tryop!(v3::call(c, v3::MKDIR, &MKDIR3args { where_, attributes: set }));
            (done.obj, done.dir_wcc)
        }
        Kind::Link(path) => {
            let symlink =
                symlinkdata3 { symlink_attributes: set, symlink_data: nfspath3(Opaque::borrowed(path)) };
            let done: SYMLINK3resok = tryop!(v3::call(c, v3::SYMLINK, &SYMLINK3args { where_, symlink }));
            (done.obj, done.dir_wcc)
        }
        Kind::Device(t, major, minor) => {
            let data =
                devicedata3 { dev_attributes: set, spec: specdata3 { specdata1: major, specdata2: minor } };
            let what = if t == 3 { mknoddata3::NF3BLK(data) } else { mknoddata3::NF3CHR(data) };
            let done: MKNOD3resok = tryop!(v3::call(c, v3::MKNOD, &MKNOD3args { where_, what }));
            (done.obj, done.dir_wcc)
        }
        Kind::Special(t) => {
            let what = if t == 6 { mknoddata3::NF3SOCK(set) } else { mknoddata3::NF3FIFO(set) };
            let done: MKNOD3resok = tryop!(v3::call(c, v3::MKNOD, &MKNOD3args { where_, what }));
            (done.obj, done.dir_wcc)
        }
    };
    c.current = Some(Fh::Real(tryop!(made(obj))));
    let mut body = Xdr::default();
    put_cinfo(&mut body, &wcc);
    attrs::put_bitmap(&mut body, &attrs::bitmap(&given));
    ok(body)
}

pub fn remove(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let file = component(x)?;
    tryop!(check_component(file));
    let dir = tryop!(real(c));
    let args = REMOVE3args { object: diropargs3 { dir: fh3(&dir), name: filename3(Opaque::borrowed(file)) } };
    let wcc = match v3::call::<_, REMOVE3resok>(c, v3::REMOVE, &args) {
        Ok(done) => done.dir_wcc,
        // NFSv4's REMOVE takes directories too.
        Err(s) if s == NFS4ERR_ISDIR || s == 1 => {
            let args = RMDIR3args { object: args.object };
            tryop!(v3::call::<_, RMDIR3resok>(c, v3::RMDIR, &args)).dir_wcc
        }
        Err(status) => return fail(status),
    };
    let mut body = Xdr::default();
    put_cinfo(&mut body, &wcc);
    ok(body)
}

pub fn rename(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let from = component(x)?;
    let to = component(x)?;
    tryop!(check_component(from));
    tryop!(check_component(to));
    let from_dir = tryop!(saved_real(c));
    let to_dir = tryop!(real(c));
    let args = RENAME3args {
        from: diropargs3 { dir: fh3(&from_dir), name: filename3(Opaque::borrowed(from)) },
        to: diropargs3 { dir: fh3(&to_dir), name: filename3(Opaque::borrowed(to)) },
    };
    let done: RENAME3resok = tryop!(v3::call(c, v3::RENAME, &args));
    let mut body = Xdr::default();
    put_cinfo(&mut body, &done.fromdir_wcc);
    put_cinfo(&mut body, &done.todir_wcc);
    ok(body)
}

pub fn link(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let new = component(x)?;
    tryop!(check_component(new));
    let file = tryop!(saved_real(c));
    let dir = tryop!(real(c));
    let args = LINK3args {
        file: fh3(&file),
        link: diropargs3 { dir: fh3(&dir), name: filename3(Opaque::borrowed(new)) },
    };
    let done: LINK3resok = tryop!(v3::call(c, v3::LINK, &args));
    let mut body = Xdr::default();
    put_cinfo(&mut body, &done.linkdir_wcc);
    ok(body)
}

pub fn readlink(c: &mut Compound<'_>) -> Result<Done, Garbage> {
    let fh = match current(c) {
        Ok(Fh::Real(fh)) => fh,
        Ok(Fh::Pseudo) => return fail(NFS4ERR_INVAL),
        Err(status) => return fail(status),
    };
    let done: READLINK3resok<'static> =
        tryop!(v3::call(c, v3::READLINK, &READLINK3args { symlink: fh3(&fh) }));
    let mut body = Xdr::default();
    body.opaque(&done.data.0);
    ok(body)
}

/// VERIFY (`same`) and NVERIFY: the attributes given against the object's.
pub fn verify(c: &mut Compound<'_>, x: &mut XdrReader<'_>, same: bool) -> Result<Done, Garbage> {
    let (words, values) = fattr4(x)?;
    let fh = tryop!(current(c));
    let stat = match &fh {
        Fh::Pseudo => None,
        Fh::Real(bytes) => {
            let target = tryop!(target(c, bytes));
            Some((tryop!(target.export.resolve_stat(&target.fh).map_err(status4)), target.export.fsid()))
        }
    };
    let fact: Facts<'_> = facts(c, &fh, stat.as_ref().map(|s| &s.0), stat.as_ref().map_or(0, |s| s.1));
    let (encoded, ours) = attrs::encode(&words, &fact);
    if attrs::listed(&encoded) != attrs::listed(&words) {
        return fail(NFS4ERR_ATTRNOTSUPP);
    }
    let equal = ours == values;
    fail(match (same, equal) {
        (true, true) | (false, false) => NFS4_OK,
        (true, false) => 10027, // NFS4ERR_NOT_SAME
        (false, true) => 10009, // NFS4ERR_SAME
    })
}

/// How OPEN creates, if it does.
enum How {
    NoCreate,
    Unchecked(Vec<u32>, Vec<u8>),
    Guarded(Vec<u32>, Vec<u8>),
    Exclusive([u8; 8], Option<(Vec<u32>, Vec<u8>)>),
}

pub fn open(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let _seqid = word(x)?;
    // The low bits are the access; NFSv4.1 puts delegation wishes above.
    let access = word(x)? & 3;
    let deny = word(x)? & 3;
    let owner_client = x.u64().map_err(|_| Garbage)?;
    let owner = x.opaque(1024).map_err(|_| Garbage)?.to_vec();
    let how = match word(x)? {
        0 => How::NoCreate,
        1 => match word(x)? {
            0 => {
                let (w, v) = fattr4(x)?;
                How::Unchecked(w, v)
            }
            1 => {
                let (w, v) = fattr4(x)?;
                How::Guarded(w, v)
            }
            2 => How::Exclusive(fixed(x)?, None),
            3 => {
                let verf = fixed(x)?;
                How::Exclusive(verf, Some(fattr4(x)?))
            }
            _ => return Err(Garbage),
        },
        _ => return Err(Garbage),
    };
    let clientid = c.clientid.unwrap_or(owner_client);
    if c.minor == 0 && !c.state.v4.renew(clientid) {
        return fail(NFS4ERR_STALE_CLIENTID);
    }
    if access == 0 {
        return fail(NFS4ERR_INVAL);
    }
    // CLAIM_NULL (a name in the current directory), CLAIM_FH (the current
    // filehandle is the file) or, in a grace period, CLAIM_PREVIOUS (the
    // current filehandle is the file a listed client had open).
    let claim = word(x)?;
    let (dir, file) = match claim {
        0 => {
            let file = component(x)?;
            tryop!(check_component(file));
            (
                Some(tryop!(match current(c) {
                    Ok(Fh::Real(fh)) => Ok(fh),
                    Ok(Fh::Pseudo) => Err(NFS4ERR_ROFS),
                    Err(s) => Err(s),
                })),
                Some(file),
            )
        }
        4 => (None, None),
        1 => {
            let _delegate_type = word(x)?;
            (None, None)
        }
        _ => return fail(NFS4ERR_NOTSUPP),
    };
    if c.dry {
        return fail(NFS4_OK);
    }
    match super::grace::call(c.state, clientid, claim == 1) {
        super::grace::GraceCall::Go => {}
        super::grace::GraceCall::Wait => return fail(NFS4ERR_GRACE),
        super::grace::GraceCall::NoGrace => return fail(NFS4ERR_NO_GRACE),
    }
    let mut given = Vec::new();
    let mut cinfo = wcc_data::default();
    let fh = match (&dir, file) {
        (Some(dir), Some(file)) => {
            let where_ = diropargs3 { dir: fh3(dir), name: filename3(Opaque::borrowed(file)) };
            let created = match &how {
                How::NoCreate => None,
                How::Unchecked(w, v) | How::Guarded(w, v) => {
                    let (set, g) = tryop!(attrs::settable(w, v, &c.state.idmap));
                    given = g;
                    let how = if matches!(how, How::Guarded(..)) {
                        createhow3::GUARDED(set)
                    } else {
                        createhow3::UNCHECKED(set)
                    };
                    Some((CREATE3args { where_, how }, None))
                }
                How::Exclusive(verf, attrs_given) => {
                    let after = match attrs_given {
                        Some((w, v)) => {
                            let (mut set, g) = tryop!(attrs::settable(w, v, &c.state.idmap));
                            // The verifier lives in the times.
                            set.atime = set_atime::DONT_CHANGE;
                            set.mtime = set_mtime::DONT_CHANGE;
                            given = g
                                .into_iter()
                                .filter(|a| *a != attrs::TIME_ACCESS_SET && *a != attrs::TIME_MODIFY_SET)
                                .collect();
                            Some(set)
                        }
                        None => None,
                    };
                    Some((CREATE3args { where_, how: createhow3::EXCLUSIVE(createverf3(*verf)) }, after))
                }
            };
            match created {
                Some((args, after)) => {
                    let done: CREATE3resok = tryop!(v3::call(c, v3::CREATE, &args));
                    cinfo = done.dir_wcc;
                    let fh = tryop!(made(done.obj));
                    if let Some(set) = after {
                        tryop!(set_attrs(c, &fh, set));
                    }
                    fh
                }
                None => {
                    let target = tryop!(target(c, dir));
                    let found = (|| {
                        let d = target.export.resolve(&target.fh)?;
                        let stat = target.export.lookup(&d, file)?;
                        Ok(target.export.handle_at(&d.fd, file, &stat).data.to_vec())
                    })();
                    tryop!(found.map_err(status4))
                }
            }
        }
        _ => tryop!(real(c)),
    };
    let target = tryop!(target(c, &fh));
    let stat = tryop!(target.export.resolve_stat(&target.fh).map_err(status4));
    match attrs::ftype(Some(&stat)) {
        1 => {}
        2 => return fail(NFS4ERR_ISDIR),
        5 => return fail(NFS4ERR_SYMLINK),
        _ => return fail(10083), // NFS4ERR_WRONG_TYPE
    }
    if access & 1 != 0 && !target.may_data(&stat, ACCESS3_READ) {
        return fail(NFS4ERR_ACCESS);
    }
    if access & 2 != 0 {
        if target
            .export
            .rule_for(c.conn.peer.ip())
            .is_some_and(|r| r.access == crate::config::Access::ReadOnly)
        {
            return fail(NFS4ERR_ROFS);
        }
        if !target.may_data(&stat, ACCESS3_MODIFY) {
            return fail(NFS4ERR_ACCESS);
        }
    }
    // An NLM SHARE (a v3 client's) stands against v4 opens too.
    if c.state.locks.share_conflict(&fh, access, deny) {
        return fail(NFS4ERR_SHARE_DENIED);
    }
    let (seqid, other) = match c.state.v4.open(clientid, &owner, &fh, access, deny) {
        Ok(opened) => opened,
        Err(state::Refused::ShareDenied) => return fail(NFS4ERR_SHARE_DENIED),
        Err(state::Refused::Full) => {
            return fail(if c.minor == 0 { NFS4ERR_RESOURCE } else { NFS4ERR_DELAY })
        }
    };
    c.current = Some(Fh::Real(fh));
    let mut body = Xdr::default();
    put_stateid(&mut body, seqid, &other);
    put_cinfo(&mut body, &cinfo);
    // OPEN4_RESULT_LOCKTYPE_POSIX; no confirmation needed; and, to a
    // client with a back channel, OPEN4_RESULT_MAY_NOTIFY_LOCK: it waits
    // for word that a lock is free rather than polling.
    let notify = if c.minor >= 1 && c.state.sessions.has_callbacks(clientid) { 0x20 } else { 0 };
    body.u32(4 | notify);
    attrs::put_bitmap(&mut body, &attrs::bitmap(&given));
    body.u32(0); // OPEN_DELEGATE_NONE
    ok(body)
}

pub fn open_downgrade(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let (_, other) = stateid(x)?;
    let _seqid = word(x)?;
    let access = word(x)? & 3;
    let deny = word(x)? & 3;
    if c.dry {
        return fail(NFS4_OK);
    }
    if access == 0 {
        return fail(NFS4ERR_INVAL);
    }
    if !c.state.v4.known_state(&other) {
        return fail(NFS4ERR_BAD_STATEID);
    }
    // Only to what the open already has.
    let Some(seqid) = c.state.v4.downgrade(&other, access, deny) else { return fail(NFS4ERR_INVAL) };
    let mut body = Xdr::default();
    put_stateid(&mut body, seqid, &other);
    ok(body)
}
