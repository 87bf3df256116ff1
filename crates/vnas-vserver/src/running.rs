//! One vserver running on this node: its NFS server on its addresses, with
//! the exports its mount table maps to directories, its gate, its monitor.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vnas_locks::nfs4::{Record as V4Record, Restore};
use vnas_nfs::locks::{LockManager, LockTable};
use vnas_nfs::{Connections, Gate, GateState, Server, ServerConfig};
use vnas_store::VserverConfig;

use crate::monitor::{self, Failure};
use crate::network::{parse_address, Attachment, Network};
use crate::volumes::{Claim, Volumes};
use ipnet::IpNet;

/// The node's session, as the gate sees it: calls are answered only while
/// it is fresh (self-fencing).
pub trait Lease: Send + Sync {
    fn serving(&self) -> bool;
}

/// What a vserver needs from the node that runs it.
#[derive(Clone)]
pub struct Params {
    pub nfs_port: u16,
    /// Ports besides `nfs_port` where the vserver answers (portmap's 111).
    pub extra_ports: Vec<u16>,
    /// How often the monitor checks the vserver.
    pub monitor_interval: Duration,
    /// How long a stop waits for calls in flight.
    pub drain_timeout: Duration,
    pub lease: Arc<dyn Lease>,
    pub network: Arc<dyn Network>,
    pub volumes: Arc<dyn Volumes>,
    /// Where the monitor reports the first failure it sees.
    pub failures: mpsc::Sender<Failure>,
    /// Where each vserver's lock table is recorded and restored from;
    /// `None`: locks live and die with the process.
    pub locks: Option<Arc<dyn LockRecords>>,
    /// Serve NFSv4 as well as v3.
    pub nfs4: bool,
    /// The NFSv4 ID-mapping domain (owners as names), if any.
    pub nfs4_domain: Option<String>,
}

/// The lock tables of vservers, in the common volume: written by the
/// owner (under its epoch) before a lock change is answered, read by the
/// next owner before it answers anything.
pub trait LockRecords: Send + Sync {
    fn load(&self, vserver: &str) -> Result<Option<LockTable>, String>;
    fn record(&self, vserver: &str, epoch: u64, table: &LockTable) -> Result<(), String>;
    /// The vserver's NFSv4 state, as locks: `Err` if the store cannot be
    /// read, `Ok(Err)` if what it holds cannot be understood.
    fn load_nfs4(&self, vserver: &str) -> Result<Result<Option<V4Record>, String>, String>;
    fn record_nfs4(&self, vserver: &str, epoch: u64, record: &V4Record) -> Result<(), String>;
    /// The names of the NFSv4 clients that held state (who may reclaim).
    fn load_nfs4_clients(&self, vserver: &str) -> Result<Vec<Vec<u8>>, String>;
    fn record_nfs4_clients(&self, vserver: &str, epoch: u64, clients: &[Vec<u8>]) -> Result<(), String>;
}

