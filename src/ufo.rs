//! The TinyUFO caches' one wrapper: no `TinyUfo::remove`, and writes that take turns.
//!
//! TinyUFO 0.9 keeps each queue's total weight in an atomic, and two of its paths can take an
//! entry's weight off twice, wrapping the total below zero. Every later `put` then overflows
//! adding the totals up: a panic where overflow is checked (debug builds, tests), and in release
//! builds a cache that evicts everything on every write, for good.
//! - `remove` takes the weight off but leaves the key in its queue; put again, the key is queued
//!   twice, and evicting both copies takes its weight off twice. So nothing is removed here: a
//!   removed entry is overwritten with an empty slot, which updates it in place.
//! - A `put` that evicts can take an entry's weight off before the `put` that added it has
//!   counted it (pingora issue #768). So writes go one at a time through a mutex; they happen on
//!   cache misses only. Reads, the request path's common case, take no lock.
//!
//! Drop this once TinyUFO accounts for both.

use std::hash::Hash;
use std::sync::Mutex;

use tinyufo::TinyUfo;

pub struct Ufo<K, T> {
    map: TinyUfo<K, Option<T>>,
    writes: Mutex<()>,
}

impl<K: Hash, T: Clone + Send + Sync + 'static> Ufo<K, T> {
    /// A cache of at most `limit` entries.
    pub fn new(limit: usize) -> Ufo<K, T> {
        Ufo {
            map: TinyUfo::new(limit, limit),
            writes: Mutex::new(()),
        }
    }

    pub fn get(&self, key: &K) -> Option<T> {
        self.map.get(key).flatten()
    }

    /// Offer `value` to the cache: the admission policy may decline it or evict another entry.
    pub fn put(&self, key: K, value: T) {
        let _turn = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        self.map.put(key, Some(value), 1);
    }

    /// Forget `key`: its entry, if there is one, becomes an empty slot that eviction reclaims.
    pub fn remove(&self, key: K) {
        let _turn = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(self.map.get(&key), Some(Some(_))) {
            self.map.put(key, None, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// The reproduction of pingora issue #768: threads putting and reading their own keys in a
    /// small cache. Without the write turns, TinyUFO's weights wrap below zero and a `put`
    /// panics adding them up (tests build with overflow checks).
    /// A key removed and put again must not be counted twice (TinyUFO's `remove` left it
    /// queued, and evicting both copies wrapped the weight below zero).
    #[test]
    fn removed_and_put_again_keeps_the_weights_whole() {
        let ufo: Ufo<u64, u64> = Ufo::new(5);
        for n in 0..20_000u64 {
            for t in 0..8u64 {
                for k in 0..5 {
                    let key = t * 100 + k;
                    ufo.put(key, n);
                    ufo.get(&key);
                    ufo.get(&key);
                    if n % 7 == 0 {
                        ufo.remove(key);
                        assert_eq!(ufo.get(&key), None, "removed");
                    }
                }
            }
        }
    }

    #[test]
    fn racing_writers_keep_the_weights_whole() {
        let ufo: Arc<Ufo<u64, u64>> = Arc::new(Ufo::new(5));
        let until = Instant::now() + Duration::from_millis(500);
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let ufo = Arc::clone(&ufo);
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < until {
                        for k in 0..5 {
                            let key = t * 100 + k;
                            ufo.put(key, n);
                            ufo.get(&key);
                            ufo.get(&key);
                            if n % 7 == 0 {
                                ufo.remove(key);
                            }
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok(), "a writer panicked");
        }
    }
}
