//! Passes that read the service cluster from the operator's live objects
//! (`gantry_controller::live`), kept by real kube-runtime watches of the API
//! double: what a settled tenant's full pass still reads, and that drift and
//! leftovers the watches report are put right without reading the API.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gantry_controller::api::TenantControlPlane;
use gantry_controller::live::{LiveObjects, watch};
use gantry_controller::reconcile::pipeline::Outcome;
use serde_json::json;
use support::api_double::InMemoryApiServerDouble;
use support::tenant::{TenantBuilder, masters_running, tenant_factory};
use tokio::sync::mpsc;

/// A Ready tenant in `double`, and the live objects that follow it; the
/// names of tenants with news arrive on the receiver.
struct Fixture {
    double: InMemoryApiServerDouble,
    tenant_api: InMemoryApiServerDouble,
    tcp: TenantControlPlane,
    live: Arc<LiveObjects>,
    news: mpsc::UnboundedReceiver<String>,
    /// The task that runs the watches.
    watching: Option<tokio::task::JoinHandle<()>>,
}

impl Fixture {
    /// A Ready, settled tenant, and live objects that follow it.
    async fn ready() -> Self {
        let mut fixture = Self::settled().await;
        fixture.follow().await;
        fixture
    }

    /// A Ready, settled tenant; nothing follows it yet.
    async fn settled() -> Self {
        let double = InMemoryApiServerDouble::new();
        let tenant_api = InMemoryApiServerDouble::new();
        let tcp = TenantBuilder::new("tenant-a").store(&double);
        let fixture = Fixture {
            double,
            tenant_api,
            tcp,
            live: Arc::new(LiveObjects::new()),
            news: mpsc::unbounded_channel().1,
            watching: None,
        };
        fixture.pass(false).await;
        masters_running(&fixture.double);
        fixture.pass(false).await;
        assert!(fixture.pass(false).await.is_steady(), "settled");
        fixture
    }

    /// Starts the watches and waits for their first lists; the news of
    /// those lists is dropped, so what arrives later is news of a change.
    async fn follow(&mut self) {
        let (sender, mut news) = mpsc::unbounded_channel();
        let follow = watch::follow(self.double.client(), self.live.clone());
        self.watching = Some(tokio::spawn(follow.for_each(move |tenant| {
            let _ = sender.send(tenant);
            async {}
        })));
        let listing = self.live.wait_synced(Duration::from_secs(10)).await;
        assert!(listing.is_empty(), "still listing {listing:?}");
        while news.try_recv().is_ok() {}
        self.news = news;
    }

    /// One pass, reading from the live objects (`live`) or from the API.
    async fn pass(&self, live: bool) -> Outcome {
        let tenant_client = tenant_factory(&self.tenant_api);
        let live = live.then(|| self.live.clone());
        support::passes::pass(&self.double, tenant_client, &self.tcp, live).await
    }

