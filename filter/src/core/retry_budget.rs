//! The retry budget: a rate-based limit on retries per (service, upstream), shared by every
//! Envoy worker of the sidecar.
//!
//! # The promise
//!
//! Counted where retries land, at the upstream: over **any** window of `ttl`, the retries made
//! are at most `retry_ratio × R + min_retries_per_second × ttl`, where R is the most original
//! requests seen in one `ttl`-long window that ends inside the counted window or at most one
//! request lifetime (the route timeout) before it. For steady traffic R is the requests of the
//! counted window itself.
//!
//! # The math (after Finagle's `RetryBudget` and tower's `TpsBudget`)
//!
//! Amounts are fixed-point with [`SCALE`] = 1000 so a ratio like 0.2 is exact in integers:
//! every original request **deposits** `SCALE`; a retry costs `withdraw = SCALE / retry_ratio`
//! (0.2 → 5000: five requests pay for one retry); `reserve = min_retries_per_second × ttl ×
//! withdraw` is a standing allowance so low-traffic callers can still retry. With
//! `retry_ratio = 0` requests deposit nothing and only the reserve pays (withdraw = `SCALE`).
//!
//! The router makes a request's retries on its own, after the filter let the request through,
//! so the filter grants them up front (`x-envoy-max-retries`) and settles once their number is
//! final (at response headers). Three amounts make the bound hold at the upstream:
//!
//! - **deposits** of the last `ttl` (10 slots of `ttl / 10`; a slot counts for at most `ttl`);
//! - **spent**: the retries made, charged when they are settled (after they happened) and kept
//!   for 11 slots, so a retry counts against every grant made within `ttl` after it;
//! - **held**: retries granted to requests still in flight. They count until the request
//!   settles, however long that takes, so a slow request's retries are never granted twice.
//!
//! A request may have `min(wanted, (deposits + reserve − spent − held) / withdraw)` retries.
//! Proof sketch: take any window W and the last grant g whose retries land in W. Every retry in
//! W was either settled by g (so at most `ttl` before g, and still in `spent`) or is in flight
//! at g (in `held`, for at least what it made); so all of them fit in the balance at g, which
//! is at most `r × (requests of the ttl before g) + m × ttl`.
//!
//! Held retries expire only as a safety net, after the longest route timeout of the upstream
//! (a request cannot retry after its timeout): a worker that dies between grant and settle
//! must not shrink the budget for ever. They live in [`HOLD_BUCKETS`] buckets of grant time.
//!
//! Time only moves forward here: a clock that stands still keeps filling the current slot, and
//! a clock that steps back by less than a window is treated as standing still. A window written
//! with other settings (the `ttl` changed while shared data lived on) or far in the future (the
//! clock jumped back by more than a window) starts over empty. All arithmetic is on `i64`/`u64`
//! and saturating, so it behaves the same with the 32-bit `usize` of Envoy's Wasm VM.
//!
//! # Sharing between workers
//!
//! Each Envoy worker runs its own VM; a per-worker budget would multiply the allowance by the
//! worker count. The window lives in proxy-wasm shared data (one fixed key per budget, so
//! memory is bounded), changed through [`shared_data::update`](super::shared_data::update), and
//! written about once per lease rather than per request (see [`super::shared_budget`]: a lease
//! is a hold like any other, so the proof above covers it).

use serde::{Deserialize, Serialize};

pub const SCALE: i64 = 1000;
pub const SLOTS: usize = 10;
pub const MAX_RATIO: f64 = 1000.0;
pub const MIN_TTL_MS: u32 = 1_000;
pub const MAX_TTL_MS: u32 = 60_000;
/// Slots in the ring: `SLOTS` for deposits, one more so that spent retries count for a whole
/// `ttl` after they were charged.
const RING: usize = SLOTS + 1;
/// Buckets (by grant time) of retries held by requests in flight.
pub const HOLD_BUCKETS: usize = 16;
/// Longest a reservation is held before it expires on its own.
pub const MAX_HOLD_MS: u64 = 600_000;
/// Longest a worker grants from one lease (and keeps deposits unwritten).
pub const MAX_LEASE_MS: u64 = 100;

