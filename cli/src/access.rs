//! Day-2 access to a tenant: its join command, kubeconfigs and OpenStack
//! user-data, read from the service cluster (the tenant's status and Secrets)
//! or from a `gantry render` bundle. The commands in `day2.rs` are a thin
//! layer; the user-data is made by `cloud_init.rs`.

use std::path::Path;

use gantry_pki::{BootstrapToken, JoinValues};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use time::OffsetDateTime;

use crate::bundle_dir::at::Folder;
use crate::bundle_dir::{BundleRecord, RECORD};
use gantry_api::join_secret::{self, JOIN_SECRET};
use gantry_api::{ConditionType, TenantControlPlane};

/// Everything day-2 commands need to know about one tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantAccess {
    pub name: String,
    /// The running version (`status.version`), or the bundle's.
    pub version: Option<String>,
    /// Where nodes reach the apiserver, the current join token and the CA
    /// pin, each checked: what gantry prints and writes into a node's script
    /// is made of these, never of the text it read.
    pub join: JoinValues,
    pub admin_conf: Vec<u8>,
    /// Read only for `--super-admin`, which alone prints it; `None` too
    /// where the reader may not see it (it is apart from `admin.conf`).
    pub super_admin_conf: Option<Vec<u8>>,
}

impl std::fmt::Debug for TenantAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token or the kubeconfigs' keys.
        f.debug_struct("TenantAccess")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("endpoint", &self.join.endpoint().to_string())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Day2Error {
    #[error("no TenantControlPlane named {0:?} (`kubectl get tenantcontrolplanes` lists them)")]
    NoSuchTenant(String),
    #[error("tenant {tenant:?} is not ready yet: {missing} ({state})")]
    NotReady {
        tenant: String,
        missing: String,
        state: String,
    },
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("--bundle {dir}: {reason}")]
    Bundle { dir: String, reason: String },
    #[error("tenant {tenant:?}: {reason}")]
    Tenant { tenant: String, reason: String },
}

/// Reads `tenant` from the service cluster: its status and its Secrets;
/// Secret `super-admin-kubeconfig` only if `super_admin` (`kubeconfig
/// --super-admin`, the one command that prints it).
pub async fn from_cluster(
    client: &Client,
    tenant: &str,
    super_admin: bool,
) -> Result<TenantAccess, Day2Error> {
    // The name goes into user-data: it must be a tenant name.
    gantry_pki::validate_tenant_name(tenant).map_err(|e| Day2Error::Tenant {
        tenant: tenant.to_string(),
        reason: format!("is not a tenant name: {}", e.reason),
    })?;
    let api_error = |action: String| move |source| Day2Error::Api { action, source };
    let tenants: Api<TenantControlPlane> = Api::all(client.clone());
    let tcp = tenants
        .get_opt(tenant)
        .await
        .map_err(api_error(format!("get TenantControlPlane {tenant}")))?
        .ok_or_else(|| Day2Error::NoSuchTenant(tenant.to_string()))?;
    let status = tcp.status.clone().unwrap_or_default();
    let state = {
        let phase = status.phase_or_pending();
        match status.condition(ConditionType::Ready) {
            Some(ready) => format!(
                "phase {phase}, Ready={} {}: {}",
                ready.status, ready.reason, ready.message
            ),
            None => format!("phase {phase}"),
        }
    };
    let namespace = gantry_pki::default_namespace(tenant);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let read = |name: &'static str| {
        let secrets = secrets.clone();
        let action = format!("get Secret {namespace}/{name}");
        async move { secrets.get_opt(name).await.map_err(api_error(action)) }
    };
    let not_ready = |missing: &str| Day2Error::NotReady {
        tenant: tenant.to_string(),
        missing: missing.to_string(),
        state: state.clone(),
    };
    let join = read(JOIN_SECRET)
        .await?
        .ok_or_else(|| not_ready("no join Secret yet"))?;
    let kubeconfigs = read("admin-kubeconfig")
        .await?
        .ok_or_else(|| not_ready("no admin-kubeconfig Secret yet"))?;
    // Forbidden is an answer here: whoever may read admin.conf need not
    // see system:masters.
    let super_admin = match super_admin {
        false => Ok(None),
        true => secrets.get_opt("super-admin-kubeconfig").await,
    };
    let super_admin = match super_admin {
        Err(kube::Error::Api(response)) if response.code == 403 => None,
        other => other.map_err(api_error(format!(
            "get Secret {namespace}/super-admin-kubeconfig"
        )))?,
    };
    let field = |secret: &Secret, key: &str| -> Result<Vec<u8>, Day2Error> {
        secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .map(|bytes| bytes.0.clone())
            .ok_or_else(|| Day2Error::Tenant {
                tenant: tenant.to_string(),
                reason: format!(
                    "Secret {namespace}/{} has no key {key:?}",
                    secret.metadata.name.as_deref().unwrap_or_default()
                ),
            })
    };
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap_or_default();
    // Whoever may edit the Secret chooses these words: each is checked, and
    // no error repeats the token.
    let join = JoinValues::parse(
        &text(field(&join, join_secret::ENDPOINT)?),
        &text(field(&join, join_secret::TOKEN)?),
        &text(field(&join, join_secret::CA_CERT_HASH)?),
    )
    .map_err(|e| Day2Error::Tenant {
        tenant: tenant.to_string(),
        reason: format!("Secret {namespace}/{JOIN_SECRET}: {e}"),
    })?;
    Ok(TenantAccess {
        name: tenant.to_string(),
        version: status.version.clone(),
        join,
        admin_conf: field(&kubeconfigs, "admin.conf")?,
        super_admin_conf: super_admin
            .map(|secret| field(&secret, "super-admin.conf"))
            .transpose()?,
    })
}

