//! The management REST API: routes that call the operations layer
//! (`crate::ops`), errors with stable codes and HTTP statuses, the token
//! check, and the OpenAPI document built from the operations' types.

pub mod auth;
pub mod error;
pub mod locks;
pub mod openapi;
pub mod rebalance;
pub mod routes;

/// The request and response bodies: the operations' own types.
pub use crate::ops::types;

#[cfg(test)]
mod fuzz;
