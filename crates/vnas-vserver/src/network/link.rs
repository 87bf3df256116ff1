//! Bringing an interface up or down with one ioctl (SIOCSIFFLAGS), on the
//! calling thread's namespace: microseconds, where running `ip` costs
//! milliseconds in the pause of every move.

use std::io;

use rustix::ioctl::{ioctl, Opcode, Updater};
use rustix::net::{AddressFamily, SocketType};

const SIOCGIFFLAGS: Opcode = 0x8913;
const SIOCSIFFLAGS: Opcode = 0x8914;
const IFF_UP: i16 = 0x1;

/// `struct ifreq` with its `ifr_flags` member.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _rest: [u8; 22],
}

/// Sets `name` administratively up or down.
pub fn set_up(name: &str, up: bool) -> io::Result<()> {
    if name.len() >= 16 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "interface name too long"));
    }
    let socket = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None)?;
    let mut request = IfReq { name: [0; 16], flags: 0, _rest: [0; 22] };
    request.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: both requests take a `struct ifreq`, which IfReq lays out.
    unsafe { ioctl(&socket, Updater::<SIOCGIFFLAGS, IfReq>::new(&mut request))? };
    if up {
        request.flags |= IFF_UP;
    } else {
        request.flags &= !IFF_UP;
    }
    // SAFETY: as above.
    unsafe { ioctl(&socket, Updater::<SIOCSIFFLAGS, IfReq>::new(&mut request))? };
    Ok(())
}
