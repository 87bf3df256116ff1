//! MKNOD (procedure 11): character and block devices, sockets and FIFOs.

use nfs3_types::nfs3::*;
use rustix::fs::FileType;

use super::made::make_in;
use super::{decode, reply, sattr, Garbage, Req};
use crate::fs::errno_stat;
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: MKNOD3args = decode(args)?;
    let (kind, attrs, dev) = match &args.what {
        mknoddata3::NF3CHR(d) => (FileType::CharacterDevice, &d.dev_attributes, Some(&d.spec)),
        mknoddata3::NF3BLK(d) => (FileType::BlockDevice, &d.dev_attributes, Some(&d.spec)),
        mknoddata3::NF3SOCK(a) => (FileType::Socket, a, None),
        mknoddata3::NF3FIFO(a) => (FileType::Fifo, a, None),
        mknoddata3::default => {
            let dir_wcc = wcc_data::default();
            reply::<MKNOD3resok, _>(out, Err((nfsstat3::NFS3ERR_BADTYPE, MKNOD3resfail { dir_wcc })));
            return Ok(());
        }
    };
    let rest = sattr::without_mode(attrs);
    let rdev = dev.map_or(0, |d| rustix::fs::makedev(d.specdata1, d.specdata2));
    let result = make_in(req, &args.where_, Some(&rest), |dir, name| {
        rustix::fs::mknodat(&dir.fd, name, kind, sattr::mode_of(attrs, 0o644), rdev).map_err(errno_stat)
    });
    let result = result.map(|made| MKNOD3resok {
        obj: made.obj,
        obj_attributes: made.obj_attributes,
        dir_wcc: made.dir_wcc,
    });
    reply(out, result.map_err(|(stat, dir_wcc)| (stat, MKNOD3resfail { dir_wcc })));
    Ok(())
}
