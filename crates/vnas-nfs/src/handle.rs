//! File handles: what a client holds to name an object.
//!
//! Two layouts, big endian. Version 2, issued where the kernel hands out
//! handles of its own (root, and a filesystem that exports them):
//!
//! ```text
//! 0     1      2     3      4          8       16    20          20+n   28+n
//! | ver | type | n   | zero | export id | inode | gen | kernel fh | mac |
//! ```
//!
//! Version 1 (32 bytes), where it does not; still accepted:
//!
//! ```text
//! 0      1        4          8         16    20         24       32
//! | ver | zero  | export id | inode   | gen | zero     | mac     |
//! ```
//!
//! No time, counter or process id: the handle names the export and the
//! object's identity on the filesystem (inode and a generation taken from
//! its birth time; in version 2 also the filesystem's own handle, which the
//! kernel resolves in one call), so any process serving the same storage
//! resolves it. The MAC, keyed per export, makes handles unforgeable: a
//! client cannot make up a handle for an inode it was never given, such as
//! one outside the export on the same filesystem.

use std::hash::Hasher;

use siphasher::sip::SipHasher24;

use crate::fs::kernel_handle::{KernelHandle, BYTES_MAX};

/// Length of a version 1 handle.
pub const HANDLE_LEN: usize = 32;
/// The longest handle issued: NFSv3's limit.
pub const HANDLE_LEN_MAX: usize = V2_HEADER + BYTES_MAX + MAC_LEN;
const V1: u8 = 1;
const V2: u8 = 2;
const V2_HEADER: usize = 20;
const MAC_LEN: usize = 8;

const _: () = assert!(HANDLE_LEN_MAX <= 64, "NFSv3 handles are at most 64 bytes");

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
    /// The filesystem's own handle (version 2).
    pub kernel: Option<KernelHandle>,
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
    pub fn encode(&self, key: &HandleKey) -> Vec<u8> {
        let mut out = Vec::with_capacity(HANDLE_LEN_MAX);
        match &self.kernel {
            None => out.extend_from_slice(&[V1, 0, 0, 0]),
            Some(kernel) => out.extend_from_slice(&[V2, kernel.kind, kernel.len, 0]),
        }
        out.extend_from_slice(&self.export_id.to_be_bytes());
        out.extend_from_slice(&self.ino.to_be_bytes());
        out.extend_from_slice(&self.gen.to_be_bytes());
        match &self.kernel {
            None => out.extend_from_slice(&[0; 4]),
            Some(kernel) => out.extend_from_slice(kernel.as_bytes()),
        }
        let mac = key.mac(&out);
        out.extend_from_slice(&mac.to_be_bytes());
        out
    }

    /// Reads the fields; the caller then checks the MAC with [`verify`](Self::verify)
    /// using the key of the export the handle names.
    pub fn decode(bytes: &[u8]) -> Result<FileHandle, HandleError> {
        if bytes.len() < V2_HEADER + MAC_LEN || bytes.len() > HANDLE_LEN_MAX || bytes[3] != 0 {
            return Err(HandleError::Malformed);
        }
        let kernel = match bytes[0] {
            V1 if bytes.len() == HANDLE_LEN && bytes[1..3] == [0, 0] => None,
            V2 if bytes.len() == V2_HEADER + bytes[2] as usize + MAC_LEN => {
                let body = &bytes[V2_HEADER..bytes.len() - MAC_LEN];
                Some(KernelHandle::from_parts(bytes[1], body).ok_or(HandleError::Malformed)?)
            }
            _ => return Err(HandleError::Malformed),
        };
        let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        Ok(FileHandle {
            export_id: u32_at(4),
            ino: u64::from_be_bytes(bytes[8..16].try_into().unwrap()),
            gen: u32_at(16),
            kernel,
        })
    }

    pub fn verify(bytes: &[u8], key: &HandleKey) -> Result<(), HandleError> {
        if bytes.len() < V2_HEADER + MAC_LEN || bytes.len() > HANDLE_LEN_MAX {
            return Err(HandleError::Malformed);
        }
        let (body, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        if key.mac(body) == u64::from_be_bytes(mac.try_into().unwrap()) {
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

    fn v1(export_id: u32, ino: u64, gen: u32) -> FileHandle {
        FileHandle { export_id, ino, gen, kernel: None }
    }

    #[test]
    fn round_trip() {
        let fh = v1(42, 1 << 40, 9);
        let bytes = fh.encode(&KEY);
        assert_eq!(bytes.len(), HANDLE_LEN);
        assert_eq!(FileHandle::decode(&bytes), Ok(fh));
        assert_eq!(FileHandle::verify(&bytes, &KEY), Ok(()));
        for len in [0, 8, 12, 20, BYTES_MAX] {
            let kernel = KernelHandle::from_parts(0x81, &vec![0xab; len]).unwrap();
            let fh = FileHandle { kernel: Some(kernel), ..v1(7, 12, 3) };
            let bytes = fh.encode(&KEY);
            assert_eq!(bytes.len(), 28 + len);
            assert!(bytes.len() <= 64);
            assert_eq!(FileHandle::decode(&bytes), Ok(fh));
            assert_eq!(FileHandle::verify(&bytes, &KEY), Ok(()));
        }
        assert!(KernelHandle::from_parts(1, &[0; BYTES_MAX + 1]).is_none());
    }

    #[test]
    fn forged_inode_is_refused() {
        let mut bytes = v1(1, 100, 0).encode(&KEY);
        bytes[15] ^= 1;
        assert_eq!(FileHandle::verify(&bytes, &KEY), Err(HandleError::Forged));
        let other = HandleKey([8; 16]);
        let bytes = v1(1, 100, 0).encode(&other);
        assert_eq!(FileHandle::verify(&bytes, &KEY), Err(HandleError::Forged));
        // The kernel's part is signed too: no steering to another inode.
        let kernel = KernelHandle::from_parts(1, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut bytes = FileHandle { kernel, ..v1(1, 100, 0) }.encode(&KEY);
        bytes[21] ^= 1;
        assert_eq!(FileHandle::verify(&bytes, &KEY), Err(HandleError::Forged));
    }

    #[test]
    fn malformed() {
        assert_eq!(FileHandle::decode(&[1; 31]), Err(HandleError::Malformed));
        assert_eq!(FileHandle::decode(&[2; 65]), Err(HandleError::Malformed));
        let mut bytes = v1(1, 2, 3).encode(&KEY);
        bytes[0] = 9;
        assert_eq!(FileHandle::decode(&bytes), Err(HandleError::Malformed));
        // A version 2 handle whose length disagrees with its kernel part.
        let kernel = KernelHandle::from_parts(1, &[0; 8]);
        let mut bytes = FileHandle { kernel, ..v1(1, 2, 3) }.encode(&KEY);
        bytes[2] = 12;
        assert_eq!(FileHandle::decode(&bytes), Err(HandleError::Malformed));
    }
}
