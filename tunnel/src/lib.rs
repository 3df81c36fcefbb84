//! The konnectivity tunnel: how a tenant's kube-apiserver, running in the
//! service cluster, reaches the tenant's own networks (kubelets, webhooks,
//! aggregated APIs) when nothing routes there.
//!
//! - [`server`]: beside each apiserver replica. The apiserver dials through
//!   it over a Unix socket (its `--egress-selector-config-file`); agents
//!   connect to it from the tenant's network over mutual TLS.
//! - [`agent`]: in the tenant cluster. It dials out to every server and
//!   carries their dials to the addresses the apiserver asked for.
//!
//! The wire protocol is upstream's (`sigs.k8s.io/apiserver-network-proxy`):
//! the same gRPC services and packets ([`proto`]), so an upstream
//! `proxy-agent` can serve a gantry server and the reverse. What differs is
//! written in docs/architecture.md ("The konnectivity tunnel").

pub mod agent;
pub mod grpc;
pub mod health;
pub mod hub;
pub mod proto;
pub mod server;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;

/// Packets queued for one stream before its sender waits.
pub const STREAM_BUFFER: usize = 64;
/// How long a packet may wait for room on the receiving stream before the
/// connection it belongs to is given up (upstream's read timeout is 10 s).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `address`; `[::]:PORT` falls back to `0.0.0.0:PORT` on a host
/// without IPv6 (a pod network of one family).
pub async fn bind(address: &str) -> Result<TcpListener, Error> {
    match TcpListener::bind(address).await {
        Ok(listener) => Ok(listener),
        Err(e) => match address.strip_prefix("[::]:") {
            Some(port) => TcpListener::bind(format!("0.0.0.0:{port}"))
                .await
                .map_err(|_| Error::Bind(address.to_string(), e)),
            None => Err(Error::Bind(address.to_string(), e)),
        },
    }
}

/// Why the server or the agent could not start or serve. Never carries key
/// material: a key file that does not parse is named, its content is not.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Pem(PathBuf, String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("cannot make the socket {0}: {1}")]
    Socket(PathBuf, std::io::Error),
    #[error("serving {0}")]
    Serve(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
}
