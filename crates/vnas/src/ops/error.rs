//! What an operation refuses or fails with: a kind (what a caller may do
//! about it), a stable code scripts match on, and a one-line reason. The
//! API turns the kind into an HTTP status; the console shows the reason
//! next to the field.

use vnas_store::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The request itself is wrong: nothing was changed.
    Invalid,
    /// It names a vserver, node, export, ... that does not exist.
    NotFound,
    /// Not now: the thing is in a state that refuses it.
    Conflict,
    /// The store, or every node that could do it, is not there.
    Unavailable,
    /// A node the call went on to did not answer.
    Upstream,
    /// Asked, but not done within the wait.
    Timeout,
    Internal,
}

#[derive(Debug)]
pub struct OpsError {
    pub kind: Kind,
    pub code: &'static str,
    pub message: String,
}

impl OpsError {
    pub fn new(kind: Kind, code: &'static str, message: impl Into<String>) -> Self {
        OpsError { kind, code, message: message.into() }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        OpsError::new(Kind::Invalid, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        OpsError::new(Kind::NotFound, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        OpsError::new(Kind::Conflict, code, message)
    }
}

impl std::fmt::Display for OpsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for OpsError {}

impl From<StoreError> for OpsError {
    fn from(error: StoreError) -> Self {
        let (kind, code) = match &error {
            StoreError::Unavailable(_) => (Kind::Unavailable, "store_unavailable"),
            StoreError::Refused(_) => (Kind::Unavailable, "store_refused"),
            StoreError::VserverExists(_) => (Kind::Conflict, "vserver_exists"),
            StoreError::AddressInUse { .. } => (Kind::Conflict, "address_in_use"),
            StoreError::VserverNotFound(_) => (Kind::NotFound, "vserver_not_found"),
            StoreError::StaleEpoch { .. } => (Kind::Conflict, "stale_epoch"),
            StoreError::NodeNotFound(_) => (Kind::NotFound, "node_not_found"),
            StoreError::NodeAlreadyRunning(_) => (Kind::Conflict, "node_already_running"),
            StoreError::InvalidName(_) => (Kind::Invalid, "invalid_name"),
            StoreError::Corrupt { .. } => (Kind::Internal, "store_corrupt"),
            StoreError::ConfigChanged(_) => (Kind::Conflict, "changed_meanwhile"),
        };
        OpsError::new(kind, code, error.to_string())
    }
}