/// Reads a tenant from a `gantry render` bundle folder. `super_admin`: read
/// `super-admin.conf` too, which only `kubeconfig --super-admin` prints; a
/// bundle copied for whoever joins nodes or hands out `admin.conf` is
/// expected not to hold it.
///
/// Every file is read through the opened folder (`bundle_dir::at`): no link
/// inside it is followed, and a FIFO, a device or a huge file is refused,
/// not read.
pub fn from_bundle(dir: &Path, super_admin: bool) -> Result<TenantAccess, Day2Error> {
    let bundle_error = |reason: String| Day2Error::Bundle {
        dir: dir.display().to_string(),
        reason: one_line(&reason),
    };
    let folder = Folder::open(dir).map_err(|e| bundle_error(e.to_string()))?;
    let join = bundle_join(&folder).map_err(bundle_error)?;
    let (name, version) = bundle_tenant(&folder).map_err(bundle_error)?;
    let admin_conf = bundle_file(&folder, "admin.conf")
        .map_err(bundle_error)?
        .ok_or_else(|| bundle_error("admin.conf is not in the bundle; render it again".into()))?;
    let super_admin_conf = match super_admin {
        false => None,
        true => Some(
            bundle_file(&folder, "super-admin.conf")
                .map_err(bundle_error)?
                .ok_or_else(|| {
                    bundle_error(
                        "super-admin.conf is not in this bundle (it may be kept apart, as it \
                         should be from a tenant's copy): --super-admin needs the folder that \
                         holds it"
                            .into(),
                    )
                })?,
        ),
    };
    Ok(TenantAccess {
        name,
        version: Some(version),
        join,
        admin_conf,
        super_admin_conf,
    })
}

/// `text` with control characters escaped: a name in the bundle (a file
/// under `tenant/`, an archive in `chart/`) may hold a newline, and an
/// error stays one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// The bundle's file `relative`, `None` if it has none.
fn bundle_file(folder: &Folder, relative: &str) -> Result<Option<Vec<u8>>, String> {
    folder.read(relative).map_err(|e| e.to_string())
}

