//! The tenant's key material travels with each snapshot, sealed to the
//! platform's key pair. Backups hold only the **public** half: a sealing
//! needs nothing secret, so the platform key that opens every tenant's keys
//! never sits in a tenant's namespace or in a backup Job. Opening (a restore)
//! needs the private half, which the platform keeps apart.
//!
//! The scheme is ECIES on X25519: a fresh key pair per backup, its agreement
//! with the platform's public key through HKDF-SHA256, then AES-256-GCM with
//! the tenant, the snapshot's name and the database's SHA-256 as associated
//! data. So sealed keys open only beside the snapshot they were written with,
//! for the tenant they belong to, and only with the platform's private key.
//! aws-lc-rs does all of it (gantry-pki already links it; ring cannot load a
//! stored X25519 key).
//!
//! Sealed form: `GANTRYK2` | ephemeral public key (32) | nonce (12) |
//! ciphertext and 16-byte tag. The plaintext is a tar of the key files.

use std::io::Read;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::Error;

const MAGIC: &[u8; 8] = b"GANTRYK2";
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
const INFO: &[u8] = b"gantry.dev/keys/v2";
/// Key files are small (CAs, a service-account key, an encryption config);
/// more than this in the keys folder is a mistake, not key material.
const MAX_PLAINTEXT: u64 = 16 << 20;
const PRIVATE_LABEL: &str = "gantry-platform-key-v1:";
const PUBLIC_LABEL: &str = "gantry-platform-public-key-v1:";

/// The platform's private key (an X25519 scalar): it opens every backup's
/// keys. Kept apart from the bucket and from the service cluster.
pub struct PlatformKey {
    private: PrivateKey,
    public: PlatformPublicKey,
}

/// The public half: all a backup needs to seal.
#[derive(Clone, PartialEq, Eq)]
pub struct PlatformPublicKey {
    bytes: [u8; KEY_LEN],
}

impl std::fmt::Debug for PlatformKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlatformKey({})", self.id())
    }
}

impl std::fmt::Debug for PlatformPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlatformPublicKey({})", self.id())
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source");
    bytes
}

fn decode_labelled(
    path: &Path,
    text: &str,
    label: &str,
    what: &str,
) -> Result<[u8; KEY_LEN], Error> {
    text.trim()
        .strip_prefix(label)
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|b| <[u8; KEY_LEN]>::try_from(b).ok())
        .ok_or_else(|| {
            Error::file(
                path,
                format!("not {what} (a line `{label}<base64>`, from `gantry backup platform-key`)"),
            )
        })
}

impl PlatformKey {
    pub fn generate() -> Self {
        Self::from_seed(&random::<KEY_LEN>()).expect("any 32 bytes are an X25519 key")
    }

    fn from_seed(seed: &[u8; KEY_LEN]) -> Option<Self> {
        let private = PrivateKey::from_private_key(&X25519, seed).ok()?;
        let public = private.compute_public_key().ok()?;
        let bytes = <[u8; KEY_LEN]>::try_from(public.as_ref()).ok()?;
        Some(PlatformKey {
            private,
            public: PlatformPublicKey { bytes },
        })
    }

    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        if text.trim().starts_with(PUBLIC_LABEL) {
            return Err(Error::file(
                path,
                "is the platform's public key; opening keys needs its private key",
            ));
        }
        let seed = decode_labelled(path, &text, PRIVATE_LABEL, "a platform private key")?;
        Self::from_seed(&seed).ok_or_else(|| Error::file(path, "not a usable X25519 key"))
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let seed: aws_lc_rs::encoding::Curve25519SeedBin = self
            .private
            .as_be_bytes()
            .expect("an X25519 key exports its seed");
        format!(
            "{PRIVATE_LABEL}{}\n",
            base64::engine::general_purpose::STANDARD.encode(seed.as_ref())
        )
    }

    pub fn public(&self) -> &PlatformPublicKey {
        &self.public
    }

    pub fn id(&self) -> String {
        self.public.id()
    }
}

impl PlatformPublicKey {
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        if text.trim().starts_with(PRIVATE_LABEL) {
            return Err(Error::file(
                path,
                "is the platform's private key: give backups only its public half (the .pub file)",
            ));
        }
        let bytes = decode_labelled(path, &text, PUBLIC_LABEL, "a platform public key")?;
        Ok(PlatformPublicKey { bytes })
    }

    pub fn to_text(&self) -> String {
        format!(
            "{PUBLIC_LABEL}{}\n",
            base64::engine::general_purpose::STANDARD.encode(self.bytes)
        )
    }

    /// Names the key pair without revealing anything, so a manifest says
    /// which key sealed it and a wrong key is named as such.
    pub fn id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"gantry.dev/platform-key-id\0")
            .chain_update(self.bytes)
            .finalize();
        crate::snapshot::hex(&digest[..8])
    }
}

