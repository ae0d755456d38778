use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::*;
use crate::core::retry_budget::testing::{worst_and_bound, SCENARIOS};
use crate::core::retry_budget::BudgetParams;
use crate::core::shared_data::testing::MemStore;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const KEY: &str = "k";

fn params(ratio: f64, min: u32) -> BudgetParams {
    BudgetParams {
        retry_ratio: ratio,
        min_retries_per_second: min,
        ttl_ms: 10_000,
    }
}

/// `workers` workers of one sidecar, sharing one store.
fn workers(params: &BudgetParams, hold_ms: u64, workers: usize) -> (Vec<SharedBudget>, MemStore) {
    let budget = Budget::new(params, hold_ms);
    let store = MemStore::default();
    shared_data::ensure(&store, KEY, &Window::new(&budget, 0).encode()).unwrap();
    let all = (0..workers)
        .map(|_| SharedBudget::new(budget, KEY.into()))
        .collect();
    (all, store)
}

fn writes(store: &MemStore) -> u32 {
    store.data.borrow()[KEY].1
}

fn shared_available(b: &SharedBudget, store: &MemStore, now: u64) -> u32 {
    let bytes = store.get(KEY).unwrap().0;
    Window::load(&bytes, &b.budget, now).available(&b.budget, now)
}

#[test]
fn a_lease_grants_without_writing_until_it_runs_out_or_ages() {
    let (w, store) = workers(&params(0.2, 10), 5_000, 1);
    let b = &w[0];
    let before = writes(&store);
    // 100 retries of reserve: the first grant holds 2 + 16 × 2 more.
    let first = b.grant(&store, 1_000, 2).unwrap();
    assert_eq!(first.reservation.retries, 2);
    assert_eq!(first.available, Some(100 - 34));
    assert_eq!(writes(&store), before + 1);
    for _ in 0..16 {
        let g = b.grant(&store, 1_050, 2).unwrap();
        assert_eq!((g.reservation.retries, g.available), (2, None));
    }
    assert_eq!(writes(&store), before + 1, "17 requests, one write");
    // The lease is spent: the next request writes (its 17 deposits with it).
    assert!(b.grant(&store, 1_060, 2).unwrap().available.is_some());
    assert_eq!(writes(&store), before + 2);
    // A request that made no retry gives its hold back to the lease: no write.
    let g = b.grant(&store, 1_070, 2).unwrap();
    assert!(b.settle(&store, || 1_080, g.reservation, 0));
    assert_eq!(writes(&store), before + 2);
    // A lease grants for lease_ms only.
    assert!(b
        .grant(&store, 1_060 + b.budget.lease_ms, 2)
        .unwrap()
        .available
        .is_some());
    assert_eq!(writes(&store), before + 3);
}

#[test]
fn a_tight_budget_is_granted_request_by_request() {
    let (w, store) = workers(&params(0.2, 0), 5_000, 1);
    let b = &w[0];
    // Nothing affordable: every request writes (its deposit), and none is granted a retry...
    for _ in 0..4 {
        let g = b.grant(&store, 1_000, 2).unwrap();
        assert_eq!((g.reservation.retries, g.available), (0, Some(0)));
    }
    // ...until five deposits pay for one: granted, and no lease on top (half of nothing left).
    let g = b.grant(&store, 1_000, 2).unwrap();
    assert_eq!((g.reservation.retries, g.available), (1, Some(0)));
    assert_eq!(b.view(&store, 1_000).available(&b.budget, 1_000), 0);
    assert!(
        b.grant(&store, 1_000, 2).unwrap().available.is_some(),
        "no lease: a write"
    );
}

#[test]
fn another_worker_sees_less_never_more_and_the_tick_gives_it_back() {
    let (w, store) = workers(&params(0.2, 10), 5_000, 2);
    let (a, b) = (&w[0], &w[1]);
    let g = a.grant(&store, 1_000, 2).unwrap();
    // a's lease is held in the shared window: b can grant only what is left.
    assert_eq!(shared_available(b, &store, 1_000), 100 - 34);
    for _ in 0..5 {
        a.grant(&store, 1_010, 0).unwrap();
    }
    assert!(a.settle(&store, || 1_020, g.reservation, 0));
    // a's deposits and its returned hold are still a's: b sees less, never more.
    assert_eq!(shared_available(b, &store, 1_020), 100 - 34);
    assert_eq!(a.view(&store, 1_020).available(&a.budget, 1_020), 101);
    // Idle after that, a's tick gives everything back once the lease has aged.
    a.tick(&store, 1_050);
    assert_eq!(shared_available(b, &store, 1_050), 100 - 34, "not yet");
    a.tick(&store, 1_000 + a.budget.lease_ms);
    assert_eq!(shared_available(b, &store, 1_100), 101);
    let version = writes(&store);
    a.tick(&store, 2_000);
    assert_eq!(
        writes(&store),
        version,
        "nothing left to give back: no write"
    );
}

