//! From one received record to the bytes sent back: parse the call, pick
//! the program and procedure, consult the duplicate-request cache, run.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::creds::{self, Creds};
use crate::drc::{self, Seen};
use crate::limits::READ_INLINE_MAX;
use crate::locks::Callback;
use crate::nfs3::{self, Garbage, Req};
use crate::rpc::{parse_call, Call, CallError, Outgoing, Reply};
use crate::server::State;
use crate::{mount, nfs4, nlm, nsm, portmap};

/// Where a call came from and arrived at.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    pub peer: SocketAddr,
    pub local_port: u16,
    /// The server's address the client reached.
    pub local: Option<std::net::IpAddr>,
    /// This server's number for the connection (0: a datagram), which an
    /// NFSv4.1 session's back channel names.
    pub id: u64,
}

pub enum Outcome {
    Reply(Outgoing),
    /// Nothing to send (a reply message, or a retransmission whose first
    /// copy is still running).
    Nothing,
    /// Not RPC: the connection cannot be trusted to be in sync.
    Close,
    /// Not run: by the time its turn came, the gate no longer let it (the
    /// server may have lost the data to another). Nothing is sent; the
    /// connection ends without a word.
    Withheld,
}

/// Calls that move much file data or wait for the disk (READ of more than
/// `READ_INLINE_MAX`, WRITE, COMMIT): the server runs them on the blocking
/// pool. Everything else, small READs included, takes microseconds and runs
/// on the connection's own task: a hand-off to another thread and back
/// would cost more than the call.
pub fn is_heavy(record: &[u8]) -> bool {
    let word = |at: usize| record.get(at..at + 4).map(|w| u32::from_be_bytes(w.try_into().unwrap()));
    // Lock calls record the lock table before they are answered.
    if matches!(word(12), Some(nlm::PROGRAM | nsm::PROGRAM)) {
        return true;
    }
    if word(12) != Some(nfs3::PROGRAM) {
        return false;
    }
    // A v4 COMPOUND may read, write or wait for the disk.
    if word(16) == Some(4) {
        return true;
    }
    match word(20) {
        Some(6) => read_count(record).is_none_or(|count| count > READ_INLINE_MAX),
        Some(7 | 21) => true,
        _ => false,
    }
}

