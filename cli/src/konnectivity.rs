//! `gantry konnectivity-server` and `gantry konnectivity-agent`: the two
//! ends of the tunnel a tenant's apiserver dials its own networks through
//! (gantry-tunnel). The operator runs the server beside every apiserver
//! replica and the agent in the tenant cluster; both come from gantry's one
//! image.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use gantry_tunnel::{agent, server, tls};

use crate::CliError;

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// The Unix socket the apiserver dials through (its egress selector's `udsName`).
    #[arg(
        long,
        default_value = "/etc/kubernetes/konnectivity/konnectivity-server.socket"
    )]
    pub uds_path: PathBuf,
    /// Where agents connect.
    #[arg(long, default_value = "[::]:8132")]
    pub agent_address: String,
    /// The server's certificate, of the tenant CA (the apiserver's serving certificate).
    #[arg(long)]
    pub cert: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
    /// The CA an agent's client certificate must chain to (the tenant CA).
    #[arg(long)]
    pub agent_ca: PathBuf,
    /// The common name an agent's client certificate must carry.
    #[arg(long, default_value = gantry_pki::KONNECTIVITY_AGENT_COMMON_NAME)]
    pub agent_common_name: String,
    /// This server's ID, as agents see it [default: $POD_NAME, else the host name].
    #[arg(long)]
    pub server_id: Option<String>,
    /// How many servers there are (the apiserver's replicas).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub server_count: u32,
    /// /healthz, /readyz and /metrics.
    #[arg(long, default_value = "[::]:8133")]
    pub health_address: String,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The server as the tenant's network reaches it (the tenant endpoint's host and the tunnel port).
    #[arg(long)]
    pub server: String,
    /// The name the server's certificate must carry [default: the host of --server].
    #[arg(long)]
    pub server_name: Option<String>,
    /// The CA the server's certificate must chain to (the tenant CA).
    #[arg(long)]
    pub ca_cert: PathBuf,
    /// The agent's client certificate and key (read again at every connect).
    #[arg(long)]
    pub cert: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
    /// This agent's ID [default: $POD_NAME, else the host name].
    #[arg(long)]
    pub agent_id: Option<String>,
    /// The node this agent runs on: dials to its name or address go to this
    /// agent first (upstream's agent identifiers).
    #[arg(long)]
    pub node_name: Option<String>,
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,
    /// Seconds a dial may take.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub dial_timeout: u64,
    /// Seconds a connection may carry nothing either way before it is closed
    /// (the kubelet's own streaming idle timeout is 4 hours).
    #[arg(long, default_value_t = 4 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8134")]
    pub health_address: String,
}

fn this_host() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            rustix::system::uname()
                .nodename()
                .to_str()
                .ok()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "konnectivity".into())
}

/// The host of `host:port` or `[v6]:port`.
fn host_of(address: &str) -> Option<String> {
    let (host, port) = address.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| host.to_string())
}

fn identifiers(
    node_name: Option<String>,
    node_ip: Option<std::net::IpAddr>,
) -> Vec<(&'static str, String)> {
    let mut identifiers = Vec::new();
    if let Some(name) = node_name.filter(|n| !n.is_empty()) {
        identifiers.push(("host", name));
    }
    match node_ip {
        Some(ip @ std::net::IpAddr::V4(_)) => identifiers.push(("ipv4", ip.to_string())),
        Some(ip @ std::net::IpAddr::V6(_)) => identifiers.push(("ipv6", ip.to_string())),
        None => {}
    }
    identifiers
}

fn run_until_signal(
    work: impl std::future::Future<Output = Result<(), gantry_tunnel::Error>>,
) -> Result<ExitCode, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async move {
        tokio::select! {
            result = work => result.map_err(|e| CliError::Failed(e.to_string()))?,
            () = crate::run::shutdown_signal() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run_server(args: ServerArgs) -> Result<ExitCode, CliError> {
    let config = server::ServerConfig {
        uds_path: args.uds_path,
        agent_address: args.agent_address,
        tls: tls::ServerFiles {
            cert: args.cert,
            key: args.key,
            agent_ca: args.agent_ca,
        },
        agent_common_name: args.agent_common_name,
        server_id: args.server_id.unwrap_or_else(this_host),
        server_count: args.server_count,
        health_address: args.health_address,
    };
    run_until_signal(server::run(config))
}

pub fn run_agent(args: AgentArgs) -> Result<ExitCode, CliError> {
    let server_name = match args.server_name {
        Some(name) => name,
        None => host_of(&args.server).ok_or_else(|| {
            gantry_pki::InvalidInput::new("server", &args.server, "not HOST:PORT")
        })?,
    };
    let config = agent::AgentConfig {
        server_address: args.server,
        server_name,
        tls: tls::AgentFiles {
            ca: args.ca_cert,
            cert: args.cert,
            key: args.key,
        },
        agent_id: args.agent_id.unwrap_or_else(this_host),
        identifiers: identifiers(args.node_name, args.node_ip),
        dial_timeout: Duration::from_secs(args.dial_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        health_address: args.health_address,
    };
    run_until_signal(agent::run(config))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_server_name_is_the_host_of_the_address() {
        assert_eq!(super::host_of("10.0.0.5:8132").as_deref(), Some("10.0.0.5"));
        assert_eq!(super::host_of("[fd00::5]:8132").as_deref(), Some("fd00::5"));
        assert_eq!(
            super::host_of("api.example.com:8132").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(super::host_of("api.example.com"), None);
        assert_eq!(super::host_of(":8132"), None);
    }
}
