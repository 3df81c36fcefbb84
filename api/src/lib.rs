//! `gantry-api`: what gantry and its users share. The `TenantControlPlane`
//! CRD types and their manifest parser, the typed status vocabulary (phases,
//! condition types), the label and annotation vocabulary, and Secret `join`.
//!
//! It must never do I/O or talk to an API server: it is types, constants and
//! pure parsing, so that every other crate (and the chart tests) can depend
//! on it.

pub mod extra_args;
pub mod join_secret;
pub mod labels;
mod manifest;
pub mod restore;
mod status;
mod tenant;
pub use gantry_pki::yaml_guard;

pub use manifest::{METADATA_FIELDS, ManifestError, TOLERATION_FIELDS};
pub use status::{ConditionType, Phase};
pub use tenant::*;
