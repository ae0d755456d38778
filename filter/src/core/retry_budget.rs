//! The retry budget: a rate-based limit on retries per (service, upstream), shared by every
//! Envoy worker of the sidecar.
//!
//! # The math (after Finagle's `RetryBudget` and tower's `TpsBudget`)
//!
//! Every original request **deposits** into a window of the last `ttl`; every retry actually
//! made **withdraws**. Amounts are fixed-point with [`SCALE`] = 1000 so a ratio like 0.2 is
//! exact in integers:
//!
//! - deposit per request  = `SCALE`                       (1000)
//! - withdraw per retry   = `SCALE / retry_ratio`          (0.2 → 5000: five requests pay for one retry)
//! - reserve              = `min_retries_per_second × ttl_seconds × withdraw`
//!   (a standing allowance so low-traffic callers can still retry: 10/s × 10 s = 100 retries)
//!
//! A retry is affordable while `sum(window) + reserve ≥ withdraw`, so over any `ttl` the
//! retries made are at most `retry_ratio × requests + min_retries_per_second × ttl`.
//!
//! Retries are **reserved** when a request is granted its allowance (withdrawn up front, in
//! the same atomic update as its deposit) and the unused part is **refunded** when the request
//! completes. Without the reservation, requests in flight together would all be granted
//! against the same balance and overdraw it by up to concurrency × `num_retries`. With
//! `retry_ratio = 0` requests deposit nothing and only the reserve pays (withdraw = `SCALE`).
//! A ratio above 1 (allowed, up to [`MAX_RATIO`]) lets each request pay for several retries.
//!
//! The window is [`SLOTS`] = 10 slots of `ttl / 10` each: a deposit lands in the current slot
//! and a whole slot expires at once, so the budget forgets traffic older than `ttl` in steps
//! of a tenth — the same trade tower makes between precision and cost.
//!
//! Time only moves forward here: a clock that stands still keeps filling the current slot,
//! and a clock that steps back by less than a window is treated as standing still (never
//! un-expires a slot). A window written with another slot length (the `ttl` changed while
//! shared data lived on) or far in the future (the clock jumped back by more than a window)
//! starts over empty, rather than freezing.
//! All arithmetic is on `i64`/`u64` and saturating, so it behaves the same with the 32-bit
//! `usize` of Envoy's Wasm VM.
//!
//! # Sharing between workers
//!
//! Each Envoy worker runs its own VM; a per-worker budget would multiply the allowance by the
//! worker count. The window lives in proxy-wasm shared data (one fixed key per budget, so
//! memory is bounded), updated with compare-and-swap: read, change, write back with the CAS
//! token, retry on conflict (bounded by [`MAX_CAS_ATTEMPTS`]).

use serde::{Deserialize, Serialize};

pub const SCALE: i64 = 1000;
pub const SLOTS: usize = 10;
pub const MAX_RATIO: f64 = 1000.0;
pub const MIN_TTL_MS: u32 = 1_000;
pub const MAX_TTL_MS: u32 = 60_000;
/// Give up a shared-data update after this many CAS conflicts (the caller then errs on the
/// safe side: a lost deposit, or a retry not allowed).
pub const MAX_CAS_ATTEMPTS: usize = 16;

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
}

impl Budget {
    pub fn new(p: &BudgetParams) -> Budget {
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
        Budget {
            deposit,
            withdraw,
            reserve,
            slot_ms: u64::from(ttl_ms) / SLOTS as u64,
        }
    }

    fn slot_of(&self, now_ms: u64) -> u64 {
        now_ms / self.slot_ms.max(1)
    }
}

/// The sliding window: `slots[n % SLOTS]` holds slot number `n`; `head` is the newest slot
/// number written, in slots of `slot_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Window {
    pub slot_ms: u64,
    pub head: u64,
    pub slots: [i64; SLOTS],
}

const ENCODED_LEN: usize = 16 + 8 * SLOTS;

