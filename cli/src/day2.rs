//! `gantry join`, `gantry kubeconfig`, `gantry cloud-init` and `gantry get`:
//! read a tenant from the service cluster (the usual kubeconfig rules:
//! `KUBECONFIG`, `~/.kube/config`, or in-cluster) or, with `--bundle DIR`,
//! from a `gantry render` bundle.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::CliError;
use crate::access::{self as tenant_access, TenantAccess};
use crate::cloud_init::{self, CloudInitOptions};
use gantry_api::{ConditionType, TenantControlPlane};
use gantry_renderer::KubeVersion;

/// Which tenant: a name in the service cluster, or a bundle folder.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// The TenantControlPlane's name.
    tenant: Option<String>,
    /// A `gantry render` output folder instead of a cluster (air-gapped sites, Helm-only installs).
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
}

#[derive(Args)]
pub struct JoinArgs {
    #[command(flatten)]
    target: Target,
    /// Mint a new bootstrap token valid for this long (e.g. 2h) instead of
    /// printing the current one; needs the tenant's endpoint reachable from here.
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
}

#[derive(Args)]
pub struct KubeconfigArgs {
    #[command(flatten)]
    target: Target,
    /// Print super-admin.conf (system:masters, bypasses RBAC) instead of admin.conf.
    #[arg(long)]
    super_admin: bool,
}

#[derive(Args)]
pub struct CloudInitArgs {
    #[command(flatten)]
    target: Target,
    /// The kubelet's node-ip is the VM's address in this IPv4 network.
    #[arg(long, value_name = "CIDR")]
    node_network: Option<String>,
    /// https apt repository of kubelet and kubeadm (default: pkgs.k8s.io for the tenant's minor).
    #[arg(long, value_name = "URL", conflicts_with = "preinstalled")]
    package_repo: Option<String>,
    /// The VM image already has containerd, kubelet and kubeadm of the tenant's version, swap off and
    /// kubeadm's kernel settings: install and change nothing, only pick the node IP and join.
    #[arg(long)]
    preinstalled: bool,
    /// kubelet and kubeadm version (default: the tenant's): not newer than it, at most 3 minors older.
    #[arg(long, value_name = "VERSION")]
    kubernetes_version: Option<String>,
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("starting the async runtime: {e}")))
}

pub(crate) async fn service_cluster() -> Result<kube::Client, CliError> {
    kube::Client::try_default().await.map_err(|e| {
        CliError::Failed(format!(
            "no service cluster to talk to (KUBECONFIG, ~/.kube/config or in-cluster): {e}"
        ))
    })
}

/// The tenant's access; its super-admin kubeconfig only if `super_admin`.
async fn access(target: &Target, super_admin: bool) -> Result<TenantAccess, CliError> {
    match (&target.tenant, &target.bundle) {
        // A bundle that cannot be read is bad input (exit 2).
        (_, Some(dir)) => tenant_access::from_bundle(dir, super_admin).map_err(|e| match e {
            tenant_access::Day2Error::Bundle { dir, reason } => bad_flag("--bundle", &dir, reason),
            other => CliError::Day2(other),
        }),
        (Some(tenant), None) => {
            let client = service_cluster().await?;
            Ok(tenant_access::from_cluster(&client, tenant, super_admin).await?)
        }
        (None, None) => unreachable!("clap requires one of them"),
    }
}

fn print(bytes: &[u8]) -> Result<ExitCode, CliError> {
    super::write_stdout(bytes)?;
    Ok(ExitCode::SUCCESS)
}

