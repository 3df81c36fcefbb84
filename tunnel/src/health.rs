//! `/healthz`, `/readyz` and `/metrics` on plain HTTP/1.1 (hyper), for
//! whatever [`Report`]s them: the server (`server.rs`) and the agent
//! (`agent.rs`) say what ready means for each.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::Error;

/// What a process reports on its health port.
pub trait Report: Send + Sync + 'static {
    /// `/readyz`: `Err(why)` while not ready.
    fn ready(&self) -> Result<(), String>;
    /// `/metrics`, in Prometheus' text format.
    fn metrics(&self) -> String;
}

/// One gauge or counter in Prometheus' text format.
pub fn metric(kind: &str, name: &str, help: &str, value: u64) -> String {
    format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n")
}

fn answer(report: &dyn Report, path: &str) -> (StatusCode, String) {
    match path {
        "/healthz" => (StatusCode::OK, "ok\n".into()),
        "/readyz" => match report.ready() {
            Ok(()) => (StatusCode::OK, "ok\n".into()),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        "/metrics" => (StatusCode::OK, report.metrics()),
        _ => (StatusCode::NOT_FOUND, format!("no such path: {path}\n")),
    }
}

pub async fn serve(listener: TcpListener, report: Arc<dyn Report>) -> Result<(), Error> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accepting a health connection: {e}");
                continue;
            }
        };
        let report = report.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (status, body) = answer(report.as_ref(), request.uri().path());
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
