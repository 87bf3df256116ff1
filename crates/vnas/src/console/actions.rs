//! What the console's forms do: sign in and out, and each change through
//! the operations layer. A change is refused unless the form carries the
//! session's CSRF token (`may_change`); a refused or failed one shows the
//! operation's error next to its field and changes nothing.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::pages::{self, errors_of, Errors};
use super::session::{clear_cookie, set_cookie, Session};
use super::{audit, may_change, secure, Form, Shared};
use crate::ops::types::{CreateVserver, ModifyVserver, MoveVserver};
use crate::ops::{self, specs, OpsError};

type Caller = ConnectInfo<SocketAddr>;

/// The non-empty lines of a field.
fn lines(form: &HashMap<String, String>, key: &str) -> Vec<String> {
    let text = form.get(key).map(String::as_str).unwrap_or_default();
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// Each line of `key` parsed with `parse`; a line it refuses is that
/// field's error.
fn parsed<T>(
    form: &HashMap<String, String>,
    key: &str,
    field: &'static str,
    parse: impl Fn(&str) -> anyhow::Result<T>,
    errors: &mut Errors,
) -> Vec<T> {
    let mut out = Vec::new();
    for line in lines(form, key) {
        match parse(&line) {
            Ok(item) => out.push(item),
            Err(error) => {
                errors.entry(field).or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    out
}

fn see(path: String) -> Response {
    Redirect::to(&path).into_response()
}

pub async fn login(
    axum::extract::State(console): Shared,
    ConnectInfo(caller): Caller,
    form: Form,
) -> Response {
    let presented = form.get("token").map(|t| t.trim()).unwrap_or_default();
    let Some(token) = console.node.tokens.check(presented) else {
        tracing::warn!(%caller, "console sign-in refused: a wrong token");
        let page = pages::login_page(Some("A wrong token: not signed in."));
        return (StatusCode::UNAUTHORIZED, Html(page.into_string())).into_response();
    };
    let session = console.sessions.open(&token.name);
    tracing::info!(target: "vnas::audit", who = %session.who, %caller, "console sign-in");
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(&session.id, secure(&caller)));
    response
}

pub async fn logout(
    axum::extract::State(console): Shared,
    ConnectInfo(caller): Caller,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let session = match may_change(&console, &headers, &form, caller, "sign out") {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    console.sessions.close(&session.id);
    tracing::info!(target: "vnas::audit", who = %session.who, %caller, "console sign-out");
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, clear_cookie(secure(&caller)));
    response
}

pub async fn create(
    axum::extract::State(console): Shared,
    ConnectInfo(caller): Caller,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let session = match may_change(&console, &headers, &form, caller, "create a vserver") {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let mut errors = Errors::new();
    let field = |k: &str| form.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let addresses: Vec<String> = field("addresses")
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    let request = CreateVserver {
        name: field("name"),
        addresses,
        volumes: parsed(&form, "volumes", "volumes", specs::volume, &mut errors),
        exports: parsed(&form, "exports", "exports", specs::export, &mut errors),
        routes: parsed(&form, "routes", "routes", specs::route, &mut errors),
        node: Some(field("node")).filter(|n| !n.is_empty()),
        home: None,
        allowed_nodes: vec![],
    };
    let name = request.name.clone();
    let result = if errors.is_empty() {
        ops::vservers::create(&console.node, request).await.map(|_| ())
    } else {
        Err(OpsError::invalid("bad_request", "see the fields"))
    };
    audit(
        &session,
        caller,
        &format!("create vserver {name}"),
        &result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
    );
    match result {
        Ok(()) => see(format!("/vservers/{name}")),
        Err(error) => {
            if errors.is_empty() {
                errors = errors_of(&error);
            }
            let nodes = ops::nodes::list(&console.node).await.unwrap_or_default();
            let names: Vec<String> = nodes.into_iter().map(|n| n.name).collect();
            let status = crate::api::error::status_of(error.kind);
            (status, Html(pages::create_page(&session, &names, &form, &errors).into_string())).into_response()
        }
    }
}

/// Carries out `change` on vserver `name` for a signed-in caller: back to
/// its page, or its page with the error next to the field.
async fn on_vserver(
    console: &super::Console,
    session: &Session,
    caller: SocketAddr,
    name: &str,
    what: &str,
    result: Result<(), OpsError>,
    then: Option<String>,
) -> Response {
    audit(
        session,
        caller,
        &format!("{what} vserver {name}"),
        &result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
    );
    match result {
        Ok(()) => see(then.unwrap_or_else(|| format!("/vservers/{name}"))),
        Err(error) => {
            let status = crate::api::error::status_of(error.kind);
            match pages::vserver_data(console, name).await {
                Ok(data) => {
                    let page = pages::vserver_page(session, &data, None, &errors_of(&error));
                    (status, Html(page.into_string())).into_response()
                }
                Err(_) => {
                    (status, Html(pages::message("Could not do that", &error.to_string()).into_string()))
                        .into_response()
                }
            }
        }
    }
}

pub async fn move_vserver(
    axum::extract::State(console): Shared,
    ConnectInfo(caller): Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let session = match may_change(&console, &headers, &form, caller, "move a vserver") {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let to = form.get("to").filter(|t| !t.is_empty()).cloned();
    let result = ops::vservers::move_to(&console.node, &name, MoveVserver { to }).await.map(|_| ());
    on_vserver(&console, &session, caller, &name, "move", result, None).await
}

pub async fn start(
    axum::extract::State(console): Shared,
    ConnectInfo(caller): Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let session = match may_change(&console, &headers, &form, caller, "start a vserver") {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let result = ops::vservers::start(&console.node, &name).await.map(|_| ());
    on_vserver(&console, &session, caller, &name, "start", result, None).await
}

pub async fn stop(
    axum::extract::State(console): Shared,
    ConnectInfo(caller): Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let session = match may_change(&console, &headers, &form, caller, "stop a vserver") {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let result = ops::vservers::stop(&console.node, &name).await.map(|_| ());
    on_vserver(&console, &session, caller, &name, "stop", result, None).await
}

pub async fn delete(
    axum::extract::State(console): Shared,
    ConnectInfo(caller): Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let session = match may_change(&console, &headers, &form, caller, "delete a vserver") {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let result = if form.get("confirm").map(|c| c.trim()) == Some(name.as_str()) {
        ops::vservers::delete(&console.node, &name).await.map(|_| ())
    } else {
        Err(OpsError::invalid("confirm", format!("type {name} to confirm: nothing was deleted")))
    };
    on_vserver(&console, &session, caller, &name, "delete", result, Some("/".to_string())).await
}

pub async fn modify(
    axum::extract::State(console): Shared,
    ConnectInfo(caller): Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let session = match may_change(&console, &headers, &form, caller, "change a vserver") {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let mut errors = Errors::new();
    let change = ModifyVserver {
        add_exports: parsed(&form, "add_exports", "exports", specs::export, &mut errors),
        remove_exports: lines(&form, "remove_exports"),
        add_volumes: parsed(&form, "add_volumes", "volumes", specs::volume, &mut errors),
        remove_volumes: lines(&form, "remove_volumes"),
        add_addresses: lines(&form, "add_addresses"),
        remove_addresses: lines(&form, "remove_addresses"),
        add_routes: parsed(&form, "add_routes", "routes", specs::route, &mut errors),
        remove_routes: lines(&form, "remove_routes"),
        add_rules: parsed(&form, "add_rules", "exports", specs::export, &mut errors),
        remove_rules: parsed(&form, "remove_rules", "exports", specs::rule_ref, &mut errors),
    };
    if let Some((field, text)) = errors.into_iter().next() {
        let error = OpsError::invalid(
            match field {
                "volumes" => "bad_volume",
                "routes" => "bad_route",
                _ => "bad_export",
            },
            text,
        );
        return on_vserver(&console, &session, caller, &name, "change", Err(error), None).await;
    }
    let result = ops::vservers::modify(&console.node, &name, change).await.map(|_| ());
    on_vserver(&console, &session, caller, &name, "change", result, None).await
}

async fn set_drained(
    console: &super::Console,
    headers: HeaderMap,
    caller: SocketAddr,
    name: &str,
    drained: bool,
    form: Form,
) -> Response {
    let what = if drained { "drain" } else { "undrain" };
    let session = match may_change(console, &headers, &form, caller, what) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let result = ops::nodes::set_drained(&console.node, name, drained).await.map(|_| ());
    audit(
        &session,
        caller,
        &format!("{what} node {name}"),
        &result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
    );
    match result {
        Ok(()) => see("/".to_string()),
        Err(error) => {
            let status = crate::api::error::status_of(error.kind);
            (status, Html(pages::message("Could not do that", &error.to_string()).into_string()))
                .into_response()
        }
    }
}

pub async fn drain(
    axum::extract::State(console): Shared,
    ConnectInfo(caller): Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> Response {
    set_drained(&console, headers, caller, &name, true, form).await
}

pub async fn undrain(
    axum::extract::State(console): Shared,
    ConnectInfo(caller): Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> Response {
    set_drained(&console, headers, caller, &name, false, form).await
}

/// Carries out the plan as it stands now, one move at a time.
pub async fn rebalance(
    axum::extract::State(console): Shared,
    ConnectInfo(caller): Caller,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let session = match may_change(&console, &headers, &form, caller, "rebalance") {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let node = &console.node;
    let plan = match async { ops::rebalance::build(node, ops::rebalance::settings(None, None)?).await }.await
    {
        Ok(plan) => plan,
        Err(error) => return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    };
    let mut done = Vec::new();
    for planned in &plan.moves {
        let result = async {
            let view = ops::vservers::show(node, &planned.vserver).await?;
            if view.node.as_deref() != Some(planned.from.as_str()) {
                return Err(OpsError::conflict("moved_meanwhile", "it moved meanwhile"));
            }
            ops::vservers::carry_out_move(
                node,
                &planned.vserver,
                view.epoch,
                planned.from.clone(),
                planned.to.clone(),
            )
            .await
        }
        .await;
        let what = format!("rebalance: move vserver {} to {}", planned.vserver, planned.to);
        audit(&session, caller, &what, &result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        done.push(match result {
            Ok(moved) => format!(
                "{} moved {} → {}: clients paused {} ms",
                planned.vserver, moved.from, moved.to, moved.pause_ms
            ),
            Err(error) => format!("{} not moved: {}", planned.vserver, error),
        });
    }
    let plan = ops::rebalance::build(node, ops::rebalance::settings(None, None).unwrap_or_default())
        .await
        .unwrap_or(plan);
    Html(pages::rebalance_page(&session, &plan, &done).into_string()).into_response()
}
