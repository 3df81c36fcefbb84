//! `gantry konnectivity-server`: runs beside one kube-apiserver. The
//! apiserver's dials arrive on a Unix socket (its `EgressSelectorConfiguration`
//! names it; nothing on the network can ask for a dial); agents connect
//! from the tenant's network over mutual TLS and carry the dials.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::grpc::{OneStreamService, PacketStream, StreamHandler};
use crate::health::{self, Report, metric};
use crate::hub::{Delivery, DialRoute, Hub, StreamId};
use crate::proto::{self, Frame, Packet};
use crate::tls;
use crate::{Error, SEND_TIMEOUT, STREAM_BUFFER, bind};

pub struct ServerConfig {
    /// The Unix socket the apiserver dials through.
    pub uds_path: PathBuf,
    /// Where agents connect (host:port).
    pub agent_address: String,
    pub tls: tls::ServerFiles,
    /// The common name an agent's client certificate must carry.
    pub agent_common_name: String,
    pub server_id: String,
    /// How many servers there are (the apiserver's replicas): each agent
    /// keeps one stream to each.
    pub server_count: u32,
    /// /healthz, /readyz and /metrics, on plain HTTP (host:port).
    pub health_address: String,
}

#[derive(Clone)]
struct Frontends {
    hub: Arc<Hub>,
}

#[derive(Clone)]
struct Agents {
    hub: Arc<Hub>,
    server_id: String,
    server_count: u32,
}

/// Runs until the process is stopped; an error only if it cannot start.
pub async fn run(config: ServerConfig) -> Result<(), Error> {
    let hub = Arc::new(Hub::default());
    let tls = tls::server_config(&config.tls)?;
    let uds = bind_socket(&config.uds_path)?;
    let agents = bind(&config.agent_address).await?;
    let health = bind(&config.health_address).await?;
    tracing::info!(
        server_id = %config.server_id,
        server_count = config.server_count,
        socket = %config.uds_path.display(),
        agents = %config.agent_address,
        "konnectivity server started"
    );
    let frontend_service = OneStreamService::new(proto::PROXY_PATH, Frontends { hub: hub.clone() });
    let agent_service = OneStreamService::new(
        proto::AGENT_PATH,
        Agents {
            hub: hub.clone(),
            server_id: config.server_id.clone(),
            server_count: config.server_count,
        },
    );
    let frontends = tonic::transport::Server::builder().serve_with_incoming(
        frontend_service,
        tokio_stream::wrappers::UnixListenerStream::new(uds),
    );
    let incoming = tls::accept_agents(agents, tls, config.agent_common_name.clone());
    let agents = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .serve_with_incoming(agent_service, incoming);
    let health = health::serve(health, Arc::new(ServerReport(hub)));
    tokio::select! {
        result = frontends => result.map_err(|e| Error::Serve(format!("the apiserver socket: {e}"))),
        result = agents => result.map_err(|e| Error::Serve(format!("the agent port: {e}"))),
        result = health => result,
    }
}

/// The server's health: ready as soon as it listens (an apiserver pod must
/// not turn unready because no agent has connected yet: a new tenant has no
/// workers); its routes as metrics.
struct ServerReport(Arc<Hub>);

impl Report for ServerReport {
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    fn metrics(&self) -> String {
        let c = self.0.counts();
        [
            metric(
                "gauge",
                "konnectivity_server_agent_streams",
                "Agent streams connected.",
                c.agents as u64,
            ),
            metric(
                "gauge",
                "konnectivity_server_frontend_streams",
                "Apiserver streams open.",
                c.frontends as u64,
            ),
            metric(
                "gauge",
                "konnectivity_server_pending_dials",
                "Dials sent to an agent and not answered.",
                c.pending_dials as u64,
            ),
            metric(
                "gauge",
                "konnectivity_server_connections",
                "Connections open through agents.",
                c.connections as u64,
            ),
        ]
        .concat()
    }
}

