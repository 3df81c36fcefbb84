//! A property test of the bundle commands as a sequence, on the real binary:
//! random renders of two tenants, `pki init`, deleted files, a lost record,
//! user files, folders swapped away, renders killed part-way and widened key
//! modes, in an order drawn from a seed. After every step:
//! - no file that is not gantry's changes (the user's files, a neighbour
//!   folder, every folder swapped away);
//! - no key (the CAs', the service-account key, the key of Secrets at rest)
//!   is replaced or made again without `--new-ca`;
//! - a command that succeeded leaves a bundle whose certificates check.
//!
//! The seeds are fixed so that a failure can be replayed; set
//! GANTRY_SEQUENCE_SEEDS=1,2,3 to try others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use gantry_tests::{files_under, gantry, gantry_bin, repo_root};

/// The files whose loss is the loss of a key.
const KEYS: [&str; 5] = [
    "pki/ca.key",
    "pki/front-proxy-ca.key",
    "pki/etcd/ca.key",
    "pki/sa.key",
    "pki/encryption-config.yaml",
];

/// xorshift64*: enough randomness for an order of steps, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    RenderA,
    RenderB,
    RenderANewCa,
    RenderAAdopt,
    PkiInitA,
    DeleteOneFile,
    DeleteRecord,
    AddUserFile,
    SwapFolder,
    KillRenderA,
    WidenKeyMode,
}

const STEPS: [Step; 11] = [
    Step::RenderA,
    Step::RenderB,
    Step::RenderANewCa,
    Step::RenderAAdopt,
    Step::PkiInitA,
    Step::DeleteOneFile,
    Step::DeleteRecord,
    Step::AddUserFile,
    Step::SwapFolder,
    Step::KillRenderA,
    Step::WidenKeyMode,
];

/// What the test knows must hold.
struct World {
    root: PathBuf,
    out: PathBuf,
    a: PathBuf,
    b: PathBuf,
    /// Files that are not gantry's, with their contents.
    foreign: BTreeMap<PathBuf, Vec<u8>>,
    /// Each key file this folder ever had (until it is swapped away).
    had_key: BTreeMap<&'static str, bool>,
    swaps: usize,
}

fn manifest(dir: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("examples/tenant-a.yaml"))
        .unwrap()
        .replace("name: tenant-a", &format!("name: {name}"));
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn keys_of(out: &Path) -> BTreeMap<&'static str, Option<Vec<u8>>> {
    KEYS.iter()
        .map(|key| (*key, std::fs::read(out.join(key)).ok()))
        .collect()
}

impl World {
    fn new(root: &Path) -> Self {
        let neighbour = root.join("neighbour");
        std::fs::create_dir(&neighbour).unwrap();
        std::fs::write(neighbour.join("notes.txt"), "a neighbour's file").unwrap();
        let mut foreign = BTreeMap::new();
        foreign.insert(neighbour.join("notes.txt"), b"a neighbour's file".to_vec());
        World {
            root: root.to_path_buf(),
            out: root.join("out"),
            a: manifest(root, "tenant-a"),
            b: manifest(root, "tenant-b"),
            foreign,
            had_key: BTreeMap::new(),
            swaps: 0,
        }
    }

    fn render(&self, manifest: &Path, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "render",
            manifest.to_str().unwrap(),
            "--out",
            self.out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        gantry(&args)
    }

