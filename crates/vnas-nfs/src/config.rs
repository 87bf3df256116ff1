//! What the caller tells the server: which trees to export to whom, and the
//! write verifier of this activation.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// Read-only or read-write access for a set of clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// How client identities are mapped (the usual exports(5) words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Squash {
    /// Trust the client's uid and gids.
    None,
    /// Map uid 0 to the anonymous user.
    Root,
    /// Map every user to the anonymous user.
    All,
}

/// Which clients may use an export, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRule {
    pub clients: Vec<IpNet>,
    pub access: Access,
    pub squash: Squash,
    pub anon_uid: u32,
    pub anon_gid: u32,
    /// exports(5) `secure`: calls must come from a port below 1024, which
    /// only root may bind, so a local user cannot claim another uid.
    pub secure: bool,
}

/// Ports below this one only root may bind (IPPORT_RESERVED).
pub const RESERVED_PORT_END: u16 = 1024;

impl Default for ClientRule {
    /// Every client, read-write, with the safe defaults of knfsd and
    /// NFS-Ganesha: root squashed, calls only from reserved ports.
    fn default() -> Self {
        ClientRule {
            clients: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            access: Access::ReadWrite,
            squash: Squash::Root,
            anon_uid: 65534,
            anon_gid: 65534,
            secure: true,
        }
    }
}

impl ClientRule {
    /// Whether a call from `port` passes the `secure` check. A server that
    /// does not run as root acts with its own rights for every caller, so
    /// the claimed identity, and with it the port, decides nothing there.
    pub fn port_allowed(&self, port: u16, server_is_root: bool) -> bool {
        !self.secure || !server_is_root || port < RESERVED_PORT_END
    }

    pub fn matches(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(client),
            v4 => v4,
        };
        self.clients.iter().any(|net| net.contains(&client))
    }

    /// Parses export options in exports(5) style, comma separated:
    /// `ro`, `rw`, `root_squash`, `no_root_squash`, `all_squash`,
    /// `secure`, `insecure`, `anonuid=N`, `anongid=N`,
    /// `clients=CIDR[+CIDR...]`. Unset ones keep the safe defaults.
    pub fn parse_options(options: &str) -> Result<Self, String> {
        let mut rule = ClientRule::default();
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            match (key, value) {
                ("ro", "") => rule.access = Access::ReadOnly,
                ("rw", "") => rule.access = Access::ReadWrite,
                ("root_squash", "") => rule.squash = Squash::Root,
                ("no_root_squash", "") => rule.squash = Squash::None,
                ("all_squash", "") => rule.squash = Squash::All,
                ("secure", "") => rule.secure = true,
                ("insecure", "") => rule.secure = false,
                ("anonuid", v) => rule.anon_uid = v.parse().map_err(|_| format!("bad anonuid {v:?}"))?,
                ("anongid", v) => rule.anon_gid = v.parse().map_err(|_| format!("bad anongid {v:?}"))?,
                ("clients", v) => {
                    rule.clients = v.split('+').map(parse_net).collect::<Result<_, _>>()?;
                }
                _ => return Err(format!("unknown export option {option:?}")),
            }
        }
        Ok(rule)
    }
}

/// A CIDR, or a single address as a /32 or /128.
fn parse_net(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| format!("bad client network {text:?}"))
}

/// One exported tree.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// The path clients mount, such as `/data`.
    pub name: String,
    /// The directory on this machine that is served.
    pub path: PathBuf,
    /// Goes into every file handle; must be stable for this export across
    /// processes and nodes. `None` derives it from `name`.
    pub id: Option<u32>,
    /// Checked in order; the first rule that matches a client applies.
    /// No rule matching means no access.
    pub rules: Vec<ClientRule>,
}

impl ExportConfig {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        ExportConfig { name: name.into(), path: path.into(), id: None, rules: vec![ClientRule::default()] }
    }
}

