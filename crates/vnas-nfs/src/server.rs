//! The server: listeners, connections, and a graceful stop.
//!
//! Each connection has a reader that takes one record at a time (at most
//! `INFLIGHT_PER_CONNECTION_MAX` in flight, so a client that pipelines more
//! is pushed back by TCP), runs each call on the blocking pool, and a writer
//! that sends replies in the order they complete.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::dispatch::{self, Conn, Outcome};
use crate::drc::Drc;
use crate::fs::{Export, ExportError};
use crate::limits::{CONNECTIONS_MAX, INFLIGHT_MAX, INFLIGHT_PER_CONNECTION_MAX, RECORD_MAX};
use crate::rpc::{read_record, RecordError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("two exports are named {0}")]
    DuplicateExport(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What every call may use.
pub struct State {
    pub exports: Vec<Export>,
    pub write_verifier: [u8; 8],
    pub drc: Drc,
    pub mounts: Mutex<BTreeSet<(IpAddr, String)>>,
    inflight: Arc<Semaphore>,
}

impl State {
    pub fn export_by_id(&self, id: u32) -> Option<&Export> {
        self.exports.iter().find(|e| e.id == id)
    }
}

pub struct Server {
    state: Arc<State>,
    drain_timeout: Duration,
}

/// A listening socket for `addr` with SO_REUSEADDR and SO_REUSEPORT, so a
/// new server can listen on an address before the old one lets go of it.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    let listen = || -> std::io::Result<std::net::TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    listen().map_err(|source| ServerError::Listen { addr, source })
}

impl Server {
    /// Opens the exports. Nothing is served until [`run`](Self::run).
    pub fn new(config: ServerConfig) -> Result<Server, ServerError> {
        // Clients send the mode they want; the server's umask must not
        // change it.
        rustix::process::umask(rustix::fs::Mode::empty());
        let mut exports: Vec<Export> = Vec::new();
        for export in &config.exports {
            let export = Export::open(export)?;
            if exports
                .iter()
                .any(|e| e.name == export.name || e.id == export.id)
            {
                return Err(ServerError::DuplicateExport(export.name));
            }
            exports.push(export);
        }
        let state = State {
            exports,
            write_verifier: config.write_verifier,
            drc: Drc::default(),
            mounts: Mutex::new(BTreeSet::new()),
            inflight: Arc::new(Semaphore::new(INFLIGHT_MAX)),
        };
        Ok(Server {
            state: Arc::new(state),
            drain_timeout: config.drain_timeout,
        })
    }

    pub fn exports(&self) -> &[Export] {
        &self.state.exports
    }

    /// Serves on `listeners` until `shutdown` is cancelled, then stops
    /// accepting, lets calls in flight finish (up to the drain timeout),
    /// sends their replies and closes every connection.
    pub async fn run(
        self,
        listeners: Vec<std::net::TcpListener>,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let tracker = TaskTracker::new();
        let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        for listener in listeners {
            let listener = TcpListener::from_std(listener)?;
            tracker.spawn(accept_loop(
                listener,
                self.state.clone(),
                connections.clone(),
                tracker.clone(),
                shutdown.clone(),
                self.drain_timeout,
            ));
        }
        shutdown.cancelled().await;
        tracker.close();
        if tokio::time::timeout(self.drain_timeout + Duration::from_secs(1), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the drain timeout; closing them");
        }
        Ok(())
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
        let conn = Conn {
            peer,
            local_port: local.map_or(0, |a| a.port()),
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            serve_connection(state, stream, conn, shutdown, drain_timeout).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    state: Arc<State>,
    stream: TcpStream,
    conn: Conn,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let (replies, mut outbox) = mpsc::channel::<Vec<u8>>(INFLIGHT_PER_CONNECTION_MAX);
    let send = tokio::spawn(async move {
        while let Some(reply) = outbox.recv().await {
            if writer.write_all(&reply).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let slots = Arc::new(Semaphore::new(INFLIGHT_PER_CONNECTION_MAX));
    // Stops this connection: the server's shutdown, or a call that shows
    // the stream is not RPC.
    let stop = shutdown.child_token();
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
        };
        let record = tokio::select! {
            _ = stop.cancelled() => break,
            record = read_record(&mut reader, RECORD_MAX) => record,
        };
        let record = match record {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(RecordError::TooLarge(size)) => {
                tracing::warn!(peer = %conn.peer, size, "record over the limit; closing the connection");
                break;
            }
            Err(RecordError::Io(_)) => break,
        };
        let global = state
            .inflight
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let state = state.clone();
        let replies = replies.clone();
        let close = stop.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = dispatch::handle(&state, conn, &record);
            drop(global);
            match outcome {
                Outcome::Reply(reply) => {
                    let _ = replies.blocking_send(reply);
                }
                Outcome::Nothing => {}
                Outcome::Close => close.cancel(),
            }
            drop(slot);
        });
    }
    // Stop reading; let the calls already read finish and answer.
    let drained = tokio::time::timeout(
        drain_timeout,
        slots.acquire_many(INFLIGHT_PER_CONNECTION_MAX as u32),
    )
    .await;
    if drained.is_err() {
        tracing::warn!(peer = %conn.peer, "calls still running after the drain timeout");
    }
    drop(replies);
    let _ = send.await;
}
