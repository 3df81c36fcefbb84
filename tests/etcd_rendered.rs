//! The etcd that `gantry render` writes really runs, on its own: the
//! StatefulSet's pods, run as a kubelet would (`support/kubelet.rs`), as a
//! 3-member cluster with one test host per member, on the etcd that kubeadm
//! pins for the example's minor. etcdctl with `apiserver-etcd-client` then
//! lists the members under the DNS names their certificates carry, and
//! writes and reads through those names.

use std::time::Duration;

use gantry_tests::control_plane::{etcd_bin, one_at_a_time};
use gantry_tests::kubelet::{PodSpec, Secrets, find, read_objects, run_pod};
use gantry_tests::netns::TestNetwork;
use gantry_tests::{render_example, wait_until};

#[test]
fn the_rendered_etcd_statefulset_runs_as_a_three_member_cluster() {
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = render_example(tmp.path());
    let service = read_objects(&out.join("service"));
    let statefulset = find(&service, "StatefulSet", "etcd");
    let namespace = statefulset["metadata"]["namespace"].as_str().unwrap();
    let replicas = statefulset["spec"]["replicas"].as_u64().unwrap() as usize;
    assert_eq!(replicas, 3);
    let version =
        find(&service, "Deployment", "kube-apiserver")["spec"]["template"]["spec"]["containers"][0]
            ["image"]
            .as_str()
            .unwrap()
            .rsplit(":v")
            .next()
            .unwrap()
            .to_string();

    let mut network = TestNetwork::new("198.18.213");
    let member_host = |i: usize| format!("etcd-{i}.etcd.{namespace}.svc");
    for i in 0..replicas {
        let address = network.address(10 + i as u8);
        network.resolve(&member_host(i), &address);
    }
    let client = network.host("client", 100);
    let secrets = Secrets::from_objects(&service);
    let members: Vec<_> = (0..replicas)
        .map(|i| {
            let host = network.host(&format!("etcd{i}"), 10 + i as u8);
            let pod = PodSpec::of_workload(statefulset, i);
            run_pod(&pod, &secrets, &host, &etcd_bin(&version), tmp.path())
        })
        .collect();
    let logs = || {
        members
            .iter()
            .map(|m| m.log_tail(12))
            .collect::<Vec<_>>()
            .join("\n")
    };

    let endpoints: Vec<String> = (0..replicas)
        .map(|i| format!("https://{}:2379", member_host(i)))
        .collect();
    let etcdctl = |args: &[&str]| {
        client
            .command(etcd_bin(&version).join("etcdctl"))
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg(format!(
                "--cacert={}",
                out.join("pki/etcd/ca.crt").display()
            ))
            .arg(format!(
                "--cert={}",
                out.join("pki/apiserver-etcd-client.crt").display()
            ))
            .arg(format!(
                "--key={}",
                out.join("pki/apiserver-etcd-client.key").display()
            ))
            .args(["--dial-timeout=3s", "--command-timeout=5s"])
            .args(args)
            .output()
            .expect("run etcdctl")
    };
    let healthy = wait_until(Duration::from_secs(60), || {
        etcdctl(&["endpoint", "health"]).status.success()
    });
    assert!(
        healthy,
        "the rendered etcd never became healthy:\n{}",
        logs()
    );
    for member in &members {
        assert!(member.probe("readinessProbe", &client), "{}", logs());
    }
    let members_list = String::from_utf8_lossy(&etcdctl(&["member", "list"]).stdout).into_owned();
    for i in 0..replicas {
        assert!(
            members_list.contains(&format!("etcd-{i}, https://{}:2380", member_host(i))),
            "{members_list}"
        );
    }
    let put = etcdctl(&["put", "/registry/gantry", "rendered"]);
    assert!(
        put.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&put.stderr),
        logs()
    );
    let get = etcdctl(&["get", "/registry/gantry", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "rendered");
}
