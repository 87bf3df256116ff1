//! Prometheus metrics at `/metrics` (text format, the usual names): per
//! vserver served here, NFS calls by procedure, errors, latencies, bytes and
//! connections; per node, vservers by state, session renewals and lapses,
//! and the transfers this node received with their pauses. Every series
//! carries `node`; a vserver's counters continue on its next owner (only
//! the `node` label changes), from what the store recorded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use vnas_nfs::stats::LATENCY_BUCKETS;
use vnas_nfs::{Connections, Stats};

/// Transfer pause buckets, seconds.
const PAUSE_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    pub renewals: Counter,
    pub lapses: Counter,
    transfers: Family<Labels, Counter>,
    pauses: Family<Labels, Histogram>,
    vservers: Family<Labels, Gauge>,
    serving: Arc<Mutex<BTreeMap<String, Meters>>>,
}

/// What a vserver served here is read from at a scrape.
#[derive(Clone)]
pub struct Meters {
    pub stats: Arc<Stats>,
    pub connections: Arc<Connections>,
    pub locks: Arc<vnas_nfs::locks::LockManager>,
    /// Changes its server (lock breaks); weak: a stopped server's files
    /// must close at once (a unit unmounts), whenever the next scrape is.
    pub control: vnas_nfs::WeakControl,
}

impl Metrics {
    pub fn new(node: &str) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            "vnas",
            [(std::borrow::Cow::Borrowed("node"), std::borrow::Cow::Owned(node.to_string()))].into_iter(),
        );
        let renewals = Counter::default();
        let lapses = Counter::default();
        let transfers = Family::<Labels, Counter>::default();
        let pauses: Family<Labels, Histogram> =
            Family::new_with_constructor(|| Histogram::new(PAUSE_BUCKETS.iter().copied()));
        let vservers = Family::<Labels, Gauge>::default();
        registry.register("session_renewals", "Renewals of this node's session", renewals.clone());
        registry.register(
            "session_lapses",
            "Times this node's session lapsed and it stopped serving (self-fencing)",
            lapses.clone(),
        );
        registry.register("transfers", "Vservers this node took over, by why", transfers.clone());
        registry.register(
            "transfer_pause_seconds",
            "How long clients got no answer in the transfers to this node, by why",
            pauses.clone(),
        );
        registry.register("node_vservers", "Vservers owned by this node, by state", vservers.clone());
        let serving = Arc::new(Mutex::new(BTreeMap::new()));
        registry.register_collector(Box::new(Served(serving.clone())));
        Metrics { registry, renewals, lapses, transfers, pauses, vservers, serving }
    }

    /// A transfer to this node and the pause its clients saw.
    pub fn transfer(&self, why: &str, pause_ms: u64) {
        let labels = vec![("why", why.to_string())];
        self.transfers.get_or_create(&labels).inc();
        self.pauses.get_or_create(&labels).observe(pause_ms as f64 / 1000.0);
    }

    /// The vservers this node owns, by state (every state, zeros too).
    pub fn owned(&self, by_state: &BTreeMap<&'static str, i64>) {
        for (state, count) in by_state {
            self.vservers.get_or_create(&vec![("state", state.to_string())]).set(*count);
        }
    }

    /// What vserver `name` is served with here, if it is.
    pub fn served(&self, name: &str) -> Option<Meters> {
        self.serving.lock().unwrap().get(name).cloned()
    }

    /// The vservers served here now.
    pub fn serving(&self, meters: BTreeMap<String, Meters>) {
        *self.serving.lock().unwrap() = meters;
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// The vservers served here, read at each scrape.
struct Served(Arc<Mutex<BTreeMap<String, Meters>>>);

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Served")
    }
}

