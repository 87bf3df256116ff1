//! fattr4: the attributes a client asks for by bitmap, encoded in
//! ascending attribute order (RFC 7530 section 5), and the bitmap of
//! those encoded. Owners are numeric ids ("1000"), as Linux clients take
//! them without an ID-mapping domain.

use rustix::fs::{Statx, StatxTimestamp};

use nfs3_types::nfs3::{nfstime3, sattr3, set_atime, set_mtime, Nfs3Option};

use super::idmap::{IdMap, Kind};
use crate::nlm::Xdr;
use crate::rpc::xdr::XdrReader;

pub const SUPPORTED_ATTRS: u32 = 0;
pub const TYPE: u32 = 1;
pub const FH_EXPIRE_TYPE: u32 = 2;
pub const CHANGE: u32 = 3;
pub const SIZE: u32 = 4;
pub const LINK_SUPPORT: u32 = 5;
pub const SYMLINK_SUPPORT: u32 = 6;
pub const NAMED_ATTR: u32 = 7;
pub const FSID: u32 = 8;
pub const UNIQUE_HANDLES: u32 = 9;
pub const LEASE_TIME: u32 = 10;
pub const RDATTR_ERROR: u32 = 11;
pub const ACLSUPPORT: u32 = 13;
pub const CANSETTIME: u32 = 15;
pub const CASE_INSENSITIVE: u32 = 16;
pub const CASE_PRESERVING: u32 = 17;
pub const CHOWN_RESTRICTED: u32 = 18;
pub const FILEHANDLE: u32 = 19;
pub const FILEID: u32 = 20;
pub const FILES_AVAIL: u32 = 21;
pub const FILES_FREE: u32 = 22;
pub const FILES_TOTAL: u32 = 23;
pub const HOMOGENEOUS: u32 = 26;
pub const MAXFILESIZE: u32 = 27;
pub const MAXLINK: u32 = 28;
pub const MAXNAME: u32 = 29;
pub const MAXREAD: u32 = 30;
pub const MAXWRITE: u32 = 31;
pub const MODE: u32 = 33;
pub const NO_TRUNC: u32 = 34;
pub const NUMLINKS: u32 = 35;
pub const OWNER: u32 = 36;
pub const OWNER_GROUP: u32 = 37;
pub const RAWDEV: u32 = 41;
pub const SPACE_AVAIL: u32 = 42;
pub const SPACE_FREE: u32 = 43;
pub const SPACE_TOTAL: u32 = 44;
pub const SPACE_USED: u32 = 45;
pub const TIME_ACCESS: u32 = 47;
pub const TIME_ACCESS_SET: u32 = 48;
pub const TIME_DELTA: u32 = 51;
pub const TIME_METADATA: u32 = 52;
pub const TIME_MODIFY: u32 = 53;
pub const TIME_MODIFY_SET: u32 = 54;
pub const MOUNTED_ON_FILEID: u32 = 55;
/// NFSv4.1: the attributes an EXCLUSIVE4_1 create may set.
pub const SUPPATTR_EXCLCREAT: u32 = 75;

/// What SETATTR and a create may set.
pub const SETTABLE: [u32; 6] = [SIZE, MODE, OWNER, OWNER_GROUP, TIME_ACCESS_SET, TIME_MODIFY_SET];

/// Every attribute this server encodes, ascending.
const SUPPORTED: [u32; 45] = [
    SUPPORTED_ATTRS,
    TYPE,
    FH_EXPIRE_TYPE,
    CHANGE,
    SIZE,
    LINK_SUPPORT,
    SYMLINK_SUPPORT,
    NAMED_ATTR,
    FSID,
    UNIQUE_HANDLES,
    LEASE_TIME,
    RDATTR_ERROR,
    ACLSUPPORT,
    CANSETTIME,
    CASE_INSENSITIVE,
    CASE_PRESERVING,
    CHOWN_RESTRICTED,
    FILEHANDLE,
    FILEID,
    FILES_AVAIL,
    FILES_FREE,
    FILES_TOTAL,
    HOMOGENEOUS,
    MAXFILESIZE,
    MAXLINK,
    MAXNAME,
    MAXREAD,
    MAXWRITE,
    MODE,
    NO_TRUNC,
    NUMLINKS,
    OWNER,
    OWNER_GROUP,
    RAWDEV,
    SPACE_AVAIL,
    SPACE_FREE,
    SPACE_TOTAL,
    SPACE_USED,
    TIME_ACCESS,
    TIME_ACCESS_SET,
    TIME_DELTA,
    TIME_METADATA,
    TIME_MODIFY,
    TIME_MODIFY_SET,
    MOUNTED_ON_FILEID,
];

