//! The one way this crate reads PEM certificates and starts a TLS client
//! config: etcd's (mutual TLS) and the object store's (server only) differ
//! only in their roots and client certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::Error;

/// Every certificate in the PEM file at `path`; none is an error.
pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::file(path, format!("cannot read certificates: {e}")))?;
    if certs.is_empty() {
        return Err(Error::file(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The roots of the CA file at `path`; one that holds no usable CA is an error.
pub(crate) fn roots_from(path: &Path) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates(path)?);
    if added == 0 {
        return Err(Error::file(path, "holds no usable CA certificate"));
    }
    Ok(roots)
}

/// A client config builder with ring and TLS 1.2 and 1.3, trusting `roots`.
pub(crate) fn client_builder(
    roots: rustls::RootCertStore,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
}
