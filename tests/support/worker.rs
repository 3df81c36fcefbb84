//! A worker node of the test's own: containerd (Debian's), runc and the CNI
//! bridge plugin, with the real kubelet started the way kubeadm's systemd
//! unit starts it. Everything the node writes stays in the test's folder:
//!
//! - **Network**: a host on the test's bridge (see `netns.rs`), with a
//!   default route onto that bridge, where nothing leads on. The kubelet
//!   takes its node IP from the default route's interface.
//! - **Mounts**: a mount namespace of its own, kept in a file, so kubeadm,
//!   containerd, the kubelet and `ctr` all see one node. In it, /etc, /var
//!   and /usr are overlays whose writes go to the test's folder (kubeadm
//!   writes /etc/kubernetes and /var/lib/kubelet; kube-proxy's pod mounts
//!   /lib/modules, which the node has empty), /run is a fresh tmpfs (the
//!   containerd socket, pod network namespaces), and /etc/hosts and
//!   /etc/resolv.conf are the test network's.
//! - **Hostname**: a UTS namespace of its own, so the node is named after it.
//! - **Cgroups**: the kubelet's `cgroupRoot` is a group of the test's own in
//!   every hierarchy, removed at the end with every process in it.
//! - **Kernel settings**: the kubelet insists on four sysctls that are
//!   machine-wide (`vm.overcommit_memory`, `vm.panic_on_oom`, `kernel.panic`,
//!   `kernel.panic_on_oops`) and would set them. The node's view of those
//!   four /proc/sys files is a file of the test's holding the value the
//!   kubelet expects, and the kubelet runs with `protectKernelDefaults`, so it
//!   checks them and never writes one. The machine's own stay as they are.
//! - **OOM scores**: the machine's root lacks CAP_SYS_RESOURCE, so no process
//!   may lower its OOM score; containerd runs with `restrict_oom_score_adj`.
//!
//! On drop, every process of the node (those in its mount namespace, and
//! the containers in its cgroups) is killed, and its cgroups, mounts and
//! namespaces are removed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod config;
mod teardown;
use config::{cni_config, containerd_config, overlay};

use crate::netns::{Host, TestNetwork};
use crate::{KillOnDrop, run_ok, wait_until};

/// What the kubelet expects of the four machine-wide settings it checks
/// (pkg/kubelet/cm/container_manager_linux.go, `setupKernelTunables`).
const KERNEL_DEFAULTS: [(&str, &str); 4] = [
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
];

/// Where the CNI plugins of Debian's containernetworking-plugins live.
const CNI_BIN: &str = "/usr/lib/cni";

/// A running worker node; see the module docs.
pub struct Worker {
    pub host: Host,
    pub name: String,
    dir: PathBuf,
    namespaces: PathBuf,
    cgroup: String,
    containerd: Option<KillOnDrop>,
    kubelet: Option<KillOnDrop>,
}

