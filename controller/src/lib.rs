//! `gantry-controller`: the operator. It validates a `TenantControlPlane`
//! into typed values (`resolve`), runs the reconcile steps (`reconcile`:
//! observe, decide in pure functions, apply, write status), applies through
//! a thin server-side-apply layer (`apply`) that reads what is live
//! through `live` (watch-fed in the operator), approves kubelet serving
//! certificates in tenant clusters (`kubelet_serving`), and runs as a process with
//! leader election, metrics and health (`operator`).
//!
//! It must never read or write local files, nor print: the command line
//! (`gantry` crate) owns those.

pub use gantry_api as api;

pub mod apply;
pub mod kubelet_serving;
pub mod live;
pub mod operator;
pub mod reconcile;
pub mod resolve;
pub mod spec_error;
pub mod spec_rules;