impl Window {
    /// Expires the slots that fell out of the window by `now_ms`.
    fn advance(&mut self, budget: &Budget, now_ms: u64) {
        let now = budget.slot_of(now_ms);
        if self.slot_ms != budget.slot_ms || now.saturating_add(SLOTS as u64) < self.head {
            // Another slot length, or a clock far behind the window: start over.
            *self = Window {
                slot_ms: budget.slot_ms,
                head: now,
                slots: [0; SLOTS],
            };
            return;
        }
        if now <= self.head {
            return; // same slot, or the clock stepped back a little
        }
        if now - self.head >= SLOTS as u64 {
            self.slots = [0; SLOTS];
        } else {
            for n in self.head + 1..=now {
                self.slots[(n % SLOTS as u64) as usize] = 0;
            }
        }
        self.head = now;
    }

    fn add(&mut self, amount: i64) {
        let i = (self.head % SLOTS as u64) as usize;
        self.slots[i] = self.slots[i].saturating_add(amount);
    }

    fn sum(&self) -> i64 {
        self.slots.iter().fold(0i64, |a, &s| a.saturating_add(s))
    }

    /// One original request.
    pub fn deposit(&mut self, budget: &Budget, now_ms: u64) {
        self.advance(budget, now_ms);
        self.add(budget.deposit);
    }

    /// `retries` retries that were made.
    pub fn charge(&mut self, budget: &Budget, now_ms: u64, retries: u32) {
        self.advance(budget, now_ms);
        self.add(budget.withdraw.saturating_mul(-i64::from(retries)));
    }

    /// One original request asking for up to `wanted` retries: deposits, and reserves (charges
    /// now) as many as the budget affords. Returns the number reserved.
    pub fn grant(&mut self, budget: &Budget, now_ms: u64, wanted: u32) -> u32 {
        self.deposit(budget, now_ms);
        let granted = self.available(budget, now_ms).min(wanted);
        self.charge(budget, now_ms, granted);
        granted
    }

    /// Gives back `unused` reserved retries.
    pub fn refund(&mut self, budget: &Budget, now_ms: u64, unused: u32) {
        self.advance(budget, now_ms);
        self.add(budget.withdraw.saturating_mul(i64::from(unused)));
    }

