//! Nobody gets in where they do not belong: the management API wants the
//! admin token on every address (loopback included), TLS off loopback, and
//! exports squash root and want reserved ports unless told otherwise.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nfs3_client::tokio::TokioConnector;
use nfs3_client::Nfs3ConnectionBuilder;
use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::{Pack, Unpack};
use serde_json::Value;

use crate::support::*;

/// A node with a token file of its own, its log in `log`.
fn node_with_log(name: &str, top: &std::path::Path) -> (NodeProc, std::path::PathBuf, std::path::PathBuf) {
    let token_file = top.join("admin.token");
    let log = top.join(format!("{name}.log"));
    let mut command = NodeProc::command(name, top.join("store"));
    command
        .arg("--token-file")
        .arg(&token_file)
        .env("VNAS_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap());
    (NodeProc::spawn(command), token_file, log)
}

#[test]
fn the_api_refuses_calls_without_the_token_and_changes_nothing() {
    let top = temp_dir();
    let vol = top.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let (n1, token_file, log) = node_with_log("n1", top.path());
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the node made its token file for root alone");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.lines().find(|l| !l.starts_with('#')).unwrap().split_whitespace().nth(1).unwrap();
    let url = |path: &str| format!("{}{path}", n1.api);
    let create = format!(
        r#"{{"name":"web","addresses":["127.0.9.1"],"volumes":[{{"mount":"/data","path":"{}"}}]}}"#,
        vol.display()
    );

    // Without a token, with a wrong one, with a malformed header: 401,
    // on every endpoint, even an unknown one.
    for presented in [None, Some("0123456789abcdef0123456789abcdef"), Some("")] {
        for (method, path, body) in [
            ("POST", "/api/vservers", Some(create.as_str())),
            ("GET", "/api/vservers", None),
            ("GET", "/api/status", None),
            ("POST", "/api/nodes/n1/drain", None),
            ("DELETE", "/api/vservers/web", None),
            ("POST", "/api/internal/wake", None),
            ("GET", "/api/vservers/web/locks", None),
            ("GET", "/api/vservers/web/counters", None),
            ("POST", "/api/vservers/web/locks/break", Some(r#"{"client":"c1"}"#)),
            ("GET", "/api/no-such-thing", None),
        ] {
            let (status, error) = http(method, &url(path), presented, body);
            assert_eq!((status, error["code"].as_str()), (401, Some("unauthorized")), "{method} {path}");
        }
    }
    // Nothing changed: no vserver, nothing on its address, the node undrained.
    let (status, list) = http("GET", &url("/api/vservers"), Some(token), None);
    assert_eq!((status, list), (200, serde_json::json!([])));
    let (_, nodes) = http("GET", &url("/api/nodes"), Some(token), None);
    assert_eq!(nodes[0]["drained"], false);
    assert!(std::net::TcpStream::connect("127.0.9.1:2049").is_err(), "nothing listens for web");
    // The API's description is public.
    assert_eq!(http("GET", &url("/api/openapi.json"), None, None).0, 200);

    // Another user's process on this host: it cannot read the token file,
    // and the CLI it runs gets 401 and says why.
    if root_part("the other-user part of the token test") {
        let as_nobody = |program: &std::path::Path, args: &[&str]| {
            let mut command = Command::new(program);
            command
                .args(args)
                .env_clear()
                .env("VNAS_API", &n1.api)
                .env("VNAS_TOKEN_FILE", &token_file)
                .uid(65534)
                // std drops the supplementary groups with the uid.
                .gid(65534);
            command.output()
        };
        let cat = as_nobody(std::path::Path::new("/bin/cat"), &[token_file.to_str().unwrap()]).unwrap();
        assert!(!cat.status.success(), "nobody cannot read the token file");
        let exe = nobody_can_run(env!("CARGO_BIN_EXE_vnas"));
        let volume = format!("/data={}", vol.display());
        let out =
            as_nobody(&exe, &["vserver", "create", "web", "--ip", "127.0.9.1", "--volume", &volume]).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("unauthorized") && stderr.contains("no admin token"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        let (_, list) = http("GET", &url("/api/vservers"), Some(token), None);
        assert_eq!(list, serde_json::json!([]), "the refused create changed nothing");
    }

    // The CLI with the token works; a wrong VNAS_TOKEN is refused.
    let with_token = |args: &[&str], env_token: Option<&str>| {
        let mut command = vnas_command();
        command.args(args).arg("--token-file").arg(&token_file).env("VNAS_API", &n1.api);
        if let Some(t) = env_token {
            command.env("VNAS_TOKEN", t);
        }
        command.output().unwrap()
    };
    let volume = format!("/data={}", vol.display());
    let out =
        with_token(&["vserver", "create", "web", "--ip", "127.0.9.1", "--volume", &volume, "--json"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["state"], "running");
    // No export given: the default rule squashes root and wants reserved ports.
    let rule = &view["exports"][0]["rules"][0];
    assert_eq!((rule["squash"].as_str(), rule["secure"].as_bool()), (Some("root"), Some(true)), "{rule}");
    let out = with_token(&["vserver", "list"], Some("fedcba9876543210fedcba9876543210"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("refused the admin token"), "{stderr}");
    let out = with_token(&["vserver", "stop", "web"], Some(token));
    assert!(out.status.success(), "VNAS_TOKEN works: {}", String::from_utf8_lossy(&out.stderr));

    // The audit trail: who asked, from where, for each accepted change;
    // refused callers with their address.
    n1.stop();
    let log = std::fs::read_to_string(&log).unwrap();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("change accepted")).collect();
    assert!(
        audit.iter().any(|l| l.contains("POST") && l.contains("/api/vservers") && l.contains("who=admin")),
        "{log}"
    );
    assert!(audit.iter().any(|l| l.contains("/api/vservers/web/stop") && l.contains("caller=127.0.0.1:")));
    assert!(log.lines().any(|l| l.contains("api call refused: no token") && l.contains("caller=127.0.0.1:")));
    assert!(log.lines().any(|l| l.contains("api call refused: a wrong token")));
}

/// The test binary's path if `nobody` can run it; else a copy that can.
fn nobody_can_run(exe: &str) -> std::path::PathBuf {
    let probe = Command::new(exe).arg("--version").uid(65534).gid(65534).output();
    if probe.is_ok_and(|o| o.status.success()) {
        return exe.into();
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("for-nobody");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join("vnas");
    std::fs::copy(exe, &copy).unwrap();
    copy
}

#[test]
fn several_tokens_name_their_holders_in_the_audit_trail() {
    let top = temp_dir();
    let token_file = top.path().join("admin.token");
    let (alice, bob) = ("a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2");
    std::fs::write(&token_file, format!("alice {alice}\nbob {bob}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (n1, _, log) = node_with_log("n1", top.path());
    assert_eq!(http("POST", &format!("{}/api/nodes/n1/drain", n1.api), Some(bob), None).0, 200);
    assert_eq!(http("POST", &format!("{}/api/nodes/n1/undrain", n1.api), Some(alice), None).0, 200);
    n1.stop();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.lines().any(|l| l.contains("who=bob") && l.contains("/api/nodes/n1/drain")), "{log}");
    assert!(log.lines().any(|l| l.contains("who=alice") && l.contains("/api/nodes/n1/undrain")), "{log}");

    // A token file others may read is refused at start.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = NodeProc::command("n2", top.path().join("store"))
        .arg("--token-file")
        .arg(&token_file)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("chmod 600"), "{stderr}");
}

#[test]
fn off_loopback_the_api_wants_tls_and_the_cli_speaks_it() {
    let top = temp_dir();
    // Plain HTTP off loopback is refused before anything starts.
    let out = vnas_command()
        .args(["node", "run", "--name", "n0", "--api", "0.0.0.0:0", "--store"])
        .arg(top.path().join("store"))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--tls-cert"), "{stderr}");

    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (top.path().join("api.pem"), top.path().join("api.key"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.key_pair.serialize_pem()).unwrap();
    let mut command = NodeProc::command("n1", top.path().join("store"));
    command.arg("--tls-cert").arg(&cert_pem).arg("--tls-key").arg(&key_pem);
    let n1 = NodeProc::spawn(command);
    assert!(n1.api.starts_with("https://127.0.0.1:"), "{}", n1.api);

    // The CLI trusts the cluster's certificate when told to.
    let (ok, out, err) = {
        let output = vnas_command()
            .args(["node", "list", "--json", "--api", &n1.api, "--ca-file"])
            .arg(&cert_pem)
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), output.stderr)
    };
    assert!(ok, "{}", String::from_utf8_lossy(&err));
    let nodes: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(nodes[0]["api"], n1.api.as_str());
    // Without the certificate it refuses to talk; plain HTTP gets nowhere.
    let (ok, _, err) = cli(&n1.api, &["node", "list"]);
    assert!(!ok && err.contains("cannot reach"), "{err}");
    let plain = n1.api.replace("https://", "http://");
    let (status, _) = match reqwest::blocking::Client::new().get(format!("{plain}/api/status")).send() {
        Ok(r) => (r.status().as_u16(), ()),
        Err(_) => (0, ()),
    };
    assert_ne!(status, 200, "plain HTTP is not served");
    n1.stop();
}

/// Packs a GETATTR call for `fh` as the raw client sends it.
fn getattr_status(raw: &mut RawClient, fh: &nfs_fh3) -> nfsstat3 {
    let mut args = Vec::new();
    fh.pack(&mut args).unwrap();
    let reply = raw.call(100003, 3, 1, &args);
    let (status, _) = nfsstat3::unpack(&mut std::io::Cursor::new(results(&reply))).unwrap();
    status
}

#[tokio::test]
async fn exports_squash_root_and_want_reserved_ports_by_default() {
    if skip_unless_root("exports_squash_root_and_want_reserved_ports_by_default") {
        return;
    }
    let top = temp_dir();
    let dir = top.path().join("export");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    // No options at all: the defaults.
    let served = Served::start_exports(&[format!("/data={}", dir.display())]);
    let builder = |privileged: bool| {
        Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", "/data")
            .mount_port(served.port())
            .nfs3_port(served.port())
            .connect_from_privileged_port(privileged)
            .credential(auth(0, 0))
    };

    // Root, from a reserved port, is let in and squashed: what it creates
    // belongs to the anonymous id.
    let mut nfs = builder(true).mount().await.unwrap();
    let root = nfs.root_nfs_fh3();
    let made = nfs
        .create(&CREATE3args {
            where_: diropargs3 { dir: root.clone(), name: filename3::from(b"by-root".to_vec()) },
            how: createhow3::UNCHECKED(sattr3::default()),
        })
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(made.obj, Nfs3Option::Some(_)));
    let meta = std::fs::metadata(dir.join("by-root")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "root is squashed");

    // From an unreserved port: MOUNT is refused, and a call with a good
    // handle gets NFS3ERR_PERM, as knfsd answers.
    let refused = builder(false).mount().await;
    assert!(refused.is_err(), "mount from a high port is refused");
    let mut raw = RawClient::connect(served.addr);
    assert!(raw.stream.local_addr().unwrap().port() >= 1024);
    assert_eq!(getattr_status(&mut raw, &root), nfsstat3::NFS3ERR_PERM);
    // libnfs run as root binds a reserved port itself and gets in.
    let listing = Command::new("nfs-ls").arg(served.url("/data")).output().unwrap();
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
    assert!(String::from_utf8_lossy(&listing.stdout).contains("by-root"));
    served.stop();

    // `insecure` lets high ports in (libnfs run by a user, say).
    let served = Served::start_exports(&[format!("/data={}:insecure", dir.display())]);
    let mut raw = RawClient::connect(served.addr);
    assert_eq!(getattr_status(&mut raw, &root), nfsstat3::NFS3_OK);
    served.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_up_makes_the_token_and_the_cli_finds_it() {
    let top = temp_dir();
    let token_file = top.path().join("config/vnas/admin.token");
    let mut child = vnas_command()
        .args(["cluster", "up", "--nodes", "1", "--api-port", "17430", "--demo-ip", "127.0.9.20", "--dir"])
        .arg(top.path().join("data"))
        .env("VNAS_TOKEN_FILE", &token_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("Ctrl-C") {
        assert!(out.read_line(&mut printed).unwrap() > 0, "cluster up ended early: {printed}");
    }
    assert!(printed.contains(&token_file.display().to_string()), "{printed}");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The CLI, given nothing but the same environment, is let in.
    let output = vnas_command()
        .args(["vserver", "show", "demo", "--json", "--api", "http://127.0.0.1:17430"])
        .env("VNAS_TOKEN_FILE", &token_file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let view: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(view["state"], "running");
    // Another token file is not let in.
    let output =
        vnas_command().args(["vserver", "list", "--api", "http://127.0.0.1:17430"]).output().unwrap();
    assert!(!output.status.success());
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::INT)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "cluster up exited with {status}");
}
