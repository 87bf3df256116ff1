//! Every NFSv3 procedure through the nfs3_client crate, checked against
//! what landed on the exported directory.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::Opaque;

use crate::support::*;

fn name(s: &str) -> filename3<'static> {
    filename3::from(s.as_bytes().to_vec())
}

fn dirop(dir: &nfs_fh3, s: &str) -> diropargs3<'static> {
    diropargs3 { dir: dir.clone(), name: name(s) }
}

fn mode(mode: u32) -> sattr3 {
    sattr3 { mode: Nfs3Option::Some(mode), ..Default::default() }
}

fn handle(fh: post_op_fh3) -> nfs_fh3 {
    match fh {
        Nfs3Option::Some(fh) => fh,
        Nfs3Option::None => panic!("no handle in reply"),
    }
}

fn attrs(attrs: post_op_attr) -> fattr3 {
    match attrs {
        Nfs3Option::Some(a) => a,
        Nfs3Option::None => panic!("no attributes in reply"),
    }
}

fn err<T: std::fmt::Debug, E: std::fmt::Debug>(res: Nfs3Result<T, E>) -> nfsstat3 {
    match res {
        Nfs3Result::Ok(ok) => panic!("expected an error, got {ok:?}"),
        Nfs3Result::Err((stat, _)) => stat,
    }
}

