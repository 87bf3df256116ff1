//! NFSv4.1 state that moves with the vserver, as the Linux kernel client
//! in a QEMU guest on the test bed sees it: it holds an open file and a
//! lock (fcntl, over v4's LOCK) while the vserver moves 20 times, then
//! while its node is killed. Its mount statistics say whether it had to
//! recover anything (a reclaim after a server reboot ends with
//! RECLAIM_COMPLETE; one after lost state asks TEST_STATEID) or make a new
//! client ID or session, and the serving node counts the reclaims it was
//! sent (OPEN with CLAIM_PREVIOUS, LOCK with reclaim); a probe in the
//! guest (write, fsync, read every 20 ms) measures the pause; a second
//! client (libnfs's NLM on host c1) is refused the lock throughout; and
//! during the failover, clients of other vservers on the surviving nodes
//! take new locks at once.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::kernel_locks::Guest;
use crate::kernel_nfs4::sh_ok;
use crate::support::*;
use crate::testbed::*;

const VIP: &str = "198.18.1.64";

/// The kernel's count of calls of each NFSv4 operation on /mnt.
fn mountstats(guest: &mut Guest) -> BTreeMap<String, u64> {
    let lines = sh_ok(
        guest,
        "awk '$1 == \"device\" { on = ($5 == \"/mnt\") } on && /^[[:space:]]*[A-Z_]+: [0-9]/ { print $1, $2 }' /proc/self/mountstats",
    );
    lines
        .iter()
        .filter_map(|l| {
            let (op, n) = l.split_once(' ')?;
            Some((op.trim_end_matches(':').to_string(), n.parse().ok()?))
        })
        .collect()
}

fn grew(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, op: &str) -> u64 {
    after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0)
}

/// An NLM call of libnfs's client on host c1 to `vip`: its status and how
/// long it took.
fn nlm(bed_name: &str, vip: &str, args: &[&str]) -> (String, u128) {
    let url = format!("nfs://{vip}/data");
    let (op, rest) = args.split_first().unwrap();
    let started = Instant::now();
    let output = Command::new("ip")
        .args(["netns", "exec", &format!("vnas-{bed_name}-c1")])
        .arg(nlmtool())
        .arg(op)
        .arg(&url)
        .args(rest)
        .output()
        .unwrap();
    let took = started.elapsed().as_millis();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let status =
        text.split_whitespace().find_map(|w| w.strip_prefix("status=")).unwrap_or("error").to_string();
    (status, took)
}

/// c1 asks for the guest's lock every 50 ms until `stop`: its answers.
fn keep_trying(bed_name: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut answers = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            answers.push(nlm(&bed_name, VIP, &["lock", "f", "c1", "1", "w", "0", "1"]).0);
            std::thread::sleep(Duration::from_millis(50));
        }
        answers
    })
}

/// `guest: B probed round_trips=N errors=E max_gap_ms=G` as (N, E, G).
fn probed(line: &str) -> (u64, u64, u64) {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {line}"))
    };
    (field("round_trips="), field("errors="), field("max_gap_ms="))
}

/// The probe's five longest gaps, longest first.
fn worst(line: &str) -> Vec<u64> {
    let list = line.split_whitespace().find_map(|w| w.strip_prefix("worst_ms="));
    let worst: Vec<u64> = list.unwrap_or_default().split(',').filter_map(|v| v.parse().ok()).collect();
    assert_eq!(worst.len(), 5, "worst_ms= in {line}");
    worst
}

