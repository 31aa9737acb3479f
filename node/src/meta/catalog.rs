//! Applying the backup-related commands: upload sessions, the snapshot catalog and key files.
//!
//! Like the rest of `MetaState::apply` these are deterministic, and a refusal is a result that every replica
//! reaches alike. A snapshot commit is refused when its session expired: GC may have run meanwhile, so
//! only a new session (which re-checks what the cluster holds) may commit.

use strata_proto::{ErrorCode, SessionId, SnapshotId, SnapshotRecord, TenantId};

use super::command::{Digest, MetaResponse};
use super::state::{KeyFileRecord, MetaState, SessionRecord};

/// Largest encrypted snapshot summary accepted.
pub const MAX_SUMMARY_BYTES: usize = 64 << 10;
/// Most reference-list blobs one snapshot may name.
pub const MAX_REF_BLOBS: usize = 4096;
/// Largest key file accepted.
pub const MAX_KEY_FILE_BYTES: usize = 4096;
/// Replaced key files kept per tenant.
pub const KEY_FILE_HISTORY: usize = 16;
/// Upload sessions one tenant may have open at once (a fleet backing up together).
pub const MAX_OPEN_SESSIONS_PER_TENANT: usize = 1024;
/// Snapshots one tenant may keep (years of hourly backups of a few devices; forget old ones beyond).
pub const MAX_SNAPSHOTS_PER_TENANT: usize = 20_000;
/// Most bytes of snapshot records in one page of a listing: well under the 4 MiB response frame, whatever the
/// records hold (one record is at most a 64 KiB summary and 4096 reference lists, about 330 KiB).
pub const PAGE_BYTES: usize = 1 << 20;
/// Most snapshots in one page of a listing.
pub const PAGE_LIMIT: u32 = 10_000;

/// Which clock decides, at a snapshot commit, whether the session's lease ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lease {
    /// Log entries from before the leader kept leases: the proposer's clock in the command.
    ProposerClock,
    /// The leader, which ends dead sessions with `DropSessions`: a session still open is alive.
    Leader,
}

impl MetaState {
    /// One page of `tenant`'s catalog in id order: the snapshots after `after`, at most `limit` (capped at
    /// [`PAGE_LIMIT`]) and at most `max_bytes` of encoded records (but always one, if any is left), and the id
    /// the next page starts after, `None` when nothing is left.
    pub fn snapshot_page(
        &self,
        tenant: TenantId,
        after: Option<SnapshotId>,
        limit: u32,
        max_bytes: usize,
    ) -> (Vec<SnapshotRecord>, Option<SnapshotId>) {
        use std::ops::Bound;
        let Some(catalog) = self.snapshots.get(&tenant) else { return (Vec::new(), None) };
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let limit = limit.clamp(1, PAGE_LIMIT) as usize;
        let mut page = Vec::new();
        let mut bytes = 0usize;
        let mut rest = catalog.range((start, Bound::Unbounded)).peekable();
        while let Some((_, record)) = rest.peek() {
            let size = postcard::to_stdvec(record).map_or(usize::MAX, |v| v.len());
            if page.len() == limit || (!page.is_empty() && bytes.saturating_add(size) > max_bytes) {
                break;
            }
            bytes = bytes.saturating_add(size);
            page.push((*record).clone());
            rest.next();
        }
        let next = if rest.peek().is_some() { page.last().map(|r: &SnapshotRecord| r.id) } else { None };
        (page, next)
    }

    /// The session if `tenant` owns it and it is open; with `now_ms` (legacy entries), also unexpired by that
    /// clock.
    fn owned_session(&self, tenant: TenantId, session: SessionId, now_ms: Option<u64>) -> Result<&SessionRecord, MetaResponse> {
        match self.sessions.get(&session) {
            Some(s) if s.tenant == tenant && now_ms.is_none_or(|now| !s.expired(now)) => Ok(s),
            Some(s) if s.tenant == tenant => Err(MetaResponse::reject(
                ErrorCode::NotFound,
                format!("upload session {} expired; start the backup again (finished uploads are kept)", session.0),
            )),
            _ => Err(MetaResponse::reject(ErrorCode::NotFound, format!("no open upload session {}", session.0))),
        }
    }