/// The programs the worker needs from the machine, with the package that
/// brings each.
fn require_node_tools() {
    for (program, package) in [
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("runc", "runc"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("nft", "nftables"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{program} is not installed: run scripts/install-test-tools (apt-get install {package})"
        );
    }
    assert!(
        Path::new(CNI_BIN).join("bridge").exists(),
        "the CNI bridge plugin is not in {CNI_BIN}: run scripts/install-test-tools \
         (apt-get install containernetworking-plugins)"
    );
}

/// Room a node needs besides its images: containerd's metadata, the logs of
/// containerd and the kubelet, and the pods' volumes.
const NODE_DISK_HEADROOM: u64 = 512 << 20;

/// Refuses to start a node on a disk that cannot hold its images, which
/// containerd keeps twice (the archive's layers and the unpacked snapshot).
/// Without this, a full disk shows as an `ctr images import` error halfway
/// through a test. It counts this node only: the tests that start nodes
/// take `one_at_a_time()`, and a test with two nodes starts them in turn.
fn require_disk_for_images(dir: &Path, images: &[PathBuf]) {
    let archives: u64 = images
        .iter()
        .map(|image| std::fs::metadata(image).map_or(0, |m| m.len()))
        .sum();
    let needed = 2 * archives + NODE_DISK_HEADROOM;
    let free = crate::free_bytes(dir);
    let mib = |bytes: u64| bytes >> 20;
    assert!(
        free >= needed,
        "{} has {} MiB free, and this test node needs about {} MiB ({} MiB of container images, \
         kept twice by containerd, and {} MiB for logs and volumes): free disk space there, \
         or set TMPDIR to a folder on a larger disk",
        dir.display(),
        mib(free),
        mib(needed),
        mib(archives),
        mib(NODE_DISK_HEADROOM)
    );
}

impl Worker {
    /// Starts a node named `name` at `<subnet>.<last_octet>` of `network`,
    /// whose pods get addresses from `pod_cidr` (a /24), with containerd
    /// running and `images` (docker-archive files) imported. The kubelet
    /// starts with [`Worker::start_kubelet_service`].
    pub fn start(
        network: &mut TestNetwork,
        name: &str,
        last_octet: u8,
        pod_cidr: &str,
        dir: &Path,
        images: &[PathBuf],
    ) -> Self {
        require_node_tools();
        std::fs::create_dir_all(dir).unwrap();
        require_disk_for_images(dir, images);
        let host = network.host(name, last_octet);
        // The node's name resolves to its address, as kubeadm's preflight
        // and the apiserver expect of a node.
        network.resolve(name, &host.address);
        run_ok(Command::new("ip").args([
            "-n",
            &host.namespace,
            "route",
            "add",
            "default",
            "dev",
            "eth0",
        ]));
        run_ok(
            host.command("sysctl")
                .args(["-qw", "net.ipv4.ip_forward=1"]),
        );
        let mut worker = Worker {
            cgroup: format!("gantry-test-{}-{}", std::process::id(), host.namespace),
            namespaces: dir.join("namespaces"),
            name: name.to_string(),
            dir: dir.to_path_buf(),
            host,
            containerd: None,
            kubelet: None,
        };
        worker.make_cgroups();
        worker.make_namespaces(pod_cidr);
        worker.start_containerd();
        for archive in images {
            run_ok(
                worker
                    .command("ctr")
                    .args(["-n", "k8s.io", "images", "import"])
                    .arg(archive),
            );
        }
        worker
    }

    /// Puts the node behind a router, as a VM on a tenant network of an
    /// OpenStack cloud without a floating IP: it connects out (to the
    /// tenant's endpoint), and nothing outside can open a connection to it
    /// or to its pods. A stateful filter of the node's own network
    /// namespace drops every new connection that arrives on its uplink;
    /// replies to its own connections pass.
    pub fn behind_a_router(&self) {
        let rules = "table inet gantry-router {
  chain input { type filter hook input priority -10; policy accept; iifname \"eth0\" ct state new drop; }
  chain forward { type filter hook forward priority -10; policy accept; iifname \"eth0\" ct state new drop; }
}
";
        let file = self.dir.join("router.nft");
        std::fs::write(&file, rules).unwrap();
        run_ok(self.host.command("nft").arg("-f").arg(&file));
    }

    /// `nsenter` into the node's mount, UTS and network namespaces: a command
    /// that runs on this node.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--mount={}", self.namespaces.join("mnt").display()))
            .arg(format!("--uts={}", self.namespaces.join("uts").display()))
            .arg(format!("--net=/run/netns/{}", self.host.namespace))
            .arg("--")
            .arg(program);
        command
    }

    /// Writes `content` to `path` on the node with `mode` (octal, as
    /// cloud-init's `write_files` does), making its folder.
    pub fn write_file(&self, path: &str, content: &str, mode: &str) {
        use std::io::Write as _;
        let mut child = self
            .command("sh")
            .args([
                "-ec",
                "mkdir -p \"$(dirname \"$1\")\"; cat > \"$1\"; chmod \"$2\" \"$1\"",
                "sh",
                path,
                mode,
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run sh on the node");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(content.as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "writing {path} on the node"
        );
    }

    /// The text of `path` as the node sees it, if it exists.
    pub fn read(&self, path: &str) -> Option<String> {
        let output = self.command("cat").arg(path).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// What containerd and the kubelet have logged so far.
    pub fn logs(&self) -> String {
        let read = |file: &str| std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        let tail = |text: String| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        // The pods' own logs, a few lines each: why a container crashed.
        let pods = self
            .command("sh")
            .args([
                "-c",
                "for f in /var/log/pods/*/*/*.log; do echo \"== $f\"; tail -n 8 \"$f\"; done",
            ])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        format!(
            "--- containerd (last lines)\n{}\n--- kubelet (last lines)\n{}\n--- pods (last lines)\n{pods}",
            tail(read("containerd.log")),
            tail(read("kubelet.log"))
        )
    }

    /// Starts the kubelet as kubeadm's systemd unit would
    /// (10-kubeadm.conf): once kubeadm has written its configuration, with
    /// the bootstrap kubeconfig, the kubelet configuration, and the flags
    /// of /var/lib/kubelet/kubeadm-flags.env; restarted whenever it exits.
    /// (systemd restarts it every 10 s; here every second.) Until kubeadm
    /// writes the configuration, it waits, as a unit would fail and retry.
    /// The node's own settings come from a `--config-dir` drop-in (see
    /// [`Worker::kubeadm_patches`]), as a VM image would ship them.
    pub fn start_kubelet_service(&mut self, kubelet: &Path) {
        let service = format!(
            "while :; do \
               if [ -f /var/lib/kubelet/config.yaml ] && [ -f /var/lib/kubelet/kubeadm-flags.env ]; then \
                 . /var/lib/kubelet/kubeadm-flags.env; \
                 {kubelet} --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
                   --kubeconfig=/etc/kubernetes/kubelet.conf \
                   --config=/var/lib/kubelet/config.yaml --config-dir={drop_ins} $KUBELET_KUBEADM_ARGS; \
                 echo \"kubelet exited: $?\"; \
               fi; \
               sleep 1; \
             done",
            kubelet = kubelet.display(),
            drop_ins = self.kubelet_drop_ins().display(),
        );
        let log = std::fs::File::create(self.dir.join("kubelet.log")).unwrap();
        self.kubelet = Some(KillOnDrop::spawn(
            self.command("sh")
                .args(["-c", &service])
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        ));
    }

    /// `kubeadm join` with a join command as gantry prints it (`kubeadm join
    /// …`), run on this node with `kubernetes` (a folder of the Kubernetes
    /// binaries) first on PATH. What it gets besides gantry's command, each
    /// for a reason:
    /// - `--patches`: see [`Worker::kubeadm_patches`];
    /// - `--ignore-preflight-errors=SystemVerification`: the only preflight
    ///   error here is "cgroups v1 support is deprecated": kubeadm 1.35+
    ///   fails on a cgroup v1 machine, and says that besides `failCgroupV1:
    ///   false` "you must also explicitly skip this validation".
    pub fn kubeadm_join(&self, join_command: &str, kubernetes: &Path) -> std::process::Output {
        let argv: Vec<&str> = join_command.split_whitespace().collect();
        assert_eq!(argv[..2], ["kubeadm", "join"], "{join_command}");
        let path = format!(
            "{}:{}",
            kubernetes.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        self.command(kubernetes.join("kubeadm"))
            .env("PATH", path)
            .args(&argv[1..])
            .arg("--patches")
            .arg(self.kubeadm_patches())
            .arg("--ignore-preflight-errors=SystemVerification")
            .output()
            .expect("run kubeadm")
    }

    /// The kubelet configuration this node needs on top of kubeadm's, as a
    /// kubeadm `--patches` folder (the only one the join gets):
    /// - `failCgroupV1: false`: the machine has cgroup v1 (hybrid), on which
    ///   the kubelet refuses to start unless told to;
    /// - `cgroupDriver: cgroupfs`: no systemd runs here (kubeadm's default
    ///   is systemd), and containerd is set to cgroupfs too;
    /// - `cgroupRoot`: the node's own cgroups (see the module docs);
    /// - `protectKernelDefaults: true`: check the kernel settings, never
    ///   write them (see the module docs);
    /// - `resolvConf`: the upstream of pods with `dnsPolicy: Default`
    ///   (CoreDNS) is the node's own address, where no DNS server listens.
    ///   The node's /etc/resolv.conf names 127.0.0.1, which in a pod is the
    ///   pod itself: CoreDNS would forward to itself and stop ("Loop detected");
    /// - `evictionHard` at 1% of disk: the node's disk is the machine's,
    ///   shared with everything else on it, where less than the kubelet's
    ///   default 10–15% free would taint the node and evict its pods;
    /// - image garbage collection only at a full disk, for the same reason:
    ///   at the default 85% the kubelet deletes images that no registry
    ///   here can give back, the pause image among them (containerd 1.6
    ///   does not pin it);
    /// - `maxPods: 250`, not 110: a service-cluster node runs four pods per
    ///   single-replica tenant (tests/density.rs), and its /24 pod range
    ///   holds 254.
    pub fn kubeadm_patches(&self) -> PathBuf {
        let patches = self.dir.join("patches");
        std::fs::create_dir_all(&patches).unwrap();
        std::fs::write(
            patches.join("kubeletconfiguration+merge.yaml"),
            self.kubelet_settings(),
        )
        .unwrap();
        patches
    }

    /// The same settings as [`Worker::kubeadm_patches`], as a drop-in of
    /// the kubelet's `--config-dir`: how a VM image sets them for a join
    /// whose kubeadm runs with `--config`, which takes no `--patches`.
    fn kubelet_drop_ins(&self) -> PathBuf {
        let drop_ins = self.dir.join("kubelet.conf.d");
        std::fs::create_dir_all(&drop_ins).unwrap();
        std::fs::write(
            drop_ins.join("10-test-node.conf"),
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n{}",
                self.kubelet_settings()
            ),
        )
        .unwrap();
        drop_ins
    }

    fn kubelet_settings(&self) -> String {
        let resolv_conf = self.dir.join("pods-resolv.conf");
        std::fs::write(&resolv_conf, format!("nameserver {}\n", self.host.address)).unwrap();
        format!(
            "failCgroupV1: false\ncgroupDriver: cgroupfs\ncgroupRoot: /{}\nprotectKernelDefaults: true\n\
             resolvConf: {}\nevictionHard:\n  memory.available: 100Mi\n  nodefs.available: 1%\n  \
             imagefs.available: 1%\n  nodefs.inodesFree: 1%\n\
             imageGCHighThresholdPercent: 100\nimageGCLowThresholdPercent: 99\nmaxPods: 250\n",
            self.cgroup,
            resolv_conf.display()
        )
    }

    /// The cgroup v1 (and v2) hierarchies mounted under /sys/fs/cgroup.
    fn cgroup_hierarchies() -> Vec<PathBuf> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        mounts
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.len() > 2 && (fields[2] == "cgroup" || fields[2] == "cgroup2"))
                    .then(|| PathBuf::from(fields[1]))
            })
            .collect()
    }

    fn make_cgroups(&self) {
        for hierarchy in Self::cgroup_hierarchies() {
            std::fs::create_dir_all(hierarchy.join(&self.cgroup))
                .unwrap_or_else(|e| panic!("create cgroup {}: {e}", self.cgroup));
        }
    }

    /// The persistent mount and UTS namespaces of the node, set up as the
    /// module docs say.
    fn make_namespaces(&self, pod_cidr: &str) {
        let dir = &self.dir;
        for folder in [
            "etc-upper",
            "etc-work",
            "var-upper",
            "var-work",
            "usr-upper",
            "usr-work",
            "kernel",
        ] {
            std::fs::create_dir_all(dir.join(folder)).unwrap();
        }
        std::fs::create_dir_all(&self.namespaces).unwrap();
        // unshare --mount=FILE needs FILE on a mount that is not shared.
        run_ok(
            Command::new("mount")
                .arg("--bind")
                .arg(&self.namespaces)
                .arg(&self.namespaces),
        );
        run_ok(
            Command::new("mount")
                .arg("--make-private")
                .arg(&self.namespaces),
        );
        for file in ["mnt", "uts"] {
            std::fs::write(self.namespaces.join(file), "").unwrap();
        }
        let etc_netns = format!("/etc/netns/{}", self.host.namespace);
        let mut setup = vec![
            format!("hostname {}", self.name),
            overlay("/etc", dir, "etc"),
            overlay("/var", dir, "var"),
            // kube-proxy's DaemonSet mounts /lib/modules (/usr/lib/modules
            // on Debian), which this machine lacks: the node has its own.
            overlay("/usr", dir, "usr"),
            "mkdir -p /usr/lib/modules".into(),
            "mount -t tmpfs -o mode=0755 tmpfs /run".into(),
            format!("mount --bind {etc_netns}/hosts /etc/hosts"),
            format!("mount --bind {etc_netns}/resolv.conf /etc/resolv.conf"),
        ];
        for (setting, value) in KERNEL_DEFAULTS {
            let file = dir.join("kernel").join(setting.replace('/', "."));
            std::fs::write(&file, format!("{value}\n")).unwrap();
            setup.push(format!(
                "mount --bind {} /proc/sys/{setting}",
                file.display()
            ));
        }
        std::fs::write(dir.join("cni.conflist"), cni_config(pod_cidr)).unwrap();
        setup.push(format!(
            "mkdir -p /etc/cni/net.d && cp {} /etc/cni/net.d/10-gantry-test.conflist",
            dir.join("cni.conflist").display()
        ));
        run_ok(
            Command::new("unshare")
                .arg(format!("--mount={}", self.namespaces.join("mnt").display()))
                .arg(format!("--uts={}", self.namespaces.join("uts").display()))
                .args(["--propagation", "private", "sh", "-ec", &setup.join("\n")]),
        );
    }

    fn start_containerd(&mut self) {
        let config = self.dir.join("containerd.toml");
        std::fs::write(&config, containerd_config(&self.dir.join("containerd"))).unwrap();
        let log = std::fs::File::create(self.dir.join("containerd.log")).unwrap();
        self.containerd = Some(KillOnDrop::spawn(
            self.command("containerd")
                .arg("--config")
                .arg(&config)
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        ));
        let up = wait_until(Duration::from_secs(30), || {
            self.command("ctr")
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(up, "containerd did not start:\n{}", self.logs());
    }
}
