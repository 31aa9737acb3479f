//! Admission: who may open connections and streams, and how many bytes a request may hold in memory, before
//! and after authentication.
//!
//! Three kinds of limit keep one caller from exhausting a node. Connections are capped in total and per source
//! address, before the TLS handshake. Callers without a node certificate (clients, and anyone on the network)
//! are also capped per source address in concurrent requests and in buffered bytes. And every request belongs
//! to a traffic class (client requests, shard traffic between nodes, metadata forwarding, Raft) with a byte
//! budget of its own, so heavy backups never delay Raft heartbeats and nodes never wait on each other's budgets
//! in a cycle. Every byte a request frame, its body or its reply holds is taken from these budgets before it is
//! allocated or sent, and given back when the stream ends. Nothing here ever waits without a deadline.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_proto::{ErrorCode, Request, WireError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;

/// The traffic classes, each with its own byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Requests from clients (tenants, operators, joining nodes, anyone).
    Client,
    /// Shard traffic between nodes (writes, reads, scans, garbage-collection steps).
    Shard,
    /// Metadata writes and read barriers forwarded to the Raft leader.
    Meta,
    /// Raft's own RPCs (append, vote, snapshot).
    Raft,
}

impl Class {
    /// The class of a request from a caller that does (`from_node`) or does not present a node certificate.
    pub fn of(request: &Request, from_node: bool) -> Class {
        match request {
            Request::Raft { .. } if from_node => Class::Raft,
            Request::Meta if from_node => Class::Meta,
            r if r.is_internal() && from_node => Class::Shard,
            _ => Class::Client,
        }
    }

    /// Label in metrics and messages.
    pub fn name(self) -> &'static str {
        match self {
            Class::Client => "client",
            Class::Shard => "shard",
            Class::Meta => "meta",
            Class::Raft => "raft",
        }
    }

    const ALL: [Class; 4] = [Class::Client, Class::Shard, Class::Meta, Class::Raft];

    fn index(self) -> usize {
        self as usize
    }
}

/// Budgets are counted in KiB so that one permit count covers terabytes.
const UNIT: u64 = 1024;

fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// One source address without a node certificate: its connections, request slots and byte budget.
pub struct Source {
    ip: IpAddr,
    connections: AtomicUsize,
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    bytes_units: u32,
}

impl Source {
    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

/// Why a connection or a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The node holds its maximum number of connections.
    #[error("this node has {0} connections open, its limit")]
    TooManyConnections(usize),
    /// The source holds its maximum number of connections.
    #[error("{ip} has {limit} connections open to this node, the limit per address")]
    TooManyConnectionsFrom {
        /// The source.
        ip: IpAddr,
        /// The limit.
        limit: usize,
    },
}

/// Connection and byte accounting of one node.
pub struct Admission {
    max_connections: usize,
    max_connections_per_ip: usize,
    max_requests_per_ip: usize,
    per_ip_units: u32,
    connections: AtomicUsize,
    sources: Mutex<HashMap<IpAddr, Arc<Source>>>,
    budgets: [Arc<Semaphore>; 4],
    budget_units: [u32; 4],
}

/// A connection's place; dropping it frees the place.
pub struct ConnectionGuard {
    admission: Arc<Admission>,
    source: Arc<Source>,
}

impl ConnectionGuard {
    /// The connection's source (its per-address limits apply only if it turns out not to be a node).
    pub fn source(&self) -> &Arc<Source> {
        &self.source
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.admission.connections.fetch_sub(1, Ordering::Relaxed);
        let mut sources = self.admission.sources.lock().unwrap_or_else(|e| e.into_inner());
        if self.source.connections.fetch_sub(1, Ordering::Relaxed) == 1 {
            sources.remove(&self.source.ip);
        }
    }
}

/// Bytes a request holds: permits of its class budget and, for a caller without a node certificate, of its
/// source's budget. Dropping it gives them back.
#[derive(Debug, Default)]
pub struct Held {
    class: Option<OwnedSemaphorePermit>,
    source: Option<OwnedSemaphorePermit>,
}

