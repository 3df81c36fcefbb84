//! Mutual TLS between agents and the server. The server shows a certificate
//! of the tenant's CA (the apiserver's own serving certificate: same pod,
//! same names); an agent verifies it against that CA alone. An agent shows a
//! client certificate of the tenant's CA whose common name is the agent's;
//! anything else is refused at the handshake, and the refusal is logged.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use crate::Error;

/// The server's files: its certificate and key, and the CA agents' client
/// certificates must chain to.
#[derive(Clone, Debug)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub agent_ca: PathBuf,
}

/// The agent's files: the CA the server's certificate must chain to, and
/// the agent's client certificate and key. Read again at every connect, so
/// a renewed certificate is used without a restart.
#[derive(Clone, Debug)]
pub struct AgentFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Who connected, as the handshake proved it.
#[derive(Clone, Debug)]
pub struct AgentIdentity {
    pub address: SocketAddr,
    pub common_name: String,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Read(path.to_path_buf(), e))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let blocks =
        pem::parse_many(read(path)?).map_err(|e| Error::Pem(path.to_path_buf(), e.to_string()))?;
    let certs: Vec<_> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    if certs.is_empty() {
        return Err(Error::Pem(
            path.to_path_buf(),
            "no CERTIFICATE block".into(),
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let blocks = pem::parse_many(read(path)?)
        // Never the parser's message: it could quote the key's bytes.
        .map_err(|_| Error::Pem(path.to_path_buf(), "not PEM".into()))?;
    let block = blocks
        .into_iter()
        .find(|b| b.tag().ends_with("PRIVATE KEY"))
        .ok_or_else(|| Error::Pem(path.to_path_buf(), "no PRIVATE KEY block".into()))?;
    let der = match block.tag() {
        "PRIVATE KEY" => PrivateKeyDer::Pkcs8(block.into_contents().into()),
        "EC PRIVATE KEY" => PrivateKeyDer::Sec1(block.into_contents().into()),
        "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(block.into_contents().into()),
        _ => {
            return Err(Error::Pem(
                path.to_path_buf(),
                "an unknown private key type".into(),
            ));
        }
    };
    Ok(der)
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, Error> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store
            .add(cert)
            .map_err(|e| Error::Pem(path.to_path_buf(), format!("not a usable CA: {e}")))?;
    }
    Ok(Arc::new(store))
}

pub fn server_config(files: &ServerFiles) -> Result<Arc<rustls::ServerConfig>, Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&files.agent_ca)?, provider())
        .build()
        .map_err(|e| Error::Tls(format!("client verifier: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(&files.cert)?, private_key(&files.key)?)
        .map_err(|e| Error::Tls(format!("{}: {e}", files.cert.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

pub fn client_config(files: &AgentFiles) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(certificates(&files.cert)?, private_key(&files.key)?)
        .map_err(|e| Error::Tls(format!("{}: {e}", files.cert.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Dials the server and completes the handshake as `server_name`.
pub async fn connect(
    address: &str,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not a server name"))?;
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The common name of a DER certificate's subject.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// An agent's connection after the handshake and the name check.
pub struct AgentStream {
    inner: TlsStream<TcpStream>,
    identity: AgentIdentity,
}

/// Accepts agents: each handshake runs in its own task, so a slow or
/// hostile peer holds up no one; refusals are logged with the peer address.
pub fn accept_agents(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    common_name_wanted: String,
) -> impl Stream<Item = Result<AgentStream, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, address) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accepting an agent connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let wanted = common_name_wanted.clone();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
                let tls = match handshake.await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::warn!(peer = %address, "refused a connection on the agent port: TLS: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(peer = %address, "refused a connection on the agent port: no TLS handshake within 10 s");
                        return;
                    }
                };
                let name = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|cert| common_name(cert));
                match name {
                    Some(name) if name == wanted => {
                        let identity = AgentIdentity {
                            address,
                            common_name: name,
                        };
                        let _ = tx
                            .send(Ok(AgentStream {
                                inner: tls,
                                identity,
                            }))
                            .await;
                    }
                    other => {
                        tracing::warn!(
                            peer = %address,
                            "refused a connection on the agent port: client certificate CN={:?}, not {wanted:?}",
                            other.unwrap_or_default()
                        );
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

impl tonic::transport::server::Connected for AgentStream {
    type ConnectInfo = AgentIdentity;

    fn connect_info(&self) -> AgentIdentity {
        self.identity.clone()
    }
}

impl AsyncRead for AgentStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AgentStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
