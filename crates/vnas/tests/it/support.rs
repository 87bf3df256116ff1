//! Starting servers and connecting clients.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::tokio::{TokioConnector, TokioIo};
use nfs3_client::{Nfs3Connection, Nfs3ConnectionBuilder};
use nfs3_types::xdr_codec::Pack;

pub type Connection = Nfs3Connection<TokioIo<tokio::net::TcpStream>>;

/// Builds our libnfs probe (tools/nfsprobe.c) once per test run.
pub fn nfsprobe() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| build_tool("nfsprobe")).clone()
}

/// Our libnfs NLM/NSM client (tools/nlmtool.c), built like `nfsprobe`.
pub fn nlmtool() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| build_tool("nlmtool")).clone()
}

fn build_tool(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = dir.join(name);
    // Built aside and renamed: tests in other processes may race.
    let building = dir.join(format!("{name}.{}", std::process::id()));
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../tools/{name}.c"));
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&building)
        .arg(&source)
        .arg("-lnfs")
        .status()
        .expect("cc runs (gcc, libnfs-dev)");
    assert!(status.success(), "building {}", source.display());
    std::fs::rename(&building, &out).unwrap();
    out
}

/// The admin token file every node and CLI of the tests shares (made once
/// per target directory, mode 600, as a node would make it).
pub fn token_file() -> std::path::PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    static MADE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    MADE.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin.token");
        if !path.exists() {
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes).unwrap();
            let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let aside = path.with_extension(format!("{}", std::process::id()));
            let mut file =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&aside).unwrap();
            writeln!(file, "tests {secret}").unwrap();
            // Test binaries in other processes may race to make it: one link wins.
            let _ = std::fs::hard_link(&aside, &path);
            std::fs::remove_file(&aside).unwrap();
        }
        path
    })
    .clone()
}

/// The token in `token_file()`.
pub fn admin_token() -> String {
    let text = std::fs::read_to_string(token_file()).unwrap();
    text.split_whitespace().nth(1).expect("NAME TOKEN").to_string()
}

/// The vnas binary, with the tests' token file for nodes and the CLI.
pub fn vnas_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vnas"));
    command.env("VNAS_TOKEN_FILE", token_file()).env_remove("VNAS_TOKEN");
    command
}