/// Binds the apiserver's socket, replacing a stale one a previous run left
/// (a socket only: any other file there is refused). Only the owner may
/// connect: the apiserver runs as the same user in the same pod.
fn bind_socket(path: &std::path::Path) -> Result<UnixListener, Error> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(Error::Socket(
                path.to_path_buf(),
                std::io::Error::other("a file that is not a socket is in the way"),
            ));
        }
        std::fs::remove_file(path).map_err(|e| Error::Socket(path.to_path_buf(), e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| Error::Socket(path.to_path_buf(), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::Socket(path.to_path_buf(), e))?;
    Ok(listener)
}

/// Sends what the hub decided, waiting at most [`SEND_TIMEOUT`] for room.
/// `false`: the receiver is gone or stuck.
pub(crate) async fn deliver(delivery: Delivery) -> bool {
    match delivery {
        Delivery::Agent(tx, packet) => {
            matches!(
                tokio::time::timeout(SEND_TIMEOUT, tx.send(packet)).await,
                Ok(Ok(()))
            )
        }
        Delivery::Frontend(tx, packet) => {
            matches!(
                tokio::time::timeout(SEND_TIMEOUT, tx.send(Ok(packet))).await,
                Ok(Ok(()))
            )
        }
    }
}

impl StreamHandler for Frontends {
    fn handle(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> impl Future<Output = Result<Response<PacketStream>, Status>> + Send + 'static {
        let hub = self.hub.clone();
        async move {
            let inbound = request.into_inner();
            let (tx, rx) = mpsc::channel(STREAM_BUFFER);
            let id = hub.add_frontend();
            tokio::spawn(serve_frontend(hub, id, inbound, tx));
            Ok(Response::new(
                Box::pin(ReceiverStream::new(rx)) as PacketStream
            ))
        }
    }
}

async fn serve_frontend(
    hub: Arc<Hub>,
    id: StreamId,
    mut inbound: Streaming<Packet>,
    tx: crate::hub::FrontendTx,
) {
    while let Some(next) = inbound.next().await {
        let frame = match next
            .map_err(|e| e.to_string())
            .and_then(|p| Frame::try_from(p).map_err(|e| e.to_string()))
        {
            Ok(frame) => frame,
            Err(why) => {
                tracing::warn!(frontend = id, "ended an apiserver stream: {why}");
                break;
            }
        };
        match frame {
            Frame::DialRequest(ref dial) => {
                let address = dial.address.clone();
                match hub.dial(id, &tx, frame) {
                    DialRoute::ToAgent(agent, packet) => {
                        tracing::debug!(frontend = id, %address, "dial");
                        if !deliver(Delivery::Agent(agent, packet)).await {
                            tracing::warn!(frontend = id, "an agent did not take a dial");
                        }
                    }
                    DialRoute::Refused(answer) => {
                        tracing::info!(frontend = id, %address, "dial refused: {answer:?}");
                        let _ = tx.send(Ok(answer.into())).await;
                    }
                }
            }
            Frame::Data(_) | Frame::CloseRequest(_) | Frame::CloseDial(_) => {
                let connect_id = match &frame {
                    Frame::Data(d) => Some(d.connect_id),
                    _ => None,
                };
                if let Some(delivery) = hub.from_frontend(id, frame) {
                    if !deliver(delivery).await {
                        // The agent does not take data: never drop bytes
                        // silently, end the connection for both sides.
                        tracing::warn!(
                            frontend = id,
                            ?connect_id,
                            "an agent did not take data for {SEND_TIMEOUT:?}; closing the connection"
                        );
                        if let Some(c) = connect_id {
                            for delivery in hub.fail_connection(id, c) {
                                deliver(delivery).await;
                            }
                        }
                    }
                }
            }
            other => {
                tracing::warn!(
                    frontend = id,
                    "ended an apiserver stream: it sent {other:?}"
                );
                break;
            }
        }
    }
    for delivery in hub.remove_frontend(id) {
        deliver(delivery).await;
    }
}

impl StreamHandler for Agents {
    fn handle(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> impl Future<Output = Result<Response<PacketStream>, Status>> + Send + 'static {
        let hub = self.hub.clone();
        let server_id = self.server_id.clone();
        let server_count = self.server_count;
        async move {
            let peer = request
                .extensions()
                .get::<tls::AgentIdentity>()
                .cloned()
                .ok_or_else(|| Status::unauthenticated("no verified client certificate"))?;
            let agent_id = request
                .metadata()
                .get(proto::HEADER_AGENT_ID)
                .and_then(|v| v.to_str().ok())
                .filter(|v| valid_agent_id(v))
                .ok_or_else(|| Status::invalid_argument("agentID: missing or not a DNS-like name"))?
                .to_string();
            let identifiers = request
                .metadata()
                .get(proto::HEADER_AGENT_IDENTIFIERS)
                .and_then(|v| v.to_str().ok())
                .map(proto::decode_identifiers)
                .unwrap_or_default();
            let inbound = request.into_inner();
            let (agent_tx, agent_rx) = mpsc::channel::<Packet>(STREAM_BUFFER);
            let id = hub.add_agent(&agent_id, identifiers, agent_tx);
            tracing::info!(agent = %agent_id, peer = %peer.address, stream = id, "agent connected");
            tokio::spawn(serve_agent(hub, id, agent_id, inbound));
            let mut response =
                Response::new(Box::pin(ReceiverStream::new(agent_rx).map(Ok)) as PacketStream);
            let metadata = response.metadata_mut();
            if let Ok(value) = MetadataValue::try_from(server_id.as_str()) {
                metadata.insert(proto::HEADER_SERVER_ID, value);
            }
            metadata.insert(
                proto::HEADER_SERVER_COUNT,
                MetadataValue::from(server_count),
            );
            Ok(response)
        }
    }
}

async fn serve_agent(
    hub: Arc<Hub>,
    id: StreamId,
    agent_id: String,
    mut inbound: Streaming<Packet>,
) {
    let why = loop {
        let Some(next) = inbound.next().await else {
            break "its stream ended".to_string();
        };
        let frame = match next
            .map_err(|e| e.to_string())
            .and_then(|p| Frame::try_from(p).map_err(|e| e.to_string()))
        {
            Ok(frame) => frame,
            Err(why) => break why,
        };
        let connect_id = match &frame {
            Frame::Data(d) => Some(d.connect_id),
            _ => None,
        };
        if let Some(delivery) = hub.from_agent(id, frame) {
            if !deliver(delivery).await {
                tracing::warn!(agent = %agent_id, ?connect_id, "an apiserver stream did not take data for {SEND_TIMEOUT:?}; closing the connection");
                // The frontend is gone or does not read: close that one
                // connection, keep the agent's stream for the others.
                if let Some(close) = connect_id.and_then(|c| hub.abandon_connection(id, c)) {
                    deliver(close).await;
                }
            }
        }
    };
    tracing::info!(agent = %agent_id, stream = id, "agent disconnected: {why}");
    for delivery in hub.remove_agent(id) {
        deliver(delivery).await;
    }
}

/// An agent ID as upstream's agents send them (a node or pod name, a UUID).
fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn agent_ids_are_names() {
        assert!(super::valid_agent_id("worker-0"));
        assert!(super::valid_agent_id(
            "7d3c1f2a-1b2c-4d5e-8f90-0123456789ab"
        ));
        assert!(!super::valid_agent_id(""));
        assert!(!super::valid_agent_id("a b"));
        assert!(!super::valid_agent_id(&"a".repeat(254)));
    }
}
