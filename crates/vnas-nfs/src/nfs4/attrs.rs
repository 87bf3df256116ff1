//! fattr4: the attributes a client asks for by bitmap, encoded in
//! ascending attribute order (RFC 7530 section 5), and the bitmap of
//! those encoded. Owners are numeric ids ("1000"), as Linux clients take
//! them without an ID-mapping domain.

use rustix::fs::{Statx, StatxTimestamp};

use crate::nlm::Xdr;

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
pub const FILEHANDLE: u32 = 19;
pub const FILEID: u32 = 20;
pub const MAXREAD: u32 = 30;
pub const MAXWRITE: u32 = 31;
pub const MODE: u32 = 33;
pub const NUMLINKS: u32 = 35;
pub const OWNER: u32 = 36;
pub const OWNER_GROUP: u32 = 37;
pub const RAWDEV: u32 = 41;
pub const SPACE_USED: u32 = 45;
pub const TIME_ACCESS: u32 = 47;
pub const TIME_METADATA: u32 = 52;
pub const TIME_MODIFY: u32 = 53;
pub const MOUNTED_ON_FILEID: u32 = 55;

/// Every attribute this server encodes, ascending.
const SUPPORTED: [u32; 26] = [
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
    FILEHANDLE,
    FILEID,
    MAXREAD,
    MAXWRITE,
    MODE,
    NUMLINKS,
    OWNER,
    OWNER_GROUP,
    RAWDEV,
    SPACE_USED,
    TIME_ACCESS,
    TIME_METADATA,
    TIME_MODIFY,
    MOUNTED_ON_FILEID,
];

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
    let asked = |a: u32| requested.get((a / 32) as usize).is_some_and(|w| w & (1 << (a % 32)) != 0);
    let mut encoded = Vec::new();
    let mut out = Xdr::default();
    let stat = facts.stat;
    for a in SUPPORTED.iter().copied().filter(|a| asked(*a)) {
        match a {
            SUPPORTED_ATTRS => put_bitmap(&mut out, &bitmap(&SUPPORTED)),
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
                out.opaque(stat.map_or(0, |s| s.stx_uid).to_string().as_bytes());
            }
            OWNER_GROUP => {
                out.opaque(stat.map_or(0, |s| s.stx_gid).to_string().as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_and_order() {
        assert_eq!(bitmap(&[1, 4, 20, 33, 53]), vec![(1 << 1) | (1 << 4) | (1 << 20), (1 << 1) | (1 << 21)]);
        // libnfs's standard attributes: all eleven, in order.
        let requested = [0x0010_0012, 0x0030_A03A];
        let facts = Facts { stat: None, fileid: 7, fsid: 1, handle: b"h", lease_seconds: 90 };
        let (words, values) = encode(&requested, &facts);
        assert_eq!(words, requested.to_vec());
        // type, size, fileid, mode, numlinks, owner "0", group "0",
        // space_used, three times.
        assert_eq!(values.len(), 4 + 8 + 8 + 4 + 4 + 8 + 8 + 8 + 3 * 12);
        assert_eq!(&values[..4], &2u32.to_be_bytes(), "the pseudo-root is a directory");
    }
}
