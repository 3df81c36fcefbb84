//! The `kubeadm join` command line, written and read back.
//!
//! A line read back (a bundle's `join-command`, the `join` Secret) is
//! untrusted: whoever can edit the file or the Secret chooses its words, and
//! gantry's output is pasted into root shells (`sh -c "$(gantry join …)"`)
//! and into nodes' scripts. So [`JoinValues`] checks each value, and gantry
//! prints only what it parsed, never the text it read.

use std::fmt;

use crate::spec::Endpoint;
use crate::token::BootstrapToken;

/// The `kubeadm join` command line: `endpoint` (`HOST:PORT`), the token
/// (`ID.SECRET`) and the CA pin (`sha256:<hex>`). One place, so the bundle's
/// `join-command`, the `join` Secret and `gantry join` always agree.
pub fn kubeadm_join_command(endpoint: &str, token: &str, ca_cert_hash: &str) -> String {
    format!("kubeadm join {endpoint} --token {token} --discovery-token-ca-cert-hash {ca_cert_hash}")
}

/// The words of a [`kubeadm_join_command`] line, read back (a render
/// bundle's `join-command`), not yet checked: [`JoinCommand::check`] does.
/// No `Debug`: it holds the token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinCommand {
    pub endpoint: String,
    pub token: String,
    pub ca_cert_hash: String,
}

impl JoinCommand {
    /// `None` unless `line` is exactly what [`kubeadm_join_command`] writes:
    /// `kubeadm join ENDPOINT --token TOKEN --discovery-token-ca-cert-hash
    /// HASH`, seven words and nothing after them (a `; command` appended to
    /// the file is no part of a join command).
    pub fn parse(line: &str) -> Option<Self> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [
            "kubeadm",
            "join",
            endpoint,
            "--token",
            token,
            "--discovery-token-ca-cert-hash",
            ca_cert_hash,
        ] = words[..]
        else {
            return None;
        };
        Some(Self {
            endpoint: endpoint.to_string(),
            token: token.to_string(),
            ca_cert_hash: ca_cert_hash.to_string(),
        })
    }

    /// Its values, each checked.
    pub fn check(&self) -> Result<JoinValues, JoinValueError> {
        JoinValues::parse(&self.endpoint, &self.token, &self.ca_cert_hash)
    }
}

/// What `kubeadm join` needs, each value checked: the endpoint is
/// `HOST:PORT` ([`Endpoint::parse_host_port`]), the token `ID.SECRET`
/// ([`BootstrapToken::parse`]), the pin `sha256:` and 64 lowercase hex
/// digits. The fields are private so that no unchecked value gets in; its
/// `Display` is the command line. No `Debug`: it holds the token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinValues {
    endpoint: Endpoint,
    token: BootstrapToken,
    ca_cert_hash: String,
}

/// Which value of a join command is not what it must be. Never holds the
/// token, not even a wrong one (it may be a real token slightly damaged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinValueError {
    #[error("its endpoint {value:?} {reason}")]
    Endpoint { value: String, reason: String },
    #[error("its token is not ID.SECRET (6 and 16 lowercase letters or digits)")]
    Token,
    #[error("its CA hash {0:?} is not sha256: and 64 lowercase hex digits")]
    CaCertHash(String),
}

impl JoinValues {
    /// Checks the three values as text (read from a file or a Secret).
    pub fn parse(endpoint: &str, token: &str, ca_cert_hash: &str) -> Result<Self, JoinValueError> {
        let endpoint = Endpoint::parse_host_port("endpoint", endpoint).map_err(|e| {
            JoinValueError::Endpoint {
                // The whole value: `e.value` may be the host part alone.
                value: endpoint.to_string(),
                reason: e.reason,
            }
        })?;
        let token = BootstrapToken::parse(token).map_err(|_| JoinValueError::Token)?;
        Self::new(endpoint, token, ca_cert_hash)
    }

