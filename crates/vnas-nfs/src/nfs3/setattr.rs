//! SETATTR (procedure 2).

use nfs3_types::nfs3::*;

use super::{decode, reply, sattr, Garbage, Req};
use crate::rpc::Reply;

pub fn run(req: &Req<'_>, args: &[u8], out: &mut Reply) -> Result<(), Garbage> {
    let args: SETATTR3args = decode(args)?;
    let target = match req.target(&args.object) {
        Ok(target) => target,
        Err(stat) => {
            reply::<SETATTR3resok, _>(out, Err((stat, SETATTR3resfail::default())));
            return Ok(());
        }
    };
    let result = (|| {
        let obj = target.export.resolve(&target.fh).map_err(|s| (s, None))?;
        if let Nfs3Option::Some(guard) = args.guard {
            let ctime = obj.stat.stx_ctime;
            if ctime.tv_sec as u32 != guard.seconds || ctime.tv_nsec != guard.nseconds {
                return Err((nfsstat3::NFS3ERR_NOT_SYNC, Some(obj)));
            }
        }
        target.act_as_caller();
        match sattr::apply(&obj, &args.new_attributes, Some(&target.creds)) {
            Ok(()) => Ok(obj),
            Err(stat) => Err((stat, Some(obj))),
        }
    })();
    match result {
        Ok(obj) => {
            let obj_wcc = target.wcc(Some(&obj.stat), obj.restat().ok());
            reply::<_, SETATTR3resfail>(out, Ok(SETATTR3resok { obj_wcc }));
        }
        Err((stat, obj)) => {
            let obj_wcc = match obj {
                Some(obj) => target.wcc(Some(&obj.stat), obj.restat().ok()),
                None => wcc_data::default(),
            };
            reply::<SETATTR3resok, _>(out, Err((stat, SETATTR3resfail { obj_wcc })));
        }
    }
    Ok(())
}
