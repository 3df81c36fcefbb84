//! The pure steps of the reconcile pipeline (validate → namespace → endpoint →
//! PKI → render → apply → readiness → bootstrap → join token → status). Each
//! step here computes a decision from observed state and touches no API, so it
//! is tested without a cluster; the API calls come in a thin layer around them.

mod backup;
pub mod ca_guard;
pub mod conditions;
mod context;
pub mod endpoint;
mod error;
mod observe;
pub mod operator_access;
mod outcome;
mod pass;
pub mod pipeline;
mod restore;
mod status;
pub mod steady;
mod steps;
mod tenant_bootstrap;
mod tenant_client;
pub mod token;
pub mod upgrade;
