//! `gantry render` on the real binary refuses what issue 25 item 15 found
//! accepted: each case is examples/tenant-a.yaml with one change (or one
//! flag), and each must fail with exit code 2, one line on stderr naming
//! the field and quoting the value as written, and no `--out` folder.

use gantry_tests::{gantry, repo_root};

/// One refused manifest: what to change in the example, the flags to add,
/// and the field and value (as `"value"` in the message) the error names.
struct Case {
    name: &'static str,
    change: fn(&str) -> String,
    flags: &'static [&'static str],
    field: &'static str,
    value: &'static str,
}

const END: &str = "  imageRepository: registry.k8s.io\n";

/// `text` with `from` replaced by `to`; `from` must be there.
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the example");
    text.replacen(from, to, 1)
}

fn endpoint(text: &str, to: &str) -> String {
    replace(text, "endpoint: 203.0.113.10:6443", to)
}

fn san(text: &str, to: &str) -> String {
    replace(text, "- api.tenant-a.example.com", to)
}

fn append(text: &str, spec: &str) -> String {
    replace(text, END, &format!("{END}{spec}"))
}

fn metadata(text: &str, more: &str) -> String {
    replace(
        text,
        "  name: tenant-a\n",
        &format!("  name: tenant-a\n{more}"),
    )
}

