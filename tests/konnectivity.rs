//! The konnectivity tunnel on real processes: `gantry konnectivity-server`
//! and `gantry konnectivity-agent`, driven by the client library that
//! kube-apiserver compiles in (`konnectivity-frontend`, built by
//! scripts/install-test-tools from the served
//! `sigs.k8s.io/apiserver-network-proxy/konnectivity-client` module), with
//! the tenant PKI of `gantry pki init`.
//!
//! Two hosts in network namespaces the test makes: "control" (the server,
//! as beside an apiserver in the service cluster) and "tenant" (the agent,
//! as in the tenant cluster). The targets listen on the tenant host's
//! loopback, an address that exists only on the tenant's side: the control
//! host cannot reach them but through the tunnel.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gantry_tests::netns::{Host, TestNetwork};
use gantry_tests::{KillOnDrop, gantry_bin, output_text, pki_init, tool, wait_until};

const AGENT_PORT: u16 = 8132;
const SERVER_HEALTH: u16 = 8133;
const AGENT_HEALTH: u16 = 8134;
const ECHO: &str = "127.0.0.1:9000";

struct Tunnel {
    network: TestNetwork,
    control: Host,
    tenant: Host,
    socket: PathBuf,
    server: Option<KillOnDrop>,
    server_log: PathBuf,
    _agent: KillOnDrop,
    agent_log: PathBuf,
    _echo: KillOnDrop,
    dir: PathBuf,
}

fn logged(command: &mut Command, log: &Path) -> KillOnDrop {
    let file = std::fs::File::create(log).unwrap();
    command
        .env("GANTRY_LOG", "info")
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    KillOnDrop::spawn(command)
}

fn start_server(control: &Host, pki: &Path, socket: &Path, log: &Path) -> KillOnDrop {
    let mut command = control.command(gantry_bin());
    command.args([
        "konnectivity-server",
        "--server-id",
        "server-0",
        "--uds-path",
    ]);
    command.arg(socket);
    command.arg("--cert").arg(pki.join("pki/apiserver.crt"));
    command.arg("--key").arg(pki.join("pki/apiserver.key"));
    command.arg("--agent-ca").arg(pki.join("pki/ca.crt"));
    logged(&mut command, log)
}

/// The agent's command, with the credentials of `pki`.
fn agent_command(tenant: &Host, server: &str, pki: &Path, id: &str) -> Command {
    let mut command = tenant.command(gantry_bin());
    command.args(["konnectivity-agent", "--agent-id", id, "--server", server]);
    command.arg("--ca-cert").arg(pki.join("pki/ca.crt"));
    command
        .arg("--cert")
        .arg(pki.join("pki/konnectivity-agent.crt"));
    command
        .arg("--key")
        .arg(pki.join("pki/konnectivity-agent.key"));
    command
}

