//! `gantry`: hosted Kubernetes control planes for private clouds.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gantry_api as api;
use gantry_cli as cli;

#[derive(Parser)]
#[command(
    name = "gantry",
    version,
    about = "Hosted Kubernetes control planes for private clouds"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Issue, renew and inspect a tenant's PKI (kubeadm layout).
    #[command(subcommand)]
    Pki(cli::pki::PkiCommand),
    /// Print the TenantControlPlane CustomResourceDefinition (YAML).
    Crd,
    /// Render a complete tenant offline: PKI, kubeconfigs, manifests, a Helm
    /// chart of the control plane, and the kubeadm join command. Rendering
    /// again updates the bundle in place and removes files that an earlier
    /// render wrote and this one does not (gantry-bundle.json lists them).
    Render(cli::render::RenderArgs),
    /// Create bootstrap tokens and sign cluster-info with them.
    #[command(subcommand)]
    Token(cli::token::TokenCommand),
    /// Run the operator: reconcile every TenantControlPlane of the cluster
    /// the in-cluster config or KUBECONFIG points at.
    Run(cli::run::RunArgs),
    /// Print the `kubeadm join` command of a tenant.
    Join(cli::day2::JoinArgs),
    /// Print a tenant's admin kubeconfig (or super-admin with --super-admin).
    Kubeconfig(cli::day2::KubeconfigArgs),
    /// Print #cloud-config user-data that joins an OpenStack VM to a tenant.
    CloudInit(cli::day2::CloudInitArgs),
    /// List the tenants: versions, phase, endpoint, conditions not yet True.
    Get,
    /// Run the tunnel's server beside a tenant apiserver (its egress to the
    /// tenant's networks): the apiserver dials through a Unix socket, agents
    /// connect over mutual TLS.
    KonnectivityServer(cli::konnectivity::ServerArgs),
    /// Run the tunnel's agent in a tenant cluster: it connects to every
    /// server and carries the apiserver's dials to kubelets, webhooks and
    /// aggregated APIs.
    KonnectivityAgent(cli::konnectivity::AgentArgs),
    /// A tenant's etcd snapshots in S3-compatible object storage: take one,
    /// list them, fetch one for a restore.
    #[command(subcommand)]
    Backup(cli::backup::BackupCommand),
    /// A tenant's etcd upkeep: defragmentation, and the way out of NOSPACE.
    #[command(subcommand)]
    Etcd(cli::backup::EtcdCommand),
}

/// Appended to every log filter, whatever GANTRY_LOG asks for (a later
/// directive for the same target wins): at debug, handlebars logs the render
/// context, which holds every private key and the join token.
const NEVER_VERBOSE: &str = "handlebars=warn";

/// The same rule as a filter no directive can override (a more specific
/// target such as `handlebars::render=debug`, or a span directive, would
/// win over [`NEVER_VERBOSE`]): nothing of handlebars below warn is logged.
fn not_handlebars_below_warn(meta: &tracing::Metadata<'_>) -> bool {
    !(meta.target().starts_with("handlebars") && *meta.level() > tracing::Level::WARN)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(usage) => return print_usage(&usage),
    };
    // The operator logs JSON at info (one object per line, with the tenant's
    // span); the one-shot commands only warn, as text. GANTRY_LOG overrides the level.
    let operator = matches!(
        cli.command,
        Command::Run(_) | Command::KonnectivityServer(_) | Command::KonnectivityAgent(_)
    );
    let stdout_only = matches!(
        cli.command,
        Command::Pki(_) | Command::Crd | Command::Render(_) | Command::Token(_)
    );
    if stdout_only {
        // Rust ignores SIGPIPE, so a write to a closed pipe (`gantry pki check
        // DIR | head -1`) fails. Commands that write only files and stdout
        // end quietly instead, as Unix tools do. (The operator and the
        // commands that talk to an apiserver keep it ignored: a reset
        // connection must be an error, not a silent death.)
        // SAFETY: setting a signal disposition has no memory effects.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let default = if operator { "info" } else { "warn" };
    let requested = std::env::var("GANTRY_LOG").unwrap_or_else(|_| default.into());
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{requested},{NEVER_VERBOSE}"))
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{default},{NEVER_VERBOSE}"))
        });
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{Layer as _, filter::FilterExt as _};
    let filter = filter.and(tracing_subscriber::filter::filter_fn(
        not_handlebars_below_warn,
    ));
    // Colour only on a terminal: a log sent to a file or a pipe stays plain text.
    let text = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if operator {
        tracing_subscriber::registry()
            .with(text.json().with_filter(filter))
            .init();
    } else {
        tracing_subscriber::registry()
            .with(text.with_filter(filter))
            .init();
    }
    let result = match cli.command {
        Command::Pki(command) => cli::pki::run(command),
        Command::Crd => {
            use kube::CustomResourceExt;
            let crd =
                serde_yaml::to_string(&api::TenantControlPlane::crd()).expect("the CRD serialises");
            cli::write_stdout(crd.as_bytes()).map(|()| ExitCode::SUCCESS)
        }
        Command::Render(args) => cli::render::run(args),
        Command::Token(command) => cli::token::run(command),
        Command::Run(args) => cli::run::run(args),
        Command::Join(args) => cli::day2::join(args),
        Command::Kubeconfig(args) => cli::day2::kubeconfig(args),
        Command::CloudInit(args) => cli::day2::cloud_init(args),
        Command::Get => cli::day2::get(),
        Command::KonnectivityServer(args) => cli::konnectivity::run_server(args),
        Command::KonnectivityAgent(args) => cli::konnectivity::run_agent(args),
        Command::Backup(command) => cli::backup::run(command),
        Command::Etcd(command) => cli::backup::run_etcd(command),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

/// Prints clap's help, version or usage error, and exits with its code, or
/// with 1 when it could not be written (`gantry --help >/dev/full`).
fn print_usage(usage: &clap::Error) -> ExitCode {
    use std::io::Write as _;
    let printed = usage.print().and_then(|()| std::io::stdout().flush());
    match printed {
        Ok(()) => ExitCode::from(u8::try_from(usage.exit_code()).unwrap_or(2)),
        Err(e) => {
            eprintln!("error: cannot write the help text: {e}");
            ExitCode::FAILURE
        }
    }
}
