//! Reading a PKCS#10 certificate signing request, as a kubelet sends one for
//! its serving certificate: who it names and which names and addresses it
//! asks for. The operator's approver judges these against the Node.

use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension, SubjectAlternativeName};
use x509_parser::oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME;
use x509_parser::prelude::FromDer;

/// What a certificate signing request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrRequest {
    /// The subject's common names (a kubelet sends one: `system:node:<name>`).
    pub common_names: Vec<String>,
    /// The subject's organizations (a kubelet sends `system:nodes`).
    pub organizations: Vec<String>,
    /// Subject alternative names of type DNS.
    pub dns_names: Vec<String>,
    /// Subject alternative names of type IP.
    pub ip_addresses: Vec<IpAddr>,
    /// Subject alternative names of any other type (email, URI, ...), as text.
    pub other_names: Vec<String>,
}

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("the request is not PEM: {0}")]
    Pem(String),
    #[error("the PEM block is {0:?}, not CERTIFICATE REQUEST")]
    Label(String),
    #[error("the request is not a PKCS#10 certificate request: {0}")]
    Der(String),
    #[error("the request's signature does not verify with its own key")]
    Signature,
    #[error("the request has {0}")]
    Extensions(&'static str),
}

/// Reads a PEM certificate request (`spec.request` of a
/// CertificateSigningRequest) and checks that its own key signed it.
pub fn read_csr(pem_bytes: &[u8]) -> Result<CsrRequest, CsrError> {
    let block = pem::parse(pem_bytes).map_err(|e| CsrError::Pem(e.to_string()))?;
    if block.tag() != "CERTIFICATE REQUEST" {
        return Err(CsrError::Label(block.tag().to_string()));
    }
    let (_, request) = X509CertificationRequest::from_der(block.contents())
        .map_err(|e| CsrError::Der(e.to_string()))?;
    request
        .verify_signature()
        .map_err(|_| CsrError::Signature)?;
    let subject = &request.certification_request_info.subject;
    let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        attr.as_str().map(str::to_string).unwrap_or_default()
    };
    let mut read = CsrRequest {
        common_names: subject.iter_common_name().map(text).collect(),
        organizations: subject.iter_organization().map(text).collect(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        other_names: Vec::new(),
    };
    if let Some(names) = subject_alt_names(&request)? {
        for name in &names.general_names {
            match name {
                GeneralName::DNSName(dns) => read.dns_names.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
                    Some(ip) => read.ip_addresses.push(ip),
                    None => read
                        .other_names
                        .push(format!("IP of {} bytes", bytes.len())),
                },
                other => read.other_names.push(other.to_string()),
            }
        }
    }
    Ok(read)
}

/// The request's subject alternative names. Fails closed: more than one
/// extension request, more than one SAN extension, or one that does not
/// parse is refused, so what is judged is what the signer would sign.
fn subject_alt_names<'a>(
    request: &'a X509CertificationRequest<'a>,
) -> Result<Option<&'a SubjectAlternativeName<'a>>, CsrError> {
    let requests: Vec<_> = request
        .certification_request_info
        .iter_attributes()
        .filter_map(|attribute| match attribute.parsed_attribute() {
            ParsedCriAttribute::ExtensionRequest(extensions) => Some(extensions),
            _ => None,
        })
        .collect();
    if requests.len() > 1 {
        return Err(CsrError::Extensions("more than one extension request"));
    }
    let mut found = None;
    for extension in requests.iter().flat_map(|r| r.extensions.iter()) {
        if extension.oid != OID_X509_EXT_SUBJECT_ALT_NAME {
            continue;
        }
        let ParsedExtension::SubjectAlternativeName(names) = extension.parsed_extension() else {
            return Err(CsrError::Extensions(
                "a subject alternative name that does not parse",
            ));
        };
        if found.replace(names).is_some() {
            return Err(CsrError::Extensions(
                "more than one subject alternative name extension",
            ));
        }
    }
    Ok(found)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request like a kubelet's, made with rcgen.
    fn kubelet_like_csr(dns: &[&str], ips: &[&str]) -> String {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:worker-0");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        for name in dns {
            params
                .subject_alt_names
                .push(rcgen::SanType::DnsName((*name).try_into().unwrap()));
        }
        for ip in ips {
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress(ip.parse().unwrap()));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_kubelet_request_reads_as_its_names_and_addresses() {
        let pem = kubelet_like_csr(&["worker-0"], &["10.0.0.7", "fd00::7"]);
        let read = read_csr(pem.as_bytes()).unwrap();
        assert_eq!(read.common_names, ["system:node:worker-0"]);
        assert_eq!(read.organizations, ["system:nodes"]);
        assert_eq!(read.dns_names, ["worker-0"]);
        assert_eq!(
            read.ip_addresses,
            [
                "10.0.0.7".parse::<IpAddr>().unwrap(),
                "fd00::7".parse().unwrap()
            ]
        );
        assert!(read.other_names.is_empty());
    }

    /// A request with the SANs of `kubelet_like_csr` and one more SAN
    /// extension whose DER is `content`.
    fn with_extra_san_extension(content: Vec<u8>) -> String {
        let mut params = rcgen::CertificateParams::default();
        params
            .subject_alt_names
            .push(rcgen::SanType::DnsName("worker-0".try_into().unwrap()));
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[2, 5, 29, 17],
                content,
            ));
        let key = rcgen::KeyPair::generate().unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_second_or_unparsable_san_extension_is_refused() {
        // SEQUENCE { [2] "evil" }: a well-formed second list of names.
        let second = with_extra_san_extension(vec![0x30, 0x06, 0x82, 0x04, b'e', b'v', b'i', b'l']);
        assert_eq!(
            read_csr(second.as_bytes()),
            Err(CsrError::Extensions(
                "more than one subject alternative name extension"
            ))
        );
        let garbage = with_extra_san_extension(vec![0x04, 0x01, 0x00]);
        assert!(
            matches!(read_csr(garbage.as_bytes()), Err(CsrError::Extensions(_))),
            "{:?}",
            read_csr(garbage.as_bytes())
        );
    }

    #[test]
    fn a_tampered_or_foreign_block_is_refused() {
        let pem = kubelet_like_csr(&["worker-0"], &[]);
        let block = pem::parse(pem.as_bytes()).unwrap();
        let mut der = block.contents().to_vec();
        // Flip a byte of the signature (the DER ends with it).
        let last = der.len() - 1;
        der[last] ^= 0xff;
        let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
        assert_eq!(read_csr(tampered.as_bytes()), Err(CsrError::Signature));
        let certificate = pem::encode(&pem::Pem::new("CERTIFICATE", block.contents().to_vec()));
        assert_eq!(
            read_csr(certificate.as_bytes()),
            Err(CsrError::Label("CERTIFICATE".into()))
        );
        assert!(matches!(read_csr(b"not pem"), Err(CsrError::Pem(_))));
    }
}
