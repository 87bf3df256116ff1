//! `vnas serve`: the NFS data path alone, for use and measurement without a
//! cluster.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;
use vnas_nfs::{ClientRule, ExportConfig, Server, ServerConfig};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to serve NFS, MOUNT and portmap on.
    #[arg(long, default_value = "127.0.0.1:2049")]
    listen: Vec<SocketAddr>,
    /// NAME=DIR[:OPTIONS], e.g. /data=/srv/data or
    /// /data=/srv/data:ro,root_squash,clients=127.0.0.0/8 (repeatable).
    #[arg(long = "export", required = true)]
    exports: Vec<String>,
    /// Seconds a stop waits for calls in flight.
    #[arg(long, default_value_t = 5)]
    drain_timeout: u64,
    /// Answer NFSv4.0, 4.1 and 4.2 as well (on by default; `--nfs4 false`
    /// answers v3 only).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = true)]
    nfs4: bool,
    /// The NFSv4 lease in seconds: a client silent for one and a half
    /// leases loses its opens and locks.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3600))]
    nfs4_lease: u64,
    /// The NFSv4 ID-mapping domain: owners as "name@DOMAIN" (unset:
    /// numeric ids).
    #[arg(long)]
    nfs4_domain: Option<String>,
}

fn parse_export(spec: &str) -> anyhow::Result<ExportConfig> {
    let Some((name, rest)) = spec.split_once('=') else {
        bail!("export {spec:?} is not NAME=DIR[:OPTIONS]");
    };
    let (dir, options) = rest.split_once(':').unwrap_or((rest, ""));
    let mut export = ExportConfig::new(name, PathBuf::from(dir));
    export.rules = vec![ClientRule::parse_options(options).map_err(anyhow::Error::msg)?];
    Ok(export)
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let exports = args.exports.iter().map(|s| parse_export(s)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut config = ServerConfig::new(exports);
    config.drain_timeout = std::time::Duration::from_secs(args.drain_timeout);
    config.nfs4 = args.nfs4;
    config.nfs4_lease = std::time::Duration::from_secs(args.nfs4_lease);
    config.nfs4_domain = args.nfs4_domain;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async move {
        let signals = Signals::catch();
        let server = Server::new(config)?;
        let listeners = args.listen.iter().map(|a| vnas_nfs::server::bind(*a)).collect::<Result<Vec<_>, _>>()?;
        for listener in &listeners {
            let addr = listener.local_addr()?;
            // One line on stdout per address, for scripts and tests that
            // asked for port 0. A reader that has gone (it read the first
            // line only) is no reason to stop serving.
            {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "listening {addr}").and_then(|()| out.flush());
            }
            for export in server.exports().iter() {
                tracing::info!(
                    export = %export.name,
                    dir = %export.path.display(),
                    url = %format!("nfs://{}{}?nfsport={}&mountport={}", addr.ip(), export.name, addr.port(), addr.port()),
                    "serving"
                );
            }
        }
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            signals.wait().await;
            tracing::info!("stopping: draining calls in flight");
            stop.cancel();
        });
        server.run(listeners, shutdown).await?;
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

/// SIGTERM and SIGINT, caught from the moment this exists: make it before
/// telling anyone the process is up, or an early SIGTERM kills it
/// unclean.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn catch() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).expect("signal handler"),
            int: signal(SignalKind::interrupt()).expect("signal handler"),
        }
    }

    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
