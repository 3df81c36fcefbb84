//! What a restore names: a snapshot (`YYYYMMDDTHHMMSSZ`, as `gantry backup`
//! names them) of this tenant or of another. Read from the annotation
//! `gantry.dev/restore-from` by the operator and from `gantry render
//! --restore-from` offline; one rule for both, and for the bucket's layout.

/// A snapshot's name: `YYYYMMDDTHHMMSSZ`, UTC.
pub fn is_snapshot_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[..8]
            .iter()
            .chain(&bytes[9..15])
            .all(u8::is_ascii_digit)
}

/// A snapshot of `tenant` to restore (this tenant, or another for a
/// recovery into a new one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    pub tenant: String,
    pub snapshot: String,
}

impl RestoreRequest {
    /// `NAME` (a snapshot of `tenant`) or `TENANT/NAME`; the error is the
    /// reason alone, for the caller to name its field and the value.
    pub fn parse(tenant: &str, value: &str) -> Result<Self, String> {
        let value = value.trim();
        let (from, snapshot) = value.split_once('/').unwrap_or((tenant, value));
        if gantry_pki::validate_namespace(from).is_err() || !is_snapshot_name(snapshot) {
            return Err(
                "is not NAME or TENANT/NAME, NAME a snapshot's (20261207T172000Z)".to_string(),
            );
        }
        Ok(RestoreRequest {
            tenant: from.to_string(),
            snapshot: snapshot.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_a_snapshot_of_this_tenant_or_another() {
        assert_eq!(
            RestoreRequest::parse("tenant-a", "20261207T172000Z").unwrap(),
            RestoreRequest {
                tenant: "tenant-a".into(),
                snapshot: "20261207T172000Z".into()
            }
        );
        assert_eq!(
            RestoreRequest::parse("tenant-a-dr", "tenant-a/20261207T172000Z")
                .unwrap()
                .tenant,
            "tenant-a"
        );
        for bad in [
            "latest",
            "tenant-a/",
            "/20261207T172000Z",
            "Tenant/20261207T172000Z",
            "20261207-172000",
            "20261207T17200Z0",
            "2026120७T172000Z",
        ] {
            let error = RestoreRequest::parse("tenant-a", bad).unwrap_err();
            assert!(error.contains("NAME or TENANT/NAME"), "{bad}: {error}");
        }
    }
}
