//! What makes a snapshot good, checked before it counts. etcd's Maintenance
//! `Snapshot` stream is its bbolt database followed by the database's SHA-256
//! (32 bytes); `etcdutl snapshot restore` checks that same hash. We check it
//! too, and read the database's header: bbolt's two meta pages, each with a
//! magic number, a version and an FNV-64a checksum of its own fields.

use sha2::{Digest, Sha256};

/// bbolt's magic number and the data-file version etcd 3.x writes.
const BOLT_MAGIC: u32 = 0xED0C_DAED;
const BOLT_VERSION: u32 = 2;
/// A bbolt page header is 16 bytes (id, flags, count, overflow); the meta
/// fields follow it, and the checksum covers the 56 bytes before itself.
const PAGE_HEADER: usize = 16;
const META_CHECKED: usize = 56;
pub const HASH_LEN: usize = 32;

/// What a good snapshot's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The database's bytes (without the trailing hash).
    pub database_bytes: u64,
    pub page_size: u32,
    /// The newest bbolt transaction in the file.
    pub transaction: u64,
    /// Hex SHA-256 of the whole object as stored (database and hash).
    pub sha256: String,
}

/// Hashes a snapshot as it streams by: the database part and the whole.
#[derive(Default)]
pub struct Hasher {
    whole: Sha256,
    database: Sha256,
    /// The last 32 bytes seen, which are not the database's (yet).
    tail: Vec<u8>,
    header: Vec<u8>,
    length: u64,
}

/// Enough of the file for both meta pages at the largest page size.
const HEADER_KEPT: usize = 2 * 65536;

impl Hasher {
    pub fn update(&mut self, chunk: &[u8]) {
        self.whole.update(chunk);
        self.length += chunk.len() as u64;
        if self.header.len() < HEADER_KEPT {
            let room = HEADER_KEPT - self.header.len();
            self.header
                .extend_from_slice(&chunk[..room.min(chunk.len())]);
        }
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > HASH_LEN {
            let spill = self.tail.len() - HASH_LEN;
            self.database.update(&self.tail[..spill]);
            self.tail.drain(..spill);
        }
    }

    /// Checks the trailing hash and the header; `name` goes into errors.
    pub fn finish(self, name: &str) -> Result<Verified, crate::Error> {
        let refuse = |message: String| crate::Error::Snapshot {
            name: name.to_string(),
            message,
        };
        if self.tail.len() < HASH_LEN || self.length % 512 != HASH_LEN as u64 {
            return Err(refuse(format!(
                "{} bytes is not a database and its SHA-256 (truncated?)",
                self.length
            )));
        }
        let database: [u8; HASH_LEN] = self.database.finalize().into();
        if database[..] != self.tail[..] {
            return Err(refuse(
                "the database does not match its SHA-256 (damaged)".to_string(),
            ));
        }
        let (page_size, transaction) = read_header(&self.header).map_err(refuse)?;
        Ok(Verified {
            database_bytes: self.length - HASH_LEN as u64,
            page_size,
            transaction,
            sha256: hex(&self.whole.finalize()),
        })
    }
}

/// Reads bbolt's meta pages: the valid one with the newest transaction wins,
/// as bbolt itself picks. Returns the page size and that transaction.
fn read_header(file: &[u8]) -> Result<(u32, u64), String> {
    let first = meta_at(file, 0);
    let page_size = match &first {
        Ok(meta) => meta.page_size,
        // A torn first page: bbolt then looks for the second at 4 KiB.
        Err(_) => 4096,
    };
    let second = meta_at(file, page_size as usize);
    match (first, second) {
        (Ok(a), Ok(b)) => Ok((a.page_size, a.transaction.max(b.transaction))),
        (Ok(m), Err(_)) | (Err(_), Ok(m)) => Ok((m.page_size, m.transaction)),
        (Err(e), Err(_)) => Err(format!("not an etcd database: {e}")),
    }
}

struct Meta {
    page_size: u32,
    transaction: u64,
}