/// The join values of the bundle's `join-command`, each checked, and its CA
/// pin that of `pki/ca.crt`; warns when the token's Secret says it expired.
fn bundle_join(folder: &Folder) -> Result<JoinValues, String> {
    let command = bundle_file(folder, "join-command")?
        .ok_or("join-command is not in the bundle; is this a `gantry render` output folder?")?;
    let command = String::from_utf8(command).map_err(|_| "join-command is not UTF-8")?;
    // The line holds the token: no error repeats it.
    let Some(join) = gantry_pki::JoinCommand::parse(&command) else {
        return Err(
            "join-command is not one line `kubeadm join HOST:PORT --token … \
             --discovery-token-ca-cert-hash …` and nothing else; render the bundle again"
                .into(),
        );
    };
    let join = join
        .check()
        .map_err(|e| format!("join-command: {e}; render the bundle again"))?;
    check_ca_pin(folder, join.ca_cert_hash())?;
    if let Some(expiration) = token_expiration(folder, join.token())?
        && expiration <= OffsetDateTime::now_utc()
    {
        tracing::warn!(
            "the token in {}/join-command expired at {}: kubeadm join will fail with it; \
             run gantry render again for a new one",
            folder.shown().display(),
            gantry_pki::rfc3339(expiration)
        );
    }
    Ok(join)
}

/// The tenant's name and version, from the bundle's record
/// (`gantry-bundle.json`), which a render writes for its own tenant alone:
/// any archive in `chart/` may have been copied in from another bundle.
/// Without a record (an older gantry's bundle) the chart archive names them,
/// but only if there is exactly one.
fn bundle_tenant(folder: &Folder) -> Result<(String, String), String> {
    let record = match bundle_file(folder, RECORD)? {
        None => None,
        Some(text) => Some(
            serde_json::from_slice::<BundleRecord>(&text)
                .map_err(|e| format!("{RECORD} is not a gantry bundle record: {e}"))?,
        ),
    };
    let (name, version, source) = match record {
        Some(BundleRecord {
            tenant,
            fixed: Some(fixed),
            ..
        }) => (tenant, fixed.version, RECORD.to_string()),
        Some(record) => {
            let why = format!("{RECORD} names no version (an older gantry's)");
            let version = only_chart(folder, Some(&record.tenant), &why)?.1;
            (record.tenant, version, RECORD.to_string())
        }
        None => {
            let (name, version) = only_chart(folder, None, &format!("there is no {RECORD}"))?;
            (name, version, "chart/".to_string())
        }
    };
    // The name goes into user-data and commands: it must be a tenant name.
    gantry_pki::validate_tenant_name(&name)
        .map_err(|e| format!("{source}: the tenant name {name:?} {}", e.reason))?;
    Ok((name, version))
}

