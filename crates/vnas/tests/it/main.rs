//! Integration tests: the real `vnas` binary, real sockets, clients we did
//! not write (the `nfs3_client` crate and libnfs's tools).

mod bad_input;
mod cluster;
mod console;
mod dashboard;
mod etcd;
mod handles_at_scale;
mod layers;
mod libnfs;
mod lifecycle;
mod locks;
mod metrics;
mod modify;
mod nfs4;
mod package;
mod procedures;
mod rebalance;
mod restart;
mod rules;
mod security;
mod support;
mod systemd;
pub mod transfer;
mod unit_path;
mod units;
mod verifier;