    /// Waits until the watches report news of `tenant`.
    async fn news_of(&mut self, tenant: &str) {
        let wait = async {
            while let Some(name) = self.news.recv().await {
                if name == tenant {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("the watches report the change");
    }
}

#[tokio::test]
async fn a_settled_full_pass_from_live_objects_reads_only_the_secrets_list() {
    let fixture = Fixture::ready().await;

    let before = fixture.double.reads().len();
    assert!(fixture.pass(false).await.is_steady());
    let from_api = fixture.double.reads().len() - before;

    let before = fixture.double.reads().len();
    let outcome = fixture.pass(true).await;
    assert!(outcome.is_steady(), "nothing to write: {outcome:?}");
    let reads = fixture.double.reads()[before..].to_vec();
    // The Secrets' data (the PKI, the join token) is never kept in memory.
    assert_eq!(
        reads,
        ["GET /api/v1/namespaces/tcp-tenant-a/secrets"],
        "a settled tenant's full pass from live objects"
    );
    assert!(
        from_api > 10,
        "the same pass from the API reads {from_api} times"
    );
}

#[tokio::test]
async fn a_deleted_object_is_news_and_the_next_pass_puts_it_back() {
    let mut fixture = Fixture::ready().await;
    fixture
        .double
        .forget("networkpolicies", "tcp-tenant-a", "default-deny-ingress");
    fixture.news_of("tenant-a").await;

    let outcome = fixture.pass(true).await;
    assert_eq!(
        outcome.applied.applied,
        ["NetworkPolicy/default-deny-ingress"]
    );
    assert!(
        fixture
            .double
            .get("networkpolicies", "tcp-tenant-a", "default-deny-ingress")
            .is_some()
    );
}

#[tokio::test]
async fn a_leftover_in_the_live_objects_is_pruned() {
    let mut fixture = Fixture::ready().await;
    let leftover = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "leftover", "namespace": "tcp-tenant-a", "labels": {
            "app.kubernetes.io/managed-by": "gantry",
            "gantry.dev/tenant": "tenant-a", "gantry.dev/set": "service"}},
        "data": {}
    });
    fixture
        .double
        .put("", "v1", "configmaps", "tcp-tenant-a", leftover);
    fixture.news_of("tenant-a").await;

    let outcome = fixture.pass(true).await;
    assert_eq!(outcome.applied.pruned, ["ConfigMap/leftover"]);
    assert!(
        fixture
            .double
            .get("configmaps", "tcp-tenant-a", "leftover")
            .is_none()
    );
}

/// A CA Secret that the watches do not hold (restored by hand without
/// gantry's labels) is found by the pass's own read of the Secrets and kept:
/// no second create, no conflict.
#[tokio::test]
async fn a_ca_secret_without_gantrys_labels_is_kept() {
    let mut fixture = Fixture::settled().await;
    let mut ca = fixture.double.get("secrets", "tcp-tenant-a", "ca").unwrap();
    ca["metadata"].as_object_mut().unwrap().remove("labels");
    fixture
        .double
        .put("", "v1", "secrets", "tcp-tenant-a", ca.clone());
    fixture.follow().await;
    let secret = gantry_renderer::kinds::find("v1", "Secret").unwrap();
    assert!(
        fixture
            .live
            .get(secret, Some("tcp-tenant-a"), "ca")
            .is_none()
    );

    let outcome = fixture.pass(true).await;
    assert!(
        outcome.applied.kept.contains(&"Secret/ca".to_string()),
        "{outcome:?}"
    );
    assert_eq!(
        fixture.double.get("secrets", "tcp-tenant-a", "ca").unwrap()["data"],
        ca["data"]
    );
}

/// A CA recreated on purpose (`gantry.dev/recreate-ca`) is written even
/// while the watches still hold the deleted Secret.
#[tokio::test]
async fn a_recreated_ca_is_written_though_the_watches_lag() {
    let mut fixture = Fixture::ready().await;
    fixture.watching.take().unwrap().abort();
    let secret = gantry_renderer::kinds::find("v1", "Secret").unwrap();
    fixture.double.forget("secrets", "tcp-tenant-a", "ca");
    assert!(
        fixture
            .live
            .get(secret, Some("tcp-tenant-a"), "ca")
            .is_some(),
        "stale"
    );
    let stored = fixture
        .double
        .get("tenantcontrolplanes", "", "tenant-a")
        .unwrap();
    let hash = stored["status"]["caCertHash"].as_str().unwrap().to_string();
    fixture.tcp.metadata.annotations =
        Some([("gantry.dev/recreate-ca".to_string(), hash.clone())].into());

    let outcome = fixture.pass(true).await;
    assert!(
        outcome.applied.applied.contains(&"Secret/ca".to_string()),
        "{outcome:?}"
    );
    assert!(
        fixture
            .double
            .get("secrets", "tcp-tenant-a", "ca")
            .is_some()
    );
    assert_ne!(outcome.status.ca_cert_hash.as_deref(), Some(hash.as_str()));
}