fn bad_flag(flag: &'static str, value: &str, reason: impl Into<String>) -> CliError {
    CliError::BadFile {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

pub fn join(args: JoinArgs) -> Result<ExitCode, CliError> {
    let ttl = match &args.ttl {
        Some(ttl) => Some(
            gantry_controller::resolve::parse_duration("--ttl", ttl)
                .map_err(|e| bad_flag("--ttl", ttl, e.reason))?,
        ),
        None => None,
    };
    runtime()?.block_on(async {
        let access = access(&args.target, false).await?;
        // Printed from checked values only (see gantry_pki::JoinValues).
        let join = match ttl {
            None => access.join.clone(),
            Some(ttl) => {
                let tenant = tenant_access::tenant_client(&access).await?;
                let token =
                    tenant_access::mint_token(&tenant, ttl, time::OffsetDateTime::now_utc())
                        .await?;
                access.join.with_token(token)
            }
        };
        print(format!("{join}\n").as_bytes())
    })
}

pub fn kubeconfig(args: KubeconfigArgs) -> Result<ExitCode, CliError> {
    runtime()?.block_on(async {
        let access = access(&args.target, args.super_admin).await?;
        if !args.super_admin {
            return print(&access.admin_conf);
        }
        match &access.super_admin_conf {
            Some(conf) => print(conf),
            None => Err(CliError::Failed(format!(
                "tenant {}: may not read Secret super-admin-kubeconfig (system:masters); \
                 ask whoever holds the platform's break-glass role",
                access.name
            ))),
        }
    })
}

pub fn cloud_init(args: CloudInitArgs) -> Result<ExitCode, CliError> {
    let node_network = args.node_network.as_deref().map(node_network).transpose()?;
    if let Some(repo) = &args.package_repo
        && let Some(problem) = cloud_init::package_repo_problem(repo)
    {
        return Err(bad_flag("--package-repo", repo, problem));
    }
    let requested: Option<KubeVersion> = match &args.kubernetes_version {
        Some(v) => Some(v.parse().map_err(|e: gantry_renderer::VersionError| {
            bad_flag("--kubernetes-version", v, e.to_string())
        })?),
        None => None,
    };
    runtime()?.block_on(async {
        let access = access(&args.target, false).await?;
        let version = kubelet_version(&args, requested, &access)?;
        let mut package_repo = args
            .package_repo
            .clone()
            .unwrap_or_else(|| cloud_init::default_package_repo(&version));
        if !package_repo.ends_with('/') {
            package_repo.push('/');
        }
        let options = CloudInitOptions {
            node_network,
            package_repo,
            kubernetes_version: version.to_string(),
            preinstalled: args.preinstalled,
        };
        print(cloud_init::cloud_init(&access, &options).as_bytes())
    })
}

/// `--node-network`: an IPv4 network without 127.0.0.1.
fn node_network(cidr: &str) -> Result<ipnet::Ipv4Net, CliError> {
    let network: ipnet::IpNet = cidr
        .parse()
        .map_err(|_| bad_flag("--node-network", cidr, "is not a CIDR such as 10.0.0.0/24"))?;
    match network {
        ipnet::IpNet::V4(network) => match cloud_init::node_network_problem(&network) {
            Some(problem) => Err(bad_flag("--node-network", cidr, problem)),
            None => Ok(network.trunc()),
        },
        ipnet::IpNet::V6(_) => Err(bad_flag(
            "--node-network",
            cidr,
            "IPv6 node networks are not supported yet (the node IP is picked among IPv4 addresses)",
        )),
    }
}

/// The kubelet and kubeadm version of the user-data: `--kubernetes-version`
/// if given and within the version skew policy of the tenant's version
/// (checked whenever the tenant's version is known), else the tenant's.
fn kubelet_version(
    args: &CloudInitArgs,
    requested: Option<KubeVersion>,
    access: &TenantAccess,
) -> Result<KubeVersion, CliError> {
    let tenant = match (&access.version, &args.target.bundle) {
        (None, _) => None,
        (Some(version), bundle) => Some(version.parse().map_err(
            |e: gantry_renderer::VersionError| match bundle {
                // A bundle's version is bad input; a running tenant's is not.
                Some(dir) => bad_flag(
                    "--bundle",
                    &dir.display().to_string(),
                    format!("the tenant's version {version:?} {e}"),
                ),
                None => {
                    CliError::Failed(format!("tenant {:?}: version {version}: {e}", access.name))
                }
            },
        )?),
    };
    match (requested, tenant) {
        (Some(kubelet), Some(tenant)) => match cloud_init::kubelet_skew_problem(kubelet, tenant) {
            Some(problem) => Err(bad_flag(
                "--kubernetes-version",
                args.kubernetes_version.as_deref().unwrap_or_default(),
                problem,
            )),
            None => Ok(kubelet),
        },
        (Some(kubelet), None) => Ok(kubelet),
        (None, Some(tenant)) => Ok(tenant),
        (None, None) => Err(CliError::Failed(format!(
            "tenant {:?} reports no running version yet: pass --kubernetes-version",
            access.name
        ))),
    }
}

/// `gantry get`: one line per tenant.
pub fn get() -> Result<ExitCode, CliError> {
    runtime()?.block_on(async {
        let client = service_cluster().await?;
        let tenants: kube::Api<TenantControlPlane> = kube::Api::all(client);
        let list = tenants
            .list(&Default::default())
            .await
            .map_err(|e| CliError::Failed(format!("list TenantControlPlanes: {e}")))?;
        print(table(&list.items).as_bytes())
    })
}

/// The `gantry get` table: name, versions, phase, endpoint, and which of the
/// standard conditions are not True.
pub fn table(tenants: &[TenantControlPlane]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "VERSION".into(),
        "DESIRED".into(),
        "PHASE".into(),
        "ENDPOINT".into(),
        "NOT READY".into(),
    ]];
    for tcp in tenants {
        let status = tcp.status.clone().unwrap_or_default();
        let not_ready: Vec<&str> = ConditionType::ALL
            .into_iter()
            .filter(|type_| !status.is_true(*type_))
            .map(ConditionType::as_str)
            .collect();
        rows.push([
            tcp.metadata.name.clone().unwrap_or_default(),
            status.version.clone().unwrap_or_else(|| "-".into()),
            tcp.spec.version.clone(),
            status.phase_or_pending().to_string(),
            status.endpoint.clone().unwrap_or_else(|| "-".into()),
            if not_ready.is_empty() {
                "-".into()
            } else {
                not_ready.join(",")
            },
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("{}\n", cells.join("   ").trim_end())
        })
        .collect()
}
