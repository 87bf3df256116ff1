//! NFSv4.1 as our users mount it: the Linux kernel client in a QEMU guest
//! (scripts/guest.sh locks on QEMU's user-mode network: no bed needed)
//! mounting `vnas serve --nfs4` with vers=4.1. Data written, synced and
//! read back both ways; create, rename, link, symlink, chmod, remove; an
//! fcntl lock that a v3 client (libnfs's NLM, tools/nlmtool.c) is refused,
//! and the other way round.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::kernel_locks::Guest;
use crate::support::*;

/// `sh CMD` in the guest: its output lines and exit status.
fn sh(guest: &mut Guest, command: &str) -> (Vec<String>, String) {
    guest.send(&format!("sh {command}"));
    let mut lines = Vec::new();
    loop {
        let line = guest.expect("guest: sh", Duration::from_secs(60));
        if let Some(status) = line.strip_prefix("guest: sh done status=") {
            return (lines, status.to_string());
        }
        lines.push(line.strip_prefix("guest: sh: ").unwrap_or(&line).to_string());
    }
}

fn sh_ok(guest: &mut Guest, command: &str) -> Vec<String> {
    let (lines, status) = sh(guest, command);
    assert_eq!(status, "0", "{command}: {lines:?}");
    lines
}

#[test]
fn the_kernel_client_mounts_nfs41_writes_renames_and_locks() {
    if skip_unless_root("the_kernel_client_mounts_nfs41_writes_renames_and_locks") {
        return;
    }
    let kit = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guestkit");
    let built = Command::new("bash")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/guest.sh"))
        .arg("build")
        .arg(&kit)
        .status()
        .unwrap();
    assert!(built.success(), "scripts/guest.sh build");
    let dir = temp_dir();
    // QEMU's user-mode network connects from unreserved host ports.
    let export = format!("/data={}:no_root_squash,insecure", dir.path().display());
    let server = Served::start_with(&[export], &["--nfs4"]);
    let port = server.addr.port();
    let opts = format!("vers=4.1,port={port}");
    let mut guest = Guest::boot_with(&kit, "user", "10.0.2.2", 240, &[("MOUNT_OPTS", &opts)]);

    let mounts = sh_ok(&mut guest, "grep ' /mnt ' /proc/mounts");
    assert!(mounts.iter().any(|m| m.contains(" nfs4 ") && m.contains("vers=4.1")), "{mounts:?}");

    // Written and synced in the guest, read on the server.
    sh_ok(&mut guest, "seq 1 100000 > /mnt/seq.txt && sync");
    let expected: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    assert!(
        std::fs::read(dir.path().join("seq.txt")).unwrap() == expected.as_bytes(),
        "seq.txt on the server"
    );
    // Written on the server, read in the guest from the server (caches
    // dropped), compared with what the guest wrote.
    std::fs::write(dir.path().join("from-server.txt"), &expected).unwrap();
    sh_ok(&mut guest, "echo 3 > /proc/sys/vm/drop_caches; cmp /mnt/seq.txt /mnt/from-server.txt");

    // The namespace: mkdir, rename into it, hard and symbolic links,
    // chmod, remove.
    sh_ok(&mut guest, "mkdir /mnt/d && mv /mnt/seq.txt /mnt/d/moved.txt && ln /mnt/d/moved.txt /mnt/hard");
    sh_ok(&mut guest, "ln -s d/moved.txt /mnt/sym && chmod 600 /mnt/hard && rm /mnt/from-server.txt");
    let listing =
        sh_ok(&mut guest, "cd /mnt && ls -l d hard sym | tr -s ' ' | cut -d' ' -f1,2 && cat sym | wc -l");
    assert!(listing.contains(&"100000".to_string()), "reading through the symlink: {listing:?}");
    assert!(listing.iter().any(|l| l.starts_with("-rw------- 2")), "mode and link count: {listing:?}");
    use std::os::unix::fs::MetadataExt;
    let moved = std::fs::metadata(dir.path().join("d/moved.txt")).unwrap();
    assert_eq!((moved.nlink(), moved.mode() & 0o777), (2, 0o600));
    assert_eq!(std::fs::read_link(dir.path().join("sym")).unwrap(), PathBuf::from("d/moved.txt"));
    assert!(!dir.path().join("from-server.txt").exists() && !dir.path().join("seq.txt").exists());
    sh_ok(&mut guest, "rm -r /mnt/d /mnt/hard /mnt/sym");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "all removed");

    // Locks: the guest's fcntl lock over v4.1 and a v3 client's NLM lock
    // exclude each other.
    let nlm = |args: &[&str]| {
        let url = format!("nfs://127.0.0.1/data?nfsport={port}&mountport={port}");
        let (op, rest) = args.split_first().unwrap();
        let out = Command::new(nlmtool()).arg(op).arg(&url).args(rest).output().unwrap();
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        line.split_whitespace().find_map(|w| w.strip_prefix("status=")).unwrap_or("none").to_string()
    };
    assert!(guest.ask("A open /mnt/f").contains(" ok"));
    let first = guest.ask("A lock w 0 0");
    assert!(first.contains("granted"), "{first}");
    assert_eq!(nlm(&["lock", "f", "v3host", "1", "w", "0", "1"]), "NLM4_DENIED", "the v4 lock holds");
    assert!(guest.ask("A unlock 0 0").contains(" ok"));
    assert_eq!(nlm(&["lock", "f", "v3host", "1", "w", "0", "1"]), "NLM4_GRANTED", "unlocked over v4");
    let refused = guest.ask("A lock w 0 0");
    assert!(refused.contains("denied"), "the v3 lock holds: {refused}");
    assert_eq!(nlm(&["unlock", "f", "v3host", "1", "0", "1"]), "NLM4_GRANTED");
    assert!(guest.ask("A lock w 0 0").contains("granted"));
    assert!(guest.ask("A close").contains(" ok"));
    assert_eq!(nlm(&["lock", "f", "v3host", "1", "w", "0", "1"]), "NLM4_GRANTED", "close releases");

    guest.send("quit");
    let _ = guest.expect("guest: quit", Duration::from_secs(10));
    server.stop();
}