#[test]
fn the_kernel_nfs41_client_keeps_its_state_across_moves_and_a_failover() {
    let Some(bed) = Bed::up("the_kernel_nfs41_client_keeps_its_state_across_moves_and_a_failover") else {
        return;
    };
    let kit = crate::kernel_locks::guest_kit();
    let mut nodes: BTreeMap<&str, NodeProc> =
        ["n1", "n2", "n3"].into_iter().map(|n| (n, bed.node_nfs4(n))).collect();
    let n1 = nodes.remove("n1").unwrap();
    let api = &n1;
    let a = bed.volume("a");
    bed.cli_json(
        api,
        &["vserver", "create", "mv", "--ip", &format!("{VIP}/16"), "--volume", &a, "--node", "n1"],
    );
    let mut guest = Guest::boot_with(&kit, &bed.name, VIP, 300, &[("MOUNT_OPTS", "vers=4.1")]);
    let mounts = sh_ok(&mut guest, "grep ' /mnt ' /proc/mounts");
    assert!(mounts.iter().any(|m| m.contains(" nfs4 ") && m.contains("vers=4.1")), "{mounts:?}");

    assert!(guest.ask("A open /mnt/f").contains(" ok"));
    assert!(guest.ask("A lock w 0 0").contains("granted"));
    assert_eq!(nlm(&bed.name, VIP, &["lock", "f", "c1", "1", "w", "0", "1"]).0, "NLM4_DENIED");
    let before = mountstats(&mut guest);
    assert!(before.get("LOCK").copied().unwrap_or(0) >= 1, "the lock went over NFSv4: {before:?}");

    // The guest's own longest gap with nothing happening (an emulated CPU
    // stalls now and then): what a move adds to it is its pause.
    guest.send("B probe /mnt/probe 4");
    let (_, errors, quiet) = probed(&guest.expect("guest: B probed", Duration::from_secs(30)));
    assert_eq!(errors, 0);

    // 20 planned moves while the guest writes and c1 keeps asking.
    let stop = Arc::new(AtomicBool::new(false));
    let trying = keep_trying(bed.name.clone(), stop.clone());
    guest.send("B probe /mnt/probe 30");
    std::thread::sleep(Duration::from_secs(1));
    let targets = ["n2", "n3", "n1"];
    let started = Instant::now();
    let mut pauses = Vec::new();
    for i in 0..20 {
        let to = targets[i % 3];
        let moved = bed.cli_json(api, &["vserver", "move", "mv", "--to", to]);
        assert_eq!(moved["to"], to);
        pauses.push(moved["pause_ms"].as_u64().unwrap());
        let v4 = bed.cli_json(api, &["vserver", "locks", "mv"])["nfs4"].clone();
        assert!(v4["reclaims"] == 0 && v4["clients"] == 1 && v4["lock_states"] == 1, "on {to}: {v4}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(started.elapsed() < Duration::from_secs(28), "the moves ended within the probe");
    let line = guest.expect("guest: B probed", Duration::from_secs(60));
    stop.store(true, Ordering::SeqCst);
    let answers = trying.join().unwrap();
    let (trips, errors, _) = probed(&line);
    let worst = worst(&line);
    let after = mountstats(&mut guest);
    let round_trip = 30_000 / trips.max(1);
    let own = quiet.max(round_trip);
    eprintln!(
        "kernel NFSv4.1, 20 moves: pauses {pauses:?} ms; guest probe {trips} round trips, worst gaps {worst:?} ms \
         ({quiet} ms with nothing happening); c1 refused {} times",
        answers.len()
    );
    assert_eq!(errors, 0, "no error in the guest: {line}");
    assert!(
        own <= 200,
        "the emulated guest paused {own} ms with nothing happening: too noisy to measure against"
    );
    // A move adds at most 100 ms to the longest the guest pauses on its
    // own. The emulated CPU also stalls now and then, and a stall during a
    // move adds up: the longest gap may be one round trip more, and only
    // two may be over the bound (twenty moves that each added more would
    // put all five over it).
    assert!(
        worst[0] <= own + round_trip + 100,
        "a move adds at most 100 ms to the kernel client's longest gap ({own} ms on its own, \
         {round_trip} ms a round trip), not {worst:?}"
    );
    assert!(
        worst[2] <= own + 100,
        "at most two of 20 moves add more than 100 ms to the kernel client's gap ({own} ms on its own): {worst:?}"
    );
    assert!(!answers.iter().any(|a| a == "NLM4_GRANTED"), "never granted to c1: {answers:?}");
    assert!(answers.iter().filter(|a| *a == "NLM4_DENIED").count() >= 20, "{answers:?}");
    for op in ["RECLAIM_COMPLETE", "TEST_STATEID", "FREE_STATEID", "EXCHANGE_ID", "CREATE_SESSION"] {
        assert_eq!(grew(&before, &after, op), 0, "{op} during the moves: none (no recovery, same session)");
    }
    assert!(grew(&before, &after, "SEQUENCE") + grew(&before, &after, "WRITE") > 0, "{after:?}");
    let history = bed.cli_json(api, &["vserver", "history", "mv"]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert!(last["locks"].as_str().unwrap_or_default().contains("handed over"), "{last}");
    // No grace: the guest takes a new lock at once.
    let relock = guest.ask("A lock w 0 100");
    assert!(relock.contains("granted"), "{relock}");

    // The node serving mv (n3, after 20 moves) is killed. Vservers on the
    // two others keep granting locks meanwhile.
    let view = bed.cli_json(api, &["vserver", "show", "mv"]);
    assert_eq!(view["node"], "n3");
    let b = bed.volume("b");
    let c = bed.volume("c");
    bed.cli_json(
        api,
        &["vserver", "create", "calm1", "--ip", "198.18.1.65/16", "--volume", &b, "--node", "n1"],
    );
    bed.cli_json(
        api,
        &["vserver", "create", "calm2", "--ip", "198.18.1.66/16", "--volume", &c, "--node", "n2"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let trying = keep_trying(bed.name.clone(), stop.clone());
    let others = {
        let (stop, bed_name) = (stop.clone(), bed.name.clone());
        std::thread::spawn(move || {
            let mut calls = Vec::new();
            let mut owner = 0;
            while !stop.load(Ordering::SeqCst) {
                owner += 1;
                for vip in ["198.18.1.65", "198.18.1.66"] {
                    let svid = owner.to_string();
                    calls.push(nlm(&bed_name, vip, &["lock", "g", "other", &svid, "w", "0", "1"]));
                    calls.push(nlm(&bed_name, vip, &["unlock", "g", "other", &svid, "0", "1"]));
                }
            }
            calls
        })
    };
    guest.send("B probe /mnt/probe 8");
    std::thread::sleep(Duration::from_secs(1));
    nodes.remove("n3").unwrap().kill();
    let line = guest.expect("guest: B probed", Duration::from_secs(60));
    stop.store(true, Ordering::SeqCst);
    let answers = trying.join().unwrap();
    let calls = others.join().unwrap();
    let (_, errors, gap) = probed(&line);
    let end = mountstats(&mut guest);
    let slowest = calls.iter().map(|(_, ms)| *ms).max().unwrap_or(0);
    eprintln!(
        "kernel NFSv4.1, SIGKILL failover: guest probe worst gap {gap} ms; other vservers' {} lock calls, slowest \
         {slowest} ms",
        calls.len()
    );
    assert_eq!(errors, 0, "{line}");
    // Seen 137-350 ms in eight runs and 1,078 ms once (CI): a second of
    // it looks like the client's SYN retransmission after a reconnect
    // nothing answered, not understood yet (README). The bound lets that
    // pass and fails a refused connection (3 s) or a client that waits out
    // a lease.
    assert!(gap <= quiet + 1500, "a failover adds at most 1.5 s to the kernel client's gap, not {gap} ms");
    assert!(!answers.iter().any(|a| a == "NLM4_GRANTED"), "never granted to c1: {answers:?}");
    assert!(calls.len() >= 8 && calls.iter().all(|(s, _)| s == "NLM4_GRANTED"), "{calls:?}");
    assert!(slowest < 500, "the other vservers grant at once throughout: {slowest} ms");
    assert_eq!(grew(&after, &end, "RECLAIM_COMPLETE"), 0, "nothing reclaimed after the failover: {end:?}");
    assert_eq!(grew(&after, &end, "TEST_STATEID") + grew(&after, &end, "FREE_STATEID"), 0, "no state lost");
    assert_eq!(grew(&after, &end, "EXCHANGE_ID"), 0, "the same client ID");
    assert_eq!(grew(&after, &end, "CREATE_SESSION"), 1, "one new session");
    let v4 = bed.cli_json(api, &["vserver", "locks", "mv"])["nfs4"].clone();
    assert!(v4["reclaims"] == 0 && v4["clients"] == 1 && v4["lock_states"] == 1, "{v4}");
    let view = bed.cli_json(api, &["vserver", "show", "mv"]);
    assert!(view["state"] == "running" && view["node"] != "n3", "{view}");
    // The owner still holds its lock; once it lets go, c1 gets it.
    assert_eq!(nlm(&bed.name, VIP, &["lock", "f", "c1", "1", "w", "0", "1"]).0, "NLM4_DENIED");
    assert!(guest.ask("A unlock 0 0").contains(" ok"));
    assert_eq!(nlm(&bed.name, VIP, &["lock", "f", "c1", "1", "w", "0", "1"]).0, "NLM4_GRANTED");
    guest.send("quit");
    let _ = guest.expect("guest: quit", Duration::from_secs(10));
    for (_, node) in nodes {
        node.stop();
    }
    n1.stop();
}
