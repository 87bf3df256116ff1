//! The Grafana dashboard in `dashboards/vnas-grafana.json`, checked against
//! a real Prometheus (Debian's `prometheus`) that scrapes two nodes with
//! the admin token (`authorization.credentials_file`): every panel's
//! PromQL returns series.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use crate::transfer::volume;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Prometheus, ended when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prometheus's answer to an instant query: its result vector.
fn query(prometheus: &str, expr: &str) -> Vec<serde_json::Value> {
    let response = reqwest::blocking::Client::new()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .timeout(Duration::from_secs(5))
        .send()
        .unwrap();
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["status"], "success", "{expr}: {body}");
    body["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn probe(ip: &str, seconds: u32) -> std::process::Child {
    let url = format!("nfs://{ip}/data?nfsport=2049&mountport=2049");
    Command::new(nfsprobe())
        .args(["probe", &url, &seconds.to_string(), "10"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn every_panel_of_the_grafana_dashboard_returns_series_from_a_real_prometheus() {
    let Ok(prometheus_bin) = which("prometheus") else {
        cannot_run("the dashboard test", "no prometheus binary (Debian's prometheus package)", true);
        return;
    };
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboards/vnas-grafana.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(variables.contains(&"node") && variables.contains(&"vserver"), "{variables:?}");

    let top = temp_dir();
    let store = top.path().join("store");
    let n1 = NodeProc::start("n1", &store);
    let n2 = NodeProc::start("n2", &store);
    for (name, ip, node) in [("d1", "127.0.39.1", "n1"), ("d2", "127.0.39.2", "n2")] {
        let export = "/data:rw:no_root_squash:insecure";
        let args =
            ["vserver", "create", name, "--ip", ip, "--volume", &volume(&top, name), "--export", export];
        cli_json(&n1.api, &[&args[..], &["--node", node]].concat());
    }
    // A move, so a transfer with its pause is counted.
    cli_json(&n1.api, &["vserver", "move", "d1", "--to", "n2"]);
    cli_json(&n1.api, &["vserver", "move", "d1", "--to", "n1"]);

    // Prometheus gets the token alone in a file of its own.
    let credentials = top.path().join("token.value");
    let mut file = std::fs::File::create(&credentials).unwrap();
    file.write_all(admin_token().as_bytes()).unwrap();
    let targets: Vec<String> =
        [&n1.api, &n2.api].iter().map(|a| format!("\"{}\"", a.trim_start_matches("http://"))).collect();
    let config = top.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: vnas\n    authorization: {{credentials_file: {}}}\n    \
             static_configs: [{{targets: [{}]}}]\n",
            credentials.display(),
            targets.join(", ")
        ),
    )
    .unwrap();
    let port = free_port();
    let _prometheus = Running(
        Command::new(prometheus_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", top.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    let url = format!("http://127.0.0.1:{port}");
    eventually(30, "Prometheus to scrape both nodes", || {
        let reachable =
            reqwest::blocking::get(format!("{url}/-/ready")).is_ok_and(|r| r.status().is_success());
        reachable && query(&url, "up{job=\"vnas\"} == 1").len() == 2
    });
    // Traffic on both vservers while Prometheus scrapes: rates over it.
    let probes = [probe("127.0.39.1", 4), probe("127.0.39.2", 4)];
    for mut p in probes {
        assert!(p.wait().unwrap().success(), "the probe saw errors");
    }

    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$vserver", ".*").replace("$node", ".*");
            let deadline = Instant::now() + Duration::from_secs(15);
            let result = loop {
                let result = query(&url, &expr);
                if !result.is_empty() || Instant::now() > deadline {
                    break result;
                }
                std::thread::sleep(Duration::from_millis(500));
            };
            assert!(!result.is_empty(), "panel {title:?}: {expr} returns no series");
            checked += 1;
        }
    }
    assert!(checked >= 12, "{checked} queries");
    // Per vserver and per node: both vservers and both nodes have series.
    let calls = query(&url, "sum by (vserver) (rate(vnas_nfs_calls_total[1m])) > 0");
    assert_eq!(calls.len(), 2, "{calls:?}");
    let nodes = query(&url, "sum by (node) (vnas_session_renewals_total)");
    assert_eq!(nodes.len(), 2, "{nodes:?}");

    n1.stop();
    n2.stop();
}

fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(tool)).find(|p| p.is_file()))
        .ok_or(())
}
