//! Approves kubelet serving certificates in every tenant cluster.
//!
//! Tenant kubelets run with `serverTLSBootstrap: true`: each asks its
//! apiserver for a serving certificate (signer
//! `kubernetes.io/kubelet-serving`), which the tenant's controller-manager
//! signs with the tenant CA once the request is approved. Kubernetes approves
//! no such request by itself, and the apiserver verifies kubelets against
//! the CA (`--kubelet-certificate-authority`), so until one is approved
//! `kubectl logs` and `exec` on that node fail.
//!
//! The operator runs one approver per tenant, started by the pass that
//! bootstraps the tenant cluster and stopped when the tenant is deleted (or
//! found gone, [`KubeletServingApprovers::retain`]) or revokes the
//! operator's access. It
//! watches the tenant's kubelet-serving requests and decides each with the
//! pure rules in [`judge`]: a node gets a certificate only for the names and
//! addresses its Node reports. A request that names an address the Node
//! does not (yet) report is looked at again every [`RETRY`] and denied after
//! [`GRACE`].

pub mod judge;

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

pub use judge::Reserved;
use judge::{KUBELET_SERVING_SIGNER, Verdict, is_pending, judge, requesting_node};

/// How often requests that wait for their Node are looked at again.
pub const RETRY: Duration = Duration::from_secs(5);
/// How long a request may wait for its Node to report what it asks for.
pub const GRACE: Duration = Duration::from_secs(5 * 60);
/// The server ends each watch after this long (below the tenant client's
/// 30-second read timeout), and the watch resumes where it was.
const WATCH_SECONDS: u32 = 20;
/// The reason on conditions gantry writes, so `kubectl describe csr` says who decided.
const APPROVED_REASON: &str = "GantryApprovedNodeAddresses";
const DENIED_REASON: &str = "GantryDeniedForeignNames";

/// Told of every decision written (`Approved` or `Denied`): the operator counts them.
pub type DecisionObserver = Arc<dyn Fn(&'static str) + Send + Sync>;

/// The approvers running in this operator, one per tenant.
#[derive(Default)]
pub struct KubeletServingApprovers {
    running: Mutex<HashMap<String, Running>>,
    observer: Option<DecisionObserver>,
}

struct Running {
    /// A hash of the credential the approver connects with and of what it
    /// reserves: a change restarts it.
    credential: u64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KubeletServingApprovers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Approvers that tell `observer` of each decision they write.
    pub fn with_observer(observer: DecisionObserver) -> Self {
        Self {
            observer: Some(observer),
            ..Self::default()
        }
    }

    /// Starts `tenant`'s approver on `client`, unless it already runs with
    /// the same `credential` (the kubeconfig that `client` was made from)
    /// and the same [`Reserved`] names and addresses.
    pub fn ensure(&self, tenant: &str, credential: &[u8], client: Client, reserved: Reserved) {
        let mut hasher = DefaultHasher::new();
        credential.hash(&mut hasher);
        reserved.hash(&mut hasher);
        let credential = hasher.finish();
        let mut running = self.running.lock().expect("not poisoned");
        if running
            .get(tenant)
            .is_some_and(|r| r.credential == credential && !r.task.is_finished())
        {
            return;
        }
        let span = tracing::info_span!("kubelet_serving", tenant = %tenant);
        let task = tokio::spawn(approve(client, reserved, self.observer.clone()).instrument(span));
        // Replacing an older approver drops it, which stops it.
        running.insert(tenant.to_string(), Running { credential, task });
    }

    /// Stops `tenant`'s approver: the tenant is being deleted, or
    /// gantry-operator's access there was revoked or changed.
    pub fn stop(&self, tenant: &str) {
        self.running.lock().expect("not poisoned").remove(tenant);
    }

    /// Stops the approvers of tenants that `exists` does not know, and
    /// returns their names. A tenant deleted without its finalizer (removed
    /// by hand) gets no last pass to stop its approver.
    pub fn retain(&self, exists: impl Fn(&str) -> bool) -> Vec<String> {
        let mut running = self.running.lock().expect("not poisoned");
        let gone: Vec<String> = running.keys().filter(|t| !exists(t)).cloned().collect();
        for tenant in &gone {
            running.remove(tenant);
        }
        gone
    }

    /// Whether `tenant`'s approver runs.
    pub fn is_running(&self, tenant: &str) -> bool {
        self.running
            .lock()
            .expect("not poisoned")
            .get(tenant)
            .is_some_and(|r| !r.task.is_finished())
    }
}

/// Whether a request still needs another look.
#[derive(Debug, PartialEq, Eq)]
enum Looked {
    Done,
    Again,
}

/// What an approver reads and writes in its tenant.
struct Tenant {
    requests: Api<CertificateSigningRequest>,
    nodes: Api<Node>,
    reserved: Reserved,
    observer: Option<DecisionObserver>,
}

/// Decides the tenant's kubelet-serving requests as they come, until stopped.
async fn approve(client: Client, reserved: Reserved, observer: Option<DecisionObserver>) {
    let tenant = Tenant {
        requests: Api::all(client.clone()),
        nodes: Api::all(client),
        reserved,
        observer,
    };
    let selector = format!("spec.signerName={KUBELET_SERVING_SIGNER}");
    let config = watcher::Config::default()
        .fields(&selector)
        .timeout(WATCH_SECONDS);
    let mut events = watcher(tenant.requests.clone(), config)
        .default_backoff()
        .boxed();
    let mut waiting = BTreeSet::new();
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(watcher::Event::Apply(csr) | watcher::Event::InitApply(csr))) => {
                    let name = csr.name_any();
                    match decide(&tenant, csr).await {
                        Looked::Again => waiting.insert(name),
                        Looked::Done => waiting.remove(&name),
                    };
                }
                Some(Ok(watcher::Event::Delete(csr))) => {
                    waiting.remove(&csr.name_any());
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!(%error, "watching the tenant's kubelet serving requests")
                }
                None => return,
            },
            _ = retry.tick(), if !waiting.is_empty() => {
                waiting = look_again(&tenant, waiting).await;
            }
        }
    }
}

