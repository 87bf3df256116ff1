//! The linux network mode: each vserver in a network namespace that only
//! the node process holds, with one macvlan interface (`eth0`) on the
//! node's interface, its addresses, and its own routing table.
//!
//! - The namespace dies with the node process, however it dies: a node
//!   that crashed on a live host leaves nothing answering for an address
//!   another node now holds.
//! - The interface's MAC address comes from the vserver's name, the same
//!   on every node (as VRRP's virtual MAC): clients' ARP and neighbour
//!   caches stay right across a move; only switches relearn the port, from
//!   the gratuitous ARP and unsolicited NA sent when the link comes up.
//! - A client is never refused, nor told a connection ended: the NFS
//!   sockets carry marks, and nftables rules in the namespace drop the FIN
//!   and RST segments of connections, so a dying or stopping server closes them
//!   without a word (the client waits, and is woken by the next owner's
//!   tickle ACKs, instead of reconnecting at once to an address nobody
//!   holds yet); and a TCP segment for which no socket exists here is
//!   dropped on the way in, so the kernel never answers one with a RST (a
//!   SYN while nothing listens, a segment of a connection just closed; a
//!   reset that races past that check, sent on no socket's behalf, is
//!   dropped on the way out). A
//!   client woken by a tickle reaches the listener, which does reset it
//!   (while the vserver serves here: a stopping one's listeners are marked
//!   so that their resets are dropped too).
//!   (The Linux client waits 3 s after a refused connection, and retries
//!   an unanswered SYN after 1 s.)

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use vnas_store::{Route, VserverConfig};

use super::netns::NetNs;
use super::{link, neighbours, parse_address, tickle, Attachment, Network};

/// The mark on NFS connections ("vnas"): their FIN and RST never leave.
const MARK: u32 = 0x766e_6173;
/// The mark on the listeners of a vserver that serves here: only the bare
/// RST they answer a stray ACK with leaves (a client woken by a tickle).
const MARK_LISTENING: u32 = 0x766e_6172;
/// The mark on the listeners of a vserver that is stopping here.
const MARK_CLOSING: u32 = 0x766e_6174;
/// The vserver's interface, inside its namespace.
const DEVICE: &str = "eth0";

pub struct Linux {
    interface: String,
}

impl Linux {
    /// The mode on the node's interface `interface`; checks that it and
    /// the tools the mode uses (`ip`, `nft`) are there.
    pub fn new(interface: &str) -> Result<Linux, String> {
        if interface.is_empty() || interface.contains('/') || interface.len() > 15 {
            return Err(format!("{interface:?} is not an interface name"));
        }
        if !std::path::Path::new("/sys/class/net").join(interface).exists() {
            return Err(format!("no interface {interface} on this node"));
        }
        for tool in ["ip", "nft"] {
            let found = Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status();
            if found.is_err() {
                return Err(format!(
                    "the linux network mode needs `{tool}` (Debian packages iproute2 and nftables)"
                ));
            }
        }
        Ok(Linux { interface: interface.to_string() })
    }

    /// Whether the node's interface has carrier.
    pub fn link_up(interface: &str) -> bool {
        let path = std::path::Path::new("/sys/class/net").join(interface).join("carrier");
        std::fs::read_to_string(path).is_ok_and(|text| text.trim() == "1")
    }
}

