//! The server: listeners, connections, and a graceful stop.
//!
//! Each connection has a reader that takes one record at a time (at most
//! `INFLIGHT_PER_CONNECTION_MAX` in flight, so a client that pipelines more
//! is pushed back by TCP), runs each call on the blocking pool, and a writer
//! that sends replies in the order they complete.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Gate, GateState, ServerConfig};
use crate::dispatch::{self, Conn, Outcome};
use crate::drc::Drc;
use crate::fs::{Export, ExportError};
use crate::limits::{CONNECTIONS_MAX, INFLIGHT_MAX, INFLIGHT_PER_CONNECTION_MAX, RECORD_MAX};
use crate::rpc::{RecordError, RecordReader};
use crate::ExportConfig;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("two exports are named {0}")]
    DuplicateExport(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// What every call may use.
pub struct State {
    /// Replaced whole when the vserver's exports change; a call holds the
    /// list it started with.
    exports: std::sync::RwLock<Arc<Vec<Arc<Export>>>>,
    pub write_verifier: [u8; 8],
    pub drc: Drc,
    pub mounts: Mutex<BTreeSet<(IpAddr, String)>>,
    inflight: Arc<Semaphore>,
    gate: Option<Arc<dyn Gate>>,
    service_port: Option<u16>,
    connection_mark: Option<u32>,
    connections: Arc<Connections>,
    pub(crate) stats: Arc<crate::Stats>,
    /// NLM and v4 lock state (one manager for both).
    pub locks: Arc<crate::locks::LockManager>,
    /// Makes the sockets calls back to clients leave from.
    pub(crate) connector: Option<crate::locks::Connector>,
    /// NFSv4.0 answered (client records, open states), if at all.
    pub(crate) nfs4: bool,
    pub(crate) nfs4_scope: String,
    /// owner and owner_group as text.
    pub(crate) idmap: crate::nfs4::idmap::IdMap,
    pub(crate) v4: crate::nfs4::state::V4State,
    /// NFSv4.1 client IDs and sessions.
    pub(crate) sessions: crate::nfs4::session::Sessions,
    /// NFSv4.1 back channels: calls to clients on their connections.
    pub(crate) back: crate::nfs4::callback::BackChannel,
    /// Records the v4 state before a change of it is answered.
    pub(crate) v4_journal: crate::nfs4::journal::Journal,
    /// OPENs with CLAIM_PREVIOUS and LOCKs with reclaim set, and
    /// RECLAIM_COMPLETEs, taken here: a client that found its state gone.
    pub(crate) v4_reclaims: std::sync::atomic::AtomicU64,
    pub(crate) v4_reclaim_completes: std::sync::atomic::AtomicU64,
    /// A grace period of this vserver (its v4 state could not be read).
    pub(crate) grace: Mutex<Option<vnas_locks::nfs4::Grace>>,
    /// Where listeners come and go.
    listening: Mutex<ListenState>,
    /// Datagram sockets given before `run`, which `run` takes.
    early_datagrams: Mutex<Vec<std::net::UdpSocket>>,
}

enum ListenState {
    /// Before `run`: listeners given early, which `run` takes.
    NotYet(Vec<std::net::TcpListener>),
    Running(Listening),
    Stopped,
}

/// What a running server's listeners share; addresses join and leave
/// while it runs.
struct Listening {
    runtime: tokio::runtime::Handle,
    tracker: TaskTracker,
    /// Connection slots, shared by every listener.
    slots: Arc<Semaphore>,
    drain_timeout: Duration,
    shutdown: CancellationToken,
    /// By local address: cancelled when the address leaves (its listeners
    /// stop, its connections drain and close), or with the server.
    addresses: HashMap<IpAddr, CancellationToken>,
}

impl Listening {
    fn spawn_datagrams(&mut self, state: &Arc<State>, socket: std::net::UdpSocket) -> std::io::Result<()> {
        let ip = socket.local_addr()?.ip();
        let _runtime = self.runtime.enter();
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        let stop = self.addresses.entry(ip).or_insert_with(|| self.shutdown.child_token()).clone();
        self.tracker.spawn_on(datagram_loop(socket, state.clone(), stop), &self.runtime);
        Ok(())
    }

    fn spawn(&mut self, state: &Arc<State>, listener: std::net::TcpListener) -> std::io::Result<()> {
        let ip = listener.local_addr()?.ip();
        let _runtime = self.runtime.enter();
        let listener = TcpListener::from_std(listener)?;
        let stop = self.addresses.entry(ip).or_insert_with(|| self.shutdown.child_token()).clone();
        self.tracker.spawn_on(
            accept_loop(
                listener,
                state.clone(),
                self.slots.clone(),
                self.tracker.clone(),
                stop,
                self.drain_timeout,
            ),
            &self.runtime,
        );
        Ok(())
    }
}

/// The client connections a server holds, (server address, client
/// address): the record a next owner uses to wake clients after a
/// failover (tickle ACKs).
#[derive(Default)]
pub struct Connections(Mutex<BTreeSet<(SocketAddr, SocketAddr)>>);

impl Connections {
    pub fn snapshot(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.0.lock().expect("not poisoned").iter().copied().collect()
    }

    fn add(&self, local: SocketAddr, peer: SocketAddr) {
        self.0.lock().expect("not poisoned").insert((local, peer));
    }

    fn remove(&self, local: SocketAddr, peer: SocketAddr) {
        self.0.lock().expect("not poisoned").remove(&(local, peer));
    }
}

/// Opens `configs`, reusing what `current` already has open.
fn open_exports(configs: &[ExportConfig], current: &[Arc<Export>]) -> Result<Vec<Arc<Export>>, ServerError> {
    let mut exports: Vec<Arc<Export>> = Vec::new();
    for config in configs {
        let kept = current
            .iter()
            .find(|e| e.name == config.name && e.path == config.path && Some(e.id) == config.id);
        let export = match kept {
            Some(export) => {
                *export.rules.write().expect("not poisoned") = Arc::new(config.rules.clone());
                export.clone()
            }
            None => Arc::new(Export::open(config)?),
        };
        if exports.iter().any(|e| e.name == export.name || e.id == export.id) {
            return Err(ServerError::DuplicateExport(export.name.clone()));
        }
        exports.push(export);
    }
    Ok(exports)
}

impl State {
    /// The NFSv4 lease, in whole seconds.
    pub fn lease_seconds(&self) -> u32 {
        self.sessions.lease().as_secs().max(1) as u32
    }

    /// NFSv4.1's server owner and scope.
    pub fn server_scope(&self) -> &str {
        &self.nfs4_scope
    }

    pub fn export_by_id(&self, id: u32) -> Option<Arc<Export>> {
        self.exports.read().expect("not poisoned").iter().find(|e| e.id == id).cloned()
    }

    pub fn exports(&self) -> Arc<Vec<Arc<Export>>> {
        self.exports.read().expect("not poisoned").clone()
    }
}

pub struct Server {
    pub(crate) state: Arc<State>,
    drain_timeout: Duration,
}

/// A listening socket for `addr` with SO_REUSEADDR and SO_REUSEPORT, so a
/// new server can listen on an address before the old one lets go of it.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    let listen = || -> std::io::Result<std::net::TcpListener> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    listen().map_err(|source| ServerError::Listen { addr, source })
}

