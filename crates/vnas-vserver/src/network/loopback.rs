//! The embedded default: addresses in 127.0.0.0/8, which every Linux
//! kernel answers already; nothing to add or remove.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;

use vnas_store::VserverConfig;

use super::{parse_address, Attachment, Network};

pub struct Loopback;

impl Network for Loopback {
    fn attach(&self, config: &VserverConfig) -> Result<Arc<dyn Attachment>, String> {
        let addresses = config
            .addresses
            .iter()
            .map(|a| parse_address(a).map(|net| net.addr()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(OnLoopback { addresses }))
    }
}

struct OnLoopback {
    addresses: Vec<IpAddr>,
}

impl Attachment for OnLoopback {
    fn listens_early(&self) -> bool {
        true
    }

    fn listen(&self, ports: &[u16]) -> Result<Vec<TcpListener>, String> {
        let mut listeners = Vec::new();
        for ip in &self.addresses {
            for port in ports {
                let addr = SocketAddr::new(*ip, *port);
                listeners.push(vnas_nfs::server::bind(addr).map_err(|e| e.to_string())?);
            }
        }
        Ok(listeners)
    }

    /// The old owner's kernel closed its connections (FIN) when it died;
    /// its clients reconnect by themselves.
    fn announce(&self, _connections: &[(SocketAddr, SocketAddr)]) {}

    fn devices(&self) -> Vec<String> {
        self.addresses.iter().map(|a| format!("lo {a}")).collect()
    }

    fn client_socket(&self, to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
        super::unconnected(to)
    }

    fn take_down(&self) {}
}
