//! Export rules: who may mount, read-only exports, and identity squashing.
//! Squashing and permission checks need a root server (the server acts as
//! the client's user); those tests skip, loudly, without root.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::Opaque;

use crate::support::*;

fn create_args(dir: &nfs_fh3, name: &str) -> CREATE3args<'static> {
    CREATE3args {
        where_: diropargs3 { dir: dir.clone(), name: filename3::from(name.as_bytes().to_vec()) },
        how: createhow3::UNCHECKED(sattr3::default()),
    }
}

fn status<T: std::fmt::Debug, E>(res: Nfs3Result<T, E>) -> nfsstat3 {
    match res {
        Nfs3Result::Ok(_) => nfsstat3::NFS3_OK,
        Nfs3Result::Err((stat, _)) => stat,
    }
}

#[tokio::test]
async fn clients_outside_the_rule_cannot_mount() {
    let dir = temp_dir();
    let served = Served::start(dir.path(), "clients=198.18.0.0/15");
    assert!(try_mount_as(&served, "/data", 0, 0).await.is_err());
    let open = Served::start(dir.path(), "clients=127.0.0.0/8");
    mount(&open).await;
    served.stop();
    open.stop();
}

#[tokio::test]
async fn read_only_exports_refuse_changes() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("f"), b"data").unwrap();
    let served = Served::start(dir.path(), "ro");
    let mut nfs = mount(&served).await;
    let root = nfs.root_nfs_fh3();
    assert_eq!(status(nfs.create(&create_args(&root, "new")).await.unwrap()), nfsstat3::NFS3ERR_ROFS);
    let file = nfs
        .lookup(&LOOKUP3args { what: diropargs3 { dir: root, name: filename3::from(b"f".to_vec()) } })
        .await
        .unwrap()
        .unwrap()
        .object;
    let write = WRITE3args {
        file: file.clone(),
        offset: 0,
        count: 1,
        stable: stable_how::FILE_SYNC,
        data: Opaque::borrowed(b"x"),
    };
    assert_eq!(status(nfs.write(&write).await.unwrap()), nfsstat3::NFS3ERR_ROFS);
    let read = nfs.read(&READ3args { file, offset: 0, count: 10 }).await.unwrap().unwrap();
    assert_eq!(&read.data[..], b"data");
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"data");
    served.stop();
}

#[tokio::test]
async fn squashing_and_ownership() {
    if skip_unless_root("squashing_and_ownership") {
        return;
    }
    let dir = temp_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let owner = |name: &str| {
        let meta = std::fs::metadata(dir.path().join(name)).unwrap();
        (meta.uid(), meta.gid())
    };

    let trusting = Served::start(dir.path(), "no_root_squash");
    let mut as_user = mount_as(&trusting, "/data", 1000, 1000).await;
    let root = as_user.root_nfs_fh3();
    as_user.create(&create_args(&root, "by-1000")).await.unwrap().unwrap();
    assert_eq!(owner("by-1000"), (1000, 1000));
    let mut as_root = mount_as(&trusting, "/data", 0, 0).await;
    as_root.create(&create_args(&root, "by-root")).await.unwrap().unwrap();
    assert_eq!(owner("by-root"), (0, 0));
    trusting.stop();

    let squashing = Served::start(dir.path(), "root_squash,anonuid=4000,anongid=4000");
    let mut as_root = mount_as(&squashing, "/data", 0, 0).await;
    as_root.create(&create_args(&root, "squashed-root")).await.unwrap().unwrap();
    assert_eq!(owner("squashed-root"), (4000, 4000));
    squashing.stop();

    let all = Served::start(dir.path(), "all_squash");
    let mut as_user = mount_as(&all, "/data", 1000, 1000).await;
    as_user.create(&create_args(&root, "squashed-user")).await.unwrap().unwrap();
    assert_eq!(owner("squashed-user"), (65534, 65534));
    all.stop();
}

