//! The filesystem side of the server: export trees, how handles resolve to
//! objects, attributes, and the errno -> nfsstat3 mapping.

pub mod attr;
pub mod dir;
pub mod error;
pub mod export;
pub mod kernel_handle;
mod nodes;
mod open_files;

pub use error::{errno_stat, NfsResult};
pub use export::{Export, ExportError, Obj};
pub use open_files::OpenFile;