    /// How many retries the budget affords right now.
    pub fn available(&mut self, budget: &Budget, now_ms: u64) -> u32 {
        self.advance(budget, now_ms);
        let balance = self.sum().saturating_add(budget.reserve);
        if balance < budget.withdraw || budget.withdraw <= 0 {
            return 0;
        }
        u32::try_from(balance / budget.withdraw).unwrap_or(u32::MAX)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.extend_from_slice(&self.slot_ms.to_le_bytes());
        out.extend_from_slice(&self.head.to_le_bytes());
        for s in self.slots {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// `None` for anything that is not exactly an encoded window.
    pub fn decode(bytes: &[u8]) -> Option<Window> {
        if bytes.len() != ENCODED_LEN {
            return None;
        }
        let word = |i: usize| -> Option<[u8; 8]> { bytes.get(i * 8..i * 8 + 8)?.try_into().ok() };
        let mut w = Window {
            slot_ms: u64::from_le_bytes(word(0)?),
            head: u64::from_le_bytes(word(1)?),
            slots: [0; SLOTS],
        };
        for (k, slot) in w.slots.iter_mut().enumerate() {
            *slot = i64::from_le_bytes(word(k + 2)?);
        }
        Some(w)
    }
}

/// Shared data with compare-and-swap, as proxy-wasm offers it.
pub trait CasStore {
    /// The value and its CAS token.
    fn get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)>;
    /// Writes if the token still matches; `Err(true)` on a CAS conflict, `Err(false)` on any
    /// other failure.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), bool>;
}

/// Applies `change` to the window stored under `key`, retrying on CAS conflicts. Returns the
/// new window and what `change` returned, or `None` if the store kept refusing.
pub fn update<T>(
    store: &impl CasStore,
    key: &str,
    mut change: impl FnMut(&mut Window) -> T,
) -> Option<(Window, T)> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (bytes, cas) = store.get(key).unwrap_or_default();
        let mut window = Window::decode(&bytes).unwrap_or_default();
        let result = change(&mut window);
        match store.set(key, &window.encode(), cas) {
            Ok(()) => return Some((window, result)),
            Err(true) => continue,
            Err(false) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn budget(ratio: f64, min: u32, ttl_ms: u32) -> Budget {
        Budget::new(&BudgetParams {
            retry_ratio: ratio,
            min_retries_per_second: min,
            ttl_ms,
        })
    }

    #[test]
    fn defaults_match_the_references() {
        let b = Budget::new(&BudgetParams::default());
        assert_eq!((b.deposit, b.withdraw, b.slot_ms), (1000, 5000, 1000));
        assert_eq!(b.reserve, 10 * 10 * 5000, "10 retries/s over 10 s");
        assert_eq!(Window::default().available(&b, 0), 100);
    }

    #[test]
    fn ratio_bounds_retries_per_request() {
        let b = budget(0.2, 0, 10_000);
        let mut w = Window::default();
        for _ in 0..100 {
            w.deposit(&b, 5_000);
        }
        assert_eq!(w.available(&b, 5_000), 20, "20 % of 100 requests");
        w.charge(&b, 5_000, 20);
        assert_eq!(w.available(&b, 5_000), 0);
    }

    #[test]
    fn reserve_allows_retries_without_traffic_then_runs_out() {
        let b = budget(0.2, 10, 10_000);
        let mut w = Window::default();
        assert_eq!(w.available(&b, 0), 100);
        w.charge(&b, 0, 100);
        assert_eq!(w.available(&b, 0), 0);
    }

    #[test]
    fn window_rolls_over_slot_by_slot() {
        let b = budget(1.0, 0, 10_000); // 1 s slots, 1 retry per request
        let mut w = Window::default();
        w.deposit(&b, 0); // slot 0
        w.deposit(&b, 5_500); // slot 5
        assert_eq!(
            w.available(&b, 9_999),
            2,
            "both still inside the 10 s window"
        );
        assert_eq!(w.available(&b, 10_000), 1, "slot 0 expired at 10 s");
        assert_eq!(w.available(&b, 15_999), 0, "slot 5 expired at 15 s");
    }

    #[test]
    fn ttl_boundaries() {
        for (ttl, slot_ms) in [(1_000, 100), (60_000, 6_000)] {
            let b = budget(1.0, 0, ttl);
            assert_eq!(b.slot_ms, slot_ms);
            let mut w = Window::default();
            w.deposit(&b, 0);
            assert_eq!(w.available(&b, u64::from(ttl) - 1), 1);
            assert_eq!(w.available(&b, u64::from(ttl)), 0);
        }
        // Out-of-range values are clamped by the constructor and reported by validation.
        assert_eq!(budget(1.0, 0, 0).slot_ms, 100);
        assert_eq!(budget(1.0, 0, u32::MAX).slot_ms, 6_000);
        let p = BudgetParams {
            ttl_ms: 500,
            ..Default::default()
        };
        assert_eq!(p.problems()[0].0, "ttl");
        let p = BudgetParams {
            ttl_ms: 61_000,
            ..Default::default()
        };
        assert_eq!(p.problems()[0].0, "ttl");
    }

    #[test]
    fn ratio_zero_and_above_one() {
        let zero = budget(0.0, 1, 10_000);
        assert_eq!((zero.deposit, zero.withdraw), (0, SCALE));
        let mut w = Window::default();
        for _ in 0..1000 {
            w.deposit(&zero, 0);
        }
        assert_eq!(w.available(&zero, 0), 10, "only the reserve pays");

        let three = budget(3.0, 0, 10_000);
        let mut w = Window::default();
        w.deposit(&three, 0);
        assert_eq!(
            w.available(&three, 0),
            3,
            "each request pays for three retries"
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
    fn reservations_cannot_be_overdrawn_and_unused_ones_come_back() {
        let b = budget(0.2, 1, 10_000); // reserve: 10 retries
        let mut w = Window::default();
        // 100 requests in flight together, each wanting 3 retries: 10 + 100 × 0.2 = 30 in all.
        let granted: u32 = (0..100).map(|_| w.grant(&b, 0, 3)).sum();
        assert_eq!(
            granted, 30,
            "never more than the budget, whatever the concurrency"
        );
        assert_eq!(w.available(&b, 0), 0);
        // They all succeed without retrying: the reservations are refunded.
        w.refund(&b, 0, granted);
        assert_eq!(w.available(&b, 0), 30);
    }

    #[test]
    fn a_changed_slot_length_or_a_big_clock_jump_starts_over() {
        let ten = budget(1.0, 0, 10_000);
        let twenty = budget(1.0, 0, 20_000);
        let mut w = Window::default();
        for _ in 0..5 {
            w.deposit(&ten, 100_000);
        }
        assert_eq!(w.available(&ten, 100_000), 5);
        assert_eq!(
            w.available(&twenty, 100_000),
            0,
            "new ttl: fresh window, not a frozen one"
        );
        assert_eq!(w.slot_ms, 2_000);
        w.deposit(&twenty, 100_000);
        assert_eq!(
            w.available(&twenty, 5_000),
            0,
            "clock jumped back a whole window: fresh"
        );
        w.deposit(&twenty, 5_000);
        assert_eq!(w.available(&twenty, 5_000), 1, "and the window moves again");
    }

    #[test]
    fn clock_standing_still_or_going_backwards() {
        let b = budget(1.0, 0, 10_000);
        let mut w = Window::default();
        w.deposit(&b, 20_000);
        w.deposit(&b, 20_000);
        assert_eq!(w.available(&b, 20_000), 2);
        w.deposit(&b, 13_000); // a step back: lands in the current slot, expires nothing
        assert_eq!(w.available(&b, 11_000), 3);
        assert_eq!(w.head, 20);
        assert_eq!(
            w.available(&b, 30_000),
            0,
            "and expires normally when time moves on"
        );
    }

    #[test]
    fn arithmetic_limits_saturate() {
        let b = budget(MAX_RATIO, 100_000, 60_000);
        let mut w = Window {
            slot_ms: b.slot_ms,
            slots: [i64::MAX; SLOTS],
            ..Default::default()
        };
        assert_eq!(w.available(&b, 0), u32::MAX);
        w.slots = [i64::MIN; SLOTS];
        w.charge(&b, 0, u32::MAX);
        assert_eq!(w.available(&b, 0), 0);
        let mut w = Window::default();
        assert_eq!(w.available(&b, u64::MAX), 6_000_000);
        w.deposit(&b, u64::MAX);
        assert_eq!(w.head, u64::MAX / 6_000);
        assert_eq!(Window::decode(&w.encode()), Some(w));
    }

    #[test]
    fn decode_rejects_anything_else() {
        assert_eq!(Window::decode(b""), None);
        assert_eq!(Window::decode(&[0; ENCODED_LEN - 1]), None);
        assert_eq!(Window::decode(&[0; ENCODED_LEN + 1]), None);
        assert_eq!(Window::decode(&[0; ENCODED_LEN]), Some(Window::default()));
        let w = Window {
            slot_ms: 1000,
            head: 7,
            slots: [-3; SLOTS],
        };
        assert_eq!(Window::decode(&w.encode()), Some(w));
    }

    /// A store that loses the race `conflicts` times before accepting a write.
    struct Racy {
        data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        conflicts: Cell<usize>,
    }

    impl CasStore for Racy {
        fn get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
            self.data
                .borrow()
                .get(key)
                .map(|(v, cas)| (v.clone(), Some(*cas)))
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), bool> {
            if self.conflicts.get() > 0 {
                self.conflicts.set(self.conflicts.get() - 1);
                // Someone else deposited meanwhile.
                let mut data = self.data.borrow_mut();
                let entry = data.entry(key.to_string()).or_insert((
                    Window {
                        slot_ms: 1000,
                        ..Default::default()
                    }
                    .encode(),
                    0,
                ));
                let mut w = Window::decode(&entry.0).unwrap();
                w.slots[0] += 1000;
                *entry = (w.encode(), entry.1 + 1);
                return Err(true);
            }
            let mut data = self.data.borrow_mut();
            let current = data.get(key).map(|(_, c)| *c);
            if current.is_some() && current != cas {
                return Err(true);
            }
            data.insert(key.into(), (value.to_vec(), current.unwrap_or(0) + 1));
            Ok(())
        }
    }

    #[test]
    fn cas_conflicts_are_retried_and_nothing_is_lost() {
        let b = budget(1.0, 0, 10_000);
        let store = Racy {
            data: RefCell::default(),
            conflicts: Cell::new(3),
        };
        let (w, _) = update(&store, "k", |w| w.deposit(&b, 0)).unwrap();
        assert_eq!(
            w.slots[0], 4000,
            "our deposit on top of three concurrent ones"
        );
        let store = Racy {
            data: RefCell::default(),
            conflicts: Cell::new(MAX_CAS_ATTEMPTS),
        };
        assert!(
            update(&store, "k", |w| w.deposit(&b, 0)).is_none(),
            "bounded"
        );
    }
}
