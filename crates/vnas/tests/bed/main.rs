//! Tests on the test bed (scripts/bed.sh): nodes and clients as hosts in
//! network namespaces of their own on one bridge, vservers in the linux
//! network mode, addresses that really move between hosts. They need root
//! (namespaces, interfaces, nftables) and skip, saying so, without it.
//!
//! A test binary of its own: cargo runs test binaries one after another,
//! and the tests here take a lock, so the timings they assert (a move's
//! pause, a failover's) are not measured next to other tests' load.

mod kernel_client;
mod kernel_locks;
mod kernel_nfs4;
mod kernel_nfs4_moves;
mod modify;
#[allow(dead_code)]
#[path = "../it/support.rs"]
mod support;
mod testbed;
mod transfers;