/// The bitmap of every attribute served (supported_attrs); NFSv4.1 adds
/// suppattr_exclcreat.
fn supported_bitmap(minor: u32) -> Vec<u32> {
    let mut all = SUPPORTED.to_vec();
    if minor >= 1 {
        all.push(SUPPATTR_EXCLCREAT);
    }
    bitmap(&all)
}

/// Whether a bitmap names attribute `a`.
pub fn has(words: &[u32], a: u32) -> bool {
    words.get((a / 32) as usize).is_some_and(|w| w & (1 << (a % 32)) != 0)
}

/// The attributes of a bitmap, ascending.
pub fn listed(words: &[u32]) -> Vec<u32> {
    (0..words.len() as u32 * 32).filter(|a| has(words, *a)).collect()
}

/// A bitmap4 as words.
pub fn bitmap(attrs: &[u32]) -> Vec<u32> {
    let mut words = Vec::new();
    for a in attrs {
        let word = (*a / 32) as usize;
        if words.len() <= word {
            words.resize(word + 1, 0);
        }
        words[word] |= 1 << (a % 32);
    }
    words
}

pub fn put_bitmap(out: &mut Xdr, words: &[u32]) {
    out.u32(words.len() as u32);
    for w in words {
        out.u32(*w);
    }
}

/// What an object is, for its attributes.
pub struct Facts<'a> {
    pub stat: Option<&'a Statx>,
    /// Directory, for the pseudo-root (which has no stat of its own).
    pub fileid: u64,
    pub fsid: u64,
    pub handle: &'a [u8],
    pub lease_seconds: u32,
    /// The filesystem's space and files, when one of those was asked for.
    pub space: Option<Space>,
    /// The COMPOUND's minor version.
    pub minor: u32,
    /// How owners are told.
    pub idmap: &'a super::idmap::IdMap,
}

/// Space and file counts of an export's filesystem (statvfs).
#[derive(Clone, Copy, Default)]
pub struct Space {
    pub avail: u64,
    pub free: u64,
    pub total: u64,
    pub files_avail: u64,
    pub files_free: u64,
    pub files_total: u64,
}

/// Whether any space or file count is asked for (a statvfs is needed).
pub fn wants_space(requested: &[u32]) -> bool {
    [FILES_AVAIL, FILES_FREE, FILES_TOTAL, SPACE_AVAIL, SPACE_FREE, SPACE_TOTAL]
        .iter()
        .any(|a| has(requested, *a))
}

fn time(out: &mut Xdr, ts: Option<StatxTimestamp>) {
    let (sec, nsec) = ts.map_or((0, 0), |t| (t.tv_sec, t.tv_nsec));
    out.u64(sec as u64).u32(nsec);
}

/// nfs_ftype4 of a stat's mode.
pub fn ftype(stat: Option<&Statx>) -> u32 {
    let Some(stat) = stat else { return 2 };
    match u32::from(stat.stx_mode) & libc::S_IFMT {
        libc::S_IFREG => 1,
        libc::S_IFDIR => 2,
        libc::S_IFBLK => 3,
        libc::S_IFCHR => 4,
        libc::S_IFLNK => 5,
        libc::S_IFSOCK => 6,
        libc::S_IFIFO => 7,
        _ => 1,
    }
}

