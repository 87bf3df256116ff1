//! The management REST API: typed requests and responses (shared with the
//! CLI), errors with stable codes, the routes, and the OpenAPI document
//! built from the same types.

pub mod auth;
pub mod error;
pub mod locks;
pub mod openapi;
pub mod rebalance;
pub mod routes;
pub mod tls;
pub mod types;

#[cfg(test)]
mod fuzz;
