//! How the tenant's PKI is stored in the service cluster: which Secret holds
//! which file, which hold signing keys, and the checksums that roll pods
//! when a Secret they mount changes.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gantry_pki::PkiBundle;
use sha2::{Digest, Sha256};

/// A Secret of the tenant namespace: its name and `data` (base64 values).
pub(crate) struct SecretData {
    pub name: &'static str,
    pub data: BTreeMap<String, String>,
}

/// One Secret of the service set and the PKI files it holds.
pub struct SecretFiles {
    pub name: &'static str,
    /// (key in the Secret, path in the bundle).
    pub files: &'static [(&'static str, &'static str)],
    /// Holds a CA or the service-account signing key: created once and never
    /// overwritten, since replacing one would invalidate everything it signed.
    pub signing_key: bool,
}

impl SecretFiles {
    /// The bundle path of its private key (`*.key`), if it holds one.
    pub fn key_path(&self) -> Option<&'static str> {
        self.files
            .iter()
            .map(|(_, path)| *path)
            .find(|path| path.ends_with(".key"))
    }
}

/// How the PKI is stored in the service cluster: each Secret of the service
/// set and its files (architecture.md's list).
pub const SECRET_FILES: &[SecretFiles] = &[
    SecretFiles {
        name: "ca",
        files: &[("ca.crt", "pki/ca.crt"), ("ca.key", "pki/ca.key")],
        signing_key: true,
    },
    SecretFiles {
        name: "front-proxy-ca",
        files: &[
            ("front-proxy-ca.crt", "pki/front-proxy-ca.crt"),
            ("front-proxy-ca.key", "pki/front-proxy-ca.key"),
        ],
        signing_key: true,
    },
    SecretFiles {
        name: "etcd-ca",
        files: &[("ca.crt", "pki/etcd/ca.crt"), ("ca.key", "pki/etcd/ca.key")],
        signing_key: true,
    },
    SecretFiles {
        name: "sa",
        files: &[("sa.key", "pki/sa.key"), ("sa.pub", "pki/sa.pub")],
        signing_key: true,
    },
    SecretFiles {
        name: "apiserver-certs",
        files: &[
            ("apiserver.crt", "pki/apiserver.crt"),
            ("apiserver.key", "pki/apiserver.key"),
            (
                "apiserver-kubelet-client.crt",
                "pki/apiserver-kubelet-client.crt",
            ),
            (
                "apiserver-kubelet-client.key",
                "pki/apiserver-kubelet-client.key",
            ),
            ("front-proxy-client.crt", "pki/front-proxy-client.crt"),
            ("front-proxy-client.key", "pki/front-proxy-client.key"),
            ("apiserver-etcd-client.crt", "pki/apiserver-etcd-client.crt"),
            ("apiserver-etcd-client.key", "pki/apiserver-etcd-client.key"),
        ],
        signing_key: false,
    },
    SecretFiles {
        name: "etcd-certs",
        files: &[
            ("ca.crt", "pki/etcd/ca.crt"),
            ("server.crt", "pki/etcd/server.crt"),
            ("server.key", "pki/etcd/server.key"),
            ("peer.crt", "pki/etcd/peer.crt"),
            ("peer.key", "pki/etcd/peer.key"),
            ("healthcheck-client.crt", "pki/etcd/healthcheck-client.crt"),
            ("healthcheck-client.key", "pki/etcd/healthcheck-client.key"),
        ],
        signing_key: false,
    },
    SecretFiles {
        name: "admin-kubeconfig",
        files: &[
            ("admin.conf", "admin.conf"),
            ("super-admin.conf", "super-admin.conf"),
        ],
        signing_key: false,
    },
    SecretFiles {
        name: "controller-manager-kubeconfig",
        files: &[("controller-manager.conf", "controller-manager.conf")],
        signing_key: false,
    },
    SecretFiles {
        name: "scheduler-kubeconfig",
        files: &[("scheduler.conf", "scheduler.conf")],
        signing_key: false,
    },
];

/// The Secrets that hold a CA or the service-account signing key.
pub fn signing_key_secrets() -> impl Iterator<Item = &'static SecretFiles> {
    SECRET_FILES.iter().filter(|secret| secret.signing_key)
}

/// The Secrets of the service set, from the PKI files.
pub(crate) fn secrets(pki: &PkiBundle) -> Vec<SecretData> {
    SECRET_FILES
        .iter()
        .map(|secret| SecretData {
            name: secret.name,
            data: secret
                .files
                .iter()
                .map(|(key, path)| {
                    let contents = pki.get(path).expect("an issued bundle holds every file");
                    (key.to_string(), STANDARD.encode(contents))
                })
                .collect(),
        })
        .collect()
}

/// SHA-256 over the named Secrets' contents: a pod template annotation that
/// changes, and so rolls the pods, whenever a mounted certificate changes.
pub(crate) fn checksum(secrets: &[SecretData], names: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for secret in secrets.iter().filter(|s| names.contains(&s.name)) {
        for (key, value) in &secret.data {
            hasher.update(format!("{}/{key}={value}\n", secret.name));
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