/// A datagram socket for `addr` (portmap and NSM over UDP), shared with
/// a next server on the same address as [`bind`] is.
pub fn bind_datagrams(addr: SocketAddr) -> Result<std::net::UdpSocket, ServerError> {
    let open = || -> std::io::Result<std::net::UdpSocket> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        if addr.is_ipv4() {
            socket.set_freebind_v4(true)?;
        } else {
            socket.set_freebind_v6(true)?;
        }
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    open().map_err(|source| ServerError::Listen { addr, source })
}

impl Server {
    /// Opens the exports. Nothing is served until [`run`](Self::run).
    pub fn new(config: ServerConfig) -> Result<Server, ServerError> {
        // Clients send the mode they want; the server's umask must not
        // change it.
        rustix::process::umask(rustix::fs::Mode::empty());
        let exports = open_exports(&config.exports, &[])?;
        let state = State {
            exports: std::sync::RwLock::new(Arc::new(exports)),
            write_verifier: config.write_verifier,
            drc: Drc::default(),
            mounts: Mutex::new(BTreeSet::new()),
            inflight: Arc::new(Semaphore::new(INFLIGHT_MAX)),
            gate: config.gate.clone(),
            service_port: config.service_port,
            connection_mark: config.connection_mark,
            connections: Arc::default(),
            stats: Arc::new(config.stats.as_ref().map(crate::Stats::from_snapshot).unwrap_or_default()),
            locks: Arc::new(crate::locks::LockManager::new(
                config.locks.clone(),
                config.lock_journal.clone(),
                crate::locks::Limits::default(),
            )),
            connector: config.connector.clone(),
            nfs4: config.nfs4,
            nfs4_scope: config.nfs4_scope.clone(),
            idmap: crate::nfs4::idmap::IdMap::new(config.nfs4_domain.clone()),
            v4: crate::nfs4::state::V4State::new(),
            sessions: crate::nfs4::session::Sessions::new(config.nfs4_lease),
            back: Default::default(),
            v4_journal: crate::nfs4::journal::Journal::new(config.nfs4_journal.clone()),
            v4_reclaims: Default::default(),
            v4_reclaim_completes: Default::default(),
            grace: Mutex::new(None),
            listening: Mutex::new(ListenState::NotYet(Vec::new())),
            early_datagrams: Mutex::new(Vec::new()),
        };
        Ok(Server { state: Arc::new(state), drain_timeout: config.drain_timeout })
    }

