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

fn main() {
    tune_allocator();
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