fn cases() -> Vec<Case> {
    vec![
        // 1. Addresses that name no host, as the endpoint and as a SAN.
        Case {
            name: "broadcast endpoint",
            change: |t| endpoint(t, "endpoint: 255.255.255.255:6443"),
            flags: &[],
            field: "spec.apiServer.endpoint",
            value: "255.255.255.255:6443",
        },
        Case {
            name: "reserved endpoint",
            change: |t| endpoint(t, "endpoint: 240.0.0.1:6443"),
            flags: &[],
            field: "spec.apiServer.endpoint",
            value: "240.0.0.1:6443",
        },
        Case {
            name: "this-network endpoint",
            change: |t| endpoint(t, "endpoint: 0.1.2.3:6443"),
            flags: &[],
            field: "spec.apiServer.endpoint",
            value: "0.1.2.3:6443",
        },
        Case {
            name: "IPv4-mapped endpoint",
            change: |t| endpoint(t, "endpoint: '[::ffff:127.0.0.1]:6443'"),
            flags: &[],
            field: "spec.apiServer.endpoint",
            value: "[::ffff:127.0.0.1]:6443",
        },
        Case {
            name: "IPv4-mapped endpoint of an IPv6 tenant",
            change: |t| {
                let t = replace(t, "      loadBalancerIP: 203.0.113.10\n", "");
                let t = replace(
                    &t,
                    "serviceCIDR: 10.96.0.0/12",
                    "serviceCIDR: fd00:10:96::/108",
                );
                let t = replace(&t, "podCIDR: 10.244.0.0/16", "podCIDR: fd00:10:244::/56");
                endpoint(&t, "endpoint: '[::ffff:203.0.113.10]:6443'")
            },
            flags: &[],
            field: "spec.apiServer.endpoint",
            value: "[::ffff:203.0.113.10]:6443",
        },
        Case {
            name: "broadcast SAN",
            change: |t| san(t, "- 255.255.255.255"),
            flags: &[],
            field: "spec.apiServer.certSANs[0]",
            value: "255.255.255.255",
        },
        Case {
            name: "reserved SAN",
            change: |t| san(t, "- 240.0.0.1"),
            flags: &[],
            field: "spec.apiServer.certSANs[0]",
            value: "240.0.0.1",
        },
        Case {
            name: "IPv4-mapped SAN",
            change: |t| san(t, "- '::ffff:127.0.0.1'"),
            flags: &[],
            field: "spec.apiServer.certSANs[0]",
            value: "::ffff:127.0.0.1",
        },
        // 2. Tolerations.
        Case {
            name: "Exists with a value",
            change: |t| {
                append(
                    t,
                    "  tolerations:\n  - key: a\n    operator: Exists\n    value: b\n",
                )
            },
            flags: &[],
            field: "spec.tolerations[0].value",
            value: "b",
        },
        Case {
            name: "tolerationSeconds without NoExecute",
            change: |t| {
                append(
                    t,
                    "  tolerations:\n  - key: a\n    operator: Equal\n    value: b\n    \
                     effect: NoSchedule\n    tolerationSeconds: 30\n",
                )
            },
            flags: &[],
            field: "spec.tolerations[0].tolerationSeconds",
            value: "30",
        },
        Case {
            name: "an empty key with Equal",
            change: |t| append(t, "  tolerations:\n  - operator: Equal\n    value: b\n"),
            flags: &[],
            field: "spec.tolerations[0].key",
            value: "",
        },
        // 3. The etcd volume.
        Case {
            name: "a volume of a thousandth of a byte",
            change: |t| replace(t, "size: 10Gi", "size: 1m"),
            flags: &[],
            field: "spec.etcd.storage.size",
            value: "1m",
        },
        Case {
            name: "a volume of four bytes",
            change: |t| replace(t, "size: 10Gi", "size: '4'"),
            flags: &[],
            field: "spec.etcd.storage.size",
            value: "4",
        },
        Case {
            name: "a volume of 1e100 bytes",
            change: |t| replace(t, "size: 10Gi", "size: 1e100"),
            flags: &[],
            field: "spec.etcd.storage.size",
            value: "1e100",
        },
        // 4. Resources.
        Case {
            name: "an unknown resource",
            change: |t| {
                replace(
                    t,
                    "  controllerManager:\n",
                    "    resources:\n      requests:\n        gpu: '1'\n  controllerManager:\n",
                )
            },
            flags: &[],
            field: "spec.apiServer.resources.requests",
            value: "gpu",
        },
        Case {
            name: "a limit below its request",
            change: |t| {
                replace(
                    t,
                    "  controllerManager:\n",
                    "    resources:\n      requests:\n        memory: 1Gi\n      limits:\n        \
                     memory: 512Mi\n  controllerManager:\n",
                )
            },
            flags: &[],
            field: "spec.apiServer.resources.limits.memory",
            value: "512Mi",
        },
        // 5. The storage class.
        Case {
            name: "a storage class that is no name",
            change: |t| {
                replace(
                    t,
                    "size: 10Gi",
                    "size: 10Gi\n      storageClassName: Bad Class!",
                )
            },
            flags: &[],
            field: "spec.etcd.storage.storageClassName",
            value: "Bad Class!",
        },
        // 6. The image repository.
        Case {
            name: "a registry with a scheme",
            change: |t| replace(t, END, "  imageRepository: https://registry.k8s.io\n"),
            flags: &[],
            field: "spec.imageRepository",
            value: "https://registry.k8s.io",
        },
        Case {
            name: "a registry with a trailing slash",
            change: |t| replace(t, END, "  imageRepository: registry.k8s.io/\n"),
            flags: &[],
            field: "spec.imageRepository",
            value: "registry.k8s.io/",
        },
        Case {
            name: "a registry path with ..",
            change: |t| replace(t, END, "  imageRepository: registry.k8s.io/../k8s\n"),
            flags: &[],
            field: "spec.imageRepository",
            value: "registry.k8s.io/../k8s",
        },
        // 7. Labels.
        Case {
            name: "a label key",
            change: |t| metadata(t, "  labels:\n    'bad key!': x\n"),
            flags: &[],
            field: "metadata.labels",
            value: "bad key!",
        },
        Case {
            name: "a label value",
            change: |t| metadata(t, "  labels:\n    team: 'not ok!'\n"),
            flags: &[],
            field: "metadata.labels.team",
            value: "not ok!",
        },
        // 8. A pod CIDR smaller than a node's /24.
        Case {
            name: "a /28 pod CIDR",
            change: |t| replace(t, "podCIDR: 10.244.0.0/16", "podCIDR: 10.244.0.0/28"),
            flags: &[],
            field: "spec.networking.podCIDR",
            value: "10.244.0.0/28",
        },
        // kube-proxy's conntrack entries per core: 0 (leave the node's
        // nf_conntrack_max alone) up to 1048576, as the CRD allows.
        Case {
            name: "a negative kubeProxy.conntrackMaxPerCore",
            change: |t| append(t, "  kubeProxy:\n    conntrackMaxPerCore: -1\n"),
            flags: &[],
            field: "spec.kubeProxy.conntrackMaxPerCore",
            value: "-1",
        },
        Case {
            name: "a huge kubeProxy.conntrackMaxPerCore",
            change: |t| append(t, "  kubeProxy:\n    conntrackMaxPerCore: 1048577\n"),
            flags: &[],
            field: "spec.kubeProxy.conntrackMaxPerCore",
            value: "1048577",
        },
        // 9. 10 MB of annotations (the value is too long to quote: the key is named).
        Case {
            // 300 KB: over Kubernetes' 256 KiB, under the 1 MiB a manifest may
            // have (a 10 MB manifest is refused before it is parsed, in
            // tests/bundle_hostile.rs).
            name: "a 300 KB annotation",
            change: |t| {
                metadata(
                    t,
                    &format!("  annotations:\n    big: {}\n", "x".repeat(300_000)),
                )
            },
            flags: &[],
            field: "metadata.annotations",
            value: "big",
        },
        // 10. Thousands of SANs (100,000 no longer fit the 1 MiB a manifest
        // may have): the 101st is named.
        Case {
            name: "20,000 SANs",
            change: |t| {
                let sans: String = (0..20_000)
                    .map(|i| format!("      - n{i}.example.com\n"))
                    .collect();
                replace(t, "      - api.tenant-a.example.com\n", &sans)
            },
            flags: &[],
            field: "spec.apiServer.certSANs[100]",
            value: "n100.example.com",
        },
        // 11. A default route among the service cluster's CIDRs.
        Case {
            name: "--service-cluster-cidrs 0.0.0.0/0",
            change: str::to_string,
            flags: &["--service-cluster-cidrs", "10.0.0.0/8,0.0.0.0/0"],
            field: "--service-cluster-cidrs",
            value: "0.0.0.0/0",
        },
        Case {
            name: "--service-cluster-cidrs ::/0",
            change: str::to_string,
            flags: &["--service-cluster-cidrs", "::/0"],
            field: "--service-cluster-cidrs",
            value: "::/0",
        },
        // 12. extraArgs that weaken the controller-manager and scheduler.
        Case {
            name: "leader-elect false",
            change: |t| {
                replace(
                    t,
                    "  etcd:\n",
                    "    extraArgs:\n      leader-elect: 'false'\n  etcd:\n",
                )
            },
            flags: &[],
            field: "spec.scheduler.extraArgs.leader-elect",
            value: "false",
        },
        Case {
            name: "every path without authorization",
            change: |t| {
                replace(
                    t,
                    "  scheduler:\n",
                    "    extraArgs:\n      authorization-always-allow-paths: /*\n  scheduler:\n",
                )
            },
            flags: &[],
            field: "spec.controllerManager.extraArgs.authorization-always-allow-paths",
            value: "/*",
        },
        // 13. A duration quoted as written ("9000h", not "375d").
        Case {
            name: "renewBefore past the validity",
            change: |t| replace(t, "renewBefore: 720h", "renewBefore: 9000h"),
            flags: &[],
            field: "spec.pki.renewBefore",
            value: "9000h",
        },
        Case {
            name: "an endpoint without its port",
            change: |t| endpoint(t, "endpoint: 127.0.0.1"),
            flags: &[],
            field: "spec.apiServer.endpoint",
            value: "127.0.0.1",
        },
    ]
}

