//! `gantry konnectivity-agent`: runs in the tenant cluster, dials the
//! servers (outbound, through the tenant's endpoint) and carries their dials
//! on the tenant's network. It keeps one stream to each server: a server
//! says how many there are, and the agent dials again (the endpoint's load
//! balancing picks a server) until it holds a stream to that many distinct
//! server IDs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::health::{self, Report, metric};
use crate::proto::{self, Frame, Packet};
use crate::{Error, SEND_TIMEOUT, STREAM_BUFFER, tls};

/// How much of a connection is read into one DATA packet (as upstream).
const READ_CHUNK: usize = 32 * 1024;
/// Data packets queued for one connection before the agent's stream waits.
const CONNECTION_BUFFER: usize = 16;

pub struct AgentConfig {
    /// The server's address as the tenant's network reaches it (host:port).
    pub server_address: String,
    /// The name the server's certificate must carry.
    pub server_name: String,
    pub tls: tls::AgentFiles,
    pub agent_id: String,
    /// What this agent is the best route to (its node's name and
    /// addresses), sent as upstream's agent identifiers.
    pub identifiers: Vec<(&'static str, String)>,
    pub dial_timeout: Duration,
    /// A connection with no data either way for this long is closed.
    pub idle_timeout: Duration,
    pub health_address: String,
}

/// What the agent holds, for /readyz and /metrics.
#[derive(Default)]
pub struct AgentState {
    pub sessions: AtomicU64,
    pub connections: AtomicU64,
    pub dials: AtomicU64,
    pub failed_dials: AtomicU64,
}

pub async fn run(config: AgentConfig) -> Result<(), Error> {
    // Refuse bad files at start, with the file named; later they are read
    // again at every connect.
    tls::client_config(&config.tls)?;
    let state = Arc::new(AgentState::default());
    let health_listener = crate::bind(&config.health_address).await?;
    let health = health::serve(health_listener, state.clone());
    tokio::select! {
        result = health => result,
        () = keep_sessions(Arc::new(config), state) => Ok(()),
    }
}

impl Report for AgentState {
    /// Ready while it holds a stream to a server.
    fn ready(&self) -> Result<(), String> {
        match self.sessions.load(Ordering::Relaxed) {
            0 => Err("no stream to a server".into()),
            _ => Ok(()),
        }
    }

