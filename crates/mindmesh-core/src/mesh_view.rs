//! The mesh view: per node, the last snapshot it gossiped, when it was last heard from and
//! whether that is too long ago. Time is passed in (`now_ms` of a monotonic clock), so the
//! node and the simulator share this code.

use std::collections::BTreeMap;

use crate::error::{CoreError, Result};
use crate::snapshot::NodeSnapshot;

/// Most nodes the view holds; past it, the node heard from least recently is forgotten.
pub const MAX_VIEW_NODES: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct ViewEntry {
    pub snapshot: NodeSnapshot,
    pub last_seen_ms: u64,
    /// Snapshots accepted from this node.
    pub updates: u64,
}

/// What [`MeshView::observe`] did with a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// The first snapshot from this node.
    New,
    Updated,
    /// Older than the one held (a late or replayed copy): ignored.
    Outdated,
}

/// One row of the view as read by callers.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub node_id: u64,
    pub age_ms: u64,
    pub stale: bool,
    pub snapshot: NodeSnapshot,
}

#[derive(Debug, Clone, Default)]
pub struct MeshView {
    entries: BTreeMap<u64, ViewEntry>,
}

impl MeshView {
    pub fn new() -> Self {
        MeshView::default()
    }

    /// Take a snapshot received from `from`. A snapshot that claims another sender is an
    /// error (the caller scores the sender down); an older one is ignored.
    pub fn observe(&mut self, from: u64, snapshot: NodeSnapshot, now_ms: u64) -> Result<Observed> {
        if snapshot.node_id != from {
            return Err(CoreError::invalid(
                "node_id",
                format!("snapshot claims node {} but came from node {from}", snapshot.node_id),
            ));
        }
        if let Some(e) = self.entries.get_mut(&from) {
            let held = (e.snapshot.incarnation, e.snapshot.seq);
            if (snapshot.incarnation, snapshot.seq) <= held {
                return Ok(Observed::Outdated);
            }
            e.snapshot = snapshot;
            e.last_seen_ms = now_ms;
            e.updates += 1;
            return Ok(Observed::Updated);
        }
        if self.entries.len() >= MAX_VIEW_NODES
            && let Some(oldest) = self.entries.iter().min_by_key(|(_, e)| e.last_seen_ms).map(|(id, _)| *id)
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(from, ViewEntry { snapshot, last_seen_ms: now_ms, updates: 1 });
        Ok(Observed::New)
    }

    pub fn get(&self, node_id: u64) -> Option<&ViewEntry> {
        self.entries.get(&node_id)
    }

    /// Milliseconds since the node was last heard from, if ever.
    pub fn age_ms(&self, node_id: u64, now_ms: u64) -> Option<u64> {
        self.entries.get(&node_id).map(|e| now_ms.saturating_sub(e.last_seen_ms))
    }

    pub fn rows(&self, now_ms: u64, stale_after_ms: u64) -> Vec<NodeView> {
        self.entries
            .iter()
            .map(|(id, e)| {
                let age_ms = now_ms.saturating_sub(e.last_seen_ms);
                NodeView { node_id: *id, age_ms, stale: age_ms > stale_after_ms, snapshot: e.snapshot.clone() }
            })
            .collect()
    }

    pub fn forget(&mut self, node_id: u64) -> bool {
        self.entries.remove(&node_id).is_some()
    }

    /// Forget nodes not heard from for `forget_after_ms` (they left or were removed).
    pub fn expire(&mut self, now_ms: u64, forget_after_ms: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| now_ms.saturating_sub(e.last_seen_ms) <= forget_after_ms);
        before - self.entries.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::HostSample;

    fn snap(node_id: u64, incarnation: u64, seq: u64) -> NodeSnapshot {
        NodeSnapshot {
            node_id,
            node_name: format!("n{node_id}"),
            incarnation,
            seq,
            ts_ms: 0,
            host: HostSample::default(),
            personas: Vec::new(),
        }
    }

    #[test]
    fn keeps_the_newest_and_measures_staleness() {
        let mut v = MeshView::new();
        assert_eq!(v.observe(1, snap(1, 10, 1), 1000).unwrap(), Observed::New);
        assert_eq!(v.observe(1, snap(1, 10, 3), 2000).unwrap(), Observed::Updated);
        assert_eq!(v.observe(1, snap(1, 10, 2), 2500).unwrap(), Observed::Outdated);
        assert_eq!(v.get(1).unwrap().snapshot.seq, 3);
        // a restarted node starts its seq again under a later incarnation
        assert_eq!(v.observe(1, snap(1, 11, 1), 3000).unwrap(), Observed::Updated);
        assert_eq!(v.age_ms(1, 4000), Some(1000));
        let rows = v.rows(9000, 5000);
        assert!(rows[0].stale);
        assert!(!v.rows(7000, 5000)[0].stale);
        assert_eq!(v.expire(9000, 5000), 1);
        assert!(v.is_empty());
    }

    #[test]
    fn a_snapshot_claiming_another_sender_is_refused() {
        let mut v = MeshView::new();
        assert!(v.observe(2, snap(1, 1, 1), 0).is_err());
        assert!(v.is_empty());
    }

    #[test]
    fn the_view_is_bounded() {
        let mut v = MeshView::new();
        for id in 0..(MAX_VIEW_NODES as u64 + 10) {
            v.observe(id, snap(id, 1, 1), id).unwrap();
        }
        assert_eq!(v.len(), MAX_VIEW_NODES);
        assert!(v.get(0).is_none(), "the least recently heard node goes first");
    }
}