#[test]
fn render_refuses_each_case_with_one_line_naming_the_field_and_the_value() {
    let example = std::fs::read_to_string(repo_root().join("examples/tenant-a.yaml")).unwrap();
    let mut failures = Vec::new();
    for case in cases() {
        let tmp = tempfile::tempdir().unwrap();
        let manifest = tmp.path().join("tcp.yaml");
        std::fs::write(&manifest, (case.change)(&example)).unwrap();
        let out = tmp.path().join("out");
        let mut args = vec![
            "render",
            manifest.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(case.flags);
        let output = gantry(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let named = format!("{} {:?}: ", case.field, case.value);
        let problems: Vec<String> = [
            (output.status.code() != Some(2))
                .then(|| format!("exit code {:?}, not 2", output.status.code())),
            (stderr.lines().count() != 1).then(|| "not exactly one line on stderr".into()),
            (!stderr.starts_with(&format!("error: {named}")))
                .then(|| format!("does not start with `error: {named}`")),
            out.exists().then(|| "created --out".into()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !problems.is_empty() {
            let shown: String = stderr.chars().take(400).collect();
            failures.push(format!(
                "{}: {}\n  stderr: {shown}",
                case.name,
                problems.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_example_itself_still_renders() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let manifest = repo_root().join("examples/tenant-a.yaml");
    let output = gantry(&[
        "render",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--service-cluster-cidrs",
        "10.0.0.0/8,fd00::/8",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
