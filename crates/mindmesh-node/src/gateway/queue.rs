//! The node-wide queue of requests waiting for a persona, as sans-IO logic: one FIFO per
//! persona, and a choice among their oldest requests by aged priority. It holds whatever the
//! runtime gives it (a reply channel); time is passed in.
//!
//! Aged priority = base priority (budget priority × throttle) + waited ms / `aging_ms_per_point`.
//! A persona's oldest request has waited longest, so only the heads compete; a low priority
//! request climbs by one point per `aging_ms_per_point` until it outranks fresh high-priority
//! ones: nothing waits forever while it is within its timeout.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// One waiting request.
#[derive(Debug)]
pub struct Waiting<T> {
    pub item: T,
    /// When the request reached the gateway (ms on the queue's clock): its age and deadline
    /// count from there.
    pub arrived_ms: u64,
}

/// How a persona stands when the queue chooses whom to serve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lane {
    pub priority: f64,
    /// It may take a request now (serving, not draining, below its concurrency).
    pub open: bool,
}

#[derive(Debug)]
pub struct Queue<T> {
    lanes: BTreeMap<Arc<str>, VecDeque<Waiting<T>>>,
    len: usize,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue { lanes: BTreeMap::new(), len: 0 }
    }
}

impl<T> Queue<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len_of(&self, persona: &str) -> usize {
        self.lanes.get(persona).map_or(0, VecDeque::len)
    }

    pub fn push(&mut self, persona: Arc<str>, item: T, arrived_ms: u64) {
        self.lanes.entry(persona).or_default().push_back(Waiting { item, arrived_ms });
        self.len += 1;
    }

    /// Put back a request taken by [`Queue::pop`] that could not be served after all.
    pub fn push_front(&mut self, persona: Arc<str>, w: Waiting<T>) {
        self.lanes.entry(persona).or_default().push_front(w);
        self.len += 1;
    }

    /// Personas with waiting requests.
    pub fn personas(&self) -> impl Iterator<Item = &Arc<str>> {
        self.lanes.keys()
    }

    /// The persona whose oldest request goes next, with that request's aged priority: the
    /// highest among the open lanes, the longest-waiting on a tie.
    pub fn pick(
        &self,
        now_ms: u64,
        aging_ms_per_point: u64,
        lane: impl Fn(&str) -> Option<Lane>,
    ) -> Option<(Arc<str>, f64)> {
        let aging = aging_ms_per_point.max(1) as f64;
        let mut best: Option<(&Arc<str>, f64, u64)> = None;
        for (name, q) in &self.lanes {
            let Some(head) = q.front() else { continue };
            let Some(l) = lane(name).filter(|l| l.open) else { continue };
            let score = l.priority + now_ms.saturating_sub(head.arrived_ms) as f64 / aging;
            let better = match best {
                None => true,
                Some((_, s, arrived)) => score > s || (score == s && head.arrived_ms < arrived),
            };
            if better {
                best = Some((name, score, head.arrived_ms));
            }
        }
        best.map(|(name, score, _)| (Arc::clone(name), score))
    }

    pub fn pop(&mut self, persona: &str) -> Option<Waiting<T>> {
        let q = self.lanes.get_mut(persona)?;
        let w = q.pop_front();
        if q.is_empty() {
            self.lanes.remove(persona);
        }
        if w.is_some() {
            self.len -= 1;
        }
        w
    }

    /// Take every request of a persona (it is gone, stopped or refused).
    pub fn take_all(&mut self, persona: &str) -> Vec<Waiting<T>> {
        let taken: Vec<_> = self.lanes.remove(persona).map(Vec::from).unwrap_or_default();
        self.len -= taken.len();
        taken
    }

    /// Take the requests whose time is up: arrived at or before `now_ms - timeout_ms` of
    /// their persona (the timeout read now, so a budget change applies to waiting requests).
    pub fn expire(&mut self, now_ms: u64, timeout_ms: impl Fn(&str) -> u64) -> Vec<(Arc<str>, Waiting<T>)> {
        let mut out = Vec::new();
        let mut emptied = Vec::new();
        for (name, q) in &mut self.lanes {
            let t = timeout_ms(name);
            // arrivals are in order, near enough: the oldest is at the front
            while q.front().is_some_and(|w| w.arrived_ms.saturating_add(t) <= now_ms) {
                if let Some(w) = q.pop_front() {
                    out.push((Arc::clone(name), w));
                }
            }
            if q.is_empty() {
                emptied.push(Arc::clone(name));
            }
        }
        for name in emptied {
            self.lanes.remove(&name);
        }
        self.len -= out.len();
        out
    }

    /// When the next waiting request times out.
    pub fn next_deadline_ms(&self, timeout_ms: impl Fn(&str) -> u64) -> Option<u64> {
        self.lanes.iter().filter_map(|(name, q)| q.front().map(|w| w.arrived_ms.saturating_add(timeout_ms(name)))).min()
    }

    /// Empty the queue (shutdown).
    pub fn take_everything(&mut self) -> Vec<(Arc<str>, Waiting<T>)> {
        let lanes = std::mem::take(&mut self.lanes);
        self.len = 0;
        lanes.into_iter().flat_map(|(name, q)| q.into_iter().map(move |w| (Arc::clone(&name), w))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(hi: f64, lo: f64) -> impl Fn(&str) -> Option<Lane> {
        move |name| match name {
            "hi" => Some(Lane { priority: hi, open: true }),
            "lo" => Some(Lane { priority: lo, open: true }),
            "shut" => Some(Lane { priority: 100.0, open: false }),
            _ => None,
        }
    }

    fn drain_order(q: &mut Queue<u32>, now_ms: u64, aging: u64, hi: f64, lo: f64) -> Vec<u32> {
        let mut order = Vec::new();
        while let Some((p, _)) = q.pick(now_ms, aging, lanes(hi, lo)) {
            order.push(q.pop(&p).unwrap().item);
        }
        order
    }

    #[test]
    fn higher_priority_first_fifo_within_a_persona() {
        let mut q = Queue::default();
        let (hi, lo): (Arc<str>, Arc<str>) = ("hi".into(), "lo".into());
        q.push(lo.clone(), 1, 0);
        q.push(lo.clone(), 2, 1);
        q.push(hi.clone(), 3, 2);
        q.push(hi.clone(), 4, 3);
        assert_eq!(q.len(), 4);
        assert_eq!(drain_order(&mut q, 10, 100, 90.0, 10.0), vec![3, 4, 1, 2]);
        assert!(q.is_empty());
    }

    #[test]
    fn aging_lets_low_priority_through_at_last() {
        // a priority-10 request that has waited 8.5 s (85 points) outranks a fresh priority-90 one
        let mut q = Queue::default();
        q.push("lo".into(), 1, 0);
        q.push("hi".into(), 2, 8_500);
        assert_eq!(drain_order(&mut q, 8_500, 100, 90.0, 10.0)[0], 1);
        // after 7.5 s (75 points) it does not yet
        let mut q = Queue::default();
        q.push("lo".into(), 1, 0);
        q.push("hi".into(), 2, 7_500);
        assert_eq!(drain_order(&mut q, 7_500, 100, 90.0, 10.0)[0], 2);
    }

    #[test]
    fn a_multiplied_priority_outranks() {
        let mut q = Queue::default();
        q.push("hi".into(), 1, 0);
        q.push("lo".into(), 2, 0);
        // lo at priority 50 × 2.0 beats hi at 90
        assert_eq!(drain_order(&mut q, 0, 100, 90.0, 100.0), vec![2, 1]);
    }

    #[test]
    fn closed_and_unknown_lanes_wait() {
        let mut q = Queue::default();
        q.push("shut".into(), 1, 0);
        q.push("ghost".into(), 2, 0);
        q.push("lo".into(), 3, 5);
        assert_eq!(drain_order(&mut q, 10, 100, 90.0, 10.0), vec![3]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.take_all("shut").len(), 1);
        assert_eq!((q.len(), q.len_of("ghost")), (1, 1));
        assert_eq!(q.take_everything().len(), 1);
        assert!(q.is_empty());
    }

    #[test]
    fn timeouts_read_at_expiry_time() {
        let mut q = Queue::default();
        q.push("hi".into(), 1, 0);
        q.push("hi".into(), 2, 50);
        q.push("lo".into(), 3, 0);
        let timeout = |name: &str| if name == "hi" { 100 } else { 1_000 };
        assert_eq!(q.next_deadline_ms(timeout), Some(100));
        assert!(q.expire(99, timeout).is_empty());
        let gone = q.expire(100, timeout);
        assert_eq!(gone.iter().map(|(_, w)| w.item).collect::<Vec<_>>(), vec![1]);
        // the budget changed: lo's timeout is now short too
        let gone = q.expire(200, |_| 100);
        assert_eq!(gone.len(), 2);
        assert!(q.is_empty() && q.next_deadline_ms(timeout).is_none());
    }
}
