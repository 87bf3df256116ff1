//! From one received record to the bytes sent back: parse the call, pick
//! the program and procedure, consult the duplicate-request cache, run.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::creds::{self, Creds};
use crate::drc::{self, Seen};
use crate::nfs3::{self, Garbage, Req};
use crate::rpc::{parse_call, Call, CallError, Outgoing, Reply};
use crate::server::State;
use crate::{mount, portmap};

/// Where a call came from and arrived at.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    pub peer: SocketAddr,
    pub local_port: u16,
}

pub enum Outcome {
    Reply(Outgoing),
    /// Nothing to send (a reply message, or a retransmission whose first
    /// copy is still running).
    Nothing,
    /// Not RPC: the connection cannot be trusted to be in sync.
    Close,
}

/// Calls that move file data or wait for the disk (READ, WRITE, COMMIT):
/// the server runs them on the blocking pool. Everything else takes
/// microseconds and runs on the connection's own task.
pub fn is_heavy(record: &[u8]) -> bool {
    let word = |at: usize| record.get(at..at + 4).map(|w| u32::from_be_bytes(w.try_into().unwrap()));
    word(12) == Some(nfs3::PROGRAM) && matches!(word(20), Some(6 | 7 | 21))
}

pub fn handle(state: &State, conn: Conn, record: &[u8]) -> Outcome {
    let call = match parse_call(record) {
        Ok(call) => call,
        Err(CallError::Unreadable) => return Outcome::Close,
        Err(CallError::NotCall) => return Outcome::Nothing,
        Err(CallError::RpcMismatch { xid }) => return Outcome::Reply(Reply::rpc_mismatch(xid).finish()),
        Err(CallError::Auth { xid, stat }) => return Outcome::Reply(Reply::auth_error(xid, stat).finish()),
        Err(CallError::Garbage { xid }) => return Outcome::Reply(Reply::garbage_args(xid).finish()),
    };
    let args = &record[call.args_at..];
    match call.prog {
        nfs3::PROGRAM => handle_nfs(state, conn, &call, args),
        nfs3_types::mount::PROGRAM => {
            simple(&call, 3, |out| mount::run(state, conn.peer, call.proc_, args, out))
        }
        portmap::PROGRAM => {
            simple(&call, portmap::VERSION, |out| portmap::run(conn.local_port, call.proc_, args, out))
        }
        _ => Outcome::Reply(Reply::prog_unavail(call.xid).finish()),
    }
}

/// A program with one version and no duplicate-request caching.
fn simple(call: &Call, version: u32, run: impl FnOnce(&mut Reply) -> Option<Result<(), Garbage>>) -> Outcome {
    if call.vers != version {
        return Outcome::Reply(Reply::prog_mismatch(call.xid, version, version).finish());
    }
    let mut out = Reply::success(call.xid, 256);
    let reply = match run(&mut out) {
        None => Reply::proc_unavail(call.xid),
        Some(Err(Garbage)) => Reply::garbage_args(call.xid),
        Some(Ok(())) => out,
    };
    Outcome::Reply(reply.finish())
}

fn handle_nfs(state: &State, conn: Conn, call: &Call, args: &[u8]) -> Outcome {
    if call.vers != nfs3::VERSION {
        return Outcome::Reply(Reply::prog_mismatch(call.xid, nfs3::VERSION, nfs3::VERSION).finish());
    }
    let Some(proc_) = nfs3::PROCS.get(call.proc_ as usize) else {
        return Outcome::Reply(Reply::proc_unavail(call.xid).finish());
    };
    let key = proc_.replay.then(|| drc::Key::new(conn.peer.ip(), call.xid, call.proc_, args));
    if let Some(key) = key {
        match state.drc.begin(key) {
            Seen::New => {}
            Seen::InProgress => return Outcome::Nothing,
            Seen::Done(reply) => {
                tracing::debug!(
                    xid = call.xid,
                    proc = proc_.name,
                    "replayed from the duplicate-request cache"
                );
                return Outcome::Reply(Outgoing { head: reply.to_vec(), file: None });
            }
        }
    }
    let req = Req { state, client: conn.peer.ip(), port: conn.peer.port(), auth: &call.auth, proc_ };
    // Calls that do not act as the client run with the server's rights.
    creds::assume(&Creds::ROOT);
    let mut out = Reply::success(call.xid, 512);
    let ran = catch_unwind(AssertUnwindSafe(|| (proc_.run)(&req, args, &mut out)));
    // Calls may run on threads that do other work next: give them back
    // with the server's identity.
    creds::assume(&Creds::ROOT);
    let reply = match ran {
        Ok(Ok(())) => out.finish(),
        Ok(Err(Garbage)) => Reply::garbage_args(call.xid).finish(),
        Err(_) => {
            tracing::error!(xid = call.xid, proc = proc_.name, "procedure panicked; answered SYSTEM_ERR");
            Reply::system_err(call.xid).finish()
        }
    };
    if let Some(key) = key {
        state.drc.finish(key, &reply.head);
    }
    Outcome::Reply(reply)
}
