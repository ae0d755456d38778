//! The VM's metrics: ids of defined metrics, and the cardinality cap for error labels. One per
//! VM (a thread-local; a VM is single-threaded), shared by both listeners' plugins, so the cap
//! bounds what one Envoy worker defines.

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::core::metrics::CardinalityCap;

struct VmMetrics {
    cap: CardinalityCap,
    ids: HashMap<String, u32>,
    /// The value each gauge was last set to by this VM: an unchanged value costs no hostcall.
    /// (With several workers the gauge shows the latest change any of them saw.)
    gauges: HashMap<u32, u64>,
}

thread_local! {
    static VM: RefCell<VmMetrics> = RefCell::new(VmMetrics {
        cap: CardinalityCap::new(0),
        ids: HashMap::new(),
        gauges: HashMap::new(),
    });
}

/// A plugin of this VM admits up to `max` codes and origins.
pub fn raise_cap(max: usize) {
    VM.with(|vm| vm.borrow_mut().cap.raise_to(max));
}

pub fn with_cap<R>(f: impl FnOnce(&mut CardinalityCap) -> R) -> R {
    VM.with(|vm| f(&mut vm.borrow_mut().cap))
}

/// The id of metric `name`, defined on first use.
fn id(kind: MetricType, name: &str) -> Option<u32> {
    VM.with(|vm| {
        let mut vm = vm.borrow_mut();
        if let Some(id) = vm.ids.get(name) {
            return Some(*id);
        }
        match hostcalls::define_metric(kind, name) {
            Ok(id) => {
                vm.ids.insert(name.to_string(), id);
                Some(id)
            }
            Err(status) => {
                log::warn!("meshkit: cannot define metric {name}: {status:?}");
                None
            }
        }
    })
}

pub fn add(name: &str, n: u64) {
    if n == 0 {
        return;
    }
    if let Some(id) = id(MetricType::Counter, name) {
        let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
    }
}

pub fn gauge(name: &str, value: u64) {
    if let Some(id) = id(MetricType::Gauge, name) {
        let changed = VM.with(|vm| vm.borrow_mut().gauges.insert(id, value) != Some(value));
        if changed {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}
