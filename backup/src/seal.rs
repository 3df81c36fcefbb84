//! The tenant's key material travels with each snapshot, sealed with the
//! platform key: AES-256-GCM, a fresh random nonce per backup, and the
//! tenant, the snapshot's name and the database's SHA-256 as associated data.
//! So sealed keys open only beside the snapshot they were written with, for
//! the tenant they belong to, and only with the platform's key.
//!
//! Sealed form: `GANTRYK1` | 12-byte nonce | ciphertext and 16-byte tag.
//! The plaintext is a tar of the key files (relative paths, modes kept).

use std::io::Read;
use std::path::Path;

use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::Error;

const MAGIC: &[u8; 8] = b"GANTRYK1";
const NONCE_LEN: usize = 12;
/// Key files are small (CAs, a service-account key, an encryption config);
/// more than this in the keys folder is a mistake, not key material.
const MAX_PLAINTEXT: u64 = 16 << 20;

/// The platform's key: 32 random bytes, kept as one base64 line.
pub struct PlatformKey {
    bytes: [u8; 32],
}

impl std::fmt::Debug for PlatformKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlatformKey({})", self.id())
    }
}

impl PlatformKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system's random source");
        PlatformKey { bytes }
    }

    /// Reads a key file: one line of base64 holding 32 bytes.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                Error::file(path, "not a platform key (one line of base64, 32 bytes)")
            })?;
        Ok(PlatformKey { bytes })
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.bytes)
    }

    /// Names the key without revealing it, so a manifest can say which key
    /// sealed it and a wrong key is named as such.
    pub fn id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"gantry.dev/platform-key-id\0")
            .chain_update(self.bytes)
            .finalize();
        crate::snapshot::hex(&digest[..8])
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.bytes).expect("a 32-byte key"))
    }
}

/// What the sealed keys are bound to.
pub struct Binding<'a> {
    pub tenant: &'a str,
    pub snapshot: &'a str,
    pub database_sha256: &'a str,
}

impl Binding<'_> {
    fn associated_data(&self) -> Vec<u8> {
        format!(
            "gantry.dev/keys/v1\0{}\0{}\0{}",
            self.tenant, self.snapshot, self.database_sha256
        )
        .into_bytes()
    }
}

/// Tars every regular file under `dir` (following the links a mounted
/// Secret's files are) and seals the tar.
pub fn seal_dir(dir: &Path, key: &PlatformKey, binding: &Binding) -> Result<Vec<u8>, Error> {
    let plain = tar_dir(dir)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .expect("the system's random source");
    let mut sealed = plain;
    key.aead()
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(binding.associated_data()),
            &mut sealed,
        )
        .expect("AES-GCM seals any length below 64 GiB");
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens sealed keys and returns the tar inside. A wrong key, a different
/// tenant or snapshot, or any changed byte all fail the same check.
pub fn open(sealed: &[u8], key: &PlatformKey, binding: &Binding) -> Result<Vec<u8>, Error> {
    let refuse = |message: &str| Error::Keys {
        name: binding.snapshot.to_string(),
        message: message.to_string(),
    };
    let body = sealed
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| refuse("not sealed by gantry (no GANTRYK1 header)"))?;
    if body.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(refuse("truncated"));
    }
    let (nonce, ciphertext) = body.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refuse("truncated"))?;
    let mut buffer = ciphertext.to_vec();
    let plain = key
        .aead()
        .open_in_place(nonce, Aad::from(binding.associated_data()), &mut buffer)
        .map_err(|_| {
            refuse(&format!(
                "do not open with platform key {} for tenant {} (another key, another \
                 tenant's or another snapshot's keys, or damaged)",
                key.id(),
                binding.tenant
            ))
        })?;
    Ok(plain.to_vec())
}

