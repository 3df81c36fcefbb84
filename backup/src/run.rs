//! The backup verbs, end to end: take a snapshot (verify, seal the keys,
//! upload, apply retention), list a tenant's snapshots, and fetch one for a
//! restore (verify again, open the keys) into a new folder.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::Error;
use crate::etcd::{ClientFiles, Member};
use crate::layout::{self, EtcdFacts, Kind, Manifest, ObjectFacts, TenantPrefix};
use crate::seal::{self, Binding, PlatformKey, PlatformPublicKey};
use crate::snapshot::{self, Hasher, Verified};
use crate::store::Store;

pub struct TakeSnapshot<'a> {
    pub tenant: &'a TenantPrefix,
    /// The members to try, in order; the first that answers is snapshotted.
    pub etcd: &'a [String],
    pub etcd_files: ClientFiles<'a>,
    /// The key material to seal beside the snapshot.
    pub keys_dir: &'a Path,
    /// Seals the keys; only the platform's private key opens them.
    pub platform_key: &'a PlatformPublicKey,
    /// Complete snapshots to keep (at least 1).
    pub keep: usize,
    /// Where the snapshot is staged before upload.
    pub work_dir: &'a Path,
}

#[derive(Debug)]
pub struct Taken {
    pub manifest: Manifest,
    /// Object keys retention deleted.
    pub deleted: Vec<String>,
}

pub async fn take_snapshot(store: &Store, request: &TakeSnapshot<'_>) -> Result<Taken, Error> {
    store.check().await?;
    let mut member = connect_first(request.etcd, &request.etcd_files).await?;
    let status = member.status().await?;
    let taken_at = time::OffsetDateTime::now_utc();
    let name = layout::snapshot_name(taken_at);
    let before = store.list(request.tenant).await?;
    if before.iter().any(|o| o.name == name) {
        return Err(Error::input(
            "--tenant",
            format!(
                "{}: a snapshot named {name} is already there (two runs in one second?)",
                request.tenant.tenant
            ),
        ));
    }
    let staged = request.work_dir.join(format!("{name}.db.partial"));
    let result = stream_snapshot(&mut member, &staged, &name).await;
    let (verified, streamed_revision) = match result {
        Ok(ok) => ok,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
    };
    // etcd 3.6 and 3.7 leave the stream's header empty: the revision just
    // before the snapshot is a lower bound of the one it holds.
    let revision = streamed_revision.max(status.header.as_ref().map_or(0, |h| h.revision));
    let tenant = &request.tenant.tenant;
    let sealed = seal::seal_dir(
        request.keys_dir,
        request.platform_key,
        &Binding {
            tenant,
            snapshot: &name,
            database_sha256: &verified.sha256,
        },
    )?;
    let manifest = Manifest {
        format: layout::FORMAT.to_string(),
        tenant: tenant.clone(),
        name: name.clone(),
        taken_at: taken_at
            .format(&time::format_description::well_known::Rfc3339)
            .expect("a UTC time formats"),
        etcd: EtcdFacts {
            endpoint: member.endpoint().to_string(),
            version: status.version.clone(),
            cluster_id: format!("{:x}", status.header.as_ref().map_or(0, |h| h.cluster_id)),
            member_id: format!("{:x}", status.header.as_ref().map_or(0, |h| h.member_id)),
            revision,
        },
        database: ObjectFacts {
            key: request.tenant.key(&name, Kind::Database),
            bytes: verified.database_bytes + snapshot::HASH_LEN as u64,
            sha256: verified.sha256.clone(),
        },
        keys: ObjectFacts {
            key: request.tenant.key(&name, Kind::Keys),
            bytes: sealed.len() as u64,
            sha256: sha256_hex(&sealed),
        },
        platform_key_id: request.platform_key.id(),
    };
    let uploaded = upload(store, &manifest, &staged, sealed).await;
    let _ = std::fs::remove_file(&staged);
    uploaded?;
    tracing::info!(tenant, snapshot = %name, bytes = manifest.database.bytes, revision, "snapshot written");
    let listed = store.list(request.tenant).await?;
    let mut deleted = Vec::new();
    for key in layout::retention_plan(&listed, request.keep) {
        store.delete(&key).await?;
        deleted.push(key);
    }
    Ok(Taken { manifest, deleted })
}

/// The database, then the keys, then the manifest: a snapshot counts only
/// once all three are there.
async fn upload(
    store: &Store,
    manifest: &Manifest,
    staged: &Path,
    sealed: Vec<u8>,
) -> Result<(), Error> {
    store.put_file(&manifest.database.key, staged).await?;
    store.put_bytes(&manifest.keys.key, sealed).await?;
    let json = serde_json::to_vec_pretty(manifest).expect("a manifest serialises");
    let manifest_key = manifest.database.key.replace(".db", ".json");
    store.put_bytes(&manifest_key, json).await
}

