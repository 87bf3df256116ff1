//! The node as a systemd `Type=notify` service, with systemd's side played
//! by a real datagram socket: NOTIFY_SOCKET gets READY=1 once the node
//! serves and WATCHDOG=1 twice per WATCHDOG_USEC while its controller loop
//! goes round; a loop that hangs (VNAS_FAULT=controller-stall) stops the
//! pings, so systemd's watchdog restarts the node; a stop says STOPPING=1.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::support::*;

/// The messages that arrive within `wait`.
fn messages(socket: &UnixDatagram, wait: Duration) -> Vec<String> {
    let until = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => return got,
        }
    }
}

fn pings(got: &[String]) -> usize {
    got.iter().filter(|m| m.lines().any(|l| l == "WATCHDOG=1")).count()
}

#[test]
fn the_node_tells_systemd_it_is_ready_and_feeds_the_watchdog_while_its_loop_runs() {
    let top = temp_dir();
    let path = top.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let node = |name: &str, fault: Option<&str>| {
        let mut command = NodeProc::command(name, top.path().join("store"));
        command.env("NOTIFY_SOCKET", &path).env("WATCHDOG_USEC", "1000000");
        if let Some(fault) = fault {
            command.env("VNAS_FAULT", fault);
        }
        NodeProc::spawn(command)
    };

    let n1 = node("n1", None);
    let got = messages(&socket, Duration::from_secs(5));
    let ready = got.iter().position(|m| m.lines().any(|l| l == "READY=1"));
    assert!(ready.is_some(), "READY=1: {got:?}");
    // Every 500 ms: six in 3 s (four allowed: a loaded machine).
    let more = messages(&socket, Duration::from_secs(3));
    assert!(pings(&more) >= 4, "WATCHDOG=1 twice a second: {more:?}");
    n1.stop();
    let got = messages(&socket, Duration::from_secs(2));
    assert!(got.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")), "STOPPING=1 at a stop: {got:?}");

    // A loop that hangs at its tenth round (about a second in): the
    // process and its API live on, but the pings stop within the interval
    // (one second more).
    let n2 = node("n2", Some("controller-stall"));
    let got = messages(&socket, Duration::from_secs(4));
    assert!(got.iter().any(|m| m.lines().any(|l| l == "READY=1")), "READY=1 before the stall: {got:?}");
    let after = messages(&socket, Duration::from_secs(2));
    assert_eq!(pings(&after), 0, "no WATCHDOG=1 once the loop hangs: {after:?}");
    let (ok, out, err) = cli(&n2.api, &["node", "list"]);
    assert!(ok, "the process itself still answers, only its loop hangs: {out} {err}");
    // What systemd would do once the watchdog ran out.
    n2.kill();
}
