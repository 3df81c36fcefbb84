//! Container images for test nodes. No registry is reachable, so every image
//! a node runs is built on this machine: scripts/install-test-tools packs the
//! upstream components (`image`), and `gantry_image` packs gantry's own, as
//! its Dockerfile ships it, from this workspace.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{repo_root, run_ok, tools_bin};

/// An image archive built by scripts/install-test-tools (`<name>-<tag>.tar`).
pub fn image(file: &str) -> PathBuf {
    let path = tools_bin().parent().unwrap().join("images").join(file);
    assert!(
        path.exists(),
        "{} is not built: run scripts/install-test-tools",
        path.display()
    );
    path
}

/// The images a node needs to run a tenant's masters of `version` (e.g.
/// 1.37.2) as gantry renders them.
pub fn tenant_images(version: &str) -> Vec<PathBuf> {
    let release = gantry_renderer::versions::release(
        version
            .split('.')
            .nth(1)
            .and_then(|minor| minor.parse().ok())
            .expect("1.MINOR.PATCH"),
    )
    .expect("a supported minor");
    let mut images: Vec<PathBuf> = [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ]
    .iter()
    .map(|component| image(&format!("{component}-v{version}.tar")))
    .collect();
    images.push(image(&format!("etcd-{}.tar", release.etcd)));
    images
}

/// What the final stage of a Dockerfile says of its image: the file it
/// copies from the build stage, and the image's user, entrypoint and command.
#[derive(Debug, PartialEq, Eq)]
pub struct ShippedImage {
    pub binary_path: String,
    pub user: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// The base image of the final stage.
    pub base: String,
}

/// Reads the final stage of `dockerfile` (the text). Only the instructions
/// gantry's Dockerfile uses are understood; anything else there is left out.
pub fn shipped_image(dockerfile: &str) -> ShippedImage {
    let final_stage = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a FROM line");
    let mut image = ShippedImage {
        binary_path: String::new(),
        user: String::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        base: final_stage.lines().next().unwrap_or("").trim().to_string(),
    };
    let json_list = |text: &str| -> Vec<String> {
        serde_json::from_str(text.trim()).expect("an exec-form JSON list")
    };
    for line in final_stage.lines() {
        if let Some(copy) = line.strip_prefix("COPY --from=build ") {
            let parts: Vec<&str> = copy.split_whitespace().collect();
            image.binary_path = parts.last().expect("COPY SRC DEST").to_string();
        } else if let Some(user) = line.strip_prefix("USER ") {
            image.user = user.trim().to_string();
        } else if let Some(entrypoint) = line.strip_prefix("ENTRYPOINT ") {
            image.entrypoint = json_list(entrypoint);
        } else if let Some(cmd) = line.strip_prefix("CMD ") {
            image.cmd = json_list(cmd);
        }
    }
    image
}

/// The name the operator chart gives its image by default:
/// `<image.repository>:<appVersion>`.
pub fn gantry_image_name() -> String {
    let chart = std::fs::read_to_string(repo_root().join("chart/gantry/Chart.yaml")).unwrap();
    let values = std::fs::read_to_string(repo_root().join("chart/gantry/values.yaml")).unwrap();
    let field = |text: &str, key: &str| -> String {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(key))
            .map(|value| value.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("no {key} in the operator chart"))
    };
    format!(
        "{}:{}",
        field(&values, "repository:"),
        field(&chart, "appVersion:")
    )
}

/// gantry's image, as the Dockerfile ships it: the static binary (built
/// here for x86_64-unknown-linux-musl, as the Dockerfile builds it, in the
/// release profile rather than `dist`, whose fat LTO only makes it smaller)
/// at the Dockerfile's path, with its user, entrypoint and command, named as
/// the operator chart expects. Written into `dir`; returns the archive.
pub fn gantry_image(dir: &Path) -> PathBuf {
    let target = "x86_64-unknown-linux-musl";
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--quiet",
            "--release",
            "--locked",
            "--target",
            target,
        ])
        .args(["-p", "gantry", "--bin", "gantry"])
        .current_dir(repo_root());
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("CARGO_PKG_") || text.starts_with("CARGO_MANIFEST_") {
            build.env_remove(&name);
        }
    }
    let status = build.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build --target {target} failed: run scripts/install-test-tools \
         (rustup target add {target}; apt-get install musl-tools)"
    );
    let binary = crate::gantry_bin()
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join(target)
        .join("release/gantry");
    let shipped = shipped_image(&std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap());
    let out = dir.join("gantry-image.tar");
    pack(
        &gantry_image_name(),
        &[(binary.as_path(), shipped.binary_path.as_str())],
        &shipped,
        dir,
        &out,
    );
    out
}

/// Packs `files` (source, path in the image) into a one-layer OCI image with
/// umoci and writes it with skopeo as a docker-archive named `name`, as
/// scripts/install-test-tools does for the upstream images.
pub fn pack(name: &str, files: &[(&Path, &str)], config: &ShippedImage, work: &Path, out: &Path) {
    let layout = work.join("oci");
    let bundle = work.join("bundle");
    let _ = std::fs::remove_dir_all(&layout);
    let _ = std::fs::remove_dir_all(&bundle);
    let tag = name.rsplit_once(':').map_or("latest", |(_, tag)| tag);
    let image = format!("{}:{tag}", layout.display());
    run_ok(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    );
    run_ok(Command::new("umoci").args(["new", "--image", &image]));
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle),
    );
    for (source, path) in files {
        run_ok(
            Command::new("install")
                .args(["-D", "-m", "0755"])
                .arg(source)
                .arg(bundle.join("rootfs").join(path.trim_start_matches('/'))),
        );
    }
    run_ok(
        Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle),
    );
    let mut configure = Command::new("umoci");
    configure.args(["config", "--image", &image, "--config.user", &config.user]);
    for part in &config.entrypoint {
        configure.arg(format!("--config.entrypoint={part}"));
    }
    for part in &config.cmd {
        configure.arg(format!("--config.cmd={part}"));
    }
    run_ok(configure.args(["--os", "linux", "--architecture", "amd64"]));
    let _ = std::fs::remove_file(out);
    run_ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci:{image}"),
        &format!("docker-archive:{}:{name}", out.display()),
    ]));
    let _ = std::fs::remove_dir_all(&layout);
    let _ = std::fs::remove_dir_all(&bundle);
}
