//! `vnas vserver modify` in the linux network mode: an address and a
//! route added to a serving vserver appear in its namespace and answer
//! clients on another host; removed, they are gone; the client of the
//! untouched address sees no pause; the next owner brings the changed
//! configuration up.

use std::process::Stdio;

use crate::support::*;
use crate::testbed::*;
use crate::transfers::applied;

/// A 1 MiB write (COMMITted, read back) from `host` through `ip`.
fn writes_from(bed: &Bed, host: &str, ip: &str, name: &str) -> bool {
    bed.command(host, nfsprobe())
        .args(["write", &format!("nfs://{ip}/data"), name, "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Whether a TCP connection from `host` to `ip`:2049 opens within 2 s.
fn connects_from(bed: &Bed, host: &str, ip: &str) -> bool {
    bed.command(host, "timeout")
        .args(["2", "bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/2049")])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The routing tables of `node`'s vservers.
fn tables(node: &NodeProc) -> String {
    vserver_namespaces(node).iter().map(|ns| run_in(ns, &["ip", "route"])).collect()
}

#[test]
fn addresses_and_routes_change_live_in_linux_mode() {
    let Some(bed) = Bed::up("addresses_and_routes_change_live_in_linux_mode") else { return };
    let n1 = bed.node("n1", None);
    let n2 = bed.node("n2", None);
    let a = bed.volume("a");
    bed.cli_json(
        &n1,
        &["vserver", "create", "changing", "--ip", "198.18.1.30/16", "--volume", &a, "--node", "n1"],
    );
    let probe = bed.probe_without_commit("c1", "198.18.1.30", 6);
    assert!(!connects_from(&bed, "c2", "198.18.1.31"));

    let added = bed.cli_json(
        &n2,
        &[
            "vserver",
            "modify",
            "changing",
            "--add-ip",
            "198.18.1.31/16",
            "--add-route",
            "10.98.0.0/16=198.18.0.254",
        ],
    );
    let applied_now = applied(&added);
    assert!(applied_now.contains(&"eth0 198.18.1.31/16".to_string()), "{applied_now:?}");
    assert!(applied_now.contains(&"route 10.98.0.0/16 via 198.18.0.254".to_string()), "{applied_now:?}");
    assert!(tables(&n1).contains("10.98.0.0/16 via 198.18.0.254 dev eth0"), "{}", tables(&n1));
    assert!(writes_from(&bed, "c2", "198.18.1.31", "/via-second"), "the added address does not serve");

    // A route whose gateway no address of the vserver reaches is refused.
    let (ok, _, stderr) =
        bed.cli(&n1, &["vserver", "modify", "changing", "--add-route", "10.97.0.0/16=10.1.1.1"]);
    assert!(!ok && stderr.contains("bad_route"), "{stderr}");

    let removed = bed.cli_json(
        &n1,
        &["vserver", "modify", "changing", "--remove-ip", "198.18.1.31/16", "--remove-route", "10.98.0.0/16"],
    );
    let applied_now = applied(&removed);
    assert!(
        !applied_now.iter().any(|a| a.contains("198.18.1.31") || a.contains("10.98.0.0")),
        "{applied_now:?}"
    );
    assert!(!tables(&n1).contains("10.98.0.0/16"), "{}", tables(&n1));
    assert!(!connects_from(&bed, "c2", "198.18.1.31"), "a removed address still answers");
    // The probed address's prefix changes: it is the same address, its
    // listeners and connections stay.
    let reprefixed = bed.cli_json(
        &n1,
        &["vserver", "modify", "changing", "--remove-ip", "198.18.1.30", "--add-ip", "198.18.1.30/17"],
    );
    assert_eq!(reprefixed["addresses"], serde_json::json!(["198.18.1.30/17"]));
    assert!(applied(&reprefixed).contains(&"eth0 198.18.1.30/17".to_string()), "{reprefixed}");

    let gap = probe.finish();
    eprintln!("linux mode: the untouched address's client paused at most {gap} ms during the changes");
    assert!(gap < 100, "the client of the untouched address paused {gap} ms");
    assert_eq!(history(&bed, &n1, "changing").len(), 1, "the vserver restarted");

    // Added again, then moved: the next owner serves the changed
    // configuration.
    bed.cli_json(&n1, &["vserver", "modify", "changing", "--add-ip", "198.18.1.31/16"]);
    let moved = bed.cli_json(&n1, &["vserver", "move", "changing", "--to", "n2"]);
    assert_eq!(moved["vserver"]["node"], "n2");
    assert!(writes_from(&bed, "c2", "198.18.1.31", "/after-move"));
    assert!(writes_from(&bed, "c1", "198.18.1.30", "/after-move-2"));
    n1.stop();
    n2.stop();
}

/// An address taken from one vserver and given to another (another MAC
/// address) reaches a client that was talking to it a moment ago at once:
/// the new holder announces it (gratuitous ARP), so the client's neighbour
/// cache does not keep sending to the old holder's interface.
#[test]
fn an_address_given_to_another_vserver_is_announced() {
    let Some(bed) = Bed::up("an_address_given_to_another_vserver_is_announced") else { return };
    let n1 = bed.node("n1", None);
    let n2 = bed.node("n2", None);
    let (a, b) = (bed.volume("ra"), bed.volume("rb"));
    bed.cli_json(
        &n1,
        &[
            "vserver",
            "create",
            "ra",
            "--ip",
            "198.18.1.40/16",
            "--ip",
            "198.18.1.41/16",
            "--volume",
            &a,
            "--node",
            "n1",
        ],
    );
    bed.cli_json(&n1, &["vserver", "create", "rb", "--ip", "198.18.1.42/16", "--volume", &b, "--node", "n2"]);
    // c1 knows 198.18.1.40 by ra's MAC address.
    assert!(writes_from(&bed, "c1", "198.18.1.40", "/on-ra"));
    bed.cli_json(&n1, &["vserver", "modify", "ra", "--remove-ip", "198.18.1.40/16"]);
    bed.cli_json(&n1, &["vserver", "modify", "rb", "--add-ip", "198.18.1.40/16"]);
    let started = std::time::Instant::now();
    assert!(writes_from(&bed, "c1", "198.18.1.40", "/on-rb"));
    let took = started.elapsed();
    eprintln!("an address given to another vserver: the client wrote through it after {took:?}");
    assert!(
        took < std::time::Duration::from_secs(2),
        "the client kept the old holder's MAC address for {took:?}"
    );
    assert!(std::path::Path::new(&b.split_once('=').unwrap().1).join("on-rb").exists());
    n1.stop();
    n2.stop();
}
