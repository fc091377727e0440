//! The standby pool's bookkeeping: which standby sandboxes are ready for which
//! key (image and policy), how many each key should have, and which to discard.
//! No I/O and no clock of its own (callers pass `now`), so it is tested alone;
//! the gateway makes and discards the sandboxes it decides on.
//!
//! Sizing: a key starts with a target of one standby. A create of a key that
//! finds none ready, within [`BURST`] of the previous create of that key, means
//! creates come faster than one standby is remade: the key's target grows to the
//! number of creates in that burst (creates each within [`BURST`] of the one
//! before), and by at least one, so that the next burst at that rate finds one
//! ready for each create. Spaced creates that always find one keep a single
//! standby. A key not created for [`IDLE`] goes back to one (its extra standbys
//! are discarded at the next create of any key). The pool never holds more than
//! `max` standbys, ready or being made; a key that needs room takes it from the
//! least recently created other keys, oldest standby first.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Creates this close together are one burst.
pub(super) const BURST: Duration = Duration::from_secs(10);
/// A key unused this long keeps one standby only.
pub(super) const IDLE: Duration = Duration::from_secs(60);
/// The pool's bound when `OPENSHELL_STANDBY` does not set one.
pub(super) const DEFAULT_MAX: usize = 16;

#[derive(Debug)]
struct Demand {
    target: usize,
    last: Instant,
    /// Creates in the current burst, this one included.
    burst: usize,
    /// Standbys of this key being made.
    making: usize,
    /// Whether a refill of this key is running.
    refilling: bool,
}

/// Standby sandboxes (`T`) by key.
#[derive(Debug)]
pub(super) struct Pool<T> {
    max: usize,
    /// Ready standbys, oldest first.
    ready: Vec<(String, T)>,
    keys: HashMap<String, Demand>,
}

impl<T> Pool<T> {
    pub fn new(max: usize) -> Pool<T> {
        Pool { max, ready: Vec::new(), keys: HashMap::new() }
    }

    fn count(&self, key: &str) -> usize {
        self.ready.iter().filter(|(k, _)| k == key).count()
    }

    fn total(&self) -> usize {
        self.ready.len() + self.keys.values().map(|d| d.making).sum::<usize>()
    }

    /// A create of `key`: the standby it takes, if one is ready, and the
    /// standbys to discard (extras of keys that went idle).
    pub fn take(&mut self, key: &str, now: Instant) -> (Option<T>, Vec<T>) {
        let taken = self.ready.iter().position(|(k, _)| k == key).map(|i| self.ready.remove(i).1);
        let max = self.max;
        match self.keys.get_mut(key) {
            Some(demand) => {
                let in_burst = now.duration_since(demand.last) < BURST;
                demand.burst = if in_burst { demand.burst + 1 } else { 1 };
                if taken.is_none() && in_burst {
                    demand.target = (demand.target + 1).max(demand.burst).min(max);
                }
                demand.last = now;
            }
            None => {
                let demand = Demand { target: 1, last: now, burst: 1, making: 0, refilling: false };
                self.keys.insert(key.to_owned(), demand);
            }
        }
        (taken, self.shrink(now))
    }

    /// Idle keys back to one standby: the extras, to discard.
    fn shrink(&mut self, now: Instant) -> Vec<T> {
        let mut discard = Vec::new();
        let idle: Vec<String> =
            self.keys.iter().filter(|(_, d)| now.duration_since(d.last) >= IDLE).map(|(k, _)| k.clone()).collect();
        for key in idle {
            if let Some(demand) = self.keys.get_mut(&key) {
                demand.target = 1;
            }
            while self.count(&key) > 1 {
                if let Some(i) = self.ready.iter().position(|(k, _)| *k == key) {
                    discard.push(self.ready.remove(i).1);
                }
            }
        }
        discard
    }

    /// Starts a refill of `key`; false when one runs already (or the key is unknown).
    pub fn start_refill(&mut self, key: &str) -> bool {
        match self.keys.get_mut(key) {
            Some(demand) if !demand.refilling => {
                demand.refilling = true;
                true
            }
            _ => false,
        }
    }

    pub fn end_refill(&mut self, key: &str) {
        if let Some(demand) = self.keys.get_mut(key) {
            demand.refilling = false;
        }
    }

    /// Whether `key` should get one more standby now: `Some` with the standbys
    /// to discard first to make room (counted as being made from now on), or
    /// `None`.
    pub fn want(&mut self, key: &str) -> Option<Vec<T>> {
        let demand = self.keys.get(key)?;
        if self.count(key) + demand.making >= demand.target {
            return None;
        }
        let mut evicted = Vec::new();
        while self.total() >= self.max {
            let victim = self.least_recent_other(key)?;
            let i = self.ready.iter().position(|(k, _)| *k == victim)?;
            evicted.push(self.ready.remove(i).1);
        }
        if let Some(demand) = self.keys.get_mut(key) {
            demand.making += 1;
        }
        Some(evicted)
    }

    /// The least recently created key other than `key` that has a ready standby.
    fn least_recent_other(&self, key: &str) -> Option<String> {
        self.keys
            .iter()
            .filter(|(k, _)| *k != key && self.count(k) > 0)
            .min_by_key(|(_, d)| d.last)
            .map(|(k, _)| k.clone())
    }

    /// A standby of `key` was made: it is ready.
    pub fn add(&mut self, key: &str, standby: T) {
        if let Some(demand) = self.keys.get_mut(key) {
            demand.making = demand.making.saturating_sub(1);
        }
        self.ready.push((key.to_owned(), standby));
    }

