//! How a vserver's addresses come to this node and leave it.

use std::net::{IpAddr, SocketAddr, TcpListener};

/// The network side of a vserver: make its addresses answer here (and
/// listen on them), and give them up.
pub trait Network: Send + Sync {
    /// Listening sockets for NFS on each address, at `port`. A listener
    /// may be bound while another process still listens (SO_REUSEPORT):
    /// the target of a move listens before the source lets go.
    fn bring_up(&self, addresses: &[IpAddr], port: u16) -> Result<Vec<TcpListener>, String>;
    /// After the server stopped: the addresses leave this node.
    fn take_down(&self, addresses: &[IpAddr]);
    /// The devices and addresses as applied, for the service state.
    fn devices(&self, addresses: &[IpAddr]) -> Vec<String>;
}

/// The embedded default: addresses in 127.0.0.0/8, which every Linux
/// kernel answers already; nothing to add or remove.
pub struct Loopback;

impl Network for Loopback {
    fn bring_up(&self, addresses: &[IpAddr], port: u16) -> Result<Vec<TcpListener>, String> {
        addresses
            .iter()
            .map(|ip| vnas_nfs::server::bind(SocketAddr::new(*ip, port)).map_err(|e| e.to_string()))
            .collect()
    }

    fn take_down(&self, _addresses: &[IpAddr]) {}

    fn devices(&self, addresses: &[IpAddr]) -> Vec<String> {
        addresses.iter().map(|a| format!("lo {a}")).collect()
    }
}
