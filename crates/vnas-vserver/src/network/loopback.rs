//! The embedded default: addresses in 127.0.0.0/8, which every Linux
//! kernel answers already; nothing to add or remove. Routes are kept as
//! configured but have nothing to route (every address is local).

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use vnas_store::{Route, VserverConfig};

use super::{parse_address, Attachment, Network};

pub struct Loopback;

impl Network for Loopback {
    fn attach(&self, config: &VserverConfig) -> Result<Arc<dyn Attachment>, String> {
        let addresses = config.addresses.iter().map(|a| parse_address(a)).collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(OnLoopback { addresses: Mutex::new(addresses) }))
    }
}

struct OnLoopback {
    addresses: Mutex<Vec<IpNet>>,
}

fn bind_all(ip: IpAddr, ports: &[u16]) -> Result<Vec<TcpListener>, String> {
    ports
        .iter()
        .map(|port| vnas_nfs::server::bind(SocketAddr::new(ip, *port)).map_err(|e| e.to_string()))
        .collect()
}

impl Attachment for OnLoopback {
    fn listens_early(&self) -> bool {
        true
    }

    fn listen(&self, ports: &[u16]) -> Result<Vec<TcpListener>, String> {
        let mut listeners = Vec::new();
        for net in self.addresses.lock().expect("not poisoned").iter() {
            listeners.extend(bind_all(net.addr(), ports)?);
        }
        Ok(listeners)
    }

    fn listen_on(&self, address: IpNet, ports: &[u16]) -> Result<Vec<TcpListener>, String> {
        bind_all(address.addr(), ports)
    }

    fn listen_datagrams(&self, ports: &[u16]) -> Result<Vec<std::net::UdpSocket>, String> {
        let mut sockets = Vec::new();
        for net in self.addresses.lock().expect("not poisoned").iter() {
            for port in ports {
                let addr = SocketAddr::new(net.addr(), *port);
                sockets.push(vnas_nfs::server::bind_datagrams(addr).map_err(|e| e.to_string())?);
            }
        }
        Ok(sockets)
    }

    fn add_address(&self, address: IpNet) -> Result<(), String> {
        self.addresses.lock().expect("not poisoned").push(address);
        Ok(())
    }

    fn remove_address(&self, address: IpNet) -> Result<(), String> {
        self.addresses.lock().expect("not poisoned").retain(|a| *a != address);
        Ok(())
    }

    fn set_routes(&self, _routes: &[Route]) -> Result<(), String> {
        Ok(())
    }

    /// The old owner's kernel closed its connections (FIN) when it died;
    /// its clients reconnect by themselves.
    fn announce(&self, _connections: &[(SocketAddr, SocketAddr)]) {}

    fn devices(&self) -> Vec<String> {
        self.addresses.lock().expect("not poisoned").iter().map(|a| format!("lo {}", a.addr())).collect()
    }

    fn client_socket(&self, to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
        super::unconnected(to)
    }

    fn take_down(&self) {}
}
