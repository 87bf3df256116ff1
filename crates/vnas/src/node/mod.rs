//! `vnas node run`: one physical file server. It joins the cluster through
//! the common volume, serves the management API, and runs the controller
//! that starts and stops the vservers assigned to it.

mod auto;
mod controller;
pub mod fence;
mod load;
mod locks;
pub mod systemd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use vnas_store::{DirStore, NodeInfo, Store};

use crate::tls::TlsFiles;

/// Settings of one node; from flags, or from a TOML file (`--config`)
/// whose keys are the flags' names.
#[derive(clap::Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeArgs {
    /// This node's name, unique in the cluster.
    #[arg(long)]
    name: Option<String>,
    /// The common volume: a directory every node reaches, or
    /// etcd://HOST:PORT[,HOST:PORT...][/PREFIX].
    #[arg(long)]
    store: Option<String>,
    /// Address of the management API.
    #[arg(long)]
    api: Option<SocketAddr>,
    /// Port NFS, MOUNT and portmap listen on at each vserver address.
    #[arg(long)]
    nfs_port: Option<u16>,
    /// How vserver addresses reach clients: `loopback` (127.0.0.0/8 on
    /// this host, the default) or `linux` (a network namespace and a
    /// macvlan on --interface per vserver; needs root, iproute2, nftables).
    #[arg(long, value_enum)]
    network: Option<NetworkMode>,
    /// The node's interface to the clients' network (linux mode). A node
    /// whose interface loses carrier gives its vservers up.
    #[arg(long)]
    interface: Option<String>,
    /// A node not seen for this long (ms) is down and its vservers fail
    /// over; it fences itself after half of it (default 800). On etcd the
    /// lease etcd keeps is this rounded up to whole seconds.
    #[arg(long)]
    lease_ms: Option<u64>,
    /// How often (ms) the node renews its session (default 150).
    #[arg(long)]
    renew_ms: Option<u64>,
    /// The admin tokens the API accepts (created with one random token at
    /// the first start; mode 600). Default: /etc/vnas/admin.token as root,
    /// ~/.config/vnas/admin.token otherwise.
    #[arg(long, env = "VNAS_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// PEM certificate for the API (HTTPS); required off loopback.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate of the etcd members: etcd over TLS (etcd store).
    #[arg(long)]
    etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd members that require one.
    #[arg(long, requires_all = ["etcd_key", "etcd_ca"])]
    etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert.
    #[arg(long, requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// etcd user, for a cluster with authentication enabled.
    #[arg(long, requires = "etcd_password_file")]
    etcd_user: Option<String>,
    /// File holding the etcd user's password (first line; keep it mode 600).
    #[arg(long, requires = "etcd_user")]
    etcd_password_file: Option<PathBuf>,
    /// `auto`: carry out the rebalancer's plan without an admin (the live
    /// node with the lowest name does); `off` (the default): only
    /// `vnas cluster rebalance --apply` moves vservers by load.
    #[arg(long, value_enum)]
    rebalance: Option<RebalanceMode>,
    /// How often (s) the acting node looks at the load and the home nodes
    /// (default 60).
    #[arg(long)]
    rebalance_every_s: Option<u64>,
    /// What automatic rebalancing evens out: ops (calls/s, the default),
    /// bytes (bytes/s) or cpu (cores).
    #[arg(long, value_parser = ["ops", "bytes", "cpu"])]
    rebalance_by: Option<String>,
    /// Send a vserver back to its home node once that node has been up this
    /// long (s) after a failover; off by default.
    #[arg(long)]
    failback_after_s: Option<u64>,
    /// Run (by `sh -c`) before mounting a logical unit whose last owner
    /// never released it (dead, frozen, cut off); it must stop that node
    /// writing to the unit: power it off, revoke its SCSI-3 persistent
    /// reservation. Environment: VNAS_FENCE_NODE, VNAS_FENCE_UNIT,
    /// VNAS_FENCE_VSERVER, VNAS_FENCE_EPOCH. Exit 0: fenced.
    #[arg(long)]
    fence_command: Option<String>,
    /// Serve NFSv4.0, 4.1 and 4.2 on every vserver besides v3 (on by
    /// default: a client that mounts with no options gets 4.2, and its
    /// state moves with the vserver). `--nfs4 false` serves v3 only.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    #[serde(default)]
    nfs4: Option<bool>,
    /// The NFSv4 ID-mapping domain: owners and groups are told as
    /// "name@DOMAIN" from this machine's user and group databases, and
    /// taken as names or numbers. Unset: numeric ids, as Linux clients
    /// use with AUTH_SYS.
    #[arg(long)]
    nfs4_domain: Option<String>,
    /// Give up after this many seconds if the store does not answer at
    /// start (default: wait for ever, serving nothing meanwhile).
    #[arg(long)]
    store_wait_s: Option<u64>,
    /// TOML file with any of the settings above (flags win).
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RebalanceMode {
    #[default]
    Off,
    Auto,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Loopback,
    Linux,
}

