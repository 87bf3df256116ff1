//! File handles: what a client holds to name an object.
//!
//! Layout (32 bytes, big endian):
//!
//! ```text
//! 0      1        4          8         16    20         24       32
//! | ver | zero  | export id | inode   | gen | zero     | mac     |
//! ```
//!
//! No time, counter or process id: the handle names the export and the
//! object's identity on the filesystem (inode and a generation taken from
//! its birth time), so any process serving the same storage resolves it.
//! The MAC, keyed per export, makes handles unforgeable: a client cannot
//! make up a handle for an inode it was never given, such as one outside
//! the export on the same filesystem.

use std::hash::Hasher;

use siphasher::sip::SipHasher24;

pub const HANDLE_LEN: usize = 32;
const VERSION: u8 = 1;

/// The secret that signs an export's handles. It lives with the storage
/// (an extended attribute on the export's root), so every server of that
/// storage signs alike.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HandleKey(pub [u8; 16]);

impl std::fmt::Debug for HandleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandleKey(..)")
    }
}

impl HandleKey {
    fn mac(&self, body: &[u8]) -> u64 {
        let mut hasher = SipHasher24::new_with_key(&self.0);
        hasher.write(body);
        hasher.finish()
    }
}

/// A decoded handle, not yet checked against its export's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHandle {
    pub export_id: u32,
    pub ino: u64,
    pub gen: u32,
}

/// Why a handle was refused before any filesystem access.
#[derive(Debug, PartialEq, Eq)]
pub enum HandleError {
    /// Wrong length or version: not one of ours (NFS3ERR_BADHANDLE).
    Malformed,
    /// Well formed, but the MAC does not match: forged or from another
    /// storage (NFS3ERR_BADHANDLE).
    Forged,
}

impl FileHandle {
    pub fn encode(&self, key: &HandleKey) -> [u8; HANDLE_LEN] {
        let mut out = [0u8; HANDLE_LEN];
        out[0] = VERSION;
        out[4..8].copy_from_slice(&self.export_id.to_be_bytes());
        out[8..16].copy_from_slice(&self.ino.to_be_bytes());
        out[16..20].copy_from_slice(&self.gen.to_be_bytes());
        let mac = key.mac(&out[..24]);
        out[24..32].copy_from_slice(&mac.to_be_bytes());
        out
    }

    /// Reads the fields; the caller then checks the MAC with [`verify`](Self::verify)
    /// using the key of the export the handle names.
    pub fn decode(bytes: &[u8]) -> Result<FileHandle, HandleError> {
        if bytes.len() != HANDLE_LEN || bytes[0] != VERSION {
            return Err(HandleError::Malformed);
        }
        let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        Ok(FileHandle {
            export_id: u32_at(4),
            ino: u64::from_be_bytes(bytes[8..16].try_into().unwrap()),
            gen: u32_at(16),
        })
    }

    pub fn verify(bytes: &[u8], key: &HandleKey) -> Result<(), HandleError> {
        if bytes.len() != HANDLE_LEN {
            return Err(HandleError::Malformed);
        }
        let mac = u64::from_be_bytes(bytes[24..32].try_into().unwrap());
        if key.mac(&bytes[..24]) == mac {
            Ok(())
        } else {
            Err(HandleError::Forged)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: HandleKey = HandleKey([7; 16]);

    #[test]
    fn round_trip() {
        let fh = FileHandle { export_id: 42, ino: 1 << 40, gen: 9 };
        let bytes = fh.encode(&KEY);
        assert_eq!(FileHandle::decode(&bytes), Ok(fh));
        assert_eq!(FileHandle::verify(&bytes, &KEY), Ok(()));
    }

    #[test]
    fn forged_inode_is_refused() {
        let mut bytes = FileHandle { export_id: 1, ino: 100, gen: 0 }.encode(&KEY);
        bytes[15] ^= 1;
        assert_eq!(FileHandle::verify(&bytes, &KEY), Err(HandleError::Forged));
        let other = HandleKey([8; 16]);
        let bytes = FileHandle { export_id: 1, ino: 100, gen: 0 }.encode(&other);
        assert_eq!(FileHandle::verify(&bytes, &KEY), Err(HandleError::Forged));
    }

    #[test]
    fn malformed() {
        assert_eq!(FileHandle::decode(&[1; 31]), Err(HandleError::Malformed));
        let mut bytes = FileHandle { export_id: 1, ino: 2, gen: 3 }.encode(&KEY);
        bytes[0] = 9;
        assert_eq!(FileHandle::decode(&bytes), Err(HandleError::Malformed));
    }
}
