//! How the tenant's PKI is stored in the service cluster: which Secret holds
//! which file, which hold keys that are never replaced, and the checksums that roll pods
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
    /// One of the [`create_only_secrets`].
    pub create_only: bool,
}

/// One Secret of the service set and the PKI files it holds.
pub struct SecretFiles {
    pub name: &'static str,
    /// (key in the Secret, path in the bundle).
    pub files: &'static [(&'static str, &'static str)],
    /// Holds a CA, the service-account signing key or the key of Secrets at
    /// rest: created once and never overwritten, since replacing one would
    /// invalidate everything it signed or encrypted.
    pub create_only: bool,
}

impl SecretFiles {
    /// The bundle path of the file whose loss is the loss of a key: its
    /// private key (`*.key`), or the encryption configuration.
    pub fn guarded_file(&self) -> Option<&'static str> {
        self.files
            .iter()
            .map(|(_, path)| *path)
            .find(|path| path.ends_with(".key") || *path == gantry_pki::ENCRYPTION_CONFIG)
    }
}

/// The Secret of the `EncryptionConfiguration`, the key of Secrets at rest.
pub const ENCRYPTION_SECRET: &str = "encryption-config";

/// The Secret of the backup's etcd client pair.
pub const ETCD_BACKUP_SECRET: &str = "etcd-backup-client";

/// How the PKI is stored in the service cluster: each Secret of the service
/// set and its files (architecture.md's list).
pub const SECRET_FILES: &[SecretFiles] = &[
    SecretFiles {
        name: "ca",
        files: &[("ca.crt", "pki/ca.crt"), ("ca.key", "pki/ca.key")],
        create_only: true,
    },
    SecretFiles {
        name: "front-proxy-ca",
        files: &[
            ("front-proxy-ca.crt", "pki/front-proxy-ca.crt"),
            ("front-proxy-ca.key", "pki/front-proxy-ca.key"),
        ],
        create_only: true,
    },
    SecretFiles {
        name: "etcd-ca",
        files: &[("ca.crt", "pki/etcd/ca.crt"), ("ca.key", "pki/etcd/ca.key")],
        create_only: true,
    },
    SecretFiles {
        name: "sa",
        files: &[("sa.key", "pki/sa.key"), ("sa.pub", "pki/sa.pub")],
        create_only: true,
    },
    SecretFiles {
        name: ENCRYPTION_SECRET,
        files: &[("encryption-config.yaml", gantry_pki::ENCRYPTION_CONFIG)],
        create_only: true,
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
        create_only: false,
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
        create_only: false,
    },
    // The scheduled backup's client pair at etcd, apart from etcd's own
    // Secret (which holds the members' serving and peer keys).
    SecretFiles {
        name: ETCD_BACKUP_SECRET,
        files: &[
            ("ca.crt", "pki/etcd/ca.crt"),
            ("backup-client.crt", "pki/etcd/backup-client.crt"),
            ("backup-client.key", "pki/etcd/backup-client.key"),
        ],
        create_only: false,
    },
    SecretFiles {
        name: "admin-kubeconfig",
        files: &[("admin.conf", "admin.conf")],
        create_only: false,
    },
    // Apart from admin.conf: whoever may read admin.conf (RBAC, revocable)
    // must not also get system:masters, which nothing can revoke. No pod
    // mounts it (docs/security.md, "Credentials").
    SecretFiles {
        name: "super-admin-kubeconfig",
        files: &[("super-admin.conf", "super-admin.conf")],
        create_only: false,
    },
    SecretFiles {
        name: "controller-manager-kubeconfig",
        files: &[("controller-manager.conf", "controller-manager.conf")],
        create_only: false,
    },
    SecretFiles {
        name: "scheduler-kubeconfig",
        files: &[("scheduler.conf", "scheduler.conf")],
        create_only: false,
    },
    // The konnectivity agent's client credential. Kept here as the PKI's
    // record and copied into the tenant cluster (kube-system/konnectivity-agent),
    // where the agent mounts it; no pod of the service cluster mounts it.
    SecretFiles {
        name: "konnectivity-agent",
        files: &[
            ("tls.crt", "pki/konnectivity-agent.crt"),
            ("tls.key", "pki/konnectivity-agent.key"),
        ],
        create_only: false,
    },
    // The operator's own tenant credential; no pod mounts it.
    SecretFiles {
        name: "operator-kubeconfig",
        files: &[("operator.conf", gantry_pki::OPERATOR_KUBECONFIG)],
        create_only: false,
    },
];

/// The Secrets that hold a CA, the service-account signing key or the key
/// of Secrets at rest.
pub fn create_only_secrets() -> impl Iterator<Item = &'static SecretFiles> {
    SECRET_FILES.iter().filter(|secret| secret.create_only)
}

/// The Secrets of the service set, from the PKI files.
pub(crate) fn secrets(pki: &PkiBundle) -> Vec<SecretData> {
    SECRET_FILES
        .iter()
        .map(|secret| SecretData {
            name: secret.name,
            create_only: secret.create_only,
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
    gantry_pki::lower_hex(&hasher.finalize())
}
