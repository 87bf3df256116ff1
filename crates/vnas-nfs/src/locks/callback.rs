//! Calls back to clients' lock managers: GRANTED when a waiter's lock is
//! granted, and the `_RES` results of `_MSG` calls. Each goes from the
//! vserver's address the client asked on (a client accepts a grant only
//! from the server it asked), to the port the client's portmapper names.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::manager::Callback;
use crate::nlm;
use crate::rpc::xdr::XdrReader;
use crate::server::State;

/// How long one call back may take, connect to reply.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Calls back in progress at once; more wait their turn.
const CONCURRENT_MAX: usize = 16;
const PORTMAP: u16 = 111;

/// Makes the socket a call back leaves from: unconnected, non-blocking,
/// for `to`'s family, where `from` is reachable (a vserver's namespace).
pub type Connector = Arc<dyn Fn(SocketAddr) -> std::io::Result<std::net::TcpStream> + Send + Sync>;

/// Serves the callback queue until `shutdown`.
pub async fn run_callbacks(
    state: Arc<State>,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Callback>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_MAX));
    loop {
        let callback = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = queue.recv() => match next { Some(c) => c, None => return },
        };
        // Most releases have nobody waiting over NFSv4.1: no task for them.
        if matches!(&callback, Callback::Released(file) if !crate::nfs4::callback::anyone_waits(&state, file))
        {
            continue;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = deliver(&state, callback) => {}
            }
            drop(slot);
        });
    }
}

async fn deliver(state: &State, callback: Callback) {
    let locks = &state.locks;
    let counters = &locks.counters;
    if let Callback::Released(file) = &callback {
        return crate::nfs4::callback::released(state, file).await;
    }
    counters.callbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match callback {
        Callback::Granted(grant) => {
            let w = &grant.waiter;
            let args = nlm::granted_args(&grant);
            match call(state, w.server, w.client, nlm::PROC_GRANTED, &args, true).await {
                Ok(body) => {
                    if nlm::res_stat(&body) != Some(nlm::GRANTED) {
                        // It no longer waits (it gave up, or restarted).
                        tracing::info!(client = %w.owner.caller, "a granted waiter's client refused it; released");
                        let open = nlm::opener(state);
                        locks.refused(&open, &grant);
                    }
                }
                Err(error) => {
                    // The lock stays granted: the client asks again (Linux
                    // polls a blocked lock every 30 s) and gets it then.
                    counters.callbacks_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(client = %w.owner.caller, address = %w.client, %error, "cannot tell a client its lock is granted");
                }
            }
        }
        Callback::Result { client, server, proc_, body } => {
            if let Err(error) = call(state, server, client, proc_, &body, false).await {
                counters.callbacks_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(%client, %error, "cannot send an NLM result message");
            }
        }
        Callback::Released(_) => {}
    }
}

/// One NLM call to `client`'s lock manager; the reply's body if `wait`.
async fn call(
    state: &State,
    from: IpAddr,
    client: IpAddr,
    proc_: u32,
    args: &[u8],
    wait: bool,
) -> Result<Vec<u8>, String> {
    tokio::time::timeout(CALL_TIMEOUT, async {
        let port = getport(state, from, client).await?;
        if port == 0 {
            return Err("its portmapper has no lock manager (NLM v4 over TCP)".to_string());
        }
        let mut stream = connect(state, from, SocketAddr::new(client, port)).await?;
        let xid = rand_xid();
        stream
            .write_all(&call_record(xid, nlm::PROGRAM, nlm::VERSION, proc_, args))
            .await
            .map_err(|e| e.to_string())?;
        if !wait {
            return Ok(Vec::new());
        }
        read_reply(&mut stream, xid).await
    })
    .await
    .map_err(|_| "no answer in time".to_string())?
}

async fn getport(state: &State, from: IpAddr, client: IpAddr) -> Result<u16, String> {
    let mut stream = connect(state, from, SocketAddr::new(client, PORTMAP)).await?;
    let xid = rand_xid();
    let mut args = nlm::Xdr::default();
    args.u32(nlm::PROGRAM).u32(nlm::VERSION).u32(6).u32(0);
    stream.write_all(&call_record(xid, 100000, 2, 3, &args.0)).await.map_err(|e| e.to_string())?;
    let body = read_reply(&mut stream, xid).await?;
    let port = XdrReader::new(&body).u32().map_err(|_| "a short portmap reply".to_string())?;
    u16::try_from(port).map_err(|_| format!("portmap named port {port}"))
}

async fn connect(state: &State, from: IpAddr, to: SocketAddr) -> Result<TcpStream, String> {
    let socket = match &state.connector {
        Some(connector) => connector(to).map_err(|e| format!("cannot make a socket to {to}: {e}"))?,
        None => {
            let socket = socket2::Socket::new(socket2::Domain::for_address(to), socket2::Type::STREAM, None)
                .map_err(|e| e.to_string())?;
            socket.set_nonblocking(true).map_err(|e| e.to_string())?;
            socket.into()
        }
    };
    socket2::SockRef::from(&socket)
        .bind(&SocketAddr::new(from, 0).into())
        .map_err(|e| format!("cannot send from {from}: {e}"))?;
    let socket = tokio::net::TcpSocket::from_std_stream(socket);
    socket.connect(to).await.map_err(|e| format!("cannot connect to {to}: {e}"))
}

fn rand_xid() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_ne_bytes(bytes)
}

/// A call with AUTH_NULL, record-marked as one fragment.
fn call_record(xid: u32, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let mut x = nlm::Xdr::default();
    x.u32(0); // record mark, set below
    x.u32(xid).u32(0).u32(2).u32(prog).u32(vers).u32(proc_);
    x.u32(0).u32(0).u32(0).u32(0); // AUTH_NULL credential and verifier
    x.0.extend_from_slice(args);
    let len = (x.0.len() - 4) as u32;
    x.0[..4].copy_from_slice(&(0x8000_0000 | len).to_be_bytes());
    x.0
}

/// The results of an accepted, successful reply to `xid`.
async fn read_reply(stream: &mut TcpStream, xid: u32) -> Result<Vec<u8>, String> {
    let mut record = Vec::new();
    loop {
        let mark = stream.read_u32().await.map_err(|e| format!("no reply: {e}"))?;
        let len = (mark & 0x7fff_ffff) as usize;
        if record.len() + len > 64 * 1024 {
            return Err("a reply too large".into());
        }
        let start = record.len();
        record.resize(start + len, 0);
        stream.read_exact(&mut record[start..]).await.map_err(|e| format!("a short reply: {e}"))?;
        if mark & 0x8000_0000 != 0 {
            break;
        }
    }
    let mut x = XdrReader::new(&record);
    let mut next = || x.u32().map_err(|_| "a short reply".to_string());
    let (got_xid, kind, accepted) = (next()?, next()?, next()?);
    if got_xid != xid || kind != 1 || accepted != 0 {
        return Err(format!("not an accepted reply (xid {got_xid}, type {kind}, status {accepted})"));
    }
    let _flavor = x.u32().map_err(|_| "a short reply".to_string())?;
    x.opaque(400).map_err(|_| "a short reply".to_string())?;
    let stat = x.u32().map_err(|_| "a short reply".to_string())?;
    if stat != 0 {
        return Err(format!("the call failed (accept_stat {stat})"));
    }
    Ok(x.rest().to_vec())
}