impl Network for Linux {
    fn attach(&self, config: &VserverConfig) -> Result<Arc<dyn Attachment>, String> {
        let addresses = config.addresses.iter().map(|a| parse_address(a)).collect::<Result<Vec<_>, _>>()?;
        let ns = NetNs::new().map_err(|e| format!("cannot make the vserver's network namespace: {e}"))?;
        // Without IPv6 addresses, no IPv6 at all: a namespace the kernel
        // is still tearing down after the node died must send nothing (its
        // router solicitations would carry the vserver's MAC address and
        // pull switches back to the dead node's port).
        let ipv6 = if addresses.iter().any(|a| a.addr().is_ipv6()) { "0" } else { "1" };
        ns.run(|| -> std::io::Result<()> {
            // New interfaces here announce their addresses when they come
            // up, and skip duplicate detection (ownership already ensures
            // one holder).
            for (key, value) in [
                ("ipv6/conf/default/disable_ipv6", ipv6),
                ("ipv4/conf/default/arp_notify", "1"),
                ("ipv6/conf/default/ndisc_notify", "1"),
                ("ipv6/conf/default/accept_dad", "0"),
                ("ipv6/conf/default/accept_ra", "0"),
                ("ipv6/conf/default/router_solicitations", "0"),
                // An address removed live takes no other with it (the
                // kernel drops an address's secondaries with it otherwise).
                ("ipv4/conf/all/promote_secondaries", "1"),
                ("ipv4/conf/default/promote_secondaries", "1"),
            ] {
                std::fs::write(format!("/proc/sys/net/{key}"), value)?;
            }
            Ok(())
        })
        .and_then(|r| r)
        .map_err(|e| format!("cannot set up the vserver's network namespace: {e}"))?;
        let mac = mac_for(&config.name);
        ip(
            None,
            &[format!(
                "link add link {} name {DEVICE} address {mac} netns {} type macvlan mode bridge",
                self.interface,
                ns.path()
            )],
        )?;
        let mut commands = vec!["link set lo up".to_string()];
        commands.extend(addresses.iter().map(|a| format!("address add {a} dev {DEVICE}")));
        ip(Some(&ns), &commands)?;
        nft(&ns, &ruleset())?;
        Ok(Arc::new(OnLinux {
            ns,
            listeners: Default::default(),
            interface: self.interface.clone(),
            mac,
            addresses: Mutex::new(addresses),
            routes: Mutex::new(config.routes.clone()),
            routed: AtomicBool::new(false),
        }))
    }
}

struct OnLinux {
    ns: NetNs,
    /// The listening sockets (duplicates of the server's), to mark them
    /// closing.
    listeners: Mutex<Vec<TcpListener>>,
    interface: String,
    mac: String,
    addresses: Mutex<Vec<IpNet>>,
    routes: Mutex<Vec<Route>>,
    /// The link is up and the routes applied (routes need the link up).
    routed: AtomicBool,
}

fn route_add(route: &Route) -> String {
    format!("route add {} via {} dev {DEVICE}", route.destination, route.gateway)
}

fn route_del(route: &Route) -> String {
    format!("route del {} via {} dev {DEVICE}", route.destination, route.gateway)
}

impl Attachment for OnLinux {
    fn listens_early(&self) -> bool {
        false
    }

    fn connection_mark(&self) -> Option<u32> {
        Some(MARK)
    }

    fn listen(&self, ports: &[u16]) -> Result<Vec<TcpListener>, String> {
        // Listen first, then bring the link up: no moment where the
        // address answers and nothing listens.
        let addresses: Vec<IpNet> = self.addresses.lock().expect("not poisoned").clone();
        let mut listeners = Vec::new();
        for address in addresses {
            listeners.extend(self.listen_on(address, ports)?);
        }
        self.ns
            .run(|| link::set_up(DEVICE, true))
            .and_then(|r| r)
            .map_err(|e| format!("cannot bring {DEVICE} up: {e}"))?;
        let routes = self.routes.lock().expect("not poisoned");
        if !routes.is_empty() {
            ip(Some(&self.ns), &routes.iter().map(route_add).collect::<Vec<_>>())?;
        }
        self.routed.store(true, Ordering::SeqCst);
        Ok(listeners)
    }

    fn listen_on(&self, address: IpNet, ports: &[u16]) -> Result<Vec<TcpListener>, String> {
        let addresses: Vec<SocketAddr> =
            ports.iter().map(|port| SocketAddr::new(address.addr(), *port)).collect();
        let listeners = self
            .ns
            .run(|| addresses.iter().map(|a| listener(*a)).collect::<Result<Vec<_>, String>>())
            .map_err(|e| e.to_string())??;
        let copies = listeners
            .iter()
            .map(TcpListener::try_clone)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot keep the listeners: {e}"))?;
        self.listeners.lock().expect("not poisoned").extend(copies);
        Ok(listeners)
    }

