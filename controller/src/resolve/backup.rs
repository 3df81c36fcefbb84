//! `spec.backup` with the operator's defaults: whether a tenant is backed
//! up, when, how many snapshots it keeps, and where they go, each checked.

use gantry_api::BackupStoreSpec;
use gantry_renderer::{BACKUP_CREDENTIALS_SECRET, BackupDefaults, BackupInput, BackupStore};

use crate::api::TenantControlPlaneSpec;
use crate::spec_error::{SpecError, invalid};

/// Snapshots kept when neither the spec nor the operator says: a day of
/// hourly snapshots.
pub const DEFAULT_KEEP: u32 = 24;

/// The tenant's backups, or `None` when it has none: turned off, or no
/// destination known (and the spec asks for nothing).
pub(super) fn backup(
    name: &str,
    spec: &TenantControlPlaneSpec,
    defaults: &BackupDefaults,
    gantry_image: &str,
) -> Result<Option<BackupInput>, SpecError> {
    let wanted = &spec.backup;
    if wanted.enabled == Some(false) {
        return Ok(None);
    }
    let store = match (&wanted.store, &defaults.store) {
        (Some(store), _) => store_from_spec(store)?,
        (None, Some(store)) => BackupStore {
            credentials_secret: BACKUP_CREDENTIALS_SECRET.to_string(),
            ..store.clone()
        },
        (None, None) => {
            let asked =
                wanted.enabled == Some(true) || wanted.schedule.is_some() || wanted.keep.is_some();
            if asked {
                return Err(invalid(
                    "spec.backup.store",
                    "",
                    "is required: the operator has no default destination (its --backup-store)",
                ));
            }
            return Ok(None);
        }
    };
    let platform_public_key = defaults.platform_public_key.clone().ok_or_else(|| {
        invalid(
            "spec.backup",
            "",
            "no platform public key (--backup-platform-public-key): backups cannot seal the tenant's keys",
        )
    })?;
    let schedule = match (&wanted.schedule, &defaults.schedule) {
        (Some(schedule), _) => check_schedule("spec.backup.schedule", schedule)?,
        (None, Some(schedule)) => schedule.clone(),
        (None, None) => spread_hourly(name),
    };
    let keep = match wanted.keep {
        Some(keep) => u32::try_from(keep)
            .ok()
            .filter(|k| (1..=1000).contains(k))
            .ok_or_else(|| invalid("spec.backup.keep", keep, "must be within 1-1000"))?,
        None => defaults.keep.unwrap_or(DEFAULT_KEEP),
    };
    Ok(Some(BackupInput {
        image: gantry_image.to_string(),
        schedule,
        keep,
        store,
        platform_public_key,
    }))
}

/// Hourly, at a minute that depends on the tenant's name: hundreds of
/// tenants' snapshots spread over the hour instead of all at :00.
pub fn spread_hourly(name: &str) -> String {
    let minute = name.bytes().fold(0u32, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(u32::from(byte))
    }) % 60;
    format!("{minute} * * * *")
}

/// A CronJob schedule: five fields (no seconds), as Kubernetes reads it.
pub fn check_schedule(field: &str, schedule: &str) -> Result<String, SpecError> {
    let fields = schedule.split_whitespace().count();
    if fields != 5 || schedule.contains('\n') {
        return Err(invalid(
            field,
            schedule,
            "must be five cron fields (minute hour day month weekday)",
        ));
    }
    if schedule.contains("TZ=") || schedule.contains('@') {
        return Err(invalid(
            field,
            schedule,
            "must be five cron fields; time zones and @ macros are not taken",
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|e| invalid(field, schedule, format!("is not a cron schedule: {e}")))?;
    Ok(schedule.trim().to_string())
}

fn store_from_spec(store: &BackupStoreSpec) -> Result<BackupStore, SpecError> {
    let (endpoint, port) = store_endpoint("spec.backup.store.endpoint", &store.endpoint)?;
    check_bucket("spec.backup.store.bucket", &store.bucket)?;
    let region = store
        .region
        .clone()
        .unwrap_or_else(|| "us-east-1".to_string());
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "spec.backup.store.region",
            &region,
            "must be letters, digits, '-' and '_'",
        ));
    }
    let prefix = store.prefix.clone().unwrap_or_else(|| "gantry".to_string());
    check_prefix("spec.backup.store.prefix", &prefix)?;
    crate::spec_rules::dns_subdomain(
        "spec.backup.store.credentialsSecret",
        &store.credentials_secret,
    )?;
    if let Some(bundle) = &store.ca_bundle {
        check_ca_bundle("spec.backup.store.caBundle", bundle)?;
    }
    Ok(BackupStore {
        endpoint,
        port,
        bucket: store.bucket.clone(),
        region,
        prefix,
        credentials_secret: store.credentials_secret.clone(),
        ca_bundle: store.ca_bundle.clone(),
    })
}

