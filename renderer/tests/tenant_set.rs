//! The tenant set: what `kubeadm join` and the tenant's nodes find in the
//! tenant cluster, object by object, as kubeadm's own phases make it.

mod fixture;

use fixture::find;
use gantry_pki::jws;
use gantry_renderer::render;
use serde_json::Value;

#[test]
fn the_tenant_set_is_joinable_as_kubeadm_expects() {
    let input = fixture::input();
    let pki = fixture::pki(&input);
    let rendered = render(&input, &pki).unwrap();
    let cluster_info = find(&rendered.tenant, "ConfigMap", "cluster-info");
    assert_eq!(cluster_info["metadata"]["namespace"], "kube-public");
    let kubeconfig = cluster_info["data"]["kubeconfig"].as_str().unwrap();
    assert_eq!(
        kubeconfig.as_bytes(),
        pki.cluster_info_kubeconfig(),
        "published byte for byte"
    );
    let signature = cluster_info["data"]["jws-kubeconfig-abcdef"]
        .as_str()
        .unwrap();
    assert!(jws::detached_signature_is_valid(
        signature,
        kubeconfig.as_bytes(),
        "abcdef",
        "0123456789abcdef"
    ));

    let token = find(&rendered.tenant, "Secret", "bootstrap-token-abcdef");
    assert_eq!(token["type"], "bootstrap.kubernetes.io/token");
    assert_eq!(token["stringData"]["usage-bootstrap-signing"], "true");
    assert_eq!(token["stringData"]["expiration"], "2026-11-23T10:00:00Z");

    let role = find(
        &rendered.tenant,
        "Role",
        "kubeadm:bootstrap-signer-clusterinfo",
    );
    assert_eq!(
        role["rules"][0]["resourceNames"],
        serde_json::json!(["cluster-info"])
    );
    let binding = find(
        &rendered.tenant,
        "RoleBinding",
        "kubeadm:bootstrap-signer-clusterinfo",
    );
    assert_eq!(binding["subjects"][0]["name"], "system:anonymous");

    // kubeadm-join.md's RBAC table, binding for binding.
    let bootstrappers = "system:bootstrappers:kubeadm:default-node-token";
    for (kind, name, role, subjects) in [
        (
            "ClusterRoleBinding",
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            vec![bootstrappers],
        ),
        (
            "ClusterRoleBinding",
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![bootstrappers],
        ),
        (
            "ClusterRoleBinding",
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec!["system:nodes"],
        ),
        (
            "ClusterRoleBinding",
            "kubeadm:get-nodes",
            "kubeadm:get-nodes",
            vec![bootstrappers],
        ),
        (
            "RoleBinding",
            "kubeadm:nodes-kubeadm-config",
            "kubeadm:nodes-kubeadm-config",
            vec![bootstrappers, "system:nodes"],
        ),
        (
            "RoleBinding",
            "kubeadm:kubelet-config",
            "kubeadm:kubelet-config",
            vec![bootstrappers, "system:nodes"],
        ),
        (
            "RoleBinding",
            "kube-proxy",
            "kube-proxy",
            vec![bootstrappers],
        ),
        (
            "ClusterRoleBinding",
            "kubeadm:node-proxier",
            "system:node-proxier",
            vec!["kube-proxy"],
        ),
        (
            "ClusterRoleBinding",
            "kubeadm:cluster-admins",
            "cluster-admin",
            vec!["kubeadm:cluster-admins"],
        ),
        (
            "ClusterRoleBinding",
            "kubeadm:apiserver-kubelet-client",
            "system:kubelet-api-admin",
            vec!["kube-apiserver-kubelet-client"],
        ),
    ] {
        let binding = find(&rendered.tenant, kind, name);
        assert_eq!(binding["roleRef"]["name"], role, "{name}");
        let names: Vec<&str> = binding["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, subjects, "{name}");
    }

    let kubeadm_config =
        find(&rendered.tenant, "ConfigMap", "kubeadm-config")["data"]["ClusterConfiguration"]
            .as_str()
            .unwrap();
    let kubeadm_config: Value = serde_yaml::from_str(kubeadm_config).unwrap();
    assert_eq!(kubeadm_config["apiVersion"], "kubeadm.k8s.io/v1beta4");
    assert_eq!(kubeadm_config["kubernetesVersion"], "v1.35.5");
    assert_eq!(kubeadm_config["controlPlaneEndpoint"], "203.0.113.10:6443");
    assert_eq!(kubeadm_config["networking"]["podSubnet"], "10.244.0.0/16");

    let kubelet = find(&rendered.tenant, "ConfigMap", "kubelet-config")["data"]["kubelet"]
        .as_str()
        .unwrap();
    let kubelet: Value = serde_yaml::from_str(kubelet).unwrap();
    let dns = find(&rendered.tenant, "Service", "kube-dns");
    assert_eq!(dns["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(
        kubelet["clusterDNS"],
        serde_json::json!(["10.96.0.10"]),
        "kubelet clusterDNS is kube-dns"
    );
    assert_eq!(kubelet["authentication"]["anonymous"]["enabled"], false);
    assert_eq!(kubelet["rotateCertificates"], true);

    let proxy = &find(&rendered.tenant, "ConfigMap", "kube-proxy")["data"];
    let proxy_kubeconfig: Value =
        serde_yaml::from_str(proxy["kubeconfig.conf"].as_str().unwrap()).unwrap();
    assert_eq!(
        proxy_kubeconfig["clusters"][0]["cluster"]["server"],
        "https://203.0.113.10:6443"
    );
    let proxy_config: Value = serde_yaml::from_str(proxy["config.conf"].as_str().unwrap()).unwrap();
    assert_eq!(proxy_config["kind"], "KubeProxyConfiguration");
}

/// Only the operator's RBAC template is marked privileged, all of it, and
/// nothing of the service set.
#[test]
fn the_privileged_mark_is_on_exactly_the_operator_rbac_template() {
    let input = fixture::input();
    let rendered = render(&input, &fixture::pki(&input)).unwrap();
    for object in rendered.service.iter().chain(&rendered.tenant) {
        assert_eq!(
            object.is_privileged(),
            object.template == "tenant/07-operator-rbac.yaml",
            "{} {} of {}",
            object.kind,
            object.name,
            object.template
        );
    }
    assert_eq!(
        rendered.tenant.iter().filter(|o| o.is_privileged()).count(),
        8
    );
}