    /// Its counters, kept up to date while it runs.
    pub fn stats(&self) -> Arc<crate::Stats> {
        self.state.stats.clone()
    }

    /// Its lock manager (the table, its counters).
    pub fn locks(&self) -> Arc<crate::locks::LockManager> {
        self.state.locks.clone()
    }

    /// The client connections it holds, kept up to date while it runs.
    pub fn connections(&self) -> Arc<Connections> {
        self.state.connections.clone()
    }

    pub fn exports(&self) -> Arc<Vec<Arc<Export>>> {
        self.state.exports()
    }

    /// A handle that changes the exports while the server runs.
    pub fn control(&self) -> ServerControl {
        ServerControl(self.state.clone())
    }

    /// Serves on `listeners` until `shutdown` is cancelled, then stops
    /// accepting, lets calls in flight finish (up to the drain timeout),
    /// sends their replies and closes every connection.
    pub async fn run(
        self,
        listeners: Vec<std::net::TcpListener>,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let mut listening = Listening {
            runtime: tokio::runtime::Handle::current(),
            tracker: TaskTracker::new(),
            slots: Arc::new(Semaphore::new(CONNECTIONS_MAX)),
            drain_timeout: self.drain_timeout,
            shutdown: shutdown.clone(),
            addresses: HashMap::new(),
        };
        let tracker = listening.tracker.clone();
        let (callbacks, queue) = tokio::sync::mpsc::unbounded_channel();
        self.state.locks.set_callbacks(callbacks);
        tracker.spawn(crate::locks::run_callbacks(self.state.clone(), queue, shutdown.clone()));
        tracker.spawn(lock_ticks(self.state.clone(), shutdown.clone()));
        {
            let mut state = self.state.listening.lock().expect("not poisoned");
            let early = match std::mem::replace(&mut *state, ListenState::Stopped) {
                ListenState::NotYet(early) => early,
                _ => Vec::new(),
            };
            for listener in listeners.into_iter().chain(early) {
                listening.spawn(&self.state, listener)?;
            }
            for socket in std::mem::take(&mut *self.state.early_datagrams.lock().expect("not poisoned")) {
                listening.spawn_datagrams(&self.state, socket)?;
            }
            *state = ListenState::Running(listening);
        }
        shutdown.cancelled().await;
        // No listener joins from here on.
        *self.state.listening.lock().expect("not poisoned") = ListenState::Stopped;
        tracker.close();
        if tokio::time::timeout(self.drain_timeout + Duration::from_secs(1), tracker.wait()).await.is_err() {
            tracing::warn!("connections still open after the drain timeout; closing them");
        }
        // The kernel's copies of the locks go with this server; the next
        // owner takes them from the recorded table.
        self.state.locks.let_go();
        Ok(())
    }
}

