//! `vnas vserver …`, `vnas node list`, `vnas status`.

use anyhow::{bail, Context};
use clap::Subcommand;
use vnas_store::VserverState;

use super::client::Client;
use super::table;
use crate::api::types::{
    CreateVserver, ModifyVserver, MoveResult, MoveVserver, NodeView, StatusView, VserverView,
};
use crate::ops::specs::{
    export as parse_export, route as parse_route, rule_ref as parse_rule_ref, volume as parse_volume,
};

/// Which node's API the CLI talks to (any node serves any request), and
/// how it proves it may.
#[derive(clap::Args)]
pub struct ApiUrl {
    /// The management API of any node.
    #[arg(long, global = true, env = "VNAS_API", default_value = "http://127.0.0.1:7400")]
    pub api: String,
    /// The admin token file (the first token is sent). `VNAS_TOKEN` gives
    /// the token itself. Default: /etc/vnas/admin.token as root,
    /// ~/.config/vnas/admin.token otherwise.
    #[arg(long, global = true, env = "VNAS_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// PEM certificates to trust for an HTTPS API (the cluster's own).
    #[arg(long, global = true, env = "VNAS_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
pub enum VserverCommand {
    /// Create a vserver and start it on a node.
    Create {
        name: String,
        /// Address to serve on (repeatable): 127.0.0.X in the loopback
        /// network mode; ADDRESS/PREFIX (IPv4 or IPv6) in the linux mode.
        #[arg(long = "ip", required = true)]
        ips: Vec<String>,
        /// MOUNT=PATH: the directory PATH appears at MOUNT; or
        /// MOUNT=block:DEVICE[:FSTYPE]: a logical unit (ext4 or xfs, detected
        /// when not given) that the owner alone mounts (repeatable).
        #[arg(long = "volume", required = true)]
        volumes: Vec<String>,
        /// PATH[:OPTION...], e.g. /data:rw:root_squash:clients=127.0.0.0/8
        /// (repeatable; default: each volume, read-write, everyone).
        #[arg(long = "export")]
        exports: Vec<String>,
        /// DESTINATION=GATEWAY, a route in the vserver's own routing table
        /// (DESTINATION a network or `default`; applied in linux mode).
        #[arg(long = "route")]
        routes: Vec<String>,
        /// Node to host it (default: its home node, else the least loaded
        /// live node it may run on).
        #[arg(long)]
        node: Option<String>,
        /// Its preferred node: with failback on (`--failback-after-s` on
        /// the nodes), it goes back there after a failover.
        #[arg(long)]
        home: Option<String>,
        /// The nodes it may run on, comma-separated (default: any).
        #[arg(long, value_delimiter = ',')]
        allowed_nodes: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List vservers.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one vserver.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Start a stopped (or failed) vserver.
    Start {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop a vserver: drain, close connections, release its addresses.
    Stop {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Move a vserver to another node; prints the pause clients saw.
    Move {
        name: String,
        /// Target node (default: the least loaded live node).
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every transfer of a vserver: when, from, to, why, pause.
    History {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// The locks a vserver's NFSv3 clients hold and wait for (NLM), asked
    /// of the node serving it; `--break CLIENT` releases everything a
    /// client that will not come back holds.
    Locks {
        name: String,
        /// Release every lock of this client (its name as listed).
        #[arg(long = "break", value_name = "CLIENT")]
        break_client: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Change a vserver's addresses, routes, volumes, exports and client
    /// rules while it serves: clients of what did not change see no pause;
    /// a changed rule applies from the next call.
    Modify {
        name: String,
        /// An address to add, as for `create` (repeatable).
        #[arg(long = "add-ip")]
        add_addresses: Vec<String>,
        /// An address to remove; its clients' connections close
        /// (repeatable).
        #[arg(long = "remove-ip")]
        remove_addresses: Vec<String>,
        /// DESTINATION=GATEWAY, a route to add (repeatable).
        #[arg(long = "add-route")]
        add_routes: Vec<String>,
        /// DESTINATION of a route to remove (repeatable).
        #[arg(long = "remove-route")]
        remove_routes: Vec<String>,
        /// PATH:OPTIONS, a client rule (options as for an export, with
        /// clients=) put ahead of the export's others; one for the same
        /// clients is replaced (repeatable).
        #[arg(long = "add-rule")]
        add_rules: Vec<String>,
        /// PATH:clients=CIDR[+CIDR...], the rule of the export for exactly
        /// those clients, to remove (repeatable).
        #[arg(long = "remove-rule")]
        remove_rules: Vec<String>,
        /// PATH[:OPTION...] as for `create`; an export already at PATH is
        /// replaced (its rules change) (repeatable).
        #[arg(long = "add-export")]
        add_exports: Vec<String>,
        /// PATH of an export to remove (repeatable).
        #[arg(long = "remove-export")]
        remove_exports: Vec<String>,
        /// MOUNT=PATH or MOUNT=block:DEVICE[:FSTYPE], a volume to add
        /// (export it with --add-export) (repeatable).
        #[arg(long = "add-volume")]
        add_volumes: Vec<String>,
        /// MOUNT of a volume to remove, once its exports are removed too
        /// (repeatable).
        #[arg(long = "remove-volume")]
        remove_volumes: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Stop and delete a vserver (its volumes' data is kept).
    Delete {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum NodeCommand {
    /// List the nodes and whether they are alive.
    List {
        #[command(flatten)]
        api: ApiUrl,
        #[arg(long)]
        json: bool,
    },
    /// Move every vserver off a node and keep new ones away, with progress.
    Drain {
        name: String,
        #[command(flatten)]
        api: ApiUrl,
    },
    /// Let a drained node host vservers again.
    Undrain {
        name: String,
        #[command(flatten)]
        api: ApiUrl,
    },
}

fn json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("serializable"));
}

fn state(view: &VserverView) -> String {
    serde_json::to_value(view.state).unwrap().as_str().unwrap().to_string()
}

fn exports(view: &VserverView) -> String {
    view.exports.iter().map(|e| e.path.as_str()).collect::<Vec<_>>().join(",")
}

/// One line a person reads after a change, and a failure as an error.
fn report(verb: &str, view: &VserverView) -> anyhow::Result<()> {
    if view.state == VserverState::Failed {
        bail!("vserver {} failed: {}", view.name, view.reason.as_deref().unwrap_or("unknown reason"));
    }
    let node = view.node.as_deref().unwrap_or("-");
    println!(
        "vserver {} {verb}: {} on {node} at {} (epoch {})",
        view.name,
        state(view),
        view.addresses.join(", "),
        view.epoch
    );
    Ok(())
}

pub fn vserver(api: &ApiUrl, command: VserverCommand) -> anyhow::Result<()> {
    let client = Client::new(api)?;
    match command {
        VserverCommand::Create {
            name,
            ips,
            volumes,
            exports: export_specs,
            routes,
            node,
            home,
            allowed_nodes,
            json: as_json,
        } => {
            let request = CreateVserver {
                name,
                addresses: ips,
                volumes: volumes.iter().map(|v| parse_volume(v)).collect::<anyhow::Result<_>>()?,
                exports: export_specs.iter().map(|e| parse_export(e)).collect::<anyhow::Result<_>>()?,
                routes: routes.iter().map(|r| parse_route(r)).collect::<anyhow::Result<_>>()?,
                node,
                home,
                allowed_nodes,
            };
            let view: VserverView = client.post("/api/vservers", &request)?;
            if as_json {
                json(&view);
            } else {
                report("created", &view)?;
                for export in &view.exports {
                    for address in &view.addresses {
                        let host = address.split('/').next().unwrap_or(address);
                        let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
                        println!("  nfs://{host}{}", export.path);
                    }
                }
            }
            if view.state == VserverState::Failed {
                bail!("vserver {} failed: {}", view.name, view.reason.unwrap_or_default());
            }
        }
        VserverCommand::List { json: as_json } => {
            let views: Vec<VserverView> = client.get("/api/vservers")?;
            if as_json {
                json(&views);
            } else {
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|v| {
                        vec![
                            v.name.clone(),
                            v.node.clone().unwrap_or_else(|| "-".into()),
                            state(v),
                            v.addresses.join(","),
                            exports(v),
                            v.epoch.to_string(),
                        ]
                    })
                    .collect();
                table::print(&["NAME", "NODE", "STATE", "ADDRESSES", "EXPORTS", "EPOCH"], &rows);
            }
        }
        VserverCommand::Show { name, json: as_json } => {
            let view: VserverView = client.get(&format!("/api/vservers/{name}"))?;
            if as_json {
                json(&view);
            } else {
                println!("name:           {}", view.name);
                println!("state:          {}", state(&view));
                println!("node:           {}", view.node.as_deref().unwrap_or("-"));
                println!("assigned node:  {}", view.assigned_node);
                if let Some(home) = &view.home {
                    println!("home node:      {home}");
                }
                if !view.allowed_nodes.is_empty() {
                    println!("allowed nodes:  {}", view.allowed_nodes.join(", "));
                }
                println!("epoch:          {}", view.epoch);
                println!("addresses:      {}", view.addresses.join(", "));
                for volume in &view.volumes {
                    match (&volume.kind, &volume.fstype) {
                        (vnas_store::VolumeKind::Block, Some(fstype)) => {
                            println!("volume:         {} = block {} ({fstype})", volume.mount, volume.path)
                        }
                        (vnas_store::VolumeKind::Block, None) => {
                            println!("volume:         {} = block {}", volume.mount, volume.path)
                        }
                        (vnas_store::VolumeKind::Dir, _) => {
                            println!("volume:         {} = {}", volume.mount, volume.path)
                        }
                    }
                }
                for export in &view.exports {
                    for rule in &export.rules {
                        println!(
                            "export:         {} {} squash={} {} clients={}",
                            export.path,
                            rule.access,
                            rule.squash,
                            if rule.secure { "secure" } else { "insecure" },
                            rule.clients.join("+")
                        );
                    }
                }
                for route in &view.routes {
                    println!("route:          {} via {}", route.destination, route.gateway);
                }
                for applied in &view.applied {
                    println!("applied:        {applied}");
                }
                if view.node.is_some() {
                    println!("connections:    {}", view.connections);
                }
                if let Some(reason) = &view.reason {
                    println!("reason:         {reason}");
                }
                if let Some(verifier) = &view.write_verifier {
                    println!("write verifier: {verifier}");
                }
            }
        }
        VserverCommand::Start { name, json: as_json } => {
            let view: VserverView = client.post(&format!("/api/vservers/{name}/start"), &())?;
            if as_json {
                json(&view)
            } else {
                report("started", &view)?
            }
        }
        VserverCommand::Stop { name, json: as_json } => {
            let view: VserverView = client.post(&format!("/api/vservers/{name}/stop"), &())?;
            if as_json {
                json(&view)
            } else {
                report("stopped", &view)?
            }
        }
        VserverCommand::Move { name, to, json: as_json } => {
            let result: MoveResult =
                client.post(&format!("/api/vservers/{name}/move"), &MoveVserver { to })?;
            if as_json {
                json(&result);
            } else {
                println!(
                    "vserver {name} moved from {} to {}: clients paused {} ms (epoch {})",
                    result.from, result.to, result.pause_ms, result.vserver.epoch
                );
            }
        }
        VserverCommand::History { name, json: as_json } => {
            let history: Vec<vnas_store::Transfer> = client.get(&format!("/api/vservers/{name}/history"))?;
            if as_json {
                json(&history);
            } else {
                let rows: Vec<Vec<String>> = history
                    .iter()
                    .map(|t| {
                        vec![
                            format_time(t.at_ms),
                            t.from.clone().unwrap_or_else(|| "-".into()),
                            t.to.clone(),
                            t.why.clone(),
                            format!("{} ms", t.pause_ms),
                            t.epoch.to_string(),
                            t.fence.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                table::print(&["WHEN (UTC)", "FROM", "TO", "WHY", "PAUSE", "EPOCH", "FENCE"], &rows);
            }
        }
        VserverCommand::Locks { name, break_client: Some(who), json: as_json } => {
            let body = serde_json::json!({ "client": who });
            let result: crate::api::locks::BreakResult =
                client.post(&format!("/api/vservers/{name}/locks/break"), &body)?;
            if as_json {
                json(&result);
            } else {
                println!("vserver {name}: {} lock(s) of client {} released", result.released, result.client);
            }
        }
        VserverCommand::Locks { name, break_client: None, json: as_json } => {
            let locks: crate::api::locks::LocksView = client.get(&format!("/api/vservers/{name}/locks"))?;
            if as_json {
                json(&locks);
            } else {
                let row = |l: &crate::api::locks::LockView, state: &str| {
                    let length = if l.length == 0 { "to end".to_string() } else { l.length.to_string() };
                    vec![
                        l.client.clone(),
                        l.svid.to_string(),
                        l.file.clone(),
                        l.start.to_string(),
                        length,
                        l.kind.clone(),
                        state.to_string(),
                        format_time(l.since_ms),
                    ]
                };
                let rows: Vec<Vec<String>> = locks
                    .held
                    .iter()
                    .map(|l| row(l, "held"))
                    .chain(locks.waiting.iter().map(|l| row(l, "waiting")))
                    .collect();
                table::print(
                    &["CLIENT", "SVID", "FILE", "START", "LENGTH", "TYPE", "STATE", "SINCE (UTC)"],
                    &rows,
                );
                println!(
                    "{} held, {} waiting, {} client(s), served by {}; since it started there: {} granted, {} denied, {} blocked",
                    locks.held.len(),
                    locks.waiting.len(),
                    locks.clients.len(),
                    locks.node,
                    locks.granted,
                    locks.denied,
                    locks.blocked
                );
                if let Some(v4) = &locks.nfs4 {
                    println!(
                        "NFSv4: {} client(s), {} session(s), {} open(s), {} lock state(s); since it started there: {} reclaim(s), {} change(s) recorded",
                        v4.clients, v4.sessions, v4.opens, v4.lock_states, v4.reclaims, v4.recorded
                    );
                    if let Some(waiting) = v4.grace_waiting {
                        println!("NFSv4 grace period: {waiting} listed client(s) still to reclaim; no new opens or locks meanwhile");
                    }
                }
            }
        }
        VserverCommand::Modify {
            name,
            add_addresses,
            remove_addresses,
            add_routes,
            remove_routes,
            add_rules,
            remove_rules,
            add_exports,
            remove_exports,
            add_volumes,
            remove_volumes,
            json: as_json,
        } => {
            let change = ModifyVserver {
                add_exports: add_exports.iter().map(|e| parse_export(e)).collect::<anyhow::Result<_>>()?,
                remove_exports,
                add_volumes: add_volumes.iter().map(|v| parse_volume(v)).collect::<anyhow::Result<_>>()?,
                remove_volumes,
                add_addresses,
                remove_addresses,
                add_routes: add_routes.iter().map(|r| parse_route(r)).collect::<anyhow::Result<_>>()?,
                remove_routes,
                add_rules: add_rules.iter().map(|e| parse_export(e)).collect::<anyhow::Result<_>>()?,
                remove_rules: remove_rules
                    .iter()
                    .map(|r| parse_rule_ref(r))
                    .collect::<anyhow::Result<_>>()?,
            };
            let nothing = change.add_exports.is_empty()
                && change.remove_exports.is_empty()
                && change.add_volumes.is_empty()
                && change.remove_volumes.is_empty()
                && change.add_addresses.is_empty()
                && change.remove_addresses.is_empty()
                && change.add_routes.is_empty()
                && change.remove_routes.is_empty()
                && change.add_rules.is_empty()
                && change.remove_rules.is_empty();
            if nothing {
                anyhow::bail!(
                    "nothing to change: give --add-ip, --remove-ip, --add-route, --remove-route, \
                     --add-volume, --remove-volume, --add-export, --remove-export, --add-rule or --remove-rule"
                );
            }
            let view: VserverView = client.patch(&format!("/api/vservers/{name}"), &change)?;
            if as_json {
                json(&view);
            } else {
                println!(
                    "vserver {} changed while serving: addresses {}; exports {}",
                    view.name,
                    view.addresses.join(", "),
                    view.exports.iter().map(|e| e.path.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
        }
        VserverCommand::Delete { name, json: as_json } => {
            let view: VserverView = client.delete(&format!("/api/vservers/{name}"))?;
            if as_json {
                json(&view)
            } else {
                println!("vserver {name} deleted")
            }
        }
    }
    Ok(())
}

pub fn node(command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Drain { name, api } => drain(&api, &name)?,
        NodeCommand::Undrain { name, api } => {
            let view: NodeView = Client::new(&api)?.post(&format!("/api/nodes/{name}/undrain"), &())?;
            println!("node {} undrained: it may host vservers again", view.name);
        }
        NodeCommand::List { api, json: as_json } => {
            let client = Client::new(&api)?;
            let nodes: Vec<NodeView> = client.get("/api/nodes")?;
            if as_json {
                json(&nodes);
            } else {
                let now = vnas_store::now_ms();
                let rows: Vec<Vec<String>> = nodes
                    .iter()
                    .map(|n| {
                        vec![
                            n.name.clone(),
                            n.api.clone(),
                            match (n.alive, n.drained) {
                                (true, false) => "up".into(),
                                (true, true) => "up, drained".into(),
                                (false, _) => "down".into(),
                            },
                            n.vservers.to_string(),
                            n.serving.as_ref().map_or("-".into(), |s| s.len().to_string()),
                            format!("{:.1}s ago", now.saturating_sub(n.last_seen_ms) as f64 / 1000.0),
                        ]
                    })
                    .collect();
                table::print(&["NAME", "API", "STATE", "OWNS", "SERVING", "LAST SEEN"], &rows);
            }
        }
    }
    Ok(())
}

/// `2026-11-25 16:30:01.123` from milliseconds since the epoch.
pub fn format_time(ms: u64) -> String {
    let (days, rest) = ((ms / 1000) / 86_400, (ms / 1000) % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        ms % 1000
    )
}

fn drain(api: &ApiUrl, name: &str) -> anyhow::Result<()> {
    let client = Client::new(api)?;
    let on_node = |views: &[VserverView]| {
        views.iter().filter(|v| v.node.as_deref() == Some(name) || v.assigned_node == name).count()
    };
    // Counted before: the first moves may be done before a second look.
    let total = on_node(&client.get::<Vec<VserverView>>("/api/vservers")?);
    let _: NodeView = client.post(&format!("/api/nodes/{name}/drain"), &())?;
    let started = std::time::Instant::now();
    let deadline = started + std::time::Duration::from_secs(120);
    loop {
        let left = on_node(&client.get::<Vec<VserverView>>("/api/vservers")?);
        let done = total - left.min(total);
        let width = 30;
        let filled = (done * width).checked_div(total).unwrap_or(width);
        eprint!(
            "\rdraining {name}: [{}{}] {done}/{total} moved",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        if left == 0 {
            eprintln!();
            println!(
                "node {name} drained: {total} vserver(s) moved in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            eprintln!();
            bail!("{left} vserver(s) still on {name} after 120 s (is another node up?)");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn status(api: &ApiUrl, as_json: bool) -> anyhow::Result<()> {
    let status: StatusView = Client::new(api)?.get("/api/status")?;
    if as_json {
        json(&status);
    } else {
        println!("nodes:    {} up of {}", status.nodes_alive, status.nodes_total);
        let states: Vec<String> = status.vservers_by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
        println!(
            "vservers: {} ({})",
            status.vservers_total,
            if states.is_empty() { "none".into() } else { states.join(", ") }
        );
    }
    Ok(())
}

/// Why a plan has no moves, for a person.
fn no_moves(plan: &crate::api::types::RebalancePlan) -> &'static str {
    if plan.spread <= plan.start {
        "no moves: the load is even enough"
    } else if plan.idle {
        "no moves: the cluster is nearly idle"
    } else {
        "no moves: uneven, but no vserver's move would narrow the gap enough (one big vserver, allowed nodes, or moved in the last 10 minutes)"
    }
}

/// `vnas cluster rebalance`: the plan, or (`apply`) its moves one by one.
pub fn rebalance(
    api: &ApiUrl,
    apply: bool,
    max_moves: Option<usize>,
    by: Option<&str>,
    as_json: bool,
) -> anyhow::Result<()> {
    use crate::api::types::RebalancePlan;
    let client = Client::new(api)?;
    let query: Vec<String> = max_moves
        .map(|n| format!("max_moves={n}"))
        .into_iter()
        .chain(by.map(|by| format!("by={by}")))
        .collect();
    let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
    let plan: RebalancePlan = client.get(&format!("/api/cluster/rebalance{query}"))?;
    if !apply {
        if as_json {
            json(&plan);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = plan
            .nodes
            .iter()
            .map(|n| {
                vec![
                    n.node.clone(),
                    n.vservers.to_string(),
                    format!("{:.0}", n.ops_per_s),
                    format!("{:.1} MB/s", n.bytes_per_s / 1e6),
                    format!("{:.2}", n.cpu),
                ]
            })
            .collect();
        table::print(&["NODE", "VSERVERS", "OPS/S", "BYTES", "CPU"], &rows);
        println!(
            "spread of {} {:.0}% (a plan starts above {:.0}% and goes on above {:.0}%)",
            plan.by,
            plan.spread * 100.0,
            plan.start * 100.0,
            plan.stop * 100.0
        );
        if !plan.waiting.is_empty() {
            println!(
                "no moves yet: waiting for the load of {} vserver(s) to be measured",
                plan.waiting.len()
            );
        } else if plan.moves.is_empty() {
            println!("{}", no_moves(&plan));
        } else {
            let rows: Vec<Vec<String>> = plan
                .moves
                .iter()
                .map(|m| vec![m.vserver.clone(), m.from.clone(), m.to.clone(), m.reason.clone()])
                .collect();
            table::print(&["VSERVER", "FROM", "TO", "REASON"], &rows);
        }
        return Ok(());
    }
    let mut done = Vec::new();
    for (i, planned) in plan.moves.iter().enumerate() {
        let result: MoveResult = client
            .post(
                &format!("/api/vservers/{}/move", planned.vserver),
                &MoveVserver { to: Some(planned.to.clone()) },
            )
            .with_context(|| format!("moving {} ({} of {})", planned.vserver, i + 1, plan.moves.len()))?;
        if !as_json {
            println!(
                "[{}/{}] {} moved from {} to {}: clients paused {} ms",
                i + 1,
                plan.moves.len(),
                planned.vserver,
                result.from,
                result.to,
                result.pause_ms
            );
        }
        done.push(result);
    }
    if as_json {
        json(&done);
    } else if done.is_empty() {
        println!("{}", no_moves(&plan));
    }
    Ok(())
}
