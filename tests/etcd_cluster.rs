//! A real 3-member etcd cluster on 127.0.0.1 running on the certificates
//! `gantry pki init` wrote, with client and peer certificate authentication on.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gantry_tests::{KillOnDrop, free_port, pki_init, tool, wait_until};

struct Member {
    client_url: String,
    process: KillOnDrop,
    log: PathBuf,
}

fn start_cluster(pki: &Path, work: &Path) -> Vec<Member> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial_cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=https://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let pki_file = |name: &str| pki.join("pki/etcd").join(name);
    ports
        .iter()
        .enumerate()
        .map(|(i, (client, peer))| {
            let client_url = format!("https://127.0.0.1:{client}");
            let peer_url = format!("https://127.0.0.1:{peer}");
            let log = work.join(format!("m{i}.log"));
            let mut command = Command::new(tool("etcd"));
            command
                .arg(format!("--name=m{i}"))
                .arg(format!(
                    "--data-dir={}",
                    work.join(format!("m{i}.data")).display()
                ))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={initial_cluster}"))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=gantry-test")
                .arg("--client-cert-auth=true")
                .arg(format!(
                    "--trusted-ca-file={}",
                    pki_file("ca.crt").display()
                ))
                .arg(format!("--cert-file={}", pki_file("server.crt").display()))
                .arg(format!("--key-file={}", pki_file("server.key").display()))
                .arg("--peer-client-cert-auth=true")
                .arg(format!(
                    "--peer-trusted-ca-file={}",
                    pki_file("ca.crt").display()
                ))
                .arg(format!(
                    "--peer-cert-file={}",
                    pki_file("peer.crt").display()
                ))
                .arg(format!(
                    "--peer-key-file={}",
                    pki_file("peer.key").display()
                ))
                .arg("--listen-metrics-urls=http://127.0.0.1:0")
                .stdout(File::create(&log).unwrap())
                .stderr(File::create(&log).unwrap());
            Member {
                client_url,
                process: KillOnDrop::spawn(&mut command),
                log,
            }
        })
        .collect()
}

/// etcdctl against `endpoints` with the given CA and (optional) client pair.
fn etcdctl(endpoints: &[&str], ca: &Path, client: Option<(&Path, &Path)>, args: &[&str]) -> Output {
    let mut command = Command::new(tool("etcdctl"));
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg(format!("--cacert={}", ca.display()))
        .args(["--dial-timeout=3s", "--command-timeout=5s"]);
    if let Some((cert, key)) = client {
        command
            .arg(format!("--cert={}", cert.display()))
            .arg(format!("--key={}", key.display()));
    }
    command.args(args).output().expect("run etcdctl")
}

fn logs(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            format!(
                "--- {}\n{}",
                m.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn etcd_cluster_runs_on_the_tenant_pki_and_refuses_strangers() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = pki_init(tmp.path(), "tenant-a", &["--endpoint", "203.0.113.10"]);
    let theirs = pki_init(tmp.path(), "tenant-b", &["--endpoint", "203.0.113.11"]);
    let mut members = start_cluster(&ours, tmp.path());
    let endpoints: Vec<String> = members.iter().map(|m| m.client_url.clone()).collect();
    let all: Vec<&str> = endpoints.iter().map(String::as_str).collect();

    let ca = ours.join("pki/etcd/ca.crt");
    let client = (
        ours.join("pki/apiserver-etcd-client.crt"),
        ours.join("pki/apiserver-etcd-client.key"),
    );
    let client = Some((client.0.as_path(), client.1.as_path()));
    let healthcheck = (
        ours.join("pki/etcd/healthcheck-client.crt"),
        ours.join("pki/etcd/healthcheck-client.key"),
    );

    // Stops early when a member dies at start-up, so its log says why at once.
    let mut exited_member = None;
    let healthy = wait_until(Duration::from_secs(60), || {
        exited_member = members.iter_mut().position(|m| m.process.has_exited());
        exited_member.is_some()
            || etcdctl(
                &all,
                &ca,
                Some((&healthcheck.0, &healthcheck.1)),
                &["endpoint", "health"],
            )
            .status
            .success()
    });
    if let Some(index) = exited_member {
        panic!(
            "etcd member m{index} exited during start-up:\n{}",
            logs(&members)
        );
    }
    assert!(
        healthy,
        "the 3 members never became healthy:\n{}",
        logs(&members)
    );
    let list = etcdctl(&all, &ca, client, &["member", "list"]);
    assert!(list.status.success());
    assert_eq!(
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .filter(|l| l.contains("started"))
            .count(),
        3
    );

    // The apiserver's etcd client certificate can write and read.
    let put = etcdctl(&all, &ca, client, &["put", "/registry/gantry", "hello"]);
    assert!(
        put.status.success(),
        "put failed: {}",
        String::from_utf8_lossy(&put.stderr)
    );
    let get = etcdctl(
        &all,
        &ca,
        client,
        &["get", "/registry/gantry", "--print-value-only"],
    );
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "hello");

    // Another tenant's client certificate is refused, even when it trusts our CA.
    let stranger = (
        theirs.join("pki/apiserver-etcd-client.crt"),
        theirs.join("pki/apiserver-etcd-client.key"),
    );
    let refused = etcdctl(
        &all,
        &ca,
        Some((&stranger.0, &stranger.1)),
        &["get", "/registry/gantry"],
    );
    assert!(
        !refused.status.success(),
        "a foreign client certificate was accepted"
    );
    assert!(
        String::from_utf8_lossy(&refused.stdout).trim().is_empty(),
        "a foreign client read data"
    );

    // No client certificate at all is refused.
    let anonymous = etcdctl(&all, &ca, None, &["get", "/registry/gantry"]);
    assert!(
        !anonymous.status.success(),
        "a client without a certificate was accepted"
    );

    // The server must present our etcd CA's certificate: another CA does not trust it.
    let wrong_ca = etcdctl(
        &all,
        &theirs.join("pki/etcd/ca.crt"),
        client,
        &["get", "/registry/gantry"],
    );
    assert!(
        !wrong_ca.status.success(),
        "the server verified against another tenant's CA"
    );

    // With one member killed the other two keep quorum: writes still succeed.
    // If the killed member led, the survivors first elect a new leader (about
    // a second with etcd's defaults), so the write is retried for a bounded time.
    members[0].process.kill();
    let survivors = &all[1..];
    let mut last_error = String::new();
    let written = wait_until(Duration::from_secs(30), || {
        let put = etcdctl(
            survivors,
            &ca,
            client,
            &["put", "/registry/after-failure", "still-here"],
        );
        last_error = String::from_utf8_lossy(&put.stderr).into_owned();
        put.status.success()
    });
    assert!(
        written,
        "write after member loss failed: {last_error}\n{}",
        logs(&members)
    );
    let get = etcdctl(
        survivors,
        &ca,
        client,
        &["get", "/registry/after-failure", "--print-value-only"],
    );
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "still-here");
}
