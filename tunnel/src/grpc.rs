//! The two gRPC services as tower services, written by hand (what
//! tonic-build would generate for one bidirectional stream each), and the
//! agent's call.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tonic::body::Body;
use tonic::codec::Streaming;
use tonic::server::StreamingService;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::proto::Packet;

/// The packets one side sends on a stream.
pub type PacketStream = Pin<Box<dyn Stream<Item = Result<Packet, Status>> + Send>>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Largest packet accepted, encoded. Upstream's agent reads 32 KiB at a
/// time and kube-apiserver writes what it is given; 4 MiB is gRPC's default.
pub const MAX_PACKET: usize = 4 * 1024 * 1024;

/// What a service does with one stream: answers with the packets to send.
pub trait StreamHandler: Clone + Send + 'static {
    fn handle(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> impl Future<Output = Result<Response<PacketStream>, Status>> + Send + 'static;
}

/// A tower service that answers one gRPC path with a [`StreamHandler`];
/// every other path is `UNIMPLEMENTED`.
#[derive(Clone)]
pub struct OneStreamService<H> {
    path: &'static str,
    handler: H,
}

impl<H: StreamHandler> OneStreamService<H> {
    pub fn new(path: &'static str, handler: H) -> Self {
        OneStreamService { path, handler }
    }
}

struct Adapter<H>(H);

impl<H: StreamHandler> StreamingService<Packet> for Adapter<H> {
    type Response = Packet;
    type ResponseStream = PacketStream;
    type Future = BoxFuture<Result<Response<PacketStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<Packet>>) -> Self::Future {
        Box::pin(self.0.handle(request))
    }
}

impl<H: StreamHandler> tower::Service<http::Request<Body>> for OneStreamService<H> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != self.path {
            let path = request.uri().path().to_string();
            return Box::pin(async move {
                Ok(Status::unimplemented(format!("no service at {path}")).into_http())
            });
        }
        let handler = self.handler.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Packet, Packet>::default())
                .max_decoding_message_size(MAX_PACKET);
            Ok(grpc.streaming(Adapter(handler), request).await)
        })
    }
}

/// Opens the agent's stream on `channel`: the request carries `outbound`
/// and the agent's ID; the answer carries the server's packets and metadata.
pub async fn open_agent_stream(
    channel: tonic::transport::Channel,
    agent_id: &str,
    identifiers: &str,
    outbound: impl Stream<Item = Packet> + Send + 'static,
) -> Result<Response<Streaming<Packet>>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_PACKET);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("the server is not reachable: {e}")))?;
    let mut request = Request::new(outbound);
    let id = agent_id
        .parse()
        .map_err(|_| Status::invalid_argument("the agent ID is not a valid header value"))?;
    request
        .metadata_mut()
        .insert(crate::proto::HEADER_AGENT_ID, id);
    if let Ok(value) = identifiers.parse() {
        if !identifiers.is_empty() {
            request
                .metadata_mut()
                .insert(crate::proto::HEADER_AGENT_IDENTIFIERS, value);
        }
    }
    grpc.streaming(
        request,
        http::uri::PathAndQuery::from_static(crate::proto::AGENT_PATH),
        ProstCodec::<Packet, Packet>::default(),
    )
    .await
}
