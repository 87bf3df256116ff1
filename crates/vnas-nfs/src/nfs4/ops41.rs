//! The operations NFSv4.1 added for client IDs and sessions: SEQUENCE,
//! EXCHANGE_ID, CREATE_SESSION, DESTROY_SESSION, DESTROY_CLIENTID,
//! BIND_CONN_TO_SESSION, RECLAIM_COMPLETE, SECINFO_NO_NAME, TEST_STATEID,
//! FREE_STATEID.

use std::time::Instant;

use super::session::{Channel, Sequenced, SessionId};
use super::*;
use vnas_locks::nfs4 as record;

type Done = (u32, Vec<u8>);

fn word(x: &mut XdrReader<'_>) -> Result<u32, Garbage> {
    x.u32().map_err(|_| Garbage)
}

fn fixed<const N: usize>(x: &mut XdrReader<'_>) -> Result<[u8; N], Garbage> {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(4) {
        chunk.copy_from_slice(&word(x)?.to_be_bytes()[..chunk.len()]);
    }
    Ok(out)
}

fn ok(body: Xdr) -> Result<Done, Garbage> {
    Ok((NFS4_OK, body.0))
}

fn fail(status: u32) -> Result<Done, Garbage> {
    Ok((status, Vec::new()))
}

/// What SEQUENCE let happen.
pub enum Seq {
    /// Run the rest; keep the reply in this slot. The SEQUENCE result body.
    Go((SessionId, u32), Vec<u8>),
    /// A retry: this whole COMPOUND reply again.
    Replay(Vec<u8>),
    Refused(u32),
}

pub fn sequence(c: &mut Compound<'_>, x: &mut XdrReader<'_>, ops: u32) -> Result<Seq, Garbage> {
    let id: SessionId = fixed(x)?;
    let seqid = word(x)?;
    let slot = word(x)?;
    let _highest = word(x)?;
    let cachethis = word(x)? != 0;
    let (decided, clientid) = c.state.sessions.sequence(&id, seqid, slot, ops, c.conn.id, Instant::now());
    Ok(match decided {
        Sequenced::Replay(reply) => Seq::Replay(reply),
        Sequenced::Refused(status) => Seq::Refused(status),
        Sequenced::New { highest_slot } => {
            c.clientid = Some(clientid);
            c.cachethis = cachethis;
            let mut body = Xdr::default();
            body.0.extend_from_slice(&id);
            body.u32(seqid).u32(slot).u32(highest_slot).u32(highest_slot).u32(0);
            Seq::Go((id, slot), body.0)
        }
    })
}

fn channel(x: &mut XdrReader<'_>) -> Result<Channel, Garbage> {
    let _pad = word(x)?;
    let max_request = word(x)?;
    let max_response = word(x)?;
    let max_response_cached = word(x)?;
    let max_operations = word(x)?;
    let max_requests = word(x)?;
    let rdma = word(x)?;
    if rdma > 1 {
        return Err(Garbage);
    }
    for _ in 0..rdma {
        word(x)?;
    }
    Ok(Channel { max_request, max_response, max_response_cached, max_operations, max_requests })
}

fn put_channel(body: &mut Xdr, ch: &Channel) {
    body.u32(0).u32(ch.max_request).u32(ch.max_response).u32(ch.max_response_cached);
    body.u32(ch.max_operations).u32(ch.max_requests).u32(0);
}

/// callback_sec_parms4<>: the flavour callbacks use, AUTH_NONE if the
/// client offers it, else AUTH_SYS (RPCSEC_GSS is not spoken); `None` if
/// neither is offered.
fn sec_parms(x: &mut XdrReader<'_>) -> Result<Option<u32>, Garbage> {
    let n = word(x)?;
    if n > 16 {
        return Err(Garbage);
    }
    let mut offered = Vec::new();
    for _ in 0..n {
        let flavor = word(x)?;
        offered.push(flavor);
        match flavor {
            0 => {}
            1 => {
                word(x)?;
                x.opaque(255).map_err(|_| Garbage)?;
                word(x)?;
                word(x)?;
                let gids = word(x)?;
                if gids > 16 {
                    return Err(Garbage);
                }
                for _ in 0..gids {
                    word(x)?;
                }
            }
            6 => {
                word(x)?;
                x.opaque(1024).map_err(|_| Garbage)?;
                x.opaque(1024).map_err(|_| Garbage)?;
            }
            _ => return Err(Garbage),
        }
    }
    Ok([0, 1].into_iter().find(|f| offered.contains(f)))
}

/// CREATE_SESSION4_FLAG_CONN_BACK_CHAN: this connection carries callbacks.
const CONN_BACK_CHAN: u32 = 0x2;

