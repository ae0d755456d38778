//! One upstream's retry budget as a worker uses it: the budget's constants, its shared-data key,
//! and what this worker keeps of the shared window between writes.
//!
//! Reading and writing the shared window costs two hostcalls and a process-wide lock, and most
//! requests make no retry. So a worker writes the window about once per lease, not per request:
//!
//! - **Deposits** of its requests are counted here and written with the next write, credited to
//!   the slot of the oldest one (never later than they came, so the bound holds). Other workers
//!   see them late, which only makes them grant less.
//! - **A lease**: when a worker writes, it holds, besides what the request wants, up to
//!   [`LEASE_REQUESTS`] more requests' worth, at most half of what the budget still affords (so
//!   a tight budget is granted request by request, exactly as without leases). Requests granted
//!   from the lease hold their retries in the lease's hold bucket; a request that made none gives
//!   them back to the lease. For the bound, a lease is a hold like any other: every retry it
//!   funds was held in the shared window from the lease's write on. A lease grants for
//!   [`Budget::lease_ms`] at most, and holds are kept that much longer, so a request granted
//!   at the end of a lease is still held for its whole life.
//! - **Releases** of holds outside the current lease wait here and ride along with the next
//!   write, as deposits do.
//!
//! A write happens when a request wants more than the lease has, when the lease or the oldest
//! deposit is older than `lease_ms`, for a settlement that charges retries, and on the plugin's
//! tick (so that an idle worker gives its lease and deposits back). Until then the window
//! overstates what is held and understates what was deposited: both only make other workers
//! grant less; the bound on retries never depends on them.

use std::cell::RefCell;

use super::retry_budget::{Budget, Reservation, Window};
use super::shared_data::{self, CasStore};

/// Distinct hold buckets a worker keeps releases for; past that, it writes them at once.
const MAX_PENDING: usize = 32;
/// A lease holds up to this many requests' retries besides the request that took it.
pub const LEASE_REQUESTS: u32 = 16;

pub struct SharedBudget {
    pub budget: Budget,
    pub key: String,
    local: RefCell<Local>,
}

/// What this worker has not written to the shared window yet.
#[derive(Debug, Default)]
struct Local {
    /// Released holds outside the lease: (epoch, bucket) → retries.
    pending: Vec<Reservation>,
    /// Requests deposited here, the oldest at `deposits_since`.
    deposits: u32,
    deposits_since: u64,
    lease: Option<Lease>,
}

/// Retries held in the shared window that this worker hands to its requests.
#[derive(Debug, Clone, Copy)]
struct Lease {
    epoch: u64,
    bucket: u64,
    /// Held and not handed out.
    free: u32,
    taken_ms: u64,
}

/// A request's grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub reservation: Reservation,
    /// What the shared window affords after this write; `None` when the grant wrote nothing.
    pub available: Option<u32>,
}

impl Local {
    fn fresh(since_ms: u64, now_ms: u64, lease_ms: u64) -> bool {
        now_ms >= since_ms && now_ms - since_ms < lease_ms
    }

    /// The lease's unused retries, as a release (`None` if there are none).
    fn lease_release(&self) -> Option<Reservation> {
        self.lease.filter(|l| l.free > 0).map(|l| Reservation {
            retries: l.free,
            bucket: l.bucket,
            epoch: l.epoch,
        })
    }
}

impl SharedBudget {
    pub fn new(budget: Budget, key: String) -> SharedBudget {
        SharedBudget {
            budget,
            key,
            local: RefCell::new(Local::default()),
        }
    }

    /// One original request that wants `wanted` retries: deposits it and holds what the budget
    /// affords, from the lease when it can, else with a write. `None` if the store kept
    /// refusing (the request gets no retries; its deposit stays here for the next write).
    pub fn grant(&self, store: &impl CasStore, now_ms: u64, wanted: u32) -> Option<Granted> {
        let lease_ms = self.budget.lease_ms;
        {
            let mut local = self.local.borrow_mut();
            if local.deposits == 0 {
                local.deposits_since = now_ms;
            }
            local.deposits = local.deposits.saturating_add(1);
            if Local::fresh(local.deposits_since, now_ms, lease_ms) {
                if let Some(lease) = local
                    .lease
                    .as_mut()
                    .filter(|l| Local::fresh(l.taken_ms, now_ms, lease_ms) && l.free >= wanted)
                {
                    lease.free -= wanted;
                    let reservation = Reservation {
                        retries: wanted,
                        bucket: lease.bucket,
                        epoch: lease.epoch,
                    };
                    return Some(Granted {
                        reservation,
                        available: None,
                    });
                }
            }
        }
        let old = self.local.borrow().lease_release();
        let budget = &self.budget;
        let (held, given, available) = self.write(store, now_ms, |w| {
            if let Some(old) = old {
                w.settle(budget, now_ms, old, 0);
            }
            let affordable = w.available(budget, now_ms);
            let given = affordable.min(wanted);
            let extra = if wanted == 0 {
                0
            } else {
                wanted
                    .saturating_mul(LEASE_REQUESTS)
                    .min((affordable - given) / 2)
            };
            let held = w.hold(budget, now_ms, given + extra);
            (held, given, w.available(budget, now_ms))
        })?;
        self.local.borrow_mut().lease = Some(Lease {
            epoch: held.epoch,
            bucket: held.bucket,
            free: held.retries.saturating_sub(given),
            taken_ms: now_ms,
        });
        Some(Granted {
            reservation: Reservation {
                retries: given.min(held.retries),
                ..held
            },
            available: Some(available),
        })
    }