fn meta_at(file: &[u8], offset: usize) -> Result<Meta, String> {
    let start = offset + PAGE_HEADER;
    let fields = file
        .get(start..start + META_CHECKED + 8)
        .ok_or("the file ends inside its header")?;
    let u32_at = |i: usize| u32::from_le_bytes(fields[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(fields[i..i + 8].try_into().unwrap());
    if u32_at(0) != BOLT_MAGIC {
        return Err("no bbolt magic number in its header".to_string());
    }
    if u32_at(4) != BOLT_VERSION {
        return Err(format!("bbolt version {} (not 2)", u32_at(4)));
    }
    if fnv64a(&fields[..META_CHECKED]) != u64_at(META_CHECKED) {
        return Err("its header's checksum does not match".to_string());
    }
    let page_size = u32_at(8);
    if !page_size.is_power_of_two() || !(512..=65536).contains(&page_size) {
        return Err(format!("page size {page_size}"));
    }
    Ok(Meta {
        page_size,
        transaction: u64_at(48),
    })
}

/// FNV-1a, 64 bits: bbolt's meta checksum.
fn fnv64a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Verifies a whole snapshot held in memory.
pub fn verify(bytes: &[u8], name: &str) -> Result<Verified, crate::Error> {
    let mut hasher = Hasher::default();
    hasher.update(bytes);
    hasher.finish(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal bbolt file: two meta pages of 4 KiB, padded to 16 KiB.
    fn database(transaction: u64) -> Vec<u8> {
        let mut file = vec![0u8; 4 * 4096];
        for (page, txid) in [(0usize, transaction - 1), (1, transaction)] {
            let start = page * 4096 + PAGE_HEADER;
            let fields = &mut file[start..start + META_CHECKED + 8];
            fields[0..4].copy_from_slice(&BOLT_MAGIC.to_le_bytes());
            fields[4..8].copy_from_slice(&BOLT_VERSION.to_le_bytes());
            fields[8..12].copy_from_slice(&4096u32.to_le_bytes());
            fields[48..56].copy_from_slice(&txid.to_le_bytes());
            let sum = fnv64a(&fields[..META_CHECKED]);
            fields[56..64].copy_from_slice(&sum.to_le_bytes());
        }
        file
    }

    fn with_hash(mut db: Vec<u8>) -> Vec<u8> {
        let hash: [u8; 32] = Sha256::digest(&db).into();
        db.extend_from_slice(&hash);
        db
    }

    #[test]
    fn a_good_snapshot_is_verified_whatever_the_chunks() {
        let snapshot = with_hash(database(7));
        let whole = verify(&snapshot, "s").unwrap();
        assert_eq!(whole.database_bytes, 4 * 4096);
        assert_eq!((whole.page_size, whole.transaction), (4096, 7));
        let mut hasher = Hasher::default();
        for chunk in snapshot.chunks(1000) {
            hasher.update(chunk);
        }
        assert_eq!(hasher.finish("s").unwrap(), whole);
    }

    #[test]
    fn damage_truncation_and_strangers_are_refused() {
        let good = with_hash(database(7));
        let mut flipped = good.clone();
        flipped[9000] ^= 1;
        let message = verify(&flipped, "s").unwrap_err().to_string();
        assert!(message.contains("does not match its SHA-256"), "{message}");
        let message = verify(&good[..good.len() - 100], "s")
            .unwrap_err()
            .to_string();
        assert!(message.contains("truncated"), "{message}");
        let message = verify(&with_hash(vec![7u8; 8192]), "s")
            .unwrap_err()
            .to_string();
        assert!(message.contains("not an etcd database"), "{message}");
    }

    #[test]
    fn one_torn_meta_page_is_survived_as_bbolt_does() {
        let mut db = database(7);
        db[PAGE_HEADER + 20] ^= 0xff;
        let verified = verify(&with_hash(db), "s").unwrap();
        assert_eq!(verified.transaction, 7);
    }
}
