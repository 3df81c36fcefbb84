//! A real S3-compatible object store for the backup tests: versitygw (built
//! from its Go module by scripts/install-test-tools) serving a folder over
//! https, with a CA and a serving certificate made by openssl. Each
//! subfolder of the folder is a bucket, each file an object: a test reads,
//! damages or copies objects there directly.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{KillOnDrop, run_ok, tool, wait_until};

pub const ACCESS_KEY: &str = "gantrytest";
pub const SECRET_KEY: &str = "not-a-real-secret-0123456789";
pub const BUCKET: &str = "backups";
pub const PORT: u16 = 7070;

pub struct ObjectStore {
    _process: KillOnDrop,
    /// `https://ADDRESS:PORT`.
    pub url: String,
    /// The CA of its serving certificate.
    pub ca: PathBuf,
    /// The folder it serves; `root/<bucket>/<key>` is an object.
    pub root: PathBuf,
}

impl ObjectStore {
    /// Starts versitygw in `dir` on `address:port`, run by `wrap` (a network
    /// namespace's command, or a plain one), with bucket [`BUCKET`].
    pub fn start(dir: &Path, address: &str, port: u16, wrap: impl Fn(&Path) -> Command) -> Self {
        let root = dir.join("s3");
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let ca = make_serving_pair(dir, address);
        let log = dir.join("versitygw.log");
        let process = KillOnDrop::spawn(
            wrap(&tool("versitygw"))
                .args(["--access", ACCESS_KEY, "--secret", SECRET_KEY])
                .arg(format!("--port={address}:{port}"))
                .arg(format!("--cert={}", dir.join("s3.crt").display()))
                .arg(format!("--key={}", dir.join("s3.key").display()))
                .arg("posix")
                .arg(&root)
                .stdout(File::create(&log).unwrap())
                .stderr(File::create(&log).unwrap()),
        );
        let up = wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&log).is_ok_and(|text| text.contains("listening on"))
        });
        assert!(
            up,
            "versitygw did not listen: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        ObjectStore {
            _process: process,
            url: format!("https://{address}:{port}"),
            ca,
            root,
        }
    }

    /// The object's file.
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }
}

/// A CA and a serving certificate for `address`, made with openssl.
fn make_serving_pair(dir: &Path, address: &str) -> PathBuf {
    let openssl = tool("openssl");
    let file = |name: &str| dir.join(name).display().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run_ok(
        Command::new(&openssl)
            .args(["req", "-x509"])
            .args(ec)
            .args([
                "-keyout",
                &file("s3-ca.key"),
                "-out",
                &file("s3-ca.crt"),
                "-days",
                "1",
                "-subj",
                "/CN=s3-ca",
            ]),
    );
    run_ok(Command::new(&openssl).arg("req").args(ec).args([
        "-keyout",
        &file("s3.key"),
        "-out",
        &file("s3.csr"),
        "-subj",
        "/CN=s3",
    ]));
    std::fs::write(
        dir.join("s3.ext"),
        format!(
            "subjectAltName=IP:{address}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    run_ok(Command::new(&openssl).args(["x509", "-req"]).args([
        "-in",
        &file("s3.csr"),
        "-CA",
        &file("s3-ca.crt"),
        "-CAkey",
        &file("s3-ca.key"),
        "-days",
        "1",
        "-out",
        &file("s3.crt"),
        "-extfile",
        &file("s3.ext"),
    ]));
    dir.join("s3-ca.crt")
}
