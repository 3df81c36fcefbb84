//! SHA-256 digests as gantry prints them: the `kubeadm join
//! --discovery-token-ca-cert-hash` value, and the lowercase hex that the
//! renderer's checksum annotations and the operator's hashes share.

use sha2::{Digest, Sha256};

use crate::cert::CertInfo;
use crate::error::PkiError;

/// `bytes` as lowercase hex.
pub fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex of SHA-256 over `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    lower_hex(&Sha256::digest(data))
}

/// `sha256:` + lowercase hex of SHA-256 over a DER SubjectPublicKeyInfo.
pub fn spki_sha256(spki_der: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(spki_der))
}

/// The discovery hash of a PEM CA certificate (the whole certificate is not
/// hashed: only its public key, so a re-signed CA keeps its pin).
pub fn ca_cert_hash(ca_pem: &[u8]) -> Result<String, PkiError> {
    let info = CertInfo::from_pem(ca_pem)
        .map_err(|reason| PkiError::malformed("CA certificate", reason))?;
    Ok(spki_sha256(&info.spki_der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_lowercase_hex_of_the_digest() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(lower_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }
}