/// The budget's settings, as in the spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetParams {
    /// Retries allowed per original request, as a fraction: 0.2 = 20 %.
    pub retry_ratio: f64,
    pub min_retries_per_second: u32,
    /// Length of the window, in milliseconds (1000–60000).
    pub ttl_ms: u32,
}

impl Default for BudgetParams {
    fn default() -> Self {
        BudgetParams {
            retry_ratio: 0.2,
            min_retries_per_second: 10,
            ttl_ms: 10_000,
        }
    }
}

impl BudgetParams {
    /// Every problem, as `(field, message)`; shared with the SDK.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if !self.retry_ratio.is_finite() || !(0.0..=MAX_RATIO).contains(&self.retry_ratio) {
            p.push((
                "retry_ratio".into(),
                format!(
                    "must be between 0 and {MAX_RATIO} (0.2 = 20 %), got {}",
                    self.retry_ratio
                ),
            ));
        }
        if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&self.ttl_ms) {
            p.push((
                "ttl".into(),
                format!("must be between 1s and 60s, got {}ms", self.ttl_ms),
            ));
        }
        if self.min_retries_per_second > 100_000 {
            p.push((
                "min_retries_per_second".into(),
                format!("at most 100000, got {}", self.min_retries_per_second),
            ));
        }
        p
    }
}

/// The budget's derived constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub deposit: i64,
    pub withdraw: i64,
    pub reserve: i64,
    pub slot_ms: u64,
    /// Length of one hold bucket: `HOLD_BUCKETS - 1` of them cover the longest hold.
    pub hold_bucket_ms: u64,
    /// How long a worker may grant from a lease, and keep deposits before writing them (see
    /// [`super::shared_budget`]): a quarter of a slot, at most 100 ms.
    pub lease_ms: u64,
}

impl Budget {
    /// `max_hold_ms`: the longest a request of this upstream can take to settle (its longest
    /// route timeout).
    pub fn new(p: &BudgetParams, max_hold_ms: u64) -> Budget {
        let ratio = if p.retry_ratio.is_finite() {
            p.retry_ratio.clamp(0.0, MAX_RATIO)
        } else {
            0.0
        };
        let (deposit, withdraw) = if ratio == 0.0 {
            (0, SCALE)
        } else {
            // ≥ 1 so a huge ratio cannot make retries free.
            (SCALE, ((SCALE as f64 / ratio).round() as i64).max(1))
        };
        let ttl_ms = p.ttl_ms.clamp(MIN_TTL_MS, MAX_TTL_MS);
        let ttl_secs = i64::from(ttl_ms / 1000);
        let reserve = i64::from(p.min_retries_per_second)
            .saturating_mul(ttl_secs)
            .saturating_mul(withdraw);
        let slot_ms = u64::from(ttl_ms) / SLOTS as u64;
        let lease_ms = (slot_ms / 4).min(MAX_LEASE_MS);
        // A request granted from a lease near its end holds its bucket that much longer.
        let hold = max_hold_ms.clamp(1, MAX_HOLD_MS) + slot_ms + lease_ms;
        Budget {
            deposit,
            withdraw,
            reserve,
            slot_ms,
            hold_bucket_ms: hold.div_ceil(HOLD_BUCKETS as u64 - 1),
            lease_ms,
        }
    }
}

/// One ring of time buckets: `values[n % LEN]` holds bucket number `n`; `head` is the newest
/// bucket written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ring<const LEN: usize> {
    bucket_ms: u64,
    head: u64,
    values: [i64; LEN],
}

impl<const LEN: usize> Ring<LEN> {
    fn new(bucket_ms: u64, now_ms: u64) -> Self {
        Ring {
            bucket_ms,
            head: now_ms / bucket_ms.max(1),
            values: [0; LEN],
        }
    }

    fn index(n: u64) -> usize {
        (n % LEN as u64) as usize
    }