    /// Making a standby of `key` failed.
    pub fn failed(&mut self, key: &str) {
        if let Some(demand) = self.keys.get_mut(key) {
            demand.making = demand.making.saturating_sub(1);
        }
    }

    /// Every ready standby, to discard.
    pub fn drain(&mut self) -> Vec<T> {
        self.ready.drain(..).map(|(_, t)| t).collect()
    }

    pub fn ready(&self) -> impl Iterator<Item = &T> {
        self.ready.iter().map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Makes standbys of `key` until the pool wants no more; returns how many.
    fn refill(pool: &mut Pool<u32>, key: &str, next: &mut u32, discarded: &mut Vec<u32>) -> usize {
        let mut made = 0;
        while let Some(evicted) = pool.want(key) {
            discarded.extend(evicted);
            *next += 1;
            pool.add(key, *next);
            made += 1;
        }
        made
    }

    /// A burst of 20 creates while standbys are remade one for every third
    /// create: the misses size the key for a burst of 20 (here the bound, 16),
    /// and spaced creates after it that always find one do not grow it.
    #[test]
    fn a_burst_sizes_the_key_for_the_next_burst_at_that_rate() {
        let t0 = Instant::now();
        let mut pool = Pool::new(16);
        let (mut next, mut gone) = (0, Vec::new());
        pool.take("a", t0);
        refill(&mut pool, "a", &mut next, &mut gone);
        let mut misses = 0;
        for i in 1..=20u32 {
            let (taken, _) = pool.take("a", t0 + Duration::from_millis(10 * u64::from(i)));
            misses += usize::from(taken.is_none());
            if i % 3 == 0 {
                // One standby made while three creates came.
                if pool.want("a").is_some() {
                    next += 1;
                    pool.add("a", next);
                }
            }
        }
        assert!(misses >= 10, "{misses} misses");
        assert_eq!(refill(&mut pool, "a", &mut next, &mut gone), 16, "sized by the burst, up to the bound");
        // The next burst of 16 finds one ready for each create.
        let later = t0 + Duration::from_secs(5);
        let hits = (0..16u64).filter(|i| pool.take("a", later + Duration::from_millis(*i)).0.is_some()).count();
        assert_eq!(hits, 16);
    }

    #[test]
    fn spaced_creates_keep_one_standby_and_bursts_grow_the_key_to_the_bound() {
        let t0 = Instant::now();
        let mut pool = Pool::new(4);
        let (mut next, mut gone) = (0, Vec::new());
        assert!(pool.take("a", t0).0.is_none());
        assert_eq!(refill(&mut pool, "a", &mut next, &mut gone), 1);
        // Spaced beyond a burst: taken, one remade, no growth.
        let t = t0 + BURST * 2;
        assert_eq!(pool.take("a", t).0, Some(1));
        assert_eq!(refill(&mut pool, "a", &mut next, &mut gone), 1);
        // Back to back, faster than a refill: each miss grows the target, up to 4.
        let mut misses = 0;
        for i in 0..8 {
            let now = t + Duration::from_millis(100 * (i + 1));
            let (taken, _) = pool.take("a", now);
            if taken.is_none() {
                misses += 1;
            }
        }
        assert_eq!(misses, 7, "one standby was ready; the rest found none");
        assert_eq!(refill(&mut pool, "a", &mut next, &mut gone), 4, "grown to the bound");
        assert_eq!(pool.ready().count(), 4);
        // Idle for a minute: back to one, the extras discarded.
        let (taken, extras) = pool.take("b", t + IDLE * 2);
        assert!(taken.is_none());
        assert_eq!(extras.len(), 3);
        assert_eq!(pool.ready().count(), 1);
        assert!(gone.is_empty());
    }

    #[test]
    fn a_new_key_takes_room_from_the_least_recently_used_one() {
        let t0 = Instant::now();
        let mut pool = Pool::new(2);
        let (mut next, mut gone) = (0, Vec::new());
        for (i, key) in ["a", "b"].into_iter().enumerate() {
            pool.take(key, t0 + Duration::from_secs(i as u64));
            refill(&mut pool, key, &mut next, &mut gone);
        }
        assert_eq!(pool.ready().copied().collect::<Vec<_>>(), [1, 2]);
        // A third key, the pool full: "a" (least recent) gives its standby up.
        pool.take("c", t0 + Duration::from_secs(5));
        assert_eq!(refill(&mut pool, "c", &mut next, &mut gone), 1);
        assert_eq!(gone, [1]);
        assert_eq!(pool.ready().copied().collect::<Vec<_>>(), [2, 3]);
        // Never more than the bound, ready or being made.
        assert!(pool.want("a").is_none() || pool.total() <= 2);
    }

    #[test]
    fn one_refill_per_key_at_a_time_and_a_failure_frees_its_place() {
        let mut pool: Pool<u32> = Pool::new(1);
        assert!(!pool.start_refill("a"), "an unknown key");
        pool.take("a", Instant::now());
        assert!(pool.start_refill("a"));
        assert!(!pool.start_refill("a"));
        assert!(pool.want("a").is_some());
        assert!(pool.want("a").is_none(), "one being made is the target");
        pool.failed("a");
        assert!(pool.want("a").is_some());
        pool.end_refill("a");
        assert!(pool.start_refill("a"));
    }
}