/// Four times a second: restored grants into the kernel, waiters held up
/// only by locks outside the table (a process on the server) granted when
/// those go (the kernel tells of no release, so it is asked).
async fn lock_ticks(state: Arc<State>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_millis(250));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if state.gate.as_ref().is_some_and(|g| g.state() != GateState::Serve) {
            continue;
        }
        let ticking = state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let open = crate::nlm::opener(&ticking);
            ticking.locks.tick(&open);
            crate::nfs4::lock::expire(&ticking);
            ticking.v4_journal.flush(&ticking);
        })
        .await;
    }
}

/// Largest datagram taken (a portmap or NSM call is a few hundred bytes).
const DATAGRAM_MAX: usize = 8192;

/// Portmap and NSM over UDP, what a client's statd uses to tell of its
/// reboot (sm-notify sends nothing over TCP). NFS, MOUNT and NLM are
/// served over TCP only: other datagrams are dropped.
async fn datagram_loop(socket: tokio::net::UdpSocket, state: Arc<State>, stop: CancellationToken) {
    let local = socket.local_addr().ok();
    let mut buf = vec![0u8; DATAGRAM_MAX];
    let serving = |state: &State, reply: bool| {
        state.gate.as_ref().is_none_or(|g| if reply { g.reply() } else { g.state() } == GateState::Serve)
    };
    loop {
        let (len, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(_) => continue,
            },
        };
        let record = &buf[..len];
        let prog = record.get(12..16).map(|w| u32::from_be_bytes(w.try_into().unwrap()));
        if !matches!(prog, Some(crate::portmap::PROGRAM | crate::nsm::PROGRAM)) || !serving(&state, false) {
            continue;
        }
        let local_port = state.service_port.or(local.map(|a| a.port())).unwrap_or(0);
        let conn = Conn { peer, local_port, local: local.map(|a| a.ip()), id: 0 };
        let (calling, record) = (state.clone(), record.to_vec());
        let outcome = tokio::task::spawn_blocking(move || dispatch::handle(&calling, conn, &record)).await;
        if let Ok(Outcome::Reply(reply)) = outcome {
            // The record mark is TCP's alone.
            if serving(&state, true) && reply.head.len() > 4 {
                let _ = socket.send_to(&reply.head[4..], peer).await;
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    connections: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) {
    let local = listener.local_addr().ok();
    loop {
        // Take a connection slot before accepting: past the limit, clients
        // wait in the listen queue rather than being accepted and starved.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = connections.clone().acquire_owned() => permit.expect("never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(?local, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if let Some(mark) = state.connection_mark {
            if let Err(error) = socket2::SockRef::from(&stream).set_mark(mark) {
                tracing::warn!(%peer, %error, "cannot mark the connection; closing it");
                continue;
            }
        }
        let local_port = state.service_port.or(local.map(|a| a.port())).unwrap_or(0);
        let here = stream.local_addr().ok();
        let conn = Conn { peer, local_port, local: here.map(|a| a.ip()), id: next_connection() };
        let state = state.clone();
        let shutdown = shutdown.clone();
        if let Some(here) = here {
            state.connections.add(here, peer);
        }
        tracker.spawn(async move {
            let connections = state.connections.clone();
            serve_connection(state, stream, conn, shutdown, drain_timeout).await;
            if let Some(here) = here {
                connections.remove(here, peer);
            }
            drop(permit);
        });
    }
}

/// A number for each connection, unique in this process (0 is none).
fn next_connection() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// While a connection is served, NFSv4.1 callbacks may go on it.
struct BackChannelOpen<'a>(&'a State, u64);

impl Drop for BackChannelOpen<'_> {
    fn drop(&mut self) {
        self.0.back.detach(self.1);
        self.0.sessions.unbind(self.1);
    }
}

