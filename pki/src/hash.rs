//! The `kubeadm join --discovery-token-ca-cert-hash` value.

use sha2::{Digest, Sha256};

use crate::cert::CertInfo;
use crate::error::PkiError;

/// `sha256:` + lowercase hex of SHA-256 over a DER SubjectPublicKeyInfo.
pub fn spki_sha256(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The discovery hash of a PEM CA certificate (the whole certificate is not
/// hashed: only its public key, so a re-signed CA keeps its pin).
pub fn ca_cert_hash(ca_pem: &[u8]) -> Result<String, PkiError> {
    let info = CertInfo::from_pem(ca_pem)
        .map_err(|reason| PkiError::malformed("CA certificate", reason))?;
    Ok(spki_sha256(&info.spki_der))
}
