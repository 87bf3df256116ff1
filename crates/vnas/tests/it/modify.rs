//! `vnas vserver modify` under a probing client: addresses, routes,
//! volumes, exports and client rules change while the vserver serves. The
//! untouched export's client sees no pause and no error, a connection held
//! on the untouched address lives through every change (nothing
//! restarted), a tightened rule applies to the next call, an export or
//! address added or removed is there or gone at once, and an invalid change
//! is refused with a code and changes nothing.

use std::process::{Command, Stdio};

use crate::support::*;

fn url(ip: &str, export: &str) -> String {
    format!("nfs://{ip}{export}?nfsport=2049&mountport=2049")
}

/// Writes 1 MiB to `name` under `export` (COMMITted, read back): success?
fn writes(ip: &str, export: &str, name: &str) -> bool {
    Command::new(nfsprobe())
        .args(["write", &url(ip, export), name, "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn exports_and_rules_change_live_under_a_probing_client() {
    let top = temp_dir();
    let store = top.path().join("store");
    let n1 = NodeProc::start("n1", &store);
    let (a, b) = (top.path().join("a"), top.path().join("b"));
    std::fs::create_dir_all(a.join("sub")).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let ip = "127.0.38.1";
    let created = cli_json(
        &n1.api,
        &[
            "vserver",
            "create",
            "m",
            "--ip",
            ip,
            "--volume",
            &format!("/a={}", a.display()),
            "--volume",
            &format!("/b={}", b.display()),
            "--export",
            "/a:rw:no_root_squash:insecure",
            "--export",
            "/b:rw:no_root_squash:insecure",
        ],
    );
    assert!(writes(ip, "/a", "/before"));
    // A connection on the first address, held through every change.
    let nfs_null = |client: &mut RawClient| client.call(100_003, 3, 0, &[]);
    let mut held = RawClient::connect(format!("{ip}:2049").parse().unwrap());
    assert_eq!(accept_stat(&nfs_null(&mut held)), Some(0));
    // A client of /b, at work the whole time.
    // Without COMMITs: a pause here is the server's, not the disk's
    // (another test's fsync can stall this machine's disk for 100 ms).
    let probe = Command::new(nfsprobe())
        .args(["probe", &url(ip, "/b"), "6", "20"])
        .env("NFSPROBE_COMMIT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));

    // Tightened: /a read-only from the next call on.
    cli_json(&n1.api, &["vserver", "modify", "m", "--add-export", "/a:ro:no_root_squash:insecure"]);
    assert!(!writes(ip, "/a", "/after"), "a write to a read-only export went through");
    // Loosened again, and a new export below a volume, there at once.
    cli_json(
        &n1.api,
        &[
            "vserver",
            "modify",
            "m",
            "--add-export",
            "/a:rw:no_root_squash:insecure",
            "--add-export",
            "/a/sub:rw:no_root_squash:insecure",
        ],
    );
    assert!(writes(ip, "/a", "/again"));
    assert!(writes(ip, "/a/sub", "/new"));
    assert!(a.join("sub/new").exists());
    // Removed: /a is gone at once (its subdirectory export stays).
    cli_json(&n1.api, &["vserver", "modify", "m", "--remove-export", "/a"]);
    assert!(!writes(ip, "/a", "/gone"), "a removed export still served");
    assert!(writes(ip, "/a/sub", "/still"));
    // A client rule put ahead of the export's others: these clients (the
    // test's) may only read, from the next call; removed, they write again.
    let ruled = cli_json(
        &n1.api,
        &["vserver", "modify", "m", "--add-rule", "/a/sub:ro:no_root_squash:insecure:clients=127.0.0.0/8"],
    );
    let sub = ruled["exports"].as_array().unwrap().iter().find(|e| e["path"] == "/a/sub").unwrap().clone();
    assert_eq!(
        (sub["rules"][0]["access"].as_str(), sub["rules"].as_array().unwrap().len()),
        (Some("ro"), 2),
        "{sub}"
    );
    assert!(!writes(ip, "/a/sub", "/ruled-out"), "a write went through a read-only rule");
    cli_json(&n1.api, &["vserver", "modify", "m", "--remove-rule", "/a/sub:clients=127.0.0.0/8"]);
    assert!(writes(ip, "/a/sub", "/ruled-in"));

    // A volume added with its export, served at once; then removed.
    let c = top.path().join("c");
    std::fs::create_dir_all(&c).unwrap();
    cli_json(
        &n1.api,
        &[
            "vserver",
            "modify",
            "m",
            "--add-volume",
            &format!("/c={}", c.display()),
            "--add-export",
            "/c:rw:no_root_squash:insecure",
        ],
    );
    assert!(writes(ip, "/c", "/in-c"));
    assert!(c.join("in-c").exists());
    // A volume whose export stays cannot go.
    let (ok, _, stderr) = cli(&n1.api, &["vserver", "modify", "m", "--remove-volume", "/c"]);
    assert!(!ok && stderr.contains("export_outside_volumes"), "{stderr}");
    cli_json(&n1.api, &["vserver", "modify", "m", "--remove-export", "/c", "--remove-volume", "/c"]);
    assert!(!writes(ip, "/c", "/gone"));

    // An address added answers at once; removed, its connections close
    // and it answers no more. The first address never noticed.
    let ip2 = "127.0.38.2";
    let changed = cli_json(&n1.api, &["vserver", "modify", "m", "--add-ip", ip2]);
    assert_eq!(changed["addresses"], serde_json::json!([ip, ip2]));
    assert!(writes(ip2, "/b", "/via-second"));
    let mut on_second = RawClient::connect(format!("{ip2}:2049").parse().unwrap());
    assert_eq!(accept_stat(&nfs_null(&mut on_second)), Some(0));
    // Routes are kept (the loopback mode has nothing to route; the test
    // bed checks them in the vserver's routing table).
    let routed = cli_json(&n1.api, &["vserver", "modify", "m", "--add-route", "10.99.0.0/16=127.0.38.254"]);
    assert_eq!(routed["routes"][0]["destination"], "10.99.0.0/16");
    let (ok, stdout, stderr) =
        cli(&n1.api, &["vserver", "modify", "m", "--remove-ip", ip2, "--remove-route", "10.99.0.0/16"]);
    assert!(ok && stdout.contains(&format!("addresses {ip};")), "{stdout}{stderr}");
    let closed_at = std::time::Instant::now();
    assert!(on_second.read_reply().is_none());
    assert!(
        closed_at.elapsed() < std::time::Duration::from_secs(5),
        "the removed address's connection stayed open"
    );
    assert!(!writes(ip2, "/b", "/gone"), "a removed address still served");
    let shown = cli_json(&n1.api, &["vserver", "show", "m"]);
    assert_eq!((&shown["addresses"], &shown["routes"]), (&serde_json::json!([ip]), &serde_json::json!([])));
    assert_eq!(shown["applied"], serde_json::json!([format!("lo {ip}")]));

    // Invalid changes: refused with a code, nothing changed.
    let before = cli_json(&n1.api, &["vserver", "show", "m"]);
    let (ok, _, stderr) = cli(&n1.api, &["vserver", "modify", "m", "--add-export", "/elsewhere:rw"]);
    assert!(!ok && stderr.contains("export_outside_volumes"), "{stderr}");
    let (ok, _, stderr) = cli(&n1.api, &["vserver", "modify", "m", "--remove-export", "/nope"]);
    assert!(!ok && stderr.contains("export_not_found"), "{stderr}");
    let (ok, _, stderr) =
        cli(&n1.api, &["vserver", "modify", "m", "--add-export", "/a:rw:clients=not-a-network"]);
    assert!(!ok && stderr.contains("bad"), "{stderr}");
    let (ok, _, stderr) = cli(&n1.api, &["vserver", "modify", "m", "--add-volume", "/d=/no/such/dir"]);
    assert!(!ok && stderr.contains("volume_path_missing"), "{stderr}");
    let (ok, _, stderr) = cli(&n1.api, &["vserver", "modify", "nobody", "--remove-export", "/b"]);
    assert!(!ok && stderr.contains("vserver_not_found"), "{stderr}");
    for (args, code) in [
        (&["--remove-ip", ip][..], "bad_address"),
        (&["--remove-ip", "127.0.38.9"][..], "address_not_found"),
        (&["--add-ip", "127.0.0.1"][..], "address_out_of_range"),
        (&["--add-ip", ip][..], "bad_address"),
        (&["--add-ip", "not-an-address"][..], "bad_address"),
        (&["--remove-route", "10.1.0.0/16"][..], "route_not_found"),
        (&["--add-route", "10.1.0.0/16=nowhere"][..], "bad_route"),
        (&["--add-route", "10.1.0.1/16=127.0.38.254"][..], "bad_route"),
        (&["--add-route", "10.1.0.0/16=2001:db8::1"][..], "bad_route"),
        (&["--remove-rule", "/b:clients=10.0.0.0/8"][..], "rule_not_found"),
        (&["--remove-rule", "/b:clients=0.0.0.0/0"][..], "bad_export"),
        (&["--add-rule", "/nope:ro:clients=10.0.0.0/8"][..], "export_not_found"),
        (&["--add-rule", "/b:ro:clients=not-a-net"][..], "bad_export"),
        (&["--add-ip", "127.0.38.3", "--add-export", "/elsewhere:rw"][..], "export_outside_volumes"),
    ] {
        let (ok, _, stderr) = cli(&n1.api, &[&["vserver", "modify", "m"][..], args].concat());
        assert!(!ok && stderr.contains(code), "{args:?}: {stderr}");
    }
    let unchanged = cli_json(&n1.api, &["vserver", "show", "m"]);
    for field in ["exports", "volumes", "addresses", "routes"] {
        assert_eq!(unchanged[field], before[field], "{field}");
    }
    assert!(!writes("127.0.38.3", "/b", "/refused"), "a refused change's address answers");

    // The client of /b never noticed: no error, no pause beyond its own
    // rhythm; and the vserver was never restarted (same epoch, one entry
    // of history).
    let output = probe.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("failed_ops=0 mismatches=0"), "{stdout}");
    let gap: u64 = stdout.split("max_gap_ms=").nth(1).and_then(|v| v.trim().parse().ok()).unwrap();
    eprintln!("modify: the client of /b paused at most {gap} ms");
    assert!(gap < 100, "the client of /b paused {gap} ms");
    assert_eq!(accept_stat(&nfs_null(&mut held)), Some(0), "the held connection lived through every change");
    let after = cli_json(&n1.api, &["vserver", "show", "m"]);
    assert_eq!(after["epoch"], created["epoch"]);
    assert_eq!(crate::transfer::history(&n1.api, "m").len(), 1);
    n1.stop();
}
