//! Tickle ACKs (as CTDB sends them): after a takeover, a bare ACK with
//! zero sequence numbers from the server's end of each connection the old
//! owner recorded. The client's TCP answers with an ACK of its own; this
//! kernel knows no such connection and resets it; the client reconnects at
//! once instead of waiting out its retransmission timer, which grows with
//! every unanswered retry.

use std::net::{IpAddr, SocketAddr};

use rustix::net::{ipproto, AddressFamily, SendFlags, SocketType};

/// How many times each tickle is sent (one may be lost while this side
/// resolves the client's link address).
const COPIES: usize = 3;

/// Sends the tickles; the calling thread must be in the vserver's
/// namespace. Returns how many connections were tickled.
pub fn send(connections: &[(SocketAddr, SocketAddr)]) -> usize {
    let mut sent = 0;
    for (server, client) in connections {
        if server.is_ipv4() != client.is_ipv4() {
            continue;
        }
        match send_one(*server, *client) {
            Ok(()) => sent += 1,
            Err(error) => tracing::debug!(%server, %client, %error, "tickle ACK not sent"),
        }
    }
    sent
}

fn send_one(server: SocketAddr, client: SocketAddr) -> std::io::Result<()> {
    let family = if server.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let socket = rustix::net::socket(family, SocketType::RAW, Some(ipproto::TCP))?;
    // The kernel writes the IP header, from this source address.
    rustix::net::bind(&socket, &SocketAddr::new(server.ip(), 0))?;
    let segment = ack_segment(server, client);
    for _ in 0..COPIES {
        rustix::net::sendto(&socket, &segment, SendFlags::empty(), &SocketAddr::new(client.ip(), 0))?;
    }
    Ok(())
}

/// A 20-byte TCP header: ACK, sequence and acknowledgement 0.
fn ack_segment(from: SocketAddr, to: SocketAddr) -> [u8; 20] {
    let mut segment = [0u8; 20];
    segment[0..2].copy_from_slice(&from.port().to_be_bytes());
    segment[2..4].copy_from_slice(&to.port().to_be_bytes());
    segment[12] = 5 << 4; // header length: 5 words
    segment[13] = 0x10; // ACK
    segment[14..16].copy_from_slice(&1234u16.to_be_bytes()); // window
    let checksum = checksum(from.ip(), to.ip(), &segment);
    segment[16..18].copy_from_slice(&checksum.to_be_bytes());
    segment
}

/// The Internet checksum of a TCP segment with its pseudo-header.
fn checksum(from: IpAddr, to: IpAddr, segment: &[u8]) -> u16 {
    let mut bytes = Vec::with_capacity(40 + segment.len());
    match (from, to) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            bytes.extend_from_slice(&a.octets());
            bytes.extend_from_slice(&b.octets());
            bytes.extend_from_slice(&[0, 6]);
            bytes.extend_from_slice(&(segment.len() as u16).to_be_bytes());
        }
        (a, b) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            bytes.extend_from_slice(&v6(a).octets());
            bytes.extend_from_slice(&v6(b).octets());
            bytes.extend_from_slice(&(segment.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, 6]);
        }
    }
    bytes.extend_from_slice(segment);
    let mut sum: u32 =
        bytes.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment with its checksum in place sums to 0xffff (RFC 1071).
    #[test]
    fn checksum_verifies() {
        for (a, b) in [("198.18.1.10:2049", "198.18.0.101:801"), ("[2001:db8::1]:2049", "[2001:db8::2]:700")]
        {
            let (from, to): (SocketAddr, SocketAddr) = (a.parse().unwrap(), b.parse().unwrap());
            let segment = ack_segment(from, to);
            assert_eq!(checksum(from.ip(), to.ip(), &segment), 0, "{a} -> {b}");
            assert_eq!(&segment[0..2], &2049u16.to_be_bytes());
            assert_eq!(segment[13], 0x10);
        }
    }
}
