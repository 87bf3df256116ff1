//! The kernel's own file handles (name_to_handle_at / open_by_handle_at),
//! as knfsd and NFS-Ganesha's VFS backend use them: the filesystem encodes
//! an object's identity (inode and generation) and finds it again in one
//! system call, whatever the size of the tree, in any process and on any
//! machine that mounts the same filesystem. Opening by handle needs
//! CAP_DAC_READ_SEARCH (root).

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use rustix::io::Errno;

/// Longest kernel handle a vnas handle carries: it must fit, with our
/// header and MAC, in NFSv3's 64 bytes. ext4 uses 8 bytes, XFS 8 to 20,
/// btrfs 20.
pub const BYTES_MAX: usize = 36;

/// A kernel file handle: the filesystem's handle type and its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KernelHandle {
    pub kind: u8,
    pub len: u8,
    pub bytes: [u8; BYTES_MAX],
}

impl std::fmt::Debug for KernelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KernelHandle(type {}, {} bytes)", self.kind, self.len)
    }
}

/// `struct file_handle` with room for the largest handle (MAX_HANDLE_SZ).
#[repr(C)]
struct Raw {
    handle_bytes: libc::c_uint,
    handle_type: libc::c_int,
    f_handle: [u8; 128],
}

impl KernelHandle {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn from_parts(kind: u8, bytes: &[u8]) -> Option<KernelHandle> {
        if bytes.len() > BYTES_MAX {
            return None;
        }
        let mut out = KernelHandle { kind, len: bytes.len() as u8, bytes: [0; BYTES_MAX] };
        out.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(out)
    }

    /// The handle of `name` in `dir` (`c""` for `dir` itself), never
    /// following a symlink. `Ok(None)`: the filesystem's handle is of a type
    /// or size a vnas handle cannot carry.
    pub fn of(dir: impl AsFd, name: &CStr) -> Result<Option<KernelHandle>, Errno> {
        let mut raw = Raw { handle_bytes: 128, handle_type: 0, f_handle: [0; 128] };
        let mut mount_id: libc::c_int = 0;
        let flags = if name.is_empty() { libc::AT_EMPTY_PATH } else { 0 };
        // SAFETY: `raw` is a file_handle with room for `handle_bytes` bytes;
        // the name is a valid C string; the descriptor is borrowed.
        let rc = unsafe {
            libc::name_to_handle_at(
                dir.as_fd().as_raw_fd(),
                name.as_ptr(),
                (&mut raw as *mut Raw).cast(),
                &mut mount_id,
                flags,
            )
        };
        if rc != 0 {
            return Err(Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
        let Ok(kind) = u8::try_from(raw.handle_type) else { return Ok(None) };
        let len = (raw.handle_bytes as usize).min(raw.f_handle.len());
        Ok(KernelHandle::from_parts(kind, &raw.f_handle[..len]))
    }

    /// Opens the object (path-only descriptor) on the filesystem `mount`
    /// belongs to. A handle of a removed object, or of an inode number
    /// since reused (another generation), is ESTALE.
    pub fn open(&self, mount: impl AsFd) -> Result<OwnedFd, Errno> {
        let mut raw =
            Raw { handle_bytes: self.len as u32, handle_type: self.kind as i32, f_handle: [0; 128] };
        raw.f_handle[..self.len as usize].copy_from_slice(self.as_bytes());
        let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: as above; on success the kernel gives us a new descriptor.
        let fd = unsafe {
            libc::open_by_handle_at(mount.as_fd().as_raw_fd(), (&mut raw as *mut Raw).cast(), flags)
        };
        if fd < 0 {
            return Err(Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
        // SAFETY: the kernel just returned this descriptor to us alone.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}
