//! The keys a bundle must never lose without a word: the CAs' keys, the
//! service-account signing key and the key of Secrets at rest. Losing one
//! and writing again would make a new one, and every node, kubeconfig or
//! stored Secret would stop working. Every writing command checks here.

use gantry_pki::{FileSet, catalog};

use super::{BundleDirError, Owner, STAGING, at::Folder, is_under};

/// The folders a render writes (a bundle with files there was rendered).
pub const RENDERED_FOLDERS: [&str; 4] = ["service", "tenant", "chart", "restore"];
/// The join command a render writes.
pub const JOIN_COMMAND: &str = "join-command";

/// The bundle paths whose loss is the loss of a key.
pub fn key_files() -> impl Iterator<Item = &'static str> {
    gantry_renderer::create_only_secrets().filter_map(|secret| secret.guarded_file())
}

/// The key files `owner`'s bundle must still have: each one its record lists
/// (the key of Secrets at rest included, whatever else was removed). After a
/// first command that was killed: each one its staged record lists, unless
/// it is still in the staging folder (it never reached its place). A bundle
/// of an older gantry (no record) that was rendered: every key, the one of
/// Secrets at rest only if its apiserver was rendered to use it.
fn expected_keys(folder: &Folder, owner: &Owner, existing: &FileSet) -> Vec<&'static str> {
    match owner {
        Owner::Recorded { record } => key_files()
            .filter(|file| record.files.contains(*file))
            .collect(),
        Owner::Interrupted(staged) => key_files()
            .filter(|file| staged.files.contains(*file) && !still_staged(folder, file))
            .collect(),
        Owner::Unrecorded => {
            let rendered = existing
                .keys()
                .any(|path| path == JOIN_COMMAND || is_under(path, &RENDERED_FOLDERS));
            let had_encryption = existing.iter().any(|(path, contents)| {
                path.starts_with("service/")
                    && String::from_utf8_lossy(contents).contains("--encryption-provider-config=")
            });
            key_files()
                .filter(|_| rendered)
                .filter(|file| *file != gantry_pki::ENCRYPTION_CONFIG || had_encryption)
                .collect()
        }
        Owner::Nobody => Vec::new(),
    }
}

/// Whether `file` is still in the staging folder a killed command left.
fn still_staged(folder: &Folder, file: &str) -> bool {
    matches!(folder.kind_of(&format!("{STAGING}/{file}")), Ok(Some(_)))
}

/// Refuses to write a bundle that lost a key it had, unless `new_ca` asks
/// for new ones. The half of a pair whose other half is gone is left out of
/// `existing`, so that a new pair is made instead of an error: with `new_ca`,
/// or when the other half never reached its place (a killed first command).
pub fn guard_keys(
    folder: &Folder,
    owner: &Owner,
    existing: &mut FileSet,
    new_ca: bool,
) -> Result<(), BundleDirError> {
    let missing: Vec<&str> = expected_keys(folder, owner, existing)
        .into_iter()
        .filter(|file| !existing.contains_key(*file))
        .collect();
    if !missing.is_empty() && !new_ca {
        return Err(BundleDirError::Refused {
            path: folder.shown().into(),
            reason: format!(
                "was written before but {} missing; writing would make new keys and break every \
                 node, kubeconfig and stored Secret. Restore it from your backup (the Secrets in \
                 service/ and the chart in chart/ hold copies of the keys), or pass --new-ca to \
                 make new ones",
                match missing.as_slice() {
                    [one] => format!("{one} is"),
                    many => format!("{} are", many.join(", ")),
                }
            ),
        });
    }
    let interrupted = matches!(owner, Owner::Interrupted(_));
    drop_lone_halves(existing, |gone| {
        new_ca || (interrupted && still_staged(folder, gone))
    });
    Ok(())
}

/// Leaves out of `existing` the half of each CA and of the service-account
/// key pair whose other half is gone, where `may_drop` (given the path of the
/// half that is gone) allows it.
fn drop_lone_halves(existing: &mut FileSet, may_drop: impl Fn(&str) -> bool) {
    let pairs = catalog::CAS
        .iter()
        .map(|ca| (catalog::crt(ca.base), catalog::key(ca.base)))
        .chain([(catalog::SA_KEY.to_string(), catalog::SA_PUB.to_string())]);
    for (first, second) in pairs {
        match (
            existing.contains_key(&first),
            existing.contains_key(&second),
        ) {
            (true, false) if may_drop(&second) => {
                existing.remove(&first);
            }
            (false, true) if may_drop(&first) => {
                existing.remove(&second);
            }
            _ => {}
        }
    }
}
