//! MOUNT v3 (RFC 1813 appendix I): hands out root handles of exports (or of
//! directories inside them), and keeps the list of mounts for DUMP.

use std::net::SocketAddr;

use nfs3_types::mount::*;
use nfs3_types::xdr_codec::{List, Opaque};

use crate::fs::export::check_name;
use crate::limits::PATH_MAX;
use crate::nfs3::Garbage;
use crate::rpc::xdr::XdrReader;
use crate::rpc::Reply;
use crate::server::State;

const AUTH_NONE: u32 = 0;
const AUTH_SYS: u32 = 1;

pub fn run(
    state: &State,
    peer: SocketAddr,
    proc_: u32,
    args: &[u8],
    out: &mut Reply,
) -> Option<Result<(), Garbage>> {
    let client = peer.ip();
    Some(match proc_ {
        0 => Ok(()),
        1 => mnt(state, peer, args, out),
        2 => {
            dump(state, out);
            Ok(())
        }
        3 => path_arg(args).map(|path| {
            state.mounts.lock().unwrap().remove(&(client, path));
        }),
        4 => {
            state.mounts.lock().unwrap().retain(|(c, _)| *c != client);
            Ok(())
        }
        5 => {
            export(state, out);
            Ok(())
        }
        _ => return None,
    })
}

fn path_arg(args: &[u8]) -> Result<String, Garbage> {
    let path = XdrReader::new(args).opaque(PATH_MAX).map_err(|_| Garbage)?;
    String::from_utf8(path.to_vec()).map_err(|_| Garbage)
}

fn mnt(state: &State, peer: SocketAddr, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let client = peer.ip();
    let path = path_arg(args)?;
    let result = mount_path(state, peer, &path);
    if result.is_ok() {
        let mut mounts = state.mounts.lock().unwrap();
        if mounts.len() < 4096 {
            mounts.insert((client, path.clone()));
        }
    }
    match result {
        Ok(fhandle) => out.pack(&mountres3::Ok(mountres3_ok {
            fhandle: fhandle3(Opaque::owned(fhandle)),
            auth_flavors: vec![AUTH_SYS, AUTH_NONE],
        })),
        Err(stat) => {
            tracing::debug!(%client, path, ?stat, "mount refused");
            out.pack(&mountres3::Err(stat));
        }
    }
    Ok(())
}

/// The handle for `path`: an export's name, or a directory below it.
fn mount_path(state: &State, peer: SocketAddr, path: &str) -> Result<Vec<u8>, mountstat3> {
    let exports = state.exports();
    let export = exports
        .iter()
        .filter(|e| is_within(path, &e.name))
        .max_by_key(|e| e.name.len())
        .ok_or(mountstat3::MNT3ERR_NOENT)?;
    let rule = export.rule_for(peer.ip()).ok_or(mountstat3::MNT3ERR_ACCES)?;
    if !rule.port_allowed(peer.port(), crate::creds::can_switch()) {
        tracing::debug!(%peer, path, "mount refused: the export is secure and the port is not reserved");
        return Err(mountstat3::MNT3ERR_ACCES);
    }
    let below = path[export.name.len()..].trim_start_matches('/');
    for component in below.split('/').filter(|c| !c.is_empty()) {
        if component == ".." || check_name(component.as_bytes()).is_err() {
            return Err(mountstat3::MNT3ERR_ACCES);
        }
    }
    let obj = export.walk(below.as_bytes()).map_err(|stat| match stat {
        nfs3_types::nfs3::nfsstat3::NFS3ERR_NOENT => mountstat3::MNT3ERR_NOENT,
        nfs3_types::nfs3::nfsstat3::NFS3ERR_NOTDIR => mountstat3::MNT3ERR_NOTDIR,
        nfs3_types::nfs3::nfsstat3::NFS3ERR_ACCES => mountstat3::MNT3ERR_ACCES,
        _ => mountstat3::MNT3ERR_IO,
    })?;
    Ok(export.handle_of(&obj).data.into_owned())
}

fn is_within(path: &str, export: &str) -> bool {
    export == "/"
        || path == export
        || (path.starts_with(export) && path.as_bytes().get(export.len()) == Some(&b'/'))
}

fn dump(state: &State, out: &mut Reply) {
    let mounts = state.mounts.lock().unwrap();
    let list: Vec<_> = mounts
        .iter()
        .map(|(client, path)| mountbody {
            ml_hostname: name(Opaque::owned(client.to_string().into_bytes())),
            ml_directory: dirpath(Opaque::owned(path.clone().into_bytes())),
        })
        .collect();
    out.pack(&List(list));
}

fn export(state: &State, out: &mut Reply) {
    let list: Vec<_> = state
        .exports()
        .iter()
        .map(|export| export_node {
            ex_dir: dirpath(Opaque::owned(export.name.clone().into_bytes())),
            ex_groups: List(
                export
                    .rules
                    .read()
                    .expect("not poisoned")
                    .iter()
                    .flat_map(|rule| rule.clients.iter())
                    .map(|net| name(Opaque::owned(net.to_string().into_bytes())))
                    .collect(),
            ),
        })
        .collect();
    out.pack(&List(list));
}

#[cfg(test)]
mod tests {
    use super::is_within;

    #[test]
    fn paths_within_exports() {
        assert!(is_within("/data", "/data"));
        assert!(is_within("/data/sub", "/data"));
        assert!(!is_within("/database", "/data"));
        assert!(is_within("/anything", "/"));
    }
}