pub fn exchange_id(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let verifier = fixed::<8>(x)?;
    let owner = x.opaque(1024).map_err(|_| Garbage)?.to_vec();
    let _flags = word(x)?;
    // state_protect4_a: SP4_NONE only.
    let protect = word(x)?;
    if protect != 0 {
        return fail(NFS4ERR_NOTSUPP);
    }
    // client_impl4<1>: domain, name, date; not needed.
    let impls = word(x)?;
    if impls > 1 {
        return Err(Garbage);
    }
    for _ in 0..impls {
        x.opaque(1024).map_err(|_| Garbage)?;
        x.opaque(1024).map_err(|_| Garbage)?;
        x.u64().map_err(|_| Garbage)?;
        word(x)?;
    }
    let (clientid, seq, confirmed) = match c.state.sessions.exchange_id(&owner, verifier, Instant::now()) {
        Ok(found) => found,
        Err(status) => return fail(status),
    };
    // EXCHGID4_FLAG_USE_NON_PNFS, and CONFIRMED_R for a known client.
    let flags = 0x0001_0000 | if confirmed { 0x8000_0000 } else { 0 };
    let mut body = Xdr::default();
    body.u64(clientid).u32(seq).u32(flags).u32(0);
    // server_owner4 and server_scope: the same on whichever node serves,
    // so a client sees one server wherever its state is.
    let scope = c.state.server_scope();
    body.u64(0).opaque(scope.as_bytes()).opaque(scope.as_bytes());
    // server_impl_id<1>
    body.u32(1).opaque(b"vnas").opaque(b"vnas NFSv4.1").u64(0).u32(0);
    ok(body)
}

pub fn create_session(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let clientid = x.u64().map_err(|_| Garbage)?;
    let seq = word(x)?;
    let flags = word(x)?;
    let fore = channel(x)?;
    let back = channel(x)?;
    let program = word(x)?;
    let flavor = sec_parms(x)?;
    // A back channel on this connection if the client asks for one, has
    // a slot for it and takes a flavour spoken here (callbacks tell it of
    // locks that become free).
    let callback = match flavor {
        Some(flavor) if flags & CONN_BACK_CHAN != 0 && back.max_requests > 0 => {
            Some((record::Callback { program, flavor, minor: c.minor, seq: 0 }, c.conn.id))
        }
        _ => None,
    };
    let granted = if callback.is_some() { CONN_BACK_CHAN } else { 0 };
    let made =
        c.state.sessions.create_session(clientid, seq, fore, callback, Instant::now(), |id, settled| {
            let mut body = Xdr::default();
            body.0.extend_from_slice(id);
            // No persistent reply cache is promised (a failover makes sessions
            // anew); the back channel as settled above.
            body.u32(seq).u32(granted);
            put_channel(&mut body, settled);
            put_channel(&mut body, &back);
            body.0
        });
    match made {
        Ok(body) => Ok((NFS4_OK, body)),
        Err(status) => fail(status),
    }
}

pub fn destroy_session(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let id: SessionId = fixed(x)?;
    fail(if c.state.sessions.destroy_session(&id) { NFS4_OK } else { NFS4ERR_BADSESSION })
}

pub fn destroy_clientid(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let clientid = x.u64().map_err(|_| Garbage)?;
    match c.state.sessions.destroy_client(clientid) {
        Ok(()) => {
            super::lock::release(c.state, clientid);
            fail(NFS4_OK)
        }
        Err(status) => fail(status),
    }
}

pub fn bind_conn_to_session(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let id: SessionId = fixed(x)?;
    let dir = word(x)?;
    let _rdma = word(x)?;
    if !c.state.sessions.has_session(&id) {
        return fail(NFS4ERR_BADSESSION);
    }
    // CDFC4_FORE 1, BACK 2, FORE_OR_BOTH 3, BACK_OR_BOTH 7. Every
    // connection carries the fore channel; the back channel too where
    // asked, if the session has one.
    let answer = match dir {
        1 => 1,
        2 if c.state.sessions.bind_back(&id, c.conn.id) => 2,
        3 | 7 if c.state.sessions.bind_back(&id, c.conn.id) => 3,
        3 => 1,
        _ => return fail(NFS4ERR_INVAL),
    };
    let mut body = Xdr::default();
    body.0.extend_from_slice(&id);
    body.u32(answer).u32(0);
    ok(body)
}

pub fn reclaim_complete(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let _one_fs = word(x)?;
    c.state.v4_reclaim_completes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(clientid) = c.clientid {
        super::grace::complete(c.state, clientid);
    }
    // The client reclaimed all it had: one fewer a grace period waits for.
    fail(NFS4_OK)
}

pub fn test_stateid(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let n = word(x)?;
    if n > 1024 {
        return Err(Garbage);
    }
    let mut body = Xdr::default();
    body.u32(n);
    for _ in 0..n {
        let _seqid = word(x)?;
        let other = fixed::<12>(x)?;
        body.u32(if c.state.v4.known_state(&other) { NFS4_OK } else { NFS4ERR_BAD_STATEID });
    }
    ok(body)
}

pub fn free_stateid(c: &mut Compound<'_>, x: &mut XdrReader<'_>) -> Result<Done, Garbage> {
    let _seqid = word(x)?;
    let other = fixed::<12>(x)?;
    // An open state is freed by CLOSE, not here (NFS4ERR_LOCKS_HELD is
    // for lock states; an open is "in use").
    fail(if c.state.v4.known_state(&other) { NFS4ERR_LOCKS_HELD } else { NFS4ERR_BAD_STATEID })
}
