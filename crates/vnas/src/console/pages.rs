//! The console's pages, rendered here (maud escapes every value): sign in,
//! the cluster overview, a vserver's page, the create form, the rebalance
//! plan. Each works without JavaScript.

use std::collections::HashMap;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use maud::{html, Markup, DOCTYPE};
use vnas_store::{Transfer, VolumeKind};

use super::session::Session;
use super::{signed_in, Console, Shared};
use crate::cli::commands::format_time;
use crate::ops::types::{NodeView, RebalancePlan, VserverView};
use crate::ops::{self, OpsError};

/// Errors of a form, by the field they belong to ("" for the form).
pub type Errors = HashMap<&'static str, String>;

/// Which field an operation's error code is about.
pub fn field_of(code: &str) -> &'static str {
    match code {
        "invalid_name" | "vserver_exists" | "bad_name" => "name",
        "bad_address" | "address_in_use" | "address_not_found" | "address_out_of_range" => "addresses",
        "bad_volume" | "volume_not_found" | "volume_path_missing" | "volume_device_missing" => "volumes",
        "bad_export" | "export_not_found" | "rule_not_found" | "export_outside_volumes" => "exports",
        "bad_route" | "route_not_found" => "routes",
        "node_not_found" | "bad_node" | "no_node" | "node_down" | "node_not_allowed" | "already_there" => {
            "node"
        }
        "confirm" => "confirm",
        _ => "",
    }
}

pub fn errors_of(error: &OpsError) -> Errors {
    Errors::from([(field_of(error.code), format!("{} ({})", error.message, error.code))])
}

fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · vnas" }
                link rel="stylesheet" href="/static/console.css";
                // No icon to fetch (a browser asking for /favicon.ico would
                // be a refused API call in the node's log).
                link rel="icon" href="data:,";
                script type="module" src="/static/console.js" {}
            }
            body {
                header {
                    a.brand href="/" { "vnas" }
                    @if let Some(session) = session {
                        a href="/" { "Overview" }
                        a href="/vservers/new" { "Create a vserver" }
                        a href="/rebalance" { "Rebalance" }
                        span.note { "signed in as " (session.who) }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn message(title: &str, text: &str) -> Markup {
    page(title, None, html! { h1 { (title) } p.error role="alert" { (text) } p { a href="/" { "Back" } } })
}

fn failed(error: OpsError, session: &Session) -> Response {
    let status = crate::api::error::status_of(error.kind);
    let body =
        html! { h1 { "Could not do that" } p.error role="alert" { (error.message) " (" (error.code) ")" } };
    (status, Html(page("Error", Some(session), body).into_string())).into_response()
}

fn field_error(errors: &Errors, field: &str) -> Markup {
    html! {
        @if let Some(text) = errors.get(field) {
            p.field-error id={ "err-" (field) } role="alert" { (text) }
        }
    }
}

// --- sign in ----------------------------------------------------------------

pub fn login_page(error: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        form.stack method="post" action="/login" {
            label {
                "Admin token"
                small { "A line of the node's token file (vnas node run --token-file; the token is its last word)." }
                input type="password" name="token" id="token" autocomplete="current-password" required autofocus;
            }
            @if let Some(error) = error { p.error id="err-token" role="alert" { (error) } }
            div { button type="submit" { "Sign in" } }
        }
    };
    page("Sign in", None, body)
}

pub async fn login(axum::extract::State(console): Shared, headers: HeaderMap) -> Response {
    if console.sessions.of(&headers).is_some() {
        return Redirect::to("/").into_response();
    }
    Html(login_page(None).into_string()).into_response()
}

// --- overview ---------------------------------------------------------------

async fn overview_markup(console: &Console, session: &Session) -> Result<Markup, OpsError> {
    let node = &console.node;
    let status = ops::nodes::status(node).await?;
    let nodes = ops::nodes::list(node).await?;
    let vservers = ops::vservers::list(node).await?;
    let loads = ops::nodes::loads(node).await?;
    Ok(html! {
        div.cards {
            div.card { b id="nodes-alive" { (status.nodes_alive) " / " (status.nodes_total) } "nodes up" }
            div.card { b { (status.vservers_total) } "vservers" }
            @for (state, count) in &status.vservers_by_state {
                div.card { b class={ "state-" (state) } { (count) } (state) }
            }
        }
        h2 { "Nodes" }
        div.wrap { table id="nodes" {
            thead { tr { th { "node" } th { "state" } th { "vservers" } th { "calls/s" } th { "CPU" } th { "API" } th { "" } } }
            tbody { @for n in &nodes { (node_row(n, loads.get(&n.name), session)) } }
        } }
        h2 { "Vservers" }
        @if vservers.is_empty() { p.note { "None yet: " a href="/vservers/new" { "create one" } "." } }
        @else {
            div.wrap { table id="vservers" {
                thead { tr { th { "vserver" } th { "state" } th { "node" } th { "addresses" } th { "epoch" } } }
                tbody { @for v in &vservers {
                    tr {
                        td { a href={ "/vservers/" (v.name) } { (v.name) } }
                        td class={ "state-" (state(v)) } { (state(v)) }
                        td { (v.node.as_deref().unwrap_or("-")) }
                        td { (v.addresses.join(", ")) }
                        td { (v.epoch) }
                    }
                } }
            } }
        }
    })
}

fn node_row(n: &NodeView, load: Option<&(f64, f64)>, session: &Session) -> Markup {
    // A drain moves the node's vservers off one by one: while some are
    // left, the refreshing overview says how many.
    let (word, class) = match (n.alive, n.drained, n.vservers) {
        (false, _, _) => ("down".to_string(), "down"),
        (true, true, 0) => ("up, drained".to_string(), "up"),
        (true, true, left) => (format!("up, draining: {left} to move"), "up"),
        (true, false, _) => ("up".to_string(), "up"),
    };
    html! {
        tr data-node=(n.name) {
            td { (n.name) }
            td class=(class) { (word) }
            td { (n.vservers) }
            td { (format!("{:.1}", load.map_or(0.0, |l| l.0))) }
            td { (format!("{:.2}", load.map_or(0.0, |l| l.1))) }
            td.note { (n.api) }
            td {
                @let (action, label, busy) = if n.drained { ("undrain", "Undrain", "Undraining…") } else { ("drain", "Drain", "Draining…") };
                form.inline method="post" action={ "/nodes/" (n.name) "/" (action) } data-busy=(busy) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button.quiet type="submit" { (label) }
                }
            }
        }
    }
}

fn state(v: &VserverView) -> String {
    serde_json::to_value(v.state).ok().and_then(|s| s.as_str().map(str::to_string)).unwrap_or_default()
}

pub async fn overview(axum::extract::State(console): Shared, headers: HeaderMap) -> Response {
    let session = match signed_in(&console, &headers) {
        Ok(session) => session,
        Err(to_login) => return to_login.into_response(),
    };
    match overview_markup(&console, &session).await {
        Ok(live) => {
            let body = html! {
                h1 { "Cluster" }
                div id="live" data-refresh="/parts/overview" { (live) }
            };
            Html(page("Cluster", Some(&session), body).into_string()).into_response()
        }
        Err(error) => failed(error, &session),
    }
}

/// The overview's live part alone (what the page refreshes).
pub async fn overview_part(axum::extract::State(console): Shared, headers: HeaderMap) -> Response {
    let Ok(session) = signed_in(&console, &headers) else { return StatusCode::UNAUTHORIZED.into_response() };
    match overview_markup(&console, &session).await {
        Ok(live) => Html(live.into_string()).into_response(),
        Err(error) => (crate::api::error::status_of(error.kind), error.message).into_response(),
    }
}

// --- create -----------------------------------------------------------------

pub fn create_page(
    session: &Session,
    nodes: &[String],
    values: &HashMap<String, String>,
    errors: &Errors,
) -> Markup {
    let value = |k: &str| values.get(k).cloned().unwrap_or_default();
    let body = html! {
        h1 { "Create a vserver" }
        @if let Some(text) = errors.get("") { p.error role="alert" { (text) } }
        form.stack method="post" action="/vservers" data-busy="Creating…" {
            input type="hidden" name="csrf" value=(session.csrf);
            label { "Name" small { "Letters, digits, - and _." }
                input name="name" id="name" value=(value("name")) required; }
            (field_error(errors, "name"))
            label { "Addresses" small { "One or more, separated by spaces or commas (ADDRESS or ADDRESS/PREFIX)." }
                input name="addresses" id="addresses" value=(value("addresses")) required; }
            (field_error(errors, "addresses"))
            label { "Volumes" small { "One per line: MOUNT=DIRECTORY, or MOUNT=block:DEVICE[:FSTYPE]." }
                textarea name="volumes" id="volumes" required { (value("volumes")) } }
            (field_error(errors, "volumes"))
            label { "Exports" small { "One per line, as vserver create --export: PATH:rw|ro:root_squash|no_root_squash|all_squash:clients=CIDR+CIDR. Empty: each volume read-write to everyone." }
                textarea name="exports" id="exports" { (value("exports")) } }
            (field_error(errors, "exports"))
            label { "Routes" small { "One per line: DESTINATION=GATEWAY." }
                textarea name="routes" id="routes" { (value("routes")) } }
            (field_error(errors, "routes"))
            label { "Node"
                select name="node" id="node" {
                    option value="" { "the least loaded live node" }
                    @for n in nodes { option value=(n) selected[value("node") == *n] { (n) } }
                }
            }
            (field_error(errors, "node"))
            div { button type="submit" { "Create" } }
        }
    };
    page("Create a vserver", Some(session), body)
}

pub async fn new_vserver(axum::extract::State(console): Shared, headers: HeaderMap) -> Response {
    let session = match signed_in(&console, &headers) {
        Ok(session) => session,
        Err(to_login) => return to_login.into_response(),
    };
    match ops::nodes::list(&console.node).await {
        Ok(nodes) => {
            let names: Vec<String> = nodes.into_iter().map(|n| n.name).collect();
            Html(create_page(&session, &names, &HashMap::new(), &Errors::new()).into_string()).into_response()
        }
        Err(error) => failed(error, &session),
    }
}

// --- a vserver --------------------------------------------------------------

pub struct VserverPage {
    pub view: VserverView,
    pub history: Vec<Transfer>,
    pub nodes: Vec<NodeView>,
}

pub async fn vserver_data(console: &Console, name: &str) -> Result<VserverPage, OpsError> {
    Ok(VserverPage {
        view: ops::vservers::show(&console.node, name).await?,
        history: ops::vservers::history(&console.node, name).await?,
        nodes: ops::nodes::list(&console.node).await?,
    })
}

pub fn vserver_page(session: &Session, data: &VserverPage, done: Option<&str>, errors: &Errors) -> Markup {
    let v = &data.view;
    let state = state(v);
    let running = state == "running";
    let others: Vec<&NodeView> =
        data.nodes.iter().filter(|n| n.alive && Some(n.name.as_str()) != v.node.as_deref()).collect();
    let longest = data.history.iter().map(|t| t.pause_ms).max().unwrap_or(1).max(1);
    let body = html! {
        h1 { "Vserver " (v.name) }
        @if let Some(done) = done { p.note role="status" id="done" { (done) } }
        @if let Some(text) = errors.get("") { p.error role="alert" { (text) } }
        div.wrap { table id="details" { tbody {
            tr { th { "state" } td id="state" class={ "state-" (state) } { (state)
                @if let Some(reason) = &v.reason { " — " (reason) } } }
            tr { th { "node" } td id="node" { (v.node.as_deref().unwrap_or("-")) } }
            tr { th { "assigned to" } td { (v.assigned_node) } }
            tr { th { "epoch" } td { (v.epoch) } }
            tr { th { "addresses" } td id="addresses" { (v.addresses.join(", ")) } }
            tr { th { "routes" } td { @for r in &v.routes { (r.destination) " via " (r.gateway) br; } @if v.routes.is_empty() { "-" } } }
            tr { th { "as applied" } td { @for line in &v.applied { code { (line) } br; } @if v.applied.is_empty() { "-" } } }
            tr { th { "volumes" } td { @for vol in &v.volumes {
                (vol.mount) " = " @if vol.kind == VolumeKind::Block { "block:" } (vol.path)
                @if let Some(fs) = &vol.fstype { " (" (fs) ")" } br; } } }
            tr { th { "exports" } td { @for e in &v.exports {
                b { (e.path) } ": "
                @for (i, r) in e.rules.iter().enumerate() {
                    @if i > 0 { "; " }
                    (r.clients.join("+")) " " (r.access) " squash=" (r.squash) @if r.secure { " secure" }
                }
                br;
            } } }
            tr { th { "connections" } td { (v.connections) } }
            tr { th { "write verifier" } td { code { (v.write_verifier.as_deref().unwrap_or("-")) } } }
            tr { th { "home, allowed nodes" } td { (v.home.as_deref().unwrap_or("-")) ", "
                @if v.allowed_nodes.is_empty() { "any" } @else { (v.allowed_nodes.join(", ")) } } }
        } } }

        h2 { "Actions" }
        div.actions {
            @if running {
                form.inline method="post" action={ "/vservers/" (v.name) "/move" } data-busy="Moving…" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label.inline { "Move to"
                        select name="to" id="move-to" {
                            option value="" { "the least loaded live node" }
                            @for n in &others { option value=(n.name) { (n.name) } }
                        }
                    }
                    button type="submit" id="move" { "Move" }
                }
                form.inline method="post" action={ "/vservers/" (v.name) "/stop" } data-busy="Stopping…" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button.quiet type="submit" id="stop" { "Stop" }
                }
            } @else {
                form.inline method="post" action={ "/vservers/" (v.name) "/start" } data-busy="Starting…" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button type="submit" id="start" { "Start" }
                }
            }
            form.inline method="post" action={ "/vservers/" (v.name) "/delete" } data-busy="Deleting…" {
                input type="hidden" name="csrf" value=(session.csrf);
                label.inline { "Type its name to delete it" input name="confirm" id="confirm" autocomplete="off"; }
                button.danger type="submit" id="delete" { "Delete" }
            }
        }
        (field_error(errors, "node"))
        (field_error(errors, "confirm"))

        h2 { "Calls, bytes and latency" }
        @if running {
            div.charts data-counters={ "/parts/vservers/" (v.name) "/counters" } {
                @for (series, title) in [("calls", "calls/s"), ("bytes", "bytes/s"), ("latency", "latency")] {
                    figure data-series=(series) {
                        svg viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label=(title) { polyline points="" {} }
                        figcaption { (title) ": " output { "…" } }
                    }
                }
                p.note { "Read every 2 s from " span.served-by { (v.node.as_deref().unwrap_or("-")) } "." }
            }
        } @else { p.note { "Not running." } }

        h2 { "History" }
        ol.timeline id="history" reversed {
            @for t in data.history.iter().rev() {
                li {
                    span.note { (format_time(t.at_ms)) }
                    span {
                        b { (t.why) } " "
                        (t.from.as_deref().unwrap_or("-")) " → " (t.to) " (epoch " (t.epoch) "), pause "
                        span.bar style={ "width:" (t.pause_ms * 100 / longest) "px" } {}
                        span.pause { (t.pause_ms) " ms" }
                        @if let Some(locks) = &t.locks { br; span.note { (locks) } }
                    }
                }
            }
        }
        h2 { "Change it" }
        form.stack method="post" action={ "/vservers/" (v.name) "/modify" } data-busy="Changing…" {
            input type="hidden" name="csrf" value=(session.csrf);
            p.note { "As vserver modify: one item per line; a running vserver takes the change live." }
            @for (group, items) in [
                ("addresses", [("add_addresses", "Add addresses"), ("remove_addresses", "Remove addresses")]),
                ("volumes", [("add_volumes", "Add volumes (MOUNT=DIRECTORY)"), ("remove_volumes", "Remove volumes (MOUNT)")]),
                ("exports", [("add_exports", "Add or replace exports (PATH:options)"), ("remove_exports", "Remove exports (PATH)")]),
                ("exports", [("add_rules", "Add client rules (PATH:options with clients=)"), ("remove_rules", "Remove client rules (PATH:clients=CIDR+CIDR)")]),
                ("routes", [("add_routes", "Add routes (DESTINATION=GATEWAY)"), ("remove_routes", "Remove routes (DESTINATION)")]),
            ] {
                @for (field, label) in items {
                    label { (label) textarea name=(field) id=(field) {} }
                }
                @if group != "exports" || items[0].0 == "add_rules" { (field_error(errors, group)) }
            }
            div { button type="submit" id="modify" { "Apply" } }
        }

    };
    page(&format!("Vserver {}", v.name), Some(session), body)
}

