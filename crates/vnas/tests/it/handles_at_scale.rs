//! Handles on an export of realistic size: over two million files on a
//! filesystem of their own (ext4 on a loop device). An independent client
//! holds handles across a restart of the server and across a failover
//! between nodes, on a cold cache, and every one resolves at once; a
//! removed file's handle is stale even after its inode number is reused.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nfs3_types::nfs3::*;

use crate::support::*;

const DIRS: usize = 2100;
const FILES_PER_DIR: usize = 1000;
const DEPTH: usize = 20;
/// A first call on a held handle, cold cache included, costs one
/// `open_by_handle_at`: a read of the inode from the disk (for a directory,
/// of its ancestors too, which the kernel reconnects). Run alone on this
/// VM the median is 2-5 ms (the target is 5 ms); other tests share the
/// disk meanwhile, so the test allows twice that for the median, and for
/// each call far below what a walk of the tree costs (a second and more).
const FIRST_CALL_MEDIAN_MAX: Duration = Duration::from_millis(10);
const FIRST_CALL_MAX: Duration = Duration::from_millis(100);

/// An ext4 filesystem on a loop device over a sparse file, unmounted and
/// removed when dropped.
struct LoopFs {
    image: PathBuf,
    mount: PathBuf,
}

impl LoopFs {
    fn new(dir: &Path, inodes: usize) -> LoopFs {
        let image = dir.join("fs.img");
        let mount = dir.join("mnt");
        std::fs::create_dir(&mount).unwrap();
        std::fs::File::create(&image).unwrap().set_len(6 << 30).unwrap();
        run("mkfs.ext4", &["-q", "-F", "-N", &inodes.to_string(), image.to_str().unwrap()]);
        run("mount", &["-o", "loop", image.to_str().unwrap(), mount.to_str().unwrap()]);
        LoopFs { image, mount }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Everything written reaches the disk, then the kernel forgets its caches:
/// the next lookups read inodes and directories from the disk.
fn cold_caches() {
    run("sync", &[]);
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").unwrap();
}

/// 2,100 directories of 1,000 empty files each, and a 20-deep path.
fn populate(root: &Path) -> PathBuf {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for part in 0..2 {
            scope.spawn(move || {
                for d in (part..DIRS).step_by(2) {
                    let dir = root.join(format!("d{d:04}"));
                    std::fs::create_dir(&dir).unwrap();
                    let fd =
                        rustix::fs::open(&dir, rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
                    for f in 0..FILES_PER_DIR {
                        rustix::fs::mknodat(
                            &fd,
                            format!("f{f:04}"),
                            rustix::fs::FileType::RegularFile,
                            rustix::fs::Mode::from_raw_mode(0o644),
                            0,
                        )
                        .unwrap();
                    }
                }
            });
        }
    });
    let mut deep = root.to_path_buf();
    for level in 0..DEPTH {
        deep = deep.join(format!("level{level}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("bottom.txt"), b"twenty levels down\n").unwrap();
    eprintln!("made {} files in {:?}", DIRS * FILES_PER_DIR, started.elapsed());
    deep.join("bottom.txt")
}

async fn lookup_path(nfs: &mut Connection, path: &str) -> nfs_fh3 {
    let mut fh = nfs.root_nfs_fh3();
    for name in path.split('/').filter(|c| !c.is_empty()) {
        let args =
            LOOKUP3args { what: diropargs3 { dir: fh, name: filename3::from(name.as_bytes().to_vec()) } };
        fh = nfs.lookup(&args).await.unwrap().unwrap().object;
    }
    fh
}

/// GETATTR and (for files) READ on each held handle through a connection
/// that has never seen them: each succeeds, the first calls within their
/// bounds. Returns the first calls' times, sorted.
async fn held_handles_work(nfs: &mut Connection, held: &[(String, nfs_fh3, u64)]) -> Vec<Duration> {
    let mut times = Vec::new();
    for (path, fh, ino) in held {
        let started = Instant::now();
        let attr = nfs.getattr(&GETATTR3args { object: fh.clone() }).await.unwrap();
        let took = started.elapsed();
        let Nfs3Result::Ok(attr) = attr else { panic!("GETATTR of the held handle of {path}: {attr:?}") };
        assert_eq!(attr.obj_attributes.fileid, *ino, "{path}");
        assert!(took <= FIRST_CALL_MAX, "the first call on {path} took {took:?}");
        times.push(took);
        if attr.obj_attributes.type_ == ftype3::NF3REG {
            let read = nfs.read(&READ3args { file: fh.clone(), offset: 0, count: 64 }).await.unwrap();
            assert!(matches!(read, Nfs3Result::Ok(_)), "READ of {path}: {read:?}");
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    assert!(median <= FIRST_CALL_MEDIAN_MAX, "first calls took {times:?}");
    times
}

async fn hold(nfs: &mut Connection, root: &Path, paths: &[&str]) -> Vec<(String, nfs_fh3, u64)> {
    let mut held = Vec::new();
    for path in paths {
        let fh = lookup_path(nfs, path).await;
        let ino = std::fs::symlink_metadata(root.join(path.trim_start_matches('/'))).unwrap().ino();
        held.push((path.to_string(), fh, ino));
    }
    held
}

#[tokio::test(flavor = "multi_thread")]
async fn handles_on_two_million_files_survive_restart_and_failover() {
    if skip_unless_root("handles_on_two_million_files_survive_restart_and_failover") {
        return;
    }
    let top = temp_dir();
    let fs = LoopFs::new(top.path(), DIRS * FILES_PER_DIR + 100_000);
    let export = fs.mount.join("export");
    std::fs::create_dir(&export).unwrap();
    let deep = populate(&export);
    let deep = format!("/{}", deep.strip_prefix(&export).unwrap().display());
    let paths = [deep.as_str(), "/d2099/f0999", "/d0000/f0000", "/d1050/f0500", "/d1050", "/level0/level1"];

    // Across a restart of the server process, on a cold cache.
    let served = Served::start(&export, "");
    let mut nfs = mount(&served).await;
    let held = hold(&mut nfs, &export, &paths).await;
    drop(nfs);
    served.stop();
    cold_caches();
    let served = Served::start(&export, "");
    let mut nfs = mount(&served).await;
    let times = held_handles_work(&mut nfs, &held).await;
    eprintln!("after a restart, first calls on held handles (cold cache): {times:?}");

    // A removed file's handle is stale, even when a new file took its
    // inode number; the new file has a handle of its own that works.
    let victim = held.iter().find(|(p, _, _)| p == "/d1050/f0500").unwrap().clone();
    let dir = lookup_path(&mut nfs, "/d1050").await;
    let removed = nfs
        .remove(&REMOVE3args {
            object: diropargs3 { dir: dir.clone(), name: filename3::from(b"f0500".to_vec()) },
        })
        .await
        .unwrap();
    assert!(matches!(removed, Nfs3Result::Ok(_)));
    let mut reused = None;
    for i in 0..1000 {
        let name = format!("new{i}");
        let made = nfs
            .create(&CREATE3args {
                where_: diropargs3 { dir: dir.clone(), name: filename3::from(name.clone().into_bytes()) },
                how: createhow3::UNCHECKED(sattr3::default()),
            })
            .await
            .unwrap()
            .unwrap();
        let Nfs3Option::Some(fh) = made.obj else { panic!("no handle") };
        if std::fs::metadata(export.join("d1050").join(&name)).unwrap().ino() == victim.2 {
            reused = Some(fh);
            break;
        }
    }
    let reused = reused.expect("ext4 gave the freed inode number to a new file");
    let stale = nfs.getattr(&GETATTR3args { object: victim.1.clone() }).await.unwrap();
    assert!(matches!(stale, Nfs3Result::Err((nfsstat3::NFS3ERR_STALE, _))), "{stale:?}");
    assert_ne!(reused, victim.1);
    let fresh = nfs.getattr(&GETATTR3args { object: reused }).await.unwrap().unwrap();
    assert_eq!(fresh.obj_attributes.fileid, victim.2);
    drop(nfs);
    served.stop();

    // Across a failover between nodes: the owner is killed, the survivor
    // takes the vserver over with a cold cache.
    let store = top.path().join("store");
    let n1 = NodeProc::start("n1", &store);
    let n2 = NodeProc::start("n2", &store);
    let volume = format!("/data={}", export.display());
    cli_json(
        &n1.api,
        &["vserver", "create", "big", "--ip", "127.0.16.1", "--volume", &volume, "--node", "n1"],
    );
    let mut nfs = mount_vserver("127.0.16.1", "/data", 0, 0).await.unwrap();
    let held_here =
        hold(&mut nfs, &export, &paths.iter().filter(|p| **p != "/d1050/f0500").copied().collect::<Vec<_>>())
            .await;
    drop(nfs);
    n1.kill();
    cold_caches();
    eventually(10, "n2 to take the vserver over", || {
        let view = cli_json(&n2.api, &["vserver", "show", "big"]);
        view["node"] == "n2" && view["state"] == "running"
    });
    let mut nfs = mount_vserver("127.0.16.1", "/data", 0, 0).await.unwrap();
    let times = held_handles_work(&mut nfs, &held_here).await;
    eprintln!("after a failover, first calls on held handles (cold cache): {times:?}");
    drop(nfs);
    n2.stop();
}
