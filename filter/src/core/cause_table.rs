//! Remembering, per request id, the upstream failure a service saw, so its inbound sidecar can
//! attach it when the app then fails without a code of its own.
//!
//! The table lives in proxy-wasm shared data, shared by every worker VM of the sidecar (the
//! outbound listener writes, the inbound listener reads, possibly on another worker). Shared
//! data never evicts, so the table is a fixed set of [`SLOTS`] keys: a request id hashes to one
//! slot and a newer entry simply overwrites an older one there. Memory is bounded by
//! `SLOTS × MAX_ENTRY_LEN` whatever the traffic. An entry stores its full request id, so a
//! lookup never returns another request's cause after a collision.

/// The store behind the table: proxy-wasm shared data in the filter, a map in tests.
pub trait SharedStore {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Last write wins; a failed write only loses a cause, never a request.
    fn set(&self, key: &str, value: &[u8]);
}

/// Number of slots. A cause only needs to live for the duration of one request inside one
/// service, so 4096 concurrent failing requests per sidecar is ample.
pub const SLOTS: u32 = 4096;
/// Request ids longer than this are not remembered (Envoy's own are 36-byte UUIDs).
pub const MAX_REQUEST_ID_LEN: usize = 128;
const VERSION: &str = "v1";

/// An upstream failure: which service failed first, with which code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub origin: String,
    pub code: String,
}

impl Cause {
    /// `origin:code`, as logged and sent in `x-meshkit-error-cause`.
    pub fn display(&self) -> String {
        format!("{}:{}", self.origin, self.code)
    }
}

/// FNV-1a: tiny, stable across builds and platforms (the slot of an id must not depend on the
/// worker that computes it).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn usable(request_id: &[u8]) -> bool {
    !request_id.is_empty()
        && request_id.len() <= MAX_REQUEST_ID_LEN
        && request_id.iter().all(|b| b.is_ascii_graphic())
}

pub fn slot_key(request_id: &[u8]) -> String {
    format!("meshkit.cause.{}", fnv1a(request_id) % SLOTS)
}

/// Records `cause` for `request_id` (ignored for unusable ids).
pub fn remember(store: &impl SharedStore, request_id: &[u8], cause: &Cause) {
    if !usable(request_id) {
        return;
    }
    let entry = format!(
        "{VERSION}\n{}\n{}\n{}",
        String::from_utf8_lossy(request_id),
        cause.origin,
        cause.code
    );
    store.set(&slot_key(request_id), entry.as_bytes());
}

/// Drops the cause recorded for `request_id`, if its slot holds it. The inbound sidecar does
/// this when a request arrives: request ids are chosen by callers and may be reused (a client
/// retry, a fan-out with one id), and a cause must not outlive the request that saw it.
pub fn forget(store: &impl SharedStore, request_id: &[u8]) {
    if recall(store, request_id).is_some() {
        store.set(&slot_key(request_id), b"");
    }
}

/// The cause recorded for `request_id`, if its slot still holds it.
pub fn recall(store: &impl SharedStore, request_id: &[u8]) -> Option<Cause> {
    if !usable(request_id) {
        return None;
    }
    let entry = store.get(&slot_key(request_id))?;
    let text = std::str::from_utf8(&entry).ok()?;
    let mut parts = text.split('\n');
    if parts.next()? != VERSION || parts.next()?.as_bytes() != request_id {
        return None;
    }
    let origin = parts.next()?.to_string();
    let code = parts.next()?.to_string();
    Some(Cause { origin, code })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[derive(Default)]
    pub(crate) struct MapStore(pub RefCell<HashMap<String, Vec<u8>>>);

    impl SharedStore for MapStore {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.0.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8]) {
            self.0.borrow_mut().insert(key.to_string(), value.to_vec());
        }
    }

    fn cause(code: &str) -> Cause {
        Cause {
            origin: "users".into(),
            code: code.into(),
        }
    }

    #[test]
    fn remembers_and_recalls_by_request_id() {
        let s = MapStore::default();
        remember(&s, b"req-1", &cause("CM503001"));
        assert_eq!(recall(&s, b"req-1"), Some(cause("CM503001")));
        assert_eq!(recall(&s, b"req-2"), None);
        assert_eq!(cause("CM503001").display(), "users:CM503001");
    }

    #[test]
    fn a_collision_overwrites_and_never_leaks_another_requests_cause() {
        let s = MapStore::default();
        // Find two ids in the same slot.
        let first = b"a-0".to_vec();
        let other = (1..100_000)
            .map(|i| format!("a-{i}").into_bytes())
            .find(|id| slot_key(id) == slot_key(&first))
            .unwrap();
        remember(&s, &first, &cause("OLD"));
        remember(&s, &other, &cause("NEW"));
        assert_eq!(recall(&s, &first), None, "overwritten, not confused");
        assert_eq!(recall(&s, &other), Some(cause("NEW")));
    }

    #[test]
    fn forget_clears_only_this_request() {
        let s = MapStore::default();
        remember(&s, b"req-1", &cause("CM503001"));
        remember(&s, b"req-2", &cause("X"));
        forget(&s, b"req-1");
        assert_eq!(recall(&s, b"req-1"), None);
        assert_eq!(recall(&s, b"req-2"), Some(cause("X")));
        forget(&s, b"never-seen");
        assert_eq!(recall(&s, b"req-2"), Some(cause("X")));
    }

    #[test]
    fn memory_is_bounded_by_the_slot_count() {
        let s = MapStore::default();
        for i in 0..(SLOTS * 4) {
            remember(&s, format!("req-{i}").as_bytes(), &cause("X"));
        }
        assert!(s.0.borrow().len() <= SLOTS as usize);
    }

    #[test]
    fn unusable_ids_and_corrupt_entries_are_ignored() {
        let s = MapStore::default();
        for id in [&b""[..], &[b'a'; 129], b"with space", b"\xff\xfe"] {
            remember(&s, id, &cause("X"));
            assert_eq!(recall(&s, id), None);
        }
        assert!(s.0.borrow().is_empty());
        s.set(&slot_key(b"r"), b"\xff\xfe garbage");
        assert_eq!(recall(&s, b"r"), None);
        s.set(&slot_key(b"r"), b"v1\nr");
        assert_eq!(recall(&s, b"r"), None, "truncated entry");
    }
}
