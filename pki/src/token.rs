//! Bootstrap tokens (`<id>.<secret>`) and the Secret that makes one valid.

use std::collections::BTreeMap;
use std::fmt;

use rand::Rng;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::error::InvalidInput;

const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
/// kubeadm's default token lifetime.
pub const DEFAULT_TTL: Duration = Duration::hours(24);
/// The group every gantry join token authenticates into, as kubeadm's do.
pub const DEFAULT_NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// A bootstrap token. `Debug` shows only the id; the secret leaves through
/// [`BootstrapToken::expose`] and [`BootstrapToken::secret`] alone.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

impl BootstrapToken {
    /// A fresh token from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect()
        };
        let id = pick(ID_LEN);
        let secret = pick(SECRET_LEN);
        Self { id, secret }
    }

    /// Parses `^[a-z0-9]{6}\.[a-z0-9]{16}$`. The error never echoes the secret.
    pub fn parse(value: &str) -> Result<Self, InvalidInput> {
        let well_formed = |part: &str, len: usize| {
            part.len() == len
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        match value.split_once('.') {
            Some((id, secret)) if well_formed(id, ID_LEN) && well_formed(secret, SECRET_LEN) => {
                Ok(Self {
                    id: id.into(),
                    secret: secret.into(),
                })
            }
            _ => Err(InvalidInput::new(
                "token",
                redact(value),
                "is not a bootstrap token: expected [a-z0-9]{6}.[a-z0-9]{16}",
            )),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The full `<id>.<secret>` string, for `kubeadm join --token`.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// The name of the Secret that holds this token.
    pub fn secret_name(&self) -> String {
        format!("bootstrap-token-{}", self.id)
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken({}.<redacted>)", self.id)
    }
}

/// Shows enough of a rejected value to find it, never a whole secret: the part
/// before the first '.', at most 6 characters, then `…`.
fn redact(value: &str) -> String {
    let head: String = value
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .take(ID_LEN)
        .collect();
    if head.len() == value.len() {
        head
    } else {
        format!("{head}…")
    }
}

/// The `bootstrap-token-<id>` Secret of `kube-system`, as `kubeadm-join.md` specifies.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct BootstrapTokenSecret {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: SecretMetadata,
    #[serde(rename = "type")]
    pub type_: &'static str,
    #[serde(rename = "stringData")]
    pub string_data: BTreeMap<String, String>,
}

impl fmt::Debug for BootstrapTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapTokenSecret({})", self.metadata.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretMetadata {
    pub name: String,
    pub namespace: &'static str,
}

impl BootstrapTokenSecret {
    /// A token valid for authentication and for signing cluster-info, in the
    /// default node-token group, that expires at `expiration`.
    pub fn new(token: &BootstrapToken, expiration: OffsetDateTime, description: &str) -> Self {
        let string_data = [
            ("token-id", token.id()),
            ("token-secret", token.secret()),
            ("expiration", &crate::rfc3339(expiration)),
            ("usage-bootstrap-authentication", "true"),
            ("usage-bootstrap-signing", "true"),
            ("auth-extra-groups", DEFAULT_NODE_TOKEN_GROUP),
            ("description", description),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Self {
            api_version: "v1",
            kind: "Secret",
            metadata: SecretMetadata {
                name: token.secret_name(),
                namespace: "kube-system",
            },
            type_: "bootstrap.kubernetes.io/token",
            string_data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let tokens: Vec<_> = (0..200).map(|_| BootstrapToken::generate()).collect();
        for token in &tokens {
            assert_eq!(BootstrapToken::parse(&token.expose()).unwrap(), *token);
        }
        let distinct: std::collections::HashSet<_> = tokens.iter().map(|t| t.expose()).collect();
        assert_eq!(distinct.len(), tokens.len());
        // All 36 characters are used: the generator is not stuck on a subset.
        let used: std::collections::HashSet<char> = tokens
            .iter()
            .flat_map(|t| t.expose().chars().collect::<Vec<_>>())
            .collect();
        assert_eq!(used.len(), 37); // 36 + '.'
    }

    #[test]
    fn parsing_is_strict_and_errors_never_show_the_secret() {
        for bad in [
            "",
            "abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdefg",
            "ABCDEF.0123456789abcdef",
            "abcdef:0123456789abcdef",
            "abcdef.0123456789abcdeF",
            " abcdef.0123456789abcdef",
            "abcdef.0123456789abcdef\n",
        ] {
            let err = BootstrapToken::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("token "), "{err}");
            assert!(!err.contains("0123456789"), "{err}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(format!("{token:?}"), "BootstrapToken(abcdef.<redacted>)");
        let secret = BootstrapTokenSecret::new(&token, OffsetDateTime::UNIX_EPOCH, "d");
        assert!(!format!("{secret:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn the_secret_carries_every_field_kubeadm_reads() {
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let expiration = OffsetDateTime::from_unix_timestamp(1_795_428_000).unwrap();
        let yaml =
            serde_yaml::to_string(&BootstrapTokenSecret::new(&token, expiration, "join token"))
                .unwrap();
        assert_eq!(
            yaml,
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bootstrap-token-abcdef\n  namespace: kube-system\n\
             type: bootstrap.kubernetes.io/token\nstringData:\n  \
             auth-extra-groups: system:bootstrappers:kubeadm:default-node-token\n  \
             description: join token\n  expiration: 2026-11-23T10:00:00Z\n  token-id: abcdef\n  \
             token-secret: 0123456789abcdef\n  usage-bootstrap-authentication: 'true'\n  \
             usage-bootstrap-signing: 'true'\n"
        );
    }
}
