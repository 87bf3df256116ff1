//! The load a node publishes for the rebalancer: per vserver served here,
//! NFS calls and bytes per second (from its counters), and the node
//! process's CPU, each smoothed over about a minute so that a burst moves
//! nothing (`vnas_cluster::rebalance::smooth`).

use std::collections::HashMap;
use std::time::Instant;

use vnas_cluster::rebalance::smooth;
use vnas_nfs::StatsSnapshot;
use vnas_store::{LoadReport, VserverLoadReport};

/// Weight of each new measurement (one every `PUBLISH_EVERY`).
const WEIGHT: f64 = 0.1;

#[derive(Default)]
struct Seen {
    calls: u64,
    bytes: u64,
    ops_per_s: Option<f64>,
    bytes_per_s: Option<f64>,
}

pub struct LoadMeter {
    at: Instant,
    cpu_ticks: u64,
    cpu: Option<f64>,
    vservers: HashMap<String, Seen>,
}

impl LoadMeter {
    pub fn new() -> LoadMeter {
        LoadMeter { at: Instant::now(), cpu_ticks: cpu_ticks(), cpu: None, vservers: HashMap::new() }
    }

    /// The report for now, from the counters of the vservers served here.
    pub fn report(&mut self, node: &str, serving: &[(String, StatsSnapshot)]) -> LoadReport {
        let seconds = self.at.elapsed().as_secs_f64().max(0.001);
        self.at = Instant::now();
        let ticks = cpu_ticks();
        let cpu = ticks.saturating_sub(self.cpu_ticks) as f64 / ticks_per_second() / seconds;
        self.cpu_ticks = ticks;
        let cpu = smooth(self.cpu, cpu, WEIGHT);
        self.cpu = Some(cpu);
        self.vservers.retain(|name, _| serving.iter().any(|(n, _)| n == name));
        let mut report =
            LoadReport { node: node.to_string(), at_ms: vnas_store::now_ms(), cpu, ..Default::default() };
        for (name, stats) in serving {
            let calls: u64 = stats.procedures.values().map(|p| p.calls).sum();
            let bytes = stats.bytes_in + stats.bytes_out;
            // Seen for the first time (just started or moved here, its
            // counters perhaps restored from the previous owner): no rate
            // yet, so not in this report.
            let Some(seen) = self.vservers.get_mut(name) else {
                self.vservers.insert(name.clone(), Seen { calls, bytes, ..Default::default() });
                continue;
            };
            let ops = calls.saturating_sub(seen.calls) as f64 / seconds;
            let byte_rate = bytes.saturating_sub(seen.bytes) as f64 / seconds;
            seen.calls = calls;
            seen.bytes = bytes;
            let ops_per_s = smooth(seen.ops_per_s, ops, WEIGHT);
            let bytes_per_s = smooth(seen.bytes_per_s, byte_rate, WEIGHT);
            seen.ops_per_s = Some(ops_per_s);
            seen.bytes_per_s = Some(bytes_per_s);
            report.ops_per_s += ops_per_s;
            report.bytes_per_s += bytes_per_s;
            report.vservers.insert(name.clone(), VserverLoadReport { ops_per_s, bytes_per_s, cpu: 0.0 });
        }
        for vserver in report.vservers.values_mut() {
            if report.ops_per_s > 0.0 {
                vserver.cpu = cpu * vserver.ops_per_s / report.ops_per_s;
            }
        }
        report
    }
}

/// User and system time of this process so far, in clock ticks.
fn cpu_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0 };
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field of the line, stime the 15th.
    let Some(rest) = stat.rsplit_once(") ").map(|(_, rest)| rest) else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

fn ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}