    /// Expires the buckets that fell out by `now_ms`. `false` if the ring must start over
    /// (another bucket length, or a clock far behind it).
    fn advance(&mut self, bucket_ms: u64, now_ms: u64) -> bool {
        let now = now_ms / bucket_ms.max(1);
        if self.bucket_ms != bucket_ms || now.saturating_add(LEN as u64) < self.head {
            return false;
        }
        if now <= self.head {
            return true; // same bucket, or the clock stepped back a little
        }
        if now - self.head >= LEN as u64 {
            self.values = [0; LEN];
        } else {
            for n in self.head + 1..=now {
                self.values[Self::index(n)] = 0;
            }
        }
        self.head = now;
        true
    }

    fn add(&mut self, bucket: u64, amount: i64) {
        let v = &mut self.values[Self::index(bucket)];
        *v = v.saturating_add(amount);
    }

    fn contains(&self, bucket: u64) -> bool {
        bucket <= self.head && self.head - bucket < LEN as u64
    }

    /// The sum over the newest `n` buckets.
    fn sum_newest(&self, n: usize) -> i64 {
        (0..n.min(LEN) as u64)
            .filter_map(|k| self.head.checked_sub(k))
            .fold(0i64, |a, b| a.saturating_add(self.values[Self::index(b)]))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bucket_ms.to_le_bytes());
        out.extend_from_slice(&self.head.to_le_bytes());
        for v in self.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn decode(words: &mut impl Iterator<Item = [u8; 8]>) -> Option<Self> {
        let bucket_ms = u64::from_le_bytes(words.next()?);
        let head = u64::from_le_bytes(words.next()?);
        let mut values = [0; LEN];
        for v in values.iter_mut() {
            *v = i64::from_le_bytes(words.next()?);
        }
        Some(Ring {
            bucket_ms,
            head,
            values,
        })
    }
}

/// Retries granted to one request and not yet settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub retries: u32,
    /// The hold bucket it was charged to, in the hold ring started at `epoch`.
    pub bucket: u64,
    pub epoch: u64,
}

/// The shared state of one budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Deposits and the cost of retries made, by slot of `ttl / 10`.
    deposits: Ring<RING>,
    spent: Ring<RING>,
    /// Retries held by requests in flight, by hold bucket of grant time.
    held: Ring<HOLD_BUCKETS>,
    /// When the hold ring started: a reservation from an earlier ring is never released into
    /// this one (its hold went with the old ring).
    epoch: u64,
}

const ENCODED_LEN: usize = 8 * (3 * 2 + 2 * RING + HOLD_BUCKETS + 1);

impl Window {
    pub fn new(budget: &Budget, now_ms: u64) -> Window {
        Window {
            deposits: Ring::new(budget.slot_ms, now_ms),
            spent: Ring::new(budget.slot_ms, now_ms),
            held: Ring::new(budget.hold_bucket_ms, now_ms),
            epoch: now_ms,
        }
    }

    /// Brings every ring to `now_ms`. A changed ttl or a clock far behind starts the window
    /// over; a changed hold length (a route timeout changed) only starts the holds over.
    fn advance(&mut self, budget: &Budget, now_ms: u64) {
        let ok = self.deposits.advance(budget.slot_ms, now_ms)
            && self.spent.advance(budget.slot_ms, now_ms);
        if !ok {
            let epoch = self.epoch;
            *self = Window::new(budget, now_ms);
            self.epoch = now_ms.max(epoch.saturating_add(1));
        } else if !self.held.advance(budget.hold_bucket_ms, now_ms) {
            self.held = Ring::new(budget.hold_bucket_ms, now_ms);
            // Never the same epoch twice, even within one millisecond or after a clock step.
            self.epoch = now_ms.max(self.epoch.saturating_add(1));
        }
    }

    /// Retries affordable now (after `advance`).
    fn affordable(&self, budget: &Budget) -> u32 {
        let balance = self
            .deposits
            .sum_newest(SLOTS)
            .saturating_add(budget.reserve)
            .saturating_sub(self.spent.sum_newest(RING))
            .saturating_sub(self.held.sum_newest(HOLD_BUCKETS));
        if balance < budget.withdraw || budget.withdraw <= 0 {
            return 0;
        }
        u32::try_from(balance / budget.withdraw).unwrap_or(u32::MAX)
    }

