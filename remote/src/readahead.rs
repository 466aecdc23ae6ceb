//! Read-ahead for records read out of packs in the bucket, shared by a shard's cold reads and
//! a replica's.
//!
//! A file's blocks are written together, so they lie together in a pack, and they are read
//! back together: a `get_many` of a DAG's blocks, a gateway walking a file block by block, a
//! bitswap session's wants. One ranged GET costs about the same for 4 KiB as for 1 MiB (the
//! server reads its own storage unit, 1 MiB in Garage, for any range inside it), so a read
//! that looks sequential fetches [`ReadAhead::readahead`] bytes more in the same request, and
//! the span is kept in a cache of pack ranges (a budget in bytes, least recently used dropped
//! first). A read of records inside a span still in flight waits for it rather than asking
//! again: concurrent readers of one file then share one request.
//!
//! Packs are immutable, so a cached range never goes stale. Which records are live stays the
//! caller's index's to say: a read reaches here only through an index entry.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

/// A pack as the cache names it: the caller's choice (a shard uses the pack number, a replica
/// the shard and the pack).
pub type PackId = u64;

/// Read-ahead sequences remembered per pack at most: only recent walks matter, and an edge
/// device keeps this small.
const WALKS: usize = 1024;

/// One cache of pack ranges, with the read-ahead length and the walks it has seen.
pub struct ReadAhead {
    readahead: u64,
    budget: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// (pack, start, bytes), newest last.
    spans: VecDeque<(PackId, u64, Bytes)>,
    held: u64,
    /// Read-aheads in flight: (id, pack, range, how they land).
    flights: Vec<(u64, PackId, Range<u64>, Landing)>,
    next_flight: u64,
    /// Where the last read of each pack ended.
    last_end: std::collections::HashMap<PackId, u64>,
}

/// How a read-ahead in flight tells the reads waiting for it that it landed: it fills `span`
/// (left empty on failure) and drops the sender of `done`, which wakes them.
#[derive(Clone)]
pub struct Landing {
    /// Where the span starts in its pack.
    start: u64,
    done: flume::Receiver<()>,
    span: Arc<Mutex<Option<Bytes>>>,
}

impl Landing {
    /// Waits for the read-ahead, then copies `range` out of it; `None` if it failed or was
    /// dropped (the caller then asks for the record itself).
    pub async fn record(&self, range: &Range<u64>) -> Option<Bytes> {
        let _ = self.done.recv_async().await;
        let span = lock(&self.span).clone()?;
        Some(copy_out(&span, self.start, range))
    }
}

/// A read-ahead in flight, registered in its [`ReadAhead`] until it lands or is dropped.
pub struct Flight<'a> {
    cache: &'a ReadAhead,
    id: u64,
    pack: PackId,
    range: Range<u64>,
    span: Arc<Mutex<Option<Bytes>>>,
    _done: flume::Sender<()>,
}

impl Flight<'_> {
    /// The span arrived (the bytes of the flight's range, from its start): it is cached, the
    /// reads waiting for it take their records from it, and `fetched`'s records are copied
    /// out of it, in order.
    pub fn land(self, span: Bytes, fetched: &[Range<u64>]) -> Vec<Bytes> {
        let records = fetched
            .iter()
            .map(|r| copy_out(&span, self.range.start, r))
            .collect();
        *lock(&self.span) = Some(span.clone());
        self.cache.insert(self.pack, self.range.start, span);
        records
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.cache.state().flights.retain(|(id, ..)| *id != self.id);
    }
}

/// How to read some records of one pack, given the cache: what it already holds, what waits
/// for a read-ahead in flight, and the request to make for the rest.
pub struct Plan<'a> {
    /// (caller's index, record) served from cached spans.
    pub hits: Vec<(usize, Bytes)>,
    /// (caller's index, range, the read-ahead to wait for).
    pub joined: Vec<(usize, Range<u64>, Landing)>,
    /// (caller's index, range) the request below must fetch.
    pub fetch: Vec<(usize, Range<u64>)>,
    /// The ranges to ask the bucket for: `fetch`'s own, or one span from the first of them
    /// to the read-ahead's end. Empty: no request.
    pub request: Vec<Range<u64>>,
    /// The read-ahead `request` is, if it is one: land it with the response.
    pub flight: Option<Flight<'a>>,
}

impl Plan<'_> {
    /// The records of `fetch`, in its order, from the response to `request`.
    pub fn finish(self, mut got: Vec<Bytes>) -> Vec<(usize, Bytes)> {
        let (indices, ranges): (Vec<usize>, Vec<Range<u64>>) = self.fetch.into_iter().unzip();
        let records = match (self.flight, got.len()) {
            (Some(flight), 1) => flight.land(got.remove(0), &ranges),
            _ => got,
        };
        indices.into_iter().zip(records).collect()
    }
}