/// Timings and ports a node runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub nfs_port: u16,
    /// How often the controller looks at the store.
    pub tick: Duration,
    /// How often the monitor checks each vserver.
    pub monitor_interval: Duration,
    /// Failures in a row after which a vserver is marked failed.
    pub failures_max: u32,
    /// A node not seen for this long is down; its vservers fail over.
    pub lease: Duration,
    /// How often the node renews its session.
    pub renew_every: Duration,
    /// Carry out the rebalancer's plans without an admin.
    pub rebalance_auto: bool,
    /// How often the acting node looks (rebalance and failback).
    pub rebalance_every: Duration,
    /// What automatic rebalancing evens out.
    pub rebalance_by: vnas_cluster::rebalance::Measure,
    /// Send vservers back to their home node once it has been up this long.
    pub failback_after: Option<Duration>,
    /// Vservers serve NFSv4 too.
    pub nfs4: bool,
    /// The NFSv4 ID-mapping domain, if any.
    pub nfs4_domain: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            nfs_port: 2049,
            tick: Duration::from_millis(100),
            monitor_interval: Duration::from_secs(1),
            failures_max: 3,
            lease: Duration::from_millis(800),
            renew_every: Duration::from_millis(150),
            rebalance_auto: false,
            rebalance_every: Duration::from_secs(60),
            rebalance_by: Default::default(),
            failback_after: None,
            nfs4: true,
            nfs4_domain: None,
        }
    }
}

/// What the API handlers and the controller share.
pub struct Node {
    pub name: String,
    pub store: Arc<dyn Store>,
    /// Wakes the controller now instead of at its next tick.
    pub wake: Notify,
    pub settings: Settings,
    pub fence: Arc<fence::Fence>,
    /// The store tells of changes itself (etcd's watch): no polling of its
    /// generation.
    pub watching: std::sync::atomic::AtomicBool,
    /// The admin tokens the API accepts.
    pub tokens: crate::token::Tokens,
    /// Calls to other nodes' APIs, with this node's token (and the API
    /// certificate as a trusted root, for a cluster's own certificate).
    pub peers: reqwest::Client,
    /// How vserver addresses come to this node.
    pub network: Arc<dyn vnas_vserver::Network>,
    /// Ports a vserver answers on besides the NFS port (portmap's 111 in
    /// linux mode).
    pub extra_ports: Vec<u16>,
    /// The interface whose carrier this node watches (linux mode).
    pub interface: Option<String>,
    /// Fences a previous owner before its units are mounted here.
    pub fence_command: Option<String>,
    /// What `/metrics` shows.
    pub metrics: crate::metrics::Metrics,
    /// The vservers whose calls this node answers now, with their epochs,
    /// as the controller last saw its running set (not what the store
    /// says it owns): what `GET /api/node` reports.
    pub answering: std::sync::RwLock<Vec<(String, u64)>>,
    /// systemd's notifications, when run as a `Type=notify` unit.
    pub systemd: Option<systemd::Systemd>,
}

impl Node {
    /// Wakes other nodes' controllers now (best effort), e.g. the target of
    /// a move, instead of waiting for their next tick.
    pub async fn wake_peers(self: &Arc<Self>, names: Vec<String>) {
        let Ok(nodes) = self.store(|s| s.nodes()).await else { return };
        for node in nodes.into_iter().filter(|n| names.contains(&n.info.name) && n.info.name != self.name) {
            let request = self
                .peers
                .post(format!("{}/api/internal/wake", node.info.api))
                .bearer_auth(&self.tokens.own().secret)
                .timeout(Duration::from_secs(1));
            tokio::spawn(async move {
                let _ = request.send().await;
            });
        }
    }