    /// Runs `step`; returns whether it was a command that succeeded and
    /// whether it asked for new keys.
    fn run(&mut self, step: Step, rng: &mut Rng) -> (bool, bool) {
        let ok = |output: std::process::Output| output.status.success();
        match step {
            Step::RenderA => (ok(self.render(&self.a.clone(), &[])), false),
            Step::RenderB => (ok(self.render(&self.b.clone(), &[])), false),
            Step::RenderANewCa => (ok(self.render(&self.a.clone(), &["--new-ca"])), true),
            Step::RenderAAdopt => (ok(self.render(&self.a.clone(), &["--adopt"])), false),
            Step::PkiInitA => {
                let out = self.out.to_str().unwrap().to_string();
                (
                    ok(gantry(&[
                        "pki", "init", "--name", "tenant-a", "--out", &out,
                    ])),
                    false,
                )
            }
            Step::DeleteOneFile => {
                let files = if self.out.exists() {
                    files_under(&self.out)
                } else {
                    Vec::new()
                };
                let gantrys: Vec<&String> = files
                    .iter()
                    .map(|(path, _)| path)
                    .filter(|path| !self.is_foreign(path))
                    .collect();
                if !gantrys.is_empty() {
                    let victim = gantrys[rng.below(gantrys.len())];
                    std::fs::remove_file(self.out.join(victim)).unwrap();
                }
                (false, false)
            }
            Step::DeleteRecord => {
                let _ = std::fs::remove_file(self.out.join("gantry-bundle.json"));
                (false, false)
            }
            Step::AddUserFile => {
                let places = ["service", "tenant", "chart", "pki", ""];
                let place = places[rng.below(places.len())];
                let folder = self.out.join(place);
                if folder.is_dir() {
                    let path = folder.join(format!("users-{}.txt", rng.next() % 1000));
                    let contents = format!("the user's {}", rng.next()).into_bytes();
                    std::fs::write(&path, &contents).unwrap();
                    self.foreign.insert(path, contents);
                }
                (false, false)
            }
            Step::SwapFolder => {
                if self.out.exists() {
                    self.swaps += 1;
                    let away = self.root.join(format!("swapped-{}", self.swaps));
                    std::fs::rename(&self.out, &away).unwrap();
                    // Everything in it is now someone else's.
                    let moved: Vec<(PathBuf, Vec<u8>)> = self
                        .foreign
                        .iter()
                        .filter(|(path, _)| path.starts_with(&self.out))
                        .map(|(path, c)| (path.clone(), c.clone()))
                        .collect();
                    for (path, _) in &moved {
                        self.foreign.remove(path);
                    }
                    for (path, contents) in files_under(&away) {
                        self.foreign.insert(away.join(path), contents);
                    }
                    self.had_key.clear();
                }
                (false, false)
            }
            Step::KillRenderA => {
                let mut child = Command::new(gantry_bin())
                    .args(["render", self.a.to_str().unwrap(), "--out"])
                    .arg(&self.out)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                std::thread::sleep(Duration::from_millis(rng.next() % 150));
                let _ = child.kill();
                let _ = child.wait();
                // A render that finished before the kill counts as one.
                (false, false)
            }
            Step::WidenKeyMode => {
                use std::os::unix::fs::PermissionsExt as _;
                let key = self.out.join(KEYS[rng.below(KEYS.len())]);
                if key.is_file() {
                    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
                }
                (false, false)
            }
        }
    }

    fn is_foreign(&self, relative: &str) -> bool {
        self.foreign.contains_key(&self.out.join(relative))
    }

    /// The invariants, after `step` (`#n` of seed `seed`).
    fn check(
        &mut self,
        label: &str,
        before: &BTreeMap<&'static str, Option<Vec<u8>>>,
        succeeded: bool,
        new_keys: bool,
    ) {
        for (path, contents) in &self.foreign {
            assert_eq!(
                std::fs::read(path).ok().as_ref(),
                Some(contents),
                "{label}: {} is not gantry's and changed",
                path.display()
            );
        }
        let after = keys_of(&self.out);
        for key in KEYS {
            let had = *self.had_key.get(key).unwrap_or(&false);
            match (&before[key], &after[key]) {
                (Some(old), Some(new)) if !new_keys => {
                    assert_eq!(old, new, "{label}: {key} was replaced without --new-ca")
                }
                (None, Some(_)) if had && !new_keys => {
                    panic!("{label}: {key} was lost and made again without --new-ca")
                }
                _ => {}
            }
            if after[key].is_some() {
                self.had_key.insert(key, true);
            }
        }
        if succeeded {
            let check = gantry(&["pki", "check", self.out.to_str().unwrap()]);
            assert!(
                check.status.success(),
                "{label}: the bundle does not check: {}",
                String::from_utf8_lossy(&check.stdout)
            );
        }
    }
}

#[test]
fn random_sequences_never_touch_foreign_files_nor_replace_a_key() {
    let seeds: Vec<u64> = std::env::var("GANTRY_SEQUENCE_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            vec![
                0x9e37_79b9_7f4a_7c15,
                0xdead_beef_cafe_f00d,
                0x0123_4567_89ab_cdef,
            ]
        });
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for seed in seeds {
        let tmp = tempfile::tempdir().unwrap();
        let mut world = World::new(tmp.path());
        let mut rng = Rng(seed | 1);
        for n in 0..60 {
            let step = STEPS[rng.below(STEPS.len())];
            let label = format!("seed {seed:#x} step {n} {step:?}");
            let before = keys_of(&world.out);
            let (succeeded, new_keys) = world.run(step, &mut rng);
            *outcomes
                .entry(format!("{step:?} {}", if succeeded { "ok" } else { "-" }))
                .or_default() += 1;
            world.check(&label, &before, succeeded, new_keys);
        }
    }
    // What was tried, for the record (cargo test --nocapture shows it).
    println!("{outcomes:#?}");
}
