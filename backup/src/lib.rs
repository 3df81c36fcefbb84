//! Backups of a tenant: an etcd snapshot taken over etcd's own gRPC API,
//! verified, and written to S3-compatible object storage beside the tenant's
//! key material sealed with a platform key; listing, retention, and the fetch
//! a restore starts from.
//!
//! The pure parts (verifying a snapshot, naming objects, planning retention,
//! sealing keys) are apart from the two edges that talk: [`etcd`] and
//! [`store`]. [`run`] strings them together for the CLI's verbs.

pub mod error;
pub mod etcd;
pub mod layout;
pub mod maintain;
pub mod run;
pub mod seal;
pub mod snapshot;
pub mod store;
mod tls;

pub use error::{Category, Error};
