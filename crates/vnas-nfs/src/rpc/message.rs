//! RPC call headers in, reply headers out.

use std::fs::File;
use std::sync::Arc;

use nfs3_types::rpc::{
    accept_stat_data, accepted_reply, auth_stat, msg_body, opaque_auth, rejected_reply, reply_body, rpc_msg,
};
use nfs3_types::xdr_codec::Pack;

use super::record::mark_record;
use super::xdr::XdrReader;
use crate::limits::{AUTH_BODY_MAX, AUTH_GIDS_MAX};

const CALL: u32 = 0;
const RPC_VERSION: u32 = 2;
const AUTH_NONE: u32 = 0;
const AUTH_SYS: u32 = 1;
const MACHINE_NAME_MAX: usize = 255;

/// The credential a call carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    Sys { uid: u32, gid: u32, gids: Vec<u32> },
}

/// A parsed call header; the procedure's arguments start at `args_at`.
#[derive(Debug)]
pub struct Call {
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    pub auth: Auth,
    pub args_at: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CallError {
    /// Too short to hold even a transaction id: not RPC at all.
    Unreadable,
    /// A reply, or an unknown message type: nothing to answer.
    NotCall,
    /// An RPC version other than 2.
    RpcMismatch { xid: u32 },
    /// A credential we cannot accept.
    Auth { xid: u32, stat: auth_stat },
    /// The header itself is cut short.
    Garbage { xid: u32 },
}

pub fn parse_call(record: &[u8]) -> Result<Call, CallError> {
    let mut xdr = XdrReader::new(record);
    let xid = xdr.u32().map_err(|_| CallError::Unreadable)?;
    let garbage = |_| CallError::Garbage { xid };
    if xdr.u32().map_err(garbage)? != CALL {
        return Err(CallError::NotCall);
    }
    if xdr.u32().map_err(garbage)? != RPC_VERSION {
        return Err(CallError::RpcMismatch { xid });
    }
    let prog = xdr.u32().map_err(garbage)?;
    let vers = xdr.u32().map_err(garbage)?;
    let proc_ = xdr.u32().map_err(garbage)?;
    let flavor = xdr.u32().map_err(garbage)?;
    let body =
        xdr.opaque(AUTH_BODY_MAX).map_err(|_| CallError::Auth { xid, stat: auth_stat::AUTH_BADCRED })?;
    let auth = parse_cred(flavor, body).map_err(|stat| CallError::Auth { xid, stat })?;
    // The verifier: AUTH_NONE or AUTH_SYS calls carry an AUTH_NONE verifier,
    // which we skip whatever it holds.
    xdr.u32().map_err(garbage)?;
    xdr.opaque(AUTH_BODY_MAX).map_err(|_| CallError::Auth { xid, stat: auth_stat::AUTH_BADVERF })?;
    Ok(Call { xid, prog, vers, proc_, auth, args_at: xdr.position() })
}

fn parse_cred(flavor: u32, body: &[u8]) -> Result<Auth, auth_stat> {
    match flavor {
        AUTH_NONE => Ok(Auth::None),
        AUTH_SYS => {
            let bad = |_| auth_stat::AUTH_BADCRED;
            let mut xdr = XdrReader::new(body);
            let _stamp = xdr.u32().map_err(bad)?;
            xdr.opaque(MACHINE_NAME_MAX).map_err(bad)?;
            let uid = xdr.u32().map_err(bad)?;
            let gid = xdr.u32().map_err(bad)?;
            let n_gids = xdr.u32().map_err(bad)? as usize;
            if n_gids > AUTH_GIDS_MAX {
                return Err(auth_stat::AUTH_BADCRED);
            }
            let gids = (0..n_gids).map(|_| xdr.u32()).collect::<Result<_, _>>().map_err(bad)?;
            Ok(Auth::Sys { uid, gid, gids })
        }
        _ => Err(auth_stat::AUTH_TOOWEAK),
    }
}

/// File data that follows a reply's encoded part on the wire (READ), sent
/// from the page cache without passing through a buffer.
pub struct FileBody {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: usize,
}

/// A reply ready to send: the encoded bytes (record mark first), then the
/// file data and its XDR padding, if any.
pub struct Outgoing {
    pub head: Vec<u8>,
    pub file: Option<FileBody>,
}

impl Outgoing {
    pub fn padding(&self) -> usize {
        self.file.as_ref().map_or(0, |body| (4 - body.len % 4) % 4)
    }
}

/// A reply under construction: record mark, RPC header, then results.
pub struct Reply {
    buf: Vec<u8>,
    file: Option<FileBody>,
}

impl Reply {
    fn with_body(xid: u32, body: reply_body<'_>, capacity: usize) -> Reply {
        let msg = rpc_msg { xid, body: msg_body::REPLY(body) };
        let mut buf = Vec::with_capacity(capacity + 32);
        buf.extend_from_slice(&[0; 4]);
        msg.pack(&mut buf).expect("packing into a Vec cannot fail");
        Reply { buf, file: None }
    }

