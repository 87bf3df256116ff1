//! Node processes on one common volume, vservers with their own addresses,
//! volumes and exports, driven through the CLI and the REST API, and
//! checked with real NFS clients.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::Opaque;
use serde_json::Value;

use crate::support::*;

fn create_file(name: &str) -> impl Fn(&nfs_fh3) -> CREATE3args<'static> + '_ {
    move |dir| CREATE3args {
        where_: diropargs3 { dir: dir.clone(), name: filename3::from(name.as_bytes().to_vec()) },
        how: createhow3::UNCHECKED(sattr3::default()),
    }
}

async fn write_file(nfs: &mut Connection, name: &str, data: &[u8]) -> nfs_fh3 {
    let root = nfs.root_nfs_fh3();
    let made = nfs.create(&create_file(name)(&root)).await.unwrap().unwrap();
    let Nfs3Option::Some(fh) = made.obj else { panic!("no handle") };
    let args = WRITE3args {
        file: fh.clone(),
        offset: 0,
        count: data.len() as u32,
        stable: stable_how::FILE_SYNC,
        data: Opaque::borrowed(data),
    };
    nfs.write(&args).await.unwrap().unwrap();
    fh
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_serve_their_own_vservers() {
    let top = temp_dir();
    let store = top.path().join("store");
    let vols: Vec<_> = (0..3).map(|i| top.path().join(format!("vol{i}"))).collect();
    vols.iter().for_each(|v| std::fs::create_dir(v).unwrap());
    let n1 = NodeProc::start("n1", &store);
    let n2 = NodeProc::start("n2", &store);

    let volume = |i: usize| format!("/data={}", vols[i].display());
    let a = cli_json(
        &n1.api,
        &["vserver", "create", "a", "--ip", "127.0.4.1", "--volume", &volume(0), "--node", "n1"],
    );
    // Any node's API serves any request: b is created through n1 for n2.
    let b = cli_json(
        &n1.api,
        &["vserver", "create", "b", "--ip", "127.0.4.2", "--volume", &volume(1), "--node", "n2"],
    );
    // No node given: the least loaded live node takes it.
    let c = cli_json(
        &n2.api,
        &["vserver", "create", "c", "--ip", "127.0.4.3", "--ip", "127.0.4.4", "--volume", &volume(2)],
    );
    assert_eq!((a["node"].as_str(), a["state"].as_str()), (Some("n1"), Some("running")));
    assert_eq!((b["node"].as_str(), b["state"].as_str()), (Some("n2"), Some("running")));
    assert_eq!(c["state"], "running");
    assert_eq!(a["epoch"], 1);

    // Each vserver serves exactly its own volume at its own addresses.
    for (ip, dir) in [("127.0.4.1", &vols[0]), ("127.0.4.2", &vols[1]), ("127.0.4.4", &vols[2])] {
        let mut nfs = mount_vserver(ip, "/data", 0, 0).await.unwrap();
        write_file(&mut nfs, &format!("from-{ip}"), ip.as_bytes()).await;
        assert_eq!(std::fs::read(dir.join(format!("from-{ip}"))).unwrap(), ip.as_bytes());
        let listing = std::fs::read_dir(dir).unwrap().count();
        assert_eq!(listing, 1, "nothing of the other vservers in {}", dir.display());
    }
    assert!(mount_vserver("127.0.4.1", "/other", 0, 0).await.is_err(), "no export /other");

    let listed = cli_json(&n2.api, &["vserver", "list"]);
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let nodes = cli_json(&n2.api, &["node", "list"]);
    let served: u64 = nodes.as_array().unwrap().iter().map(|n| n["vservers"].as_u64().unwrap()).sum();
    assert_eq!(served, 3);
    assert!(nodes.as_array().unwrap().iter().all(|n| n["alive"] == true));
    let (ok, table, _) = cli(&n1.api, &["vserver", "list"]);
    assert!(ok && table.starts_with("NAME") && table.contains("127.0.4.2"), "{table}");

    // Stop and start: the address is released and taken again.
    let stopped = cli_json(&n1.api, &["vserver", "stop", "b"]);
    assert_eq!(stopped["state"], "stopped");
    assert!(mount_vserver("127.0.4.2", "/data", 0, 0).await.is_err(), "nothing serves b's address");
    let started = cli_json(&n1.api, &["vserver", "start", "b"]);
    assert_eq!((started["state"].as_str(), started["epoch"].as_u64()), (Some("running"), Some(2)));
    mount_vserver("127.0.4.2", "/data", 0, 0).await.unwrap();

    // Delete: gone from the list and from the network; the data stays.
    cli_json(&n2.api, &["vserver", "delete", "a"]);
    assert!(mount_vserver("127.0.4.1", "/data", 0, 0).await.is_err());
    assert!(vols[0].join("from-127.0.4.1").exists());
    let (ok, _, err) = cli(&n1.api, &["vserver", "show", "a"]);
    assert!(!ok && err.trim() == "vnas: vserver a not found (vserver_not_found)", "{err}");
    n1.stop();
    n2.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn export_rules_and_squashing_per_vserver() {
    let top = temp_dir();
    let (ro, sq) = (top.path().join("ro"), top.path().join("sq"));
    std::fs::create_dir(&ro).unwrap();
    std::fs::create_dir(&sq).unwrap();
    std::fs::set_permissions(&sq, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(ro.join("f"), b"read me").unwrap();
    let n1 = NodeProc::start("n1", top.path().join("store"));
    let vol = |dir: &std::path::Path| format!("/data={}", dir.display());
    cli_json(
        &n1.api,
        &["vserver", "create", "ro", "--ip", "127.0.5.1", "--volume", &vol(&ro), "--export", "/data:ro"],
    );
    cli_json(
        &n1.api,
        &[
            "vserver",
            "create",
            "sq",
            "--ip",
            "127.0.5.2",
            "--volume",
            &vol(&sq),
            "--export",
            "/data:rw:root_squash:anonuid=4000:anongid=4000:clients=127.0.0.0/8",
        ],
    );
    let mut nfs = mount_vserver("127.0.5.1", "/data", 0, 0).await.unwrap();
    let root = nfs.root_nfs_fh3();
    let res = nfs.create(&create_file("new")(&root)).await.unwrap();
    assert!(matches!(res, Nfs3Result::Err((nfsstat3::NFS3ERR_ROFS, _))), "{res:?}");
    let mut nfs = mount_vserver("127.0.5.2", "/data", 0, 0).await.unwrap();
    write_file(&mut nfs, "by-root", b"x").await;
    if root_part("the ownership check of squashing") {
        let meta = std::fs::metadata(sq.join("by-root")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4000, 4000), "root is squashed");
    }
    n1.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_node_serves_the_same_handles() {
    let top = temp_dir();
    let vol = top.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let store = top.path().join("store");
    let n1 = NodeProc::start("n1", &store);
    cli_json(
        &n1.api,
        &["vserver", "create", "keep", "--ip", "127.0.6.1", "--volume", &format!("/data={}", vol.display())],
    );
    let mut nfs = mount_vserver("127.0.6.1", "/data", 0, 0).await.unwrap();
    let fh = write_file(&mut nfs, "kept", b"kept data").await;
    drop(nfs);

    // Killed outright: the new process takes its vservers back (epoch + 1).
    n1.kill();
    let n1 = NodeProc::start("n1", &store);
    eventually(10, "keep running again", || {
        let view = cli_json(&n1.api, &["vserver", "show", "keep"]);
        view["state"] == "running" && view["epoch"] == 2
    });
    let mut nfs = mount_vserver("127.0.6.1", "/data", 0, 0).await.unwrap();
    let read = nfs.read(&READ3args { file: fh.clone(), offset: 0, count: 100 }).await.unwrap().unwrap();
    assert_eq!(&read.data[..], b"kept data");
    drop(nfs);

    // Stopped cleanly: the same.
    n1.stop();
    let n1 = NodeProc::start("n1", &store);
    eventually(10, "keep running again", || {
        cli_json(&n1.api, &["vserver", "show", "keep"])["state"] == "running"
    });
    let mut nfs = mount_vserver("127.0.6.1", "/data", 0, 0).await.unwrap();
    let attr = nfs.getattr(&GETATTR3args { object: fh }).await.unwrap().unwrap();
    assert_eq!(attr.obj_attributes.size, 9);
    n1.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vserver_whose_volume_vanishes_is_marked_failed() {
    let top = temp_dir();
    let vol = top.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let n1 = NodeProc::start("n1", top.path().join("store"));
    cli_json(
        &n1.api,
        &[
            "vserver",
            "create",
            "fragile",
            "--ip",
            "127.0.6.2",
            "--volume",
            &format!("/data={}", vol.display()),
        ],
    );
    std::fs::remove_dir(&vol).unwrap();
    eventually(20, "fragile to be failed", || {
        cli_json(&n1.api, &["vserver", "show", "fragile"])["state"] == "failed"
    });
    let view = cli_json(&n1.api, &["vserver", "show", "fragile"]);
    assert!(view["reason"].as_str().unwrap().contains("vol"), "{view}");
    assert!(mount_vserver("127.0.6.2", "/data", 0, 0).await.is_err(), "a failed vserver is not served");
    // Once the volume is back, start brings it back.
    std::fs::create_dir(&vol).unwrap();
    assert_eq!(cli_json(&n1.api, &["vserver", "start", "fragile"])["state"], "running");
    n1.stop();
}

fn api(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    http(method, url, Some(&admin_token()), body)
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let top = temp_dir();
    let vol = top.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let store = top.path().join("store");
    let n1 = NodeProc::start("n1", &store);
    let url = |path: &str| format!("{}{path}", n1.api);
    let body = |name: &str, ip: &str, path: &str, node: &str| {
        format!(
            r#"{{"name":"{name}","addresses":["{ip}"],"volumes":[{{"mount":"/data","path":"{path}"}}]{node}}}"#
        )
    };
    let good = body("ok", "127.0.7.1", vol.to_str().unwrap(), "");
    assert_eq!(api("POST", &url("/api/vservers"), Some(&good)).0, 201);

    let cases = [
        (body("ok", "127.0.7.2", vol.to_str().unwrap(), ""), 409, "vserver_exists"),
        (body("dup", "127.0.7.1", vol.to_str().unwrap(), ""), 409, "address_in_use"),
        (body("far", "10.1.2.3", vol.to_str().unwrap(), ""), 400, "address_out_of_range"),
        (body("lo", "127.0.0.1", vol.to_str().unwrap(), ""), 400, "address_out_of_range"),
        (body("nodir", "127.0.7.3", "/nonexistent/vnas", ""), 400, "volume_path_missing"),
        (body("Bad/Name", "127.0.7.4", vol.to_str().unwrap(), ""), 400, "invalid_name"),
        (body("who", "127.0.7.5", vol.to_str().unwrap(), r#","node":"n9""#), 404, "node_not_found"),
        (r#"{"name": "x", "addresses": "#.to_string(), 400, "bad_json"),
        (r#"{"name": 5}"#.to_string(), 400, "bad_json"),
    ];
    for (request, status, code) in cases {
        let (got, error) = api("POST", &url("/api/vservers"), Some(&request));
        assert_eq!((got, error["code"].as_str()), (status, Some(code)), "{request}: {error}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    for (method, path) in [
        ("GET", "/api/vservers/nope"),
        ("POST", "/api/vservers/nope/start"),
        ("POST", "/api/vservers/nope/stop"),
        ("DELETE", "/api/vservers/nope"),
    ] {
        let (got, error) = api(method, &url(path), None);
        assert_eq!((got, error["code"].as_str()), (404, Some("vserver_not_found")), "{method} {path}");
    }
    let (_, list) = api("GET", &url("/api/vservers"), None);
    assert_eq!(list.as_array().unwrap().len(), 1, "nothing but the good vserver: {list}");
    assert_eq!(list[0]["addresses"][0], "127.0.7.1");

    // The store goes away: a clear 503, and back to normal when it returns.
    let aside = top.path().join("store-aside");
    std::fs::rename(&store, &aside).unwrap();
    let (got, error) = api("GET", &url("/api/vservers"), None);
    assert_eq!((got, error["code"].as_str()), (503, Some("store_unavailable")), "{error}");
    let (ok, _, err) = cli(&n1.api, &["vserver", "list"]);
    assert!(!ok && err.contains("store_unavailable") && err.lines().count() == 1, "{err}");
    std::fs::rename(&aside, &store).unwrap();
    assert_eq!(api("GET", &url("/api/vservers"), None).0, 200);

    // A node started before its store directory exists (a share not
    // mounted yet) waits, serving nothing, and comes up once it is there.
    let late = top.path().join("late-store");
    let mut child = vnas_command()
        .args(["node", "run", "--name", "n3", "--api", "127.0.0.1:0", "--store"])
        .arg(&late)
        .env("VNAS_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "it waits rather than exits");
    assert!(!late.exists(), "it does not make the store itself");
    std::fs::create_dir(&late).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    assert!(line.starts_with("node n3 api "), "{line}");
    let api = line.split_whitespace().last().unwrap().to_string();
    let (ok, out, err) = cli(&api, &["vserver", "list"]);
    assert!(ok, "{out} {err}");
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    );
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = stderr.lines().filter(|l| l.contains("waiting for the store")).count();
    assert_eq!(said, 1, "said once: {stderr}");
    assert!(stderr.contains("not a directory"), "with the reason: {stderr}");

    // A node whose store is not there waits for it; told to give up
    // after a second, it does, saying why.
    let started = std::time::Instant::now();
    let output = vnas_command()
        .args(["node", "run", "--name", "n2", "--store", "/proc/vnas-no-store", "--api", "127.0.0.1:0"])
        .args(["--store-wait-s", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("cannot open the store"), "{stderr}");
    assert!(
        stderr.contains("did not answer within 1s") && stderr.contains("waiting for the store"),
        "{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "gave up after {:?}", started.elapsed());
    // Nor can a second node of the same name.
    let output = vnas_command()
        .args(["node", "run", "--name", "n1", "--api", "127.0.0.1:0"])
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("already running"), "{stderr}");
    // The CLI without a node to talk to.
    let (ok, _, err) = cli("http://127.0.0.1:9", &["status"]);
    assert!(!ok && err.contains("cannot reach the vnas API"), "{err}");
    n1.stop();
}

#[test]
fn the_openapi_document_describes_the_api() {
    let top = temp_dir();
    let n1 = NodeProc::start("n1", top.path().join("store"));
    let (status, doc) = api("GET", &format!("{}/api/openapi.json", n1.api), None);
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in
        ["/api/vservers", "/api/vservers/{name}", "/api/vservers/{name}/start", "/api/nodes", "/api/status"]
    {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    for schema in ["CreateVserver", "VserverView", "ErrorBody"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema} documented");
    }
    n1.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_up_runs_a_demo_until_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let top = temp_dir();
    let mut child = vnas_command()
        .args(["cluster", "up", "--nodes", "2", "--api-port", "17410", "--demo-ip", "127.0.8.10", "--dir"])
        .arg(top.path())
        .env("VNAS_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("Ctrl-C") {
        assert!(out.read_line(&mut printed).unwrap() > 0, "cluster up ended early: {printed}");
    }
    assert!(printed.contains("nfs://127.0.8.10/demo"), "{printed}");
    // The console it names answers with its sign-in page.
    let console = printed.lines().find_map(|l| l.trim().strip_prefix("web console: ")).unwrap_or_default();
    assert!(console.starts_with("http://127.0.0.1:17410/ "), "{printed}");
    let mut page = String::new();
    let mut http = std::net::TcpStream::connect("127.0.0.1:17410").unwrap();
    std::io::Write::write_all(
        &mut http,
        b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    std::io::Read::read_to_string(&mut http, &mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("Admin token"), "{page}");
    let mut nfs = mount_vserver("127.0.8.10", "/demo", 0, 0).await.unwrap();
    write_file(&mut nfs, "hello", b"hi").await;
    assert!(top.path().join("volumes/demo/hello").exists());
    let status = cli_json("http://127.0.0.1:17411", &["status"]);
    assert_eq!((status["nodes_alive"].as_u64(), status["vservers_total"].as_u64()), (Some(2), Some(1)));
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::INT)
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "cluster up exited with {status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "cluster up did not stop");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(mount_vserver("127.0.8.10", "/demo", 0, 0).await.is_err(), "nothing serves after Ctrl-C");
}

#[test]
fn node_settings_from_a_toml_file_and_routes_recorded() {
    let top = temp_dir();
    let vol = top.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let config = top.path().join("node.toml");
    std::fs::create_dir(top.path().join("store")).unwrap();
    std::fs::write(
        &config,
        format!(
            "name = \"tomlnode\"\nstore = \"{}\"\napi = \"127.0.0.1:0\"\n",
            top.path().join("store").display()
        ),
    )
    .unwrap();
    let mut child = vnas_command()
        .args(["node", "run", "--config"])
        .arg(&config)
        .env("VNAS_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    assert!(line.starts_with("node tomlnode api http://127.0.0.1:"), "{line}");
    let api = line.split_whitespace().last().unwrap().to_string();
    let view = cli_json(
        &api,
        &[
            "vserver",
            "create",
            "routed",
            "--ip",
            "127.0.6.3",
            "--volume",
            &format!("/data={}", vol.display()),
            "--route",
            "0.0.0.0/0=127.0.6.254",
        ],
    );
    assert_eq!(view["node"], "tomlnode");
    assert_eq!(view["routes"][0]["gateway"], "127.0.6.254");
    let service: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(top.path().join("store/vservers/routed/service.json")).unwrap(),
    )
    .unwrap();
    let service = &service["data"];
    assert_eq!(service["routing_table"][0]["destination"], "0.0.0.0/0", "the owner recorded what it applied");
    assert_eq!(service["devices"][0], "lo 127.0.6.3");
    assert_eq!(service["epoch"], 1);
    let (ok, _, err) = cli(
        &api,
        &[
            "vserver",
            "create",
            "bad",
            "--ip",
            "127.0.6.4",
            "--volume",
            &format!("/data={}", vol.display()),
            "--route",
            "nowhere=x",
        ],
    );
    assert!(!ok && err.contains("bad_route"), "{err}");
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::TERM)
        .unwrap();
    assert!(child.wait().unwrap().success());
}
