//! One upstream's retry budget as a worker uses it: the budget's constants, its shared-data key,
//! and the holds this worker still owes the shared window.
//!
//! Most requests make no retry, and settling one only gives its hold back. Writing that to
//! shared data would cost a second compare-and-swap on every request, so the release waits in
//! the worker and rides along with the worker's next write to the window (its next grant, or a
//! settlement that charges retries). Until then the window overstates what is held, which only
//! makes other workers grant less: the bound on retries never depends on a release. Holds expire
//! on their own, so a release that never rides along costs nothing either.

use std::cell::RefCell;

use super::retry_budget::{Budget, Reservation, Window};
use super::shared_data::{self, CasStore};

/// Distinct hold buckets a worker keeps releases for; past that, it writes them at once.
const MAX_PENDING: usize = 32;

pub struct SharedBudget {
    pub budget: Budget,
    pub key: String,
    /// Released holds not yet written: (epoch, bucket) → retries.
    pending: RefCell<Vec<Reservation>>,
}

impl SharedBudget {
    pub fn new(budget: Budget, key: String) -> SharedBudget {
        SharedBudget {
            budget,
            key,
            pending: RefCell::new(Vec::new()),
        }
    }

    /// Reads, changes and writes back the shared window with `change`, releasing this worker's
    /// pending holds first. `None` if the store kept refusing (the releases stay pending).
    pub fn update<T>(
        &self,
        store: &impl CasStore,
        now_ms: u64,
        mut change: impl FnMut(&mut Window) -> T,
    ) -> Option<T> {
        let result = shared_data::update(store, &self.key, |bytes| {
            let mut w = Window::load(bytes, &self.budget, now_ms);
            for r in self.pending.borrow().iter() {
                w.settle(&self.budget, now_ms, *r, 0);
            }
            let result = change(&mut w);
            (Some(w.encode()), result)
        });
        if result.is_some() {
            self.pending.borrow_mut().clear();
        }
        result
    }

    /// Gives back a hold whose request made no retry: at this worker's next write. `now_ms` is
    /// only asked for when the releases must be written at once.
    pub fn release(
        &self,
        store: &impl CasStore,
        now_ms: impl FnOnce() -> u64,
        reservation: Reservation,
    ) {
        if reservation.retries == 0 {
            return;
        }
        let full = {
            let mut pending = self.pending.borrow_mut();
            match pending
                .iter_mut()
                .find(|p| p.epoch == reservation.epoch && p.bucket == reservation.bucket)
            {
                Some(p) => p.retries = p.retries.saturating_add(reservation.retries),
                None => pending.push(reservation),
            }
            pending.len() >= MAX_PENDING
        };
        if full && self.update(store, now_ms(), |_| ()).is_none() {
            // The store refuses writes: forget the oldest release. Its hold expires on its own,
            // and until then the budget only grants less.
            self.pending.borrow_mut().remove(0);
        }
    }

    /// The window as this worker sees it: shared state minus its pending releases.
    #[cfg(test)]
    pub fn view(&self, store: &impl CasStore, now_ms: u64) -> Window {
        let bytes = store.get(&self.key).map(|(b, _)| b).unwrap_or_default();
        let mut w = Window::load(&bytes, &self.budget, now_ms);
        for r in self.pending.borrow().iter() {
            w.settle(&self.budget, now_ms, *r, 0);
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::retry_budget::BudgetParams;
    use crate::core::shared_data::testing::MemStore;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn shared() -> (SharedBudget, MemStore) {
        let params = BudgetParams {
            retry_ratio: 0.5,
            min_retries_per_second: 0,
            ttl_ms: 10_000,
        };
        let b = SharedBudget::new(Budget::new(&params, 15_000), "k".into());
        let store = MemStore::default();
        shared_data::ensure(&store, "k", &Window::new(&b.budget, 0).encode()).unwrap();
        (b, store)
    }

    fn shared_available(b: &SharedBudget, store: &MemStore, now: u64) -> u32 {
        let bytes = store.get("k").unwrap().0;
        Window::load(&bytes, &b.budget, now).available(&b.budget, now)
    }

    #[test]
    fn a_release_is_written_with_the_next_grant_and_never_before() {
        let (b, store) = shared();
        for _ in 0..10 {
            b.update(&store, 5, |w| w.grant(&b.budget, 5, 0)).unwrap();
        }
        // 10 deposits at 0.5: 5 retries affordable; a request holds 2 of them.
        let r = b.update(&store, 6, |w| w.grant(&b.budget, 6, 2)).unwrap();
        assert_eq!(r.retries, 2);
        assert_eq!(shared_available(&b, &store, 7), 3);
        b.release(&store, || 7, r);
        // Not yet written: others still see the hold (they grant less, never more)...
        assert_eq!(shared_available(&b, &store, 7), 3);
        // ...while this worker's own view, and its next write, already count it released.
        assert_eq!(b.view(&store, 7).available(&b.budget, 7), 5);
        b.update(&store, 8, |w| w.grant(&b.budget, 8, 0)).unwrap();
        // 12 deposits now, nothing held.
        assert_eq!(shared_available(&b, &store, 8), 6);
        assert!(b.pending.borrow().is_empty());
    }

    #[test]
    fn releases_survive_a_refused_write_and_are_bounded() {
        let (b, store) = shared();
        b.update(&store, 1, |w| w.grant(&b.budget, 1, 0)).unwrap();
        let r = b.update(&store, 1, |w| w.grant(&b.budget, 1, 1)).unwrap();
        assert_eq!(r.retries, 1);
        store.broken.set(true);
        b.release(&store, || 2, r);
        assert!(b.update(&store, 3, |_| ()).is_none());
        assert_eq!(b.pending.borrow().len(), 1, "kept for the next write");
        // One entry per hold bucket, however many requests: distinct buckets flush at the cap.
        for bucket in 0..(MAX_PENDING as u64 * 2) {
            let r = Reservation {
                retries: 1,
                bucket,
                epoch: 0,
            };
            b.release(&store, || 4, r);
            b.release(&store, || 4, r);
            assert!(b.pending.borrow().len() <= MAX_PENDING);
        }
        store.broken.set(false);
        b.update(&store, 5, |_| ()).unwrap();
        assert!(b.pending.borrow().is_empty());
    }
}