/// The name and version of the one `chart/<name>-control-plane-<version>.tgz`
/// (of tenant `tenant`, if known); `why` says why the chart is asked.
fn only_chart(
    folder: &Folder,
    tenant: Option<&str>,
    why: &str,
) -> Result<(String, String), String> {
    let names = match folder.folder("chart").map_err(|e| e.to_string())? {
        Some(chart) => chart.names().map_err(|e| format!("chart/: {e}"))?,
        None => Vec::new(),
    };
    let mut charts: Vec<(String, String)> = names
        .into_iter()
        .filter_map(|(file, _)| file.into_string().ok())
        .filter_map(|file| {
            let stem = file.strip_suffix(".tgz")?;
            // The version holds no "-control-plane-"; a tenant name may.
            let (name, version) = stem.rsplit_once("-control-plane-")?;
            Some((name.to_string(), version.to_string()))
        })
        .filter(|(name, _)| tenant.is_none_or(|tenant| tenant == name))
        .collect();
    charts.sort();
    let wanted = format!("{}-control-plane-<version>.tgz", tenant.unwrap_or("<name>"));
    match charts.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "{why} and chart/ holds no {wanted} to name the tenant's version; render the bundle again"
        )),
        many => Err(format!(
            "{why} and chart/ holds {} archives {wanted} ({}): which one is the tenant's cannot \
             be told; render the bundle again",
            many.len(),
            many.iter()
                .map(|(name, version)| format!("{name}-control-plane-{version}.tgz"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The pin of join-command (well-formed: [`JoinValues`] checked it) is the
/// one of the bundle's own `pki/ca.crt` when the bundle has it.
fn check_ca_pin(folder: &Folder, pin: &str) -> Result<(), String> {
    if let Some(ca) = bundle_file(folder, "pki/ca.crt")? {
        let actual = gantry_pki::ca_cert_hash(&ca).map_err(|e| format!("pki/ca.crt: {e}"))?;
        if actual != pin {
            return Err(format!(
                "join-command pins {pin} but pki/ca.crt hashes to {actual}; render the bundle again"
            ));
        }
    }
    Ok(())
}

/// When the bundle's bootstrap-token Secret for `token` expires, if the
/// bundle has it (`tenant/NN-secret-bootstrap-token-<id>.yaml`) and says.
fn token_expiration(
    folder: &Folder,
    token: &BootstrapToken,
) -> Result<Option<OffsetDateTime>, String> {
    let suffix = format!("-secret-{}.yaml", token.secret_name());
    let files = folder.files_under("tenant").map_err(|e| e.to_string())?;
    let Some(file) = files.iter().find(|file| file.ends_with(&suffix)) else {
        return Ok(None);
    };
    Ok(bundle_file(folder, file)?.and_then(|secret| bootstrap_token_expiration(&secret)))
}

/// The `stringData.expiration` of a bootstrap-token Secret manifest.
pub fn bootstrap_token_expiration(secret: &[u8]) -> Option<OffsetDateTime> {
    let secret = std::str::from_utf8(secret).ok()?;
    if gantry_api::yaml_guard::flow_nesting_problem(secret).is_some() {
        return None;
    }
    let secret: serde_yaml::Value = serde_yaml::from_str(secret).ok()?;
    let expiration = secret.get("stringData")?.get("expiration")?.as_str()?;
    OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339).ok()
}

/// Creates a new bootstrap token in the tenant cluster (`tenant` is a client
/// of the tenant's apiserver as its admin), valid for `ttl`. The
/// bootstrap signer in the tenant's controller-manager signs cluster-info for
/// it; the token cleaner removes it once expired.
pub async fn mint_token(
    tenant: &Client,
    ttl: time::Duration,
    now: OffsetDateTime,
) -> Result<BootstrapToken, Day2Error> {
    let token = BootstrapToken::generate();
    let secret =
        gantry_pki::BootstrapTokenSecret::new(&token, now + ttl, "minted by gantry join --ttl");
    let value = serde_json::to_value(&secret).expect("a Secret serialises");
    let secret: Secret = serde_json::from_value(value).expect("a Secret parses");
    let secrets: Api<Secret> = Api::namespaced(tenant.clone(), "kube-system");
    secrets
        .create(&Default::default(), &secret)
        .await
        .map_err(|source| Day2Error::Api {
            action: format!("create Secret kube-system/{}", token.secret_name()),
            source,
        })?;
    Ok(token)
}

/// A client of the tenant's apiserver from its `admin.conf` (whose server is
/// the tenant's endpoint; `cluster-admin` by RBAC, enough to mint a token).
pub async fn tenant_client(access: &TenantAccess) -> Result<Client, Day2Error> {
    gantry_controller::reconcile::pipeline::client_from_kubeconfig(&access.admin_conf, None)
        .await
        .map_err(|e| Day2Error::Tenant {
            tenant: access.name.clone(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bundle_error_stays_one_line_whatever_a_file_name_holds() {
        assert_eq!(
            super::one_line("chart/a\n-control-plane-1.tgz\r\t\"quoted\" é"),
            "chart/a\\n-control-plane-1.tgz\\r\\t\"quoted\" é"
        );
    }
}