    pub(super) fn open_session(&mut self, tenant: TenantId, id: SessionId, now_ms: u64, lease_ms: u64) -> MetaResponse {
        if !self.tenants.contains_key(&tenant) {
            return MetaResponse::reject(ErrorCode::NotFound, format!("{tenant} does not exist"));
        }
        if self.sessions.contains_key(&id) {
            return MetaResponse::reject(ErrorCode::Conflict, "this session id is taken; open another");
        }
        let open = self.sessions.values().filter(|s| s.tenant == tenant && !s.expired(now_ms)).count();
        if open >= MAX_OPEN_SESSIONS_PER_TENANT {
            return MetaResponse::reject(
                ErrorCode::Unavailable,
                format!("{tenant} has {MAX_OPEN_SESSIONS_PER_TENANT} upload sessions open, the limit; retry when some have finished"),
            );
        }
        self.sessions.insert(id, SessionRecord { tenant, opened_ms: now_ms, renewed_ms: now_ms, lease_ms });
        MetaResponse::Session(id)
    }

    pub(super) fn renew_session_v1(&mut self, tenant: TenantId, session: SessionId, now_ms: u64) -> MetaResponse {
        if let Err(refusal) = self.owned_session(tenant, session, Some(now_ms)) {
            return refusal;
        }
        if let Some(s) = self.sessions.get_mut(&session) {
            s.renewed_ms = s.renewed_ms.max(now_ms);
        }
        MetaResponse::Ok
    }

    /// A renewal: the session must be open; its `renewed_ms` takes the proposer's clock even if that is behind,
    /// so the leader's watch sees every renewal as a change.
    pub(super) fn renew_session(&mut self, tenant: TenantId, session: SessionId, now_ms: u64) -> MetaResponse {
        if let Err(refusal) = self.owned_session(tenant, session, None) {
            return refusal;
        }
        if let Some(s) = self.sessions.get_mut(&session) {
            s.renewed_ms = now_ms;
        }
        MetaResponse::Ok
    }

    /// Ends the sessions the leader saw no renewal of for a whole lease, unless renewed since it looked.
    pub(super) fn drop_sessions(&mut self, sessions: &[(SessionId, u64)]) -> MetaResponse {
        let before = self.sessions.len();
        for (id, seen) in sessions {
            if self.sessions.get(id).is_some_and(|s| s.renewed_ms == *seen) {
                self.sessions.remove(id);
            }
        }
        MetaResponse::Count((before - self.sessions.len()) as u64)
    }

    pub(super) fn close_session(&mut self, tenant: TenantId, session: SessionId) -> MetaResponse {
        match self.owned_session(tenant, session, None) {
            Ok(_) => {
                self.sessions.remove(&session);
                MetaResponse::Ok
            }
            Err(refusal) => refusal,
        }
    }

    pub(super) fn commit_snapshot(
        &mut self,
        tenant: TenantId,
        session: SessionId,
        record: &SnapshotRecord,
        now_ms: u64,
        lease: Lease,
    ) -> MetaResponse {
        if let Some(existing) = self.snapshots.get(&tenant).and_then(|c| c.get(&record.id)) {
            // A retried commit whose first attempt succeeded: same content is success, anything else a conflict.
            return if existing.summary == record.summary && existing.refs == record.refs && existing.ref_digests == record.ref_digests {
                self.sessions.remove(&session);
                MetaResponse::Ok
            } else {
                MetaResponse::reject(ErrorCode::Conflict, format!("snapshot {} already exists with other contents", record.id))
            };
        }
        let expiry = match lease {
            Lease::ProposerClock => Some(now_ms),
            Lease::Leader => None,
        };
        if let Err(refusal) = self.owned_session(tenant, session, expiry) {
            return refusal;
        }
        if record.summary.len() > MAX_SUMMARY_BYTES || record.refs.len() > MAX_REF_BLOBS {
            return MetaResponse::reject(
                ErrorCode::TooLarge,
                format!("snapshot summary is limited to {MAX_SUMMARY_BYTES} bytes and {MAX_REF_BLOBS} reference blobs"),
            );
        }
        if self.snapshots.get(&tenant).map_or(0, |c| c.len()) >= MAX_SNAPSHOTS_PER_TENANT {
            return MetaResponse::reject(
                ErrorCode::TooLarge,
                format!("{tenant} keeps {MAX_SNAPSHOTS_PER_TENANT} snapshots, the limit; forget old ones (`strata forget`)"),
            );
        }
        if !record.ref_digests.is_empty() && record.ref_digests.len() != record.refs.len() {
            return MetaResponse::reject(ErrorCode::BadRequest, "a snapshot needs one digest per reference list");
        }
        let stored = SnapshotRecord { committed_ms: now_ms, ..record.clone() };
        self.snapshots.entry(tenant).or_default().insert(record.id, stored);
        self.sessions.remove(&session);
        MetaResponse::Ok
    }

