//! One vserver running on this node: its NFS server on its addresses, with
//! the exports its mount table maps to directories, and its monitor.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vnas_nfs::{Access, ExportConfig, Gate, GateState, Server, ServerConfig, Squash};
use vnas_store::{VserverConfig, VserverRecord};

use super::fence::Fence;
use super::monitor::{self, Failure};
use super::Node;

pub struct Running {
    pub epoch: u64,
    pub write_verifier: [u8; 8],
    pub config: VserverConfig,
    gate: Arc<VserverGate>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    monitor: Option<JoinHandle<()>>,
    failures: mpsc::Sender<Failure>,
    settings: super::Settings,
}

const WAIT: u8 = 0;
const SERVE: u8 = 1;
const CLOSED: u8 = 2;

/// Whether this vserver's server may answer: only once this node owns it
/// (a target prepared for a move listens but holds calls), and only while
/// the node's session is fresh.
pub struct VserverGate {
    fence: Arc<Fence>,
    state: AtomicU8,
}

impl Gate for VserverGate {
    fn state(&self) -> GateState {
        match self.state.load(Ordering::SeqCst) {
            CLOSED => GateState::Closed,
            WAIT => GateState::Wait,
            _ if self.fence.serving() => GateState::Serve,
            _ => GateState::Wait,
        }
    }
}