async fn serve_connection(
    state: Arc<State>,
    mut stream: TcpStream,
    conn: Conn,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) {
    let (done_tx, mut done_rx) = mpsc::channel::<Outcome>(INFLIGHT_PER_CONNECTION_MAX);
    let (calls_tx, mut calls_rx) = mpsc::channel::<Vec<u8>>(crate::nfs4::callback::QUEUED_PER_CONNECTION);
    state.back.attach(conn.id, calls_tx);
    let _open = BackChannelOpen(&state, conn.id);
    let mut records = RecordReader::new(RECORD_MAX);
    let mut inflight = 0usize;
    let mut spin = Spin::default();
    let result: std::io::Result<()> = async {
        loop {
            // A callback waits no longer than the next call: a busy
            // connection may not reach the select below for a while.
            if let Ok(call) = calls_rx.try_recv() {
                call_client(&state, &mut stream, &call).await?;
            }
            let arrived = match spin.wait_for_call(&mut records, &stream, inflight).await? {
                Some(open) => open,
                None => tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return Ok(()),
                    Some(done) = done_rx.recv() => {
                        inflight -= 1;
                        if !answer(&state, &shutdown, &mut stream, done).await? {
                            return Ok(());
                        }
                        continue;
                    }
                    Some(call) = calls_rx.recv() => {
                        call_client(&state, &mut stream, &call).await?;
                        continue;
                    }
                    ready = stream.readable(), if inflight < INFLIGHT_PER_CONNECTION_MAX => {
                        ready?;
                        spin.woke();
                        records.fill_from(&stream)?
                    }
                },
            };
            if !arrived {
                return Ok(());
            }
            while let Some(record) = records.take().map_err(too_large(conn))? {
                if crate::nfs4::callback::is_reply(&record) {
                    state.back.reply(&record);
                    continue;
                }
                if !pass_gate(&state, &shutdown).await {
                    return Ok(());
                }
                if dispatch::is_heavy(&record) {
                    let global = state.inflight.clone().acquire_owned().await.expect("never closed");
                    let (state, done_tx, stop) = (state.clone(), done_tx.clone(), shutdown.clone());
                    inflight += 1;
                    tokio::task::spawn_blocking(move || {
                        // It may have waited for a thread: the gate again,
                        // before its effects (a frozen process that thaws
                        // must not write what another server now serves).
                        let outcome = if may_run(&state, &stop) {
                            dispatch::handle(&state, conn, &record)
                        } else {
                            Outcome::Withheld
                        };
                        drop(global);
                        let _ = done_tx.blocking_send(outcome);
                    });
                } else {
                    let outcome = dispatch::handle(&state, conn, &record);
                    if !answer(&state, &shutdown, &mut stream, outcome).await? {
                        return Ok(());
                    }
                    spin.replied();
                }
            }
        }
    }
    .await;
    if let Err(error) = result {
        tracing::debug!(peer = %conn.peer, %error, "connection ended");
        return;
    }
    // Stop reading; let the calls already read finish and answer.
    let deadline = tokio::time::Instant::now() + drain_timeout;
    while inflight > 0 {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some(done)) => {
                inflight -= 1;
                match answer(&state, &shutdown, &mut stream, done).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    // Withheld: the connection ends without a word.
                    Err(_) => return,
                }
            }
            _ => {
                tracing::warn!(peer = %conn.peer, inflight, "calls still running after the drain timeout");
                break;
            }
        }
    }
    let _ = stream.shutdown().await;
}

/// How long a connection polls its socket for the next call after it
/// answered one, before it sleeps until the kernel wakes it.
///
/// Why: on this kind of machine (a VM), a call between a client and a
/// server thread on the same CPU takes ~14 us, on two CPUs ~65 us; almost
/// all of the difference is waking a CPU that went idle between calls, in
/// each direction. A client waiting for each reply sends its next call
/// within tens of microseconds; a connection that keeps its thread running
/// for that long catches it without being woken. It polls only while
/// polling pays: after a poll that caught nothing it sleeps, until a call
/// again follows a reply quickly.
const SPIN_WINDOW: Duration = Duration::from_micros(80);

