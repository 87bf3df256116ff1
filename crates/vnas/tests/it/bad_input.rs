//! What a broken or hostile client sends gets a clear error, reaches
//! nothing outside the export, and leaves the server answering the next
//! client.

use std::io::Write;
use std::os::unix::fs::MetadataExt;

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::{Opaque, Pack};

use crate::support::*;

const NFS: u32 = 100003;
const MOUNT: u32 = 100005;

fn packed(value: &impl Pack) -> Vec<u8> {
    let mut out = Vec::new();
    value.pack(&mut out).unwrap();
    out
}

fn nfs_status(reply: &[u8]) -> u32 {
    u32::from_be_bytes(results(reply)[..4].try_into().unwrap())
}

#[test]
fn broken_records_do_not_hurt_the_server() {
    let dir = temp_dir();
    let mut served = Served::start(dir.path(), "");

    // A fragment cut short, then the connection closed.
    let mut raw = RawClient::connect(served.addr);
    raw.stream.write_all(&(100u32 | 0x8000_0000).to_be_bytes()).unwrap();
    raw.stream.write_all(&[0; 10]).unwrap();
    drop(raw);
    assert!(served.answers());

    // A fragment far over the limit: the connection is closed at once,
    // without the server reading (or allocating) 2 GiB.
    let mut raw = RawClient::connect(served.addr);
    raw.stream.write_all(&0xffff_ffffu32.to_be_bytes()).unwrap();
    assert!(raw.read_reply().is_none(), "the server hangs up");
    assert!(served.answers());

    // Many fragments adding up to more than the limit.
    let mut raw = RawClient::connect(served.addr);
    let chunk = vec![0u8; 512 * 1024];
    for _ in 0..4 {
        let _ = raw.stream.write_all(&(chunk.len() as u32).to_be_bytes());
        let _ = raw.stream.write_all(&chunk);
    }
    assert!(raw.read_reply().is_none());
    assert!(served.answers());

    // Garbage bytes as a record: too short for a call, or not a call.
    for garbage in [&b"\x01\x02"[..], b"\xde\xad\xbe\xef\x00\x00\x00\x07junkjunk", &[0xff; 64]] {
        let mut raw = RawClient::connect(served.addr);
        raw.send_record(garbage);
        raw.stream.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
        let _ = raw.read_reply();
        assert!(served.answers());
    }
    served.stop();
}

#[test]
fn rpc_errors_are_proper_rpc_replies() {
    let dir = temp_dir();
    let mut served = Served::start(dir.path(), "");
    let mut raw = RawClient::connect(served.addr);

    assert_eq!(accept_stat(&raw.call(100_099, 1, 0, &[])), Some(1), "PROG_UNAVAIL");
    let mismatch = raw.call(NFS, 2, 0, &[]);
    assert_eq!(accept_stat(&mismatch), Some(2), "PROG_MISMATCH");
    assert_eq!(mismatch[24..32], [0, 0, 0, 3, 0, 0, 0, 4], "supported: 3 to 4");
    assert_eq!(accept_stat(&raw.call(NFS, 3, 99, &[])), Some(3), "PROC_UNAVAIL");
    assert_eq!(accept_stat(&raw.call(MOUNT, 3, 42, &[])), Some(3), "PROC_UNAVAIL");
    // GETATTR whose handle claims 1000 bytes, and one with no arguments.
    assert_eq!(accept_stat(&raw.call(NFS, 3, 1, &1000u32.to_be_bytes())), Some(4), "GARBAGE_ARGS");
    assert_eq!(accept_stat(&raw.call(NFS, 3, 1, &[])), Some(4), "GARBAGE_ARGS");
    // RPC version 3.
    raw.send_record(&call_header(77, 3, NFS, 3, 0));
    assert_eq!(reject(&raw.read_reply().unwrap()), (0, 2), "RPC_MISMATCH, low 2");
    // AUTH_SYS with 17 groups.
    let mut record = Vec::new();
    for word in [78u32, 0, 2, NFS, 3, 0, 1] {
        record.extend_from_slice(&word.to_be_bytes());
    }
    let mut cred = Vec::new();
    for word in [0u32, 0, 0, 0, 17] {
        cred.extend_from_slice(&word.to_be_bytes());
    }
    cred.extend(std::iter::repeat_n(0u8, 17 * 4));
    record.extend_from_slice(&(cred.len() as u32).to_be_bytes());
    record.extend_from_slice(&cred);
    record.extend_from_slice(&[0; 8]);
    raw.send_record(&record);
    assert_eq!(reject(&raw.read_reply().unwrap()), (1, 1), "AUTH_ERROR, AUTH_BADCRED");
    // The same connection still works.
    assert_eq!(accept_stat(&raw.call(NFS, 3, 0, &[])), Some(0));
    assert!(served.answers());
    served.stop();
}