fn tar_dir(dir: &Path) -> Result<Vec<u8>, Error> {
    let mut files = Vec::new();
    collect_files(dir, Path::new(""), &mut files)?;
    if files.is_empty() {
        return Err(Error::file(dir, "holds no key files"));
    }
    files.sort();
    let mut builder = tar::Builder::new(Vec::new());
    let mut total = 0u64;
    for relative in files {
        let path = dir.join(&relative);
        let mut data = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_PLAINTEXT + 1).read_to_end(&mut data))
            .map_err(|e| Error::file(&path, e))?;
        total += data.len() as u64;
        if total > MAX_PLAINTEXT {
            return Err(Error::file(dir, "holds more than 16 MiB: not key material"));
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, &relative, data.as_slice())
            .map_err(|e| Error::file(&path, e))?;
    }
    builder.into_inner().map_err(|e| Error::file(dir, e))
}

/// Regular files under `dir`, skipping the `..data`-style folders and links
/// a mounted Secret keeps beside its files (the files themselves are links).
fn collect_files(
    root: &Path,
    relative: &Path,
    out: &mut Vec<std::path::PathBuf>,
) -> Result<(), Error> {
    let dir = root.join(relative);
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::file(&dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::file(&dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("..") {
            continue;
        }
        let path = entry.path();
        let metadata = std::fs::metadata(&path).map_err(|e| Error::file(&path, e))?;
        if metadata.is_dir() {
            collect_files(root, &relative.join(&name), out)?;
        } else if metadata.is_file() {
            out.push(relative.join(&name));
        }
    }
    Ok(())
}

/// Unpacks opened keys into `dir` (which must not exist), files 0600.
pub fn unpack(tar_bytes: &[u8], dir: &Path) -> Result<Vec<String>, Error> {
    std::fs::create_dir(dir).map_err(|e| Error::file(dir, e))?;
    let mut archive = tar::Archive::new(tar_bytes);
    let mut names = Vec::new();
    for entry in archive.entries().map_err(|e| Error::file(dir, e))? {
        let mut entry = entry.map_err(|e| Error::file(dir, e))?;
        let path = entry.path().map_err(|e| Error::file(dir, e))?.into_owned();
        // unpack_in refuses absolute paths and `..`, so nothing lands outside.
        if !entry.unpack_in(dir).map_err(|e| Error::file(dir, e))? {
            return Err(Error::file(
                dir,
                format!("refused entry {}", path.display()),
            ));
        }
        names.push(path.display().to_string());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding<'a>(tenant: &'a str, snapshot: &'a str) -> Binding<'a> {
        Binding {
            tenant,
            snapshot,
            database_sha256: "ab",
        }
    }

    #[test]
    fn keys_open_only_with_their_key_tenant_and_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etcd")).unwrap();
        std::fs::write(dir.path().join("ca.key"), "secret-ca").unwrap();
        std::fs::write(dir.path().join("etcd/ca.key"), "secret-etcd").unwrap();
        let key = PlatformKey::generate();
        let sealed = seal_dir(dir.path(), &key, &binding("ns/a", "s1")).unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"secret-ca"));

        let plain = open(&sealed, &key, &binding("ns/a", "s1")).unwrap();
        let out = dir.path().join("out");
        let mut names = unpack(&plain, &out).unwrap();
        names.sort();
        assert_eq!(names, ["ca.key", "etcd/ca.key"]);
        assert_eq!(
            std::fs::read_to_string(out.join("etcd/ca.key")).unwrap(),
            "secret-etcd"
        );

        let other = PlatformKey::generate();
        for (key, binding) in [
            (&other, binding("ns/a", "s1")),
            (&key, binding("ns/b", "s1")),
            (&key, binding("ns/a", "s2")),
        ] {
            let message = open(&sealed, key, &binding).unwrap_err().to_string();
            assert!(
                message.contains("do not open with platform key"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_key_file_round_trips_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = PlatformKey::generate();
        let path = dir.path().join("k");
        std::fs::write(&path, format!("{}\n", key.to_base64())).unwrap();
        assert_eq!(PlatformKey::read(&path).unwrap().id(), key.id());
        std::fs::write(&path, "c2hvcnQ=\n").unwrap();
        let message = PlatformKey::read(&path).unwrap_err().to_string();
        assert!(message.contains("not a platform key"), "{message}");
    }
}
