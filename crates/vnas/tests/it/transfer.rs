//! Transfers with clients at work: planned moves back and forth, failover
//! after SIGKILL and after SIGSTOP of the owner, and drains. The client is
//! our libnfs probe (tools/nfsprobe.c, built by the tests): it writes and
//! reads back a record every 20 ms, reconnecting as a normal client does,
//! and fails on any error or mismatch.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// The nfs3_client verifier on its own thread and runtime.
pub fn background_verifier(ip: &str, seconds: u64) -> std::thread::JoinHandle<u64> {
    let ip = ip.to_string();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(crate::verifier::run(ip, seconds))
    })
}

impl Probe {
    pub fn start(ip: &str, seconds: u32) -> Probe {
        Probe::start_with(ip, seconds, true)
    }

    /// `commit` false: round trips without a COMMIT, so that only the
    /// server's pauses count (not the disk's, under other tests' fsyncs).
    pub fn start_with(ip: &str, seconds: u32, commit: bool) -> Probe {
        let url = format!("nfs://{ip}/data?nfsport=2049&mountport=2049");
        let child = Command::new(nfsprobe())
            .args(["probe", &url, &seconds.to_string(), "20"])
            .env("NFSPROBE_COMMIT", if commit { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        Probe(child)
    }
}

pub fn history(api: &str, name: &str) -> Vec<Value> {
    cli_json(api, &["vserver", "history", name]).as_array().unwrap().clone()
}

pub fn volume(top: &tempfile::TempDir, name: &str) -> String {
    let dir = top.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    format!("/data={}", dir.display())
}

#[test]
fn planned_moves_back_and_forth_under_load() {
    let top = temp_dir();
    let store = top.path().join("store");
    planned_moves(&top, store.as_os_str(), "127.0.12");
}

/// The store is a directory or an etcd:// URL; `net` is a /24 of
/// loopback addresses of the test's own.
fn planned_moves(top: &tempfile::TempDir, store: &std::ffi::OsStr, net: &str) {
    let (ip1, ip2) = (format!("{net}.1"), format!("{net}.2"));
    let n1 = NodeProc::start("n1", store);
    let n2 = NodeProc::start("n2", store);
    cli_json(
        &n1.api,
        &["vserver", "create", "moving", "--ip", &ip1, "--volume", &volume(top, "a"), "--node", "n1"],
    );
    cli_json(
        &n1.api,
        &["vserver", "create", "still", "--ip", &ip2, "--volume", &volume(top, "b"), "--node", "n2"],
    );
    let moving = Probe::start(&ip1, 8);
    let still = Probe::start(&ip2, 7);
    let verifier = background_verifier(&ip1, 7);
    let mut pauses = Vec::new();
    for i in 0..6 {
        let to = if i % 2 == 0 { "n2" } else { "n1" };
        let result = cli_json(&n2.api, &["vserver", "move", "moving", "--to", to]);
        assert_eq!((result["to"].as_str(), result["vserver"]["state"].as_str()), (Some(to), Some("running")));
        pauses.push(result["pause_ms"].as_u64().unwrap());
        std::thread::sleep(Duration::from_millis(300));
    }
    let gap = moving.finish();
    let undisturbed = still.finish();
    let blocks = verifier.join().unwrap();
    assert!(blocks > 10, "the nfs3_client verifier made progress: {blocks} blocks");
    eprintln!("move pauses {pauses:?} ms; client max gap {gap} ms; other vserver's max gap {undisturbed} ms");
    // The README: tens of ms. The probe's gap adds its own 20 ms interval
    // and a COMMIT, which the disk can stall ~100 ms under the other
    // tests' fsyncs: 250 ms. Measured 55-118 ms (other vserver 35-77).
    assert!(gap <= 250, "a planned move is a pause of tens of ms, not {gap} ms");
    assert!(undisturbed <= 250, "the other vserver's clients are not disturbed: {undisturbed} ms");
    let history = history(&n1.api, "moving");
    assert_eq!(history.len(), 7, "start and six moves: {history:?}");
    assert!(history[1..].iter().all(|t| t["why"] == "move"));
    check_history(&history);
    // Moving where it already is, or to a node that does not exist.
    let (ok, _, err) = cli(&n1.api, &["vserver", "move", "moving", "--to", "n1"]);
    assert!(!ok && err.contains("already_there"), "{err}");
    let (ok, _, err) = cli(&n1.api, &["vserver", "move", "moving", "--to", "n7"]);
    assert!(!ok && err.contains("node_not_found"), "{err}");
    // Without --to, placement picks the other node.
    assert_eq!(cli_json(&n1.api, &["vserver", "move", "moving"])["to"], "n2");
    n1.stop();
    n2.stop();
}

#[test]
fn failover_after_the_owner_is_killed() {
    let top = temp_dir();
    let store = top.path().join("store");
    // The README: ~0.1-0.2 s (the dead node's lock is released at once);
    // measured 38-54 ms. 500 ms leaves room for a loaded machine.
    failover(&top, store.as_os_str(), "127.0.13", 500);
}

/// `gap_max_ms`: the longest pause the client may see.
fn failover(top: &tempfile::TempDir, store: &std::ffi::OsStr, net: &str, gap_max_ms: u64) {
    let (ip1, ip2) = (format!("{net}.1"), format!("{net}.2"));
    let n1 = NodeProc::start("n1", store);
    let n2 = NodeProc::start("n2", store);
    let n3 = NodeProc::start("n3", store);
    cli_json(
        &n2.api,
        &["vserver", "create", "doomed", "--ip", &ip1, "--volume", &volume(top, "a"), "--node", "n1"],
    );
    cli_json(
        &n2.api,
        &["vserver", "create", "other", "--ip", &ip2, "--volume", &volume(top, "b"), "--node", "n3"],
    );
    // Data acknowledged as stable before the failover (nfs-cp commits).
    let local = top.path().join("local.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let url = |path: &str| format!("nfs://{ip1}/data{path}?nfsport=2049&mountport=2049");
    let copied =
        Command::new("nfs-cp").arg(&local).arg(url("/stable.bin")).stdout(Stdio::null()).status().unwrap();
    assert!(copied.success());
    let probe = Probe::start(&ip1, 5);
    let other = Probe::start(&ip2, 4);
    let verifier = background_verifier(&ip1, 4);
    std::thread::sleep(Duration::from_millis(500));
    n1.kill();
    let gap = probe.finish();
    let undisturbed = other.finish();
    assert!(verifier.join().unwrap() > 10, "the nfs3_client verifier made progress");
    assert!(undisturbed <= 250, "the other vserver's clients are not disturbed: {undisturbed} ms");
    let back = top.path().join("back.bin");
    let copied =
        Command::new("nfs-cp").arg(url("/stable.bin")).arg(&back).stdout(Stdio::null()).status().unwrap();
    assert!(copied.success());
    assert!(std::fs::read(&back).unwrap() == data, "acknowledged data survived the failover byte for byte");
    let view = cli_json(&n2.api, &["vserver", "show", "doomed"]);
    assert_eq!(view["state"], "running");
    // The least loaded survivor took it: n2 (n3 hosts `other`).
    assert_eq!(view["node"], "n2");
    let history = history(&n2.api, "doomed");
    let last = history.last().unwrap();
    assert_eq!(
        (last["why"].as_str(), last["from"].as_str(), last["to"].as_str()),
        (Some("node down"), Some("n1"), Some("n2"))
    );
    check_history(&history);
    eprintln!("failover pause {} ms; client max gap {gap} ms", last["pause_ms"]);
    assert!(gap <= gap_max_ms, "a failover is a pause of at most {gap_max_ms} ms, not {gap} ms");
    let pause = last["pause_ms"].as_u64().unwrap();
    assert!(pause <= gap_max_ms, "the recorded pause is the client's, within {gap_max_ms} ms: {pause} ms");
    let nodes = cli_json(&n2.api, &["node", "list"]);
    let n1_view = nodes.as_array().unwrap().iter().find(|n| n["name"] == "n1").unwrap().clone();
    assert_eq!(n1_view["alive"], false);
    n2.stop();
    n3.stop();
}

#[test]
fn a_frozen_owner_loses_its_vservers_and_fences_itself() {
    let top = temp_dir();
    let store = top.path().join("store");
    let n1 = NodeProc::start("n1", &store);
    let n2 = NodeProc::start("n2", &store);
    cli_json(
        &n2.api,
        &[
            "vserver",
            "create",
            "frozen",
            "--ip",
            "127.0.14.1",
            "--volume",
            &volume(&top, "a"),
            "--node",
            "n1",
        ],
    );
    let probe = Probe::start("127.0.14.1", 6);
    let verifier = background_verifier("127.0.14.1", 5);
    n1.signal(rustix::process::Signal::STOP);
    eventually(5, "n2 to take the vserver", || {
        cli_json(&n2.api, &["vserver", "show", "frozen"])["node"] == "n2"
    });
    std::thread::sleep(Duration::from_millis(1500));
    n1.signal(rustix::process::Signal::CONT);
    probe.finish();
    assert!(verifier.join().unwrap() > 0, "the nfs3_client verifier made progress");
    // The thawed node gave up what it no longer owns, and took nothing
    // back: asked of the node itself.
    eventually(5, "n1 to serve nothing", || served_by(&n1.api).is_empty());
    assert_eq!(served_by(&n2.api), ["frozen"]);
    let view = cli_json(&n1.api, &["vserver", "show", "frozen"]);
    assert_eq!((view["node"].as_str(), view["state"].as_str()), (Some("n2"), Some("running")));
    let history = history(&n1.api, "frozen");
    eprintln!("history of frozen: {history:?}");
    check_history(&history);
    assert!(
        history.iter().any(|t| t["why"] == "node down" && t["from"] == "n1" && t["to"] == "n2"),
        "{history:?}"
    );
    n1.stop();
    n2.stop();
}

#[test]
fn drain_moves_everything_off_a_node() {
    let top = temp_dir();
    let store = top.path().join("store");
    let n1 = NodeProc::start("n1", &store);
    let n2 = NodeProc::start("n2", &store);
    for i in 1..=5 {
        let name = format!("d{i}");
        let ip = format!("127.0.15.{i}");
        cli_json(
            &n1.api,
            &["vserver", "create", &name, "--ip", &ip, "--volume", &volume(&top, &name), "--node", "n1"],
        );
    }
    let probe = Probe::start("127.0.15.3", 4);
    let (ok, out, err) = cli(&n2.api, &["node", "drain", "n1"]);
    assert!(ok, "{err}");
    assert!(out.contains("node n1 drained: 5 vserver(s) moved"), "{out}");
    assert!(err.contains("5/5 moved"), "progress shown: {err}");
    let gap = probe.finish();
    eprintln!("drain: client max gap {gap} ms");
    // A drain is planned moves: the same bound.
    assert!(gap <= 250, "a drain moves each vserver with a pause of tens of ms, not {gap} ms");
    let views = cli_json(&n2.api, &["vserver", "list"]);
    assert!(
        views.as_array().unwrap().iter().all(|v| v["node"] == "n2" && v["state"] == "running"),
        "{views}"
    );
    // A drained node gets no new vservers; undrained, it does again.
    let created = cli_json(
        &n1.api,
        &["vserver", "create", "new", "--ip", "127.0.15.9", "--volume", &volume(&top, "new")],
    );
    assert_eq!(created["node"], "n2");
    let (ok, out, _) = cli(&n1.api, &["node", "undrain", "n1"]);
    assert!(ok && out.contains("undrained"), "{out}");
    assert_eq!(cli_json(&n1.api, &["vserver", "move", "new"])["to"], "n1");
    let (ok, _, err) = cli(&n1.api, &["node", "drain", "n9"]);
    assert!(!ok && err.contains("node_not_found"), "{err}");
    n1.stop();
    n2.stop();
}

/// A move where one side dies at each step of the protocol: the vserver
/// ends up served by exactly one live node, and its client sees no error.
#[test]
fn a_node_dying_at_each_step_of_a_move() {
    // (the step, which side dies there)
    let cases = [
        ("handoff-before-stop", "source"),
        ("handoff-after-stop", "source"),
        ("handoff-after-cas", "source"),
        ("target-prepared", "target"),
        ("target-before-serving", "target"),
    ];
    for (i, (step, side)) in cases.into_iter().enumerate() {
        let top = temp_dir();
        let store = top.path().join("store");
        let ip = format!("127.0.17.{}", i + 1);
        let (mut n1, mut n2) = if side == "source" {
            (NodeProc::start_with("n1", &store, Some(step)), NodeProc::start("n2", &store))
        } else {
            (NodeProc::start("n1", &store), NodeProc::start_with("n2", &store, Some(step)))
        };
        let n3 = NodeProc::start("n3", &store);
        cli_json(
            &n3.api,
            &["vserver", "create", "m", "--ip", &ip, "--volume", &volume(&top, "a"), "--node", "n1"],
        );
        let probe = Probe::start(&ip, 6);
        // The move itself may report a failure (its target died); what
        // matters is where the vserver ends up.
        let _ = cli(&n3.api, &["vserver", "move", "m", "--to", "n2"]);
        let dead = if side == "source" { &mut n1 } else { &mut n2 };
        eventually(10, &format!("{side} to die at {step}"), || dead.exited());
        eventually(15, &format!("m to be served again after {step}"), || {
            let view = cli_json(&n3.api, &["vserver", "show", "m"]);
            let survivor = if side == "source" { "n2" } else { "n1" };
            view["state"] == "running" && (view["node"] == survivor || view["node"] == "n3")
        });
        let gap = probe.finish();
        eprintln!("{side} dying at {step}: client max gap {gap} ms");
        // A failover (the dead node's lock is released at once) after part
        // of a move: measured 78-325 ms; the failover's bound (500 ms) and
        // the move's stop and sync before it.
        assert!(gap <= 1000, "{side} dying at {step}: a pause of at most 1 s, not {gap} ms");
        let history = history(&n3.api, "m");
        check_history(&history);
        let owner = cli_json(&n3.api, &["vserver", "show", "m"])["node"].clone();
        assert_eq!(history.last().unwrap()["to"], owner, "{step}: {history:?}");
        let nodes = cli_json(&n3.api, &["node", "list"]);
        let serving = serving_nodes(&nodes, "m");
        assert_eq!(serving, [owner.as_str().unwrap()], "{step}: exactly one node serves it: {nodes}");
    }
}

/// The same transfers with the common volume on a real three-member etcd.
#[cfg(feature = "etcd")]
mod on_etcd {
    use vnas_store::etcd::test_cluster::EtcdCluster;

    use super::*;

    #[test]
    fn planned_moves_back_and_forth_under_load_on_etcd() {
        let top = temp_dir();
        let etcd = EtcdCluster::start(&top.path().join("etcd"), 3);
        planned_moves(&top, etcd.url("moves").as_ref(), "127.0.22");
    }

    #[test]
    fn failover_after_the_owner_is_killed_on_etcd() {
        let top = temp_dir();
        let etcd = EtcdCluster::start(&top.path().join("etcd"), 3);
        // The README: a dead node is down for the others 1 to 1.5 s after
        // its last renewal (etcd's whole-second leases, checked every
        // 500 ms); measured 1.3-1.5 s. 2 s: that and the takeover.
        failover(&top, etcd.url("failover").as_ref(), "127.0.23", 2000);
    }
}