impl Held {
    /// Adds what `other` holds to this.
    pub fn merge(&mut self, other: Held) {
        for (mine, theirs) in [(&mut self.class, other.class), (&mut self.source, other.source)] {
            match (mine.as_mut(), theirs) {
                (Some(m), Some(t)) => m.merge(t),
                (None, Some(t)) => *mine = Some(t),
                _ => {}
            }
        }
    }

    /// Gives back everything above `bytes` (a reservation made for the largest possible reply, once the actual
    /// reply is known).
    pub fn shrink_to(&mut self, bytes: u64) {
        let keep = units(bytes) as usize;
        for permit in [&mut self.class, &mut self.source].into_iter().flatten() {
            let surplus = permit.num_permits().saturating_sub(keep);
            if surplus > 0 {
                drop(permit.split(surplus));
            }
        }
    }
}

fn busy(what: String) -> WireError {
    WireError::new(ErrorCode::Unavailable, format!("node busy: {what}; retry later"))
}

impl Admission {
    /// Accounting for the limits in `limits`.
    pub fn new(limits: &Limits) -> Arc<Self> {
        let class_bytes =
            [limits.max_inflight_bytes, limits.max_shard_inflight_bytes, limits.max_meta_inflight_bytes, limits.max_raft_inflight_bytes];
        let budget_units = class_bytes.map(units);
        Arc::new(Admission {
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            max_requests_per_ip: limits.max_requests_per_ip,
            per_ip_units: units(limits.max_inflight_bytes_per_ip),
            connections: AtomicUsize::new(0),
            sources: Mutex::new(HashMap::new()),
            budgets: budget_units.map(|u| Arc::new(Semaphore::new(u as usize))),
            budget_units,
        })
    }

