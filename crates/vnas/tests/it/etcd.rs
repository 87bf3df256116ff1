//! The common volume on a real three-member etcd, when etcd itself
//! fails: quorum lost and back, one node cut off from etcd alone, etcd
//! restarted from its data; nodes reaching etcd over TLS with a user.
//! (The store suite, one member down, moves and
//! failover on etcd are tested with the directory store's tests.)
#![cfg(feature = "etcd")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vnas_store::etcd::test_cluster::EtcdCluster;

use crate::support::*;
use crate::transfer::{history, volume};

/// Whether the vserver at `ip` answers an NFS NULL call within `wait`.
fn answers(ip: &str, wait: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&format!("{ip}:2049").parse().unwrap(), wait) else {
        return false;
    };
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut call = (40u32 | 0x8000_0000).to_be_bytes().to_vec();
    for word in [7u32, 0, 2, 100_003, 3, 0, 0, 0, 0, 0] {
        call.extend_from_slice(&word.to_be_bytes());
    }
    let mut reply = [0u8; 28];
    stream.write_all(&call).is_ok() && stream.read_exact(&mut reply).is_ok()
}

/// How many nodes serve `name` (from the store, through `api`).
fn owner(api: &str, name: &str) -> (String, String) {
    let view = cli_json(api, &["vserver", "show", name]);
    (view["node"].as_str().unwrap_or("-").to_string(), view["state"].as_str().unwrap().to_string())
}

