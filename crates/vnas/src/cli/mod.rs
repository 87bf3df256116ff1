//! The client side of the CLI: `vnas vserver …`, `vnas node …`,
//! `vnas status`, talking to any node's API.

pub mod client;
pub mod commands;
pub mod table;