    /// One original request: deposits it, and holds as many of the `wanted` retries as the
    /// budget affords (possibly 0; `wanted = 0` only deposits).
    pub fn grant(&mut self, budget: &Budget, now_ms: u64, wanted: u32) -> Reservation {
        self.deposit(budget, now_ms, now_ms, 1);
        self.hold(budget, now_ms, wanted)
    }

    /// `count` original requests that arrived at `since_ms` or later (a worker's batch), all
    /// credited to the slot of `since_ms`: never later than they came, so none counts for
    /// longer than `ttl`. A batch the window no longer covers is dropped (the budget only
    /// grants less).
    pub fn deposit(&mut self, budget: &Budget, now_ms: u64, since_ms: u64, count: u32) {
        self.advance(budget, now_ms);
        let slot = (since_ms / budget.slot_ms.max(1)).min(self.deposits.head);
        if self.deposits.contains(slot) {
            self.deposits
                .add(slot, budget.deposit.saturating_mul(i64::from(count)));
        }
    }

    /// Holds as many of `wanted` retries as the budget affords (possibly 0), with no deposit.
    pub fn hold(&mut self, budget: &Budget, now_ms: u64, wanted: u32) -> Reservation {
        self.advance(budget, now_ms);
        let bucket = self.held.head;
        let retries = self.affordable(budget).min(wanted);
        self.held
            .add(bucket, budget.withdraw.saturating_mul(i64::from(retries)));
        Reservation {
            retries,
            bucket,
            epoch: self.epoch,
        }
    }

    /// The request is done retrying: releases its hold (unless it already expired) and charges
    /// the `made` retries now, after they happened.
    pub fn settle(&mut self, budget: &Budget, now_ms: u64, reservation: Reservation, made: u32) {
        self.advance(budget, now_ms);
        if reservation.epoch == self.epoch && self.held.contains(reservation.bucket) {
            let held = budget
                .withdraw
                .saturating_mul(i64::from(reservation.retries));
            self.held.add(reservation.bucket, held.saturating_neg());
        }
        let slot = self.spent.head;
        self.spent
            .add(slot, budget.withdraw.saturating_mul(i64::from(made)));
    }

    /// How many retries the budget affords right now.
    pub fn available(&mut self, budget: &Budget, now_ms: u64) -> u32 {
        self.advance(budget, now_ms);
        self.affordable(budget)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        self.deposits.encode(&mut out);
        self.spent.encode(&mut out);
        self.held.encode(&mut out);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out
    }

    /// `None` for anything that is not exactly an encoded window.
    pub fn decode(bytes: &[u8]) -> Option<Window> {
        if bytes.len() != ENCODED_LEN {
            return None;
        }
        let mut words = bytes
            .chunks_exact(8)
            .filter_map(|c| <[u8; 8]>::try_from(c).ok());
        Some(Window {
            deposits: Ring::decode(&mut words)?,
            spent: Ring::decode(&mut words)?,
            held: Ring::decode(&mut words)?,
            epoch: u64::from_le_bytes(words.next()?),
        })
    }

    /// The window stored in `bytes`, or a fresh one for anything else (absent, corrupt, or
    /// written by another version).
    pub fn load(bytes: &[u8], budget: &Budget, now_ms: u64) -> Window {
        Window::decode(bytes).unwrap_or_else(|| Window::new(budget, now_ms))
    }
}

/// What the simulations of the bound (here and in `shared_budget`) count.
#[cfg(test)]
pub(crate) mod testing {
    use super::BudgetParams;

    /// (attempt latency, failures from) in ms, at 200 req/s wanting 3 retries: an upstream
    /// that turns from slow-healthy to failing (1 s and 3 s per attempt), fast failures starting
    /// mid-slot, and slow failures from early on.
    pub const SCENARIOS: [(u64, u64); 4] = [
        (1_000, 10_000),
        (3_000, 10_000),
        (5, 10_550),
        (2_000, 3_300),
    ];

