//! `/healthz`, `/readyz` and `/metrics` of the server and of the agent, on
//! plain HTTP/1.1 (hyper). The server is ready as soon as it listens: an
//! apiserver pod must not turn unready because no agent has connected yet
//! (a new tenant has no workers). The agent is ready when it holds a stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::Error;
use crate::agent::AgentState;
use crate::hub::Hub;

pub enum Source {
    Server(Arc<Hub>),
    Agent(Arc<AgentState>),
}

impl Source {
    fn answer(&self, path: &str) -> (StatusCode, String) {
        match (path, self) {
            ("/healthz", _) => (StatusCode::OK, "ok\n".into()),
            ("/readyz", Source::Server(_)) => (StatusCode::OK, "ok\n".into()),
            ("/readyz", Source::Agent(state)) => {
                if state.sessions.load(Ordering::Relaxed) > 0 {
                    (StatusCode::OK, "ok\n".into())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no stream to a server\n".into(),
                    )
                }
            }
            ("/metrics", source) => (StatusCode::OK, source.metrics()),
            _ => (StatusCode::NOT_FOUND, format!("no such path: {path}\n")),
        }
    }

    fn metrics(&self) -> String {
        let gauge = |name: &str, help: &str, value: u64| {
            format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n")
        };
        match self {
            Source::Server(hub) => {
                let c = hub.counts();
                [
                    gauge(
                        "konnectivity_server_agent_streams",
                        "Agent streams connected.",
                        c.agents as u64,
                    ),
                    gauge(
                        "konnectivity_server_frontend_streams",
                        "Apiserver streams open.",
                        c.frontends as u64,
                    ),
                    gauge(
                        "konnectivity_server_pending_dials",
                        "Dials sent to an agent and not answered.",
                        c.pending_dials as u64,
                    ),
                    gauge(
                        "konnectivity_server_connections",
                        "Connections open through agents.",
                        c.connections as u64,
                    ),
                ]
                .concat()
            }
            Source::Agent(state) => {
                let load = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
                [
                    gauge("konnectivity_agent_server_streams", "Streams held to servers.", load(&state.sessions)),
                    gauge("konnectivity_agent_connections", "Connections open to targets.", load(&state.connections)),
                    format!(
                        "# HELP konnectivity_agent_dials_total Dials asked for.\n# TYPE konnectivity_agent_dials_total counter\nkonnectivity_agent_dials_total {}\n",
                        load(&state.dials)
                    ),
                    format!(
                        "# HELP konnectivity_agent_failed_dials_total Dials that failed.\n# TYPE konnectivity_agent_failed_dials_total counter\nkonnectivity_agent_failed_dials_total {}\n",
                        load(&state.failed_dials)
                    ),
                ]
                .concat()
            }
        }
    }
}

pub async fn serve(listener: TcpListener, source: Source) -> Result<(), Error> {
    let source = Arc::new(source);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accepting a health connection: {e}");
                continue;
            }
        };
        let source = source.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (status, body) = source.answer(request.uri().path());
                    let response = Response::builder()
                        .status(status)
                        .header("content-type", "text/plain; version=0.0.4")
                        .body(Full::new(Bytes::from(body)))
                        .expect("a valid response");
                    async move { Ok::<_, Infallible>(response) }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
