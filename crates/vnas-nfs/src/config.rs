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
}

impl ClientRule {
    /// Every client, read-write, identities trusted.
    pub fn open() -> Self {
        ClientRule {
            clients: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            access: Access::ReadWrite,
            squash: Squash::None,
            anon_uid: 65534,
            anon_gid: 65534,
        }
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
    /// `anonuid=N`, `anongid=N`, `clients=CIDR[+CIDR...]`.
    pub fn parse_options(options: &str) -> Result<Self, String> {
        let mut rule = ClientRule::open();
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            match (key, value) {
                ("ro", "") => rule.access = Access::ReadOnly,
                ("rw", "") => rule.access = Access::ReadWrite,
                ("root_squash", "") => rule.squash = Squash::Root,
                ("no_root_squash", "") => rule.squash = Squash::None,
                ("all_squash", "") => rule.squash = Squash::All,
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
        ExportConfig { name: name.into(), path: path.into(), id: None, rules: vec![ClientRule::open()] }
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
    fn state(&self) -> GateState;
}

impl ServerConfig {
    pub fn new(exports: Vec<ExportConfig>) -> Self {
        ServerConfig {
            exports,
            write_verifier: random_verifier(),
            drain_timeout: Duration::from_secs(5),
            gate: None,
        }
    }
}

/// A fresh write verifier: random, so no two activations share one.
pub fn random_verifier() -> [u8; 8] {
    let mut verifier = [0u8; 8];
    getrandom::fill(&mut verifier).expect("the kernel's random source is available");
    verifier
}
