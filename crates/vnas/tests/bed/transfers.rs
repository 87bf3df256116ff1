//! Transfers in the linux network mode, as a libnfs client on another
//! host sees them: the vserver's address leaves one host and appears on
//! another. Gaps are asserted: a move <= 100 ms, a failover <= 1 s.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;
use crate::testbed::*;

pub fn applied(view: &Value) -> Vec<String> {
    view["applied"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

#[test]
fn moves_under_load_in_linux_mode() {
    let Some(bed) = Bed::up("moves_under_load_in_linux_mode") else { return };
    let n1 = bed.node("n1", None);
    let n2 = bed.node("n2", None);
    let n3 = bed.node("n3", None);
    let a = bed.volume("a");
    let created = bed.cli_json(
        &n1,
        &["vserver", "create", "moving", "--ip", "198.18.1.10/16", "--volume", &a, "--node", "n1"],
    );
    assert_eq!(created["state"], "running");
    let b = bed.volume("b");
    bed.cli_json(
        &n2,
        &[
            "vserver",
            "create",
            "still",
            "--ip",
            "198.18.1.11/16",
            "--volume",
            &b,
            "--node",
            "n3",
            "--route",
            "10.99.0.0/16=198.18.0.254",
        ],
    );
    // Interface, addresses and routes as applied; the address lives in
    // the vserver's own namespace, not in the node's.
    let still = bed.cli_json(&n1, &["vserver", "show", "still"]);
    let applied = applied(&still);
    assert!(applied.iter().any(|a| a.starts_with("eth0 macvlan on eth0 02:")), "{applied:?}");
    assert!(applied.contains(&"eth0 198.18.1.11/16".to_string()), "{applied:?}");
    assert!(applied.contains(&"route 10.99.0.0/16 via 198.18.0.254".to_string()), "{applied:?}");
    assert!(!bed.ip("n3", &["-o", "address"]).contains("198.18.1.11"));
    let (ok, out, _) = bed.cli(&n1, &["vserver", "show", "still"]);
    assert!(ok && out.contains("applied:        route 10.99.0.0/16 via 198.18.0.254"), "{out}");
    // And in effect: inside the namespace n3's process holds for it.
    let tables = vserver_namespaces(&n3).iter().map(|ns| run_in(ns, &["ip", "route"])).collect::<Vec<_>>();
    assert!(
        tables
            .iter()
            .any(|t| t.contains("10.99.0.0/16 via 198.18.0.254 dev eth0")
                && t.contains("198.18.0.0/16 dev eth0")),
        "the route is in the vserver's table: {tables:?}"
    );

    let moving = bed.probe_without_commit("c1", "198.18.1.10", 9);
    let undisturbed = bed.probe_without_commit("c2", "198.18.1.11", 8);
    let mut pauses = Vec::new();
    for to in ["n2", "n3", "n1", "n3", "n2", "n1", "n2", "n1"] {
        let result = bed.cli_json(&n3, &["vserver", "move", "moving", "--to", to]);
        assert_eq!((result["to"].as_str(), result["vserver"]["state"].as_str()), (Some(to), Some("running")));
        pauses.push(result["pause_ms"].as_u64().unwrap());
        std::thread::sleep(Duration::from_millis(300));
    }
    let gap = moving.finish();
    let other = undisturbed.finish();
    eprintln!("linux mode: move pauses {pauses:?} ms; client max gap {gap} ms; other vserver's {other} ms");
    assert!(gap <= 100, "a move is a pause of at most 100 ms to the client, not {gap} ms");
    assert!(other <= 100, "the other vserver's clients are not disturbed: {other} ms");
    let history = history(&bed, &n1, "moving");
    assert_eq!(history.len(), 9, "{history:?}");
    check_history(&history);
    n1.stop();
    n2.stop();
    n3.stop();
}

#[test]
fn failover_after_sigkill_in_linux_mode() {
    let Some(bed) = Bed::up("failover_after_sigkill_in_linux_mode") else { return };
    let n1 = bed.node("n1", None);
    let n2 = bed.node("n2", None);
    let n3 = bed.node("n3", None);
    let a = bed.volume("a");
    bed.cli_json(
        &n2,
        &["vserver", "create", "doomed", "--ip", "198.18.1.20/16", "--volume", &a, "--node", "n1"],
    );
    let b = bed.volume("b");
    bed.cli_json(
        &n2,
        &["vserver", "create", "other", "--ip", "198.18.1.21/16", "--volume", &b, "--node", "n3"],
    );
    let probe = bed.probe("c1", "198.18.1.20", 6);
    // Without COMMIT: the 100 ms bound is about serving, and the disk's
    // flush stalls are shared by every vserver (CI saw 121 ms once).
    let undisturbed = bed.probe_without_commit("c2", "198.18.1.21", 5);
    // The connection is on record (for the next owner's tickle ACK).
    eventually(5, "the client's connection to be recorded", || {
        bed.cli_json(&n2, &["vserver", "show", "doomed"])["connections"].as_u64() >= Some(1)
    });
    n1.kill();
    let gap = probe.finish();
    let other = undisturbed.finish();
    assert!(other <= 100, "the other vserver's clients are not disturbed: {other} ms");
    let view = bed.cli_json(&n2, &["vserver", "show", "doomed"]);
    assert_eq!((view["state"].as_str(), view["node"].as_str()), (Some("running"), Some("n2")));
    let history = history(&bed, &n2, "doomed");
    let last = history.last().unwrap();
    assert_eq!((last["why"].as_str(), last["from"].as_str()), (Some("node down"), Some("n1")));
    eprintln!("linux mode: failover pause {} ms; client max gap {gap} ms", last["pause_ms"]);
    assert!(gap <= 1000, "a failover is a pause of at most 1 s to the client, not {gap} ms");
    n2.stop();
    n3.stop();
}

/// A frozen owner that thaws sends nothing for the vserver another node
/// took meanwhile: not the replies to calls it had read before the freeze,
/// not an answer to a new connection. Twice, on the same node (the second
/// freeze once found a fence that remembered only the first). tcpdump on
/// the bridge's port of the frozen host sees every frame it sends with the
/// vserver's address; a writer with 8 calls of 1 MiB in flight makes sure
/// calls are under way when the process stops.
#[test]
fn frozen_owner_in_linux_mode() {
    let Some(bed) = Bed::up("frozen_owner_in_linux_mode") else { return };
    let n1 = bed.node("n1", None);
    let n2 = bed.node("n2", None);
    let a = bed.volume("a");
    let ip = "198.18.1.30";
    bed.cli_json(
        &n2,
        &["vserver", "create", "frozen", "--ip", &format!("{ip}/16"), "--volume", &a, "--node", "n1"],
    );
    let from_n1 = Capture::start(&bed, "n1", ip);
    let probe = bed.probe("c1", ip, 22);
    for round in 1..=2 {
        if round == 2 {
            let moved = bed.cli_json(&n2, &["vserver", "move", "frozen", "--to", "n1"]);
            assert_eq!(moved["vserver"]["node"], "n1", "{moved}");
        }
        let writer = bed
            .command("c2", nfsprobe())
            .args(["write", &format!("nfs://{ip}/data"), &format!("big{round}"), "2048", "8"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut writer = KillOnDrop(writer);
        std::thread::sleep(Duration::from_millis(1500));
        let sent_before = from_n1.count();
        assert!(sent_before > 0, "round {round}: the capture sees n1 serving the vserver");
        n1.signal(rustix::process::Signal::STOP);
        let frozen = Instant::now();
        eventually(5, "n2 to take the vserver", || {
            let view = bed.cli_json(&n2, &["vserver", "show", "frozen"]);
            view["node"] == "n2" && view["state"] == "running"
        });
        let taken = history(&bed, &n2, "frozen").last().unwrap().clone();
        assert_eq!((taken["why"].as_str(), taken["to"].as_str()), (Some("node down"), Some("n2")), "{taken}");
        let taken_ms = taken["at_ms"].as_u64().unwrap();
        std::thread::sleep(Duration::from_millis(1500).saturating_sub(frozen.elapsed()));
        n1.signal(rustix::process::Signal::CONT);
        let thawed_ms = wall_ms();
        // Long enough for the thawed node to fence itself and for its
        // kernel's retransmissions to give up on what it held.
        std::thread::sleep(Duration::from_secs(3));
        let _ = writer.0.kill();
        let stray = from_n1.since(taken_ms);
        eprintln!(
            "linux mode: frozen owner, round {round}: taken at {taken_ms}, thawed at {thawed_ms}; \
             frames from n1 with {ip} since: {}",
            stray.len()
        );
        assert!(
            stray.is_empty(),
            "round {round}: n1 sent {} frame(s) for the vserver after n2 took it (thawed at {thawed_ms}):\n{}",
            stray.len(),
            stray.join("\n")
        );
        // Asked of the node process itself: no vserver namespace left.
        eventually(5, "n1 to hold no vserver namespace", || vserver_namespaces(&n1).is_empty());
    }
    let gap = probe.finish();
    eprintln!("linux mode: a frozen owner, twice: client max gap {gap} ms");
    // The lease (800 ms) and a second: the survivor waits out the lease,
    // then takes over; the second covers the start and one retry.
    assert!(gap <= 1800, "the frozen owner's vserver came back within the lease and a second, not {gap} ms");
    n1.stop();
    n2.stop();
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_pulled_link_moves_the_vservers_in_linux_mode() {
    let Some(bed) = Bed::up("a_pulled_link_moves_the_vservers_in_linux_mode") else { return };
    let n1 = bed.node("n1", None);
    let n2 = bed.node("n2", None);
    let a = bed.volume("a");
    bed.cli_json(
        &n2,
        &["vserver", "create", "cut", "--ip", "198.18.1.40/16", "--volume", &a, "--node", "n1"],
    );
    let probe = bed.probe("c1", "198.18.1.40", 6);
    // The switch port of n1 goes down: n1's eth0 loses carrier.
    bed.ip("bed", &["link", "set", "n1", "down"]);
    let pulled = Instant::now();
    eventually(5, "the vserver to be served elsewhere", || {
        let view = bed.cli_json(&n2, &["vserver", "show", "cut"]);
        view["node"] == "n2" && view["state"] == "running"
    });
    let moved = pulled.elapsed();
    let gap = probe.finish();
    eprintln!("linux mode: link pulled: served elsewhere after {moved:?}; client max gap {gap} ms");
    assert!(moved <= Duration::from_secs(2), "served elsewhere within 2 s, not {moved:?}");
    // The others declare n1 down a lease (800 ms) after its last renewal,
    // then take over: the lease and a second, as for a freeze.
    assert!(gap <= 1800, "a pulled link is a pause of at most 1.8 s to the client, not {gap} ms");
    let history = history(&bed, &n2, "cut");
    assert_eq!(history.last().unwrap()["why"], "node down", "{history:?}");
    // The link comes back: n1 is a live node again, serving nothing.
    bed.ip("bed", &["link", "set", "n1", "up"]);
    eventually(5, "n1 to be alive again, serving nothing", || {
        let nodes = bed.cli_json(&n2, &["node", "list"]);
        let n1 = nodes.as_array().unwrap().iter().find(|n| n["name"] == "n1").unwrap().clone();
        n1["alive"] == true && n1["serving"] == serde_json::json!([])
    });
    assert_eq!(serving_nodes(&bed.cli_json(&n2, &["node", "list"]), "cut"), ["n2"]);
    n1.stop();
    n2.stop();
}

#[test]
fn drain_and_a_node_dying_at_each_step_in_linux_mode() {
    let Some(bed) = Bed::up("drain_and_a_node_dying_at_each_step_in_linux_mode") else { return };
    {
        let n1 = bed.node("n1", None);
        let n2 = bed.node("n2", None);
        for i in 1..=3 {
            let (name, ip, volume) =
                (format!("d{i}"), format!("198.18.1.5{i}/16"), bed.volume(&format!("d{i}")));
            bed.cli_json(
                &n1,
                &["vserver", "create", &name, "--ip", &ip, "--volume", &volume, "--node", "n1"],
            );
        }
        let probe = bed.probe("c1", "198.18.1.52", 4);
        let (ok, out, err) = bed.cli(&n2, &["node", "drain", "n1"]);
        assert!(ok && out.contains("node n1 drained: 3 vserver(s) moved"), "{out} {err}");
        let gap = probe.finish();
        eprintln!("linux mode: drain: client max gap {gap} ms");
        // Three moves at once (measured 149 ms once): 250 ms.
        assert!(gap <= 250, "a drain moves its vservers with a pause of at most 250 ms, not {gap} ms");
        let views = bed.cli_json(&n2, &["vserver", "list"]);
        assert!(
            views.as_array().unwrap().iter().all(|v| v["node"] == "n2" && v["state"] == "running"),
            "{views}"
        );
        n1.stop();
        n2.stop();
    }
    let cases = [
        ("handoff-before-stop", "source"),
        ("handoff-after-stop", "source"),
        ("handoff-after-cas", "source"),
        ("target-prepared", "target"),
        ("target-before-serving", "target"),
    ];
    for (i, (step, side)) in cases.into_iter().enumerate() {
        let store = bed.dir.path().join(format!("store-{i}"));
        let (source_fault, target_fault) =
            if side == "source" { (Some(step), None) } else { (None, Some(step)) };
        let mut n1 = bed.node_on("n1", &store, source_fault);
        let mut n2 = bed.node_on("n2", &store, target_fault);
        let n3 = bed.node_on("n3", &store, None);
        let (ip, volume) = (format!("198.18.1.6{i}"), bed.volume(&format!("m{i}")));
        bed.cli_json(
            &n3,
            &["vserver", "create", "m", "--ip", &format!("{ip}/16"), "--volume", &volume, "--node", "n1"],
        );
        let probe = bed.probe("c1", &ip, 6);
        let _ = bed.cli(&n3, &["vserver", "move", "m", "--to", "n2"]);
        let dead = if side == "source" { &mut n1 } else { &mut n2 };
        eventually(10, &format!("{side} to die at {step}"), || dead.exited());
        let survivor = if side == "source" { "n2" } else { "n1" };
        eventually(15, &format!("m to be served again after {step}"), || {
            let view = bed.cli_json(&n3, &["vserver", "show", "m"]);
            view["state"] == "running" && (view["node"] == survivor || view["node"] == "n3")
        });
        let gap = probe.finish();
        eprintln!("linux mode: {side} dying at {step}: client max gap {gap} ms");
        // A failover (<= 1 s) after part of a move.
        assert!(gap <= 1500, "{side} dying at {step}: a pause of at most 1.5 s, not {gap} ms");
        let history = history(&bed, &n3, "m");
        check_history(&history);
        let nodes = bed.cli_json(&n3, &["node", "list"]);
        assert_eq!(serving_nodes(&nodes, "m").len(), 1, "{step}: exactly one node serves it: {nodes}");
    }
}

/// The management API between hosts: HTTPS with the cluster's
/// certificate and the token works from a client host; without the
/// token, 401 and nothing changes.
#[test]
fn the_api_between_hosts_needs_tls_and_the_token() {
    let Some(bed) = Bed::up("the_api_between_hosts_needs_tls_and_the_token") else { return };
    let n1 = bed.node("n1", None);
    let n2 = bed.node("n2", None);
    assert!(n1.api.starts_with("https://198.18.0.1:"), "{}", n1.api);
    let nodes = bed.cli_json(&n2, &["node", "list"]);
    assert_eq!(nodes.as_array().unwrap().len(), 2, "{nodes}");
    let a = bed.volume("a");
    let output = bed
        .cli_command(&n1)
        .env("VNAS_TOKEN", "not-the-token")
        .args([
            "vserver",
            "create",
            "x",
            "--ip",
            "198.18.1.70/16",
            "--volume",
            &a,
            "--export",
            TRUSTED_EXPORT,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && err.contains("unauthorized"), "{err}");
    // Without the cluster's certificate, the CLI refuses the node.
    let output = bed.cli_command(&n1).env_remove("VNAS_CA_FILE").args(["node", "list"]).output().unwrap();
    assert!(!output.status.success(), "an unknown certificate is refused");
    let views = bed.cli_json(&n2, &["vserver", "list"]);
    assert_eq!(views.as_array().unwrap().len(), 0, "nothing was created: {views}");

    // The console off loopback: HTTPS, and its session cookie is Secure
    // (as well as HttpOnly and SameSite=Strict).
    let token = std::fs::read_to_string(token_file()).unwrap();
    let token = token.split_whitespace().nth(1).unwrap().to_string();
    let signed_in = bed
        .command("c1", "curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--cacert"])
        .arg(bed.cert())
        .args(["--data-urlencode", &format!("token={token}"), &format!("{}/login", n1.api)])
        .output()
        .expect("curl runs");
    let headers = String::from_utf8_lossy(&signed_in.stdout).to_lowercase();
    let cookie = headers.lines().find(|l| l.starts_with("set-cookie: vnas_session=")).unwrap_or_default();
    for attribute in ["; secure", "; httponly", "; samesite=strict"] {
        assert!(cookie.contains(attribute), "{attribute} in {headers}");
    }
    n1.stop();
    n2.stop();
}
