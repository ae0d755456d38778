//! proxy-wasm shared data as the core sees it: a process-wide key/value store with
//! compare-and-swap, shared by every worker VM with the same `vm_id`.
//!
//! Shared data never evicts and only compare-and-swaps keys that already exist, so every
//! structure kept in it uses a fixed set of keys that the filter creates at configuration time
//! ([`ensure`]), and every change goes through [`update`]: read, change, write back with the CAS
//! token, retry on conflict (bounded by [`MAX_CAS_ATTEMPTS`]).

/// Give up an update after this many CAS conflicts (the caller then errs on the safe side).
pub const MAX_CAS_ATTEMPTS: usize = 16;

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// Another worker wrote the key since it was read.
    CasMismatch,
    /// Any other host refusal.
    Failed,
}

/// Shared data with compare-and-swap, as proxy-wasm offers it.
pub trait CasStore {
    /// The value and its CAS token.
    fn get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)>;
    /// Writes if the token still matches (`None`: unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError>;
}

/// Creates `key` with `initial` unless it exists, so that later updates can compare-and-swap.
pub fn ensure(store: &impl CasStore, key: &str, initial: &[u8]) -> Result<(), SetError> {
    match store.get(key) {
        Some(_) => Ok(()),
        None => store.set(key, initial, None),
    }
}

/// Applies `change` to the bytes stored under `key` (empty if absent), retrying on CAS
/// conflicts. `change` returns the new bytes (`None`: leave the key as it is) and a result.
/// `None` if the store kept refusing.
pub fn update<T>(
    store: &impl CasStore,
    key: &str,
    mut change: impl FnMut(&[u8]) -> (Option<Vec<u8>>, T),
) -> Option<T> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (bytes, cas) = store.get(key).unwrap_or_default();
        let (new, result) = change(&bytes);
        let Some(new) = new else {
            return Some(result);
        };
        match store.set(key, &new, cas) {
            Ok(()) => return Some(result),
            Err(SetError::CasMismatch) => continue,
            Err(SetError::Failed) => return None,
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod testing {
    //! An in-memory store with proxy-wasm's CAS semantics, and a way to lose races on demand.
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    #[derive(Default)]
    pub struct MemStore {
        pub data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        /// Before each of the next `n` writes, someone else writes first (a CAS conflict);
        /// `interloper` says what they write.
        pub conflicts: Cell<usize>,
        #[allow(clippy::type_complexity)]
        pub interloper: RefCell<Option<Box<dyn Fn(&[u8]) -> Vec<u8>>>>,
        /// Every write fails.
        pub broken: Cell<bool>,
    }

    impl CasStore for MemStore {
        fn get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
            self.data
                .borrow()
                .get(key)
                .map(|(v, cas)| (v.clone(), Some(*cas)))
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
            if self.broken.get() {
                return Err(SetError::Failed);
            }
            let mut data = self.data.borrow_mut();
            if self.conflicts.get() > 0 {
                self.conflicts.set(self.conflicts.get() - 1);
                let entry = data.entry(key.to_string()).or_default();
                if let Some(f) = self.interloper.borrow().as_ref() {
                    entry.0 = f(&entry.0);
                }
                entry.1 += 1;
                return Err(SetError::CasMismatch);
            }
            let current = data.get(key).map(|(_, c)| *c);
            // proxy-wasm: a CAS token only applies to a key that exists.
            if cas.is_some() && current.is_some() && current != cas {
                return Err(SetError::CasMismatch);
            }
            data.insert(key.into(), (value.to_vec(), current.unwrap_or(0) + 1));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::MemStore;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn add_one(bytes: &[u8]) -> (Option<Vec<u8>>, u8) {
        let n = bytes.first().copied().unwrap_or(0) + 1;
        (Some(vec![n]), n)
    }

    #[test]
    fn conflicts_are_retried_and_nothing_is_lost() {
        let store = MemStore::default();
        ensure(&store, "k", &[0]).unwrap();
        store.conflicts.set(3);
        *store.interloper.borrow_mut() = Some(Box::new(|b: &[u8]| vec![b[0] + 1]));
        assert_eq!(
            update(&store, "k", add_one),
            Some(4),
            "ours on top of three others"
        );
        store.conflicts.set(MAX_CAS_ATTEMPTS);
        assert_eq!(update(&store, "k", add_one), None, "bounded");
        store.broken.set(true);
        assert_eq!(update(&store, "k", add_one), None);
    }

    #[test]
    fn ensure_keeps_an_existing_value_and_no_change_writes_nothing() {
        let store = MemStore::default();
        ensure(&store, "k", &[7]).unwrap();
        ensure(&store, "k", &[9]).unwrap();
        assert_eq!(store.get("k").unwrap().0, vec![7]);
        assert_eq!(update(&store, "k", |_| (None, ())), Some(()));
        assert_eq!(store.get("k").unwrap().1, Some(1), "not rewritten");
    }
}
