//! Locks as our users take them: the Linux kernel NFS client in a QEMU
//! guest (scripts/guest.sh locks) with rpcbind and rpc.statd running, a
//! mount with the default options (no `nolock`), fcntl and flock from two
//! processes in the guest, and a second client on another host (libnfs's
//! NLM, tools/nlmtool.c) contending with them, across a planned move and a
//! SIGKILL failover of the vserver; then the guest's statd tells of a
//! reboot and its locks go.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;
use crate::testbed::*;

const VIP: &str = "198.18.1.60";

/// The guest on its console: commands in, `guest: ` lines out.
pub(crate) struct Guest {
    child: std::process::Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    console: Vec<String>,
}

/// However a test ends, its guest goes: a QEMU left running (a guest
/// whose power-off waits on a mount whose server stopped, a test that
/// failed) would hold a core for minutes and, on QEMU's user-mode
/// network, talk to the next test's server.
impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.wait();
    }
}

impl Guest {
    fn boot(bed: &Bed, kit: &std::path::Path, seconds: u64) -> Guest {
        Guest::boot_with(kit, &bed.name, VIP, seconds, &[])
    }

    /// `scripts/guest.sh locks KIT BED VIP /data SECONDS` with `env` (BED
    /// "user": QEMU's user-mode network, VIP 10.0.2.2).
    pub(crate) fn boot_with(
        kit: &std::path::Path,
        bed: &str,
        vip: &str,
        seconds: u64,
        env: &[(&str, &str)],
    ) -> Guest {
        let mut guest = Guest::start(kit, bed, vip, seconds, env);
        if guest.wait_for("guest: ready", Duration::from_secs(90)).is_some() {
            return guest;
        }
        // The emulated guest's kernel now and then oopses while it patches
        // its own text at boot (int3 in sched_clock_cpu, once in CI), before
        // anything of ours runs: that boot is thrown away and the guest
        // booted once more. Any other failure to get ready fails the test.
        let oopsed = guest.console.iter().any(|l| l.contains("Oops:") || l.contains("Kernel panic"));
        let first = guest.console.join("\n");
        assert!(oopsed, "no line \"guest: ready\" from the guest within 90s; console:\n{first}");
        guest.kill();
        eprintln!("the guest's kernel failed at boot; booting it again. Its console:\n{first}");
        let mut guest = Guest::start(kit, bed, vip, seconds, env);
        guest.expect("guest: ready", Duration::from_secs(90));
        guest
    }

