//! Announcing a vserver's addresses on its link: a gratuitous ARP for
//! each IPv4 address and an unsolicited neighbour advertisement (override
//! set) for each IPv6 one, from the vserver's MAC address. Switches learn
//! the port from them, clients update their neighbour caches. The kernel
//! sends one of each when the link comes up (arp_notify, ndisc_notify);
//! these are the repeats a new owner sends for a while after a takeover,
//! because anything the previous owner's kernel still sent (a frozen
//! process's kernel keeps the address) pulls a switch's forwarding entry
//! back to the old port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use ipnet::IpNet;

const ETH_P_ARP: u16 = 0x0806;

/// Announces `addresses` on `device` from `mac`; the calling thread must
/// be in the vserver's namespace. Returns how many went out.
pub fn announce(device: &str, mac: [u8; 6], addresses: &[IpNet]) -> std::io::Result<usize> {
    let index = if_index(device)?;
    let mut sent = 0;
    for address in addresses {
        let result = match address.addr() {
            IpAddr::V4(ip) => send_arp(index, mac, ip),
            IpAddr::V6(ip) => send_na(index, mac, ip),
        };
        match result {
            Ok(()) => sent += 1,
            Err(error) => tracing::debug!(%address, %error, "announcement not sent"),
        }
    }
    Ok(sent)
}

fn if_index(device: &str) -> std::io::Result<u32> {
    let name = std::ffi::CString::new(device).map_err(std::io::Error::other)?;
    // SAFETY: a NUL-terminated name; the call only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(index)
}

/// A gratuitous ARP request (sender and target are the address), broadcast.
fn arp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; 42];
    frame[0..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // Ethernet, IPv4, address lengths 6 and 4, request.
    frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip.octets());
    frame[38..42].copy_from_slice(&ip.octets());
    frame
}

fn send_arp(index: u32, mac: [u8; 6], ip: Ipv4Addr) -> std::io::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::PACKET,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(i32::from(ETH_P_ARP.to_be()))),
    )?;
    let frame = arp_frame(mac, ip);
    // SAFETY: sockaddr_ll is plain data, zeroed then filled; the frame
    // and the address outlive the call.
    let sent = unsafe {
        let mut to: libc::sockaddr_ll = std::mem::zeroed();
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = ETH_P_ARP.to_be();
        to.sll_ifindex = index as i32;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An unsolicited neighbour advertisement for `ip` with the override
/// flag and the target's link-layer address (the kernel fills in the
/// checksum of an ICMPv6 raw socket).
fn na_message(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut message = [0u8; 32];
    message[0] = 136; // neighbour advertisement
    message[4] = 0x20; // override
    message[8..24].copy_from_slice(&ip.octets());
    message[24] = 2; // target link-layer address option,
    message[25] = 1; // 8 bytes long
    message[26..32].copy_from_slice(&mac);
    message
}

fn send_na(index: u32, mac: [u8; 6], ip: Ipv6Addr) -> std::io::Result<()> {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::RAW, Some(socket2::Protocol::ICMPV6))?;
    // Receivers drop neighbour discovery that crossed a router.
    socket.set_multicast_hops_v6(255)?;
    socket.set_multicast_if_v6(index)?;
    socket.bind(&SocketAddr::new(IpAddr::V6(ip), 0).into())?;
    let all_nodes = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, index);
    socket.send_to(&na_message(mac, ip), &SocketAddr::V6(all_nodes).into())?;
    Ok(())
}

/// `02:aa:bb:cc:dd:ee` as bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in mac.iter_mut() {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let mac = parse_mac("02:07:b5:4a:63:40").unwrap();
        assert_eq!(parse_mac("02:07:b5:4a:63"), None);
        let arp = arp_frame(mac, Ipv4Addr::new(198, 18, 1, 62));
        assert_eq!(&arp[12..14], &[8, 6]);
        assert_eq!(&arp[22..28], &mac, "sender MAC");
        assert_eq!(&arp[28..32], &[198, 18, 1, 62], "sender IP");
        assert_eq!(&arp[38..42], &[198, 18, 1, 62], "target IP: gratuitous");
        let na = na_message(mac, "2001:2::62".parse().unwrap());
        assert_eq!((na[0], na[4], na[24], na[25]), (136, 0x20, 2, 1));
        assert_eq!(&na[26..32], &mac);
    }
}
