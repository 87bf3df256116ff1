//! NFSv4.1 as our users mount it: the Linux kernel client in a QEMU guest
//! (scripts/guest.sh locks on QEMU's user-mode network: no bed needed)
//! mounting `vnas serve --nfs4` with vers=4.1, and with no options through
//! Debian's mount.nfs (getting 4.2). Data written, synced and
//! read back both ways; create, rename, link, symlink, chmod, remove; an
//! fcntl lock that a v3 client (libnfs's NLM, tools/nlmtool.c) is refused,
//! and the other way round; a blocked fcntl waiter woken by the server's
//! callback; on 4.2, SEEK over holes, ALLOCATE, DEALLOCATE and COPY.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::kernel_locks::Guest;
use crate::support::*;

/// `sh CMD` in the guest: its output lines and exit status.
pub(crate) fn sh(guest: &mut Guest, command: &str) -> (Vec<String>, String) {
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

pub(crate) fn sh_ok(guest: &mut Guest, command: &str) -> Vec<String> {
    let (lines, status) = sh(guest, command);
    assert_eq!(status, "0", "{command}: {lines:?}");
    lines
}

/// The client's own count of each operation it sent on the mount at
/// `mount` (/proc/self/mountstats).
fn op_counts(guest: &mut Guest, mount: &str) -> std::collections::HashMap<String, u64> {
    let escaped = mount.replace('/', "\\/");
    let lines = sh_ok(
        guest,
        &format!("awk '/^device/{{on=0}} / on {escaped} /{{on=1}} on && /^[[:space:]]*[A-Z_]+:/{{print $1, $2}}' /proc/self/mountstats"),
    );
    lines
        .iter()
        .filter_map(|l| {
            let (op, n) = l.split_once(' ')?;
            Some((op.trim_end_matches(':').to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn the_kernel_client_mounts_nfs41_writes_renames_and_locks() {
    if skip_unless_root("the_kernel_client_mounts_nfs41_writes_renames_and_locks") {
        return;
    }
    let kit = crate::kernel_locks::guest_kit();
    let dir = temp_dir();
    // QEMU's user-mode network connects from unreserved host ports.
    let export = format!("/data={}:no_root_squash,insecure", dir.path().display());
    // Port 2049 too, so the guest can mount with no options at all.
    let server = Served::start_with(&[export], &["--nfs4", "--listen", "127.0.0.1:2049"]);
    let port = server.addr.port();
    let mut guest = Guest::boot_with(&kit, "user", "10.0.2.2", 240, &[("MOUNT_OPTS", "vers=4.1")]);
    let mounts = sh_ok(&mut guest, "grep ' /mnt ' /proc/mounts");
    assert!(mounts.iter().any(|m| m.contains(" nfs4 ") && m.contains("vers=4.1")), "{mounts:?}");
    // As `mount SERVER:/data /m42` does on a distribution: Debian's
    // mount.nfs, no options; it asks for the newest version first.
    sh_ok(&mut guest, "mkdir -p /m42 && mount.nfs 10.0.2.2:/data /m42");
    let mounts = sh_ok(&mut guest, "grep ' /m42 ' /proc/mounts");
    assert!(
        mounts.iter().any(|m| m.contains(" nfs4 ") && m.contains("vers=4.2")),
        "a mount with no options gets NFSv4.2: {mounts:?}"
    );

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

    // Removing what it just listed costs the client one REMOVE a file and
    // nothing else: each REMOVE's change_info is atomic, so the client
    // keeps its cache of the directory (not atomic, it looked each next
    // name up again and asked ACCESS: three calls a file).
    sh_ok(
        &mut guest,
        "mkdir /mnt/many && cd /mnt/many && i=0 && while [ $i -lt 50 ]; do touch f$i; i=$((i+1)); done",
    );
    sh_ok(&mut guest, "echo 3 > /proc/sys/vm/drop_caches; ls -l /mnt/many >/dev/null");
    let before = op_counts(&mut guest, "/mnt");
    sh_ok(&mut guest, "rm -f /mnt/many/f*");
    let after = op_counts(&mut guest, "/mnt");
    let sent = |op: &str| after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0);
    let mut sent_all: Vec<(String, u64)> =
        after.keys().map(|op| (op.clone(), sent(op))).filter(|(_, n)| *n > 0).collect();
    sent_all.sort();
    assert_eq!(sent("REMOVE"), 50, "{sent_all:?}");
    assert!(sent("LOOKUP") + sent("ACCESS") <= 4, "a remove after a listing looks nothing up: {sent_all:?}");
    sh_ok(&mut guest, "rmdir /mnt/many");

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
    assert_eq!(nlm(&["unlock", "f", "v3host", "1", "0", "1"]), "NLM4_GRANTED");

    // A process blocked in fcntl(F_SETLKW) behind another client's lock
    // gets it as soon as that is let go: the server calls the client back
    // on its session's back channel (CB_NOTIFY_LOCK) and it asks at once.
    // Without that the client polls at 0.1, 0.3, 0.7, 1.5, 3.1, 6.3 s...:
    // a lock let go 3.5 s into the wait would be taken about 2.8 s late.
    // (Two processes of one client wait for each other in the client.)
    assert_eq!(nlm(&["lock", "f", "v3host", "1", "w", "0", "0"]), "NLM4_GRANTED");
    assert!(guest.ask("B open /mnt/f").contains(" ok"));
    guest.send("B lockw w 0 0");
    guest.expect("guest: B waiting", Duration::from_secs(10));
    let early = guest.wait_for("guest: B ", Duration::from_millis(3500));
    assert!(early.is_none(), "B waits while the v3 client holds it: {early:?}");
    let let_go = std::time::Instant::now();
    assert_eq!(nlm(&["unlock", "f", "v3host", "1", "0", "0"]), "NLM4_GRANTED");
    let got = guest.expect("guest: B ", Duration::from_secs(40));
    let late = let_go.elapsed();
    assert!(got.contains("granted"), "{got}");
    assert!(
        late < Duration::from_secs(1),
        "the waiter got the lock {late:?} after it was let go (polling: seconds)"
    );
    eprintln!("a blocked v4.1 waiter got the lock {late:?} after the v3 client let it go");
    assert!(guest.ask("B close").contains(" ok"));

    // NFSv4.2 (the mount with no options): SEEK over holes, ALLOCATE,
    // DEALLOCATE and COPY answer as the server's own filesystem does.
    let sparse = dir.path().join("sparse.bin");
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::create(&sparse).unwrap();
        file.set_len(2 << 20).unwrap();
        file.write_all_at(&[7u8; 4096], 1 << 20).unwrap();
        file.sync_all().unwrap();
    }
    let local_seek = |whence: libc::c_int, from: i64| {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&sparse).unwrap();
        unsafe { libc::lseek(file.as_raw_fd(), from, whence) }
    };
    assert!(guest.ask("B open /m42/sparse.bin").contains(" ok"));
    let at = |line: String| -> i64 {
        line.split_whitespace().find_map(|w| w.strip_prefix("at=")).and_then(|v| v.parse().ok()).unwrap_or(-1)
    };
    let data = at(guest.ask("B seek data 0"));
    assert_eq!(data, local_seek(libc::SEEK_DATA, 0), "SEEK_DATA over v4.2");
    assert_eq!(at(guest.ask(&format!("B seek hole {data}"))), local_seek(libc::SEEK_HOLE, data), "SEEK_HOLE");
    let blocks = || std::fs::metadata(&sparse).unwrap().blocks();
    let before = blocks();
    assert!(guest.ask("B alloc 0 65536").contains(" ok"));
    assert!(blocks() >= before + 128, "ALLOCATE reserved 64 KiB: {before} -> {} blocks", blocks());
    let before = blocks();
    assert!(guest.ask("B punch 1048576 4096").contains(" ok"));
    assert_eq!(blocks(), before - 8, "DEALLOCATE freed the 4 KiB written");
    assert_eq!(std::fs::metadata(&sparse).unwrap().len(), 2 << 20, "the size kept");
    let copied = guest.ask("B copyto /m42/copy.bin 2097152");
    assert!(copied.contains("copied=2097152"), "{copied}");
    assert!(std::fs::read(dir.path().join("copy.bin")).unwrap() == std::fs::read(&sparse).unwrap(), "COPY");
    assert!(guest.ask("B close").contains(" ok"));
    // The kernel falls back to reading and writing itself when COPY is
    // refused: its own count of each operation says the server did it.
    let stats = sh_ok(&mut guest, "awk '/^device/{on=0} / on \\/m42 /{on=1} on && /^[[:space:]]*(SEEK|ALLOCATE|DEALLOCATE|COPY):/{print $1, $2, $NF}' /proc/self/mountstats");
    for op in ["SEEK:", "ALLOCATE:", "DEALLOCATE:", "COPY:"] {
        let line = stats.iter().find(|l| l.starts_with(op)).unwrap_or_else(|| panic!("{op} in {stats:?}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(words[1] != "0" && words[2] == "0", "{op} sent and never failed (ops, errors): {line}");
    }

    guest.send("quit");
    let _ = guest.expect("guest: quit", Duration::from_secs(10));
    server.stop();
}
