//! etcd's upkeep beside its backups: defragmentation when a member's
//! database holds more free space than a threshold, one member at a time
//! and the leader last; and, when etcd raised the NOSPACE alarm (its quota
//! is full, every write refused), compaction and defragmentation, then the
//! alarm disarmed.
//!
//! A member being defragmented does not answer for the seconds it takes;
//! the others do, so an HA tenant keeps serving. Nothing runs while the
//! members disagree on their version (an upgrade rolling) or one does not
//! answer: the plan needs every member healthy.

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::etcd::{ALARM_DEACTIVATE, ALARM_GET, ALARM_NOSPACE, AlarmRequest, ClientFiles, Member};

/// What one member reported before any upkeep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    pub endpoint: String,
    pub member_id: u64,
    pub version: String,
    pub is_leader: bool,
    pub db_size: u64,
    pub db_size_in_use: u64,
}

impl MemberState {
    /// The share of the database file that is free pages.
    pub fn free_fraction(&self) -> f64 {
        if self.db_size == 0 {
            return 0.0;
        }
        self.db_size.saturating_sub(self.db_size_in_use) as f64 / self.db_size as f64
    }
}

/// Below this, a database is not worth defragmenting, whatever its share.
pub const MIN_FREE_BYTES: u64 = 16 << 20;

/// The members to defragment, in order: followers first, the leader last.
/// All of them when `nospace` (the quota must be given back); otherwise
/// those whose free share passes `above` and whose free bytes pass
/// [`MIN_FREE_BYTES`]. Refuses while the members' versions differ.
pub fn plan(members: &[MemberState], above: f64, nospace: bool) -> Result<Vec<String>, String> {
    let first = members.first().ok_or("no etcd member answered")?;
    if members.iter().any(|m| m.version != first.version) {
        return Err(format!(
            "the members run different versions ({}): an upgrade is rolling, no defragmentation now",
            members
                .iter()
                .map(|m| m.version.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut chosen: Vec<&MemberState> = members
        .iter()
        .filter(|m| {
            nospace
                || (m.free_fraction() > above
                    && m.db_size.saturating_sub(m.db_size_in_use) >= MIN_FREE_BYTES)
        })
        .collect();
    chosen.sort_by_key(|m| m.is_leader);
    Ok(chosen.into_iter().map(|m| m.endpoint.clone()).collect())
}

/// What the upkeep did, for the report and the operator's status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Upkeep {
    /// Alarms etcd had raised when the upkeep began (`NOSPACE`, `CORRUPT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub defragmented: Vec<Defragmented>,
    /// The NOSPACE alarm was disarmed after compaction and defragmentation.
    #[serde(default)]
    pub disarmed: bool,
    /// Why nothing was done, when nothing was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Defragmented {
    pub endpoint: String,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

async fn states(
    endpoints: &[String],
    files: &ClientFiles<'_>,
) -> Result<Vec<(Member, MemberState)>, Error> {
    let mut members = Vec::new();
    for endpoint in endpoints {
        let mut member = Member::connect(endpoint, files).await?;
        let status = member.status().await?;
        let header = status.header.clone().unwrap_or_default();
        let state = MemberState {
            endpoint: endpoint.clone(),
            member_id: header.member_id,
            version: status.version.clone(),
            is_leader: status.leader == header.member_id,
            db_size: u64::try_from(status.db_size).unwrap_or(0),
            db_size_in_use: u64::try_from(status.db_size_in_use).unwrap_or(0),
        };
        members.push((member, state));
    }
    Ok(members)
}

/// Runs the upkeep on every member in `endpoints` (all of the tenant's).
pub async fn upkeep(
    endpoints: &[String],
    files: &ClientFiles<'_>,
    above: f64,
) -> Result<Upkeep, Error> {
    let mut members = states(endpoints, files).await?;
    let (first, _) = members
        .first_mut()
        .ok_or_else(|| Error::input("--etcd", "no endpoint given"))?;
    let alarms = first
        .alarm(AlarmRequest {
            action: ALARM_GET,
            member_id: 0,
            alarm: 0,
        })
        .await?
        .alarms;
    let mut report = Upkeep {
        alarms: alarms
            .iter()
            .map(|a| match a.alarm {
                ALARM_NOSPACE => "NOSPACE".to_string(),
                2 => "CORRUPT".to_string(),
                other => format!("alarm {other}"),
            })
            .collect(),
        ..Upkeep::default()
    };
    let nospace = alarms.iter().any(|a| a.alarm == ALARM_NOSPACE);
    let state_list: Vec<MemberState> = members.iter().map(|(_, s)| s.clone()).collect();
    let order = match plan(&state_list, above, nospace) {
        Ok(order) => order,
        Err(why) => {
            report.skipped = Some(why);
            return Ok(report);
        }
    };
    if nospace {
        // Compaction first: defragmentation gives back only what history
        // no longer holds.
        let (leader, _) = members.first_mut().expect("checked above");
        let revision = leader.status().await?.header.map_or(0, |h| h.revision);
        leader.compact(revision).await?;
    }
    for endpoint in &order {
        let (member, state) = members
            .iter_mut()
            .find(|(_, s)| &s.endpoint == endpoint)
            .expect("planned from these members");
        member.defragment().await?;
        let after = member.status().await?;
        tracing::info!(
            endpoint,
            before = state.db_size,
            after = after.db_size,
            "defragmented"
        );
        report.defragmented.push(Defragmented {
            endpoint: endpoint.clone(),
            bytes_before: state.db_size,
            bytes_after: u64::try_from(after.db_size).unwrap_or(0),
        });
    }
    if nospace {
        let (member, _) = members.first_mut().expect("checked above");
        for alarm in alarms.iter().filter(|a| a.alarm == ALARM_NOSPACE) {
            member
                .alarm(AlarmRequest {
                    action: ALARM_DEACTIVATE,
                    member_id: alarm.member_id,
                    alarm: ALARM_NOSPACE,
                })
                .await?;
        }
        report.disarmed = true;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(endpoint: &str, leader: bool, size: u64, in_use: u64) -> MemberState {
        MemberState {
            endpoint: endpoint.into(),
            member_id: 1,
            version: "3.6.8".into(),
            is_leader: leader,
            db_size: size,
            db_size_in_use: in_use,
        }
    }

    #[test]
    fn fragmented_followers_first_and_the_leader_last() {
        let mib = 1 << 20;
        let members = [
            member("a", true, 200 * mib, 50 * mib),
            member("b", false, 200 * mib, 60 * mib),
            member("c", false, 100 * mib, 95 * mib),
        ];
        assert_eq!(plan(&members, 0.5, false).unwrap(), ["b", "a"]);
        // Small databases are left alone, whatever their share.
        assert!(
            plan(&[member("a", true, 8 * mib, mib)], 0.5, false)
                .unwrap()
                .is_empty()
        );
        // NOSPACE: every member, the leader last.
        assert_eq!(plan(&members, 0.5, true).unwrap(), ["b", "c", "a"]);
    }

    #[test]
    fn nothing_while_an_upgrade_rolls() {
        let mut newer = member("b", false, 1 << 30, 0);
        newer.version = "3.7.0".into();
        let message = plan(&[member("a", true, 1 << 30, 0), newer], 0.5, false).unwrap_err();
        assert!(message.contains("an upgrade is rolling"), "{message}");
    }
}
