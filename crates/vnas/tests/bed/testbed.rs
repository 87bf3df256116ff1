//! The test bed as test support: one bed per test, its nodes (`vnas node
//! run --network linux` inside a host namespace, API over HTTPS on the
//! host's address), its clients, the CLI run from a client host.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// One test on the bed at a time (see main.rs).
static BED_LOCK: Mutex<()> = Mutex::new(());

pub struct Bed {
    pub name: String,
    pub dir: tempfile::TempDir,
    _lock: MutexGuard<'static, ()>,
}

/// The address of a bed host (as scripts/bed.sh gives them).
pub fn host_address(host: &str) -> String {
    match host.split_at(1) {
        ("n", i) => format!("198.18.0.{i}"),
        ("c", i) => format!("198.18.0.{}", 100 + i.parse::<u32>().unwrap()),
        _ => panic!("no host {host}"),
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bed.sh")
}

impl Bed {
    /// A new bed, or None (the test skips, loudly) without root or the
    /// tools the linux mode needs.
    pub fn up(test: &str) -> Option<Bed> {
        if skip_unless_root(test) {
            return None;
        }
        for tool in ["ip", "nft"] {
            if Command::new(tool).arg("-V").output().is_err() {
                cannot_run(test, &format!("`{tool}` is missing (packages iproute2, nftables)"), true);
                return None;
            }
        }
        let lock = BED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}x{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::SeqCst));
        let status = Command::new("bash").arg(script()).args(["up", &name]).status().unwrap();
        assert!(status.success(), "scripts/bed.sh up {name}");
        let bed = Bed { name, dir: temp_dir(), _lock: lock };
        bed.make_certificate();
        Some(bed)
    }

    pub fn ns(&self, host: &str) -> String {
        format!("vnas-{}-{host}", self.name)
    }

    /// `program` run on `host`.
    pub fn command(&self, host: &str, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns(host)]).arg(program);
        command
    }

    /// The cluster's API certificate: every node's address in it, so
    /// nodes, peers and the CLI on a client host all check it.
    fn make_certificate(&self) {
        let names = vec!["198.18.0.1".into(), "198.18.0.2".into(), "198.18.0.3".into(), "127.0.0.1".into()];
        let cert = rcgen::generate_simple_self_signed(names).unwrap();
        std::fs::write(self.cert(), cert.cert.pem()).unwrap();
        std::fs::write(self.dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A volume directory of this bed's, as `--volume /data=DIR`.
    pub fn volume(&self, name: &str) -> String {
        let dir = self.dir.path().join("volumes").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        format!("/data={}", dir.display())
    }

    /// `vnas node run` on host `name` (n1..n3), linux mode on its eth0,
    /// the API on its address over HTTPS; `fault` as NodeProc's.
    pub fn node(&self, name: &str, fault: Option<&str>) -> NodeProc {
        self.node_on(name, &self.store(), fault)
    }

    /// A node that also serves NFSv4 (`--nfs4`).
    pub fn node_nfs4(&self, name: &str) -> NodeProc {
        self.node_with(name, &self.store(), None, &["--nfs4"])
    }

    /// A node on the common volume `store`.
    pub fn node_on(&self, name: &str, store: &std::path::Path, fault: Option<&str>) -> NodeProc {
        self.node_with(name, store, fault, &[])
    }

    fn node_with(
        &self,
        name: &str,
        store: &std::path::Path,
        fault: Option<&str>,
        extra: &[&str],
    ) -> NodeProc {
        std::fs::create_dir_all(store).expect("the store directory");
        let vnas = vnas_command();
        let mut command = self.command(name, vnas.get_program());
        command
            .args(["node", "run", "--name", name, "--store"])
            .arg(store)
            .args(["--api", &format!("{}:7400", host_address(name))])
            .args(["--network", "linux", "--interface", "eth0", "--tls-cert"])
            .arg(self.cert())
            .arg("--tls-key")
            .arg(self.dir.path().join("key.pem"))
            .args(extra)
            .env("VNAS_TOKEN_FILE", token_file())
            .env("VNAS_LOG", std::env::var("VNAS_LOG").unwrap_or_else(|_| "warn".into()))
            .stderr(Stdio::inherit());
        if let Some(fault) = fault {
            command.env("VNAS_FAULT", fault);
        }
        NodeProc::spawn(command)
    }

    /// The CLI on client host c1, against `node`'s API, with the token;
    /// a `vserver create` without `--export` gets the tests' trusted one.
    pub fn cli(&self, node: &NodeProc, args: &[&str]) -> (bool, String, String) {
        let mut args = args.to_vec();
        if args.starts_with(&["vserver", "create"]) && !args.contains(&"--export") {
            args.extend(["--export", TRUSTED_EXPORT]);
        }
        let output = self.cli_command(node).args(&args).output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    pub fn cli_command(&self, node: &NodeProc) -> Command {
        let mut command = self.command("c1", env!("CARGO_BIN_EXE_vnas"));
        command
            .env("VNAS_TOKEN_FILE", token_file())
            .env_remove("VNAS_TOKEN")
            .env("VNAS_API", &node.api)
            .env("VNAS_CA_FILE", self.cert())
            .env("VNAS_LOG", "warn");
        command
    }

    pub fn cli_json(&self, node: &NodeProc, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let (ok, out, err) = self.cli(node, &args);
        assert!(ok, "vnas {args:?} failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("vnas {args:?}: {e}: {out}"))
    }

    /// Our libnfs probe on client host `host`: write, commit, read back
    /// every 20 ms for `seconds`, against `nfs://IP/data` with no port
    /// options (the vserver's portmap on 111 answers).
    pub fn probe(&self, host: &str, ip: &str, seconds: u32) -> Probe {
        self.probe_with(host, ip, seconds, true)
    }

    /// A probe without COMMIT in its round trip, for bounds of 100 ms and
    /// less: the bed's volumes share the host's one disk, whose flush
    /// stalls (another test's fsync) reach every probe at once (CI once
    /// saw 128 ms on a moving and an unmoved vserver alike).
    pub fn probe_without_commit(&self, host: &str, ip: &str, seconds: u32) -> Probe {
        self.probe_with(host, ip, seconds, false)
    }

    fn probe_with(&self, host: &str, ip: &str, seconds: u32, commit: bool) -> Probe {
        let url = format!("nfs://{ip}/data");
        let child = self
            .command(host, nfsprobe())
            .env("NFSPROBE_COMMIT", if commit { "1" } else { "0" })
            .args(["probe", &url, &seconds.to_string(), "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        Probe(child)
    }

    /// Runs `ip ARGS` on `host` and returns its output.
    pub fn ip(&self, host: &str, args: &[&str]) -> String {
        let output: Output = Command::new("ip").arg("-n").arg(self.ns(host)).args(args).output().unwrap();
        assert!(output.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// tcpdump on the bridge's port of a host: every frame the host sends
/// that carries an address (as IP source or ARP sender), with its time.
pub struct Capture {
    child: std::process::Child,
    lines: std::sync::Arc<Mutex<Vec<String>>>,
}

impl Capture {
    /// Frames host `host` sends into the bed from `address`, from now on.
    pub fn start(bed: &Bed, host: &str, address: &str) -> Capture {
        let mut child = bed
            .command("bed", "tcpdump")
            .args(["-i", host, "-Q", "in", "-n", "-tt", "-l", "-e", "src", "host", address])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump runs (package tcpdump)");
        // It says so on stderr once it captures.
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        while !said.contains("listening on") {
            let read = std::io::BufRead::read_line(&mut stderr, &mut said).unwrap();
            assert!(read > 0, "tcpdump did not start: {said}");
        }
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let lines = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Capture { child, lines }
    }

    /// The frames captured at or after `since_ms` (ms since the epoch).
    pub fn since(&self, since_ms: u64) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|line| {
                let at = line.split_whitespace().next().and_then(|t| t.parse::<f64>().ok());
                at.is_some_and(|seconds| (seconds * 1000.0) as u64 >= since_ms)
            })
            .cloned()
            .collect()
    }

    pub fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wall-clock milliseconds since the epoch (the clock of tcpdump's -tt
/// and of the history's at_ms).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).args(["down", &self.name]).status();
    }
}

/// The vserver's history, through `node`'s API.
pub fn history(bed: &Bed, node: &NodeProc, name: &str) -> Vec<Value> {
    bed.cli_json(node, &["vserver", "history", name]).as_array().unwrap().clone()
}

/// The network namespaces a node process holds besides its own (its
/// vservers'), as paths others can enter.
pub fn vserver_namespaces(node: &NodeProc) -> Vec<String> {
    let pid = node.child.id();
    let own = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            if target.to_string_lossy().starts_with("net:[") && target != own {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}

pub fn run_in(namespace: &str, command: &[&str]) -> String {
    let output = std::process::Command::new("nsenter")
        .arg(format!("--net={namespace}"))
        .args(command)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}
