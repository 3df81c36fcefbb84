//! The backup flags of `gantry run` and `gantry render`: the defaults every
//! tenant whose `spec.backup` leaves a field out takes.

use std::path::PathBuf;

use clap::Args;
use gantry_backup::seal::PlatformPublicKey;

use crate::CliError;

/// The operator's (or `gantry render`'s) backup defaults: every tenant
/// whose `spec.backup` leaves a field out takes these.
#[derive(Args, Debug, Clone, Default)]
pub struct BackupDefaultArgs {
    /// The default object store, `https://host[:port]`: every tenant is
    /// backed up there unless its spec says otherwise.
    #[arg(long, value_name = "URL")]
    pub backup_store: Option<String>,
    #[arg(long, value_name = "BUCKET", requires = "backup_store")]
    pub backup_bucket: Option<String>,
    #[arg(long, value_name = "REGION", default_value = "us-east-1")]
    pub backup_region: String,
    /// The folder of every tenant's backups in the bucket.
    #[arg(long, value_name = "PREFIX", default_value = "gantry")]
    pub backup_prefix: String,
    /// PEM certificates the store's certificate chains to [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    pub backup_store_ca: Option<PathBuf>,
    /// The default schedule, five cron fields in UTC [default: hourly, at a
    /// minute that depends on the tenant's name].
    #[arg(long, value_name = "CRON")]
    pub backup_schedule: Option<String>,
    /// Complete snapshots kept per tenant.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub backup_keep: Option<u32>,
    /// The platform's public key (the .pub file of `gantry backup
    /// platform-key`): backups seal each tenant's keys to it.
    #[arg(long, value_name = "FILE")]
    pub backup_platform_public_key: Option<PathBuf>,
}

impl BackupDefaultArgs {
    pub fn to_defaults(&self) -> Result<gantry_renderer::BackupDefaults, CliError> {
        use gantry_controller::resolve::{check_schedule, store_endpoint};
        let bad = |flag: &'static str, value: &str, reason: String| CliError::BadFile {
            flag,
            value: value.to_string(),
            reason,
        };
        let read = |flag: &'static str, path: &PathBuf| {
            crate::read_flag_file(flag, path, 1 << 20).and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| {
                    bad(
                        flag,
                        &path.display().to_string(),
                        "is not UTF-8 text".into(),
                    )
                })
            })
        };
        let store = match (&self.backup_store, &self.backup_bucket) {
            (Some(endpoint), Some(bucket)) => {
                let (endpoint, port) = store_endpoint("--backup-store", endpoint)
                    .map_err(|e| bad("--backup-store", endpoint, e.reason))?;
                let ca_bundle = self
                    .backup_store_ca
                    .as_ref()
                    .map(|path| read("--backup-store-ca", path))
                    .transpose()?;
                Some(gantry_renderer::BackupStore {
                    endpoint,
                    port,
                    bucket: bucket.clone(),
                    region: self.backup_region.clone(),
                    prefix: self.backup_prefix.clone(),
                    credentials_secret: gantry_renderer::BACKUP_CREDENTIALS_SECRET.to_string(),
                    ca_bundle,
                })
            }
            (Some(endpoint), None) => {
                return Err(bad(
                    "--backup-store",
                    endpoint,
                    "needs --backup-bucket".into(),
                ));
            }
            (None, _) => None,
        };
        let schedule = self
            .backup_schedule
            .as_ref()
            .map(|s| {
                check_schedule("--backup-schedule", s)
                    .map_err(|e| bad("--backup-schedule", s, e.reason))
            })
            .transpose()?;
        let platform_public_key = match &self.backup_platform_public_key {
            Some(path) => {
                let text = read("--backup-platform-public-key", path)?;
                PlatformPublicKey::read(path).map_err(|e| {
                    bad(
                        "--backup-platform-public-key",
                        &path.display().to_string(),
                        e.to_string(),
                    )
                })?;
                Some(text.trim().to_string())
            }
            None => None,
        };
        Ok(gantry_renderer::BackupDefaults {
            schedule,
            keep: self.backup_keep,
            store,
            platform_public_key,
            credentials_from: None,
        })
    }
}