async fn connect_first(endpoints: &[String], files: &ClientFiles<'_>) -> Result<Member, Error> {
    let mut last = Error::input("--etcd", "no endpoint given");
    for (i, endpoint) in endpoints.iter().enumerate() {
        match Member::connect(endpoint, files).await {
            Ok(mut member) => match member.status().await {
                Ok(_) => return Ok(member),
                Err(e) => last = e,
            },
            Err(e @ (Error::Input { .. } | Error::File { .. })) => return Err(e),
            Err(e) => last = e,
        }
        if i + 1 < endpoints.len() {
            tracing::warn!("{last}; trying the next member");
        }
    }
    Err(last)
}

/// Streams the snapshot into `staged`, hashing as it goes; returns what
/// verification found and the revision etcd reported.
async fn stream_snapshot(
    member: &mut Member,
    staged: &Path,
    name: &str,
) -> Result<(Verified, i64), Error> {
    let mut stream = member.snapshot().await?;
    let mut file = tokio::fs::File::create(staged)
        .await
        .map_err(|e| Error::file(staged, e))?;
    let mut hasher = Hasher::default();
    let mut revision = 0;
    while let Some(message) = stream.next().await {
        let message = message.map_err(|s| member.refused(&s))?;
        if let Some(header) = &message.header {
            revision = revision.max(header.revision);
        }
        hasher.update(&message.blob);
        file.write_all(&message.blob)
            .await
            .map_err(|e| Error::file(staged, e))?;
    }
    file.sync_all().await.map_err(|e| Error::file(staged, e))?;
    Ok((hasher.finish(name)?, revision))
}

/// The complete snapshots of a tenant, oldest first, with their manifests.
pub async fn list_snapshots(store: &Store, tenant: &TenantPrefix) -> Result<Vec<Manifest>, Error> {
    let listed = store.list(tenant).await?;
    let mut manifests = Vec::new();
    for name in layout::complete_names(&listed) {
        manifests.push(read_manifest(store, tenant, &name).await?);
    }
    Ok(manifests)
}

async fn read_manifest(
    store: &Store,
    tenant: &TenantPrefix,
    name: &str,
) -> Result<Manifest, Error> {
    let key = tenant.key(name, Kind::Manifest);
    let bytes = store.get_bytes(&key).await?;
    let corrupt = |message: String| Error::Snapshot {
        name: name.to_string(),
        message,
    };
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(format!("its manifest {key} is not readable: {e}")))?;
    if manifest.format != layout::FORMAT {
        return Err(corrupt(format!(
            "format {:?}, not {}",
            manifest.format,
            layout::FORMAT
        )));
    }
    if manifest.tenant != tenant.tenant {
        return Err(corrupt(format!(
            "a snapshot of tenant {}, not of {} (copied into the wrong prefix?)",
            manifest.tenant, tenant.tenant
        )));
    }
    if manifest.name != name
        || manifest.database.key != tenant.key(name, Kind::Database)
        || manifest.keys.key != tenant.key(name, Kind::Keys)
    {
        return Err(corrupt(format!("its manifest {key} names other objects")));
    }
    Ok(manifest)
}

pub struct Fetch<'a> {
    pub tenant: &'a TenantPrefix,
    /// A snapshot's name, or None for the newest.
    pub snapshot: Option<&'a str>,
    /// Opens the sealed keys into `<out>/keys`; `None` fetches the database
    /// alone (a restore into a tenant whose Secrets are still there).
    pub platform_key: Option<&'a PlatformKey>,
    /// Created by the fetch; must not exist.
    pub out: &'a Path,
}

