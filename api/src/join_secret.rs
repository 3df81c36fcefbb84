//! Secret `join` in a tenant's namespace: what `kubeadm join` needs (the
//! bootstrap token, the CA pin, the endpoint, and the whole command). The
//! operator writes it; `gantry join` and `gantry cloud-init` read it.

use base64::Engine as _;
use gantry_pki::BootstrapToken;
use k8s_openapi::api::core::v1::Secret;
use serde_json::json;
use time::OffsetDateTime;

/// The Secret's name.
pub const JOIN_SECRET: &str = "join";

/// Its keys.
pub const TOKEN: &str = "token";
pub const EXPIRATION: &str = "expiration";
pub const ENDPOINT: &str = "endpoint";
pub const CA_CERT_HASH: &str = "ca-cert-hash";
pub const JOIN_COMMAND: &str = "join-command";

/// The Secret as an object to apply in `namespace`.
pub fn object(
    namespace: &str,
    token: &BootstrapToken,
    expiration: OffsetDateTime,
    endpoint: &str,
    ca_hash: &str,
) -> serde_json::Value {
    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let command = gantry_pki::kubeadm_join_command(endpoint, &token.expose(), ca_hash);
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": JOIN_SECRET, "namespace": namespace},
        "type": "Opaque",
        "data": {
            TOKEN: encode(&token.expose()),
            EXPIRATION: encode(&gantry_pki::rfc3339(expiration)),
            ENDPOINT: encode(endpoint),
            CA_CERT_HASH: encode(ca_hash),
            JOIN_COMMAND: encode(&command),
        },
    })
}

/// The text of key `key` of `secret`, if present and UTF-8.
pub fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The token and its expiration, if both are present and parse.
pub fn token_of(secret: &Secret) -> Option<(BootstrapToken, OffsetDateTime)> {
    let token = text(secret, TOKEN).and_then(|t| BootstrapToken::parse(&t).ok());
    let expiration = text(secret, EXPIRATION).and_then(|e| {
        OffsetDateTime::parse(&e, &time::format_description::well_known::Rfc3339).ok()
    });
    token.zip(expiration)
}
