//! When to mint a fresh join token: when none is valid, or when less than a
//! third of `join.tokenTTL` remains (so a `gantry join` always hands out a token
//! that lasts). Expired tokens are left to kube-controller-manager's tokencleaner.

use time::{Duration, OffsetDateTime};

/// Whether the newest token (expiring at `expiration`, if any) must be replaced.
pub fn needs_new_token(
    expiration: Option<OffsetDateTime>,
    ttl: Duration,
    now: OffsetDateTime,
) -> bool {
    match expiration {
        None => true,
        Some(expiration) => expiration - now < ttl / 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_replaced_when_less_than_a_third_of_its_ttl_remains() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(10_000);
        let ttl = Duration::hours(24);
        assert!(needs_new_token(None, ttl, now));
        assert!(!needs_new_token(Some(now + Duration::hours(9)), ttl, now));
        assert!(needs_new_token(Some(now + Duration::hours(7)), ttl, now));
        assert!(
            needs_new_token(Some(now - Duration::hours(1)), ttl, now),
            "expired"
        );
    }
}