/// The server's NFSv4 journal: the vserver's records under its current
/// epoch.
struct V4Journal {
    records: Arc<dyn LockRecords>,
    vserver: String,
    epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl vnas_nfs::nfs4::journal::V4Journal for V4Journal {
    fn record(&self, record: &V4Record) -> Result<(), String> {
        self.records.record_nfs4(&self.vserver, self.epoch.load(Ordering::SeqCst), record)
    }

    fn record_clients(&self, clients: &[Vec<u8>]) -> Result<(), String> {
        self.records.record_nfs4_clients(&self.vserver, self.epoch.load(Ordering::SeqCst), clients)
    }
}

/// The server's journal: the vserver's records under its current epoch.
struct Journal {
    records: Arc<dyn LockRecords>,
    vserver: String,
    epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl vnas_nfs::locks::LockJournal for Journal {
    fn record(&self, table: &LockTable) -> Result<(), String> {
        self.records.record(&self.vserver, self.epoch.load(Ordering::SeqCst), table)
    }
}

pub struct Running {
    pub epoch: u64,
    pub write_verifier: [u8; 8],
    pub config: VserverConfig,
    /// Devices and addresses as applied, for the service state.
    pub devices: Vec<String>,
    /// What attaching the volumes took (a previous owner fenced), for the
    /// transfer's history.
    pub notes: Vec<String>,
    attachment: Arc<dyn Attachment>,
    gate: Arc<VserverGate>,
    shutdown: CancellationToken,
    /// The server, until it listens.
    pending: Option<Server>,
    server: Option<JoinHandle<()>>,
    connections: Arc<Connections>,
    /// Its NFS counters.
    pub stats: Arc<vnas_nfs::Stats>,
    /// Its lock manager (NLM locks, waiters, clients).
    pub locks: Arc<LockManager>,
    /// What became of its lock table at the start here (for the history).
    pub restored: Option<String>,
    /// The epoch its lock journal writes under.
    journal_epoch: Arc<std::sync::atomic::AtomicU64>,
    /// Changes its exports while it runs.
    control: vnas_nfs::ServerControl,
    /// Its configuration with each volume where it is on this node.
    attached: VserverConfig,
    /// What attaching its units applied (for `devices`).
    unit_devices: Vec<String>,
    /// Its configuration, for the monitor (which checks what it is now).
    watched: tokio::sync::watch::Sender<VserverConfig>,
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

    /// A reply leaves only while the session is fresh: a call read before
    /// the process froze is not answered after it thaws, when another
    /// node may own the vserver. A stop for a hand-off (closed, session
    /// fresh) answers the calls it let in; a stop after a lapse drops them.
    fn reply(&self) -> GateState {
        match self.state.load(Ordering::SeqCst) {
            _ if self.lease.serving() => GateState::Serve,
            CLOSED => GateState::Closed,
            _ => GateState::Wait,
        }
    }
}

/// When a new owner announces the addresses again after it began to serve
/// (ms): a switch that meanwhile learned the vserver's MAC address on the
/// previous owner's port again (a frozen owner's kernel sent something)
/// learns it back within a few hundred ms, for a few seconds.
const ANNOUNCE_AGAIN_MS: [u64; 7] = [100, 250, 500, 1_000, 1_500, 2_000, 3_000];

impl Running {
    /// Starts the server for `config`: answering under ownership `epoch`
    /// if `serve`, else listening and holding calls until [`open`](Self::open).
    /// `counters`: where its NFS counters start (its previous owner's).
    pub fn start(
        config: &VserverConfig,
        epoch: u64,
        serve: bool,
        params: &Params,
        counters: Option<vnas_nfs::StatsSnapshot>,
    ) -> Result<Running, String> {
        let config = config.clone();
        let claim = Claim { vserver: config.name.clone(), epoch, ..Default::default() };
        let attached = crate::exports::attach(&config, &*params.volumes, &claim)?;
        let detach = |error: String| {
            for volume in &config.volumes {
                params.volumes.detach(volume);
            }
            error
        };
        let exports = crate::exports::exports(&attached).map_err(detach)?;
        let mut server_config = ServerConfig::new(exports);
        server_config.stats = counters;
        server_config.drain_timeout = params.drain_timeout;
        server_config.service_port = Some(params.nfs_port);
        server_config.nfs4 = params.nfs4;
        server_config.nfs4_domain = params.nfs4_domain.clone();
        // One server owner and scope per vserver, whichever node serves it.
        server_config.nfs4_scope = format!("vnas/{}", config.name);
        let gate = Arc::new(VserverGate { lease: params.lease.clone(), state: AtomicU8::new(WAIT) });
        server_config.gate = Some(gate.clone());
        let write_verifier = server_config.write_verifier;
        let attachment = params.network.attach(&config).map_err(detach)?;
        server_config.connection_mark = attachment.connection_mark();
        let journal_epoch = Arc::new(std::sync::atomic::AtomicU64::new(epoch));
        if let Some(records) = &params.locks {
            server_config.lock_journal = Some(Arc::new(Journal {
                records: records.clone(),
                vserver: config.name.clone(),
                epoch: journal_epoch.clone(),
            }));
            if params.nfs4 {
                server_config.nfs4_journal = Some(Arc::new(V4Journal {
                    records: records.clone(),
                    vserver: config.name.clone(),
                    epoch: journal_epoch.clone(),
                }));
            }
        }
        let calling = attachment.clone();
        server_config.connector = Some(Arc::new(move |to| calling.client_socket(to)));
        let server = match Server::new(server_config) {
            Ok(server) => server,
            Err(error) => {
                attachment.take_down();
                return Err(detach(error.to_string()));
            }
        };
        let connections = server.connections();
        let stats = server.stats();
        let locks = server.locks();
        let control = server.control();
        let unit_devices = claim.applied.lock().unwrap().clone();
        let mut running = Running {
            notes: claim.notes.lock().unwrap().clone(),
            epoch,
            write_verifier,
            devices: attachment.devices().into_iter().chain(unit_devices.iter().cloned()).collect(),
            unit_devices,
            watched: tokio::sync::watch::Sender::new(config.clone()),
            attachment,
            config,
            gate,
            shutdown: CancellationToken::new(),
            pending: Some(server),
            server: None,
            connections,
            stats,
            locks,
            restored: None,
            journal_epoch,
            control,
            attached,
            monitor: None,
            params: params.clone(),
        };
        let started = (|| {
            if running.attachment.listens_early() {
                running.listen()?;
            }
            if serve {
                running.open(epoch)?;
            }
            Ok(())
        })();
        match started {
            Ok(()) => Ok(running),
            Err(error) => {
                running.abandon();
                Err(error)
            }
        }
    }