    /// Whether a node is up: its process holds its session and renewed it
    /// within the lease.
    pub fn is_up(&self, status: &vnas_store::NodeStatus) -> bool {
        vnas_cluster::is_up(status, vnas_store::now_ms(), self.settings.lease.as_millis() as u64)
    }

    /// Runs a store call off the async threads (the directory store does
    /// file I/O and takes locks).
    pub async fn store<T: Send + 'static>(
        self: &Arc<Self>,
        call: impl FnOnce(&dyn Store) -> Result<T, vnas_store::StoreError> + Send + 'static,
    ) -> Result<T, vnas_store::StoreError> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || call(&*node.store))
            .await
            .unwrap_or_else(|e| Err(vnas_store::StoreError::Unavailable(format!("store call failed: {e}"))))
    }
}

/// The HTTP client for calls to peers: it trusts the API certificate (a
/// cluster usually shares one), as well as the system's roots.
fn peer_client(tls: Option<&TlsFiles>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    if let Some(files) = tls {
        crate::tls::install_provider();
        let pem = std::fs::read(&files.cert).with_context(|| format!("reading {}", files.cert.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("parsing {}", files.cert.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().context("building the HTTP client for peers")
}

/// How a node reaches an etcd store besides its addresses.
#[derive(Default)]
pub struct EtcdAccess {
    ca: Option<PathBuf>,
    cert: Option<(PathBuf, PathBuf)>,
    user: Option<(String, PathBuf)>,
}

/// Opens the store, waiting while it is unavailable (etcd without a
/// leader yet, the share not mounted yet), with backoff, for at most
/// `wait` (`None`: for ever). Said once in the log; anything else (a bad
/// setting, a refused password) fails at once.
fn open_store_waiting(
    spec: &str,
    etcd: &EtcdAccess,
    lease: Duration,
    wait: Option<Duration>,
) -> anyhow::Result<Arc<dyn Store>> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut said = false;
    loop {
        let error = match open_store(spec, etcd, lease) {
            Ok(store) => {
                if said {
                    tracing::info!(store = %spec, waited = ?started.elapsed(), "the store answers; starting");
                }
                return Ok(store);
            }
            Err(error) => error,
        };
        let unavailable = error.chain().any(|e| {
            matches!(e.downcast_ref::<vnas_store::StoreError>(), Some(vnas_store::StoreError::Unavailable(_)))
        });
        if !unavailable {
            return Err(error);
        }
        if let Some(wait) = wait.filter(|w| started.elapsed() >= *w) {
            return Err(error.context(format!("the store did not answer within {wait:?} (--store-wait-s)")));
        }
        if !said {
            tracing::warn!(store = %spec, reason = %format!("{error:#}"), "waiting for the store; serving nothing until it answers");
            said = true;
        }
        let left = wait.map_or(delay, |w| w.saturating_sub(started.elapsed()).min(delay));
        std::thread::sleep(left);
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

pub fn open_store(spec: &str, etcd: &EtcdAccess, lease: Duration) -> anyhow::Result<Arc<dyn Store>> {
    if spec.starts_with("etcd://") {
        return open_etcd(spec, etcd, lease);
    }
    if etcd.ca.is_some() || etcd.cert.is_some() || etcd.user.is_some() {
        bail!("the --etcd-* settings go with an etcd:// store");
    }
    let store = DirStore::open(spec).with_context(|| format!("cannot open the store at {spec}"))?;
    Ok(Arc::new(store))
}

#[cfg(feature = "etcd")]
fn open_etcd(spec: &str, etcd: &EtcdAccess, lease: Duration) -> anyhow::Result<Arc<dyn Store>> {
    let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let user = match &etcd.user {
        Some((user, file)) => {
            let text =
                String::from_utf8(read(file)?).with_context(|| format!("{} is not text", file.display()))?;
            let password = text.lines().next().unwrap_or("").to_string();
            if password.is_empty() {
                bail!("{} holds no password", file.display());
            }
            Some((user.clone(), password))
        }
        None => None,
    };
    let options = vnas_store::etcd::EtcdOptions {
        ca: etcd.ca.as_ref().map(read).transpose()?,
        identity: match &etcd.cert {
            Some((cert, key)) => Some((read(cert)?, read(key)?)),
            None => None,
        },
        user,
        // etcd counts leases in whole seconds; a node fences itself after
        // half of --lease-ms, long before etcd can expire it.
        lease_ttl_s: lease.as_millis().div_ceil(1000).max(1) as i64,
    };
    let store = vnas_store::EtcdStore::open_with(spec, options)
        .with_context(|| format!("cannot open the store at {spec}"))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "etcd"))]
fn open_etcd(_spec: &str, _etcd: &EtcdAccess, _lease: Duration) -> anyhow::Result<Arc<dyn Store>> {
    bail!("this vnas was built without the etcd store: build it with `--features etcd` (needs protoc)");
}

/// As root, the node gets a mount namespace of its own (before any thread
/// starts: a threaded process cannot unshare it): the units it mounts are
/// nobody else's business, and they go when the node dies, as they would
/// with a machine.
fn own_mount_namespace() -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    // SAFETY: no other thread exists yet to see the namespace change.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .context("a mount namespace for the node")?;
    // Nothing mounted here shows elsewhere, and the other way round.
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::REC | rustix::mount::MountPropagationFlags::PRIVATE,
    )
    .context("making the node's mounts private")?;
    Ok(())
}

/// Runs the node until a signal stops it; `api` is the management API it
/// serves (the daemon itself knows nothing of HTTP routes).
pub fn run(args: NodeArgs, api_router: fn(Arc<Node>) -> axum::Router) -> anyhow::Result<()> {
    own_mount_namespace()?;
    let file: NodeArgs = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => NodeArgs::default(),
    };
    let name = args.name.or(file.name).context("--name is required")?;
    let store_spec = args.store.or(file.store).context("--store is required")?;
    let api = args.api.or(file.api).unwrap_or_else(|| "127.0.0.1:7400".parse().unwrap());
    let defaults = Settings::default();
    let settings = Settings {
        nfs_port: args.nfs_port.or(file.nfs_port).unwrap_or(2049),
        lease: args.lease_ms.or(file.lease_ms).map_or(defaults.lease, Duration::from_millis),
        renew_every: args.renew_ms.or(file.renew_ms).map_or(defaults.renew_every, Duration::from_millis),
        rebalance_auto: args.rebalance.or(file.rebalance).unwrap_or_default() == RebalanceMode::Auto,
        rebalance_every: args
            .rebalance_every_s
            .or(file.rebalance_every_s)
            .map_or(defaults.rebalance_every, Duration::from_secs),
        failback_after: args.failback_after_s.or(file.failback_after_s).map(Duration::from_secs),
        nfs4: args.nfs4.or(file.nfs4).unwrap_or(defaults.nfs4),
        nfs4_domain: args.nfs4_domain.or(file.nfs4_domain),
        rebalance_by: match args.rebalance_by.or(file.rebalance_by) {
            Some(by) => by.parse().map_err(|e: String| anyhow::anyhow!("--rebalance-by: {e}"))?,
            None => defaults.rebalance_by,
        },
        ..defaults
    };
    if settings.rebalance_every.is_zero() {
        bail!("--rebalance-every-s is at least 1");
    }
    if settings.renew_every * 3 > settings.lease {
        bail!("--renew-ms must be at most a third of --lease-ms, so a node renews several times per lease");
    }
    let tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    crate::tls::check(api, tls.as_ref())?;
    let token_file = args.token_file.or(file.token_file).unwrap_or_else(crate::token::default_path);
    let tokens = crate::token::Tokens::load_or_create(&token_file)
        .with_context(|| format!("the admin token file {}", token_file.display()))?;
    let peers = peer_client(tls.as_ref())?;

    let fence_command = args.fence_command.or(file.fence_command);
    let mode = args.network.or(file.network).unwrap_or_default();
    let interface = args.interface.or(file.interface);
    let (network, extra_ports): (Arc<dyn vnas_vserver::Network>, Vec<u16>) = match (mode, &interface) {
        (NetworkMode::Loopback, None) => (Arc::new(vnas_vserver::Loopback), vec![]),
        (NetworkMode::Loopback, Some(_)) => bail!("--interface goes with --network linux"),
        (NetworkMode::Linux, None) => bail!("--network linux needs --interface IFACE"),
        (NetworkMode::Linux, Some(interface)) => {
            if !rustix::process::geteuid().is_root() {
                bail!("--network linux needs root (it makes network namespaces and interfaces)");
            }
            let linux = vnas_vserver::Linux::new(interface).map_err(anyhow::Error::msg)?;
            (Arc::new(linux), vec![111])
        }
    };
    let etcd = EtcdAccess {
        ca: args.etcd_ca.or(file.etcd_ca),
        cert: match (args.etcd_cert.or(file.etcd_cert), args.etcd_key.or(file.etcd_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("--etcd-cert and --etcd-key go together"),
        },
        user: match (args.etcd_user.or(file.etcd_user), args.etcd_password_file.or(file.etcd_password_file)) {
            (Some(user), Some(file)) => Some((user, file)),
            (None, None) => None,
            _ => bail!("--etcd-user and --etcd-password-file go together"),
        },
    };
    if etcd.cert.is_some() && etcd.ca.is_none() {
        bail!("--etcd-cert needs --etcd-ca (client certificates go over TLS)");
    }
    let store_wait = args.store_wait_s.or(file.store_wait_s).map(Duration::from_secs);
    let store = open_store_waiting(&store_spec, &etcd, settings.lease, store_wait)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Store calls and the data path's READ/WRITE/COMMIT share this
        // pool; past the cap they queue instead of adding threads.
        .max_blocking_threads(128)
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let signals = crate::serve::Signals::catch();
        let listener = std::net::TcpListener::bind(api).with_context(|| format!("cannot listen on {api}"))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let info = NodeInfo {
            name: name.clone(),
            api: format!("{scheme}://{}", listener.local_addr()?),
            labels: Default::default(),
            started_ms: vnas_store::now_ms(),
        };
        let session = {
            let store = store.clone();
            let info = info.clone();
            tokio::task::spawn_blocking(move || store.join(&info)).await??
        };
        let fence = Arc::new(fence::Fence::new(settings.lease));
        let shutdown = CancellationToken::new();
        let shutdown_for_systemd = shutdown.clone();
        let node = Arc::new(Node {
            name: name.clone(),
            store,
            wake: Notify::new(),
            settings,
            fence,
            tokens,
            peers,
            watching: Default::default(),
            network,
            extra_ports,
            interface,
            fence_command,
            metrics: crate::metrics::Metrics::new(&name),
            answering: Default::default(),
            systemd: systemd::Systemd::from_env(),
        });
        if node.systemd.is_some() {
            let (node, stop) = (node.clone(), shutdown_for_systemd.clone());
            tokio::spawn(async move {
                if let Some(systemd) = &node.systemd {
                    systemd.feed_watchdog(stop).await;
                }
            });
        }
        let weak = Arc::downgrade(&node);
        let watching = node.store.watch(Arc::new(move || {
            if let Some(node) = weak.upgrade() {
                node.wake.notify_one();
            }
        }));
        node.watching.store(watching, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(controller::keep_session(node.clone(), session, shutdown.clone()));
        let controller = tokio::spawn(controller::run(node.clone(), shutdown.clone()));
        tokio::spawn(auto::run(node.clone(), shutdown.clone()));
        tracing::info!(node = %name, api = %info.api, store = %store_spec, token_file = %token_file.display(),
            "node started");
        println!("node {name} api {}", info.api);

        let app = api_router(node.clone());
        let stop = shutdown.clone();
        let stopping = node.clone();
        tokio::spawn(async move {
            signals.wait().await;
            tracing::info!(node = %name, "stopping: vservers drain and stop");
            if let Some(systemd) = &stopping.systemd {
                systemd.stopping();
            }
            stop.cancel();
        });
        crate::tls::serve(listener, app, tls, shutdown.clone()).await?;
        controller.await?;
        tracing::info!("node stopped");
        anyhow::Ok(())
    })
}
