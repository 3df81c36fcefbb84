//! The labels, annotations, field manager and finalizer gantry puts on what
//! it owns: one vocabulary for the renderer, the apply layer and the operator.

/// The server-side apply field manager of everything gantry writes.
pub const FIELD_MANAGER: &str = "gantry";
/// Every object gantry renders carries this label.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "gantry");
/// The tenant an object belongs to.
pub const TENANT_LABEL: &str = "gantry.dev/tenant";
/// Which apply call owns an object (`bootstrap`, `service`, `join`, `tenant`):
/// each call prunes only objects of its own set.
pub const SET_LABEL: &str = "gantry.dev/set";
/// On the tenant objects only super-admin writes (`"true"`): gantry-operator's
/// own RBAC and the bindings that make admins. The operator applies them
/// with super-admin only when granting itself access.
pub const PRIVILEGED_LABEL: &str = "gantry.dev/privileged";
/// The hash of the object as gantry last applied it: an unchanged hash and no
/// foreign edit mean no write.
pub const HASH_ANNOTATION: &str = "gantry.dev/desired-hash";
/// Held on every `TenantControlPlane` until its namespace is gone.
pub const FINALIZER: &str = "gantry.dev/cleanup";
/// Set to the tenant's current `status.caCertHash` (or to any value if the
/// status records none) to make new CAs for Secrets that are gone. Tied to the
/// hash so that it acts once: after the new CA, the hash no longer matches.
pub const RECREATE_CA_ANNOTATION: &str = "gantry.dev/recreate-ca";
/// Set to a snapshot's name (`20261207T172000Z`, from `status.backup` or
/// `gantry backup list`), or `TENANT/NAME` for another tenant's snapshot, to
/// restore the tenant's etcd from it. The operator removes it when the
/// restore is done, so it acts once.
pub const RESTORE_ANNOTATION: &str = "gantry.dev/restore-from";