/// Everything one server instance needs.
#[derive(Clone)]
pub struct ServerConfig {
    pub exports: Vec<ExportConfig>,
    /// Changes at every activation, so clients resend unstable writes that
    /// a previous activation may not have committed.
    pub write_verifier: [u8; 8],
    /// How long a graceful stop waits for requests in flight.
    pub drain_timeout: Duration,
    /// Asked before every call: may this server answer now? The caller
    /// decides (a cluster node closes it while it is not sure it still
    /// owns the data, or before it owns it yet). `None`: always.
    pub gate: Option<Arc<dyn Gate>>,
    /// The port portmap names for NFS and MOUNT; `None`: the port the
    /// call came in on (portmap then shares the NFS port).
    pub service_port: Option<u16>,
    /// A mark (SO_MARK) on every accepted connection, for the firewall of
    /// the vserver's namespace (the listener stays unmarked, so the
    /// kernel's own resets to strangers are not).
    pub connection_mark: Option<u32>,
    /// Counters to start from (a vserver's previous owner's), so they
    /// continue across a move.
    pub stats: Option<crate::StatsSnapshot>,
    /// The lock table a previous owner recorded, restored whole.
    pub locks: Option<crate::locks::LockTable>,
    /// Where every change to the lock table is recorded before it is
    /// answered; `None`: nowhere (a lone server).
    pub lock_journal: Option<Arc<dyn crate::locks::LockJournal>>,
    /// Where the NFSv4 state is recorded before a change of it is
    /// answered; `None`: it lives and dies with the process.
    pub nfs4_journal: Option<Arc<dyn crate::nfs4::journal::V4Journal>>,
    /// Makes the sockets calls back to clients (NLM GRANTED) leave from;
    /// `None`: ordinary sockets.
    pub connector: Option<crate::locks::Connector>,
    /// Answer NFSv4.0, 4.1 and 4.2 too. Off: version 4 gets
    /// PROG_MISMATCH, and clients fall back to v3.
    pub nfs4: bool,
    /// The NFSv4 ID-mapping domain: owners as "name@domain" (see
    /// `nfs4::idmap`); `None`, numeric ids.
    pub nfs4_domain: Option<String>,
    /// NFSv4.1's server owner and scope: one name wherever the server
    /// runs, so a client sees the same server after a move.
    pub nfs4_scope: String,
    /// The NFSv4 lease: a client silent for one and a half of it loses its
    /// client ID, opens and locks.
    pub nfs4_lease: Duration,
}

/// What a server may do with a call it has read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateState {
    /// Answer it.
    Serve,
    /// Hold it (and the connection) until the gate opens or closes.
    Wait,
    /// Do not answer; close the connection (the client reconnects).
    Closed,
}

pub trait Gate: Send + Sync {
    /// May a call that arrived now be answered?
    fn state(&self) -> GateState;
    /// May a call that passed `state` run now, and may its reply go out?
    /// Asked again before each, because time passes in between (a process
    /// frozen there may have lost the data to another server meanwhile):
    /// `Serve` goes on, `Wait` holds it, `Closed` drops it and ends the
    /// connection without a word. By default as `state`, but a gate that closed for
    /// new calls (a stop) lets the calls it let in be answered.
    fn reply(&self) -> GateState {
        match self.state() {
            GateState::Closed => GateState::Serve,
            state => state,
        }
    }
}

impl ServerConfig {
    pub fn new(exports: Vec<ExportConfig>) -> Self {
        ServerConfig {
            exports,
            write_verifier: random_verifier(),
            drain_timeout: Duration::from_secs(5),
            gate: None,
            service_port: None,
            connection_mark: None,
            stats: None,
            locks: None,
            lock_journal: None,
            nfs4_journal: None,
            connector: None,
            nfs4: false,
            nfs4_domain: None,
            nfs4_scope: "vnas".to_string(),
            nfs4_lease: Duration::from_secs(u64::from(crate::nfs4::LEASE_SECONDS)),
        }
    }
}

/// A fresh write verifier: random, so no two activations share one.
pub fn random_verifier() -> [u8; 8] {
    let mut verifier = [0u8; 8];
    getrandom::fill(&mut verifier).expect("the kernel's random source is available");
    verifier
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_safe_ones() {
        let rule = ClientRule::parse_options("").unwrap();
        assert_eq!(rule.squash, Squash::Root);
        assert!(rule.secure);
        assert_eq!(rule.access, Access::ReadWrite);
        let rule = ClientRule::parse_options("no_root_squash,insecure").unwrap();
        assert_eq!(rule.squash, Squash::None);
        assert!(!rule.secure);
        assert!(ClientRule::parse_options("secure=1").is_err());
    }

    #[test]
    fn secure_refuses_high_ports_only_when_identities_matter() {
        let secure = ClientRule::default();
        assert!(secure.port_allowed(1023, true));
        assert!(!secure.port_allowed(1024, true));
        assert!(!secure.port_allowed(50000, true));
        assert!(secure.port_allowed(50000, false), "a server not run as root trusts no identity");
        let insecure = ClientRule { secure: false, ..ClientRule::default() };
        assert!(insecure.port_allowed(50000, true));
    }
}
