//! Helpers for tests that drive real peers (openssl, etcd, kubectl, helm) and
//! the real `gantry` binary.
//!
//! Tools come from `.tools/bin` (or `$GANTRY_TOOLS_DIR/bin`), filled by
//! `scripts/install-test-tools`. A missing tool fails the test with a message
//! that says how to install it; nothing is skipped silently.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod approver;
pub mod audit;
pub mod bundle;
pub mod control_plane;
pub mod images;
pub mod kubelet;
pub mod netns;
pub mod object_store;
mod ports;
pub mod service_node;
pub mod worker;
pub use ports::free_port;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The folder holding the installed test tools.
pub fn tools_bin() -> PathBuf {
    match std::env::var_os("GANTRY_TOOLS_DIR") {
        Some(dir) => PathBuf::from(dir).join("bin"),
        None => repo_root().join(".tools/bin"),
    }
}

/// The path of an installed test tool; panics with install instructions if missing.
pub fn tool(name: &str) -> PathBuf {
    let path = tools_bin().join(name);
    assert!(
        path.exists(),
        "{name} is not installed in {}: run scripts/install-test-tools (or set GANTRY_TOOLS_DIR)",
        tools_bin().display()
    );
    path
}

/// The `gantry` binary of this workspace, built once per test process.
pub fn gantry_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test-binary> -> target/<profile>
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "-p", "gantry", "--bin", "gantry"])
            .current_dir(repo_root());
        // `cargo test` gives this process the test package's CARGO_PKG_* and
        // CARGO_MANIFEST_* variables. Build scripts (ring's) rerun when those
        // change, so passing them on would rebuild ring and everything above
        // it (~15 s) here and again at the next plain `cargo build`.
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("CARGO_PKG_") || name_text.starts_with("CARGO_MANIFEST_") {
                build.env_remove(&name);
            }
        }
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build of the gantry binary failed");
        let bin = profile_dir.join("gantry");
        assert!(bin.exists(), "{} missing after cargo build", bin.display());
        bin
    })
}

/// `gantry ARGS…`, captured.
pub fn gantry(args: &[&str]) -> Output {
    Command::new(gantry_bin())
        .args(args)
        .output()
        .expect("run gantry")
}

/// Runs gantry with `args` and returns stdout; panics with stderr when it fails.
pub fn gantry_ok(args: &[&str]) -> String {
    run_ok(Command::new(gantry_bin()).args(args))
}

/// A command's stdout and stderr, one after the other, as text.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a command and returns stdout; panics with stderr when it fails.
pub fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// The bytes free to an unprivileged writer on the file system holding `dir`
/// (`df`, so no binding to statvfs is needed).
pub fn free_bytes(dir: &Path) -> u64 {
    let text = run_ok(Command::new("df").args(["--output=avail", "-B1"]).arg(dir));
    text.lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("df printed no free space for {}: {text}", dir.display()))
}

/// Writes a fresh tenant PKI with `gantry pki init` and returns its folder.
pub fn pki_init(dir: &Path, name: &str, extra_args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let out_str = out.to_str().expect("utf-8 path");
    let mut args = vec!["pki", "init", "--name", name, "--out", out_str];
    args.extend_from_slice(extra_args);
    gantry_ok(&args);
    out
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A child process killed when dropped, so a failing test leaves no server behind.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    pub fn spawn(command: &mut Command) -> Self {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        KillOnDrop(child)
    }

    /// Whether the process has already ended (it crashed or refused to start).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(Some(_)))
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Renders `examples/tenant-a.yaml` with `gantry render` into `dir/tenant-a`.
pub fn render_example(dir: &Path) -> PathBuf {
    let out = dir.join("tenant-a");
    render_manifest(&repo_root().join("examples/tenant-a.yaml"), &out);
    out
}

/// `gantry render MANIFEST --out OUT`, which must succeed.
pub fn render_manifest(manifest: &Path, out: &Path) {
    gantry_ok(&[
        "render",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
}

/// Every file under `dir` (recursively), as (path relative to `dir`, contents), sorted.
pub fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap_or_else(|e| panic!("{folder:?}: {e}")) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path
                    .strip_prefix(dir)
                    .expect("under dir")
                    .display()
                    .to_string();
                files.push((relative, std::fs::read(&path).expect("readable file")));
            }
        }
    }
    files.sort();
    files
}

/// The tenant chart's `values.schema.json`, derived from the CRD's spec schema
/// (`gantry crd`): the same fields, with `additionalProperties: false` on
/// every object so Helm refuses a typo, plus `name`. Kubernetes-only keywords
/// (`x-kubernetes-*`, `nullable`, `format`) and defaults (the CRD applies
/// them) are left out.
pub fn tenant_values_schema(crd: &serde_json::Value) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    fn convert(node: &Value) -> Value {
        let Value::Object(map) = node else {
            return node.clone();
        };
        let mut out = Map::new();
        for (key, value) in map {
            match key.as_str() {
                "nullable" | "format" | "default" => {}
                k if k.starts_with("x-kubernetes-") => {}
                "properties" => {
                    let properties = value
                        .as_object()
                        .expect("properties is an object")
                        .iter()
                        .map(|(name, schema)| (name.clone(), convert(schema)))
                        .collect();
                    out.insert(key.clone(), Value::Object(properties));
                }
                "items" | "additionalProperties" => {
                    out.insert(key.clone(), convert(value));
                }
                _ => {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
        if map.contains_key("properties") && !map.contains_key("additionalProperties") {
            out.insert("additionalProperties".into(), Value::Bool(false));
        }
        Value::Object(out)
    }
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut schema = convert(spec);
    schema["$schema"] = json!("https://json-schema.org/draft-07/schema#");
    schema["title"] = json!("gantry tenant chart values: a TenantControlPlane spec, plus its name");
    schema["properties"]["name"] = json!({
        "description": "The tenant's name; defaults to the release name.",
        "type": "string",
        "pattern": "^$|^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$"
    });
    schema
}
