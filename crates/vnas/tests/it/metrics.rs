//! `/metrics` scraped as Prometheus does, parsed by a Prometheus text
//! parser we did not write (`prometheus-parse`): a vserver's calls by
//! procedure, latencies, bytes, connections; the node's session, transfers
//! and vservers by state; a vserver's counters continuing on its next
//! owner; no scrape without the token.

use prometheus_parse::{Sample, Scrape, Value};

use crate::support::*;
use crate::transfer::volume;

pub fn scrape(api: &str) -> Scrape {
    let response = reqwest::blocking::Client::new()
        .get(format!("{api}/metrics"))
        .bearer_auth(admin_token())
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let text = response.text().unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn value(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{} is not a single value: {other:?}", sample.metric),
    }
}

/// The value of `metric` with all of `labels`, if present.
pub fn find(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(value)
}

fn probe(ip: &str, seconds: u32) {
    let url = format!("nfs://{ip}/data?nfsport=2049&mountport=2049");
    let out = std::process::Command::new(nfsprobe())
        .args(["probe", &url, &seconds.to_string(), "10"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn metrics_are_scraped_parsed_and_continue_across_a_move() {
    let top = temp_dir();
    let store = top.path().join("store");
    let n1 = NodeProc::start("n1", &store);
    let n2 = NodeProc::start("n2", &store);
    let ip = "127.0.33.1";
    cli_json(
        &n1.api,
        &[
            "vserver",
            "create",
            "m",
            "--ip",
            ip,
            "--volume",
            &volume(&top, "m"),
            "--export",
            "/data:rw:no_root_squash:insecure",
            "--node",
            "n1",
        ],
    );
    probe(ip, 1);
    let before = scrape(&n1.api);
    let on = |node: &'static str, procedure: &'static str| {
        vec![("node", node), ("vserver", "m"), ("procedure", procedure)]
    };
    let writes = find(&before, "vnas_nfs_calls_total", &on("n1", "write")).expect("WRITEs counted");
    let reads = find(&before, "vnas_nfs_calls_total", &on("n1", "read")).expect("READs counted");
    assert!(writes >= 50.0 && reads >= 50.0, "writes {writes}, reads {reads}");
    assert_eq!(find(&before, "vnas_nfs_errors_total", &on("n1", "write")), Some(0.0));
    // The latency histogram counts every call.
    let histogram = before
        .samples
        .iter()
        .find(|s| s.metric == "vnas_nfs_call_duration_seconds" && s.labels.get("procedure") == Some("write"))
        .expect("a WRITE latency histogram");
    let Value::Histogram(buckets) = &histogram.value else { panic!("{histogram:?}") };
    assert_eq!(buckets.last().unwrap().count, writes, "the +Inf bucket holds every call");
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count), "buckets are cumulative");
    let received =
        find(&before, "vnas_nfs_received_bytes_total", &[("node", "n1"), ("vserver", "m")]).unwrap();
    assert!(received >= writes * 4096.0, "every WRITE carried 4 KiB: {received}");
    assert!(find(&before, "vnas_vserver_connections", &[("node", "n1"), ("vserver", "m")]).is_some());
    assert!(find(&before, "vnas_session_renewals_total", &[("node", "n1")]).unwrap() > 0.0);
    assert_eq!(find(&before, "vnas_transfers_total", &[("node", "n1"), ("why", "start")]), Some(1.0));
    eventually(5, "n1 to count its running vserver", || {
        find(&scrape(&n1.api), "vnas_node_vservers", &[("node", "n1"), ("state", "running")]) == Some(1.0)
    });

    // Moved: n2 serves it and continues its counters; n1 no longer shows it.
    cli_json(&n1.api, &["vserver", "move", "m", "--to", "n2"]);
    let after = scrape(&n2.api);
    let moved = find(&after, "vnas_nfs_calls_total", &on("n2", "write")).expect("n2 shows the vserver");
    assert!(moved >= writes, "the counter went on from {writes}, not from zero: {moved}");
    assert_eq!(find(&after, "vnas_transfers_total", &[("node", "n2"), ("why", "move")]), Some(1.0));
    assert!(find(&scrape(&n1.api), "vnas_nfs_calls_total", &on("n1", "write")).is_none());
    probe(ip, 1);
    let later = find(&scrape(&n2.api), "vnas_nfs_calls_total", &on("n2", "write")).unwrap();
    assert!(later >= moved + 50.0, "{later} after {moved}");

    // Metrics need the token, as every other call.
    let status = reqwest::blocking::Client::new().get(format!("{}/metrics", n2.api)).send().unwrap().status();
    assert_eq!(status.as_u16(), 401);
    n1.stop();
    n2.stop();
}
