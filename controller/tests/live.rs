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
}

impl Fixture {
    async fn ready() -> Self {
        let double = InMemoryApiServerDouble::new();
        let tenant_api = InMemoryApiServerDouble::new();
        let tcp = TenantBuilder::new("tenant-a").store(&double);
        let mut fixture = Fixture {
            double,
            tenant_api,
            tcp,
            live: Arc::new(LiveObjects::new()),
            news: mpsc::unbounded_channel().1,
        };
        fixture.pass(false).await;
        masters_running(&fixture.double);
        fixture.pass(false).await;
        assert!(fixture.pass(false).await.is_steady(), "settled");
        let (sender, news) = mpsc::unbounded_channel();
        let follow = watch::follow(fixture.double.client(), fixture.live.clone());
        tokio::spawn(follow.for_each(move |tenant| {
            let _ = sender.send(tenant);
            async {}
        }));
        let listing = fixture.live.wait_synced(Duration::from_secs(10)).await;
        assert!(listing.is_empty(), "still listing {listing:?}");
        fixture.news = news;
        fixture
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
