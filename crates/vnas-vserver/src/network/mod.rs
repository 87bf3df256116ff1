//! How a vserver's addresses come to this node and leave it.
//!
//! Two modes: [`Loopback`] (addresses in 127.0.0.0/8, one kernel, the
//! embedded default) and [`Linux`] (each vserver in a network namespace of
//! its own, with a macvlan interface on the node's interface, its
//! addresses and its routes; the kernel removes it when the node process
//! dies).

mod link;
mod linux;
mod loopback;
mod neighbours;
mod netns;
mod tickle;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;

use ipnet::IpNet;
use vnas_store::{Route, VserverConfig};

pub use linux::Linux;
pub use loopback::Loopback;

/// The network side of a vserver on this node.
pub trait Network: Send + Sync {
    /// Readies the vserver's network here, without answering on it yet.
    fn attach(&self, config: &VserverConfig) -> Result<Arc<dyn Attachment>, String>;
}

/// One vserver's network on this node, from `attach` until `take_down`.
pub trait Attachment: Send + Sync {
    /// Whether it may listen before this node owns the vserver: true where
    /// every node's kernel answers the address anyway (loopback), so the
    /// target of a move listens before the source lets go. Otherwise the
    /// addresses answer here only once the source has given them up.
    fn listens_early(&self) -> bool;
    /// The mark the NFS server puts on each accepted connection, if any.
    fn connection_mark(&self) -> Option<u32> {
        None
    }
    /// Makes the addresses answer here and listens on each, at each port.
    fn listen(&self, ports: &[u16]) -> Result<Vec<TcpListener>, String>;
    /// While the vserver runs, a new address: listeners for it at each
    /// port, ready before it answers (`add_address` makes it answer).
    fn listen_on(&self, address: IpNet, ports: &[u16]) -> Result<Vec<TcpListener>, String>;
    /// While the vserver runs: `address` answers here too (once the
    /// addresses answer here at all).
    fn add_address(&self, address: IpNet) -> Result<(), String>;
    /// Datagram sockets on every address for `ports` (portmap and NSM over
    /// UDP, what a rebooted client's statd uses). None by default.
    fn listen_datagrams(&self, ports: &[u16]) -> Result<Vec<std::net::UdpSocket>, String> {
        let _ = ports;
        Ok(Vec::new())
    }
    /// While the vserver runs: `address` answers here no more; its
    /// listeners were closed first.
    fn remove_address(&self, address: IpNet) -> Result<(), String>;
    /// While the vserver runs: its routing table becomes `routes`. On an
    /// error the routes are the old ones.
    fn set_routes(&self, routes: &[Route]) -> Result<(), String>;
    /// An unconnected, non-blocking TCP socket from which this node
    /// reaches the vserver's address `to` (its health checks).
    fn client_socket(&self, to: SocketAddr) -> std::io::Result<std::net::TcpStream>;
    /// After a takeover: announces the addresses on the link (gratuitous
    /// ARP, unsolicited NA) and wakes the clients of the previous owner,
    /// whose connections went quiet, so they reconnect now (tickle ACKs).
    /// Repeated for a while after a takeover: a switch may meanwhile have
    /// learned the address's MAC on the previous owner's port again.
    fn announce(&self, connections: &[(SocketAddr, SocketAddr)]);
    /// The interface, addresses and routes as applied, for the service
    /// state (`vnas vserver show`).
    fn devices(&self) -> Vec<String>;
    /// The vserver starts stopping here: from now on nothing may tell its
    /// clients to reconnect (they would find nobody yet).
    fn quiesce(&self) {}
    /// This node may have lost the vserver (its session lapsed): nothing
    /// more may leave for it, not a reply, not a segment of its kernel's,
    /// not an ARP answer, from now on.
    fn silence(&self) {}
    /// After the server stopped: the addresses leave this node.
    fn take_down(&self);
}

/// A vserver address: `198.18.1.10/16`, `2001:db8::10/64`, or a bare
/// address (a host prefix).
pub fn parse_address(text: &str) -> Result<IpNet, String> {
    if text.contains('/') {
        text.parse::<IpNet>().map_err(|_| format!("bad address {text}"))
    } else {
        text.parse::<IpAddr>().map(IpNet::from).map_err(|_| format!("bad address {text}"))
    }
}

/// A recorded connection, `server>client` (the form the service state
/// keeps).
pub fn format_connection((server, client): (SocketAddr, SocketAddr)) -> String {
    format!("{server}>{client}")
}

pub fn parse_connection(text: &str) -> Option<(SocketAddr, SocketAddr)> {
    let (server, client) = text.split_once('>')?;
    Some((server.parse().ok()?, client.parse().ok()?))
}

/// An unconnected, non-blocking TCP socket for `to`'s family.
fn unconnected(to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(to), socket2::Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    // Closed with a reset, freed at once: a socket left closing would keep
    // a vserver's namespace (and its interface) alive after the node died.
    socket.set_linger(Some(std::time::Duration::ZERO))?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_and_without_prefix() {
        assert_eq!(parse_address("198.18.1.10/16").unwrap().to_string(), "198.18.1.10/16");
        assert_eq!(parse_address("198.18.1.10").unwrap().to_string(), "198.18.1.10/32");
        assert_eq!(parse_address("2001:db8::1/64").unwrap().to_string(), "2001:db8::1/64");
        assert!(parse_address("198.18.1.300/16").is_err());
        assert!(parse_address("host").is_err());
    }

    #[test]
    fn connections_round_trip() {
        let c: (SocketAddr, SocketAddr) =
            ("198.18.1.10:2049".parse().unwrap(), "[2001:db8::5]:801".parse().unwrap());
        assert_eq!(parse_connection(&format_connection(c)), Some(c));
        assert_eq!(parse_connection("1.2.3.4:1"), None);
    }
}