/// The count of a READ call, read straight from the record (past the
/// credential, the verifier and the file handle); `None` if malformed.
fn read_count(record: &[u8]) -> Option<u32> {
    let word = |at: usize| record.get(at..at + 4).map(|w| u32::from_be_bytes(w.try_into().unwrap()));
    let padded = |len: u32| (len as usize).checked_add(3).map(|l| l & !3);
    let verifier = 32 + padded(word(28)?)?;
    let args = verifier + 8 + padded(word(verifier + 4)?)?;
    let offset = args + 4 + padded(word(args)?)?;
    word(offset + 8)
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
        nfs3::PROGRAM => {
            let started = std::time::Instant::now();
            let outcome = handle_nfs(state, conn, &call, args);
            if let Outcome::Reply(reply) = &outcome {
                // Accepted and SUCCESS, then (past NULL) the procedure's status:
                // 0 is NFS3_OK.
                let word =
                    |at: usize| reply.head.get(at..at + 4).map(|w| u32::from_be_bytes(w.try_into().unwrap()));
                let failed = word(24) != Some(0) || (call.proc_ != 0 && word(28) != Some(0));
                let sent = reply.head.len() + reply.file.as_ref().map_or(0, |f| f.len + reply.padding());
                state.stats.call(call.proc_ as usize, started.elapsed(), failed);
                state.stats.bytes(record.len(), sent);
            }
            outcome
        }
        nfs3_types::mount::PROGRAM => {
            simple(&call, 3, |out| mount::run(state, conn.peer, call.proc_, args, out))
        }
        nlm::PROGRAM => handle_nlm(state, conn, &call, args),
        nsm::PROGRAM => simple(&call, nsm::VERSION, |out| nsm::run(state, conn, call.proc_, args, out)),
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

/// NFSv4: NULL and COMPOUND.
fn handle_nfs4(state: &State, conn: Conn, call: &Call, args: &[u8]) -> Outcome {
    let mut out = Reply::success(call.xid, 512);
    creds::assume(&Creds::ROOT);
    let ran = catch_unwind(AssertUnwindSafe(|| match call.proc_ {
        0 => Some(Ok(())),
        1 => Some(nfs4::compound(state, conn, &call.auth, args, &mut out)),
        _ => None,
    }));
    creds::assume(&Creds::ROOT);
    // What the reply tells must be on record first (a next owner serves
    // it); if it cannot be, no reply, and the connection ends, so the
    // client sends the call again at once.
    if !state.v4_journal.flush(state) {
        return Outcome::Withheld;
    }
    let reply = match ran {
        Ok(Some(Ok(()))) => out,
        Ok(Some(Err(Garbage))) => Reply::garbage_args(call.xid),
        Ok(None) => Reply::proc_unavail(call.xid),
        Err(_) => {
            tracing::error!(xid = call.xid, "NFSv4 COMPOUND panicked; answered SYSTEM_ERR");
            Reply::system_err(call.xid)
        }
    };
    Outcome::Reply(reply.finish())
}

fn handle_nlm(state: &State, conn: Conn, call: &Call, args: &[u8]) -> Outcome {
    if call.vers != nlm::VERSION {
        return Outcome::Reply(Reply::prog_mismatch(call.xid, nlm::VERSION, nlm::VERSION).finish());
    }
    let mut out = Reply::success(call.xid, 256);
    let ran =
        catch_unwind(AssertUnwindSafe(|| nlm::run(state, conn, &call.auth, call.proc_, args, &mut out)));
    let reply = match ran {
        Ok(None) => Reply::proc_unavail(call.xid),
        Ok(Some(Err(Garbage))) => Reply::garbage_args(call.xid),
        Ok(Some(Ok(nlm::Answer::Reply))) => out,
        Ok(Some(Ok(nlm::Answer::Message { proc_, body }))) => {
            let server = conn.local.unwrap_or(conn.peer.ip());
            state.locks.call_back(Callback::Result { client: conn.peer.ip(), server, proc_, body });
            Reply::success(call.xid, 0)
        }
        Ok(Some(Ok(nlm::Answer::Withhold))) => return Outcome::Nothing,
        Err(_) => {
            tracing::error!(xid = call.xid, proc = call.proc_, "NLM procedure panicked; answered SYSTEM_ERR");
            Reply::system_err(call.xid)
        }
    };
    Outcome::Reply(reply.finish())
}

fn handle_nfs(state: &State, conn: Conn, call: &Call, args: &[u8]) -> Outcome {
    if call.vers == nfs4::VERSION && state.nfs4 {
        return handle_nfs4(state, conn, call, args);
    }
    if call.vers != nfs3::VERSION {
        let high = if state.nfs4 { nfs4::VERSION } else { nfs3::VERSION };
        return Outcome::Reply(Reply::prog_mismatch(call.xid, nfs3::VERSION, high).finish());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A READ call as a client sends it: AUTH_SYS credential, a handle of
    /// `fh_len` bytes, `count` bytes asked for.
    fn read_call(fh_len: usize, count: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |word: u32| out.extend_from_slice(&word.to_be_bytes());
        // xid, CALL, RPC 2, NFS 3, READ; AUTH_SYS of 24 bytes: stamp,
        // machine name "host", uid, gid, no groups; verifier AUTH_NONE.
        for word in [1, 0, 2, nfs3::PROGRAM, 3, 6, 1, 24, 0, 4, u32::from_be_bytes(*b"host"), 0, 0, 0, 0, 0] {
            put(word);
        }
        put(fh_len as u32);
        let mut out = [out, vec![9u8; fh_len.div_ceil(4) * 4]].concat();
        out.extend_from_slice(&0u64.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out
    }

    #[test]
    fn small_reads_run_inline() {
        assert_eq!(read_count(&read_call(32, 16)), Some(16));
        assert_eq!(read_count(&read_call(30, 4096)), Some(4096));
        assert!(!is_heavy(&read_call(32, 16)));
        assert!(!is_heavy(&read_call(36, READ_INLINE_MAX)));
        assert!(is_heavy(&read_call(32, READ_INLINE_MAX + 1)));
        assert!(is_heavy(&read_call(32, 1 << 20)));
        // Cut short anywhere: not understood, so the careful way.
        let call = read_call(32, 16);
        for len in 0..call.len() {
            let cut = &call[..len];
            assert!(len < 24 || is_heavy(cut), "cut at {len}");
        }
    }
}
