//! The part of etcd's v3 gRPC API a backup needs, spoken with tonic over
//! mutual TLS: `Maintenance.Status` and `Maintenance.Snapshot`. The messages
//! are written by hand with prost's derive, field numbers as in etcd's
//! `api/etcdserverpb/rpc.proto`, so the build needs no protoc (as the
//! tunnel's messages).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use tonic::codec::Streaming;
use tonic_prost::ProstCodec;

use crate::Error;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(int64, tag = "3")]
    pub db_size: i64,
    #[prost(uint64, tag = "4")]
    pub leader: u64,
    #[prost(string, repeated, tag = "8")]
    pub errors: Vec<String>,
    #[prost(int64, tag = "9")]
    pub db_size_in_use: i64,
    #[prost(bool, tag = "10")]
    pub is_learner: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(uint64, tag = "2")]
    pub remaining_bytes: u64,
    #[prost(bytes = "bytes", tag = "3")]
    pub blob: bytes::Bytes,
    /// The storage version (etcd 3.6 and later), in the first message.
    #[prost(string, tag = "4")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DefragmentRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DefragmentResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// `AlarmRequest.AlarmAction`: GET = 0, ACTIVATE = 1, DEACTIVATE = 2.
pub const ALARM_GET: i32 = 0;
pub const ALARM_DEACTIVATE: i32 = 2;
/// `AlarmType`: NONE = 0, NOSPACE = 1, CORRUPT = 2.
pub const ALARM_NOSPACE: i32 = 1;

#[derive(Clone, PartialEq, prost::Message)]
pub struct AlarmRequest {
    #[prost(int32, tag = "1")]
    pub action: i32,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int32, tag = "3")]
    pub alarm: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AlarmMember {
    #[prost(uint64, tag = "1")]
    pub member_id: u64,
    #[prost(int32, tag = "2")]
    pub alarm: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AlarmResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub alarms: Vec<AlarmMember>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CompactionRequest {
    #[prost(int64, tag = "1")]
    pub revision: i64,
    #[prost(bool, tag = "2")]
    pub physical: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CompactionResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// The client's files: the tenant's etcd CA and a client pair it signed.
#[derive(Debug, Clone)]
pub struct ClientFiles<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// A connection to one etcd member.
pub struct Member {
    endpoint: String,
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

/// Snapshots are large: etcd sends 32 KiB blobs, but allow headroom.
const MAX_MESSAGE: usize = 16 << 20;

impl Member {
    /// Connects to `endpoint` (`https://host:port`) and checks it answers.
    pub async fn connect(endpoint: &str, files: &ClientFiles<'_>) -> Result<Self, Error> {
        let fail = |message: String| Error::Etcd {
            endpoint: endpoint.to_string(),
            message,
        };
        let url: http::Uri = endpoint
            .parse()
            .map_err(|_| Error::input("--etcd", format!("{endpoint:?} is not a URL")))?;
        if url.scheme_str() != Some("https") {
            return Err(Error::input(
                "--etcd",
                format!("{endpoint:?} is not https://host:port (etcd's clients use TLS)"),
            ));
        }
        let authority = url
            .authority()
            .ok_or_else(|| Error::input("--etcd", format!("{endpoint:?} has no host")))?;
        let address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(2379)
        );
        let host = authority.host().trim_matches(['[', ']']).to_string();
        let name = ServerName::try_from(host)
            .map_err(|_| Error::input("--etcd", format!("{endpoint:?} has no usable host")))?;
        let tls = client_config(files)?;
        let connector = tower::service_fn(move |_: http::Uri| {
            let (address, name, tls) = (address.clone(), name.clone(), tls.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&address).await?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        let channel = tonic::transport::Endpoint::from_static("http://etcd")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector(connector)
            .await
            .map_err(|e| fail(describe(&e)))?;
        Ok(Member {
            endpoint: endpoint.to_string(),
            grpc: tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn status(&mut self) -> Result<StatusResponse, Error> {
        self.unary("/etcdserverpb.Maintenance/Status", StatusRequest {})
            .await
    }

    /// Opens the snapshot stream: the database, then its SHA-256.
    pub async fn snapshot(&mut self) -> Result<Streaming<SnapshotResponse>, Error> {
        self.ready().await?;
        let path = http::uri::PathAndQuery::from_static("/etcdserverpb.Maintenance/Snapshot");
        let response = self
            .grpc
            .server_streaming(
                tonic::Request::new(SnapshotRequest {}),
                path,
                ProstCodec::<SnapshotRequest, SnapshotResponse>::default(),
            )
            .await
            .map_err(|s| self.refused(&s))?;
        Ok(response.into_inner())
    }

    /// Defragments this member: it stops serving while it rewrites its
    /// database (seconds for a large one).
    pub async fn defragment(&mut self) -> Result<(), Error> {
        self.unary::<DefragmentRequest, DefragmentResponse>(
            "/etcdserverpb.Maintenance/Defragment",
            DefragmentRequest {},
        )
        .await
        .map(drop)
    }

    /// The cluster's alarms, or with `ALARM_DEACTIVATE` one disarmed.
    pub async fn alarm(&mut self, request: AlarmRequest) -> Result<AlarmResponse, Error> {
        self.unary("/etcdserverpb.Maintenance/Alarm", request).await
    }

    /// Compacts the keyspace up to `revision`, waiting until it is applied.
    pub async fn compact(&mut self, revision: i64) -> Result<(), Error> {
        self.unary::<CompactionRequest, CompactionResponse>(
            "/etcdserverpb.KV/Compact",
            CompactionRequest {
                revision,
                physical: true,
            },
        )
        .await
        .map(drop)
    }

    async fn unary<Q, R>(&mut self, path: &'static str, request: Q) -> Result<R, Error>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.ready().await?;
        let path = http::uri::PathAndQuery::from_static(path);
        let response = self
            .grpc
            .unary(
                tonic::Request::new(request),
                path,
                ProstCodec::<Q, R>::default(),
            )
            .await
            .map_err(|s| self.refused(&s))?;
        Ok(response.into_inner())
    }

    async fn ready(&mut self) -> Result<(), Error> {
        self.grpc.ready().await.map_err(|e| Error::Etcd {
            endpoint: self.endpoint.clone(),
            message: describe(&e),
        })
    }

    pub fn refused(&self, status: &tonic::Status) -> Error {
        Error::Etcd {
            endpoint: self.endpoint.clone(),
            message: format!("{:?}: {}", status.code(), status.message()),
        }
    }
}

/// An error and its causes on one line (tonic's own Display is terse).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // hyper and tonic often repeat their cause's words.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn client_config(files: &ClientFiles<'_>) -> Result<Arc<rustls::ClientConfig>, Error> {
    // Never the parser's message for a key: it could quote the key's bytes.
    let key = PrivateKeyDer::from_pem_file(files.key)
        .map_err(|_| Error::file(files.key, "no PEM private key"))?;
    let mut config = crate::tls::client_builder(crate::tls::roots_from(files.ca)?)
        .with_client_auth_cert(crate::tls::certificates(files.cert)?, key)
        .map_err(|e| Error::file(files.cert, format!("does not go with its key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
