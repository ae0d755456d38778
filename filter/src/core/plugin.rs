//! A configured plugin: the parsed configuration and everything derived from it once, in
//! `on_configure`, so that no request pays for it.

use std::collections::HashMap;
use std::rc::Rc;

use super::catalog::Catalog;
use super::cause_table::CauseTable;
use super::config::PluginConfig;
use super::metrics::retry_metric;
use super::retry_budget::{Budget, Window};
use super::retry_control::RouteRetry;
use super::shared_budget::SharedBudget;
use super::shared_data::{self, CasStore, SetError};

pub struct Plugin {
    pub config: PluginConfig,
    pub catalog: Catalog,
    /// Upstream → its budget's constants, shared-data key and this worker's pending releases.
    pub budgets: HashMap<String, SharedBudget>,
    /// Route name → its retry policy and metric names, shared (not copied) by the streams.
    pub retry_routes: HashMap<String, Rc<RetryRoute>>,
    pub causes: CauseTable,
}

/// A route whose retries meshkit controls, with the names of its upstream's retry metrics
/// spelled out once rather than formatted on every request.
#[derive(Debug, PartialEq, Eq)]
pub struct RetryRoute {
    pub policy: RouteRetry,
    pub requests: String,
    pub retries: String,
    pub denied: String,
    pub overflow: String,
    pub settle_failed: String,
    pub budget_remaining: String,
}

impl RetryRoute {
    fn new(service: &str, policy: RouteRetry) -> RetryRoute {
        let name = |kind: &str| retry_metric(kind, service, &policy.upstream);
        RetryRoute {
            requests: name("requests"),
            retries: name("retries"),
            denied: name("denied"),
            overflow: name("overflow"),
            settle_failed: name("settle_failed"),
            budget_remaining: name("budget_remaining"),
            policy,
        }
    }
}

impl Plugin {
    pub fn new(config: PluginConfig) -> Plugin {
        let retries = &config.retries;
        let budgets = retries
            .budgets
            .iter()
            .map(|(upstream, params)| {
                // A reservation lives at most as long as the longest route timeout.
                let hold = retries
                    .routes
                    .values()
                    .filter(|r| &r.upstream == upstream)
                    .map(|r| r.timeout_ms)
                    .max()
                    .unwrap_or(0);
                let budget = Budget::new(params, hold);
                let key = budget_key(&config.service, upstream);
                (upstream.clone(), SharedBudget::new(budget, key))
            })
            .collect();
        let retry_routes = retries
            .routes
            .iter()
            .map(|(name, policy)| {
                let route = RetryRoute::new(&config.service, policy.clone());
                (name.clone(), Rc::new(route))
            })
            .collect();
        let t = config.cause_table;
        Plugin {
            catalog: Catalog::new(&config.errors.catalog),
            causes: CauseTable::new(t.buckets, t.max_age_ms),
            budgets,
            retry_routes,
            config,
        }
    }

    /// Creates the shared-data keys this plugin updates, before any traffic: shared data only
    /// compare-and-swaps keys that exist, so two workers never race to create one mid-request.
    pub fn create_shared_keys(&self, store: &impl CasStore, now_ms: u64) -> Result<(), SetError> {
        for b in self.budgets.values() {
            shared_data::ensure(store, &b.key, &Window::new(&b.budget, now_ms).encode())?;
        }
        self.causes.create(store)
    }

    /// How often the root context ticks: once per budget slot (`ttl / 10`), so that an idle
    /// worker's lease and deposits reach the shared window within a slot. `None`: no budgets,
    /// no tick.
    pub fn tick_period_ms(&self) -> Option<u64> {
        self.budgets.values().map(|b| b.budget.slot_ms).min()
    }

    pub fn tick(&self, store: &impl CasStore, now_ms: u64) {
        for b in self.budgets.values() {
            b.tick(store, now_ms);
        }
    }
}

/// One shared-data key per (service, upstream) budget: a fixed set, so memory is bounded.
pub fn budget_key(service: &str, upstream: &str) -> String {
    format!("meshkit.budget.{service}.{upstream}")
}