/// A `vnas serve` process, stopped when dropped.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Served {
    /// Serves `dir` as `/data` to a trusted client: root is not squashed
    /// and any port may call (most tests act as root from high ports);
    /// `options` come after, and win.
    pub fn start(dir: &Path, options: &str) -> Served {
        Served::start_exports(&[format!("/data={}:no_root_squash,insecure,{options}", dir.display())])
    }

    pub fn start_exports(exports: &[String]) -> Served {
        Served::start_with(exports, &[])
    }

    /// With more `vnas serve` arguments (`--nfs4`).
    pub fn start_with(exports: &[String], more: &[&str]) -> Served {
        let mut cmd = vnas_command();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--drain-timeout", "2"]).args(more);
        cmd.env("VNAS_LOG", std::env::var("VNAS_LOG").unwrap_or_else(|_| "warn".into()));
        for export in exports {
            cmd.args(["--export", export]);
        }
        let mut child =
            cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("the vnas binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("vnas prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Served { child, addr }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn url(&self, path: &str) -> String {
        format!("nfs://127.0.0.1{path}?nfsport={0}&mountport={0}", self.port())
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(mut self) {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "vnas serve exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "vnas serve did not stop within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process runs and answers an RPC NULL call.
    pub fn answers(&mut self) -> bool {
        if self.child.try_wait().unwrap().is_some() {
            return false;
        }
        let mut raw = RawClient::connect(self.addr);
        let reply = raw.call(100003, 3, 0, &[]);
        accept_stat(&reply) == Some(0)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn auth(uid: u32, gid: u32) -> opaque_auth<'static> {
    opaque_auth::auth_unix(&auth_unix {
        stamp: 1,
        machinename: nfs3_types::xdr_codec::Opaque::borrowed(b"test"),
        uid,
        gid,
        gids: vec![gid],
    })
}

/// Mounts `path` as `uid`/`gid` with the nfs3_client crate.
pub async fn mount_as(served: &Served, path: &str, uid: u32, gid: u32) -> Connection {
    try_mount_as(served, path, uid, gid).await.expect("mount")
}

pub async fn try_mount_as(
    served: &Served,
    path: &str,
    uid: u32,
    gid: u32,
) -> Result<Connection, nfs3_client::ConnectError> {
    Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", path)
        .mount_port(served.port())
        .nfs3_port(served.port())
        .connect_from_privileged_port(false)
        .credential(auth(uid, gid))
        .mount()
        .await
}

pub async fn mount(served: &Served) -> Connection {
    mount_as(served, "/data", 0, 0).await
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// What cannot run here (no root, a tool missing) fails the test with the
/// reason, unless the person running the tests opted out with
/// `VNAS_ALLOW_SKIPS=1`: then it says SKIPPED and is recorded in the file
/// `VNAS_SKIP_LOG` names, which the test command counts in its closing
/// line. A whole test (`test` true) that skips is not counted as passed.
/// CI runs as root and never opts out. Returns true: skip it.
pub fn cannot_run(what: &str, why: &str, test: bool) -> bool {
    if std::env::var("VNAS_ALLOW_SKIPS").as_deref() != Ok("1") {
        panic!("{what} cannot run: {why} (VNAS_ALLOW_SKIPS=1 skips what cannot run, and says so)");
    }
    eprintln!("SKIPPED {what}: {why}");
    if let Ok(path) = std::env::var("VNAS_SKIP_LOG") {
        use std::io::Write as _;
        let line = format!("{} {what}: {why}\n", if test { "test" } else { "part" });
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        log.write_all(line.as_bytes()).unwrap();
    }
    true
}

/// A test that needs root: true (skip it) only when not root and skips
/// are allowed; without root and without the opt-out, it fails.
pub fn skip_unless_root(test: &str) -> bool {
    !is_root() && cannot_run(test, "needs root (CI runs as root)", true)
}

/// A part of a test that needs root: whether it runs (as for
/// `skip_unless_root`).
pub fn root_part(what: &str) -> bool {
    is_root() || !cannot_run(what, "needs root (CI runs as root)", false)
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("vnas-test-").tempdir().unwrap()
}

/// A hand-rolled RPC client for what a well-behaved client never sends.
pub struct RawClient {
    pub stream: TcpStream,
    xid: u32,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        RawClient { stream, xid: 1000 }
    }

    /// Sends `record` as one fragment.
    pub fn send_record(&mut self, record: &[u8]) {
        let mut out = ((record.len() as u32) | 0x8000_0000).to_be_bytes().to_vec();
        out.extend_from_slice(record);
        self.stream.write_all(&out).unwrap();
    }

    /// Reads one reply record; `None` if the server closed the connection.
    pub fn read_reply(&mut self) -> Option<Vec<u8>> {
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header).ok()?;
        let len = (u32::from_be_bytes(header) & 0x7fff_ffff) as usize;
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).ok()?;
        Some(body)
    }

    pub fn call_header(&mut self, prog: u32, vers: u32, proc_: u32) -> Vec<u8> {
        self.xid += 1;
        call_header(self.xid, 2, prog, vers, proc_)
    }

    pub fn call(&mut self, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
        let mut record = self.call_header(prog, vers, proc_);
        record.extend_from_slice(args);
        self.send_record(&record);
        self.read_reply().expect("a reply")
    }
}

/// An RPC call header with AUTH_SYS root credentials.
pub fn call_header(xid: u32, rpcvers: u32, prog: u32, vers: u32, proc_: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for word in [xid, 0, rpcvers, prog, vers, proc_] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    auth(0, 0).pack(&mut out).unwrap();
    opaque_auth::default().pack(&mut out).unwrap();
    out
}

/// For an accepted reply, its accept_stat; `None` for a denied one.
pub fn accept_stat(reply: &[u8]) -> Option<u32> {
    let word = |i: usize| u32::from_be_bytes(reply[i * 4..i * 4 + 4].try_into().unwrap());
    assert_eq!(word(1), 1, "a REPLY message");
    if word(2) != 0 {
        return None;
    }
    // xid, REPLY, MSG_ACCEPTED, verifier flavor, verifier length (0), stat
    Some(word(5))
}

/// The reject_stat and detail of a denied reply.
pub fn reject(reply: &[u8]) -> (u32, u32) {
    let word = |i: usize| u32::from_be_bytes(reply[i * 4..i * 4 + 4].try_into().unwrap());
    assert_eq!(word(2), 1, "MSG_DENIED");
    (word(3), word(4))
}

/// The results of a successful accepted reply.
pub fn results(reply: &[u8]) -> &[u8] {
    assert_eq!(accept_stat(reply), Some(0));
    &reply[24..]
}

/// A `vnas node run` process, killed when dropped.
pub struct NodeProc {
    pub child: Child,
    pub api: String,
}

impl NodeProc {
    /// `store`: a directory, or an etcd:// URL.
    pub fn start(name: &str, store: impl AsRef<std::ffi::OsStr>) -> NodeProc {
        NodeProc::start_with(name, store, None)
    }

    /// With `fault`: the node dies (abort) at that step of a transfer.
    pub fn start_with(name: &str, store: impl AsRef<std::ffi::OsStr>, fault: Option<&str>) -> NodeProc {
        let mut command = NodeProc::command(name, store);
        if let Some(fault) = fault {
            command.env("VNAS_FAULT", fault);
        }
        NodeProc::spawn(command)
    }

    /// `vnas node run` for `name` on `store`, API on a free loopback port;
    /// more flags may follow.
    pub fn command(name: &str, store: impl AsRef<std::ffi::OsStr>) -> Command {
        // A directory store must exist (a node waits for a missing one).
        let spec = store.as_ref().to_string_lossy();
        if !spec.starts_with("etcd://") {
            std::fs::create_dir_all(spec.as_ref()).expect("the store directory");
        }
        let mut command = vnas_command();
        command
            .args(["node", "run", "--name", name, "--api", "127.0.0.1:0"])
            .arg("--store")
            .arg(store)
            .env("VNAS_LOG", std::env::var("VNAS_LOG").unwrap_or_else(|_| "warn".into()))
            .stderr(Stdio::inherit());
        command
    }

    pub fn spawn(mut command: Command) -> NodeProc {
        let mut child = command.stdout(Stdio::piped()).spawn().expect("the vnas binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("the node prints its API");
        let api = line
            .split_whitespace()
            .last()
            .filter(|_| line.starts_with("node "))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        NodeProc { child, api }
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), signal).unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) {
        self.signal(rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "node exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "node did not stop within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process has exited (for nodes told to die at a step).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `cli` adds to a `vserver create` that names no export: the tests'
/// clients act as a trusted root, from high ports.
pub const TRUSTED_EXPORT: &str = "/data:rw:no_root_squash:insecure";

/// Runs the CLI against `api`; returns (success, stdout, stderr).
pub fn cli(api: &str, args: &[&str]) -> (bool, String, String) {
    let mut args = args.to_vec();
    if args.starts_with(&["vserver", "create"]) && !args.contains(&"--export") {
        args.extend(["--export", TRUSTED_EXPORT]);
    }
    let output = vnas_command().args(&args).env("VNAS_API", api).env("VNAS_LOG", "warn").output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs the CLI and parses its `--json` output.
pub fn cli_json(api: &str, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    let (ok, out, err) = cli(api, &args);
    assert!(ok, "vnas {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("vnas {args:?}: {e}: {out}"))
}

/// Mounts `export` of the vserver at `ip` (NFS on port 2049).
pub async fn mount_vserver(
    ip: &str,
    export: &str,
    uid: u32,
    gid: u32,
) -> Result<Connection, nfs3_client::ConnectError> {
    Nfs3ConnectionBuilder::new(TokioConnector, ip, export)
        .mount_port(2049)
        .nfs3_port(2049)
        // As root, a reserved port, as `secure` exports require.
        .connect_from_privileged_port(is_root())
        .credential(auth(uid, gid))
        .mount()
        .await
}

/// Polls until `check` holds, for at most `seconds`.
pub fn eventually(seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An API call with `token` (if any) and a JSON `body` (if any): the HTTP
/// status and the JSON answer.
pub fn http(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, serde_json::Value) {
    let client = reqwest::blocking::Client::new();
    let mut request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        "DELETE" => client.delete(url),
        _ => unreachable!(),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(serde_json::Value::Null))
}

/// Our libnfs probe running (see `nfsprobe`).
pub struct Probe(pub Child);

impl Probe {
    /// Waits for the probe; returns its max gap in ms. Fails the test on
    /// any failed operation or mismatch.
    pub fn finish(self) -> u64 {
        let output = self.0.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "probe saw errors: {stdout} {stderr}");
        assert!(stdout.contains("failed_ops=0 mismatches=0"), "{stdout}");
        let gap = stdout.split("max_gap_ms=").nth(1).and_then(|v| v.trim().parse().ok());
        gap.unwrap_or_else(|| panic!("no max_gap in {stdout}"))
    }
}

/// The nodes that say they answer for `vserver` now, from a `node list
/// --json` (each node asked of its own running set, not the store's owner
/// field). Every node the store counts alive must have answered.
pub fn serving_nodes(nodes: &serde_json::Value, vserver: &str) -> Vec<String> {
    let mut serving = Vec::new();
    for node in nodes.as_array().expect("a node list") {
        let name = node["name"].as_str().unwrap().to_string();
        let Some(served) = node["serving"].as_array() else {
            assert_ne!(node["alive"], true, "node {name} is alive but did not say what it serves: {nodes}");
            continue;
        };
        if served.iter().any(|s| s == vserver) {
            serving.push(name);
        }
    }
    serving
}

/// What node `api` says it serves now (`GET /api/node`), by name.
pub fn served_by(api: &str) -> Vec<String> {
    let (status, local) = http("GET", &format!("{api}/api/node"), Some(&admin_token()), None);
    assert_eq!(status, 200, "{local}");
    local["serving"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

/// One node at a time: every transfer's source is the previous one's
/// target, and every change of owner has a higher epoch (a restart on the
/// same node keeps it).
pub fn check_history(history: &[serde_json::Value]) {
    for pair in history.windows(2) {
        if pair[1]["why"] == "restart" {
            assert_eq!(pair[1]["to"], pair[0]["to"], "{pair:?}");
            assert!(pair[1]["epoch"].as_u64() >= pair[0]["epoch"].as_u64(), "{pair:?}");
        } else {
            assert_eq!(pair[1]["from"], pair[0]["to"], "{pair:?}");
            assert!(pair[1]["epoch"].as_u64() > pair[0]["epoch"].as_u64(), "{pair:?}");
        }
    }
}
