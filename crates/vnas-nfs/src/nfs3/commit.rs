//! COMMIT (procedure 21): everything written to the file so far reaches
//! stable storage before the reply, which carries this activation's
//! write verifier.

use nfs3_types::nfs3::*;

use super::{decode, reply, Garbage, Req};
use crate::fs::errno_stat;
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: COMMIT3args = decode(args)?;
    let mut file_wcc = wcc_data::default();
    let result = (|| {
        let target = req.target(&args.file)?;
        let (open, before) = target.export.file(&target.fh, false)?;
        file_wcc = target.wcc(Some(&before), None);
        rustix::fs::fsync(&*open.file).map_err(errno_stat)?;
        let after = crate::fs::export::stat_fd(&*open.file).ok();
        Ok(COMMIT3resok {
            file_wcc: target.wcc(Some(&before), after),
            verf: writeverf3(req.state.write_verifier),
        })
    })();
    reply(out, result.map_err(|stat| (stat, COMMIT3resfail { file_wcc })));
    Ok(())
}