/// Decides each waiting request again; returns those still waiting.
async fn look_again(tenant: &Tenant, waiting: BTreeSet<String>) -> BTreeSet<String> {
    let mut still = BTreeSet::new();
    for name in waiting {
        let looked = match tenant.requests.get_opt(&name).await {
            Ok(Some(csr)) => decide(tenant, csr).await,
            Ok(None) => Looked::Done,
            Err(error) => {
                tracing::warn!(csr = %name, %error, "reading a kubelet serving request");
                Looked::Again
            }
        };
        if looked == Looked::Again {
            still.insert(name);
        }
    }
    still
}

/// Judges one request against the Nodes and writes the decision.
async fn decide(tenant: &Tenant, csr: CertificateSigningRequest) -> Looked {
    if csr.spec.signer_name != KUBELET_SERVING_SIGNER || !is_pending(&csr) {
        return Looked::Done;
    }
    let name = csr.name_any();
    let nodes = match tenant.nodes.list(&Default::default()).await {
        Ok(nodes) => nodes.items,
        Err(error) => {
            tracing::warn!(csr = %name, %error, "listing the Nodes");
            return Looked::Again;
        }
    };
    let node = requesting_node(&csr)
        .and_then(|node_name| nodes.iter().find(|n| n.name_any() == node_name));
    let verdict = match judge(&csr, node, &nodes, &tenant.reserved) {
        Verdict::Wait(reason) if waited_past_grace(&csr) => {
            Verdict::Deny(format!("{reason} after {} s", GRACE.as_secs()))
        }
        verdict => verdict,
    };
    let (type_, reason, message) = match verdict {
        Verdict::NotOurs => return Looked::Done,
        Verdict::Wait(why) => {
            tracing::debug!(csr = %name, why, "waiting for the Node");
            return Looked::Again;
        }
        Verdict::Approve => (
            "Approved",
            APPROVED_REASON,
            "gantry: every name and address is the node's own".to_string(),
        ),
        Verdict::Deny(why) => ("Denied", DENIED_REASON, format!("gantry: {why}")),
    };
    let looked = write_decision(&tenant.requests, csr, type_, reason, message).await;
    if let (Looked::Done, Some(observer)) = (&looked, &tenant.observer) {
        observer(type_);
    }
    looked
}

fn waited_past_grace(csr: &CertificateSigningRequest) -> bool {
    let Some(Time(created)) = csr.metadata.creation_timestamp else {
        return false;
    };
    let grace = k8s_openapi::jiff::SignedDuration::try_from(GRACE).expect("a short duration");
    Timestamp::now().duration_since(created) > grace
}

/// Adds the decision's condition through the `approval` subresource.
async fn write_decision(
    requests: &Api<CertificateSigningRequest>,
    mut csr: CertificateSigningRequest,
    type_: &str,
    reason: &str,
    message: String,
) -> Looked {
    let name = csr.name_any();
    let node = requesting_node(&csr).unwrap_or_default().to_string();
    let status = csr.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: type_.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.clone()),
            last_update_time: Some(Time(Timestamp::now())),
            ..Default::default()
        });
    match requests
        .replace_subresource("approval", &name, &PostParams::default(), &csr)
        .await
    {
        Ok(_) => {
            tracing::info!(csr = %name, %node, decision = type_, message, "kubelet serving request decided");
            Looked::Done
        }
        // Changed meanwhile (409), or the write failed: read it again soon.
        Err(error) => {
            tracing::warn!(csr = %name, %error, "writing the decision on a kubelet serving request");
            Looked::Again
        }
    }
}