/// The attributes asked for (`requested`, a bitmap's words) that this
/// server has: the bitmap of those encoded, and their values.
pub fn encode(requested: &[u32], facts: &Facts<'_>) -> (Vec<u32>, Vec<u8>) {
    let asked = |a: u32| has(requested, a) && (a != SUPPATTR_EXCLCREAT || facts.minor >= 1);
    let mut encoded = Vec::new();
    let space = facts.space.unwrap_or_default();
    let mut out = Xdr::default();
    let stat = facts.stat;
    for a in SUPPORTED.iter().copied().chain([SUPPATTR_EXCLCREAT]).filter(|a| asked(*a)) {
        match a {
            SUPPORTED_ATTRS => put_bitmap(&mut out, &supported_bitmap(facts.minor)),
            SUPPATTR_EXCLCREAT => put_bitmap(&mut out, &bitmap(&[SIZE, MODE, OWNER, OWNER_GROUP])),
            // Write-only attributes are never returned.
            TIME_ACCESS_SET | TIME_MODIFY_SET => continue,
            ACLSUPPORT => {
                out.u32(0);
            }
            CANSETTIME | CASE_PRESERVING | CHOWN_RESTRICTED | HOMOGENEOUS | NO_TRUNC => {
                out.u32(1);
            }
            CASE_INSENSITIVE => {
                out.u32(0);
            }
            FILES_AVAIL => {
                out.u64(space.files_avail);
            }
            FILES_FREE => {
                out.u64(space.files_free);
            }
            FILES_TOTAL => {
                out.u64(space.files_total);
            }
            SPACE_AVAIL => {
                out.u64(space.avail);
            }
            SPACE_FREE => {
                out.u64(space.free);
            }
            SPACE_TOTAL => {
                out.u64(space.total);
            }
            MAXFILESIZE => {
                out.u64(i64::MAX as u64);
            }
            MAXLINK => {
                out.u32(65_000);
            }
            MAXNAME => {
                out.u32(crate::limits::NAME_MAX as u32);
            }
            TIME_DELTA => {
                out.u64(0).u32(1);
            }
            TYPE => {
                out.u32(ftype(stat));
            }
            FH_EXPIRE_TYPE => {
                out.u32(0); // FH4_PERSISTENT
            }
            CHANGE => {
                let change =
                    stat.map_or(1, |s| (s.stx_ctime.tv_sec as u64) << 32 | u64::from(s.stx_ctime.tv_nsec));
                out.u64(change);
            }
            SIZE => {
                out.u64(stat.map_or(4096, |s| s.stx_size));
            }
            LINK_SUPPORT | SYMLINK_SUPPORT => {
                out.u32(1);
            }
            NAMED_ATTR => {
                out.u32(0);
            }
            FSID => {
                out.u64(facts.fsid).u64(0);
            }
            UNIQUE_HANDLES => {
                out.u32(1);
            }
            LEASE_TIME => {
                out.u32(facts.lease_seconds);
            }
            RDATTR_ERROR => {
                out.u32(0);
            }
            FILEHANDLE => {
                out.opaque(facts.handle);
            }
            FILEID | MOUNTED_ON_FILEID => {
                out.u64(facts.fileid);
            }
            MAXREAD | MAXWRITE => {
                out.u64(u64::from(crate::limits::READ_MAX));
            }
            MODE => {
                out.u32(stat.map_or(0o555, |s| u32::from(s.stx_mode) & 0o7777));
            }
            NUMLINKS => {
                out.u32(stat.map_or(2, |s| s.stx_nlink));
            }
            OWNER => {
                out.opaque(facts.idmap.to_text(Kind::User, stat.map_or(0, |s| s.stx_uid)).as_bytes());
            }
            OWNER_GROUP => {
                out.opaque(facts.idmap.to_text(Kind::Group, stat.map_or(0, |s| s.stx_gid)).as_bytes());
            }
            RAWDEV => {
                out.u32(stat.map_or(0, |s| s.stx_rdev_major)).u32(stat.map_or(0, |s| s.stx_rdev_minor));
            }
            SPACE_USED => {
                out.u64(stat.map_or(0, |s| s.stx_blocks * 512));
            }
            TIME_ACCESS => time(&mut out, stat.map(|s| s.stx_atime)),
            TIME_METADATA => time(&mut out, stat.map(|s| s.stx_ctime)),
            TIME_MODIFY => time(&mut out, stat.map(|s| s.stx_mtime)),
            _ => continue,
        }
        encoded.push(a);
    }
    (bitmap(&encoded), out.0)
}

