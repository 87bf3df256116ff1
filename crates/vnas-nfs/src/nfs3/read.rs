//! READ (procedure 6). The reply carries the file itself as its body: the
//! server sends the data from the page cache to the socket (sendfile) and
//! never copies it through a buffer. Here the data is brought into the page
//! cache first, so sending it does not wait for the disk.

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::Pack as _;

use super::{decode, reply, Garbage, Req};
use crate::limits::READ_MAX;
use crate::rpc::{FileBody, Reply};

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
        let len = stat.stx_size.saturating_sub(args.offset).min(u64::from(args.count.min(READ_MAX)));
        let eof = args.offset + len >= stat.stx_size;
        if len > 0 {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain system call on an open descriptor.
            unsafe { libc::readahead(open.file.as_raw_fd(), args.offset as i64, len as usize) };
        }
        let buf = out.buf_mut();
        nfsstat3::NFS3_OK.pack(buf).expect("Vec");
        target.post_op(Some(stat)).pack(buf).expect("Vec");
        (len as u32).pack(buf).expect("Vec");
        eof.pack(buf).expect("Vec");
        (len as u32).pack(buf).expect("Vec");
        out.attach_file(FileBody { file: open.file, offset: args.offset, len: len as usize });
        Ok(())
    })();
    if let Err(stat) = result {
        reply::<READ3resok, _>(out, Err((stat, READ3resfail { file_attributes })));
    }
    Ok(())
}