    /// A start that failed before the server ran: the addresses leave and
    /// the volumes are detached (a unit unmounted, so the next start does
    /// not find it held).
    fn abandon(self) {
        self.shutdown.cancel();
        if let Some(monitor) = self.monitor {
            monitor.abort();
        }
        drop(self.control);
        drop(self.pending);
        self.attachment.take_down();
        for volume in &self.config.volumes {
            self.params.volumes.detach(volume);
        }
    }

    /// Makes the addresses answer here and serves them (calls held at the
    /// gate until `open`).
    fn listen(&mut self) -> Result<(), String> {
        let Some(server) = self.pending.take() else { return Ok(()) };
        let listeners = self.attachment.listen(&self.ports())?;
        let datagrams = self.attachment.listen_datagrams(&self.ports())?;
        self.control.serve_datagrams(datagrams).map_err(|e| format!("cannot serve datagrams: {e}"))?;
        let (shutdown, failures, name, epoch) =
            (self.shutdown.clone(), self.params.failures.clone(), self.config.name.clone(), self.epoch);
        self.server = Some(tokio::spawn(async move {
            let result = server.run(listeners, shutdown.clone()).await;
            if !shutdown.is_cancelled() {
                let reason = format!("the NFS listener stopped: {result:?}");
                let _ = failures.send(Failure { name, epoch, reason }).await;
            }
        }));
        Ok(())
    }