/// Export ids go into file handles: the same vserver and export path give
/// the same id on every node and in every version (FNV-1a).
pub fn export_id(vserver: &str, export: &str) -> u32 {
    let mut hash = 0x811c_9dc5u32;
    for byte in vserver.bytes().chain([0]).chain(export.bytes()) {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    hash
}

/// The directory an export path of the vserver's namespace maps to through
/// its mount table.
pub fn export_dir(config: &VserverConfig, export: &str) -> Option<PathBuf> {
    config
        .volumes
        .iter()
        .filter_map(|volume| {
            let mount = volume.mount.trim_end_matches('/');
            let rest = if export == mount || mount.is_empty() {
                Some(export.strip_prefix(mount).unwrap_or(""))
            } else {
                export.strip_prefix(mount).filter(|r| r.starts_with('/'))
            }?;
            Some((mount.len(), PathBuf::from(&volume.path).join(rest.trim_start_matches('/'))))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, dir)| dir)
}

fn rule(rule: &vnas_store::ClientRule) -> Result<vnas_nfs::ClientRule, String> {
    Ok(vnas_nfs::ClientRule {
        clients: rule
            .clients
            .iter()
            .map(|c| {
                c.parse()
                    .or_else(|_| c.parse::<IpAddr>().map(Into::into))
                    .map_err(|_| format!("bad client network {c}"))
            })
            .collect::<Result<_, _>>()?,
        access: if rule.access == "ro" { Access::ReadOnly } else { Access::ReadWrite },
        squash: match rule.squash.as_str() {
            "root" => Squash::Root,
            "all" => Squash::All,
            _ => Squash::None,
        },
        anon_uid: rule.anon_uid,
        anon_gid: rule.anon_gid,
        secure: rule.secure,
    })
}

pub fn exports(config: &VserverConfig) -> Result<Vec<ExportConfig>, String> {
    let mut out = Vec::new();
    for export in &config.exports {
        let dir = export_dir(config, &export.path)
            .ok_or_else(|| format!("export {} is not under any volume", export.path))?;
        let mut nfs = ExportConfig::new(export.path.clone(), dir);
        nfs.id = Some(export_id(&config.name, &export.path));
        nfs.rules = export.rules.iter().map(rule).collect::<Result<_, _>>()?;
        out.push(nfs);
    }
    Ok(out)
}

impl Running {
    /// Starts the server for `record`: answering under ownership `epoch`
    /// if `serve`, else listening and holding calls until [`open`](Self::open).
    pub fn start(
        node: &Arc<Node>,
        record: &VserverRecord,
        epoch: u64,
        serve: bool,
        failures: mpsc::Sender<Failure>,
    ) -> Result<Running, String> {
        let config = record.config.clone();
        let mut server_config = ServerConfig::new(exports(&config)?);
        server_config.drain_timeout = Duration::from_secs(2);
        let gate = Arc::new(VserverGate { fence: node.fence.clone(), state: AtomicU8::new(WAIT) });
        server_config.gate = Some(gate.clone());
        let write_verifier = server_config.write_verifier;
        let server = Server::new(server_config).map_err(|e| e.to_string())?;
        let mut listeners = Vec::new();
        for address in &config.addresses {
            let ip: IpAddr = address.parse().map_err(|_| format!("bad address {address}"))?;
            let addr = SocketAddr::new(ip, node.settings.nfs_port);
            listeners.push(vnas_nfs::server::bind(addr).map_err(|e| e.to_string())?);
        }
        let shutdown = CancellationToken::new();
        let server = {
            let (shutdown, failures, name) = (shutdown.clone(), failures.clone(), config.name.clone());
            tokio::spawn(async move {
                let result = server.run(listeners, shutdown.clone()).await;
                if !shutdown.is_cancelled() {
                    let reason = format!("the NFS listener stopped: {result:?}");
                    let _ = failures.send(Failure { name, epoch, reason }).await;
                }
            })
        };
        let mut running = Running {
            epoch,
            write_verifier,
            config,
            gate,
            shutdown,
            server,
            monitor: None,
            failures,
            settings: node.settings.clone(),
        };
        if serve {
            running.open(epoch);
        }
        Ok(running)
    }

    pub fn serving(&self) -> bool {
        self.monitor.is_some()
    }

    /// Starts answering calls, under ownership `epoch`.
    pub fn open(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.gate.state.store(SERVE, Ordering::SeqCst);
        if self.monitor.is_none() {
            self.monitor = Some(tokio::spawn(monitor::watch(
                self.config.clone(),
                epoch,
                self.settings.clone(),
                self.failures.clone(),
                self.shutdown.clone(),
            )));
        }
    }

    /// Stops accepting, drains, closes connections and releases the
    /// addresses.
    pub async fn stop(self) {
        self.gate.state.store(CLOSED, Ordering::SeqCst);
        self.shutdown.cancel();
        if let Some(monitor) = self.monitor {
            monitor.abort();
        }
        let _ = self.server.await;
    }

    /// Stops, then makes what clients wrote reach stable storage, so the
    /// next owner starts from it (a move's hand-off).
    pub async fn stop_and_sync(self) {
        let volumes: Vec<String> = self.config.volumes.iter().map(|v| v.path.clone()).collect();
        self.stop().await;
        let _ = tokio::task::spawn_blocking(move || {
            for path in volumes {
                if let Ok(dir) = std::fs::File::open(&path) {
                    let _ = rustix::fs::syncfs(&dir);
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnas_store::{Desired, Volume};

    fn config(volumes: &[(&str, &str)]) -> VserverConfig {
        VserverConfig {
            name: "v".into(),
            addresses: vec![],
            volumes: volumes
                .iter()
                .map(|(m, p)| Volume { mount: m.to_string(), path: p.to_string() })
                .collect(),
            exports: vec![],
            routes: vec![],
            node: "n1".into(),
            desired: Desired::Running,
        }
    }

    #[test]
    fn exports_map_through_the_mount_table() {
        let c = config(&[("/data", "/srv/a"), ("/data/deep", "/srv/b")]);
        assert_eq!(export_dir(&c, "/data"), Some("/srv/a".into()));
        assert_eq!(export_dir(&c, "/data/x/y"), Some("/srv/a/x/y".into()));
        assert_eq!(export_dir(&c, "/data/deep/z"), Some("/srv/b/z".into()));
        assert_eq!(export_dir(&c, "/database"), None);
        assert_eq!(export_dir(&c, "/other"), None);
    }

    #[test]
    fn export_ids_are_stable() {
        assert_eq!(export_id("demo", "/data"), export_id("demo", "/data"));
        assert_ne!(export_id("demo", "/data"), export_id("demo2", "/data"));
        // Pinned: handles issued by one version must resolve in the next.
        assert_eq!(export_id("demo", "/data"), 1_772_401_759);
    }
}
