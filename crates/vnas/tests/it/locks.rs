//! NLM locks on a vserver, asked with libnfs's NLM client (tools/nlmtool.c,
//! built by the tests): conflicts, a waiter granted when the holder
//! unlocks, the kernel's copy a local process meets, and the lock table
//! kept across a planned move and a SIGKILL failover (no client reclaims
//! anything); a client's reboot notice and an administrator's break
//! release a client's locks.

use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use crate::transfer::volume;

/// One nlmtool call; its output line.
fn nlm(ip: &str, args: &[&str]) -> String {
    let url = format!("nfs://{ip}/data?nfsport=2049&mountport=2049");
    let (op, rest) = args.split_first().unwrap();
    let output = Command::new(nlmtool()).arg(op).arg(&url).args(rest).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "nlmtool {args:?}: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn status(line: &str) -> &str {
    line.split_whitespace().find_map(|w| w.strip_prefix("status=")).unwrap_or("none")
}

/// Whether a local process can take a write lock on bytes 0..1 of `path`
/// (an OFD lock of its own): not while a client holds one through vnas.
fn local_can_lock(path: &std::path::Path) -> bool {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_len = 1;
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) == 0 }
}

fn held(api: &str) -> Vec<(String, String, u64, u64, String)> {
    let locks = cli_json(api, &["vserver", "locks", "locky"]);
    let mut held: Vec<_> = locks["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["client"].as_str().unwrap().to_string(),
                l["file"].as_str().unwrap().to_string(),
                l["start"].as_u64().unwrap(),
                l["length"].as_u64().unwrap(),
                l["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    held.sort();
    held
}

fn a_write(start: u64, len: u64) -> (String, String, u64, u64, String) {
    ("client-a".into(), "/data/f".into(), start, len, "write".into())
}

#[test]
fn locks_conflict_wait_and_move_with_the_vserver() {
    let top = temp_dir();
    let store = top.path().join("store");
    let ip = "127.0.14.1";
    let n1 = NodeProc::start("n1", store.as_os_str());
    let n2 = NodeProc::start("n2", store.as_os_str());
    let n3 = NodeProc::start("n3", store.as_os_str());
    let volume = volume(&top, "a");
    cli_json(&n1.api, &["vserver", "create", "locky", "--ip", ip, "--volume", &volume, "--node", "n1"]);
    let file = top.path().join("a").join("f");

    // Two clients: exclusive excludes, shared shares, disjoint ranges are
    // independent, TEST names the holder.
    assert_eq!(status(&nlm(ip, &["lock", "f", "client-a", "1", "w", "0", "100"])), "NLM4_GRANTED");
    assert_eq!(status(&nlm(ip, &["lock", "f", "client-b", "7", "w", "50", "10"])), "NLM4_DENIED");
    assert_eq!(status(&nlm(ip, &["lock", "f", "client-b", "7", "r", "200", "10"])), "NLM4_GRANTED");
    assert_eq!(status(&nlm(ip, &["lock", "f", "client-c", "3", "r", "205", "1"])), "NLM4_GRANTED", "shared");
    let test = nlm(ip, &["test", "f", "client-b", "7", "w", "0", "1"]);
    assert!(status(&test) == "NLM4_DENIED" && test.contains("holder_svid=1"), "{test}");
    assert!(test.contains("holder_start=0") && test.contains("holder_len=100"), "{test}");
    // The kernel holds a copy: a local process cannot take it either.
    assert!(!local_can_lock(&file), "a granted NLM lock is held in the kernel too");
    // The lock table, asked of the node that serves the vserver, from
    // any node's API.
    let locks = cli_json(&n3.api, &["vserver", "locks", "locky"]);
    assert_eq!(locks["node"], "n1");
    assert_eq!(held(&n3.api)[0], a_write(0, 100));
    assert_eq!(locks["clients"].as_array().unwrap().len(), 3, "{locks}");
    // Every change was recorded in the store before it was answered.
    assert_eq!(locks["granted"], 3, "{locks}");
    assert_eq!(locks["denied"], 1, "{locks}");
    assert_eq!(locks["recorded"], 3, "each grant recorded: {locks}");
    assert!(locks["record_us_mean"].as_u64().unwrap() > 0, "{locks}");
    // And in the metrics of the node serving it.
    let scrape = crate::metrics::scrape(&n1.api);
    let at = |metric: &str| crate::metrics::find(&scrape, metric, &[("vserver", "locky")]);
    assert_eq!(at("vnas_nlm_locks_held"), Some(3.0));
    assert_eq!(at("vnas_nlm_clients"), Some(3.0));
    assert_eq!(at("vnas_nlm_granted_total"), Some(3.0));
    assert_eq!(at("vnas_nlm_denied_total"), Some(1.0));
    assert_eq!(at("vnas_nlm_records_total"), Some(3.0));
    let (ok, table, _) = cli(&n2.api, &["vserver", "locks", "locky"]);
    assert!(
        ok && table.contains("client-a") && table.contains("/data/f") && table.contains("write"),
        "{table}"
    );

    // A planned move: every lock stays its holder's, nothing is reclaimed.
    let before = held(&n1.api);
    let moved = cli_json(&n1.api, &["vserver", "move", "locky", "--to", "n2"]);
    assert_eq!(moved["to"], "n2");
    assert_eq!(status(&nlm(ip, &["lock", "f", "client-b", "7", "w", "50", "10"])), "NLM4_DENIED");
    assert_eq!(held(&n1.api), before, "the same locks, now served by n2");
    assert_eq!(cli_json(&n1.api, &["vserver", "locks", "locky"])["node"], "n2");
    assert!(!local_can_lock(&file), "the new owner holds the kernel's copy");
    // A waiter: B blocks; when A lets go of the range B is granted (the
    // call back to its lock manager finds none here: it would poll).
    assert_eq!(status(&nlm(ip, &["lock", "f", "client-b", "7", "w", "50", "10", "block"])), "NLM4_BLOCKED");
    let waiting = cli_json(&n2.api, &["vserver", "locks", "locky"]);
    assert_eq!(waiting["waiting"].as_array().unwrap().len(), 1, "{waiting}");

    // A SIGKILL failover: the next owner restores what the dead one had
    // recorded before answering; A's lock is still A's.
    n2.kill();
    eventually(10, "another node serves locky", || {
        let view = cli_json(&n1.api, &["vserver", "show", "locky"]);
        view["state"] == "running" && view["node"] != "n2"
    });
    assert_eq!(status(&nlm(ip, &["lock", "f", "client-b", "7", "w", "50", "10"])), "NLM4_DENIED");
    assert_eq!(status(&nlm(ip, &["lock", "f", "client-a", "1", "w", "0", "100"])), "NLM4_GRANTED", "A's own");
    assert_eq!(held(&n1.api), before);
    assert_eq!(cli_json(&n1.api, &["vserver", "locks", "locky"])["waiting"].as_array().unwrap().len(), 1);
    // A unlocks part of its range: B's waiter is granted.
    assert_eq!(status(&nlm(ip, &["unlock", "f", "client-a", "1", "40", "30"])), "NLM4_GRANTED");
    let after = held(&n1.api);
    assert!(after.contains(&a_write(0, 40)) && after.contains(&a_write(70, 30)), "split: {after:?}");
    assert!(after.contains(&("client-b".into(), "/data/f".into(), 50, 10, "write".into())), "{after:?}");
    let history = cli_json(&n1.api, &["vserver", "history", "locky"]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["why"], "node down");
    let locks_note = last["locks"].as_str().unwrap_or_default();
    assert!(locks_note.contains("no grace"), "the history says no grace was needed: {last}");

    // A process on the server holds a lock (its own OFD lock): a client
    // is refused, TEST sees it, and one that waits is granted within the
    // lock manager's tick (250 ms) once the process lets go.
    let g = top.path().join("a").join("g");
    std::fs::write(&g, b"g").unwrap();
    let local = std::fs::OpenOptions::new().read(true).write(true).open(&g).unwrap();
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    assert_eq!(unsafe { libc::fcntl(local.as_raw_fd(), libc::F_OFD_SETLK, &lock) }, 0);
    assert_eq!(status(&nlm(ip, &["lock", "g", "client-d", "4", "w", "0", "0"])), "NLM4_DENIED");
    let test = nlm(ip, &["test", "g", "client-d", "4", "r", "0", "1"]);
    assert_eq!(status(&test), "NLM4_DENIED", "TEST sees the local process's lock: {test}");
    assert_eq!(status(&nlm(ip, &["lock", "g", "client-d", "4", "w", "0", "0", "block"])), "NLM4_BLOCKED");
    let released = std::time::Instant::now();
    drop(local);
    eventually(5, "the waiter granted once the local process let go", || {
        held(&n1.api).iter().any(|l| l.0 == "client-d" && l.1 == "/data/g")
    });
    eprintln!("a waiter behind a local process's lock granted {:?} after its release", released.elapsed());
    assert!(released.elapsed() < Duration::from_millis(1_500), "within the manager's 250 ms tick");
    assert!(!local_can_lock(&g), "and held in the kernel for it");
    assert_eq!(status(&nlm(ip, &["unlock", "g", "client-d", "4", "0", "0"])), "NLM4_GRANTED");

    // C reboots: its statd's notice releases what it held.
    assert_eq!(status(&nlm(ip, &["notify", "client-c", "5"])), "OK");
    assert!(!held(&n1.api).iter().any(|l| l.0 == "client-c"), "client-c's lock is gone");
    // An administrator breaks A's locks (a client that will not return).
    let broken = cli_json(&n1.api, &["vserver", "locks", "locky", "--break", "client-a"]);
    assert_eq!(broken["released"], 2);
    assert!(local_can_lock(&file), "A's kernel copy went with it");
    let (ok, _, err) = cli(&n1.api, &["vserver", "locks", "locky", "--break", "client-zz"]);
    assert!(!ok && err.contains("client_not_found"), "{err}");
    let (ok, _, err) = cli(&n1.api, &["vserver", "locks", "nosuch"]);
    assert!(!ok && err.contains("vserver_not_found"), "{err}");
    std::thread::sleep(Duration::from_millis(100));
    n1.stop();
    n3.stop();
}