    /// Takes a new configuration without stopping: calls on the kept
    /// addresses and exports go on, a changed rule applies from the next
    /// call. In order: volumes added are attached (a unit mounted),
    /// addresses added listen and answer, routes change, exports change;
    /// then addresses removed stop answering (their connections close) and
    /// volumes removed are detached. On an error nothing changes.
    pub fn reconfigure(&mut self, config: &VserverConfig) -> Result<(), String> {
        let nets =
            |c: &VserverConfig| c.addresses.iter().map(|a| parse_address(a)).collect::<Result<Vec<_>, _>>();
        let (old_nets, new_nets) = (nets(&self.config)?, nets(config)?);
        let nets_added: Vec<IpNet> = new_nets.iter().filter(|n| !old_nets.contains(n)).copied().collect();
        let nets_removed: Vec<IpNet> = old_nets.iter().filter(|n| !new_nets.contains(n)).copied().collect();
        // Listeners go by address: one whose prefix changes keeps them.
        let ips_added: Vec<IpAddr> = nets_added
            .iter()
            .map(|n| n.addr())
            .filter(|ip| !old_nets.iter().any(|n| n.addr() == *ip))
            .collect();
        let ips_removed: Vec<IpAddr> = nets_removed
            .iter()
            .map(|n| n.addr())
            .filter(|ip| !new_nets.iter().any(|n| n.addr() == *ip))
            .collect();

        let added: Vec<&vnas_store::Volume> =
            config.volumes.iter().filter(|v| !self.config.volumes.contains(v)).collect();
        let removed: Vec<vnas_store::Volume> =
            self.config.volumes.iter().filter(|v| !config.volumes.contains(v)).cloned().collect();
        let claim = Claim { vserver: config.name.clone(), epoch: self.epoch, ..Default::default() };
        let mut attached = config.clone();
        let mut newly = Vec::new();
        for volume in attached.volumes.iter_mut() {
            let before = self.config.volumes.iter().position(|v| v == volume);
            let path = match before {
                Some(i) => self.attached.volumes[i].path.clone(),
                None => match self.params.volumes.attach(volume, &claim) {
                    Ok(path) => {
                        newly.push(volume.clone());
                        path.display().to_string()
                    }
                    Err(error) => {
                        newly.iter().for_each(|v| self.params.volumes.detach(v));
                        return Err(error);
                    }
                },
            };
            volume.path = path;
        }
        let attachment = self.attachment.clone();
        let (volumes, old_routes) = (self.params.volumes.clone(), self.config.routes.clone());
        // Undoes what went in so far: routes (if `routes`), addresses, volumes.
        let undo = |error: String, addresses: &[IpNet], routes: bool| {
            if routes {
                if let Err(e) = attachment.set_routes(&old_routes) {
                    tracing::warn!(error = %e, "cannot put the routes back");
                }
            }
            for net in addresses {
                let _ = attachment.remove_address(*net);
            }
            newly.iter().for_each(|v| volumes.detach(v));
            error
        };
        let exports = crate::exports::exports(&attached).map_err(|e| undo(e, &[], false))?;
        // New addresses: listeners first (while the server has not yet
        // started listening at all, it will listen on every address).
        let mut listeners = Vec::new();
        if self.pending.is_none() {
            for ip in &ips_added {
                let net = nets_added.iter().find(|n| n.addr() == *ip).expect("from nets_added");
                match attachment.listen_on(*net, &self.ports()) {
                    Ok(more) => listeners.extend(more),
                    Err(error) => return Err(undo(error, &nets_added, false)),
                }
            }
        }
        // Served before they answer: a client that connects at once is
        // accepted.
        let unlisten =
            |control: &vnas_nfs::ServerControl| ips_added.iter().for_each(|ip| control.close_address(*ip));
        if !listeners.is_empty() {
            if let Err(error) = self.control.listen_more(listeners) {
                unlisten(&self.control);
                return Err(undo(format!("cannot serve the new addresses: {error}"), &nets_added, false));
            }
        }
        for net in &nets_added {
            if let Err(error) = attachment.add_address(*net) {
                unlisten(&self.control);
                return Err(undo(error, &nets_added, false));
            }
        }
        if let Err(error) = attachment.set_routes(&config.routes) {
            unlisten(&self.control);
            return Err(undo(error, &nets_added, false));
        }
        if let Err(error) = self.control.set_exports(&exports) {
            unlisten(&self.control);
            return Err(undo(error.to_string(), &nets_added, true));
        }
        // From here nothing fails. The monitor checks the new
        // configuration before anything of the old one goes.
        self.watched.send_replace(config.clone());
        for ip in &ips_removed {
            self.control.close_address(*ip);
        }
        for net in &nets_removed {
            if let Err(error) = self.attachment.remove_address(*net) {
                tracing::warn!(vserver = %config.name, address = %net, %error, "cannot remove the address");
            }
        }
        for volume in &removed {
            self.params.volumes.sync(volume);
            self.params.volumes.detach(volume);
        }
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(vserver = %config.name, added = added.len(), removed = removed.len(), "volumes changed live");
        }
        if !nets_added.is_empty() || !nets_removed.is_empty() || config.routes != self.config.routes {
            tracing::info!(
                vserver = %config.name,
                added = ?nets_added.iter().map(ToString::to_string).collect::<Vec<_>>(),
                removed = ?nets_removed.iter().map(ToString::to_string).collect::<Vec<_>>(),
                routes = config.routes.len(),
                "addresses and routes changed live"
            );
        }
        self.unit_devices
            .retain(|line| !removed.iter().any(|v| line.starts_with(&format!("unit {} ", v.path))));
        self.unit_devices.extend(claim.applied.lock().unwrap().iter().cloned());
        self.devices =
            self.attachment.devices().into_iter().chain(self.unit_devices.iter().cloned()).collect();
        self.attached = attached;
        self.config = config.clone();
        Ok(())
    }

