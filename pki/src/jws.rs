//! Detached JWS signatures of `kube-public/cluster-info`, byte-identical to
//! k8s.io/cluster-bootstrap `token/jws`: HS256 keyed by the token *secret*,
//! protected header exactly `{"alg":"HS256","kid":"<id>"}`, payload omitted.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::token::BootstrapToken;

/// `b64url(header) + ".." + b64url(HMAC-SHA256(secret, b64url(header) + "." + b64url(content)))`.
pub fn compute_detached_signature(content: &[u8], token_id: &str, token_secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{token_id}"}}"#));
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(content));
    let mut mac =
        Hmac::<Sha256>::new_from_slice(token_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}..{signature}")
}

/// Recomputes the whole signature and compares in constant time, as
/// cluster-bootstrap does, so a changed header is rejected as surely as a
/// changed payload.
pub fn detached_signature_is_valid(
    signature: &str,
    content: &[u8],
    token_id: &str,
    token_secret: &str,
) -> bool {
    let expected = compute_detached_signature(content, token_id, token_secret);
    constant_time_eq(expected.as_bytes(), signature.as_bytes())
}

/// The `jws-kubeconfig-<id>` value for a cluster-info kubeconfig.
pub fn sign_cluster_info(kubeconfig: &[u8], token: &BootstrapToken) -> String {
    compute_detached_signature(kubeconfig, token.id(), token.secret())
}

/// The cluster-info ConfigMap key that holds `token`'s signature.
pub fn cluster_info_signature_key(token: &BootstrapToken) -> String {
    format!("jws-kubeconfig-{}", token.id())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference vectors from k8s.io/cluster-bootstrap token/jws/jws_test.go.
    const CONTENT: &str = "Hello from the other side. I must have called a thousand times.";
    const SECRET: &str = "my voice is my passcode";
    const ID: &str = "joshua";

    #[test]
    fn reproduces_cluster_bootstrap_vectors() {
        let cases = [
            (
                CONTENT,
                SECRET,
                "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8",
            ),
            (
                "",
                SECRET,
                "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk",
            ),
            (
                CONTENT,
                "",
                "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..UfkqvDGiIFxrMnFseDj9LYJOLNrvjW8aHhF71mvvAs8",
            ),
        ];
        for (content, secret, expected) in cases {
            assert_eq!(
                compute_detached_signature(content.as_bytes(), ID, secret),
                expected
            );
        }
    }

    #[test]
    fn reproduces_cluster_bootstrap_secret_length_compatibility_vectors() {
        let cases = [
            (
                0,
                "eyJhbGciOiJIUzI1NiIsImtpZCI6ImlkIn0..GBG9nJpyHc7Tk_iryUsRXOvX6U-19DDCA2AmlC326DU",
            ),
            (
                1,
                "eyJhbGciOiJIUzI1NiIsImtpZCI6ImlkIn0..x-LVIHM7D6uo6buZFEW2ldnwJL2Ddduh2ZhxFN33v5w",
            ),
            (
                8,
                "eyJhbGciOiJIUzI1NiIsImtpZCI6ImlkIn0..pCqXr-QOqtnLik5dOn0DZu842z-u_rchSqd6B-MoOFQ",
            ),
            (
                31,
                "eyJhbGciOiJIUzI1NiIsImtpZCI6ImlkIn0..Wy4AKm0ArcyixzYnGnwAjWR7POeVBKBwnkLZw8GUkG8",
            ),
            (
                32,
                "eyJhbGciOiJIUzI1NiIsImtpZCI6ImlkIn0..1z14ArXPw5a3L8hIAZmzMWdDXXsxED78LO7wn3m4a0k",
            ),
            (
                33,
                "eyJhbGciOiJIUzI1NiIsImtpZCI6ImlkIn0..exPZdsbPApmX14UF7bf2KoBdZwrkzSotja4egZ60UXs",
            ),
        ];
        for (len, expected) in cases {
            assert_eq!(
                compute_detached_signature(b"content", "id", &"x".repeat(len)),
                expected,
                "{len}-byte secret"
            );
        }
    }

    #[test]
    fn verification_round_trips_and_rejects_tampering() {
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let content = b"apiVersion: v1\nkind: Config\n";
        let sig = sign_cluster_info(content, &token);
        assert!(detached_signature_is_valid(
            &sig,
            content,
            "abcdef",
            "0123456789abcdef"
        ));
        assert!(!detached_signature_is_valid(
            &sig,
            b"apiVersion: v1\nkind: Config \n",
            "abcdef",
            "0123456789abcdef"
        ));
        assert!(!detached_signature_is_valid(
            &sig,
            content,
            "abcdef",
            "0123456789abcdeg"
        ));
        assert!(!detached_signature_is_valid(
            &sig,
            content,
            "abcdeg",
            "0123456789abcdef"
        ));
        assert!(!detached_signature_is_valid(
            &format!("{sig}foo"),
            content,
            "abcdef",
            "0123456789abcdef"
        ));
        // A header with a space is a different header, even though it means the same JSON.
        let (_, mac) = sig.split_once("..").unwrap();
        let spaced = URL_SAFE_NO_PAD.encode(r#"{"alg": "HS256","kid":"abcdef"}"#);
        assert!(!detached_signature_is_valid(
            &format!("{spaced}..{mac}"),
            content,
            "abcdef",
            "0123456789abcdef"
        ));
        assert_eq!(cluster_info_signature_key(&token), "jws-kubeconfig-abcdef");
    }
}
