//! The OpenAPI document, built from the same types and handlers the API
//! serves (served at `/api/openapi.json`).

use utoipa::OpenApi;

use super::routes::paths::*;
use super::types::*;

#[derive(OpenApi)]
#[openapi(
    info(title = "vnas management API", description = "Vservers, nodes and cluster status."),
    paths(
        status,
        list_nodes,
        local_node,
        list_vservers,
        show_vserver,
        create_vserver,
        start_vserver,
        stop_vserver,
        delete_vserver,
        move_vserver,
        modify_vserver,
        vserver_history,
        vserver_counters,
        drain_node,
        undrain_node,
        super::rebalance::plan,
        super::locks::list_locks,
        super::locks::break_locks
    ),
    components(schemas(
        CreateVserver,
        VserverView,
        NodeView,
        LocalView,
        ServedView,
        StatusView,
        ErrorBody,
        MoveVserver,
        MoveResult,
        RebalancePlan,
        super::locks::LocksView,
        super::locks::Nfs4View,
        super::locks::LockView,
        super::locks::LockClientView,
        super::locks::BreakLocks,
        super::locks::BreakResult,
        ModifyVserver,
        CountersView,
        RuleRef,
        NodeLoadView,
        PlannedMove,
        vnas_store::Transfer
    ))
)]
struct Document;

pub fn document() -> utoipa::openapi::OpenApi {
    Document::openapi()
}