#[test]
fn releases_survive_a_refused_write_and_are_bounded() {
    let (w, store) = workers(&params(0.5, 0), 15_000, 1);
    let b = &w[0];
    b.grant(&store, 1, 0).unwrap();
    store.broken.set(true);
    assert!(b.grant(&store, 500, 1).is_none(), "the store refuses");
    // A hold from outside the lease waits for the next write; the tick cannot write either.
    let old = Reservation {
        retries: 1,
        bucket: 0,
        epoch: 7, // an earlier window's
    };
    assert!(b.settle(&store, || 600, old, 0));
    b.tick(&store, 700);
    assert_eq!(b.local.borrow().pending.len(), 1, "kept for the next write");
    assert_eq!(
        b.local.borrow().deposits,
        1,
        "the refused request's deposit too"
    );
    // One entry per hold bucket, however many requests: distinct buckets flush at the cap.
    for bucket in 0..(MAX_PENDING as u64 * 2) {
        let r = Reservation {
            retries: 1,
            bucket: bucket + 1_000,
            epoch: 0,
        };
        b.settle(&store, || 800, r, 0);
        b.settle(&store, || 800, r, 0);
        assert!(b.local.borrow().pending.len() <= MAX_PENDING);
    }
    store.broken.set(false);
    b.tick(&store, 900);
    assert!(b.local.borrow().pending.is_empty());
    assert_eq!(b.local.borrow().deposits, 0);
}

/// Two workers take requests in turn, every `gap_ms` for `duration_ms`, each wanting
/// `wanted` retries; attempts take `latency_ms` and fail (retryably) from `fail_from_ms` on;
/// the plugin ticks every 100 ms. Returns the most retries the upstream saw in any `ttl`
/// window and the bound for the most requests in any `ttl` window.
fn simulate(
    params: &BudgetParams,
    gap_ms: u64,
    duration_ms: u64,
    latency_ms: u64,
    fail_from_ms: u64,
    wanted: u32,
) -> (usize, f64) {
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    enum Event {
        // (worker, attempt number, retries left, reservation)
        AttemptEnds(usize, u32, u32, (u32, u64, u64)),
        Arrives(usize),
        Tick,
    }
    let (w, store) = workers(params, 4 * latency_ms + 1_000, 2);
    let mut queue = BinaryHeap::new();
    let mut arrivals = Vec::new();
    let mut retries = Vec::new();
    for i in 0..duration_ms / gap_ms {
        queue.push(Reverse((i * gap_ms, Event::Arrives(i as usize % 2))));
    }
    for t in (0..duration_ms).step_by(100) {
        queue.push(Reverse((t, Event::Tick)));
    }
    while let Some(Reverse((now, event))) = queue.pop() {
        match event {
            Event::Tick => w.iter().for_each(|b| b.tick(&store, now)),
            Event::Arrives(worker) => {
                arrivals.push(now);
                let r = w[worker].grant(&store, now, wanted).unwrap().reservation;
                queue.push(Reverse((
                    now + latency_ms,
                    Event::AttemptEnds(worker, 0, r.retries, (r.retries, r.bucket, r.epoch)),
                )));
            }
            Event::AttemptEnds(worker, attempt, left, reserved) => {
                let started = now - latency_ms;
                if started >= fail_from_ms && left > 0 {
                    retries.push(now); // the retry starts as the failed attempt ends
                    queue.push(Reverse((
                        now + latency_ms,
                        Event::AttemptEnds(worker, attempt + 1, left - 1, reserved),
                    )));
                } else {
                    let (retries, bucket, epoch) = reserved;
                    let r = Reservation {
                        retries,
                        bucket,
                        epoch,
                    };
                    assert!(w[worker].settle(&store, || now, r, attempt));
                }
            }
        }
    }
    retries.sort_unstable();
    worst_and_bound(params, &arrivals, &retries)
}

/// The budget's own scenarios (`retry_budget`), now with two workers granting from leases:
/// counted at the upstream over every window, the bound holds exactly, and the budget is
/// still used (leases and late deposits only make it grant a little less).
#[test]
fn with_leases_on_two_workers_the_bound_holds_at_the_upstream() {
    let params = BudgetParams::default();
    for (latency, fail_from) in SCENARIOS {
        let (worst, bound) = simulate(&params, 5, 40_000, latency, fail_from, 3);
        assert!(
            worst as f64 <= bound,
            "latency {latency} ms: {worst} retries in a ttl, bound {bound}"
        );
        assert!(
            worst as f64 >= 0.85 * bound,
            "latency {latency} ms: the budget is used, not starved: {worst} of {bound}"
        );
    }
}
