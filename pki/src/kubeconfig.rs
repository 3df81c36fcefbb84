//! Kubeconfig files, serialised in clientcmd's field order so they read like
//! the ones kubeadm writes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub clusters: Vec<NamedCluster>,
    /// `None` serialises as `null`, as clientcmd writes cluster-info.
    pub contexts: Option<Vec<NamedContext>>,
    #[serde(rename = "current-context")]
    pub current_context: String,
    pub kind: String,
    #[serde(default)]
    pub preferences: Preferences,
    pub users: Option<Vec<NamedUser>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub cluster: Cluster,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    #[serde(rename = "certificate-authority-data")]
    pub certificate_authority_data: String,
    pub server: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    pub context: Context,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: User,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    #[serde(rename = "client-certificate-data")]
    pub client_certificate_data: String,
    #[serde(rename = "client-key-data")]
    pub client_key_data: String,
}

impl std::fmt::Debug for User {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("client_certificate_data", &self.client_certificate_data)
            .field("client_key_data", &"<redacted>")
            .finish()
    }
}

impl Kubeconfig {
    /// A kubeconfig for one user with a client certificate.
    pub fn for_client(
        cluster_name: &str,
        server: &str,
        ca_pem: &str,
        user_name: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Self {
        let context_name = format!("{user_name}@{cluster_name}");
        let mut kubeconfig = Kubeconfig::cluster_info(server, ca_pem);
        kubeconfig.clusters[0].name = cluster_name.into();
        kubeconfig.contexts = Some(vec![NamedContext {
            context: Context {
                cluster: cluster_name.into(),
                user: user_name.into(),
            },
            name: context_name.clone(),
        }]);
        kubeconfig.current_context = context_name;
        kubeconfig.users = Some(vec![NamedUser {
            name: user_name.into(),
            user: User {
                client_certificate_data: STANDARD.encode(cert_pem),
                client_key_data: STANDARD.encode(key_pem),
            },
        }]);
        kubeconfig
    }

    /// The `kube-public/cluster-info` kubeconfig: exactly one cluster named "",
    /// no users and no contexts, as `kubeadm join` discovery requires.
    pub fn cluster_info(server: &str, ca_pem: &str) -> Self {
        Kubeconfig {
            api_version: "v1".into(),
            clusters: vec![NamedCluster {
                cluster: Cluster {
                    certificate_authority_data: STANDARD.encode(ca_pem),
                    server: server.into(),
                },
                name: String::new(),
            }],
            contexts: None,
            current_context: String::new(),
            kind: "Config".into(),
            preferences: Preferences {},
            users: None,
        }
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a kubeconfig always serialises")
    }

    pub fn from_yaml(text: &[u8]) -> Result<Self, String> {
        // serde's messages quote the value they could not read, which in a
        // kubeconfig may be its private key (a whole file base64-encoded is
        // one YAML string): say only where it failed.
        if let Some(problem) = std::str::from_utf8(text)
            .ok()
            .and_then(crate::yaml_guard::flow_nesting_problem)
        {
            return Err(format!("is not a kubeconfig: it {problem}"));
        }
        serde_yaml::from_slice(text).map_err(|e| match e.location() {
            Some(at) => format!(
                "is not a kubeconfig (YAML error at line {}, column {})",
                at.line(),
                at.column()
            ),
            None => "is not a kubeconfig".into(),
        })
    }

    /// The single cluster's server and CA (PEM), and the single user's
    /// certificate and key (PEM); what gantry's own kubeconfigs hold.
    pub fn single_user_credentials(&self) -> Result<Credentials, String> {
        let [cluster] = self.clusters.as_slice() else {
            return Err(format!(
                "expected one cluster, found {}",
                self.clusters.len()
            ));
        };
        let users = self.users.as_deref().unwrap_or_default();
        let [user] = users else {
            return Err(format!("expected one user, found {}", users.len()));
        };
        let decode = |field: &str, value: &str| {
            STANDARD
                .decode(value)
                .map_err(|e| format!("{field} is not base64: {e}"))
        };
        Ok(Credentials {
            server: cluster.cluster.server.clone(),
            ca_pem: decode(
                "certificate-authority-data",
                &cluster.cluster.certificate_authority_data,
            )?,
            cert_pem: decode(
                "client-certificate-data",
                &user.user.client_certificate_data,
            )?,
            key_pem: decode("client-key-data", &user.user.client_key_data)?,
        })
    }
}

/// What a client kubeconfig carries, decoded.
pub struct Credentials {
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_info_has_one_unnamed_cluster_and_nothing_else() {
        let yaml = Kubeconfig::cluster_info("https://203.0.113.10:6443", "PEM").to_yaml();
        assert_eq!(
            yaml,
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: UEVN\n    \
             server: https://203.0.113.10:6443\n  name: ''\ncontexts: null\ncurrent-context: ''\n\
             kind: Config\npreferences: {}\nusers: null\n"
        );
    }

    #[test]
    fn client_kubeconfigs_round_trip_and_hide_keys_from_debug() {
        let kc = Kubeconfig::for_client("tenant-a", "https://x:6443", "CA", "admin", "CERT", "KEY");
        let parsed = Kubeconfig::from_yaml(kc.to_yaml().as_bytes()).unwrap();
        assert_eq!(parsed, kc);
        let creds = parsed.single_user_credentials().unwrap();
        assert_eq!(
            (creds.ca_pem, creds.key_pem),
            (b"CA".to_vec(), b"KEY".to_vec())
        );
        assert_eq!(parsed.current_context, "admin@tenant-a");
        assert!(!format!("{kc:?}").contains(&STANDARD.encode("KEY")));
    }
}