pub async fn vserver(
    axum::extract::State(console): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match signed_in(&console, &headers) {
        Ok(session) => session,
        Err(to_login) => return to_login.into_response(),
    };
    match vserver_data(&console, &name).await {
        Ok(data) => Html(vserver_page(&session, &data, None, &Errors::new()).into_string()).into_response(),
        Err(error) => failed(error, &session),
    }
}

/// A vserver's counters (JSON), read by the node serving it.
pub async fn counters(
    axum::extract::State(console): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if signed_in(&console, &headers).is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match ops::vservers::counters(&console.node, &name).await {
        Ok(counters) => Json(counters).into_response(),
        Err(error) => (crate::api::error::status_of(error.kind), error.message).into_response(),
    }
}

// --- rebalance --------------------------------------------------------------

pub fn rebalance_page(session: &Session, plan: &RebalancePlan, done: &[String]) -> Markup {
    let body = html! {
        h1 { "Rebalance" }
        @if !done.is_empty() { ul id="done" role="status" { @for line in done { li { (line) } } } }
        p { "Evens out " b { (plan.by) } ": spread " (format!("{:.2}", plan.spread))
            " (a plan starts above " (format!("{:.2}", plan.start)) ")" @if plan.idle { ", the cluster is idle" } "." }
        div.wrap { table { thead { tr { th { "node" } th { "calls/s" } th { "bytes/s" } th { "CPU" } th { "vservers" } } }
            tbody { @for n in &plan.nodes { tr { td { (n.node) } td { (format!("{:.1}", n.ops_per_s)) }
                td { (format!("{:.0}", n.bytes_per_s)) } td { (format!("{:.2}", n.cpu)) } td { (n.vservers) } } } } } }
        h2 { "Planned moves" }
        @if !plan.waiting.is_empty() { p.note { "Waiting for the load of " (plan.waiting.join(", ")) " to be measured." } }
        @if plan.moves.is_empty() { p id="no-moves" { "No move would help now." } }
        @else {
            ol id="moves" { @for m in &plan.moves { li { b { (m.vserver) } " " (m.from) " → " (m.to) ": " (m.reason) } } }
            form method="post" action="/rebalance" data-busy="Moving…" {
                input type="hidden" name="csrf" value=(session.csrf);
                button type="submit" id="apply" { "Apply these moves" }
            }
        }
    };
    page("Rebalance", Some(session), body)
}

pub async fn rebalance(axum::extract::State(console): Shared, headers: HeaderMap) -> Response {
    let session = match signed_in(&console, &headers) {
        Ok(session) => session,
        Err(to_login) => return to_login.into_response(),
    };
    let plan = async { ops::rebalance::build(&console.node, ops::rebalance::settings(None, None)?).await };
    match plan.await {
        Ok(plan) => Html(rebalance_page(&session, &plan, &[]).into_string()).into_response(),
        Err(error) => failed(error, &session),
    }
}