    /// Joins a parsed endpoint and token to a pin, which is checked.
    pub fn new(
        endpoint: Endpoint,
        token: BootstrapToken,
        ca_cert_hash: &str,
    ) -> Result<Self, JoinValueError> {
        if !is_ca_cert_hash(ca_cert_hash) {
            return Err(JoinValueError::CaCertHash(ca_cert_hash.to_string()));
        }
        Ok(Self {
            endpoint,
            token,
            ca_cert_hash: ca_cert_hash.to_string(),
        })
    }

    /// The same endpoint and pin with another token (one just minted).
    pub fn with_token(&self, token: BootstrapToken) -> Self {
        Self {
            token,
            ..self.clone()
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn token(&self) -> &BootstrapToken {
        &self.token
    }

    /// `sha256:` and 64 lowercase hex digits.
    pub fn ca_cert_hash(&self) -> &str {
        &self.ca_cert_hash
    }
}

impl fmt::Display for JoinValues {
    /// The `kubeadm join` command line, made of the checked values only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&kubeadm_join_command(
            &self.endpoint.to_string(),
            &self.token.expose(),
            &self.ca_cert_hash,
        ))
    }
}

/// Whether `pin` is what [`crate::ca_cert_hash`] makes: `sha256:` and 64
/// lowercase hex digits.
pub fn is_ca_cert_hash(pin: &str) -> bool {
    pin.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "abcdef.0123456789abcdef";

    fn pin() -> String {
        format!("sha256:{}", "0f".repeat(32))
    }

    #[test]
    fn a_join_command_reads_back_what_it_was_made_of() {
        let line = kubeadm_join_command("203.0.113.10:6443", TOKEN, &pin());
        let parsed = JoinCommand::parse(&format!("{line}\n")).expect("parses");
        assert_eq!(parsed.endpoint, "203.0.113.10:6443");
        assert_eq!(parsed.token, TOKEN);
        assert_eq!(parsed.ca_cert_hash, pin());
        let values = parsed.check().expect("checks");
        assert_eq!(values.to_string(), line);
        for bad in [
            "",
            "kubeadm init 203.0.113.10:6443 --token a.b --discovery-token-ca-cert-hash sha256:00",
            "kubeadm join 203.0.113.10:6443 --discovery-token-ca-cert-hash sha256:00",
            "kubeadm join 203.0.113.10:6443 --token a.b --discovery-token-ca-cert-hash",
            "kubeadm join 203.0.113.10:6443 --discovery-token-ca-cert-hash sha256:00 --token a.b",
            "kubeadm join 203.0.113.10:6443 --token a.b --discovery-token-ca-cert-hash sha256:00 ; touch x",
            "sudo kubeadm join 203.0.113.10:6443 --token a.b --discovery-token-ca-cert-hash sha256:00",
        ] {
            assert!(JoinCommand::parse(bad).is_none(), "{bad:?} parsed");
        }
    }

    #[test]
    fn every_value_is_checked_and_no_error_shows_the_token() {
        let secret = "0123456789abcdef";
        let cases = [
            (
                "$(touch${IFS}/tmp/PWNED):6443",
                TOKEN,
                pin(),
                "endpoint \"$(touch${IFS}/tmp/PWNED):6443\"",
            ),
            ("203.0.113.10", TOKEN, pin(), "endpoint"),
            (
                "203.0.113.10:6443",
                "ABCDEF.0123456789abcdef",
                pin(),
                "token",
            ),
            (
                "203.0.113.10:6443",
                "abcdef.0123456789abcdef;x",
                pin(),
                "token",
            ),
            ("203.0.113.10:6443", TOKEN, "sha256:00".into(), "CA hash"),
            ("203.0.113.10:6443", TOKEN, pin().to_uppercase(), "CA hash"),
        ];
        for (endpoint, token, hash, field) in cases {
            let error = JoinValues::parse(endpoint, token, &hash)
                .err()
                .unwrap_or_else(|| panic!("{endpoint} {hash} passed"))
                .to_string();
            assert!(error.contains(field), "{error}");
            assert!(!error.contains(secret), "{error}");
        }
        assert!(is_ca_cert_hash(&pin()));
        assert!(!is_ca_cert_hash(&format!("sha256:{}", "0".repeat(63))));
    }
}