    pub(super) fn forget_snapshots(&mut self, tenant: TenantId, ids: &[SnapshotId]) -> MetaResponse {
        let Some(catalog) = self.snapshots.get_mut(&tenant) else { return MetaResponse::Count(0) };
        let removed = ids.iter().filter(|id| catalog.remove(id).is_some()).count();
        MetaResponse::Count(removed as u64)
    }

    pub(super) fn put_key_file(&mut self, tenant: TenantId, text: &str, check: Digest, proof: Option<Digest>) -> MetaResponse {
        if text.len() > MAX_KEY_FILE_BYTES {
            return MetaResponse::reject(ErrorCode::TooLarge, format!("key files are limited to {MAX_KEY_FILE_BYTES} bytes"));
        }
        if let Some(existing) = self.key_files.get(&tenant) {
            let proven = proof.is_some_and(|p| *blake3::hash(&p).as_bytes() == existing.check);
            if !proven {
                return MetaResponse::reject(
                    ErrorCode::PermissionDenied,
                    "a key file exists: replacing it needs the current master key (use `strata key passwd`)",
                );
            }
        }
        self.key_files.insert(tenant, KeyFileRecord { text: text.to_owned(), check });
        MetaResponse::Ok
    }

    /// Stores a key file like `put_key_file`, keeping the one it replaces (a wrong password typed into `key
    /// passwd` by someone holding the key must not lose the tenant its only way back).
    pub(super) fn store_key_file(
        &mut self,
        tenant: TenantId,
        text: &str,
        check: Digest,
        proof: Option<Digest>,
        now_ms: u64,
    ) -> MetaResponse {
        let previous = self.key_files.get(&tenant).cloned();
        match self.put_key_file(tenant, text, check, proof) {
            MetaResponse::Ok => {}
            refused => return refused,
        }
        if let Some(old) = previous {
            let history = self.key_file_history.entry(tenant).or_default();
            history.push(old);
            if history.len() > KEY_FILE_HISTORY {
                history.remove(0);
            }
            self.audit(now_ms, super::authority::Actor::TenantAdmin(tenant), "replaced the tenant's key file (the old one is kept)".into());
        }
        MetaResponse::Ok
    }

    pub(super) fn expire_sessions(&mut self, now_ms: u64) -> MetaResponse {
        let before = self.sessions.len();
        self.sessions.retain(|_, s| !s.expired(now_ms));
        MetaResponse::Count((before - self.sessions.len()) as u64)
    }