#[derive(Default)]
struct Spin {
    /// A reply went out and nothing came in since.
    after_reply: bool,
    /// When the last reply went out, if the connection then slept.
    slept_after: Option<std::time::Instant>,
    replied_at: Option<std::time::Instant>,
    /// Whether to poll after the next reply.
    worth_it: bool,
}

impl Spin {
    fn replied(&mut self) {
        self.after_reply = true;
        self.replied_at = Some(std::time::Instant::now());
    }

    /// Woken by the kernel with data: had the call come soon after the
    /// reply (the wake-up itself takes tens of microseconds), polling would
    /// have caught it, so poll next time.
    fn woke(&mut self) {
        if let Some(replied) = self.slept_after.take() {
            self.worth_it = replied.elapsed() < 2 * SPIN_WINDOW;
        }
    }

    /// Polls for the next call while that pays. `Ok(Some(open))`: bytes
    /// arrived (`open` false: the client closed); `Ok(None)`: sleep on it.
    async fn wait_for_call(
        &mut self,
        records: &mut RecordReader,
        stream: &TcpStream,
        inflight: usize,
    ) -> std::io::Result<Option<bool>> {
        let after_reply = std::mem::take(&mut self.after_reply);
        if !after_reply || inflight > 0 {
            return Ok(None);
        }
        if self.worth_it {
            let until = std::time::Instant::now() + SPIN_WINDOW;
            loop {
                if let Some(open) = records.fill_now(stream)? {
                    return Ok(Some(open));
                }
                if std::time::Instant::now() >= until {
                    break;
                }
                // Let other connections on this thread run meanwhile.
                tokio::task::yield_now().await;
            }
            self.worth_it = false;
        }
        self.slept_after = self.replied_at;
        Ok(None)
    }
}

/// Sends a callback (an NFSv4.1 back-channel call) if the gate lets
/// replies out: a server that may no longer own the vserver says nothing.
async fn call_client(state: &State, stream: &mut TcpStream, call: &[u8]) -> std::io::Result<()> {
    if state.gate.as_ref().is_none_or(|g| g.reply() == GateState::Serve) {
        stream.write_all(call).await?;
    }
    Ok(())
}

/// Waits while the gate says wait; false when the call must not be
/// answered (gate closed, or the server stopping).
async fn pass_gate(state: &State, shutdown: &CancellationToken) -> bool {
    let Some(gate) = &state.gate else { return true };
    loop {
        match gate.state() {
            GateState::Serve => return true,
            GateState::Closed => return false,
            GateState::Wait => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_millis(2)) => {}
        }
    }
}