    /// The most retries in any `ttl` window, and the bound for the most requests in any `ttl`
    /// window. Both lists sorted, in milliseconds.
    pub fn worst_and_bound(
        params: &BudgetParams,
        arrivals: &[u64],
        retries: &[u64],
    ) -> (usize, f64) {
        let ttl = u64::from(params.ttl_ms);
        let most_in = |times: &[u64]| {
            let mut most = 0;
            let mut start = 0;
            for (end, &t) in times.iter().enumerate() {
                while times[start] + ttl <= t {
                    start += 1;
                }
                most = most.max(end + 1 - start);
            }
            most
        };
        let bound = params.retry_ratio * most_in(arrivals) as f64
            + f64::from(params.min_retries_per_second) * ttl as f64 / 1000.0;
        (most_in(retries), bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const HOLD: u64 = 15_000;

    fn budget(ratio: f64, min: u32, ttl_ms: u32) -> Budget {
        Budget::new(
            &BudgetParams {
                retry_ratio: ratio,
                min_retries_per_second: min,
                ttl_ms,
            },
            HOLD,
        )
    }

    fn deposit(w: &mut Window, b: &Budget, now: u64, n: usize) {
        for _ in 0..n {
            w.grant(b, now, 0);
        }
    }

    #[test]
    fn defaults_match_the_references() {
        let b = Budget::new(&BudgetParams::default(), HOLD);
        assert_eq!((b.deposit, b.withdraw, b.slot_ms), (1000, 5000, 1000));
        assert_eq!(b.reserve, 10 * 10 * 5000, "10 retries/s over 10 s");
        assert_eq!(b.lease_ms, 100);
        assert_eq!(b.hold_bucket_ms, 16_100u64.div_ceil(15));
        assert_eq!(Window::new(&b, 0).available(&b, 0), 100);
    }

    #[test]
    fn ratio_bounds_retries_per_request() {
        let b = budget(0.2, 0, 10_000);
        let mut w = Window::new(&b, 5_000);
        deposit(&mut w, &b, 5_000, 100);
        assert_eq!(w.available(&b, 5_000), 20, "20 % of 100 requests");
        let r = w.grant(&b, 5_000, 100);
        assert_eq!(
            r.retries, 20,
            "the request's own deposit pays a fifth of one"
        );
        assert_eq!(w.available(&b, 5_000), 0);
        w.settle(&b, 5_000, r, 20);
        assert_eq!(w.available(&b, 5_000), 0, "made: still spent");
    }

    #[test]
    fn reserve_allows_retries_without_traffic_then_runs_out() {
        let b = budget(0.2, 10, 10_000);
        let mut w = Window::new(&b, 0);
        let r = w.grant(&b, 0, 1000);
        assert_eq!(r.retries, 100);
        assert_eq!(w.available(&b, 0), 0);
        w.settle(&b, 0, r, 100);
        assert_eq!(w.available(&b, 9_999), 0);
        assert_eq!(
            w.available(&b, 11_000),
            100,
            "spent for a whole ttl, then back"
        );
    }

    #[test]
    fn deposits_count_for_at_most_ttl_and_spent_for_at_least_ttl() {
        let b = budget(1.0, 0, 10_000); // 1 s slots, 1 retry per request
        let mut w = Window::new(&b, 0);
        deposit(&mut w, &b, 0, 1); // slot 0
        deposit(&mut w, &b, 5_500, 1); // slot 5
        assert_eq!(w.available(&b, 9_999), 2, "both inside the 10 s window");
        assert_eq!(w.available(&b, 10_000), 1, "slot 0 expired at 10 s");
        assert_eq!(w.available(&b, 15_999), 0, "slot 5 expired at 15 s");

        let mut w = Window::new(&b, 0);
        deposit(&mut w, &b, 0, 10);
        let r = w.grant(&b, 500, 1);
        w.settle(&b, 500, r, 1);
        deposit(&mut w, &b, 10_000, 10); // slot 0's deposits expire; the retry stays
        assert_eq!(w.available(&b, 10_000), 10 - 1);
        assert_eq!(
            w.available(&b, 10_999),
            9,
            "charged at 0.5 s: counted until 11 s"
        );
        assert_eq!(w.available(&b, 11_000), 10);
    }

    #[test]
    fn a_slow_requests_hold_outlives_the_window_and_is_released_exactly() {
        let b = budget(1.0, 0, 10_000);
        let mut w = Window::new(&b, 0);
        deposit(&mut w, &b, 0, 3);
        let r = w.grant(&b, 0, 3);
        assert_eq!(r.retries, 3, "three deposits plus its own, four affordable");
        // Long after the deposits expired the hold still counts: no one else gets them.
        deposit(&mut w, &b, 12_000, 3);
        assert_eq!(w.available(&b, 12_000), 0, "3 new deposits, 3 still held");
        // It settles having made one retry: the other two come back; the one made is spent.
        w.settle(&b, 12_000, r, 1);
        assert_eq!(w.available(&b, 12_000), 2);
    }

    #[test]
    fn holds_expire_after_the_longest_route_timeout() {
        let b = budget(1.0, 0, 10_000);
        let mut w = Window::new(&b, 0);
        deposit(&mut w, &b, 0, 1);
        let r = w.grant(&b, 0, 5);
        assert_eq!(r.retries, 2);
        let late = b.hold_bucket_ms * HOLD_BUCKETS as u64;
        deposit(&mut w, &b, late, 2);
        assert_eq!(
            w.available(&b, late),
            2,
            "a dead worker's hold does not leak for ever"
        );
        w.settle(&b, late, r, 0);
        assert_eq!(
            w.available(&b, late),
            2,
            "releasing an expired hold gives nothing back"
        );
    }

    #[test]
    fn a_hold_from_before_a_restart_is_never_released_into_the_new_window() {
        let b = budget(1.0, 0, 10_000);
        let mut w = Window::new(&b, 100_000);
        deposit(&mut w, &b, 100_000, 4);
        let r = w.grant(&b, 100_000, 4);
        assert_eq!(r.retries, 4);
        // The clock jumps back more than a window while the request is in flight.
        deposit(&mut w, &b, 50_000, 2);
        assert_eq!(w.available(&b, 50_000), 2, "fresh window");
        w.settle(&b, 50_000, r, 0);
        assert_eq!(
            w.available(&b, 50_000),
            2,
            "the old hold does not inflate the new one"
        );
        // A changed route timeout starts only the holds over: deposits survive.
        let longer = Budget::new(
            &BudgetParams {
                retry_ratio: 1.0,
                min_retries_per_second: 0,
                ttl_ms: 10_000,
            },
            60_000,
        );
        let r = w.grant(&b, 50_000, 1);
        assert_eq!(r.retries, 1);
        assert_eq!(
            w.available(&longer, 50_000),
            3,
            "hold forgotten, deposits kept"
        );
        w.settle(&longer, 50_000, r, 0);
        assert_eq!(w.available(&longer, 50_000), 3);
    }

    #[test]
    fn ttl_boundaries() {
        for (ttl, slot_ms) in [(1_000, 100), (60_000, 6_000)] {
            let b = budget(1.0, 0, ttl);
            assert_eq!(b.slot_ms, slot_ms);
            let mut w = Window::new(&b, 0);
            deposit(&mut w, &b, 0, 1);
            assert_eq!(w.available(&b, u64::from(ttl) - 1), 1);
            assert_eq!(w.available(&b, u64::from(ttl)), 0);
        }
        assert_eq!(budget(1.0, 0, 0).slot_ms, 100);
        assert_eq!(budget(1.0, 0, u32::MAX).slot_ms, 6_000);
        for ttl_ms in [500, 61_000] {
            let p = BudgetParams {
                ttl_ms,
                ..Default::default()
            };
            assert_eq!(p.problems()[0].0, "ttl");
        }
    }

    #[test]
    fn ratio_zero_and_above_one() {
        let zero = budget(0.0, 1, 10_000);
        assert_eq!((zero.deposit, zero.withdraw), (0, SCALE));
        let mut w = Window::new(&zero, 0);
        deposit(&mut w, &zero, 0, 1000);
        assert_eq!(w.available(&zero, 0), 10, "only the reserve pays");

        let three = budget(3.0, 0, 10_000);
        let mut w = Window::new(&three, 0);
        assert_eq!(
            w.grant(&three, 0, 5).retries,
            3,
            "one request pays for three"
        );

        let huge = budget(MAX_RATIO, 0, 10_000);
        assert_eq!(huge.withdraw, 1, "never free");
        for bad in [-0.1, 1000.5, f64::NAN, f64::INFINITY] {
            let p = BudgetParams {
                retry_ratio: bad,
                ..Default::default()
            };
            assert_eq!(p.problems()[0].0, "retry_ratio", "{bad}");
        }
    }

    #[test]
    fn holds_cannot_be_overdrawn_and_unused_ones_come_back() {
        let b = budget(0.2, 1, 10_000); // reserve: 10 retries
        let mut w = Window::new(&b, 0);
        // 100 requests in flight together, each wanting 3 retries: 10 + 100 × 0.2 = 30 in all.
        let held: Vec<Reservation> = (0..100).map(|_| w.grant(&b, 0, 3)).collect();
        let granted: u32 = held.iter().map(|r| r.retries).sum();
        assert_eq!(
            granted, 30,
            "never more than the budget, whatever the concurrency"
        );
        assert_eq!(w.available(&b, 0), 0);
        for r in held {
            w.settle(&b, 0, r, 0);
        }
        assert_eq!(w.available(&b, 0), 30);
    }

    #[test]
    fn changed_settings_or_a_big_clock_jump_start_over() {
        let ten = budget(1.0, 0, 10_000);
        let twenty = budget(1.0, 0, 20_000);
        let mut w = Window::new(&ten, 100_000);
        deposit(&mut w, &ten, 100_000, 5);
        assert_eq!(w.available(&ten, 100_000), 5);
        assert_eq!(w.available(&twenty, 100_000), 0, "new ttl: a fresh window");
        deposit(&mut w, &twenty, 100_000, 1);
        assert_eq!(
            w.available(&twenty, 5_000),
            0,
            "clock jumped back a window: fresh"
        );
        deposit(&mut w, &twenty, 5_000, 1);
        assert_eq!(w.available(&twenty, 5_000), 1, "and the window moves again");
    }

    #[test]
    fn clock_standing_still_or_going_backwards() {
        let b = budget(1.0, 0, 10_000);
        let mut w = Window::new(&b, 20_000);
        deposit(&mut w, &b, 20_000, 2);
        assert_eq!(w.available(&b, 20_000), 2);
        deposit(&mut w, &b, 13_000, 1); // a step back: current slot, expires nothing
        assert_eq!(w.available(&b, 11_000), 3);
        assert_eq!(
            w.available(&b, 30_000),
            0,
            "expires normally when time moves on"
        );
    }

    #[test]
    fn arithmetic_limits_saturate() {
        let b = Budget::new(
            &BudgetParams {
                retry_ratio: MAX_RATIO,
                min_retries_per_second: 100_000,
                ttl_ms: 60_000,
            },
            u64::MAX,
        );
        let mut w = Window::new(&b, 0);
        w.deposits.values = [i64::MAX; RING];
        assert_eq!(w.available(&b, 0), u32::MAX);
        w.spent.values = [i64::MAX; RING];
        w.held.values = [i64::MAX; HOLD_BUCKETS];
        let r = w.grant(&b, 0, u32::MAX);
        assert_eq!(r.retries, 0);
        w.settle(
            &b,
            0,
            Reservation {
                retries: u32::MAX,
                ..r
            },
            u32::MAX,
        );
        let mut w = Window::new(&b, u64::MAX);
        assert_eq!(w.available(&b, u64::MAX), 6_000_000);
        deposit(&mut w, &b, u64::MAX, 1);
        assert_eq!(Window::decode(&w.encode()), Some(w));
    }

    #[test]
    fn decode_rejects_anything_else() {
        let b = budget(1.0, 0, 10_000);
        assert_eq!(Window::decode(b""), None);
        assert_eq!(Window::decode(&[0; ENCODED_LEN - 1]), None);
        assert_eq!(Window::decode(&[0; ENCODED_LEN + 1]), None);
        let mut w = Window::new(&b, 7_000);
        deposit(&mut w, &b, 7_000, 3);
        assert_eq!(Window::decode(&w.encode()), Some(w.clone()));
        assert_eq!(Window::load(b"junk", &b, 7_000), Window::new(&b, 7_000));
    }

    /// What a simulated run saw: the most retries in any `ttl` window, the most requests in
    /// any `ttl` window, and the bound those requests allow.
    struct Run {
        worst_retries: usize,
        bound: f64,
    }

    /// Requests every `gap_ms` for `duration_ms`, each wanting `wanted` retries; every attempt
    /// takes `latency_ms`; attempts that start at or after `fail_from_ms` fail (retryably).
    /// Retries are counted when they start, as the upstream sees them.
    fn simulate(
        b: &Budget,
        params: &BudgetParams,
        gap_ms: u64,
        duration_ms: u64,
        latency_ms: u64,
        fail_from_ms: u64,
        wanted: u32,
    ) -> Run {
        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        enum Event {
            // (request, attempt number, retries left, reservation retries, bucket, epoch)
            AttemptEnds(u64, u32, u32, u32, u64, u64),
            Arrives(u64),
        }
        let mut w = Window::new(b, 0);
        let mut queue = BinaryHeap::new();
        let mut arrivals = Vec::new();
        let mut retries = Vec::new();
        for i in 0..duration_ms / gap_ms {
            queue.push(Reverse((i * gap_ms, Event::Arrives(i))));
        }
        while let Some(Reverse((now, event))) = queue.pop() {
            match event {
                Event::Arrives(i) => {
                    arrivals.push(now);
                    let r = w.grant(b, now, wanted);
                    queue.push(Reverse((
                        now + latency_ms,
                        Event::AttemptEnds(i, 0, r.retries, r.retries, r.bucket, r.epoch),
                    )));
                }
                Event::AttemptEnds(i, attempt, left, reserved, bucket, epoch) => {
                    let started = now - latency_ms;
                    if started >= fail_from_ms && left > 0 {
                        retries.push(now); // the retry starts as the failed attempt ends
                        queue.push(Reverse((
                            now + latency_ms,
                            Event::AttemptEnds(i, attempt + 1, left - 1, reserved, bucket, epoch),
                        )));
                    } else {
                        let reservation = Reservation {
                            retries: reserved,
                            bucket,
                            epoch,
                        };
                        w.settle(b, now, reservation, attempt);
                    }
                }
            }
        }
        retries.sort_unstable();
        let (worst_retries, bound) = testing::worst_and_bound(params, &arrivals, &retries);
        Run {
            worst_retries,
            bound,
        }
    }

    /// The scenarios: 200 req/s, 3 retries wanted, an upstream that turns from
    /// slow-healthy to failing (1 s and 3 s per attempt), and fast failures starting mid-slot.
    /// Counted at the upstream, over every window, the bound holds exactly.
    #[test]
    fn the_bound_holds_at_the_upstream_over_any_window() {
        let params = BudgetParams::default();
        for (latency, fail_from) in testing::SCENARIOS {
            let b = Budget::new(&params, 4 * latency + 1_000);
            let run = simulate(&b, &params, 5, 40_000, latency, fail_from, 3);
            assert!(
                run.worst_retries as f64 <= run.bound,
                "latency {latency} ms: {} retries in a ttl, bound {}",
                run.worst_retries,
                run.bound
            );
            assert!(
                run.worst_retries as f64 >= 0.9 * run.bound,
                "latency {latency} ms: the budget is used, not starved: {} of {}",
                run.worst_retries,
                run.bound
            );
        }
    }
}
