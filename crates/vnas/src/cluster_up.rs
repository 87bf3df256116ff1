//! `vnas cluster up`: the embedded default a new user runs first — a local
//! cluster of node processes on loopback, with the common volume in a
//! directory, and one example vserver.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::api::types::{CreateVserver, StatusView, VserverView};
use crate::cli::client::Client;

#[derive(clap::Args)]
pub struct UpArgs {
    /// How many node processes to start.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Where the common volume, the volumes and the logs live.
    #[arg(long, default_value = "./vnas-data")]
    dir: PathBuf,
    /// The first node's API port; the others follow.
    #[arg(long, default_value_t = 7400)]
    api_port: u16,
    /// Address of the example vserver `demo`.
    #[arg(long, default_value = "127.0.0.10")]
    demo_ip: String,
    /// The admin token file the nodes accept and the CLI reads (created
    /// if missing). Default: the CLI's default, so `vnas` finds it.
    #[arg(long, env = "VNAS_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

struct Nodes(Vec<(String, Child)>);

impl Nodes {
    fn stop(&mut self) {
        for (_, child) in &self.0 {
            let pid = rustix::process::Pid::from_child(child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for (name, child) in &mut self.0 {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                    _ => {
                        eprintln!("node {name} did not stop in time; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.0.clear();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let dir = std::path::absolute(&args.dir)?;
    let (store, logs, demo) = (dir.join("store"), dir.join("logs"), dir.join("volumes/demo"));
    for path in [&store, &logs, &demo] {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    }
    // Made here, before the nodes start, so every node and the CLI share it.
    let token_file = args.token_file.clone().unwrap_or_else(crate::token::default_path);
    let tokens = crate::token::Tokens::load_or_create(&token_file)
        .with_context(|| format!("the admin token file {}", token_file.display()))?;
    let token = tokens.own().secret.clone();
    let exe = std::env::current_exe()?;
    let mut nodes = Nodes(Vec::new());
    let mut apis = Vec::new();
    for i in 1..=args.nodes {
        let name = format!("n{i}");
        let api = format!("127.0.0.1:{}", args.api_port + (i as u16 - 1));
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        let child = Command::new(&exe)
            .args(["node", "run", "--name", &name, "--api", &api])
            .arg("--store")
            .arg(&store)
            .arg("--token-file")
            .arg(&token_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node {name}"))?;
        nodes.0.push((name, child));
        apis.push(format!("http://{api}"));
    }
    for ((name, child), api) in nodes.0.iter_mut().zip(&apis) {
        let client = Client::with(api, Ok(token.clone()), None)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if client.get::<StatusView>("/api/status").is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!("node {name} exited ({status}); see {}", logs.join(format!("{name}.log")).display());
            }
            if Instant::now() > deadline {
                bail!("node {name} did not answer at {api} within 15 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let client = Client::with(&apis[0], Ok(token.clone()), None)?;
    let demo_view: VserverView = match client.get::<VserverView>("/api/vservers/demo") {
        Ok(view) => view,
        Err(_) => client.post(
            "/api/vservers",
            &CreateVserver {
                name: "demo".into(),
                addresses: vec![args.demo_ip.clone()],
                volumes: vec![vnas_store::Volume::dir("/demo", demo.display().to_string())],
                // Local clients only; root stays root, which only local
                // root can claim: the export is `secure` (reserved ports).
                exports: vec![vnas_store::Export {
                    path: "/demo".into(),
                    rules: vec![vnas_store::ClientRule {
                        clients: vec!["127.0.0.0/8".into()],
                        squash: "none".into(),
                        ..Default::default()
                    }],
                }],
                routes: vec![],
                node: Some("n1".into()),
                home: None,
                allowed_nodes: vec![],
            },
        )?,
    };
    let ip = demo_view.addresses.first().cloned().unwrap_or(args.demo_ip);
    println!("vnas: {} node(s) up, common volume {}", args.nodes, store.display());
    for ((name, _), api) in nodes.0.iter().zip(&apis) {
        println!("  node {name}: API {api}, log {}", logs.join(format!("{name}.log")).display());
    }
    println!(
        "vserver demo is {:?} on {}: nfs://{ip}/demo",
        demo_view.state,
        demo_view.node.as_deref().unwrap_or("-")
    );
    println!("  files: {}", demo.display());
    println!("  admin token: {} (the CLI reads it from there)", token_file.display());
    println!("  web console: {}/ (sign in with that token: the last word of its line)", apis[0]);
    println!();
    println!("try it:");
    println!("  nfs-ls \"nfs://{ip}/demo?nfsport=2049&mountport=2049\"");
    println!("  nfs-cp README.md \"nfs://{ip}/demo/README.md?nfsport=2049&mountport=2049\"");
    println!("next:");
    println!(
        "  vnas vserver list            (the CLI talks to {} by default; --api or VNAS_API for another node)",
        apis[0]
    );
    println!("  vnas node list");
    println!("  vnas vserver create web --ip 127.0.0.11 --volume /web={}/volumes/web", dir.display());
    println!("Ctrl-C stops the cluster.");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let exited = runtime.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let signal = crate::serve::Signals::catch().wait();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => return None,
                _ = tick.tick() => {
                    for (name, child) in nodes.0.iter_mut() {
                        if let Ok(Some(status)) = child.try_wait() {
                            return Some(format!("node {name} exited ({status})"));
                        }
                    }
                }
            }
        }
    });
    println!("vnas: stopping the cluster");
    nodes.stop();
    if let Some(why) = exited {
        bail!("{why}; see {}", logs.display());
    }
    Ok(())
}