#[tokio::test]
async fn forged_handles_and_escapes_reach_nothing() {
    let top = temp_dir();
    let export = top.path().join("export");
    std::fs::create_dir(&export).unwrap();
    std::fs::write(top.path().join("secret"), b"outside").unwrap();
    std::os::unix::fs::symlink("/", export.join("to-root")).unwrap();
    std::os::unix::fs::symlink("..", export.join("to-parent")).unwrap();
    let mut served = Served::start(&export, "");
    let mut nfs = mount(&served).await;
    let root = nfs.root_nfs_fh3();
    let root_ino = std::fs::metadata(&export).unwrap().ino();

    // A handle with the inode of a file outside the export.
    let mut forged = root.data.to_vec();
    let secret_ino = std::fs::metadata(top.path().join("secret")).unwrap().ino();
    forged[8..16].copy_from_slice(&secret_ino.to_be_bytes());
    let forged = nfs_fh3 { data: Opaque::owned(forged) };
    let res = nfs.read(&READ3args { file: forged, offset: 0, count: 100 }).await.unwrap();
    assert!(matches!(res, Nfs3Result::Err((nfsstat3::NFS3ERR_BADHANDLE, _))), "{res:?}");
    for bad in [vec![], vec![1u8; 31], vec![9u8; 64]] {
        let res = nfs.getattr(&GETATTR3args { object: nfs_fh3 { data: Opaque::owned(bad) } }).await.unwrap();
        assert!(matches!(res, Nfs3Result::Err((nfsstat3::NFS3ERR_BADHANDLE, _))), "{res:?}");
    }

    // `..` at the root is the root.
    let up = nfs
        .lookup(&LOOKUP3args {
            what: diropargs3 { dir: root.clone(), name: filename3::from(b"..".to_vec()) },
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(up.object, root);
    let attr = nfs.getattr(&GETATTR3args { object: up.object }).await.unwrap().unwrap();
    assert_eq!(attr.obj_attributes.fileid, root_ino);

    // Names with a slash are not paths.
    let res = nfs
        .lookup(&LOOKUP3args {
            what: diropargs3 { dir: root.clone(), name: filename3::from(b"../secret".to_vec()) },
        })
        .await
        .unwrap();
    assert!(matches!(res, Nfs3Result::Err((nfsstat3::NFS3ERR_ACCES, _))), "{res:?}");

    // Symlinks are never followed by the server.
    for link in ["to-root", "to-parent"] {
        let fh = nfs
            .lookup(&LOOKUP3args {
                what: diropargs3 { dir: root.clone(), name: filename3::from(link.as_bytes().to_vec()) },
            })
            .await
            .unwrap()
            .unwrap()
            .object;
        let through = nfs
            .lookup(&LOOKUP3args {
                what: diropargs3 { dir: fh.clone(), name: filename3::from(b"secret".to_vec()) },
            })
            .await
            .unwrap();
        assert!(matches!(through, Nfs3Result::Err((nfsstat3::NFS3ERR_NOTDIR, _))), "{through:?}");
        let listing = nfs
            .readdir(&READDIR3args {
                dir: fh.clone(),
                cookie: 0,
                cookieverf: cookieverf3::default(),
                count: 4096,
            })
            .await
            .unwrap();
        assert!(matches!(listing, Nfs3Result::Err((nfsstat3::NFS3ERR_NOTDIR, _))), "{listing:?}");
        let made = nfs
            .create(&CREATE3args {
                where_: diropargs3 { dir: fh, name: filename3::from(b"planted".to_vec()) },
                how: createhow3::UNCHECKED(sattr3::default()),
            })
            .await
            .unwrap();
        assert!(matches!(made, Nfs3Result::Err((nfsstat3::NFS3ERR_NOTDIR, _))), "{made:?}");
    }
    assert!(!top.path().join("planted").exists());

    // MOUNT paths that climb out or go through a symlink.
    drop(nfs);
    for path in
        ["/data/..", "/data/../secret", "/data/to-root", "/data/to-parent/secret", "/data/to-root/etc"]
    {
        assert!(try_mount_as(&served, path, 0, 0).await.is_err(), "mount of {path} is refused");
    }
    assert!(served.answers());
    served.stop();
}

#[test]
fn retransmitted_remove_gets_the_first_reply() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("victim"), b"x").unwrap();
    let served = Served::start(dir.path(), "");
    let mut raw = RawClient::connect(served.addr);
    let mut mnt = 5u32.to_be_bytes().to_vec();
    mnt.extend_from_slice(b"/data\0\0\0");
    let reply = raw.call(MOUNT, 3, 1, &mnt);
    let res = results(&reply);
    let fh_len = u32::from_be_bytes(res[4..8].try_into().unwrap()) as usize;
    let root = nfs_fh3 { data: Opaque::owned(res[8..8 + fh_len].to_vec()) };
    let args =
        packed(&REMOVE3args { object: diropargs3 { dir: root, name: filename3::from(b"victim".to_vec()) } });
    let mut record = call_header(4242, 2, NFS, 3, 12);
    record.extend_from_slice(&args);
    raw.send_record(&record);
    let first = raw.read_reply().unwrap();
    assert_eq!(nfs_status(&first), 0);
    assert!(!dir.path().join("victim").exists());
    // The client did not see the reply and sends the call again, on a new
    // connection as clients do after a reconnect.
    let mut again = RawClient::connect(served.addr);
    again.send_record(&record);
    let second = again.read_reply().unwrap();
    assert_eq!(second, first, "the same reply, not NFS3ERR_NOENT");
    // A new call (new xid) for the same name really runs.
    let mut record = call_header(4243, 2, NFS, 3, 12);
    record.extend_from_slice(&args);
    again.send_record(&record);
    assert_eq!(nfs_status(&again.read_reply().unwrap()), nfsstat3::NFS3ERR_NOENT as u32);
    served.stop();
}

#[test]
fn a_pipelining_client_is_paced_not_dropped() {
    let dir = temp_dir();
    let served = Served::start(dir.path(), "");
    let mut raw = RawClient::connect(served.addr);
    // Far more calls than may be in flight, sent before reading anything.
    let mut batch = Vec::new();
    for xid in 0..500u32 {
        let record = call_header(xid, 2, NFS, 3, 0);
        batch.extend_from_slice(&((record.len() as u32) | 0x8000_0000).to_be_bytes());
        batch.extend_from_slice(&record);
    }
    raw.stream.write_all(&batch).unwrap();
    let mut xids = Vec::new();
    for _ in 0..500 {
        let reply = raw.read_reply().expect("every call answered");
        xids.push(u32::from_be_bytes(reply[..4].try_into().unwrap()));
    }
    xids.sort();
    assert_eq!(xids, (0..500).collect::<Vec<_>>());
    served.stop();
}