fn http_get(host: &Host, url: &str) -> Option<String> {
    let output = host
        .command("curl")
        .args(["-sS", "--max-time", "5", url])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One value of a metrics page.
fn metric(page: &str, name: &str) -> Option<u64> {
    page.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

impl Tunnel {
    fn start(subnet: &str) -> Tunnel {
        let dir = tempfile::tempdir().unwrap().keep();
        let mut network = TestNetwork::new(subnet);
        let control = network.host("control", 1);
        let tenant = network.host("tenant", 2);
        let pki = pki_init(
            &dir,
            "tenant-a",
            &["--endpoint", &format!("{}:6443", control.address)],
        );
        let socket = dir.join("konnectivity-server.socket");
        let server_log = dir.join("server.log");
        let server = start_server(&control, &pki, &socket, &server_log);
        let echo = KillOnDrop::spawn(
            tenant
                .command(tool("konnectivity-frontend"))
                .args(["echo", "-listen", ECHO]),
        );
        let agent_log = dir.join("agent.log");
        let agent = logged(
            &mut agent_command(
                &tenant,
                &format!("{}:{AGENT_PORT}", control.address),
                &pki,
                "agent-0",
            ),
            &agent_log,
        );
        let tunnel = Tunnel {
            network,
            control,
            tenant,
            socket,
            server: Some(server),
            server_log,
            _agent: agent,
            agent_log,
            _echo: echo,
            dir,
        };
        tunnel.wait_for_agents(1);
        tunnel
    }

    fn server_metrics(&self) -> String {
        let url = format!("http://{}:{SERVER_HEALTH}/metrics", self.control.address);
        http_get(&self.control, &url).unwrap_or_default()
    }

    fn wait_for_agents(&self, count: u64) {
        let connected = wait_until(Duration::from_secs(30), || {
            metric(&self.server_metrics(), "konnectivity_server_agent_streams") == Some(count)
        });
        assert!(
            connected,
            "{count} agent streams never connected.\nserver log:\n{}\nagent log:\n{}",
            self.log(&self.server_log),
            self.log(&self.agent_log)
        );
    }

    fn log(&self, path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn frontend(&self, args: &[&str]) -> Output {
        self.control
            .command(tool("konnectivity-frontend"))
            // As the apiserver: the socket by its bare name, in the
            // working directory (docs/architecture.md says why).
            .current_dir(self.socket.parent().unwrap())
            .arg(args[0])
            .arg("-uds")
            .arg(self.socket.file_name().unwrap())
            .args(&args[1..])
            .output()
            .unwrap()
    }

    fn frontend_ok(&self, args: &[&str]) -> String {
        let output = self.frontend(args);
        assert!(
            output.status.success(),
            "konnectivity-frontend {args:?}: {}\nserver log:\n{}\nagent log:\n{}",
            output_text(&output),
            self.log(&self.server_log),
            self.log(&self.agent_log)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn server_rss_kib(&self) -> u64 {
        let server = self.server.as_ref().unwrap();
        // The server is the child of `ip netns exec`, which execs it.
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

#[test]
fn the_apiservers_client_reaches_the_tenants_network_only_through_the_tunnel() {
    let tunnel = Tunnel::start("198.18.126");

    // Without the tunnel, the control side cannot reach the target.
    let direct = tunnel
        .control
        .command("curl")
        .args(["-sS", "--max-time", "3", &format!("http://{ECHO}/")])
        .output()
        .unwrap();
    assert!(
        !direct.status.success(),
        "the target must not be reachable directly"
    );

    // Through it: 16 MiB out and back intact (the Go side checks every byte).
    let copied = tunnel.frontend_ok(&["copy", "-address", ECHO, "-bytes", &(16 << 20).to_string()]);
    let fields: Vec<&str> = copied.split_whitespace().collect();
    assert_eq!(fields[..2], ["ok", &(16u64 << 20).to_string()], "{copied}");
    let seconds: f64 = fields[2].parse().unwrap();
    eprintln!(
        "MEASURE tunnel: 16 MiB echoed through server and agent in {seconds:.3} s ({:.1} MiB/s each way)",
        16.0 / seconds
    );

    // A dial to a port where nothing listens fails with the agent's reason.
    let refused = tunnel.frontend(&["dial", "-address", "127.0.0.1:9"]);
    assert!(!refused.status.success());
    assert!(
        output_text(&refused).contains("refused"),
        "{}",
        output_text(&refused)
    );

    // Thousands of short dials: every route and connection is freed, and
    // the server's memory comes back near where it was.
    let before = tunnel.server_rss_kib();
    let started = Instant::now();
    let dials = tunnel.frontend_ok(&[
        "dials",
        "-address",
        ECHO,
        "-count",
        "3000",
        "-parallel",
        "16",
    ]);
    assert!(dials.starts_with("ok 3000"), "{dials}");
    eprintln!(
        "MEASURE tunnel: 3000 dials (16 at once), each echoing a line, in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let drained = wait_until(Duration::from_secs(20), || {
        let page = tunnel.server_metrics();
        ["frontend_streams", "pending_dials", "connections"]
            .iter()
            .all(|m| metric(&page, &format!("konnectivity_server_{m}")) == Some(0))
    });
    assert!(drained, "routes left behind:\n{}", tunnel.server_metrics());
    let agent_page = http_get(
        &tunnel.tenant,
        &format!("http://127.0.0.1:{AGENT_HEALTH}/metrics"),
    )
    .unwrap();
    assert_eq!(
        metric(&agent_page, "konnectivity_agent_connections"),
        Some(0),
        "{agent_page}"
    );
    let after = tunnel.server_rss_kib();
    eprintln!("MEASURE tunnel: server RSS {before} KiB before the dials, {after} KiB after");
    assert!(
        after < before + 16 * 1024,
        "the server grew from {before} KiB to {after} KiB over 3000 dials"
    );
    drop(tunnel.network);
}

#[test]
fn strangers_and_another_tenants_agent_are_refused() {
    let tunnel = Tunnel::start("198.18.127");
    let server = format!("{}:{AGENT_PORT}", tunnel.control.address);

    // No client certificate at all.
    let stranger = tunnel
        .tenant
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "--insecure",
            &format!("https://{server}/"),
        ])
        .output()
        .unwrap();
    assert!(!stranger.status.success());

    // Tenant B's agent: a certificate of tenant B's CA, with the agent's name.
    let other = pki_init(&tunnel.dir.join("b"), "tenant-b", &[]);
    let b_log = tunnel.dir.join("agent-b.log");
    let mut agent_b = agent_command(&tunnel.tenant, &server, &other, "agent-b");
    let _agent_b = logged(agent_b.args(["--health-address", "127.0.0.1:8135"]), &b_log);

    // Tenant A's own CA, but another name: the agent's CN is required.
    let admin = tunnel.dir.join("admin-as-agent");
    std::fs::create_dir_all(admin.join("pki")).unwrap();
    let pki = tunnel.dir.join("tenant-a");
    std::fs::copy(pki.join("pki/ca.crt"), admin.join("pki/ca.crt")).unwrap();
    std::fs::copy(
        pki.join("pki/apiserver-kubelet-client.crt"),
        admin.join("pki/konnectivity-agent.crt"),
    )
    .unwrap();
    std::fs::copy(
        pki.join("pki/apiserver-kubelet-client.key"),
        admin.join("pki/konnectivity-agent.key"),
    )
    .unwrap();
    let _agent_c = logged(
        agent_command(&tunnel.tenant, &server, &admin, "agent-c")
            .args(["--health-address", "127.0.0.1:8136"]),
        &tunnel.dir.join("agent-c.log"),
    );

    let refusals = wait_until(Duration::from_secs(30), || {
        let log = tunnel.log(&tunnel.server_log);
        log.matches("refused a connection on the agent port")
            .count()
            >= 3
            && log.contains("CN=\\\"kube-apiserver-kubelet-client\\\"")
    });
    let server_log = tunnel.log(&tunnel.server_log);
    assert!(
        refusals,
        "the server did not log three refusals:\n{server_log}"
    );
    assert!(
        tunnel
            .log(&b_log)
            .contains("cannot connect to the konnectivity server"),
        "{}",
        tunnel.log(&b_log)
    );
    // Only tenant A's own agent holds a stream.
    assert_eq!(
        metric(
            &tunnel.server_metrics(),
            "konnectivity_server_agent_streams"
        ),
        Some(1)
    );
    // And tenant B's agent, refused, never serves a dial.
    assert!(!server_log.contains("agent=agent-b"), "{server_log}");
    drop(tunnel.network);
}

#[test]
fn the_agent_reconnects_when_its_server_restarts() {
    let mut tunnel = Tunnel::start("198.18.128");
    let pki = tunnel.dir.join("tenant-a");
    tunnel.server.take().unwrap().kill();
    let restarted = Instant::now();
    tunnel.server = Some(start_server(
        &tunnel.control,
        &pki,
        &tunnel.socket,
        &tunnel.dir.join("server-2.log"),
    ));
    tunnel.server_log = tunnel.dir.join("server-2.log");
    let served = wait_until(Duration::from_secs(40), || {
        tunnel
            .frontend(&["dial", "-address", ECHO])
            .status
            .success()
    });
    assert!(
        served,
        "no dial succeeded after the restart.\nagent log:\n{}",
        tunnel.log(&tunnel.agent_log)
    );
    eprintln!(
        "MEASURE tunnel: first successful dial {:.1} s after the server restarted",
        restarted.elapsed().as_secs_f64()
    );
    drop(tunnel.network);
}

/// The figures of docs/benchmarks.md ("The konnectivity tunnel"): the same
/// client, through the tunnel and directly (from the tenant's side, where the
/// target is reachable), in one run; and the server's and agent's memory at
/// rest and with 100 connections open. Opt-in, and it asserts only that
/// every byte and every dial arrived:
///
///   cargo test --release -p gantry-tests --test konnectivity -- --ignored --nocapture
#[test]
#[ignore = "a benchmark: run it with --ignored (docs/benchmarks.md)"]
fn measure_the_tunnel_beside_the_direct_path() {
    let tunnel = Tunnel::start("198.18.129");
    let agent_pid = tunnel._agent.0.id();
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let direct = |args: &[&str]| -> String {
        let output = tunnel
            .tenant
            .command(tool("konnectivity-frontend"))
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", output_text(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let seconds = |line: &str, field: usize| -> f64 {
        line.split_whitespace().nth(field).unwrap().parse().unwrap()
    };
    eprintln!(
        "MEASURE at rest: server RSS {} KiB, agent RSS {} KiB",
        tunnel.server_rss_kib(),
        rss(agent_pid)
    );
    let size = (64u64 << 20).to_string();
    let copy = ["copy", "-address", ECHO, "-bytes", size.as_str()];
    let dials = [
        "dials",
        "-address",
        ECHO,
        "-count",
        "1000",
        "-parallel",
        "1",
    ];
    for round in 1..=3 {
        let through = seconds(&tunnel.frontend_ok(&copy), 2);
        let plain = seconds(&direct(&copy), 2);
        eprintln!(
            "MEASURE round {round}: 64 MiB echoed: tunnel {:.0} MiB/s, direct {:.0} MiB/s, ratio {:.1}x",
            64.0 / through,
            64.0 / plain,
            through / plain
        );
        // "ok COUNT SECONDS" over 1000 dials: seconds per 1000 = ms per dial.
        let through = seconds(&tunnel.frontend_ok(&dials), 2);
        let plain = seconds(&direct(&dials), 2);
        eprintln!(
            "MEASURE round {round}: one dial and one echoed line, sequential: tunnel {through:.2} ms, direct {plain:.3} ms, ratio {:.0}x",
            through / plain
        );
    }
    // 100 connections open at once.
    let mut hold = tunnel
        .control
        .command(tool("konnectivity-frontend"))
        .current_dir(tunnel.socket.parent().unwrap())
        .args([
            "hold",
            "-uds",
            "konnectivity-server.socket",
            "-address",
            ECHO,
            "-count",
            "100",
            "-seconds",
            "4",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(hold.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, "held 100");
    std::thread::sleep(Duration::from_millis(500));
    eprintln!(
        "MEASURE 100 connections open: server RSS {} KiB, agent RSS {} KiB; server metrics:\n{}",
        tunnel.server_rss_kib(),
        rss(agent_pid),
        tunnel
            .server_metrics()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(hold.wait().unwrap().success());
    drop(tunnel.network);
}

/// An agent with a valid certificate that sends bytes no packet decodes
/// from: the server ends that one stream and logs why; the process and the
/// real agent's stream go on serving.
#[test]
fn a_malformed_agent_stream_ends_that_stream_only() {
    let tunnel = Tunnel::start("198.18.130");
    let pki = tunnel.dir.join("tenant-a");
    // One gRPC message (flag 0, length 64) of 0xff bytes: not protobuf.
    let mut body = vec![0u8, 0, 0, 0, 64];
    body.extend([0xffu8; 64]);
    let garbage = tunnel.dir.join("garbage");
    std::fs::write(&garbage, &body).unwrap();
    let hostile = tunnel
        .tenant
        .command("curl")
        .args(["-s", "--http2", "-m", "10", "-o", "/dev/null"])
        .arg("--cacert")
        .arg(pki.join("pki/ca.crt"))
        .arg("--cert")
        .arg(pki.join("pki/konnectivity-agent.crt"))
        .arg("--key")
        .arg(pki.join("pki/konnectivity-agent.key"))
        .args([
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "-H",
            "agentid: hostile",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", garbage.display()))
        .arg(format!(
            "https://{}:{AGENT_PORT}/AgentService/Connect",
            tunnel.control.address
        ))
        .output()
        .unwrap();
    let ended = wait_until(Duration::from_secs(15), || {
        tunnel
            .log(&tunnel.server_log)
            .lines()
            .any(|l| l.contains("agent disconnected") && l.contains("hostile"))
    });
    assert!(
        ended,
        "the server did not end the hostile stream (curl: {})\n{}",
        output_text(&hostile),
        tunnel.log(&tunnel.server_log)
    );
    // The real agent still carries dials, and only its stream remains.
    tunnel.frontend_ok(&["dial", "-address", ECHO]);
    assert_eq!(
        metric(
            &tunnel.server_metrics(),
            "konnectivity_server_agent_streams"
        ),
        Some(1)
    );
    drop(tunnel.network);
}
