//! Handles, cookies and data outlive the server process: a second process
//! on the same directory (as after a restart or a move to another node)
//! serves what the first one handed out.

use std::collections::BTreeSet;

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::Opaque;

use crate::support::*;

async fn lookup_path(nfs: &mut Connection, path: &str) -> nfs_fh3 {
    let mut fh = nfs.root_nfs_fh3();
    for part in path.split('/') {
        let args =
            LOOKUP3args { what: diropargs3 { dir: fh, name: filename3::from(part.as_bytes().to_vec()) } };
        fh = nfs.lookup(&args).await.unwrap().unwrap().object;
    }
    fh
}

fn names(page: &READDIR3resok) -> Vec<String> {
    page.reply.entries.0.iter().map(|e| String::from_utf8(e.name.0.to_vec()).unwrap()).collect()
}

#[tokio::test]
async fn handles_survive_a_new_server_process() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
    std::fs::write(dir.path().join("a/b/c/file.txt"), b"before").unwrap();
    for i in 0..100 {
        std::fs::write(dir.path().join(format!("a/many-{i:03}")), b"").unwrap();
    }

    let first = Served::start(dir.path(), "");
    let mut nfs = mount(&first).await;
    let file = lookup_path(&mut nfs, "a/b/c/file.txt").await;
    let deep_dir = lookup_path(&mut nfs, "a/b/c").await;
    let many = lookup_path(&mut nfs, "a").await;
    // Rename through the first server: the handle must follow the file.
    nfs.rename(&RENAME3args {
        from: diropargs3 { dir: deep_dir.clone(), name: filename3::from(b"file.txt".to_vec()) },
        to: diropargs3 { dir: many.clone(), name: filename3::from(b"renamed.txt".to_vec()) },
    })
    .await
    .unwrap()
    .unwrap();
    let page = nfs
        .readdir(&READDIR3args {
            dir: many.clone(),
            cookie: 0,
            cookieverf: cookieverf3::default(),
            count: 1024,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(!page.reply.eof, "the listing needs more than one page");
    let first_page = names(&page);
    let cookie = page.reply.entries.0.last().unwrap().cookie;
    let old_verf = nfs
        .write(&WRITE3args {
            file: file.clone(),
            offset: 0,
            count: 3,
            stable: stable_how::UNSTABLE,
            data: Opaque::borrowed(b"one"),
        })
        .await
        .unwrap()
        .unwrap()
        .verf;
    nfs.commit(&COMMIT3args { file: file.clone(), offset: 0, count: 0 }).await.unwrap().unwrap();
    drop(nfs);
    first.stop();

    let second = Served::start(dir.path(), "");
    let mut nfs = mount(&second).await;
    // The old handles, never looked up in this process.
    let read = nfs.read(&READ3args { file: file.clone(), offset: 0, count: 100 }).await.unwrap().unwrap();
    assert_eq!(&read.data[..], b"oneore");
    let written = nfs
        .write(&WRITE3args {
            file: file.clone(),
            offset: 6,
            count: 6,
            stable: stable_how::UNSTABLE,
            data: Opaque::borrowed(b" after"),
        })
        .await
        .unwrap()
        .unwrap();
    assert_ne!(written.verf, old_verf, "a new activation has a new write verifier");
    let committed =
        nfs.commit(&COMMIT3args { file: file.clone(), offset: 0, count: 0 }).await.unwrap().unwrap();
    assert_eq!(committed.verf, written.verf);
    assert_eq!(std::fs::read(dir.path().join("a/renamed.txt")).unwrap(), b"oneore after");
    let attr = nfs.getattr(&GETATTR3args { object: deep_dir.clone() }).await.unwrap().unwrap();
    assert_eq!(attr.obj_attributes.type_, ftype3::NF3DIR);

    // The cookie from the first process continues the listing.
    let mut seen: Vec<String> = first_page;
    let mut cookie = cookie;
    loop {
        let page = nfs
            .readdir(&READDIR3args {
                dir: many.clone(),
                cookie,
                cookieverf: cookieverf3::default(),
                count: 1024,
            })
            .await
            .unwrap()
            .unwrap();
        seen.extend(names(&page));
        if page.reply.eof {
            break;
        }
        cookie = page.reply.entries.0.last().unwrap().cookie;
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no entry listed twice across the restart");
    assert_eq!(unique.len(), 100 + 4, "100 files, b, renamed.txt, . and ..");
    second.stop();
}

#[tokio::test]
async fn a_removed_file_is_stale_in_the_next_process() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("gone"), b"x").unwrap();
    let first = Served::start(dir.path(), "");
    let mut nfs = mount(&first).await;
    let gone = lookup_path(&mut nfs, "gone").await;
    drop(nfs);
    first.stop();
    std::fs::remove_file(dir.path().join("gone")).unwrap();
    // The same inode number may come back for a new file; the handle must
    // not reach it.
    std::fs::write(dir.path().join("new"), b"y").unwrap();
    let second = Served::start(dir.path(), "");
    let mut nfs = mount(&second).await;
    let res = nfs.getattr(&GETATTR3args { object: gone }).await.unwrap();
    assert!(matches!(res, Nfs3Result::Err((nfsstat3::NFS3ERR_STALE, _))), "{res:?}");
    second.stop();
}
