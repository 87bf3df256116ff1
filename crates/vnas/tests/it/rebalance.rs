//! Transfer by load with processes: 3 nodes, 30 vservers all on one node
//! under load; `vnas cluster rebalance` prints a plan with a reason for
//! each move, and `--apply` spreads them with no client error.

use std::process::{Child, Command, Stdio};

use crate::support::*;
use crate::transfer::volume;

/// Vservers PREFIX0, PREFIX1, ... at `ips`, on n1, each exported to all.
fn create_on_n1(api: &str, top: &tempfile::TempDir, prefix: &str, ips: &[String]) {
    for (i, ip) in ips.iter().enumerate() {
        let name = format!("{prefix}{i}");
        let volume = volume(top, &name);
        let args = ["vserver", "create", &name, "--ip", ip, "--volume", &volume];
        cli_json(
            api,
            &[&args[..], &["--export", "/data:rw:no_root_squash:insecure", "--node", "n1"]].concat(),
        );
    }
}

/// A libnfs probe on each address: a write+COMMIT+read round trip every
/// `interval_ms` for `seconds`.
fn start_probes(ips: &[String], seconds: u32, interval_ms: u32) -> Vec<Child> {
    ips.iter()
        .map(|ip| {
            let url = format!("nfs://{ip}/data?nfsport=2049&mountport=2049");
            Command::new(nfsprobe())
                .args(["probe", &url, &seconds.to_string(), &interval_ms.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

/// Every probe ends with no failed call and no mismatch.
fn finish_probes(probes: Vec<Child>) {
    for probe in probes {
        let output = probe.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success() && stdout.contains("failed_ops=0 mismatches=0"), "{stdout}");
    }
}

#[test]
fn rebalance_spreads_thirty_loaded_vservers_with_no_client_error() {
    let top = temp_dir();
    let store = top.path().join("store");
    let n1 = NodeProc::start("n1", &store);
    let n2 = NodeProc::start("n2", &store);
    let n3 = NodeProc::start("n3", &store);
    let ips: Vec<String> = (1..=30).map(|i| format!("127.0.34.{i}")).collect();
    create_on_n1(&n1.api, &top, "r", &ips);
    // Every vserver busy: a write+COMMIT+read round trip every 30 ms.
    let probes = start_probes(&ips, 30, 30);

    // The load reaches the store (every 5 s) and the plan sees it.
    let mut plan = serde_json::Value::Null;
    eventually(30, "a plan from the published load", || {
        plan = cli_json(&n1.api, &["cluster", "rebalance", "--dry-run", "--max-moves", "20"]);
        plan["moves"].as_array().is_some_and(|m| m.len() == 20)
    });
    let n1_load = plan["nodes"].as_array().unwrap().iter().find(|n| n["node"] == "n1").unwrap().clone();
    assert!(n1_load["ops_per_s"].as_f64().unwrap() > 100.0, "{plan}");
    assert!(plan["spread"].as_f64().unwrap() > plan["start"].as_f64().unwrap(), "{plan}");
    let (_, text, _) = cli(&n1.api, &["cluster", "rebalance", "--max-moves", "20"]);
    assert!(text.contains("REASON") && text.contains("n1 carries"), "{text}");
    // By bytes and by CPU, the same load is on n1 alone.
    for (by, unit) in [("bytes", "MB/s"), ("cpu", "cores")] {
        let plan = cli_json(&n1.api, &["cluster", "rebalance", "--by", by, "--max-moves", "20"]);
        assert_eq!(plan["by"], by);
        let moves = plan["moves"].as_array().unwrap();
        assert!(!moves.is_empty() && moves.iter().all(|m| m["from"] == "n1"), "{plan}");
        assert!(moves[0]["reason"].as_str().unwrap().contains(unit), "{plan}");
    }
    let (status, body) =
        http("GET", &format!("{}/api/cluster/rebalance?by=watts", n1.api), Some(&admin_token()), None);
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_query")), "{body}");

    let (applied, out, err) = cli(&n1.api, &["cluster", "rebalance", "--apply", "--max-moves", "20"]);
    assert!(applied, "{out}{err}");
    assert!(out.contains("[20/20]"), "{out}");
    let nodes = cli_json(&n1.api, &["node", "list"]);
    let counts: Vec<u64> =
        nodes.as_array().unwrap().iter().map(|n| n["vservers"].as_u64().unwrap()).collect();
    assert_eq!(counts.iter().sum::<u64>(), 30, "{nodes}");
    assert!(counts.iter().all(|c| (8..=12).contains(c)), "spread evenly: {counts:?}");

    finish_probes(probes);
    n1.stop();
    n2.stop();
    n3.stop();
}

/// Allowed nodes bound failover and moves; with failback on, a vserver
/// goes back to its home node once that node has been up for the settle
/// time.
#[test]
fn allowed_nodes_and_failback_to_the_home_node() {
    let top = temp_dir();
    let store = top.path().join("store");
    let start = |name: &str| {
        let mut command = NodeProc::command(name, &store);
        command.args(["--failback-after-s", "1", "--rebalance-every-s", "1"]);
        NodeProc::spawn(command)
    };
    let n1 = start("n1");
    let n2 = start("n2");
    let n3 = start("n3");
    let ip = "127.0.35.1";
    let view = cli_json(
        &n2.api,
        &[
            "vserver",
            "create",
            "h",
            "--ip",
            ip,
            "--volume",
            &volume(&top, "h"),
            "--export",
            "/data:rw:no_root_squash:insecure",
            "--home",
            "n1",
            "--allowed-nodes",
            "n1,n3",
        ],
    );
    assert_eq!(view["node"], "n1", "placed on its home: {view}");
    // A node it may not run on is refused, with the reason.
    let (moved, _, stderr) = cli(&n2.api, &["vserver", "move", "h", "--to", "n2"]);
    assert!(!moved && stderr.contains("may run on n1, n3 only"), "{stderr}");
    // A bad home is refused at creation.
    let (created, _, stderr) = cli(
        &n2.api,
        &[
            "vserver",
            "create",
            "x",
            "--ip",
            "127.0.35.2",
            "--volume",
            &volume(&top, "x"),
            "--home",
            "n2",
            "--allowed-nodes",
            "n1,n3",
        ],
    );
    assert!(!created && stderr.contains("not among the allowed nodes"), "{stderr}");

    let probe = Probe::start(ip, 12);
    // Its home dies: it fails over to n3 (n2, first by name, is not allowed).
    n1.kill();
    eventually(10, "h on n3", || {
        let view = cli_json(&n2.api, &["vserver", "show", "h"]);
        view["node"] == "n3" && view["state"] == "running"
    });
    // Home again: after the settle time it goes back, by an ordinary move.
    let n1 = start("n1");
    eventually(15, "h back on n1", || {
        let view = cli_json(&n2.api, &["vserver", "show", "h"]);
        view["node"] == "n1" && view["state"] == "running"
    });
    probe.finish();
    let last = crate::transfer::history(&n2.api, "h").last().cloned().unwrap();
    assert_eq!(
        (last["from"].as_str(), last["to"].as_str(), last["why"].as_str()),
        (Some("n3"), Some("n1"), Some("move"))
    );
    n1.stop();
    n2.stop();
    n3.stop();
}

/// `--rebalance auto`: the nodes even out the load themselves.
#[test]
fn automatic_rebalance_spreads_loaded_vservers() {
    let top = temp_dir();
    let store = top.path().join("store");
    let start = |name: &str| {
        let mut command = NodeProc::command(name, &store);
        command.args(["--rebalance", "auto", "--rebalance-every-s", "2"]);
        NodeProc::spawn(command)
    };
    let n1 = start("n1");
    let ips: Vec<String> = (1..=6).map(|i| format!("127.0.36.{i}")).collect();
    create_on_n1(&n1.api, &top, "a", &ips);
    let probes = start_probes(&ips, 30, 20);
    let n2 = start("n2");
    eventually(25, "the load spread over both nodes", || {
        let nodes = cli_json(&n1.api, &["node", "list"]);
        nodes.as_array().unwrap().iter().all(|n| (2..=4).contains(&n["vservers"].as_u64().unwrap()))
    });
    finish_probes(probes);
    n1.stop();
    n2.stop();
}
