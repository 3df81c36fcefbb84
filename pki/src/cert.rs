//! Certificates and keys: making them (rcgen) and reading them back (x509-parser).

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name};

use crate::catalog::Usage;
use crate::spec::{KeyAlgorithm, San};

/// Certificates start a few minutes in the past so that a node whose clock is
/// slightly behind still accepts them.
const BACKDATE: Duration = Duration::minutes(5);

/// The facts of one certificate that gantry decides and reports on.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub sans: Vec<San>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    /// `None` for a key type gantry does not issue.
    pub key_algorithm: Option<KeyAlgorithm>,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

impl CertInfo {
    /// Reads the first certificate of a PEM text.
    pub fn from_pem(pem_bytes: &[u8]) -> Result<Self, String> {
        let block = pem::parse(pem_bytes).map_err(|e| format!("not PEM: {e}"))?;
        if block.tag() != "CERTIFICATE" {
            return Err(format!(
                "expected a CERTIFICATE PEM block, found {:?}",
                block.tag()
            ));
        }
        Self::from_der(block.contents())
    }

    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let attribute = |name: &X509Name, oid| -> Vec<String> {
            name.iter_by_oid(oid)
                .filter_map(|a| a.as_str().ok().map(str::to_string))
                .collect()
        };
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => sans.push(San::Dns(dns.to_string())),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            sans.push(San::Ip(ip));
                        }
                    }
                    _ => {}
                }
            }
        }
        let (server_auth, client_auth) = match cert.extended_key_usage() {
            Ok(Some(eku)) => (eku.value.server_auth, eku.value.client_auth),
            _ => (false, false),
        };
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        Ok(CertInfo {
            der: der.to_vec(),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            common_name: attribute(
                cert.subject(),
                &x509_parser::oid_registry::OID_X509_COMMON_NAME,
            )
            .into_iter()
            .next()
            .unwrap_or_default(),
            organizations: attribute(
                cert.subject(),
                &x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME,
            ),
            sans,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            is_ca,
            server_auth,
            client_auth,
            key_algorithm: key_algorithm(cert.public_key()),
            spki_der: cert.public_key().raw.to_vec(),
        })
    }

    /// Whether `issuer`'s key made this certificate's signature.
    pub fn is_signed_by(&self, issuer: &CertInfo) -> bool {
        let (Ok((_, cert)), Ok((_, ca))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&issuer.der),
        ) else {
            return false;
        };
        cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
    }

    pub fn usage(&self) -> Option<Usage> {
        match (self.server_auth, self.client_auth) {
            (true, true) => Some(Usage::ServerAndClient),
            (true, false) => Some(Usage::Server),
            (false, true) => Some(Usage::Client),
            (false, false) => None,
        }
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => Some(<[u8; 4]>::try_from(bytes).ok()?.into()),
        16 => Some(<[u8; 16]>::try_from(bytes).ok()?.into()),
        _ => None,
    }
}

fn key_algorithm(spki: &SubjectPublicKeyInfo) -> Option<KeyAlgorithm> {
    match spki.parsed().ok()? {
        x509_parser::public_key::PublicKey::RSA(rsa) => match rsa.key_size() {
            2048 => Some(KeyAlgorithm::Rsa2048),
            3072 => Some(KeyAlgorithm::Rsa3072),
            4096 => Some(KeyAlgorithm::Rsa4096),
            _ => None,
        },
        x509_parser::public_key::PublicKey::EC(_) => {
            let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            (curve == x509_parser::oid_registry::OID_EC_P256).then_some(KeyAlgorithm::EcdsaP256)
        }
        _ => None,
    }
}

/// Makes a new private key. ECDSA goes through ring (no start-up cost);
/// RSA through aws-lc-rs, the only backend here that generates RSA keys.
pub fn generate_key(algorithm: KeyAlgorithm) -> Result<KeyPair, String> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::KeySize;
    let size = match algorithm {
        KeyAlgorithm::EcdsaP256 => {
            return KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| e.to_string());
        }
        KeyAlgorithm::Rsa2048 => KeySize::Rsa2048,
        KeyAlgorithm::Rsa3072 => KeySize::Rsa3072,
        KeyAlgorithm::Rsa4096 => KeySize::Rsa4096,
    };
    let rsa = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|e| e.to_string())?;
    let pkcs8 = rsa.as_der().map_err(|e| e.to_string())?;
    KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_ref().into(), &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| e.to_string())
}

/// Reads a PKCS#8 PEM private key (what gantry writes).
pub fn load_key(pem_bytes: &[u8]) -> Result<KeyPair, String> {
    let text = std::str::from_utf8(pem_bytes).map_err(|_| "not PEM text".to_string())?;
    let block = pem::parse(text).map_err(|e| format!("not PEM: {e}"))?;
    if block.tag() != "PRIVATE KEY" {
        return Err(format!(
            "expected a PKCS#8 \"PRIVATE KEY\" PEM block, found {:?}",
            block.tag()
        ));
    }
    KeyPair::try_from(block.contents()).map_err(|e| format!("unusable private key: {e}"))
}

/// Whether `key` is the private half of the certificate's public key.
pub fn key_matches(key: &KeyPair, cert: &CertInfo) -> bool {
    key.subject_public_key_info() == cert.spki_der
}

/// A CA's certificate and key, ready to sign.
pub struct SigningCa {
    pub cert_pem: String,
    pub info: CertInfo,
    pub key: KeyPair,
}

impl SigningCa {
    pub fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, String> {
        Issuer::from_ca_cert_der(&self.info.der.clone().into(), &self.key)
            .map_err(|e| e.to_string())
    }
}

/// What a leaf certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSubject {
    pub common_name: String,
    pub organization: Option<String>,
    pub usage: Usage,
    pub sans: Vec<San>,
}

/// A self-signed CA certificate valid from `now` (back-dated) for `validity`.
pub fn self_signed_ca(
    common_name: &str,
    key: &KeyPair,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<String, String> {
    let mut params = base_params(now, now + validity)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params
        .self_signed(key)
        .map(|c| c.pem())
        .map_err(|e| e.to_string())
}

/// A leaf signed by `ca`, valid for `validity` but never past the CA's own expiry.
pub fn signed_leaf(
    subject: &LeafSubject,
    key: &KeyPair,
    ca: &SigningCa,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<String, String> {
    let not_after = (now + validity).min(ca.info.not_after);
    let mut params = base_params(now, not_after)?;
    if let Some(org) = &subject.organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org.as_str());
    }
    params
        .distinguished_name
        .push(DnType::CommonName, subject.common_name.as_str());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = match subject.usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.subject_alt_names = subject
        .sans
        .iter()
        .map(|san| match san {
            San::Dns(name) => name
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| format!("SAN {name}: {e}")),
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        })
        .collect::<Result<_, _>>()?;
    params.use_authority_key_identifier_extension = true;
    params
        .signed_by(key, &ca.issuer()?)
        .map(|c| c.pem())
        .map_err(|e| e.to_string())
}

fn base_params(
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.not_before = (now - BACKDATE)
        .replace_nanosecond(0)
        .map_err(|e| e.to_string())?;
    params.not_after = not_after.replace_nanosecond(0).map_err(|e| e.to_string())?;
    params.serial_number = Some(random_serial());
    Ok(params)
}

/// 128 random bits, positive, as RFC 5280 recommends.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}
