//! One vserver running on this node: its NFS server on its addresses, with
//! the exports its mount table maps to directories, its gate, its monitor.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vnas_nfs::{Gate, GateState, Server, ServerConfig};
use vnas_store::VserverConfig;

use crate::monitor::{self, Failure};
use crate::network::Network;
use crate::volumes::Volumes;

/// The node's session, as the gate sees it: calls are answered only while
/// it is fresh (self-fencing).
pub trait Lease: Send + Sync {
    fn serving(&self) -> bool;
}

/// What a vserver needs from the node that runs it.
#[derive(Clone)]
pub struct Params {
    pub nfs_port: u16,
    /// How often the monitor checks the vserver.
    pub monitor_interval: Duration,
    /// How long a stop waits for calls in flight.
    pub drain_timeout: Duration,
    pub lease: Arc<dyn Lease>,
    pub network: Arc<dyn Network>,
    pub volumes: Arc<dyn Volumes>,
    /// Where the monitor reports the first failure it sees.
    pub failures: mpsc::Sender<Failure>,
}

pub struct Running {
    pub epoch: u64,
    pub write_verifier: [u8; 8],
    pub config: VserverConfig,
    /// Devices and addresses as applied, for the service state.
    pub devices: Vec<String>,
    addresses: Vec<IpAddr>,
    gate: Arc<VserverGate>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    monitor: Option<JoinHandle<()>>,
    params: Params,
}

const WAIT: u8 = 0;
const SERVE: u8 = 1;
const CLOSED: u8 = 2;

/// Whether this vserver's server may answer: only once this node owns it
/// (a target prepared for a move listens but holds calls), and only while
/// the node's session is fresh.
struct VserverGate {
    lease: Arc<dyn Lease>,
    state: AtomicU8,
}

impl Gate for VserverGate {
    fn state(&self) -> GateState {
        match self.state.load(Ordering::SeqCst) {
            CLOSED => GateState::Closed,
            WAIT => GateState::Wait,
            _ if self.lease.serving() => GateState::Serve,
            _ => GateState::Wait,
        }
    }
}

impl Running {
    /// Starts the server for `config`: answering under ownership `epoch`
    /// if `serve`, else listening and holding calls until [`open`](Self::open).
    pub fn start(
        config: &VserverConfig,
        epoch: u64,
        serve: bool,
        params: &Params,
    ) -> Result<Running, String> {
        let config = config.clone();
        let mut server_config = ServerConfig::new(crate::exports::exports(&config, &*params.volumes)?);
        server_config.drain_timeout = params.drain_timeout;
        let gate = Arc::new(VserverGate { lease: params.lease.clone(), state: AtomicU8::new(WAIT) });
        server_config.gate = Some(gate.clone());
        let write_verifier = server_config.write_verifier;
        let server = Server::new(server_config).map_err(|e| e.to_string())?;
        let addresses = config
            .addresses
            .iter()
            .map(|a| a.parse::<IpAddr>().map_err(|_| format!("bad address {a}")))
            .collect::<Result<Vec<_>, _>>()?;
        let listeners = params.network.bring_up(&addresses, params.nfs_port)?;
        let shutdown = CancellationToken::new();
        let server = {
            let (shutdown, failures, name) = (shutdown.clone(), params.failures.clone(), config.name.clone());
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
            devices: params.network.devices(&addresses),
            addresses,
            config,
            gate,
            shutdown,
            server,
            monitor: None,
            params: params.clone(),
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
                self.params.clone(),
                self.shutdown.clone(),
            )));
        }
    }

    /// Stops accepting, drains, closes connections and releases the
    /// addresses.
    pub async fn stop(self) {
        self.finish(false).await
    }

    /// Stops, then makes what clients wrote reach stable storage, so the
    /// next owner starts from it (a move's hand-off).
    pub async fn stop_and_sync(self) {
        self.finish(true).await
    }

    async fn finish(self, sync: bool) {
        self.gate.state.store(CLOSED, Ordering::SeqCst);
        self.shutdown.cancel();
        if let Some(monitor) = self.monitor {
            monitor.abort();
        }
        let _ = self.server.await;
        self.params.network.take_down(&self.addresses);
        let (volumes, config) = (self.params.volumes.clone(), self.config.clone());
        let _ = tokio::task::spawn_blocking(move || {
            for volume in &config.volumes {
                if sync {
                    volumes.sync(volume);
                }
                volumes.detach(volume);
            }
        })
        .await;
    }
}
