//! `gantry-renderer`: a tenant's Kubernetes objects from handlebars templates.
//!
//! Input is a fully resolved [`RenderInput`] and the tenant's PKI; output is
//! two ordered object sets: **service** (the masters, applied in the service
//! cluster's `tcp-<name>` namespace) and **tenant** (what `kubeadm join` and a
//! working cluster need, applied through the tenant's own apiserver). Every
//! object is checked against its k8s-openapi type before it is returned.
//! [`chart`] packs the service set as a Helm chart archive; [`kinds`] is the
//! registry of the kinds it renders.
//!
//! Pure: it must never do I/O or talk to an API server.

pub mod args;
pub mod chart;
mod check;
mod context;
mod error;
mod input;
pub mod kinds;
mod render;
mod restore;
mod secrets;
pub mod versions;

pub use check::check_as;
pub use error::RenderError;
pub use input::{
    ApiServerInput, BACKUP_CREDENTIALS_SECRET, BackupDefaults, BackupInput, BackupStore,
    BootstrapInput, ComponentInput, EtcdInput, KONNECTIVITY_PORT, KonnectivityInput,
    NetworkingInput, Placement, RenderInput, Resources, ServiceCluster, ServiceType,
    default_gantry_image,
};
pub use kinds::check_object;
pub use render::{
    Rendered, RenderedObject, TEMPLATES, Target, compile_templates_in_background, is_privileged,
    render, render_bootstrap,
};
pub use restore::{RestoreRequest, render_restore_jobs, restore_job_name};
pub use secrets::{
    ENCRYPTION_SECRET, ETCD_BACKUP_SECRET, SECRET_FILES, SecretFiles, create_only_secrets,
};
pub use versions::{Images, KubeVersion, VersionError};

// The templates' one helper (`json`: a value as YAML-safe JSON), shared by
// the render registry and the restore Jobs'.
handlebars::handlebars_helper!(json_helper: |value: Json| serde_json::to_string(value).expect("JSON values serialise"));
