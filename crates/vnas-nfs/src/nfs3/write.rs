//! WRITE (procedure 7). Arguments are decoded by hand so the data is
//! written from the received record without a copy.

use nfs3_types::nfs3::*;

use super::{reply, Garbage, Req};
use crate::fs::errno_stat;
use crate::limits::WRITE_MAX;
use crate::rpc::xdr::XdrReader;
use crate::rpc::Reply;

struct Args<'a> {
    file: nfs_fh3,
    offset: u64,
    stable: stable_how,
    data: &'a [u8],
}

fn decode(args: &[u8]) -> Result<Args<'_>, Garbage> {
    let mut xdr = XdrReader::new(args);
    let fh = xdr.opaque(NFS3_FHSIZE).map_err(|_| Garbage)?;
    let offset = xdr.u64().map_err(|_| Garbage)?;
    let count = xdr.u32().map_err(|_| Garbage)?;
    let stable = match xdr.u32().map_err(|_| Garbage)? {
        0 => stable_how::UNSTABLE,
        1 => stable_how::DATA_SYNC,
        2 => stable_how::FILE_SYNC,
        _ => return Err(Garbage),
    };
    let data = xdr.opaque(WRITE_MAX as usize).map_err(|_| Garbage)?;
    if count as usize != data.len() {
        return Err(Garbage);
    }
    Ok(Args { file: nfs_fh3 { data: fh.to_vec().into() }, offset, stable, data })
}

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args = decode(args)?;
    let mut file_wcc = wcc_data::default();
    let result = (|| {
        let target = req.target(&args.file)?;
        let (open, before) = target.export.file(&target.fh, true)?;
        file_wcc = target.wcc(Some(&before), None);
        if !target.may_data(&before, ACCESS3_MODIFY) {
            return Err(nfsstat3::NFS3ERR_ACCES);
        }
        if !open.writable {
            return Err(nfsstat3::NFS3ERR_ACCES);
        }
        let turn = open.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = 0;
        while done < args.data.len() {
            match rustix::io::pwrite(&*open.file, &args.data[done..], args.offset + done as u64) {
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(errno_stat(errno)),
            }
        }
        drop(turn);
        let committed = match args.stable {
            stable_how::UNSTABLE => stable_how::UNSTABLE,
            stable_how::DATA_SYNC => {
                rustix::fs::fdatasync(&*open.file).map_err(errno_stat)?;
                stable_how::DATA_SYNC
            }
            stable_how::FILE_SYNC => {
                rustix::fs::fsync(&*open.file).map_err(errno_stat)?;
                stable_how::FILE_SYNC
            }
        };
        let after = crate::fs::export::stat_fd(&*open.file).ok();
        Ok(WRITE3resok {
            file_wcc: target.wcc(Some(&before), after),
            count: done as u32,
            committed,
            verf: writeverf3(req.state.write_verifier),
        })
    })();
    reply(out, result.map_err(|stat| (stat, WRITE3resfail { file_wcc })));
    Ok(())
}
