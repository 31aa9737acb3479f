//! The leader's view of upload-session leases, kept on its monotonic clock.
//!
//! A session carries the wall-clock time of its last renewal, stamped by whichever node the client reached.
//! Clocks disagree and jump, so the leader never compares those stamps with its own wall clock: it notes, on
//! its monotonic clock, when it first saw each session's current stamp, and a session whose stamp has not
//! changed for a whole lease since then is over (`DropSessions`). A new leader starts its observations afresh,
//! so it ends nothing before a whole lease of its own has passed. Pure: the caller passes the time.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use strata_proto::SessionId;

use super::command::MAX_DROPPED_SESSIONS;
use super::state::SessionRecord;

/// When this node first saw each session's current renewal stamp.
#[derive(Debug, Default)]
pub struct SessionWatch {
    seen: HashMap<SessionId, (u64, Instant)>,
}

impl SessionWatch {
    /// The sessions of `sessions` that have gone a whole lease without a renewal by `now`, with the renewal
    /// stamp they still carry (at most [`MAX_DROPPED_SESSIONS`]); forgets sessions that are gone.
    pub fn over(&mut self, sessions: &BTreeMap<SessionId, SessionRecord>, now: Instant) -> Vec<(SessionId, u64)> {
        self.seen.retain(|id, _| sessions.contains_key(id));
        let mut over = Vec::new();
        for (id, s) in sessions {
            let seen = self.seen.entry(*id).or_insert((s.renewed_ms, now));
            if seen.0 != s.renewed_ms {
                *seen = (s.renewed_ms, now);
            }
            if now.saturating_duration_since(seen.1) >= Duration::from_millis(s.lease_ms) && over.len() < MAX_DROPPED_SESSIONS {
                over.push((*id, s.renewed_ms));
            }
        }
        over
    }

    /// Forgets every observation (this node stopped leading; if it leads again, it starts afresh).
    pub fn forget_all(&mut self) {
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::TenantId;

    fn sessions(list: &[(u64, u64)]) -> BTreeMap<SessionId, SessionRecord> {
        list.iter()
            .map(|&(id, renewed_ms)| (SessionId(id), SessionRecord { tenant: TenantId(1), opened_ms: 0, renewed_ms, lease_ms: 60_000 }))
            .collect()
    }

    #[test]
    fn a_session_ends_a_whole_lease_after_its_last_renewal_whatever_the_stamps_say() {
        let t0 = Instant::now();
        let mut watch = SessionWatch::default();
        // Stamped an hour in the past by a slow clock: still a whole lease from when the leader saw it.
        let state = sessions(&[(1, 0), (2, 10 * 3_600_000)]);
        assert!(watch.over(&state, t0).is_empty());
        assert!(watch.over(&state, t0 + Duration::from_millis(59_999)).is_empty());
        // Session 2 is renewed with a stamp *behind* its previous one (another node's clock): still a renewal.
        let renewed = sessions(&[(1, 0), (2, 5)]);
        assert_eq!(watch.over(&renewed, t0 + Duration::from_secs(30)), vec![]);
        assert_eq!(watch.over(&renewed, t0 + Duration::from_secs(60)), vec![(SessionId(1), 0)]);
        assert_eq!(watch.over(&renewed, t0 + Duration::from_secs(89)), vec![(SessionId(1), 0)]);
        assert_eq!(watch.over(&renewed, t0 + Duration::from_secs(90)), vec![(SessionId(1), 0), (SessionId(2), 5)]);
    }

    #[test]
    fn a_new_leader_waits_a_whole_lease_and_gone_sessions_are_forgotten() {
        let t0 = Instant::now();
        let mut watch = SessionWatch::default();
        let state = sessions(&[(1, 0)]);
        assert!(watch.over(&state, t0).is_empty());
        watch.forget_all();
        // Leading again much later: the old observation does not count.
        let later = t0 + Duration::from_secs(600);
        assert!(watch.over(&state, later).is_empty());
        assert_eq!(watch.over(&state, later + Duration::from_secs(60)), vec![(SessionId(1), 0)]);
        assert!(watch.over(&sessions(&[]), later + Duration::from_secs(61)).is_empty());
        assert!(watch.seen.is_empty(), "a session that left the state is forgotten");
        // Many dead sessions end in commands of bounded size.
        let many: Vec<(u64, u64)> = (0..(MAX_DROPPED_SESSIONS as u64 + 10)).map(|i| (i, 0)).collect();
        let many = sessions(&many);
        watch.over(&many, later);
        assert_eq!(watch.over(&many, later + Duration::from_secs(60)).len(), MAX_DROPPED_SESSIONS);
    }
}
