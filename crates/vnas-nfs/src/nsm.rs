//! NSM (program 100024, the status monitor of XNFS) as a vserver's clients
//! meet it: STAT tells this vserver's state number, and a client's reboot
//! notice (SM_NOTIFY, what its statd sends when it starts) releases every
//! lock it held. Monitoring is the lock manager's own business (every
//! client that holds a lock is known), so MON and UNMON from the network
//! are refused as a server's statd refuses them from anywhere but itself.

use crate::dispatch::Conn;
use crate::nfs3::Garbage;
use crate::nlm::{self, Xdr};
use crate::rpc::xdr::XdrReader;
use crate::rpc::Reply;
use crate::server::State;

pub const PROGRAM: u32 = 100024;
pub const VERSION: u32 = 1;
/// SM_MAXSTRLEN.
const NAME_MAX: usize = 1024;
const STAT_SUCC: u32 = 0;
const STAT_FAIL: u32 = 1;

pub fn run(
    state: &State,
    conn: Conn,
    proc_: u32,
    args: &[u8],
    out: &mut Reply,
) -> Option<Result<(), Garbage>> {
    let mut x = XdrReader::new(args);
    let nsm_state = state.locks.nsm_state();
    let mut body = Xdr::default();
    let result = match proc_ {
        0 | 5 => Ok(()),
        1 => x.opaque(NAME_MAX).map(|_| {
            body.u32(STAT_SUCC).u32(nsm_state);
        }),
        2 => x.opaque(NAME_MAX).map(|_| {
            body.u32(STAT_FAIL).u32(nsm_state);
        }),
        3 | 4 => Ok(()).map(|()| {
            body.u32(nsm_state);
        }),
        6 => {
            let notice =
                (|| Some((std::str::from_utf8(x.opaque(NAME_MAX).ok()?).ok()?.to_string(), x.u32().ok()?)))();
            let Some((name, client_state)) = notice else { return Some(Err(Garbage)) };
            let open = nlm::opener(state);
            match state.locks.rebooted(&open, &name, client_state, conn.peer.ip()) {
                Ok(0) => {
                    tracing::debug!(client = %name, from = %conn.peer.ip(), "reboot notice for a client holding nothing")
                }
                Ok(released) => {
                    tracing::warn!(client = %name, from = %conn.peer.ip(), released, "client rebooted: its locks are released")
                }
                Err(_) => tracing::error!(client = %name, "reboot notice not recorded; its locks stay"),
            }
            Ok(())
        }
        _ => return None,
    };
    Some(result.map_err(|_| Garbage).map(|()| out.buf_mut().extend_from_slice(&body.0)))
}