    fn metrics(&self) -> String {
        let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
        [
            metric(
                "gauge",
                "konnectivity_agent_server_streams",
                "Streams held to servers.",
                load(&self.sessions),
            ),
            metric(
                "gauge",
                "konnectivity_agent_connections",
                "Connections open to targets.",
                load(&self.connections),
            ),
            metric(
                "counter",
                "konnectivity_agent_dials_total",
                "Dials asked for.",
                load(&self.dials),
            ),
            metric(
                "counter",
                "konnectivity_agent_failed_dials_total",
                "Dials that failed.",
                load(&self.failed_dials),
            ),
        ]
        .concat()
    }
}

/// Dials until it holds one stream to each server, then checks every few
/// seconds; backs off (1 s doubling to 30 s) while dials fail.
async fn keep_sessions(config: Arc<AgentConfig>, state: Arc<AgentState>) {
    let mut sessions: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut server_count: usize = 1;
    let mut backoff = Duration::from_secs(1);
    // A session that ends says so here, so the agent dials again at once.
    let (ended_tx, mut ended) = mpsc::channel::<()>(8);
    loop {
        sessions.retain(|_, task| !task.is_finished());
        state
            .sessions
            .store(sessions.len() as u64, Ordering::Relaxed);
        if sessions.len() >= server_count {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = ended.recv() => {}
            }
            continue;
        }
        match open_session(&config).await {
            Ok(session) => {
                server_count = session.server_count.max(1);
                if sessions.contains_key(&session.server_id) {
                    // The endpoint sent us to a server we hold already.
                    tracing::debug!(server = %session.server_id, "already connected; dialing again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                tracing::info!(
                    server = %session.server_id,
                    servers = server_count,
                    "connected to a konnectivity server"
                );
                backoff = Duration::from_secs(1);
                let id = session.server_id.clone();
                let (config, state, ended) = (config.clone(), state.clone(), ended_tx.clone());
                let task = tokio::spawn(async move {
                    serve_session(config, state, session).await;
                    let _ = ended.send(()).await;
                });
                sessions.insert(id, task);
            }
            Err(e) => {
                tracing::warn!(server = %config.server_address, "cannot connect to the konnectivity server: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

struct Session {
    server_id: String,
    server_count: usize,
    inbound: tonic::codec::Streaming<Packet>,
    outbound: mpsc::Sender<Packet>,
}

async fn open_session(config: &AgentConfig) -> Result<Session, Error> {
    let tls = tls::client_config(&config.tls)?;
    let address = config.server_address.clone();
    let server_name = config.server_name.clone();
    let connector = tower::service_fn(move |_: http::Uri| {
        let (address, server_name, tls) = (address.clone(), server_name.clone(), tls.clone());
        async move {
            tls::connect(&address, &server_name, tls)
                .await
                .map(TokioIo::new)
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://konnectivity-server")
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_with_connector(connector)
        .await
        .map_err(|e| Error::Connect(config.server_address.clone(), describe(&e)))?;
    let (outbound, rx) = mpsc::channel(STREAM_BUFFER);
    let pairs: Vec<(&str, &str)> = config
        .identifiers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let identifiers = proto::encode_identifiers(&pairs);
    let response = crate::grpc::open_agent_stream(
        channel,
        &config.agent_id,
        &identifiers,
        ReceiverStream::new(rx),
    )
    .await
    .map_err(|e| Error::Connect(config.server_address.clone(), e.message().to_string()))?;
    let header = |name: &str| {
        response
            .metadata()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let server_id = header(proto::HEADER_SERVER_ID).unwrap_or_default();
    let server_count = header(proto::HEADER_SERVER_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    Ok(Session {
        server_id,
        server_count,
        inbound: response.into_inner(),
        outbound,
    })
}

/// The whole chain of an error, for a log line.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One open connection of a session.
struct Connection {
    to_target: mpsc::Sender<Bytes>,
    reader: tokio::task::AbortHandle,
}

/// What the connection tasks tell their session.
enum Event {
    Dialed {
        random: i64,
        result: std::io::Result<TcpStream>,
    },
    Closed {
        connect_id: i64,
        why: String,
    },
}

/// Carries one server's dials until its stream ends; then every connection
/// it carried is closed.
async fn serve_session(config: Arc<AgentConfig>, state: Arc<AgentState>, mut session: Session) {
    let (events_tx, mut events) = mpsc::channel::<Event>(STREAM_BUFFER);
    let mut dialing: HashSet<i64> = HashSet::new();
    let mut conns: HashMap<i64, Connection> = HashMap::new();
    let mut next_connect_id: i64 = 0;
    let out = session.outbound.clone();
    let why = loop {
        tokio::select! {
            packet = session.inbound.next() => {
                let frame = match packet {
                    None => break "the server ended the stream".to_string(),
                    Some(Err(status)) => break format!("the stream failed: {}", status.message()),
                    Some(Ok(packet)) => match Frame::try_from(packet) {
                        Ok(frame) => frame,
                        Err(e) => break e.to_string(),
                    },
                };
                match frame {
                    Frame::DialRequest(dial) => {
                        state.dials.fetch_add(1, Ordering::Relaxed);
                        if !dialing.insert(dial.random) {
                            send(&out, Frame::dial_failed(dial.random, "this dial is already in progress")).await;
                            continue;
                        }
                        let events = events_tx.clone();
                        let limit = config.dial_timeout;
                        tokio::spawn(async move {
                            let result = match tokio::time::timeout(limit, TcpStream::connect(&dial.address)).await {
                                Ok(result) => result,
                                Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {limit:?}"))),
                            };
                            let _ = events.send(Event::Dialed { random: dial.random, result }).await;
                        });
                    }
                    Frame::CloseDial(cls) => {
                        dialing.remove(&cls.random);
                    }
                    Frame::Data(data) => {
                        let Some(conn) = conns.get(&data.connect_id) else {
                            send(&out, Frame::close_response(data.connect_id, "unknown connection")).await;
                            continue;
                        };
                        let sent = tokio::time::timeout(SEND_TIMEOUT, conn.to_target.send(data.data)).await;
                        if !matches!(sent, Ok(Ok(()))) {
                            close(&mut conns, &state, data.connect_id);
                            send(&out, Frame::close_response(data.connect_id, "the target does not read")).await;
                        }
                    }
                    Frame::CloseRequest(req) => {
                        close(&mut conns, &state, req.connect_id);
                        send(&out, Frame::close_response(req.connect_id, "")).await;
                    }
                    other => break format!("the server sent {other:?}"),
                }
            }
            Some(event) = events.recv() => match event {
                Event::Dialed { random, result } => {
                    if !dialing.remove(&random) {
                        continue; // cancelled meanwhile: the socket drops here
                    }
                    match result {
                        Err(e) => {
                            state.failed_dials.fetch_add(1, Ordering::Relaxed);
                            send(&out, Frame::dial_failed(random, e.to_string())).await;
                        }
                        Ok(stream) => {
                            next_connect_id += 1;
                            let connect_id = next_connect_id;
                            // The answer goes first: the target may speak
                            // first, and its data must follow the answer.
                            send(&out, Frame::DialResponse(proto::DialResponse { error: String::new(), connect_id, random })).await;
                            let conn = start_connection(connect_id, stream, out.clone(), events_tx.clone(), config.idle_timeout);
                            conns.insert(connect_id, conn);
                            state.connections.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Event::Closed { connect_id, why } => {
                    if conns.contains_key(&connect_id) {
                        close(&mut conns, &state, connect_id);
                        send(&out, Frame::close_response(connect_id, why)).await;
                    }
                }
            },
        }
    };
    tracing::info!(server = %session.server_id, "konnectivity stream closed: {why}");
    let open: Vec<i64> = conns.keys().copied().collect();
    for connect_id in open {
        close(&mut conns, &state, connect_id);
    }
}

fn close(conns: &mut HashMap<i64, Connection>, state: &AgentState, connect_id: i64) {
    if let Some(conn) = conns.remove(&connect_id) {
        conn.reader.abort();
        state.connections.fetch_sub(1, Ordering::Relaxed);
        // Dropping `to_target` ends the writer, which shuts the socket.
    }
}

/// Queues a packet for the server, waiting for room: the stream's flow
/// control is the back-pressure, and a dead connection is ended by HTTP/2's
/// keepalive, which ends the session.
async fn send(out: &mpsc::Sender<Packet>, frame: Frame) {
    let _ = out.send(frame.into()).await;
}

/// Two tasks per connection: the reader sends what the target says as DATA
/// packets (waiting when the stream is full: back-pressure reaches the
/// target's socket); the writer writes what the server sends.
fn start_connection(
    connect_id: i64,
    stream: TcpStream,
    out: mpsc::Sender<Packet>,
    events: mpsc::Sender<Event>,
    idle_timeout: Duration,
) -> Connection {
    let _ = stream.set_nodelay(true);
    let (mut read_half, mut write_half) = stream.into_split();
    let (to_target, mut from_server) = mpsc::channel::<Bytes>(CONNECTION_BUFFER);
    let started = Instant::now();
    let last_activity = Arc::new(AtomicU64::new(0));
    let touch = {
        let last = last_activity.clone();
        move || last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed)
    };
    let writer_touch = touch.clone();
    let writer_events = events.clone();
    tokio::spawn(async move {
        while let Some(data) = from_server.recv().await {
            writer_touch();
            if let Err(e) = write_half.write_all(&data).await {
                let why = format!("writing to the target: {e}");
                let _ = writer_events.send(Event::Closed { connect_id, why }).await;
                return;
            }
        }
        let _ = write_half.shutdown().await;
    });
    let reader = tokio::spawn(async move {
        let mut buffer = vec![0u8; READ_CHUNK];
        let why = loop {
            match tokio::time::timeout(idle_timeout, read_half.read(&mut buffer)).await {
                Err(_) => {
                    let idle = started.elapsed().as_millis() as u64
                        - last_activity.load(Ordering::Relaxed);
                    if idle >= idle_timeout.as_millis() as u64 {
                        break format!("idle for {idle_timeout:?}");
                    }
                }
                Ok(Ok(0)) => break String::new(),
                Ok(Ok(n)) => {
                    touch();
                    let packet = Frame::data(connect_id, Bytes::copy_from_slice(&buffer[..n]));
                    if out.send(packet.into()).await.is_err() {
                        return; // the session is gone
                    }
                }
                Ok(Err(e)) => break format!("reading from the target: {e}"),
            }
        };
        let _ = events.send(Event::Closed { connect_id, why }).await;
    });
    Connection {
        to_target,
        reader: reader.abort_handle(),
    }
}
