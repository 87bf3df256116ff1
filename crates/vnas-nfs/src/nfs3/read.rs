//! READ (procedure 6). The data goes straight from the file into the reply
//! buffer; the reply is encoded by hand to avoid a copy.

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::Pack as _;

use super::{decode, reply, Garbage, Req};
use crate::limits::READ_MAX;
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: READ3args = decode(args)?;
    let mut file_attributes = Nfs3Option::None;
    let result = (|| {
        let target = req.target(&args.file)?;
        let (open, stat) = target.export.file(&target.fh, false)?;
        file_attributes = target.post_op(Some(stat));
        if !target.may_data(&stat, ACCESS3_READ) && !target.may(&stat, ACCESS3_EXECUTE) {
            return Err(nfsstat3::NFS3ERR_ACCES);
        }
        let count = args.count.min(READ_MAX) as usize;
        let buf = out.buf_mut();
        let start = buf.len();
        // status, attributes, count, eof, then the opaque data.
        nfsstat3::NFS3_OK.pack(buf).expect("Vec");
        target.post_op(Some(stat)).pack(buf).expect("Vec");
        let head = buf.len();
        buf.resize(head + 12 + count, 0);
        let data = &mut buf[head + 12..];
        let mut done = 0;
        while done < count {
            match rustix::io::pread(&*open.file, &mut data[done..], args.offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => {
                    buf.truncate(start);
                    return Err(crate::fs::errno_stat(errno));
                }
            }
        }
        let eof = args.offset + done as u64 >= stat.stx_size;
        buf[head..head + 4].copy_from_slice(&(done as u32).to_be_bytes());
        buf[head + 4..head + 8].copy_from_slice(&u32::from(eof).to_be_bytes());
        buf[head + 8..head + 12].copy_from_slice(&(done as u32).to_be_bytes());
        let padded = (done + 3) & !3;
        buf.truncate(head + 12 + done);
        buf.resize(head + 12 + padded, 0);
        Ok(())
    })();
    if let Err(stat) = result {
        reply::<READ3resok, _>(out, Err((stat, READ3resfail { file_attributes })));
    }
    Ok(())
}