/// Sends what a call produced if the gate still lets its reply out: time
/// passed since the call passed the gate (a process frozen in between may
/// no longer own the data). A reply withheld ends the connection with an
/// error, so nothing more is sent on it, not even a FIN.
async fn answer(
    state: &State,
    shutdown: &CancellationToken,
    stream: &mut TcpStream,
    outcome: Outcome,
) -> std::io::Result<bool> {
    if matches!(outcome, Outcome::Withheld) {
        return Err(withheld());
    }
    if let (Outcome::Reply(_), Some(gate)) = (&outcome, &state.gate) {
        loop {
            match gate.reply() {
                GateState::Serve => break,
                GateState::Closed => return Err(withheld()),
                GateState::Wait if shutdown.is_cancelled() => return Err(withheld()),
                GateState::Wait => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }
    send(stream, outcome).await
}

/// On the blocking pool, before a call that passed the gate runs: whether
/// it may still (as a reply may go out: `Gate::reply`), waiting while the
/// gate holds.
fn may_run(state: &State, shutdown: &CancellationToken) -> bool {
    let Some(gate) = &state.gate else { return true };
    loop {
        match gate.reply() {
            GateState::Serve => return true,
            GateState::Closed => return false,
            GateState::Wait if shutdown.is_cancelled() => return false,
            GateState::Wait => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn withheld() -> std::io::Error {
    std::io::Error::other("reply withheld: the server may no longer own this data")
}

fn too_large(conn: Conn) -> impl Fn(RecordError) -> std::io::Error {
    move |error| {
        tracing::warn!(peer = %conn.peer, %error, "closing the connection");
        std::io::Error::other(error)
    }
}

/// Sends what a call produced. `Ok(false)`: the connection must close.
async fn send(stream: &mut TcpStream, outcome: Outcome) -> std::io::Result<bool> {
    let reply = match outcome {
        Outcome::Reply(reply) => reply,
        Outcome::Nothing => return Ok(true),
        Outcome::Close => return Ok(false),
        Outcome::Withheld => return Err(withheld()),
    };
    let Some(body) = &reply.file else {
        stream.write_all(&reply.head).await?;
        return Ok(true);
    };
    // The header waits in the kernel for the data (MSG_MORE), so the client
    // gets one segment, not a small one and then the rest. With no data to
    // follow (a READ at the end of the file) nothing would push it out but
    // the kernel's 200 ms cork timer: then it goes at once.
    let flags = if body.len == 0 { rustix::net::SendFlags::empty() } else { rustix::net::SendFlags::MORE };
    let mut at = 0;
    while at < reply.head.len() {
        stream.writable().await?;
        let socket: &TcpStream = stream;
        let sent = socket.try_io(tokio::io::Interest::WRITABLE, || {
            rustix::net::send(socket, &reply.head[at..], flags).map_err(std::io::Error::from)
        });
        match sent {
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    let sent = send_file(stream, &body.file, body.offset, body.len).await?;
    // The file shrank since the reply was encoded: the length is promised,
    // so zeros fill the rest.
    let missing = body.len - sent;
    if missing > 0 {
        stream.write_all(&vec![0; missing]).await?;
    }
    stream.write_all(&[0; 3][..reply.padding()]).await?;
    Ok(true)
}

async fn send_file(
    stream: &TcpStream,
    file: &std::fs::File,
    mut offset: u64,
    len: usize,
) -> std::io::Result<usize> {
    let mut sent = 0;
    while sent < len {
        stream.writable().await?;
        let result = stream.try_io(tokio::io::Interest::WRITABLE, || {
            rustix::fs::sendfile(stream, file, Some(&mut offset), len - sent).map_err(std::io::Error::from)
        });
        match result {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// Changes a running server's exports.
#[derive(Clone)]
pub struct ServerControl(Arc<State>);

/// A [`ServerControl`] that does not keep the server (and its exports'
/// open files) alive: for those that outlive it, such as the metrics.
#[derive(Clone)]
pub struct WeakControl(std::sync::Weak<State>);

impl WeakControl {
    /// The server's control, while it exists.
    pub fn upgrade(&self) -> Option<ServerControl> {
        self.0.upgrade().map(ServerControl)
    }
}

impl ServerControl {
    pub fn downgrade(&self) -> WeakControl {
        WeakControl(Arc::downgrade(&self.0))
    }

    /// Where the file a handle names is, as its clients see it
    /// (`/data/dir/file`); `None` if it is gone or not served here.
    pub fn path_of(&self, fh: &[u8]) -> Option<String> {
        let decoded = crate::handle::FileHandle::decode(fh).ok()?;
        let export = self.0.export_by_id(decoded.export_id)?;
        let fh = export.verify(fh).ok()?;
        let obj = export.resolve(&fh).ok()?;
        let at = std::fs::read_link(obj.proc_path()).ok()?;
        let inside = at.strip_prefix(&export.path).ok()?;
        let name = export.name.trim_end_matches('/');
        Some(if inside.as_os_str().is_empty() {
            name.to_string()
        } else {
            format!("{name}/{}", inside.display())
        })
    }

    /// Takes a previous owner's lock table whole, and its grants into the
    /// kernel at once where that owner let go of them (the rest within a
    /// second, as it does).
    pub fn restore_locks(&self, table: crate::locks::LockTable) {
        self.0.locks.restore(table);
        let open = crate::nlm::opener(&self.0);
        self.0.locks.tick(&open);
    }

    /// Takes a previous owner's NFSv4 state (before any call is served);
    /// how many entries did not fit this server's bounds. After a
    /// hand-off, [`record_nfs4`](Self::record_nfs4) must succeed before
    /// any call is served.
    pub fn restore_nfs4(&self, record: &vnas_locks::nfs4::Record) -> usize {
        crate::nfs4::journal::restore(&self.0, record)
    }

    /// A grace period for this vserver alone, in which `reclaimers` (the
    /// client names the store lists) reclaim what they held (none: no
    /// grace); how many orphaned NFSv4 locks were let go for them.
    pub fn begin_grace(&self, reclaimers: &[Vec<u8>]) -> usize {
        crate::nfs4::grace::begin(&self.0, reclaimers)
    }

    /// Records the NFSv4 state now, if anything is unrecorded; false if
    /// that failed.
    pub fn record_nfs4(&self) -> bool {
        self.0.v4_journal.flush(&self.0)
    }

    pub fn serves_nfs4(&self) -> bool {
        self.0.nfs4
    }

    /// What NFSv4 state this server holds, and what it took to keep it.
    pub fn nfs4_stats(&self) -> crate::nfs4::journal::Nfs4Stats {
        crate::nfs4::journal::stats(&self.0)
    }

    /// The NFSv4 state whole, sessions and slots included: for a hand-off,
    /// once the server has stopped and drained (no call runs).
    pub fn nfs4_handoff(&self) -> vnas_locks::nfs4::Record {
        crate::nfs4::journal::snapshot(&self.0, true)
    }

    /// Releases everything lock client `caller` holds or waits for (an
    /// administrator's break of a dead client's locks); how many locks.
    pub fn break_locks(&self, caller: &str) -> Result<usize, crate::locks::NotRecorded> {
        let open = crate::nlm::opener(&self.0);
        self.0.locks.release_client(&open, caller)
    }

    /// Serves `configs` from now on: an export kept (same name, directory
    /// and id) keeps its open state and takes the new rules, which the
    /// next call sees; a new one is opened; one left out is no longer found
    /// (its handles are answered NFS3ERR_BADHANDLE). On an error nothing
    /// changes.
    pub fn set_exports(&self, configs: &[ExportConfig]) -> Result<(), ServerError> {
        let current = self.0.exports();
        let exports = open_exports(configs, &current)?;
        *self.0.exports.write().expect("not poisoned") = Arc::new(exports);
        Ok(())
    }

    /// Serves `listeners` too, from now on (an address joins the vserver);
    /// before `run`, from when it runs. An error once it stopped.
    pub fn listen_more(&self, listeners: Vec<std::net::TcpListener>) -> std::io::Result<()> {
        match &mut *self.0.listening.lock().expect("not poisoned") {
            ListenState::NotYet(early) => early.extend(listeners),
            ListenState::Running(listening) => {
                for listener in listeners {
                    listening.spawn(&self.0, listener)?;
                }
            }
            ListenState::Stopped => return Err(std::io::Error::other("the server stopped")),
        }
        Ok(())
    }

    /// Answers portmap and NSM datagrams on `sockets` too (before `run`,
    /// from when it runs).
    pub fn serve_datagrams(&self, sockets: Vec<std::net::UdpSocket>) -> std::io::Result<()> {
        match &mut *self.0.listening.lock().expect("not poisoned") {
            ListenState::NotYet(_) => self.0.early_datagrams.lock().expect("not poisoned").extend(sockets),
            ListenState::Running(listening) => {
                for socket in sockets {
                    listening.spawn_datagrams(&self.0, socket)?;
                }
            }
            ListenState::Stopped => return Err(std::io::Error::other("the server stopped")),
        }
        Ok(())
    }

    /// Stops serving on `ip` (the address leaves the vserver): its
    /// listeners close, and its connections end as at a stop (calls read
    /// are answered first). Connections on other addresses are untouched.
    pub fn close_address(&self, ip: IpAddr) {
        match &mut *self.0.listening.lock().expect("not poisoned") {
            ListenState::NotYet(early) => early.retain(|l| l.local_addr().map_or(true, |a| a.ip() != ip)),
            ListenState::Running(listening) => {
                if let Some(stop) = listening.addresses.remove(&ip) {
                    stop.cancel();
                }
            }
            ListenState::Stopped => {}
        }
    }
}