/// Downloads a snapshot, verifies it again, opens its keys, and writes
/// `<out>/etcd.db`, `<out>/keys/…` and `<out>/manifest.json`. Builds in
/// `<out>.partial` and renames, so a failure leaves no `out` behind.
pub async fn fetch(store: &Store, request: &Fetch<'_>) -> Result<Manifest, Error> {
    if request.out.exists() {
        return Err(Error::input(
            "--out",
            format!("{} already exists", request.out.display()),
        ));
    }
    let listed = store.list(request.tenant).await?;
    let names = layout::complete_names(&listed);
    let name = match request.snapshot {
        Some(wanted) => names
            .iter()
            .find(|n| *n == wanted)
            .cloned()
            .ok_or_else(|| {
                Error::input(
                    "--snapshot",
                    format!(
                        "{wanted:?}: tenant {} has no such snapshot (it has: {})",
                        request.tenant.tenant,
                        or_none(&names)
                    ),
                )
            })?,
        None => names.last().cloned().ok_or_else(|| {
            Error::input(
                "--tenant",
                format!("{}: no snapshot in the bucket", request.tenant.tenant),
            )
        })?,
    };
    let manifest = read_manifest(store, request.tenant, &name).await?;
    if let Some(key) = request.platform_key
        && manifest.platform_key_id != key.id()
    {
        return Err(Error::Keys {
            name,
            message: format!(
                "sealed with platform key {}; the key given is {} (--platform-key)",
                manifest.platform_key_id,
                key.id()
            ),
        });
    }
    let partial = PathBuf::from(format!("{}.partial", request.out.display()));
    let _ = std::fs::remove_dir_all(&partial);
    // The folder holds the tenant's keys: only its owner may enter it.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&partial)
        .map_err(|e| Error::file(&partial, e))?;
    let result = fetch_into(store, &manifest, request.platform_key, &partial).await;
    match result {
        Ok(()) => {
            std::fs::rename(&partial, request.out).map_err(|e| Error::file(request.out, e))?
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    }
    Ok(manifest)
}

async fn fetch_into(
    store: &Store,
    manifest: &Manifest,
    key: Option<&PlatformKey>,
    dir: &Path,
) -> Result<(), Error> {
    let database = dir.join("etcd.db");
    let mut file = tokio::fs::File::create(&database)
        .await
        .map_err(|e| Error::file(&database, e))?;
    let mut hasher = Hasher::default();
    let mut chunks = Box::pin(store.get_stream(&manifest.database.key).await?);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::file(&database, e))?;
    }
    file.sync_all()
        .await
        .map_err(|e| Error::file(&database, e))?;
    let verified = hasher.finish(&manifest.name)?;
    if verified.sha256 != manifest.database.sha256 {
        return Err(Error::Snapshot {
            name: manifest.name.clone(),
            message: "its database is not the one its manifest names (replaced?)".to_string(),
        });
    }
    if let Some(key) = key {
        let sealed = store.get_bytes(&manifest.keys.key).await?;
        let plain = seal::open(
            &sealed,
            key,
            &Binding {
                tenant: &manifest.tenant,
                snapshot: &manifest.name,
                database_sha256: &verified.sha256,
            },
        )?;
        seal::unpack(&plain, &dir.join("keys"))?;
    }
    let json = serde_json::to_vec_pretty(manifest).expect("a manifest serialises");
    let path = dir.join("manifest.json");
    std::fs::write(&path, json).map_err(|e| Error::file(&path, e))
}

fn or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    snapshot::hex(&sha2::Sha256::digest(bytes))
}

/// The folder under an etcd member's volume where a restore stages its
/// work: gantry's own, so removing it touches nothing else.
pub const RESTORE_DIR: &str = "gantry-restore";

/// A restore Job's first step on one member's volume: clears gantry's own
/// staging folder and fetches the snapshot's database into it, verified.
/// The member's data is not touched.
pub async fn prepare_member(
    store: &Store,
    tenant: &TenantPrefix,
    snapshot: &str,
    volume: &Path,
) -> Result<Manifest, Error> {
    let staging = volume.join(RESTORE_DIR);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::file(&staging, e))?;
    }
    fetch(
        store,
        &Fetch {
            tenant,
            snapshot: Some(snapshot),
            platform_key: None,
            out: &staging,
        },
    )
    .await
}

/// A restore Job's last step, after `etcdutl snapshot restore` wrote
/// `<volume>/gantry-restore/data`: the member's data folder is kept beside
/// as `data.before-restore-<snapshot>` and the restored one takes its place.
/// Returns where the old data went, if there was any.
pub fn install_member(volume: &Path, data: &str, snapshot: &str) -> Result<Option<PathBuf>, Error> {
    if !layout::is_snapshot_name(snapshot) {
        return Err(Error::input(
            "--snapshot",
            format!("{snapshot:?} is not a snapshot's name"),
        ));
    }
    let staging = volume.join(RESTORE_DIR);
    let restored = staging.join("data");
    if !restored.join("member").is_dir() {
        return Err(Error::file(
            &restored,
            "holds no restored member (run etcdutl snapshot restore first)",
        ));
    }
    let current = volume.join(data);
    let mut kept = None;
    if current.exists() {
        let mut aside = volume.join(format!("{data}.before-restore-{snapshot}"));
        let mut n = 1;
        while aside.exists() {
            n += 1;
            aside = volume.join(format!("{data}.before-restore-{snapshot}-{n}"));
        }
        std::fs::rename(&current, &aside).map_err(|e| Error::file(&current, e))?;
        kept = Some(aside);
    }
    std::fs::rename(&restored, &current).map_err(|e| Error::file(&restored, e))?;
    std::fs::remove_dir_all(&staging).map_err(|e| Error::file(&staging, e))?;
    Ok(kept)
}