#[tokio::test]
async fn permissions_are_enforced_for_other_users() {
    if skip_unless_root("permissions_are_enforced_for_other_users") {
        return;
    }
    let dir = temp_dir();
    std::fs::write(dir.path().join("roots"), b"root's").unwrap();
    std::fs::set_permissions(dir.path().join("roots"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(dir.path().join("private"), b"secret").unwrap();
    std::fs::set_permissions(dir.path().join("private"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let served = Served::start(dir.path(), "");
    let mut nfs = mount_as(&served, "/data", 1000, 1000).await;
    let root = nfs.root_nfs_fh3();
    let lookup = |name: &str| LOOKUP3args {
        what: diropargs3 { dir: root.clone(), name: filename3::from(name.as_bytes().to_vec()) },
    };
    let roots = nfs.lookup(&lookup("roots")).await.unwrap().unwrap().object;
    let private = nfs.lookup(&lookup("private")).await.unwrap().unwrap().object;
    // Readable by all, writable by root only.
    nfs.read(&READ3args { file: roots.clone(), offset: 0, count: 10 }).await.unwrap().unwrap();
    let write = WRITE3args {
        file: roots,
        offset: 0,
        count: 1,
        stable: stable_how::FILE_SYNC,
        data: Opaque::borrowed(b"x"),
    };
    assert_eq!(status(nfs.write(&write).await.unwrap()), nfsstat3::NFS3ERR_ACCES);
    assert_eq!(
        status(nfs.read(&READ3args { file: private, offset: 0, count: 10 }).await.unwrap()),
        nfsstat3::NFS3ERR_ACCES
    );
    // The export root belongs to root with mode 700 (a temp dir): no
    // creating in it for uid 1000.
    assert_eq!(status(nfs.create(&create_args(&root, "nope")).await.unwrap()), nfsstat3::NFS3ERR_ACCES);
    assert_eq!(std::fs::read(dir.path().join("roots")).unwrap(), b"root's");
    served.stop();
}

#[tokio::test]
async fn the_owner_may_truncate_a_file_whose_mode_denies_them_write() {
    if skip_unless_root("the_owner_may_truncate_a_file_whose_mode_denies_them_write") {
        return;
    }
    // A process creates a file with mode 0 and ftruncates the descriptor it
    // holds: on NFSv3 that is SETATTR size from the owner.
    let dir = temp_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let served = Served::start(dir.path(), "");
    let mut owner = mount_as(&served, "/data", 1000, 1000).await;
    let root = owner.root_nfs_fh3();
    let made = owner
        .create(&CREATE3args {
            where_: diropargs3 { dir: root.clone(), name: filename3::from(b"mode0".to_vec()) },
            how: createhow3::UNCHECKED(sattr3 { mode: Nfs3Option::Some(0), ..sattr3::default() }),
        })
        .await
        .unwrap()
        .unwrap();
    let Nfs3Option::Some(file) = made.obj else { panic!("no handle") };
    assert_eq!(std::fs::metadata(dir.path().join("mode0")).unwrap().permissions().mode() & 0o777, 0);
    let truncate = |size: u64| SETATTR3args {
        object: file.clone(),
        new_attributes: sattr3 { size: Nfs3Option::Some(size), ..sattr3::default() },
        guard: Nfs3Option::None,
    };
    assert_eq!(status(owner.setattr(&truncate(4096)).await.unwrap()), nfsstat3::NFS3_OK);
    assert_eq!(std::fs::metadata(dir.path().join("mode0")).unwrap().len(), 4096);
    // Anyone else is still refused.
    let mut other = mount_as(&served, "/data", 2000, 2000).await;
    assert_eq!(status(other.setattr(&truncate(0)).await.unwrap()), nfsstat3::NFS3ERR_ACCES);
    assert_eq!(std::fs::metadata(dir.path().join("mode0")).unwrap().len(), 4096);
    assert_eq!(status(owner.setattr(&truncate(0)).await.unwrap()), nfsstat3::NFS3_OK);
    assert_eq!(std::fs::metadata(dir.path().join("mode0")).unwrap().len(), 0);
    served.stop();
}