    /// The request is done retrying. With no retry made its hold goes back to the lease it
    /// came from, or waits for this worker's next write; retries made are charged at once (and
    /// `false` if the store refused: the hold then stays until it expires). `now_ms` is only
    /// asked for when the window is written.
    pub fn settle(
        &self,
        store: &impl CasStore,
        now_ms: impl FnOnce() -> u64,
        reservation: Reservation,
        made: u32,
    ) -> bool {
        if made > 0 {
            let budget = &self.budget;
            let now = now_ms();
            return self
                .write(store, now, |w| w.settle(budget, now, reservation, made))
                .is_some();
        }
        if reservation.retries == 0 {
            return true;
        }
        let full = {
            let mut local = self.local.borrow_mut();
            if let Some(lease) = local
                .lease
                .as_mut()
                .filter(|l| l.epoch == reservation.epoch && l.bucket == reservation.bucket)
            {
                lease.free = lease.free.saturating_add(reservation.retries);
                return true;
            }
            let pending = &mut local.pending;
            match pending
                .iter_mut()
                .find(|p| p.epoch == reservation.epoch && p.bucket == reservation.bucket)
            {
                Some(p) => p.retries = p.retries.saturating_add(reservation.retries),
                None => pending.push(reservation),
            }
            pending.len() >= MAX_PENDING
        };
        if full && self.write(store, now_ms(), |_| ()).is_none() {
            // The store refuses writes: forget the oldest release. Its hold expires on its own,
            // and until then the budget only grants less.
            self.local.borrow_mut().pending.remove(0);
        }
        true
    }

    /// The plugin's tick: gives back what an idle worker keeps (a lease past its time, deposits
    /// and releases), so other workers can grant it.
    pub fn tick(&self, store: &impl CasStore, now_ms: u64) {
        let lease_ms = self.budget.lease_ms;
        let stale_lease = {
            let local = self.local.borrow();
            let stale_lease = local
                .lease
                .filter(|l| !Local::fresh(l.taken_ms, now_ms, lease_ms))
                .and_then(|_| local.lease_release());
            let due = stale_lease.is_some()
                || !local.pending.is_empty()
                || (local.deposits > 0 && !Local::fresh(local.deposits_since, now_ms, lease_ms));
            if !due {
                return;
            }
            stale_lease
        };
        let budget = &self.budget;
        let written = self.write(store, now_ms, |w| {
            if let Some(lease) = stale_lease {
                w.settle(budget, now_ms, lease, 0);
            }
        });
        if written.is_some() && stale_lease.is_some() {
            if let Some(lease) = self.local.borrow_mut().lease.as_mut() {
                lease.free = 0;
            }
        }
    }

    /// Reads, changes and writes back the shared window with `change`, with this worker's
    /// deposits and pending releases. `None` if the store kept refusing (they stay here).
    fn write<T>(
        &self,
        store: &impl CasStore,
        now_ms: u64,
        mut change: impl FnMut(&mut Window) -> T,
    ) -> Option<T> {
        let budget = &self.budget;
        let result = shared_data::update(store, &self.key, |bytes| {
            let local = self.local.borrow();
            let mut w = Window::load(bytes, budget, now_ms);
            if local.deposits > 0 {
                w.deposit(budget, now_ms, local.deposits_since, local.deposits);
            }
            for r in local.pending.iter() {
                w.settle(budget, now_ms, *r, 0);
            }
            let result = change(&mut w);
            (Some(w.encode()), result)
        });
        if result.is_some() {
            let mut local = self.local.borrow_mut();
            local.deposits = 0;
            local.pending.clear();
        }
        result
    }

    /// The window as this worker sees it: shared state with its deposits written and all it
    /// keeps (pending releases, the lease's unused retries) given back.
    #[cfg(test)]
    pub fn view(&self, store: &impl CasStore, now_ms: u64) -> Window {
        let local = self.local.borrow();
        let bytes = store.get(&self.key).map(|(b, _)| b).unwrap_or_default();
        let mut w = Window::load(&bytes, &self.budget, now_ms);
        if local.deposits > 0 {
            w.deposit(&self.budget, now_ms, local.deposits_since, local.deposits);
        }
        for r in local.pending.iter().copied().chain(local.lease_release()) {
            w.settle(&self.budget, now_ms, r, 0);
        }
        w
    }
}

#[cfg(test)]
mod tests;