impl ReadAhead {
    /// `readahead` bytes past a sequential read (0: off), `budget` bytes of cached spans.
    pub fn new(readahead: u64, budget: u64) -> ReadAhead {
        ReadAhead {
            readahead,
            budget,
            state: Mutex::default(),
        }
    }

    /// How to read `items` (the caller's index and the record's extent) of `pack`, sorted
    /// by offset, whose length is `pack_len` if known (no read-ahead without it).
    ///
    /// A read reads ahead when it looks like part of a walk through what was written
    /// together: two or more records within one read-ahead's length of each other
    /// (concurrent writers interleave their batches, so a file's blocks are close rather
    /// than adjacent), or a read starting within one read-ahead's length after where the
    /// last read of the pack ended (a file read block by block).
    pub fn plan(
        &self,
        pack: PackId,
        pack_len: Option<u64>,
        items: &[(usize, Range<u64>)],
    ) -> Plan<'_> {
        let mut plan = Plan {
            hits: Vec::new(),
            joined: Vec::new(),
            fetch: Vec::new(),
            request: Vec::new(),
            flight: None,
        };
        let (Some((_, first)), Some((_, last))) = (items.first(), items.last()) else {
            return plan;
        };
        let mut state = self.state();
        let follows = state
            .last_end
            .get(&pack)
            .is_some_and(|&end| end <= first.start && first.start - end < self.readahead);
        if state.last_end.len() >= WALKS {
            state.last_end.clear();
        }
        state.last_end.insert(pack, last.end);
        let clustered = items.len() >= 2 && last.end - first.start <= self.readahead;
        for (i, range) in items {
            if let Some(record) = state.cached(pack, range) {
                plan.hits.push((*i, record));
            } else if let Some(landing) = state.flying(pack, range) {
                plan.joined.push((*i, range.clone(), landing));
            } else {
                plan.fetch.push((*i, range.clone()));
            }
        }
        let Some((_, from)) = plan.fetch.first() else {
            return plan;
        };
        let end = pack_len
            .filter(|_| self.readahead > 0 && (clustered || follows))
            .map(|len| (last.end + self.readahead).min(len).max(last.end));
        match end {
            Some(end) => {
                let range = from.start..end;
                plan.request = vec![range.clone()];
                plan.flight = Some(self.start_flight(&mut state, pack, range));
            }
            None => plan.request = plan.fetch.iter().map(|(_, r)| r.clone()).collect(),
        }
        plan
    }

    fn start_flight(&self, state: &mut State, pack: PackId, range: Range<u64>) -> Flight<'_> {
        let (done, waiting) = flume::bounded(1);
        let span = Arc::new(Mutex::new(None));
        state.next_flight += 1;
        let id = state.next_flight;
        state.flights.push((
            id,
            pack,
            range.clone(),
            Landing {
                start: range.start,
                done: waiting,
                span: Arc::clone(&span),
            },
        ));
        Flight {
            cache: self,
            id,
            pack,
            range,
            span,
            _done: done,
        }
    }

    fn insert(&self, pack: PackId, start: u64, bytes: Bytes) {
        let len = bytes.len() as u64;
        if len == 0 || len > self.budget {
            return;
        }
        let mut state = self.state();
        state.held += len;
        state.spans.push_back((pack, start, bytes));
        while state.held > self.budget {
            match state.spans.pop_front() {
                Some((_, _, gone)) => state.held -= gone.len() as u64,
                None => break,
            }
        }
    }

    /// Bytes of cached spans.
    pub fn held(&self) -> u64 {
        self.state().held
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl State {
    /// A copy of `range` of `pack` if a cached span holds all of it (the span becomes the
    /// newest).
    fn cached(&mut self, pack: PackId, range: &Range<u64>) -> Option<Bytes> {
        let at = self.spans.iter().rposition(|(p, start, bytes)| {
            *p == pack && *start <= range.start && range.end <= start + bytes.len() as u64
        })?;
        let record = copy_out(&self.spans[at].2, self.spans[at].1, range);
        if let Some(span) = self.spans.remove(at) {
            self.spans.push_back(span);
        }
        Some(record)
    }

    /// The read-ahead in flight that will hold all of `range` of `pack`.
    fn flying(&self, pack: PackId, range: &Range<u64>) -> Option<Landing> {
        self.flights
            .iter()
            .find(|(_, p, r, _)| *p == pack && r.start <= range.start && range.end <= r.end)
            .map(|(.., landing)| landing.clone())
    }
}

/// `range` of a span read from `start`, copied: a slice would keep the whole span alive
/// wherever the record is kept (a block cache). Bytes the span does not have come back
/// empty, which fails the record's check as a short read would.
fn copy_out(span: &Bytes, start: u64, range: &Range<u64>) -> Bytes {
    let from = range.start.saturating_sub(start) as usize;
    let to = range.end.saturating_sub(start) as usize;
    span.get(from..to)
        .map_or_else(Bytes::new, Bytes::copy_from_slice)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent between statements: a panic elsewhere cannot leave it half
    // changed.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn span(n: u8, len: u8) -> Bytes {
        Bytes::from((0..len).map(|i| i.wrapping_add(n)).collect::<Vec<u8>>())
    }

    #[test]
    fn cached_spans_serve_only_what_they_hold_within_their_budget() {
        let cache = ReadAhead::new(0, 100);
        cache.insert(1, 1000, span(0, 40));
        let mut state = cache.state();
        assert_eq!(
            state.cached(1, &(1010..1014)).as_deref(),
            Some(&[10, 11, 12, 13][..])
        );
        assert_eq!(state.cached(1, &(1030..1041)), None, "past the span's end");
        assert_eq!(state.cached(2, &(1010..1014)), None, "another pack");
        drop(state);
        cache.insert(2, 0, span(100, 40));
        // Pack 1's span is used again, so a third span drops pack 2's.
        assert!(cache.state().cached(1, &(1000..1001)).is_some());
        cache.insert(3, 0, span(200, 40));
        assert_eq!(cache.held(), 80);
        assert_eq!(
            cache.state().cached(2, &(0..1)),
            None,
            "least recently used went"
        );
        assert!(cache.state().cached(1, &(1000..1001)).is_some());
        // A span over the whole budget is not kept.
        cache.insert(4, 0, Bytes::from(vec![0; 101]));
        assert_eq!(cache.state().cached(4, &(0..1)), None);
    }

    #[test]
    fn scattered_reads_do_not_read_ahead_and_walks_do() {
        let cache = ReadAhead::new(1000, 1 << 20);
        // Two records far apart: their own ranges.
        let plan = cache.plan(7, Some(1 << 20), &[(0, 0..10), (1, 5000..5010)]);
        assert_eq!(plan.request, vec![0..10, 5000..5010]);
        assert!(plan.flight.is_none());
        // Starting just after the last read's end: a walk, read ahead to the pack's end.
        let plan = cache.plan(7, Some(5600), &[(0, 5016..5026)]);
        assert_eq!(plan.request, vec![5016..5600]);
        // Two records close together: read ahead, one span from the first.
        let plan2 = cache.plan(8, Some(1 << 20), &[(0, 100..110), (1, 300..310)]);
        assert_eq!(plan2.request, vec![100..1310]);
        // Without the pack's length, or with read-ahead off, never.
        assert!(
            cache
                .plan(9, None, &[(0, 0..1), (1, 1..2)])
                .flight
                .is_none()
        );
        let off = ReadAhead::new(0, 1 << 20);
        assert_eq!(
            off.plan(9, Some(100), &[(0, 0..1), (1, 1..2)]).request,
            vec![0..1, 1..2]
        );
        drop((plan, plan2));
    }

    #[test]
    fn a_read_inside_a_span_in_flight_waits_for_it_and_a_failed_one_sends_it_to_ask() {
        let cache = ReadAhead::new(1000, 1 << 20);
        let first = cache.plan(3, Some(1 << 20), &[(0, 100..110), (1, 120..130)]);
        assert_eq!(first.request, vec![100..1130]);
        // Another read of the same neighbourhood while the first is in flight.
        let second = cache.plan(3, Some(1 << 20), &[(5, 500..520)]);
        assert!(second.request.is_empty() && second.fetch.is_empty());
        let (_, range, landing) = second.joined[0].clone();
        let bytes: Vec<u8> = (0..1030u32).map(|i| (i % 251) as u8).collect();
        let got = first.finish(vec![Bytes::from(bytes)]);
        assert_eq!(got[0], (0, Bytes::from((0..10).collect::<Vec<u8>>())));
        assert_eq!(got[1], (1, Bytes::from((20..30).collect::<Vec<u8>>())));
        // The span is cached and the waiter gets its record from it.
        let record = futures_lite::future::block_on(landing.record(&range));
        assert_eq!(record, Some(Bytes::from((149..169).collect::<Vec<u8>>())));
        assert!(cache.state().flights.is_empty());
        assert!(cache.state().cached(3, &(100..110)).is_some());

        // A read-ahead dropped without landing (a failed request) wakes its waiter to nothing.
        let failing = cache.plan(4, Some(1 << 20), &[(0, 0..10), (1, 10..20)]);
        let waiting = cache.plan(4, Some(1 << 20), &[(0, 30..40)]);
        let landing = waiting.joined[0].2.clone();
        drop(failing);
        assert_eq!(
            futures_lite::future::block_on(landing.record(&(30..40))),
            None
        );
        assert!(cache.state().flights.is_empty());
    }
}
