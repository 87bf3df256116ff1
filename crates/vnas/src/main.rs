//! The `vnas` command.

mod api;
mod cli;
mod cluster_up;
mod console;
mod metrics;
mod node;
mod ops;
mod serve;
mod tls;
mod token;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vnas", version, about = "A clustered NAS of movable virtual NFS servers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local cluster: node processes on loopback, a common volume in a
    /// directory, and an example vserver.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Manage virtual file servers.
    Vserver {
        #[command(flatten)]
        api: cli::commands::ApiUrl,
        #[command(subcommand)]
        command: Box<cli::commands::VserverCommand>,
    },
    /// Run a node, or list the nodes.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Nodes and vservers at a glance.
    Status {
        #[command(flatten)]
        api: cli::commands::ApiUrl,
        #[arg(long)]
        json: bool,
    },
    /// Serve directories over NFSv3 from this process alone (no cluster).
    Serve(serve::ServeArgs),
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Start a local cluster and keep it running until Ctrl-C.
    Up(cluster_up::UpArgs),
    /// Even out the nodes' loads: print the plan (--dry-run, the default)
    /// with the reason for each move, or carry it out (--apply).
    Rebalance {
        /// Only print the plan.
        #[arg(long, conflicts_with = "apply")]
        dry_run: bool,
        /// Carry the plan out, one move at a time.
        #[arg(long)]
        apply: bool,
        /// Moves in the plan at most (default 4).
        #[arg(long)]
        max_moves: Option<usize>,
        /// What to even out: ops (calls/s, the default), bytes (bytes/s)
        /// or cpu (cores).
        #[arg(long, value_parser = ["ops", "bytes", "cpu"])]
        by: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: cli::commands::ApiUrl,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Run this machine as a node of the cluster.
    Run(Box<node::NodeArgs>),
    #[command(flatten)]
    Client(cli::commands::NodeCommand),
}

/// Keeps the 1 MiB buffers of WRITE calls on the heap, where freed ones
/// are reused, instead of a fresh mmap (and 256 page faults) per call.
fn tune_allocator() {
    // SAFETY: mallopt only changes glibc's allocation thresholds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
        // Store calls run on many short-lived blocking threads; without a
        // cap each would get an arena of its own.
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

/// Every client connection and open file costs a descriptor: allow as
/// many as the hard limit does.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        let _ =
            setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(max), maximum: Some(max) });
    }
}

fn main() {
    tune_allocator();
    raise_fd_limit();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VNAS_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour for a person at a terminal; plain text in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Cluster { command: ClusterCommand::Up(args) } => cluster_up::run(args),
        Command::Cluster {
            command: ClusterCommand::Rebalance { dry_run: _, apply, max_moves, by, json, api },
        } => cli::commands::rebalance(&api, apply, max_moves, by.as_deref(), json),
        Command::Node { command: NodeCommand::Run(args) } => node::run(*args, app),
        Command::Node { command: NodeCommand::Client(command) } => cli::commands::node(command),
        Command::Vserver { api, command } => cli::commands::vserver(&api, *command),
        Command::Status { api, json } => cli::commands::status(&api, json),
    };
    if let Err(error) = result {
        eprintln!("vnas: {error:#}");
        std::process::exit(1);
    }
}

/// What a node serves on its API address: the REST API and the console.
fn app(node: std::sync::Arc<node::Node>) -> axum::Router {
    api::routes::router(node.clone()).merge(console::router(node))
}