#[test]
fn quorum_lost_fences_everyone_and_all_comes_back() {
    let top = temp_dir();
    let mut etcd = EtcdCluster::start(&top.path().join("etcd"), 3);
    let url = etcd.url("quorum");
    let n1 = NodeProc::start("n1", &url);
    let n2 = NodeProc::start("n2", &url);
    let ip = "127.0.24.1";
    cli_json(
        &n1.api,
        &["vserver", "create", "q", "--ip", ip, "--volume", &volume(&top, "q"), "--node", "n1"],
    );
    assert!(answers(ip, Duration::from_secs(2)));
    let probe = Probe::start(ip, 9);

    // Two of three members die: no quorum, no renewal, and after half a
    // lease (plus a tick) nothing answers: calls are held, not refused.
    // A surviving member that was the leader renews leases on its own (a
    // renewal is not a write) until it steps down, an election timeout
    // (500 ms here) after it lost its quorum: so 500 + 400 + 150 ms, and a
    // loaded machine's slack. No other node can take the vserver meanwhile
    // (that is a write, and there is no quorum).
    etcd.kill_member(1);
    etcd.kill_member(2);
    let lost = Instant::now();
    while answers(ip, Duration::from_millis(200)) {
        assert!(lost.elapsed() < Duration::from_millis(1500), "a node without quorum serves nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("silent {:?} after quorum was lost", lost.elapsed());
    std::thread::sleep(Duration::from_secs(2));
    assert!(!answers(ip, Duration::from_millis(300)), "still nothing while quorum is lost");

    // Quorum returns: exactly one node serves it again.
    etcd.start_member(1, false);
    etcd.start_member(2, false);
    etcd.wait_ready();
    eventually(20, "the vserver to be served again", || answers(ip, Duration::from_millis(500)));
    eprintln!("served again {:?} after quorum was lost", lost.elapsed());
    let gap = probe.finish();
    eprintln!("the probe's longest gap: {gap} ms, without a failed call");
    let (node, state) = owner(&n2.api, "q");
    assert_eq!(state, "running");
    let nodes = cli_json(&n2.api, &["node", "list"]);
    assert_eq!(serving_nodes(&nodes, "q"), [node.as_str()], "one node serves it: {nodes}");
    check_history(&history(&n2.api, "q"));
    n1.stop();
    n2.stop();
}

/// A TCP relay to etcd that the test can cut: the node behind it loses
/// etcd while everything else keeps it.
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
}

impl Relay {
    fn start(to: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let cut2 = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut2.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(to) else { continue };
                for (mut from, mut into) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    let cut = cut2.clone();
                    std::thread::spawn(move || {
                        from.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            if cut.load(Ordering::SeqCst) {
                                let _ = into.shutdown(std::net::Shutdown::Both);
                                let _ = from.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => {
                                    let _ = into.shutdown(std::net::Shutdown::Write);
                                    return;
                                }
                                Ok(n) => {
                                    if into.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if e.kind() == std::io::ErrorKind::WouldBlock
                                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
            }
        });
        Relay { addr, cut }
    }
}

#[test]
fn a_node_cut_off_from_etcd_alone_loses_its_vservers_and_serves_nothing() {
    let top = temp_dir();
    let etcd = EtcdCluster::start(&top.path().join("etcd"), 3);
    let first = format!("127.0.0.1:{}", etcd.members[0].client_port).parse().unwrap();
    let relay = Relay::start(first);
    let n1 = NodeProc::start("n1", format!("etcd://{}/cutoff", relay.addr));
    let n2 = NodeProc::start("n2", etcd.url("cutoff"));
    let ip = "127.0.25.1";
    cli_json(
        &n2.api,
        &["vserver", "create", "c", "--ip", ip, "--volume", &volume(&top, "c"), "--node", "n1"],
    );
    assert_eq!(owner(&n2.api, "c").0, "n1");

    relay.cut.store(true, Ordering::SeqCst);
    eventually(10, "n2 to take the vserver over", || owner(&n2.api, "c") == ("n2".into(), "running".into()));
    assert!(answers(ip, Duration::from_secs(2)), "the new owner answers");
    let nodes = cli_json(&n2.api, &["node", "list"]);
    let n1_view = nodes.as_array().unwrap().iter().find(|n| n["name"] == "n1").unwrap().clone();
    assert_eq!(n1_view["alive"], false, "n1 is down as far as the cluster knows");
    let last = history(&n2.api, "c").last().unwrap().clone();
    assert_eq!((last["why"].as_str(), last["from"].as_str()), (Some("node down"), Some("n1")));

    // Back in touch: n1 fences itself and takes nothing back.
    relay.cut.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(owner(&n2.api, "c"), ("n2".into(), "running".into()));
    let nodes = cli_json(&n2.api, &["node", "list"]);
    assert_eq!(serving_nodes(&nodes, "c"), ["n2"], "n1 took nothing back: {nodes}");
    check_history(&history(&n2.api, "c"));
    n1.stop();
    n2.stop();
}

#[test]
fn etcd_restarted_from_its_data_keeps_the_cluster() {
    let top = temp_dir();
    let mut etcd = EtcdCluster::start(&top.path().join("etcd"), 3);
    let url = etcd.url("restart");
    let n1 = NodeProc::start("n1", &url);
    let ip = "127.0.26.1";
    cli_json(
        &n1.api,
        &["vserver", "create", "r", "--ip", ip, "--volume", &volume(&top, "r"), "--node", "n1"],
    );
    for i in 0..3 {
        etcd.kill_member(i);
    }
    // A node started now, with no etcd member up, waits for them (it
    // prints its API line only once it has joined).
    let waiting = {
        let url = url.clone();
        std::thread::spawn(move || NodeProc::start("n2", &url))
    };
    std::thread::sleep(Duration::from_secs(2));
    assert!(!waiting.is_finished(), "n2 came up with no etcd member up");
    for i in 0..3 {
        etcd.start_member(i, false);
    }
    etcd.wait_ready();
    eventually(20, "the vserver to be served again", || answers(ip, Duration::from_millis(500)));
    let view = cli_json(&n1.api, &["vserver", "show", "r"]);
    assert_eq!((view["node"].as_str(), view["state"].as_str()), (Some("n1"), Some("running")));
    let n2 = waiting.join().expect("n2 came up once etcd answered");
    let nodes = cli_json(&n2.api, &["node", "list"]);
    assert!(nodes.to_string().contains("\"n2\""), "n2 joined: {nodes}");
    n2.stop();
    n1.stop();
}

#[test]
fn nodes_reach_etcd_over_tls_with_a_client_certificate_and_a_user() {
    use vnas_store::etcd::test_cluster::Pki;
    use vnas_store::etcd::EtcdOptions;
    let top = temp_dir();
    let pki = Pki::new(&top.path().join("pki"));
    let options =
        EtcdOptions { ca: Some(pki.ca.clone()), identity: Some(pki.client.clone()), ..Default::default() };
    let mut etcd = EtcdCluster::start_with(&top.path().join("etcd"), 3, Some(pki.server.clone()), options);
    etcd.enable_auth("vnas", "s3cret", "secure");
    let url = etcd.url("secure");
    let node = |password: &str| {
        let file = top.path().join(format!("password-{password}"));
        std::fs::write(&file, format!("{password}\n")).unwrap();
        let mut command = NodeProc::command("n1", &url);
        command
            .arg("--etcd-ca")
            .arg(&pki.server.client_ca)
            .arg("--etcd-cert")
            .arg(&pki.client_files.0)
            .arg("--etcd-key")
            .arg(&pki.client_files.1)
            .args(["--etcd-user", "vnas", "--etcd-password-file"])
            .arg(&file);
        command
    };

    // A wrong password: the node does not start, and says why in one line.
    let output = node("wrong").stderr(std::process::Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("authentication failed"), "{stderr}");

    let n1 = NodeProc::spawn(node("s3cret"));
    let ip = "127.0.27.1";
    cli_json(
        &n1.api,
        &["vserver", "create", "t", "--ip", ip, "--volume", &volume(&top, "t"), "--node", "n1"],
    );
    eventually(10, "the vserver to answer", || answers(ip, Duration::from_millis(500)));
    n1.stop();
}