#[tokio::test]
async fn every_procedure() {
    let dir = temp_dir();
    let served = Served::start(dir.path(), "");
    let mut nfs = mount(&served).await;
    let root = nfs.root_nfs_fh3();

    // NULL, GETATTR, FSINFO, FSSTAT, PATHCONF
    nfs.null().await.unwrap();
    let root_attr = nfs.getattr(&GETATTR3args { object: root.clone() }).await.unwrap().unwrap();
    assert_eq!(root_attr.obj_attributes.type_, ftype3::NF3DIR);
    assert_eq!(root_attr.obj_attributes.fileid, std::fs::metadata(dir.path()).unwrap().ino());
    let info = nfs.fsinfo(&FSINFO3args { fsroot: root.clone() }).await.unwrap().unwrap();
    assert_eq!((info.rtmax, info.wtmax), (1 << 20, 1 << 20));
    assert_ne!(info.properties & FSF3_SYMLINK, 0);
    let stat = nfs.fsstat(&FSSTAT3args { fsroot: root.clone() }).await.unwrap().unwrap();
    assert!(stat.tbytes >= stat.fbytes && stat.fbytes >= stat.abytes && stat.tbytes > 0);
    let conf = nfs.pathconf(&PATHCONF3args { object: root.clone() }).await.unwrap().unwrap();
    assert_eq!(conf.name_max, 255);

    // MKDIR, CREATE, WRITE (unstable), COMMIT, READ
    let sub = nfs
        .mkdir(&MKDIR3args { where_: dirop(&root, "sub"), attributes: mode(0o750) })
        .await
        .unwrap()
        .unwrap();
    let sub_fh = handle(sub.obj);
    let on_disk = std::fs::metadata(dir.path().join("sub")).unwrap();
    assert!(on_disk.is_dir());
    assert_eq!(on_disk.permissions().mode() & 0o7777, 0o750);

    let created = nfs
        .create(&CREATE3args { where_: dirop(&sub_fh, "f.txt"), how: createhow3::UNCHECKED(mode(0o640)) })
        .await
        .unwrap()
        .unwrap();
    let file = handle(created.obj);
    assert_eq!(attrs(created.obj_attributes).mode, 0o640);

    let data = b"hello, vnas".to_vec();
    let written = nfs
        .write(&WRITE3args {
            file: file.clone(),
            offset: 0,
            count: data.len() as u32,
            stable: stable_how::UNSTABLE,
            data: Opaque::borrowed(&data),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(written.count as usize, data.len());
    assert_eq!(written.committed, stable_how::UNSTABLE);
    let committed =
        nfs.commit(&COMMIT3args { file: file.clone(), offset: 0, count: 0 }).await.unwrap().unwrap();
    assert_eq!(committed.verf, written.verf, "one activation, one verifier");
    let synced = nfs
        .write(&WRITE3args {
            file: file.clone(),
            offset: data.len() as u64,
            count: 1,
            stable: stable_how::FILE_SYNC,
            data: Opaque::borrowed(b"!"),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(synced.committed, stable_how::FILE_SYNC);
    assert_eq!(std::fs::read(dir.path().join("sub/f.txt")).unwrap(), b"hello, vnas!");

    let read = nfs.read(&READ3args { file: file.clone(), offset: 7, count: 100 }).await.unwrap().unwrap();
    assert_eq!(&read.data[..], b"vnas!");
    assert!(read.eof);
    let read = nfs.read(&READ3args { file: file.clone(), offset: 0, count: 5 }).await.unwrap().unwrap();
    assert_eq!((&read.data[..], read.eof), (&b"hello"[..], false));
    // A large READ at the end of the file (the kernel client's last read
    // of a file): no data follows the header, and it must not wait for
    // any (the kernel holds a corked segment 200 ms).
    for _ in 0..3 {
        let asked = std::time::Instant::now();
        let read =
            nfs.read(&READ3args { file: file.clone(), offset: 13, count: 1 << 20 }).await.unwrap().unwrap();
        assert_eq!((read.data.len(), read.eof), (0, true));
        assert!(
            asked.elapsed() < std::time::Duration::from_millis(100),
            "READ at EOF took {:?}",
            asked.elapsed()
        );
    }

    // SETATTR: mode, size, times; with a guard that fails
    let set = SETATTR3args {
        object: file.clone(),
        new_attributes: sattr3 {
            mode: Nfs3Option::Some(0o600),
            size: Nfs3Option::Some(5),
            mtime: set_mtime::SET_TO_CLIENT_TIME(nfstime3 { seconds: 1_000_000, nseconds: 0 }),
            ..Default::default()
        },
        guard: Nfs3Option::None,
    };
    nfs.setattr(&set).await.unwrap().unwrap();
    let meta = std::fs::metadata(dir.path().join("sub/f.txt")).unwrap();
    assert_eq!((meta.len(), meta.permissions().mode() & 0o7777, meta.mtime()), (5, 0o600, 1_000_000));
    let guarded = SETATTR3args {
        object: file.clone(),
        new_attributes: mode(0o644),
        guard: Nfs3Option::Some(nfstime3 { seconds: 1, nseconds: 2 }),
    };
    assert_eq!(err(nfs.setattr(&guarded).await.unwrap()), nfsstat3::NFS3ERR_NOT_SYNC);

    // LOOKUP and ACCESS
    let found = nfs.lookup(&LOOKUP3args { what: dirop(&sub_fh, "f.txt") }).await.unwrap().unwrap();
    assert_eq!(found.object, file, "LOOKUP gives the handle CREATE gave");
    assert_eq!(
        err(nfs.lookup(&LOOKUP3args { what: dirop(&sub_fh, "nope") }).await.unwrap()),
        nfsstat3::NFS3ERR_NOENT
    );
    let access = nfs
        .access(&ACCESS3args {
            object: file.clone(),
            access: ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXECUTE,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(access.access, ACCESS3_READ | ACCESS3_MODIFY, "root, mode 600: no execute");

    // SYMLINK and READLINK
    let link = nfs
        .symlink(&SYMLINK3args {
            where_: dirop(&root, "ln"),
            symlink: symlinkdata3 {
                symlink_attributes: sattr3::default(),
                symlink_data: nfspath3::from(b"sub/f.txt".to_vec()),
            },
        })
        .await
        .unwrap()
        .unwrap();
    let link_fh = handle(link.obj);
    let target = nfs.readlink(&READLINK3args { symlink: link_fh.clone() }).await.unwrap().unwrap();
    assert_eq!(target.data.0.as_ref(), b"sub/f.txt");
    assert_eq!(std::fs::read_link(dir.path().join("ln")).unwrap().to_str(), Some("sub/f.txt"));

    // LINK
    let linked =
        nfs.link(&LINK3args { file: file.clone(), link: dirop(&root, "hard") }).await.unwrap().unwrap();
    assert_eq!(attrs(linked.file_attributes).nlink, 2);
    assert_eq!(std::fs::metadata(dir.path().join("hard")).unwrap().ino(), meta.ino());

    // MKNOD: a FIFO (devices need root, checked below)
    let fifo = nfs
        .mknod(&MKNOD3args { where_: dirop(&root, "fifo"), what: mknoddata3::NF3FIFO(mode(0o600)) })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attrs(fifo.obj_attributes).type_, ftype3::NF3FIFO);
    assert!(std::fs::symlink_metadata(dir.path().join("fifo")).unwrap().file_type().is_fifo());
    let devices = root_part("MKNOD of a character device");
    if devices {
        let dev = nfs
            .mknod(&MKNOD3args {
                where_: dirop(&root, "null"),
                what: mknoddata3::NF3CHR(devicedata3 {
                    dev_attributes: mode(0o666),
                    spec: specdata3 { specdata1: 1, specdata2: 3 },
                }),
            })
            .await
            .unwrap()
            .unwrap();
        let dev = attrs(dev.obj_attributes);
        assert_eq!((dev.type_, dev.rdev.specdata1, dev.rdev.specdata2), (ftype3::NF3CHR, 1, 3));
    }

    // READDIR and READDIRPLUS, paged with a small count
    let mut names = Vec::new();
    let mut cookie = 0;
    loop {
        let page = nfs
            .readdir(&READDIR3args {
                dir: root.clone(),
                cookie,
                cookieverf: cookieverf3::default(),
                count: 200,
            })
            .await
            .unwrap()
            .unwrap();
        for entry in &page.reply.entries.0 {
            names.push(String::from_utf8(entry.name.0.to_vec()).unwrap());
            cookie = entry.cookie;
        }
        if page.reply.eof {
            break;
        }
    }
    names.sort();
    let mut expected = vec![".", "..", "fifo", "hard", "ln", "sub"];
    if devices {
        expected.push("null");
        expected.sort();
    }
    assert_eq!(names, expected);
    let plus = nfs
        .readdirplus(&READDIRPLUS3args {
            dir: sub_fh.clone(),
            cookie: 0,
            cookieverf: cookieverf3::default(),
            dircount: 4096,
            maxcount: 65536,
        })
        .await
        .unwrap()
        .unwrap();
    let entry = plus.reply.entries.0.iter().find(|e| e.name.0.as_ref() == b"f.txt").expect("f.txt listed");
    assert_eq!(handle(entry.name_handle.clone()), file);
    assert!(plus.reply.eof);

    // RENAME keeps the handle working
    nfs.rename(&RENAME3args { from: dirop(&sub_fh, "f.txt"), to: dirop(&root, "moved.txt") })
        .await
        .unwrap()
        .unwrap();
    let read = nfs.read(&READ3args { file: file.clone(), offset: 0, count: 100 }).await.unwrap().unwrap();
    assert_eq!(&read.data[..], b"hello");
    assert!(dir.path().join("moved.txt").exists());

    // CREATE GUARDED on an existing name; EXCLUSIVE retried and contested
    let guarded =
        CREATE3args { where_: dirop(&root, "moved.txt"), how: createhow3::GUARDED(sattr3::default()) };
    assert_eq!(err(nfs.create(&guarded).await.unwrap()), nfsstat3::NFS3ERR_EXIST);
    let excl = |verf: u8| CREATE3args {
        where_: dirop(&root, "excl"),
        how: createhow3::EXCLUSIVE(createverf3([verf; 8])),
    };
    let first = handle(nfs.create(&excl(7)).await.unwrap().unwrap().obj);
    let again = handle(nfs.create(&excl(7)).await.unwrap().unwrap().obj);
    assert_eq!(first, again, "a retried exclusive create succeeds");
    assert_eq!(err(nfs.create(&excl(8)).await.unwrap()), nfsstat3::NFS3ERR_EXIST);

    // REMOVE, RMDIR
    nfs.remove(&REMOVE3args { object: dirop(&root, "hard") }).await.unwrap().unwrap();
    assert_eq!(
        err(nfs.remove(&REMOVE3args { object: dirop(&root, "sub") }).await.unwrap()),
        nfsstat3::NFS3ERR_ISDIR
    );
    nfs.create(&CREATE3args { where_: dirop(&sub_fh, "x"), how: createhow3::UNCHECKED(sattr3::default()) })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        err(nfs.rmdir(&RMDIR3args { object: dirop(&root, "sub") }).await.unwrap()),
        nfsstat3::NFS3ERR_NOTEMPTY
    );
    nfs.remove(&REMOVE3args { object: dirop(&sub_fh, "x") }).await.unwrap().unwrap();
    nfs.rmdir(&RMDIR3args { object: dirop(&root, "sub") }).await.unwrap().unwrap();
    assert!(!dir.path().join("sub").exists());
    assert_eq!(
        err(nfs.getattr(&GETATTR3args { object: sub_fh }).await.unwrap()),
        nfsstat3::NFS3ERR_STALE,
        "a removed directory's handle is stale"
    );

    nfs.unmount().await.unwrap();
    served.stop();
}

#[tokio::test]
async fn mount_protocol_and_portmap() {
    let dir = temp_dir();
    std::fs::create_dir(dir.path().join("inner")).unwrap();
    let served = Served::start(dir.path(), "");
    // Portmap answers on the NFS port: the client finds both programs there.
    let nfs = nfs3_client::Nfs3ConnectionBuilder::new(
        nfs3_client::tokio::TokioConnector,
        "127.0.0.1",
        "/data/inner",
    )
    .portmapper_port(served.port())
    .connect_from_privileged_port(false)
    .credential(auth(0, 0))
    .mount()
    .await
    .expect("mount through portmap GETPORT");
    let root = nfs.root_nfs_fh3();
    let mut nfs = nfs;
    let attr = nfs.getattr(&GETATTR3args { object: root }).await.unwrap().unwrap();
    assert_eq!(attr.obj_attributes.fileid, std::fs::metadata(dir.path().join("inner")).unwrap().ino());

    let mut raw = RawClient::connect(served.addr);
    // MOUNT EXPORT lists /data; DUMP lists our mount.
    let exports = raw.call(100005, 3, 5, &[]);
    assert!(results(&exports).windows(5).any(|w| w == b"/data"));
    let dump = raw.call(100005, 3, 2, &[]);
    assert!(results(&dump).windows(11).any(|w| w == b"/data/inner"));
    nfs.unmount().await.unwrap();
    // After UMNT the mount is gone from DUMP.
    let dump = raw.call(100005, 3, 2, &[]);
    assert!(!results(&dump).windows(11).any(|w| w == b"/data/inner"));
    // Missing and non-directory paths are refused.
    for (path, stat) in [("/data/missing", 2u32), ("/nope", 2)] {
        let mut args = (path.len() as u32).to_be_bytes().to_vec();
        args.extend_from_slice(path.as_bytes());
        while !args.len().is_multiple_of(4) {
            args.push(0);
        }
        let reply = raw.call(100005, 3, 1, &args);
        assert_eq!(results(&reply)[..4], stat.to_be_bytes(), "MNT {path}");
    }
    served.stop();
}
