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

fn main() {
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