    fn start(kit: &std::path::Path, bed: &str, vip: &str, seconds: u64, env: &[(&str, &str)]) -> Guest {
        use std::os::unix::process::CommandExt;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/guest.sh");
        let mut child = Command::new("bash")
            .arg(script)
            .arg("locks")
            .arg(kit)
            .args([bed, vip, "/data", &seconds.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its own group: a failed boot's QEMU goes with it.
            .process_group(0)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Guest { child, stdin, lines, console: Vec::new() }
    }

    /// Ends the guest's script and its QEMU (their process group).
    fn kill(self) {
        drop(self);
    }

    /// The next line that starts with `prefix`, within `wait`; None if
    /// none came.
    pub(crate) fn wait_for(&mut self, prefix: &str, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            self.console.push(line.clone());
            if line.starts_with(prefix) {
                return Some(line);
            }
        }
    }

    /// The next line that starts with `prefix`, within `wait`.
    pub(crate) fn expect(&mut self, prefix: &str, wait: Duration) -> String {
        self.wait_for(prefix, wait).unwrap_or_else(|| {
            panic!("no line {prefix:?} from the guest within {wait:?}; console:\n{}", self.console.join("\n"))
        })
    }

    pub(crate) fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Sends `A cmd` (or `B cmd`) and returns that locker's answer.
    pub(crate) fn ask(&mut self, command: &str) -> String {
        let who = &command[..1];
        self.send(command);
        self.expect(&format!("guest: {who} "), Duration::from_secs(20))
    }
}

/// The guest's kernel and initramfs (`scripts/guest.sh build`, a cache).
pub(crate) fn guest_kit() -> PathBuf {
    let kit = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guestkit");
    let built = Command::new("bash")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/guest.sh"))
        .arg("build")
        .arg(&kit)
        .status()
        .unwrap();
    assert!(built.success(), "scripts/guest.sh build");
    kit
}

/// `ms=T` of a locker's answer.
fn ms(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

/// One call of the second client, from host c1, finding NLM through the
/// vserver's portmapper on port 111 as a client does; its status.
fn c1(bed: &Bed, args: &[&str]) -> String {
    let url = format!("nfs://{VIP}/data");
    let (op, rest) = args.split_first().unwrap();
    let output = bed.command("c1", nlmtool()).arg(op).arg(&url).args(rest).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "nlmtool {args:?}: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.split_whitespace().find_map(|w| w.strip_prefix("status=")).unwrap_or("none").to_string()
}

/// What vserver lk's table holds, as `vnas vserver locks` lists it:
/// (client, file, type).
fn held(bed: &Bed, api: &NodeProc) -> Vec<(String, String, String)> {
    let locks = bed.cli_json(api, &["vserver", "locks", "lk"]);
    let mut held: Vec<_> = locks["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["client"].as_str().unwrap().into(),
                l["file"].as_str().unwrap().into(),
                l["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    held.sort();
    held
}

fn guest_holds_f(held: &[(String, String, String)]) -> bool {
    held.iter().any(|(client, file, kind)| client == "guest" && file == "/data/f" && kind == "write")
}

#[test]
fn the_kernel_client_locks_across_a_move_and_a_failover() {
    let Some(bed) = Bed::up("the_kernel_client_locks_across_a_move_and_a_failover") else { return };
    let kit = guest_kit();
    let n1 = bed.node("n1", None);
    let n2 = bed.node("n2", None);
    let n3 = bed.node("n3", None);
    let a = bed.volume("a");
    bed.cli_json(
        &n3,
        &["vserver", "create", "lk", "--ip", &format!("{VIP}/16"), "--volume", &a, "--node", "n1"],
    );
    let mut guest = Guest::boot(&bed, &kit, 240);

    // fcntl: the first lock an application takes returns, granted (the
    // issue: it never returned), and the other client is refused.
    assert!(guest.ask("A open /mnt/f").contains(" ok"));
    let first = guest.ask("A lock w 0 0");
    assert!(first.contains("granted"), "{first}");
    eprintln!("kernel client: first lock {} ms", ms(&first));
    assert!(ms(&first) < 2_000, "the first lock is answered at once: {first}");
    assert_eq!(c1(&bed, &["lock", "f", "c1", "1", "w", "0", "1"]), "NLM4_DENIED");
    assert_eq!(
        c1(&bed, &["lock", "f", "c1", "1", "r", "100", "1"]),
        "NLM4_DENIED",
        "exclusive excludes readers"
    );
    assert!(guest_holds_f(&held(&bed, &n3)), "the table lists the guest's lock");

    // flock (whole-file NLM locks on NFS): excludes, then frees.
    assert!(guest.ask("B open /mnt/g").contains(" ok"));
    assert!(guest.ask("B flock ex nb").contains("granted"));
    assert_eq!(c1(&bed, &["lock", "g", "c1", "1", "w", "0", "0"]), "NLM4_DENIED");
    assert!(guest.ask("B flock un").contains(" ok"));
    assert_eq!(c1(&bed, &["lock", "g", "c1", "1", "w", "0", "0"]), "NLM4_GRANTED");
    // Shared shares, exclusive waits: c1 reads g, B reads it too; B's
    // blocking write lock waits until c1 lets go, and the server's
    // GRANTED call back to the guest's lock manager wakes it.
    assert_eq!(c1(&bed, &["unlock", "g", "c1", "1", "0", "0"]), "NLM4_GRANTED");
    assert_eq!(c1(&bed, &["lock", "g", "c1", "1", "r", "0", "0"]), "NLM4_GRANTED");
    assert!(guest.ask("B lock r 0 0").contains("granted"), "shared shares");
    assert!(guest.ask("B lock w 0 0").contains("denied"));
    assert!(guest.ask("B lockw w 0 0").contains("waiting"));
    std::thread::sleep(Duration::from_millis(500));
    let released = Instant::now();
    assert_eq!(c1(&bed, &["unlock", "g", "c1", "1", "0", "0"]), "NLM4_GRANTED");
    let granted = guest.expect("guest: B ", Duration::from_secs(20));
    let callback_ms = released.elapsed().as_millis();
    eprintln!("kernel client: blocked lock granted {callback_ms} ms after the holder's unlock");
    assert!(granted.contains("granted"), "{granted}");
    assert!(callback_ms < 2_000, "granted by the call back, not by the client's 30 s poll: {callback_ms} ms");
    assert!(guest.ask("B unlock 0 0").contains(" ok"));

    // A planned move while c1 keeps trying: A's lock stays A's, c1 is
    // refused before, during and after, and nobody reclaims anything.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trying = {
        let (stop, bed_name) = (stop.clone(), bed.name.clone());
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let url = format!("nfs://{VIP}/data");
                let output = Command::new("ip")
                    .args(["netns", "exec", &format!("vnas-{bed_name}-c1")])
                    .arg(nlmtool())
                    .args(["lock", &url, "f", "c1", "1", "w", "0", "1"])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&output.stdout).into_owned();
                answers.push(
                    text.split_whitespace()
                        .find_map(|w| w.strip_prefix("status="))
                        .unwrap_or("error")
                        .to_string(),
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            answers
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let moved = bed.cli_json(&n3, &["vserver", "move", "lk", "--to", "n2"]);
    assert_eq!(moved["to"], "n2");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answers = trying.join().unwrap();
    eprintln!("c1's lock attempts around the move: {answers:?}");
    assert!(
        !answers.iter().any(|a| a == "NLM4_GRANTED"),
        "never granted to c1 while the guest holds it: {answers:?}"
    );
    assert!(answers.iter().filter(|a| *a == "NLM4_DENIED").count() >= 3, "{answers:?}");
    assert!(guest_holds_f(&held(&bed, &n3)));
    assert_eq!(bed.cli_json(&n3, &["vserver", "locks", "lk"])["node"], "n2");
    let history = bed.cli_json(&n3, &["vserver", "history", "lk"]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert!(
        last["why"] == "move" && last["locks"].as_str().unwrap_or_default().contains("no grace"),
        "{last}"
    );
    // The guest goes on locking as before: a new lock at once, no grace.
    assert!(guest.ask("A lock w 0 0").contains("granted"));

    // A SIGKILL failover: the next owner restores the table n2 recorded.
    n2.kill();
    eventually(10, "a survivor to serve lk", || {
        let view = bed.cli_json(&n3, &["vserver", "show", "lk"]);
        view["state"] == "running" && view["node"] != "n2"
    });
    assert_eq!(c1(&bed, &["lock", "f", "c1", "1", "w", "0", "1"]), "NLM4_DENIED");
    assert!(guest_holds_f(&held(&bed, &n3)));
    // A unlocks: now c1 gets it.
    assert!(guest.ask("A unlock 0 0").contains(" ok"));
    assert_eq!(c1(&bed, &["lock", "f", "c1", "1", "w", "0", "1"]), "NLM4_GRANTED");
    assert_eq!(c1(&bed, &["unlock", "f", "c1", "1", "0", "1"]), "NLM4_GRANTED");

    // The guest "reboots": its statd's SM_NOTIFY (UDP, from sm-notify)
    // releases every lock it held.
    assert!(guest.ask("A lock w 0 0").contains("granted"));
    assert_eq!(c1(&bed, &["lock", "f", "c1", "1", "w", "0", "1"]), "NLM4_DENIED");
    guest.send("notify");
    let done = guest.expect("guest: notify done", Duration::from_secs(30));
    assert!(done.ends_with("status=0"), "{done}");
    eventually(10, "the server to release the rebooted client's locks", || !guest_holds_f(&held(&bed, &n3)));
    assert_eq!(c1(&bed, &["lock", "f", "c1", "1", "w", "0", "1"]), "NLM4_GRANTED");
    guest.send("quit");
    let _ = guest.expect("guest: quit", Duration::from_secs(10));
    let status = guest.child.wait().unwrap();
    assert!(status.success(), "the guest ended cleanly; console:\n{}", guest.console.join("\n"));
    n1.stop();
    n3.stop();
}