    fn accepted(xid: u32, reply_data: accept_stat_data) -> Reply {
        let body = reply_body::MSG_ACCEPTED(accepted_reply { verf: opaque_auth::default(), reply_data });
        Reply::with_body(xid, body, 0)
    }

    /// A successful reply; the caller packs the results after it.
    pub fn success(xid: u32, capacity: usize) -> Reply {
        let body = reply_body::MSG_ACCEPTED(accepted_reply {
            verf: opaque_auth::default(),
            reply_data: accept_stat_data::SUCCESS,
        });
        Reply::with_body(xid, body, capacity)
    }

    pub fn prog_unavail(xid: u32) -> Reply {
        Reply::accepted(xid, accept_stat_data::PROG_UNAVAIL)
    }

    pub fn prog_mismatch(xid: u32, low: u32, high: u32) -> Reply {
        Reply::accepted(xid, accept_stat_data::PROG_MISMATCH { low, high })
    }

    pub fn proc_unavail(xid: u32) -> Reply {
        Reply::accepted(xid, accept_stat_data::PROC_UNAVAIL)
    }

    pub fn garbage_args(xid: u32) -> Reply {
        Reply::accepted(xid, accept_stat_data::GARBAGE_ARGS)
    }

    pub fn system_err(xid: u32) -> Reply {
        Reply::accepted(xid, accept_stat_data::SYSTEM_ERR)
    }

    pub fn rpc_mismatch(xid: u32) -> Reply {
        let body = reply_body::MSG_DENIED(rejected_reply::rpc_mismatch(RPC_VERSION, RPC_VERSION));
        Reply::with_body(xid, body, 0)
    }

    pub fn auth_error(xid: u32, stat: auth_stat) -> Reply {
        Reply::with_body(xid, reply_body::MSG_DENIED(rejected_reply::auth_error(stat)), 0)
    }

    pub fn pack(&mut self, value: &impl Pack) {
        value.pack(&mut self.buf).expect("packing into a Vec cannot fail");
    }

    /// The buffer, for results written by hand (READ data).
    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Ends the reply with `body.len` bytes of file data (and padding).
    pub fn attach_file(&mut self, body: FileBody) {
        self.file = Some(body);
    }

    /// The reply as sent on the wire, record mark included.
    pub fn finish(mut self) -> Outgoing {
        let file_len = self.file.as_ref().map_or(0, |body| body.len.div_ceil(4) * 4);
        let len = self.buf.len() - 4 + file_len;
        mark_record(&mut self.buf, len);
        Outgoing { head: self.buf, file: self.file }
    }

    /// For replies that never carry file data.
    pub fn finish_bytes(self) -> Vec<u8> {
        assert!(self.file.is_none(), "a reply with file data is sent as Outgoing");
        self.finish().head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(flavor: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for word in [7u32, CALL, RPC_VERSION, 100003, 3, 1, flavor, body.len() as u32] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.extend_from_slice(body);
        out.extend_from_slice(&[0; 8]);
        out
    }

    fn auth_sys(n_gids: u32) -> Vec<u8> {
        let mut body = Vec::new();
        for word in [0u32, 0, 1000, 1000, n_gids] {
            body.extend_from_slice(&word.to_be_bytes());
        }
        for gid in 0..n_gids.min(20) {
            body.extend_from_slice(&gid.to_be_bytes());
        }
        body
    }

    #[test]
    fn parses_auth_sys() {
        let call = parse_call(&call(AUTH_SYS, &auth_sys(2))).unwrap();
        assert_eq!(call.auth, Auth::Sys { uid: 1000, gid: 1000, gids: vec![0, 1] });
        assert_eq!((call.prog, call.vers, call.proc_), (100003, 3, 1));
    }

    #[test]
    fn refuses_too_many_groups() {
        let err = parse_call(&call(AUTH_SYS, &auth_sys(17))).unwrap_err();
        assert_eq!(err, CallError::Auth { xid: 7, stat: auth_stat::AUTH_BADCRED });
    }

    #[test]
    fn refuses_unknown_flavor() {
        let err = parse_call(&call(6, &[])).unwrap_err();
        assert_eq!(err, CallError::Auth { xid: 7, stat: auth_stat::AUTH_TOOWEAK });
    }

    #[test]
    fn short_records() {
        assert_eq!(parse_call(&[1, 2]).unwrap_err(), CallError::Unreadable);
        assert_eq!(parse_call(&[0, 0, 0, 5, 0, 0]).unwrap_err(), CallError::Garbage { xid: 5 });
    }
}