/// The AEAD key both sides derive: HKDF over the X25519 agreement, salted
/// with both public keys.
fn derive(shared: &[u8], ephemeral: &[u8], platform: &[u8]) -> LessSafeKey {
    let salt = [ephemeral, platform].concat();
    let mut key = [0u8; KEY_LEN];
    Salt::new(HKDF_SHA256, &salt)
        .extract(shared)
        .expand(&[INFO], &AES_256_GCM)
        .and_then(|okm| okm.fill(&mut key))
        .expect("HKDF yields 32 bytes");
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte key"))
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
/// Secret's files are) and seals the tar to the platform's public key.
pub fn seal_dir(
    dir: &Path,
    platform: &PlatformPublicKey,
    binding: &Binding,
) -> Result<Vec<u8>, Error> {
    let mut sealed = tar_dir(dir)?;
    let ephemeral = PrivateKey::generate(&X25519).expect("X25519 key generation");
    let ephemeral_public = ephemeral
        .compute_public_key()
        .expect("an X25519 public key");
    let key = agreement::agree(
        &ephemeral,
        UnparsedPublicKey::new(&X25519, platform.bytes),
        (),
        |shared| Ok(derive(shared, ephemeral_public.as_ref(), &platform.bytes)),
    )
    .expect("X25519 agreement with a 32-byte public key");
    let nonce = random::<NONCE_LEN>();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(binding.associated_data()),
        &mut sealed,
    )
    .expect("AES-GCM seals any length below 64 GiB");
    let mut out = Vec::with_capacity(MAGIC.len() + KEY_LEN + NONCE_LEN + sealed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(ephemeral_public.as_ref());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens sealed keys and returns the tar inside. A wrong key, a different
/// tenant or snapshot, or any changed byte all fail the same check.
pub fn open(sealed: &[u8], platform: &PlatformKey, binding: &Binding) -> Result<Vec<u8>, Error> {
    let refuse = |message: &str| Error::Keys {
        name: binding.snapshot.to_string(),
        message: message.to_string(),
    };
    let body = sealed
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| refuse("not sealed by gantry (no GANTRYK2 header)"))?;
    if body.len() < KEY_LEN + NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(refuse("truncated"));
    }
    let (ephemeral, rest) = body.split_at(KEY_LEN);
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refuse("truncated"))?;
    let wrong = || {
        refuse(&format!(
            "do not open with platform key {} for tenant {} (another key, another \
             tenant's or another snapshot's keys, or damaged)",
            platform.id(),
            binding.tenant
        ))
    };
    let key = agreement::agree(
        &platform.private,
        UnparsedPublicKey::new(&X25519, ephemeral),
        (),
        |shared| Ok(derive(shared, ephemeral, &platform.public.bytes)),
    )
    .map_err(|()| wrong())?;
    let mut buffer = ciphertext.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(binding.associated_data()), &mut buffer)
        .map_err(|_| wrong())?;
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
        let sealed = seal_dir(dir.path(), key.public(), &binding("ns/a", "s1")).unwrap();
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
    fn key_files_round_trip_and_the_halves_are_not_confused() {
        let dir = tempfile::tempdir().unwrap();
        let key = PlatformKey::generate();
        let (private, public) = (dir.path().join("k"), dir.path().join("k.pub"));
        std::fs::write(&private, key.to_text()).unwrap();
        std::fs::write(&public, key.public().to_text()).unwrap();
        assert_eq!(PlatformKey::read(&private).unwrap().id(), key.id());
        assert_eq!(PlatformPublicKey::read(&public).unwrap(), *key.public());
        let message = PlatformPublicKey::read(&private).unwrap_err().to_string();
        assert!(
            message.contains("is the platform's private key"),
            "{message}"
        );
        let message = PlatformKey::read(&public).unwrap_err().to_string();
        assert!(
            message.contains("is the platform's public key"),
            "{message}"
        );
        std::fs::write(&private, "gantry-platform-key-v1:c2hvcnQ=\n").unwrap();
        let message = PlatformKey::read(&private).unwrap_err().to_string();
        assert!(message.contains("not a platform private key"), "{message}");
    }
}
