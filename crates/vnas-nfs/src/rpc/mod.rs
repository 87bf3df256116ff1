//! ONC RPC (RFC 5531) over TCP: record marking, call headers, replies.

pub mod message;
pub mod record;
pub mod xdr;

pub use message::{parse_call, Auth, Call, CallError, FileBody, Outgoing, Reply};
pub use record::{RecordError, RecordReader};