    /// The ports it answers on.
    fn ports(&self) -> Vec<u16> {
        let mut ports = vec![self.params.nfs_port];
        ports.extend(self.params.extra_ports.iter().filter(|p| **p != self.params.nfs_port));
        ports
    }

    /// The client connections it holds now, (server, client).
    /// Its client connections as the server keeps them (for metrics).
    /// Changes its server while it runs (exports, lock breaks).
    pub fn control(&self) -> vnas_nfs::ServerControl {
        self.control.clone()
    }

    pub fn connection_table(&self) -> Arc<Connections> {
        self.connections.clone()
    }

    pub fn connections(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.connections.snapshot()
    }

    /// Once it serves: announces the addresses and wakes the previous
    /// owner's clients (tickle ACKs); after a takeover (`again`), now and
    /// again for a few seconds (a planned move's source stopped cleanly
    /// and took its link down first).
    ///
    /// A repeat tickles only connections that have not come back here: a
    /// client that reconnected from the same port (the Linux client does)
    /// answers a tickle on its live connection with an ACK, and its kernel
    /// sends at most one such ACK per 500 ms (tcp_invalid_ratelimit). A
    /// repeat two seconds after a takeover, just before a drain, used that
    /// allowance up: the next owner's tickle then went unanswered, and the
    /// client waited for its own retransmission (0.3 s instead of 0.1 s).
    pub fn announce(&self, connections: &[(SocketAddr, SocketAddr)], again: bool) {
        self.attachment.announce(connections);
        if !again {
            return;
        }
        let (attachment, connections, shutdown) =
            (self.attachment.clone(), connections.to_vec(), self.shutdown.clone());
        let (gate, live) = (self.gate.clone(), self.connections.clone());
        tokio::spawn(async move {
            let mut since_ms = 0;
            for at_ms in ANNOUNCE_AGAIN_MS {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(at_ms - since_ms)) => {}
                }
                since_ms = at_ms;
                // Only while this node may still answer for the vserver: a
                // process that thaws must not announce what it may have lost.
                if gate.state() != GateState::Serve {
                    continue;
                }
                let back = live.snapshot();
                let quiet: Vec<_> = connections.iter().filter(|c| !back.contains(c)).copied().collect();
                let attachment = attachment.clone();
                let _ = tokio::task::spawn_blocking(move || attachment.announce(&quiet)).await;
            }
        });
    }

    /// This node may have lost the vserver (a lapse of its session):
    /// no new call is taken, no reply leaves (the gate), and the network
    /// sends nothing more for it, at once, before any drain.
    pub fn cut_off(&self) {
        self.gate.state.store(CLOSED, Ordering::SeqCst);
        self.attachment.silence();
    }

    pub fn serving(&self) -> bool {
        self.monitor.is_some()
    }

    /// Whether its server would answer a call now (opened here, the
    /// node's session fresh): what the node reports it serves.
    pub fn answering(&self) -> bool {
        self.gate.state() == GateState::Serve
    }

    /// Starts answering calls, under ownership `epoch` (first making the
    /// addresses answer here, where that waits for ownership).
    pub fn open(&mut self, epoch: u64) -> Result<(), String> {
        // Whatever is recorded from here on is recorded under this epoch.
        self.journal_epoch.store(epoch, Ordering::SeqCst);
        // The lock table as the previous owner last recorded it (it
        // recorded every change before answering it, and stopped before
        // this node owned the vserver): restored whole, so nobody
        // reclaims anything and no grace period is needed.
        if let Some(records) = &self.params.locks {
            // A store call may block on a runtime of its own (etcd): on a
            // thread of its own, wherever this is called from.
            let (reading, name) = (records.clone(), self.config.name.clone());
            let table = std::thread::spawn(move || reading.load(&name))
                .join()
                .map_err(|_| "reading the lock table panicked".to_string())?
                .map_err(|e| format!("cannot read the vserver's lock table: {e}"))?;
            if let Some(table) = table {
                tracing::info!(
                    vserver = %self.config.name,
                    locks = table.locks().count(),
                    waiting = table.waiters().count(),
                    "lock table restored"
                );
                let (locks, waiting) = (table.locks().count(), table.waiters().count());
                self.control.restore_locks(table);
                self.restored =
                    Some(format!("{locks} locks and {waiting} waiters restored; no grace period"));
            } else {
                self.restored = Some("no locks recorded; no grace period".to_string());
            }
            if self.params.nfs4 {
                let v4 = self.restore_nfs4(records.clone())?;
                if let Some(said) = &mut self.restored {
                    said.push_str("; ");
                    said.push_str(&v4);
                }
            }
        }
        self.listen()?;
        self.epoch = epoch;
        self.gate.state.store(SERVE, Ordering::SeqCst);
        if self.monitor.is_none() {
            self.monitor = Some(tokio::spawn(monitor::watch(
                self.watched.subscribe(),
                epoch,
                self.params.clone(),
                self.attachment.clone(),
                self.shutdown.clone(),
            )));
        }
        Ok(())
    }

    /// The NFSv4 state as the previous owner last recorded it: whole
    /// after a hand-off (its sessions go on), as journaled after a
    /// failover (client IDs, opens and locks go on; sessions are made
    /// anew). What became of it, for the history.
    fn restore_nfs4(&mut self, records: Arc<dyn LockRecords>) -> Result<String, String> {
        let name = self.config.name.clone();
        let (read, known) = std::thread::spawn(move || {
            let read = records.load_nfs4(&name)?;
            // Who may reclaim, read only when the state cannot be.
            let known = if read.is_err() { records.load_nfs4_clients(&name)? } else { Vec::new() };
            Ok::<_, String>((read, known))
        })
        .join()
        .map_err(|_| "reading the NFSv4 state panicked".to_string())?
        .map_err(|e| format!("cannot read the vserver's NFSv4 state: {e}"))?;
        let handoff = matches!(&read, Ok(Some(r)) if r.handoff);
        let unreadable = read.as_ref().err().cloned().unwrap_or_default();
        match vnas_locks::nfs4::restore(read, &known) {
            Restore::Serve(record) => {
                let skipped = self.control.restore_nfs4(&record);
                if handoff {
                    // The hand-off's slots go stale with the first call:
                    // a record without them replaces it before any runs.
                    let control = self.control.clone();
                    let recorded = std::thread::spawn(move || control.record_nfs4())
                        .join()
                        .map_err(|_| "recording the NFSv4 state panicked".to_string())?;
                    if !recorded {
                        return Err("cannot record the vserver's NFSv4 state".to_string());
                    }
                }
                let (clients, sessions, opens, locks) = (
                    record.clients41.len() + record.clients40.len(),
                    record.sessions.len(),
                    record.opens.len(),
                    record.locks.len(),
                );
                tracing::info!(
                    vserver = %self.config.name,
                    handoff, clients, sessions, opens, lock_states = locks, skipped,
                    "NFSv4 state restored"
                );
                if clients == 0 {
                    return Ok("no NFSv4 clients recorded".to_string());
                }
                let kind =
                    if handoff { "handed over" } else { "restored from the journal (sessions made anew)" };
                Ok(format!("NFSv4: {clients} clients, {sessions} sessions, {opens} opens, {locks} lock states {kind}; no grace period"))
            }
            Restore::Grace { reclaimers } => {
                let released = self.control.begin_grace(&reclaimers);
                tracing::warn!(
                    vserver = %self.config.name, reason = %unreadable, reclaimers = reclaimers.len(), released,
                    "NFSv4 state unreadable: this vserver alone in grace while its clients reclaim"
                );
                if reclaimers.is_empty() {
                    return Ok(format!(
                        "NFSv4 state unreadable ({unreadable}); no client listed, no grace period"
                    ));
                }
                Ok(format!(
                    "NFSv4 state unreadable ({unreadable}); grace period for this vserver until its {} listed clients reclaim",
                    reclaimers.len()
                ))
            }
        }
    }

    /// Stops accepting, drains, closes connections and releases the
    /// addresses.
    pub async fn stop(self) {
        self.finish(false).await
    }

    /// While still serving, writes what clients wrote so far to stable
    /// storage: the sync after the stop, inside the move's pause, then
    /// has little left to write.
    pub async fn presync(&self) {
        let (volumes, config) = (self.params.volumes.clone(), self.config.clone());
        let _ = tokio::task::spawn_blocking(move || {
            for volume in &config.volumes {
                volumes.sync(volume);
            }
        })
        .await;
    }

    /// Stops, then makes what clients wrote reach stable storage, so the
    /// next owner starts from it (a move's hand-off).
    pub async fn stop_and_sync(self) {
        self.finish(true).await
    }

    async fn finish(self, sync: bool) {
        self.attachment.quiesce();
        self.gate.state.store(CLOSED, Ordering::SeqCst);
        self.shutdown.cancel();
        if let Some(monitor) = self.monitor {
            monitor.abort();
        }
        let started = std::time::Instant::now();
        if let Some(server) = self.server {
            let _ = server.await;
        }
        let drained = started.elapsed();
        // No call runs now: the NFSv4 state whole, slots and their replies
        // included, for the next owner to go on with (refused by the store
        // if another node owns the vserver already).
        if let (true, Some(records)) = (self.params.nfs4, &self.params.locks) {
            let (records, name, epoch) =
                (records.clone(), self.config.name.clone(), self.journal_epoch.load(Ordering::SeqCst));
            let record = self.control.nfs4_handoff();
            let control = self.control.clone();
            let wrote = tokio::task::spawn_blocking(move || {
                // No v4 client: nothing to hand over beyond what the
                // journal holds (brought up to date if it is not), so a
                // vserver of v3 clients moves with no extra write.
                if record.clients41.is_empty() && record.clients40.is_empty() {
                    return if control.record_nfs4() {
                        Ok(())
                    } else {
                        Err("the journal could not be brought up to date".to_string())
                    };
                }
                records.record_nfs4(&name, epoch, &record)
            })
            .await;
            match wrote {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(vserver = %self.config.name, %error, "NFSv4 state not handed over; the next owner goes on from its journal")
                }
                Err(_) => tracing::warn!(vserver = %self.config.name, "writing the NFSv4 hand-off panicked"),
            }
        }
        // Nothing of the server may hold the volumes' files any more (its
        // exports' open directories): a unit must unmount at once.
        drop(self.control);
        drop(self.pending);
        let attachment = self.attachment;
        let _ = tokio::task::spawn_blocking(move || attachment.take_down()).await;
        tracing::debug!(vserver = %self.config.name, ?drained, taken_down = ?started.elapsed() - drained, "stopped");
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