    /// Open sessions of `tenant` at `now_ms`.
    pub fn open_sessions(&self, tenant: TenantId, now_ms: u64) -> Vec<SessionId> {
        self.sessions.iter().filter(|(_, s)| s.tenant == tenant && !s.expired(now_ms)).map(|(id, _)| *id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::command::{InitCluster, MetaCommand};
    use strata_proto::{ChunkId, EcProfile};

    fn state_with_tenant() -> (MetaState, TenantId) {
        let mut s = MetaState::default();
        let init = InitCluster {
            cluster_name: "c".into(),
            partition_bits: 1,
            generation_name: "g".into(),
            profile: EcProfile::DEFAULT,
            operator_token: [1; 32],
            now_ms: 0,
        };
        s.apply(&MetaCommand::Init(init));
        let MetaResponse::TenantId(t) = s.apply(&MetaCommand::CreateTenant { name: "t".into(), now_ms: 0 }) else { panic!() };
        (s, t)
    }

    fn open(s: &mut MetaState, tenant: TenantId, now_ms: u64) -> SessionId {
        match s.apply(&MetaCommand::OpenSession { tenant, session: SessionId(now_ms + 1000), now_ms, lease_ms: 1000 }) {
            MetaResponse::Session(id) => id,
            other => panic!("{other:?}"),
        }
    }

    fn record(id: u8) -> SnapshotRecord {
        SnapshotRecord {
            id: SnapshotId([id; 16]),
            time_ms: 5,
            committed_ms: 0,
            summary: vec![1, 2, 3],
            refs: vec![ChunkId([id; 32])],
            ref_digests: vec![[id; 32]],
        }
    }

    fn rejected(r: &MetaResponse, code: ErrorCode) -> bool {
        matches!(r, MetaResponse::Rejected(e) if e.code == code)
    }

    #[test]
    fn pages_cover_the_catalog_once_in_order_within_their_bounds() {
        let (mut s, t) = state_with_tenant();
        for id in 1..=25u8 {
            let mut r = record(id);
            r.summary = vec![id; 100 * usize::from(id)];
            s.snapshots.entry(t).or_default().insert(r.id, r);
        }
        for (limit, max_bytes) in [(4, PAGE_BYTES), (100, 1500), (100, 1), (1, PAGE_BYTES), (0, PAGE_BYTES)] {
            let (mut seen, mut after, mut pages) = (Vec::new(), None, 0);
            loop {
                let (page, next) = s.snapshot_page(t, after, limit, max_bytes);
                pages += 1;
                assert!(!page.is_empty() && page.len() <= limit.max(1) as usize, "limit {limit}: {} records", page.len());
                let bytes: usize = page.iter().map(|r| postcard::to_stdvec(r).unwrap().len()).sum();
                assert!(page.len() == 1 || bytes <= max_bytes, "{bytes} bytes in a page of at most {max_bytes}");
                seen.extend(page.iter().map(|r| r.id.0[0]));
                match next {
                    Some(n) => {
                        assert_eq!(Some(n), page.last().map(|r| r.id));
                        after = Some(n);
                    }
                    None => break,
                }
            }
            assert_eq!(seen, (1..=25).collect::<Vec<u8>>(), "limit {limit}, {max_bytes} bytes");
            assert!(pages > 1, "limit {limit}, {max_bytes} bytes: the catalog should need several pages");
        }
        let (all, next) = s.snapshot_page(t, None, PAGE_LIMIT, PAGE_BYTES);
        assert_eq!((all.len(), next), (25, None));
        let (empty, next) = s.snapshot_page(t, Some(SnapshotId([25; 16])), 10, PAGE_BYTES);
        assert!(empty.is_empty() && next.is_none());
        assert_eq!(s.snapshot_page(TenantId(99), None, 10, PAGE_BYTES), (Vec::new(), None));
    }

    #[test]
    fn commit_closes_the_session_and_is_idempotent() {
        let (mut s, t) = state_with_tenant();
        let session = open(&mut s, t, 0);
        let commit = MetaCommand::CommitSnapshot { tenant: t, session, record: record(1), now_ms: 500 };
        assert_eq!(s.apply(&commit), MetaResponse::Ok);
        assert!(s.sessions.is_empty());
        assert_eq!(s.snapshots[&t][&SnapshotId([1; 16])].committed_ms, 500);
        assert_eq!(s.apply(&commit), MetaResponse::Ok, "a retried commit succeeds");
        let mut different = record(1);
        different.summary = vec![9];
        let other = open(&mut s, t, 600);
        assert!(rejected(
            &s.apply(&MetaCommand::CommitSnapshot { tenant: t, session: other, record: different, now_ms: 600 }),
            ErrorCode::Conflict
        ));
    }

    #[test]
    fn old_log_entries_still_apply_their_wall_clock_leases() {
        let (mut s, t) = state_with_tenant();
        let session = open(&mut s, t, 0);
        assert_eq!(s.apply(&MetaCommand::RenewSessionV1 { tenant: t, session, now_ms: 900 }), MetaResponse::Ok);
        assert_eq!(s.open_sessions(t, 1800), vec![session]);
        assert!(rejected(
            &s.apply(&MetaCommand::CommitSnapshotV2 { tenant: t, session, record: record(2), now_ms: 2000 }),
            ErrorCode::NotFound
        ));
        assert!(rejected(&s.apply(&MetaCommand::RenewSessionV1 { tenant: t, session, now_ms: 2000 }), ErrorCode::NotFound));
        assert_eq!(s.apply(&MetaCommand::ExpireSessions { now_ms: 2000 }), MetaResponse::Count(1));
        assert!(s.open_sessions(t, 2000).is_empty());
    }

    #[test]
    fn an_open_session_renews_and_commits_whatever_the_clocks_and_ends_only_when_dropped() {
        let (mut s, t) = state_with_tenant();
        let session = open(&mut s, t, 10 * 3_600_000);
        // Stamps from clocks far behind and far ahead: renewals and commits go through while the session is open.
        assert_eq!(s.apply(&MetaCommand::RenewSession { tenant: t, session, now_ms: 5 }), MetaResponse::Ok);
        assert_eq!(s.sessions[&session].renewed_ms, 5, "a renewal always changes the stamp the leader watches");
        assert_eq!(s.apply(&MetaCommand::RenewSession { tenant: t, session, now_ms: 99 * 3_600_000 }), MetaResponse::Ok);
        let other = open(&mut s, t, 0);
        assert_eq!(s.apply(&MetaCommand::CommitSnapshot { tenant: t, session, record: record(2), now_ms: 1 }), MetaResponse::Ok);
        // The leader ends a session; then it can neither renew nor commit.
        let stamp = s.sessions[&other].renewed_ms;
        // A drop decided before a renewal that was applied first keeps the session.
        assert_eq!(s.apply(&MetaCommand::DropSessions { sessions: vec![(other, stamp + 1)] }), MetaResponse::Count(0));
        assert_eq!(s.apply(&MetaCommand::DropSessions { sessions: vec![(other, stamp), (SessionId(12345), 0)] }), MetaResponse::Count(1));
        assert!(rejected(&s.apply(&MetaCommand::RenewSession { tenant: t, session: other, now_ms: 1 }), ErrorCode::NotFound));
        assert!(rejected(
            &s.apply(&MetaCommand::CommitSnapshot { tenant: t, session: other, record: record(3), now_ms: 1 }),
            ErrorCode::NotFound
        ));
    }

    #[test]
    fn sessions_and_snapshots_are_per_tenant() {
        let (mut s, t) = state_with_tenant();
        let MetaResponse::TenantId(other) = s.apply(&MetaCommand::CreateTenant { name: "u".into(), now_ms: 0 }) else { panic!() };
        let session = open(&mut s, t, 0);
        assert!(rejected(
            &s.apply(&MetaCommand::CommitSnapshot { tenant: other, session, record: record(3), now_ms: 1 }),
            ErrorCode::NotFound
        ));
        assert!(rejected(&s.apply(&MetaCommand::CloseSession { tenant: other, session }), ErrorCode::NotFound));
        s.apply(&MetaCommand::CommitSnapshot { tenant: t, session, record: record(3), now_ms: 1 });
        assert_eq!(s.apply(&MetaCommand::ForgetSnapshots { tenant: other, ids: vec![SnapshotId([3; 16])] }), MetaResponse::Count(0));
        assert_eq!(s.apply(&MetaCommand::ForgetSnapshots { tenant: t, ids: vec![SnapshotId([3; 16])] }), MetaResponse::Count(1));
    }

    #[test]
    fn key_file_replacement_needs_proof() {
        let (mut s, t) = state_with_tenant();
        let proof = [7u8; 32];
        let check = *blake3::hash(&proof).as_bytes();
        assert_eq!(s.apply(&MetaCommand::PutKeyFile { tenant: t, text: "v1".into(), check, proof: None }), MetaResponse::Ok);
        assert!(rejected(
            &s.apply(&MetaCommand::PutKeyFile { tenant: t, text: "evil".into(), check: [0; 32], proof: None }),
            ErrorCode::PermissionDenied
        ));
        assert!(rejected(
            &s.apply(&MetaCommand::PutKeyFile { tenant: t, text: "evil".into(), check: [0; 32], proof: Some([8; 32]) }),
            ErrorCode::PermissionDenied
        ));
        assert_eq!(s.apply(&MetaCommand::PutKeyFile { tenant: t, text: "v2".into(), check, proof: Some(proof) }), MetaResponse::Ok);
        assert_eq!(s.key_files[&t].text, "v2");
    }
}
