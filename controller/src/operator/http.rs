//! The operator's two small HTTP endpoints: `/metrics` on `--metrics-addr`,
//! `/healthz` and `/readyz` on `--health-addr`. Plain HTTP/1.1 on hyper.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

/// An answer: status, content type, body.
pub type Reply = (StatusCode, &'static str, String);

/// Serves `route(path)` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    route: Arc<dyn Fn(&str) -> Reply + Send + Sync>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection");
                    continue;
                }
            },
        };
        let route = route.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (status, content_type, body) = route(request.uri().path());
                    let response = Response::builder()
                        .status(status)
                        .header("content-type", content_type)
                        .body(Full::new(Bytes::from(body)))
                        .expect("a valid response");
                    async move { Ok::<_, Infallible>(response) }
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "serving a connection");
            }
        });
    }
}

/// 404 for anything else.
pub fn not_found(path: &str) -> Reply {
    (
        StatusCode::NOT_FOUND,
        "text/plain",
        format!("no such path: {path}\n"),
    )
}