/// fattr4: the bitmap of what follows, then the values as one opaque.
pub fn put_fattr(out: &mut Xdr, requested: &[u32], facts: &Facts<'_>) {
    let (words, values) = encode(requested, facts);
    put_bitmap(out, &words);
    out.opaque(&values);
}

/// A fattr4 a client sends (SETATTR, OPEN and CREATE): the settable
/// attributes as NFSv3's sattr3, and which of them were given. Owners are
/// numeric ids, or names of the ID-mapping domain if there is one; an
/// owner that names no one here is NFS4ERR_BADOWNER, any other attribute
/// NFS4ERR_ATTRNOTSUPP (read-only ones NFS4ERR_INVAL).
pub fn settable(words: &[u32], values: &[u8], idmap: &IdMap) -> Result<(sattr3, Vec<u32>), u32> {
    let mut x = XdrReader::new(values);
    let mut set = sattr3::default();
    let given = listed(words);
    let bad = |_| super::NFS4ERR_BADXDR;
    for a in &given {
        match *a {
            SIZE => set.size = Nfs3Option::Some(x.u64().map_err(bad)?),
            MODE => set.mode = Nfs3Option::Some(x.u32().map_err(bad)? & 0o7777),
            OWNER | OWNER_GROUP => {
                let text = x.opaque(1024).map_err(bad)?;
                let kind = if *a == OWNER { Kind::User } else { Kind::Group };
                let id = idmap.to_id(kind, text).ok_or(super::NFS4ERR_BADOWNER)?;
                if *a == OWNER {
                    set.uid = Nfs3Option::Some(id);
                } else {
                    set.gid = Nfs3Option::Some(id);
                }
            }
            TIME_ACCESS_SET | TIME_MODIFY_SET => {
                let client = match x.u32().map_err(bad)? {
                    0 => None,
                    1 => {
                        let sec = x.u64().map_err(bad)? as i64;
                        let nsec = x.u32().map_err(bad)?;
                        if nsec >= 1_000_000_000 {
                            return Err(super::NFS4ERR_INVAL);
                        }
                        Some(nfstime3 { seconds: sec.clamp(0, i64::from(u32::MAX)) as u32, nseconds: nsec })
                    }
                    _ => return Err(super::NFS4ERR_BADXDR),
                };
                if *a == TIME_ACCESS_SET {
                    set.atime = client.map_or(set_atime::SET_TO_SERVER_TIME, set_atime::SET_TO_CLIENT_TIME);
                } else {
                    set.mtime = client.map_or(set_mtime::SET_TO_SERVER_TIME, set_mtime::SET_TO_CLIENT_TIME);
                }
            }
            a if SUPPORTED.contains(&a) || a == SUPPATTR_EXCLCREAT => return Err(super::NFS4ERR_INVAL),
            _ => return Err(super::NFS4ERR_ATTRNOTSUPP),
        }
    }
    Ok((set, given))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_and_order() {
        assert_eq!(bitmap(&[1, 4, 20, 33, 53]), vec![(1 << 1) | (1 << 4) | (1 << 20), (1 << 1) | (1 << 21)]);
        // libnfs's standard attributes: all eleven, in order.
        let requested = [0x0010_0012, 0x0030_A03A];
        let idmap = IdMap::new(None);
        let facts = Facts {
            stat: None,
            fileid: 7,
            fsid: 1,
            handle: b"h",
            lease_seconds: 90,
            space: None,
            minor: 0,
            idmap: &idmap,
        };
        let (words, values) = encode(&requested, &facts);
        assert_eq!(words, requested.to_vec());
        // type, size, fileid, mode, numlinks, owner "0", group "0",
        // space_used, three times.
        assert_eq!(values.len(), 4 + 8 + 8 + 4 + 4 + 8 + 8 + 8 + 3 * 12);
        assert_eq!(&values[..4], &2u32.to_be_bytes(), "the pseudo-root is a directory");
    }
}