/// `http(s)://host[:port][/]`: returns it without the slash, and the port.
pub fn store_endpoint(field: &str, endpoint: &str) -> Result<(String, u16), SpecError> {
    let bad = |reason: &str| invalid(field, endpoint, reason.to_string());
    let uri: hyper::Uri = endpoint
        .parse()
        .map_err(|_| bad("must be https://host[:port]"))?;
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return Err(bad("must be https://host[:port] (or http://)")),
    };
    let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
    if authority.as_str().contains('@') || !matches!(uri.path(), "" | "/") || uri.query().is_some()
    {
        return Err(bad(
            "must be scheme://host[:port], with no path, query or credentials",
        ));
    }
    let bad_port = authority.port_u16() == Some(0)
        || (authority.port().is_none() && authority.as_str() != authority.host());
    if authority.host().is_empty() || bad_port {
        return Err(bad("has no host or a bad port"));
    }
    let port = authority.port_u16().unwrap_or(default_port);
    Ok((
        format!("{}://{authority}", uri.scheme_str().unwrap_or("https")),
        port,
    ))
}

fn check_bucket(field: &str, bucket: &str) -> Result<(), SpecError> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.as_bytes()[0].is_ascii_alphanumeric()
        && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
    if !ok {
        return Err(invalid(
            field,
            bucket,
            "must be an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-'",
        ));
    }
    Ok(())
}

fn check_prefix(field: &str, prefix: &str) -> Result<(), SpecError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 200
        && prefix.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    if !ok {
        return Err(invalid(
            field,
            prefix,
            "must be folder names of letters, digits, '-', '_' and '.' joined by '/'",
        ));
    }
    Ok(())
}

fn check_ca_bundle(field: &str, bundle: &str) -> Result<(), SpecError> {
    let blocks =
        pem::parse_many(bundle).map_err(|e| invalid(field, "(PEM)", format!("is not PEM: {e}")))?;
    if !blocks.iter().any(|b| b.tag() == "CERTIFICATE") {
        return Err(invalid(field, "(PEM)", "holds no CERTIFICATE"));
    }
    if blocks.iter().any(|b| b.tag() != "CERTIFICATE") {
        return Err(invalid(
            field,
            "(PEM)",
            "must hold certificates only (never a key)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_scheme_host_and_port() {
        assert_eq!(
            store_endpoint("f", "https://s3.example").unwrap(),
            ("https://s3.example".into(), 443)
        );
        assert_eq!(
            store_endpoint("f", "http://10.0.0.5:7070/").unwrap(),
            ("http://10.0.0.5:7070".into(), 7070)
        );
        assert_eq!(
            store_endpoint("f", "https://[2001:db8::1]:9000").unwrap().1,
            9000
        );
        for bad in [
            "s3.example",
            "ftp://s3",
            "https://",
            "https://a/b",
            "https://u:p@s3",
            "https://s3:0",
            "https://s3:x",
        ] {
            assert!(store_endpoint("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schedules_are_five_cron_fields_and_the_default_spreads() {
        assert!(check_schedule("f", "17 * * * *").is_ok());
        assert!(check_schedule("f", "*/15 2-4 * * 1-5").is_ok());
        for bad in [
            "* * * *",
            "0 * * * * *",
            "61 * * * *",
            "@hourly",
            "TZ=UTC 0 * * * *",
            "x * * * *",
        ] {
            assert!(check_schedule("f", bad).is_err(), "{bad}");
        }
        assert_ne!(spread_hourly("tenant-a"), spread_hourly("tenant-b"));
        assert!(check_schedule("f", &spread_hourly("anything")).is_ok());
    }
}