    /// Admits a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionGuard, Refusal> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if self.connections.load(Ordering::Relaxed) >= self.max_connections {
            return Err(Refusal::TooManyConnections(self.max_connections));
        }
        let source = sources
            .entry(ip)
            .or_insert_with(|| {
                Arc::new(Source {
                    ip,
                    connections: AtomicUsize::new(0),
                    requests: Arc::new(Semaphore::new(self.max_requests_per_ip)),
                    bytes: Arc::new(Semaphore::new(self.per_ip_units as usize)),
                    bytes_units: self.per_ip_units,
                })
            })
            .clone();
        if source.connections.load(Ordering::Relaxed) >= self.max_connections_per_ip {
            return Err(Refusal::TooManyConnectionsFrom { ip, limit: self.max_connections_per_ip });
        }
        source.connections.fetch_add(1, Ordering::Relaxed);
        self.connections.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionGuard { admission: self.clone(), source })
    }

    /// A request slot of `source`, without waiting: a source with every slot in use is refused.
    pub fn request_slot(&self, source: &Source) -> Result<OwnedSemaphorePermit, WireError> {
        source.requests.clone().try_acquire_owned().map_err(|_| {
            busy(format!("{} has {} requests in progress on this node, the limit per address", source.ip, self.max_requests_per_ip))
        })
    }

    /// Takes `bytes` from the budget of `class` and, when given, of `source`, waiting at most `wait`.
    pub async fn reserve(&self, class: Class, source: Option<&Source>, bytes: u64, wait: Duration) -> Result<Held, WireError> {
        let need = units(bytes);
        if need == 0 {
            return Ok(Held::default());
        }
        let total = self.budget_units[class.index()];
        if need > total || source.is_some_and(|s| need > s.bytes_units) {
            return Err(WireError::new(
                ErrorCode::TooLarge,
                format!("{bytes} bytes exceed this node's {} memory budget for {} requests", total as u64 * UNIT, class.name()),
            ));
        }
        let acquire = async {
            let source_permit = match source {
                Some(s) => Some(s.bytes.clone().acquire_many_owned(need).await.map_err(|_| shutting_down())?),
                None => None,
            };
            let class_permit = self.budgets[class.index()].clone().acquire_many_owned(need).await.map_err(|_| shutting_down())?;
            Ok(Held { class: Some(class_permit), source: source_permit })
        };
        match tokio::time::timeout(wait, acquire).await {
            Ok(held) => held,
            Err(_) => Err(busy(match source {
                Some(s) => format!(
                    "{} bytes for a {} request from {} did not fit the memory budget within {} ms",
                    bytes,
                    class.name(),
                    s.ip,
                    wait.as_millis()
                ),
                None => {
                    format!("{bytes} bytes for a {} request did not fit the memory budget within {} ms", class.name(), wait.as_millis())
                }
            })),
        }
    }

    /// Bytes held now in each class, for metrics.
    pub fn held_bytes(&self) -> Vec<(&'static str, u64)> {
        Class::ALL
            .iter()
            .map(|c| {
                let free = self.budgets[c.index()].available_permits() as u64;
                (c.name(), (u64::from(self.budget_units[c.index()]) - free.min(u64::from(self.budget_units[c.index()]))) * UNIT)
            })
            .collect()
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

fn shutting_down() -> WireError {
    WireError::new(ErrorCode::Unavailable, "node is shutting down")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 3,
            max_connections_per_ip: 2,
            max_requests_per_ip: 2,
            max_inflight_bytes: 10 * 1024,
            max_inflight_bytes_per_ip: 4 * 1024,
            max_shard_inflight_bytes: 8 * 1024,
            ..Limits::default()
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn connections_are_capped_in_total_and_per_address() {
        let a = Admission::new(&limits());
        let first = a.admit(A).unwrap();
        let _second = a.admit(A).unwrap();
        assert_eq!(a.admit(A).err(), Some(Refusal::TooManyConnectionsFrom { ip: A, limit: 2 }));
        let _third = a.admit(B).unwrap();
        assert_eq!(a.admit(B).err(), Some(Refusal::TooManyConnections(3)));
        drop(first);
        let _again = a.admit(A).expect("a closed connection frees its place");
        assert_eq!(a.connections(), 3);
    }

    #[test]
    fn request_slots_are_capped_per_address() {
        let a = Admission::new(&limits());
        let conn = a.admit(A).unwrap();
        let s1 = a.request_slot(conn.source()).unwrap();
        let _s2 = a.request_slot(conn.source()).unwrap();
        let e = a.request_slot(conn.source()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(e.message.contains("10.0.0.1"), "{e:?}");
        drop(s1);
        assert!(a.request_slot(conn.source()).is_ok());
    }

    #[tokio::test]
    async fn budgets_bound_bytes_per_class_and_per_address() {
        let a = Admission::new(&limits());
        let conn = a.admit(A).unwrap();
        let wait = Duration::from_millis(20);
        // The address may hold 4 KiB, whatever the class budget says.
        let mut held = a.reserve(Class::Client, Some(conn.source()), 3 * 1024, wait).await.unwrap();
        let e = a.reserve(Class::Client, Some(conn.source()), 2 * 1024, wait).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
        // A node's request is not limited by the address, only by its own class.
        let shard = a.reserve(Class::Shard, None, 8 * 1024, wait).await.unwrap();
        assert!(a.reserve(Class::Shard, None, 1, wait).await.is_err(), "the shard budget is spent");
        assert!(a.reserve(Class::Raft, None, 1024, wait).await.is_ok(), "Raft has a budget of its own");
        // Shrinking a reservation gives the surplus back.
        held.shrink_to(1024);
        let more = a.reserve(Class::Client, Some(conn.source()), 3 * 1024, wait).await.unwrap();
        held.merge(more);
        assert_eq!(a.held_bytes()[0], ("client", 4 * 1024));
        drop(held);
        drop(shard);
        assert_eq!(a.held_bytes().iter().map(|(_, b)| *b).sum::<u64>(), 0);
        // More than a whole budget is refused at once instead of waiting forever.
        assert_eq!(a.reserve(Class::Client, None, 11 * 1024, wait).await.unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn requests_are_classed_by_kind_and_caller() {
        let raft = Request::Raft { rpc: strata_proto::RaftRpc::Vote };
        assert_eq!(Class::of(&raft, true), Class::Raft);
        assert_eq!(Class::of(&raft, false), Class::Client, "without a certificate it is refused later, as a client");
        assert_eq!(Class::of(&Request::Meta, true), Class::Meta);
        assert_eq!(Class::of(&Request::ListSnapshots, true), Class::Client);
        let scan =
            Request::ScanShards { partition: strata_proto::PartitionId(0), after: None, limit: 1, min_epoch: strata_proto::Epoch(0) };
        assert_eq!(Class::of(&scan, true), Class::Shard);
    }
}