    fn listen_datagrams(&self, ports: &[u16]) -> Result<Vec<std::net::UdpSocket>, String> {
        let addresses: Vec<SocketAddr> = self
            .addresses
            .lock()
            .expect("not poisoned")
            .iter()
            .flat_map(|a| ports.iter().map(|port| SocketAddr::new(a.addr(), *port)))
            .collect();
        self.ns
            .run(|| {
                addresses
                    .iter()
                    .map(|a| vnas_nfs::server::bind_datagrams(*a).map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, String>>()
            })
            .map_err(|e| e.to_string())?
    }

    fn add_address(&self, address: IpNet) -> Result<(), String> {
        if address.addr().is_ipv6() {
            // The namespace began without IPv6 if the vserver had no IPv6
            // address then.
            self.ns
                .run(|| std::fs::write(format!("/proc/sys/net/ipv6/conf/{DEVICE}/disable_ipv6"), "0"))
                .and_then(|r| r)
                .map_err(|e| format!("cannot enable IPv6 on {DEVICE}: {e}"))?;
        }
        let mut commands = vec![format!("address add {address} dev {DEVICE}")];
        if self.routed.load(Ordering::SeqCst) {
            // Announced, as when the link comes up: setting the interface's
            // own MAC address again makes the kernel send a gratuitous ARP
            // and an unsolicited NA for each address (arp_notify,
            // ndisc_notify). A client that knew the address by another
            // vserver's MAC address (it was moved here from one) switches
            // at once instead of when its neighbour entry goes stale.
            commands.push(format!("link set dev {DEVICE} address {}", self.mac));
        }
        ip(Some(&self.ns), &commands)?;
        self.addresses.lock().expect("not poisoned").push(address);
        Ok(())
    }

    fn remove_address(&self, address: IpNet) -> Result<(), String> {
        let mut addresses = self.addresses.lock().expect("not poisoned");
        addresses.retain(|a| *a != address);
        // Its listeners' last copies (the server closed its own), unless
        // the address stays with another prefix.
        if !addresses.iter().any(|a| a.addr() == address.addr()) {
            self.listeners
                .lock()
                .expect("not poisoned")
                .retain(|l| l.local_addr().map_or(true, |a| a.ip() != address.addr()));
        }
        drop(addresses);
        ip(Some(&self.ns), &[format!("address del {address} dev {DEVICE}")])
    }

    fn set_routes(&self, routes: &[Route]) -> Result<(), String> {
        let mut current = self.routes.lock().expect("not poisoned");
        if self.routed.load(Ordering::SeqCst) {
            let removed: Vec<String> =
                current.iter().filter(|r| !routes.contains(r)).map(route_del).collect();
            let added: Vec<&Route> = routes.iter().filter(|r| !current.contains(r)).collect();
            if !removed.is_empty() {
                if let Err(error) = ip(Some(&self.ns), &removed) {
                    // Back to the old table, whatever of it went.
                    let _ = ip_force(&self.ns, &current.iter().map(route_add).collect::<Vec<_>>());
                    return Err(error);
                }
            }
            if !added.is_empty() {
                if let Err(error) =
                    ip(Some(&self.ns), &added.iter().map(|r| route_add(r)).collect::<Vec<_>>())
                {
                    // Back to the old table, whatever of the new one went in.
                    let undo: Vec<String> = added
                        .iter()
                        .map(|r| route_del(r))
                        .chain(current.iter().filter(|r| !routes.contains(r)).map(route_add))
                        .collect();
                    let _ = ip_force(&self.ns, &undo);
                    return Err(error);
                }
            }
        }
        *current = routes.to_vec();
        Ok(())
    }

    fn announce(&self, connections: &[(SocketAddr, SocketAddr)]) {
        let addresses = self.addresses.lock().expect("not poisoned").clone();
        let ours: Vec<_> = connections
            .iter()
            .copied()
            .filter(|(server, _)| addresses.iter().any(|a| a.addr() == server.ip()))
            .collect();
        let mac = neighbours::parse_mac(&self.mac).expect("made by mac_for");
        let sent = self.ns.run(|| (neighbours::announce(DEVICE, mac, &addresses), tickle::send(&ours)));
        match sent {
            Ok((Ok(announced), tickled)) => {
                tracing::debug!(addresses = announced, connections = tickled, "announced; tickle ACKs sent")
            }
            Ok((Err(error), _)) | Err(error) => tracing::warn!(%error, "cannot announce the addresses"),
        }
    }

    fn devices(&self) -> Vec<String> {
        let mut devices = vec![format!("{DEVICE} macvlan on {} {}", self.interface, self.mac)];
        devices.extend(self.addresses.lock().expect("not poisoned").iter().map(|a| format!("{DEVICE} {a}")));
        let routes = self.routes.lock().expect("not poisoned");
        devices.extend(routes.iter().map(|r| format!("route {} via {}", r.destination, r.gateway)));
        devices
    }

    fn client_socket(&self, to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
        // The node's own interface cannot reach its macvlans: from inside.
        self.ns.run(|| super::unconnected(to))?
    }

    fn quiesce(&self) {
        // From now on the kernel's resets on the listeners' behalf (to a
        // segment of a connection just closed) are dropped: a client must
        // not reconnect before the next owner answers.
        for listener in self.listeners.lock().expect("not poisoned").iter() {
            if let Err(error) = socket2::SockRef::from(listener).set_mark(MARK_CLOSING) {
                tracing::warn!(%error, "cannot mark a listener closing");
            }
        }
    }

    fn silence(&self) {
        // One ioctl: from here the kernel sends nothing for the vserver,
        // whatever its sockets still hold (retransmissions, ACKs, resets,
        // ARP answers), and takes in nothing.
        if let Ok(Err(error)) | Err(error) = self.ns.run(|| link::set_up(DEVICE, false)) {
            tracing::warn!(%error, "cannot bring the vserver's interface down");
        }
    }

    fn take_down(&self) {
        // Down first (one ioctl): from here the addresses answer nowhere
        // on this node; the namespace, and the interface in it, go when the
        // last reference does.
        match self.ns.run(|| link::set_up(DEVICE, false)) {
            Ok(Ok(())) => {}
            Ok(Err(error)) | Err(error) => {
                tracing::warn!(%error, "cannot bring the vserver's interface down")
            }
        }
        // Only now: a segment that met a listener a moment ago and finds
        // none now would be answered by a reset.
        self.listeners.lock().expect("not poisoned").clear();
    }
}

/// A listening socket whose connections close silently (see the module
/// comment). Bound before the address answers (freebind).
fn listener(addr: SocketAddr) -> Result<TcpListener, String> {
    let open = || -> std::io::Result<TcpListener> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv4() {
            socket.set_freebind_v4(true)?;
        } else {
            socket.set_freebind_v6(true)?;
        }
        // Connections inherit both (and the server marks each it accepts
        // MARK): a close sends a reset, which the rules drop, and frees the
        // socket at once; one still in the accept queue when the listener
        // closes sends RST+ACK, dropped too. The one reset let through is
        // a bare RST, the kernel's answer on the listener's behalf to a
        // stray ACK: a client woken by a tickle.
        socket.set_mark(MARK_LISTENING)?;
        socket.set_linger(Some(Duration::ZERO))?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    open().map_err(|e| format!("cannot listen on {addr}: {e}"))
}

fn ruleset() -> String {
    format!(
        "table inet vnas {{
  chain input {{
    type filter hook input priority 0; policy accept;
    meta l4proto tcp socket transparent 0 accept
    meta l4proto tcp drop
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    meta mark {MARK:#x} tcp flags & (fin | rst) != 0 drop
    meta mark {MARK_LISTENING:#x} tcp flags & fin == fin drop
    meta mark {MARK_LISTENING:#x} tcp flags & (rst | ack) == rst | ack drop
    meta mark {MARK_CLOSING:#x} tcp flags & (fin | rst) != 0 drop
    oifname \"{DEVICE}\" meta mark 0 tcp flags & rst == rst drop
  }}
}}
"
    )
}

/// A locally administered unicast MAC address from the vserver's name
/// (FNV-1a: the same on every node and every build).
fn mac_for(name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let b = hash.to_be_bytes();
    format!("02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[3], b[4], b[5], b[6], b[7])
}

/// Runs `ip -batch -` (in `ns`, or in the node's namespace).
fn ip(ns: Option<&NetNs>, commands: &[String]) -> Result<(), String> {
    let command = match ns {
        Some(ns) => ns.command("ip"),
        None => Command::new("ip"),
    };
    feed(command, &["-batch", "-"], &commands.join("\n"))
}

/// Runs `ip -force -batch -` in `ns`: every command, whatever fails.
fn ip_force(ns: &NetNs, commands: &[String]) -> Result<(), String> {
    feed(ns.command("ip"), &["-force", "-batch", "-"], &commands.join("\n"))
}

fn nft(ns: &NetNs, ruleset: &str) -> Result<(), String> {
    feed(ns.command("nft"), &["-f", "-"], ruleset)
}

fn feed(mut command: Command, args: &[&str], input: &str) -> Result<(), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    child.stdin.take().expect("piped").write_all(input.as_bytes()).map_err(|e| format!("{program}: {e}"))?;
    let output = child.wait_with_output().map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let error = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "{program} failed: {} ({})",
            error.trim().replace('\n', "; "),
            input.trim().replace('\n', "; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_is_stable_local_unicast() {
        let mac = mac_for("vs1");
        assert_eq!(mac, mac_for("vs1"));
        assert_ne!(mac, mac_for("vs2"));
        assert!(mac.starts_with("02:"), "{mac}");
        assert_eq!(mac.len(), 17);
    }
}
