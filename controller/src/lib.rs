//! `gantry-controller`: the `TenantControlPlane` API, the reconcile pipeline's
//! pure steps, and the `gantry` command line. `main.rs` is only the entry point.

pub mod api;
pub mod apply;
pub mod bundle_dir;
pub mod cli;
pub mod day2;
pub mod join_secret;
pub mod operator;
pub mod reconcile;
pub mod resolve;
pub mod spec_rules;
