//! Portmap v2 (RFC 1833), answered on the NFS port itself so a client that
//! asks "where is NFS / MOUNT?" is told "here".

use nfs3_types::portmap::{mapping, IPPROTO_TCP, IPPROTO_UDP};
use nfs3_types::xdr_codec::List;

use crate::nfs3::Garbage;
use crate::rpc::xdr::XdrReader;
use crate::rpc::Reply;

pub const PROGRAM: u32 = nfs3_types::portmap::PROGRAM;
pub const VERSION: u32 = nfs3_types::portmap::VERSION;

/// The programs this port serves.
fn served(port: u16) -> [mapping; 6] {
    let port = u32::from(port);
    [
        mapping { prog: crate::nfs3::PROGRAM, vers: crate::nfs3::VERSION, prot: IPPROTO_TCP, port },
        mapping { prog: nfs3_types::mount::PROGRAM, vers: 3, prot: IPPROTO_TCP, port },
        mapping { prog: crate::nlm::PROGRAM, vers: crate::nlm::VERSION, prot: IPPROTO_TCP, port },
        mapping { prog: crate::nsm::PROGRAM, vers: crate::nsm::VERSION, prot: IPPROTO_TCP, port },
        // A rebooted client's statd tells of it over UDP only.
        mapping { prog: crate::nsm::PROGRAM, vers: crate::nsm::VERSION, prot: IPPROTO_UDP, port },
        mapping { prog: PROGRAM, vers: VERSION, prot: IPPROTO_UDP, port },
    ]
}

pub fn run(local_port: u16, proc_: u32, args: &[u8], out: &mut Reply) -> Option<Result<(), Garbage>> {
    Some(match proc_ {
        0 => Ok(()),
        // SET and UNSET: registrations are not taken from the network.
        1 | 2 => {
            out.pack(&false);
            Ok(())
        }
        3 => getport(local_port, args).map(|port| out.pack(&port)),
        4 => {
            out.pack(&List(served(local_port).to_vec()));
            Ok(())
        }
        _ => return None,
    })
}

fn getport(local_port: u16, args: &[u8]) -> Result<u32, Garbage> {
    let mut xdr = XdrReader::new(args);
    let mut next = || xdr.u32().map_err(|_| Garbage);
    let (prog, vers, prot, _port) = (next()?, next()?, next()?, next()?);
    let found = served(local_port).into_iter().find(|m| m.prog == prog && m.vers == vers && m.prot == prot);
    Ok(found.map_or(0, |m| m.port))
}