impl Collector for Served {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let served: Vec<(String, Meters)> =
            self.0.lock().unwrap().iter().map(|(name, m)| (name.clone(), m.clone())).collect();
        let serving: Vec<(String, vnas_nfs::StatsSnapshot, usize)> = served
            .iter()
            .map(|(name, m)| (name.clone(), m.stats.snapshot(), m.connections.snapshot().len()))
            .collect();
        let locks: Vec<(String, vnas_nfs::locks::LockStats)> =
            served.iter().map(|(name, m)| (name.clone(), m.locks.stats())).collect();
        type LockPick = fn(&vnas_nfs::locks::LockStats) -> u64;
        let lock_gauges: [(&str, &str, LockPick); 3] = [
            ("nlm_locks_held", "Byte-range locks granted and held, by vserver", |l| l.held),
            ("nlm_locks_waiting", "Blocked lock requests waiting, by vserver", |l| l.waiting),
            ("nlm_clients", "Lock clients with any lock state, by vserver", |l| l.clients),
        ];
        for (name, help, pick) in lock_gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (vserver, stats) in &locks {
                let labels: Labels = vec![("vserver", vserver.clone())];
                ConstGauge::new(pick(stats) as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        let lock_counters: [(&str, &str, LockPick); 6] = [
            (
                "nlm_records",
                "Lock table changes recorded in the store before they were answered, by vserver",
                |l| l.recorded,
            ),
            ("nlm_record_microseconds", "Time spent recording lock table changes, by vserver", |l| {
                l.record_us
            }),
            ("nlm_granted", "Locks granted (at once or to a waiter), by vserver", |l| l.granted),
            ("nlm_denied", "Lock requests denied (held by another, or over the limit), by vserver", |l| {
                l.denied
            }),
            ("nlm_blocked", "Lock requests that had to wait, by vserver", |l| l.blocked),
            ("nlm_callbacks_failed", "Calls back to clients (GRANTED) that failed, by vserver", |l| {
                l.callbacks_failed
            }),
        ];
        for (name, help, pick) in lock_counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (vserver, stats) in &locks {
                let labels: Labels = vec![("vserver", vserver.clone())];
                ConstCounter::new(pick(stats)).encode(family.encode_family(&labels)?)?;
            }
        }
        type Pick = fn(&vnas_nfs::stats::ProcedureSnapshot) -> u64;
        let counters: [(&str, &str, Pick); 2] = [
            ("nfs_calls", "NFSv3 calls answered, by vserver and procedure", |p| p.calls),
            (
                "nfs_errors",
                "NFSv3 calls answered with an error status (or none), by vserver and procedure",
                |p| p.errors,
            ),
        ];
        for (name, help, pick) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (vserver, snapshot, _) in &serving {
                for (procedure, p) in &snapshot.procedures {
                    let labels: Labels = vec![("vserver", vserver.clone()), ("procedure", procedure.clone())];
                    ConstCounter::new(pick(p)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut latency = encoder.encode_descriptor(
            "nfs_call_duration_seconds",
            "Time from a call read to its reply ready, by vserver and procedure",
            None,
            MetricType::Histogram,
        )?;
        for (vserver, snapshot, _) in &serving {
            for (procedure, p) in &snapshot.procedures {
                let labels: Labels = vec![("vserver", vserver.clone()), ("procedure", procedure.clone())];
                // The encoder wants counts per bucket; the snapshot has them
                // cumulative. The last bucket is +Inf.
                let mut below = 0;
                let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                    .iter()
                    .zip(&p.buckets)
                    .map(|(bound, cumulative)| {
                        let count = cumulative.saturating_sub(below);
                        below = *cumulative;
                        (*bound, count)
                    })
                    .collect();
                buckets.push((f64::MAX, p.calls.saturating_sub(below)));
                latency.encode_family(&labels)?.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    p.latency_sum_seconds,
                    p.calls,
                    &buckets,
                    None,
                )?;
            }
        }
        for (name, help, pick) in [
            ("nfs_received_bytes", "Bytes of NFS calls received, by vserver", 0),
            ("nfs_sent_bytes", "Bytes of NFS replies sent, by vserver", 1),
        ] {
            let mut bytes = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (vserver, snapshot, _) in &serving {
                let value = if pick == 0 { snapshot.bytes_in } else { snapshot.bytes_out };
                let labels: Labels = vec![("vserver", vserver.clone())];
                ConstCounter::new(value).encode(bytes.encode_family(&labels)?)?;
            }
        }
        let mut connections = encoder.encode_descriptor(
            "vserver_connections",
            "Client TCP connections a vserver holds",
            None,
            MetricType::Gauge,
        )?;
        for (vserver, _, count) in &serving {
            let labels: Labels = vec![("vserver", vserver.clone())];
            ConstGauge::new(*count as i64).encode(connections.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
