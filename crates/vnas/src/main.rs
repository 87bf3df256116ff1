//! The `vnas` command.

mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vnas",
    version,
    about = "A clustered NAS of movable virtual NFS servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve directories over NFSv3 from this process alone (no cluster).
    Serve(serve::ServeArgs),
}

/// Keeps the 1 MiB buffers of WRITE calls on the heap, where freed ones
/// are reused, instead of a fresh mmap (and 256 page faults) per call.
fn tune_allocator() {
    // SAFETY: mallopt only changes glibc's allocation thresholds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Every client connection and open file costs a descriptor: allow as
/// many as the hard limit does.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
    }
}

fn main() {
    tune_allocator();
    raise_fd_limit();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VNAS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
    };
    if let Err(error) = result {
        eprintln!("vnas: {error:#}");
        std::process::exit(1);
    }
}
