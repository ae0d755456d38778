//! Remembering, per request id, the upstream failure a service saw, so its inbound sidecar can
//! attach it when the app then fails without a code of its own.
//!
//! The table lives in proxy-wasm shared data, shared by every worker VM of the sidecar (the
//! outbound listener writes, the inbound listener reads, possibly on another worker). Shared
//! data never evicts, so the table is a fixed set of keys: `buckets` keys of up to [`WAYS`]
//! entries each. A request id hashes to one bucket. Every change is a compare-and-swap, so two
//! workers writing the same bucket never lose each other's entry.
//!
//! Entries are evicted by **age**, never by collision: an entry older than `max_age_ms` (the
//! longest a request can live inside the service) is dead and makes room; only a bucket full of
//! live entries evicts its oldest, which the caller counts ([`Remembered::Evicted`]). The
//! inbound sidecar takes its entry out when the app answers with an error. Memory is bounded by
//! `buckets × WAYS` entries of at most ~330 bytes (id ≤ 128, origin ≤ 63, code ≤ 64).
//!
//! A cause is needed only briefly (from the upstream failure until the app answers), so a live
//! cause is among the youngest entries of its bucket, and evicting the oldest takes it only if
//! `WAYS` newer entries land in its bucket before the app answers. Entries that nobody takes
//! (the app recovered from the failure, or called without forwarding the request id) linger
//! until they age out and make those evictions likelier under sustained partial failure; the
//! SDK sizes the table at four entries per request the app's circuit breaker admits.
//!
//! A request id is chosen by callers and may be reused (a client retry, a fan-out with one id).
//! An entry records when it was written, and a request only accepts entries written after it
//! arrived: an old request's cause never attaches to a new one.

use super::shared_data::{self, CasStore, SetError};

/// Entries per bucket.
pub const WAYS: usize = 8;
/// Request ids longer than this are not remembered (Envoy's own are 36-byte UUIDs).
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// Bounds for the bucket count (a power of two).
pub const MIN_BUCKETS: u32 = 16;
pub const MAX_BUCKETS: u32 = 1 << 16;
const VERSION: &[u8] = b"v2";

/// The table's shape, from the plugin configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CauseTable {
    pub buckets: u32,
    /// An entry older than this is dead.
    pub max_age_ms: u64,
}

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

/// What [`CauseTable::remember`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    Stored,
    /// Stored, and a live entry of another request was evicted to make room.
    Evicted,
    /// The request id is unusable (empty, too long, not printable ASCII).
    Skipped,
    /// The store kept refusing.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    written_ms: u64,
    request_id: Vec<u8>,
    cause: Cause,
}

/// FNV-1a: tiny, stable across builds and platforms (the bucket of an id must not depend on the
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

/// Bucket encoding: `v2` then one line per entry, `written_ms id origin code`, space-separated
/// (ids are printable ASCII without spaces; origins and codes are validated names).
fn decode(bytes: &[u8]) -> Vec<Entry> {
    let mut lines = bytes.split(|&b| b == b'\n');
    if lines.next() != Some(VERSION) {
        return Vec::new();
    }
    lines
        .filter_map(|line| {
            let text = std::str::from_utf8(line).ok()?;
            let mut parts = text.split(' ');
            let entry = Entry {
                written_ms: parts.next()?.parse().ok()?,
                request_id: parts.next()?.as_bytes().to_vec(),
                cause: Cause {
                    origin: parts.next()?.to_string(),
                    code: parts.next()?.to_string(),
                },
            };
            parts.next().is_none().then_some(entry)
        })
        .take(WAYS)
        .collect()
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = VERSION.to_vec();
    for e in entries {
        out.push(b'\n');
        out.extend_from_slice(e.written_ms.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(&e.request_id);
        out.push(b' ');
        out.extend_from_slice(e.cause.origin.as_bytes());
        out.push(b' ');
        out.extend_from_slice(e.cause.code.as_bytes());
    }
    out
}

impl CauseTable {
    /// Buckets are a power of two within bounds, whatever the configuration says.
    pub fn new(buckets: u32, max_age_ms: u64) -> CauseTable {
        CauseTable {
            buckets: buckets.clamp(MIN_BUCKETS, MAX_BUCKETS).next_power_of_two(),
            max_age_ms,
        }
    }

    fn key(&self, request_id: &[u8]) -> String {
        Self::bucket_key(fnv1a(request_id) & (self.buckets - 1))
    }

    fn bucket_key(bucket: u32) -> String {
        format!("meshkit.cause.{bucket}")
    }

    /// Every key of the table, to create before traffic (so CAS applies from the first write).
    pub fn keys(&self) -> impl Iterator<Item = String> {
        (0..self.buckets).map(Self::bucket_key)
    }

    /// An empty bucket.
    pub fn empty_bucket() -> Vec<u8> {
        VERSION.to_vec()
    }

    fn live(&self, e: &Entry, now_ms: u64) -> bool {
        now_ms.saturating_sub(e.written_ms) <= self.max_age_ms
    }

    /// Records `cause` for `request_id` at `now_ms`.
    pub fn remember(
        &self,
        store: &impl CasStore,
        now_ms: u64,
        request_id: &[u8],
        cause: &Cause,
    ) -> Remembered {
        if !usable(request_id) {
            return Remembered::Skipped;
        }
        let key = self.key(request_id);
        let result = shared_data::update(store, &key, |bytes| {
            let mut entries = decode(bytes);
            entries.retain(|e| e.request_id != request_id && self.live(e, now_ms));
            let mut outcome = Remembered::Stored;
            if entries.len() >= WAYS {
                if let Some(oldest) = (0..entries.len()).min_by_key(|&i| entries[i].written_ms) {
                    entries.remove(oldest);
                }
                outcome = Remembered::Evicted;
            }
            entries.push(Entry {
                written_ms: now_ms,
                request_id: request_id.to_vec(),
                cause: cause.clone(),
            });
            (Some(encode(&entries)), outcome)
        });
        result.unwrap_or(Remembered::Failed)
    }

    /// Takes out the cause recorded for `request_id` since `since_ms` (when the request
    /// arrived), if the table holds one.
    pub fn take(
        &self,
        store: &impl CasStore,
        now_ms: u64,
        request_id: &[u8],
        since_ms: u64,
    ) -> Option<Cause> {
        if !usable(request_id) {
            return None;
        }
        let key = self.key(request_id);
        shared_data::update(store, &key, |bytes| {
            let mut entries = decode(bytes);
            let Some(i) = entries.iter().position(|e| e.request_id == request_id) else {
                return (None, None);
            };
            let entry = entries.remove(i);
            let found =
                (entry.written_ms >= since_ms && self.live(&entry, now_ms)).then_some(entry.cause);
            (Some(encode(&entries)), found)
        })
        .flatten()
    }

    /// Creates every bucket that does not exist yet.
    pub fn create(&self, store: &impl CasStore) -> Result<(), SetError> {
        let empty = Self::empty_bucket();
        self.keys()
            .try_for_each(|key| shared_data::ensure(store, &key, &empty))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::shared_data::testing::MemStore;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn cause(code: &str) -> Cause {
        Cause {
            origin: "users".into(),
            code: code.into(),
        }
    }

    fn table() -> (CauseTable, MemStore) {
        let t = CauseTable::new(16, 15_000);
        let s = MemStore::default();
        t.create(&s).unwrap();
        (t, s)
    }

    /// `n` ids that share one bucket.
    fn same_bucket(t: &CauseTable, n: usize) -> Vec<Vec<u8>> {
        let first = t.key(b"id-0");
        (0..100_000)
            .map(|i| format!("id-{i}").into_bytes())
            .filter(|id| t.key(id) == first)
            .take(n)
            .collect()
    }

    #[test]
    fn remembers_and_takes_by_request_id() {
        let (t, s) = table();
        assert_eq!(
            t.remember(&s, 100, b"req-1", &cause("CM503001")),
            Remembered::Stored
        );
        assert_eq!(t.take(&s, 200, b"req-2", 0), None);
        assert_eq!(t.take(&s, 200, b"req-1", 50), Some(cause("CM503001")));
        assert_eq!(t.take(&s, 200, b"req-1", 50), None, "taken out");
        assert_eq!(cause("CM503001").display(), "users:CM503001");
    }

    #[test]
    fn a_full_bucket_evicts_by_age_and_never_leaks_another_requests_cause() {
        let (t, s) = table();
        let ids = same_bucket(&t, WAYS + 2);
        for (i, id) in ids.iter().take(WAYS).enumerate() {
            assert_eq!(
                t.remember(&s, i as u64, id, &cause("C")),
                Remembered::Stored
            );
        }
        // Dead entries make room without counting as an eviction.
        let later = t.max_age_ms + WAYS as u64;
        assert_eq!(
            t.remember(&s, later, &ids[WAYS], &cause("N")),
            Remembered::Stored
        );
        assert_eq!(t.take(&s, later, &ids[1], 0), None, "expired");
        // A bucket of live entries evicts only its oldest.
        let (t, s) = table();
        for (i, id) in ids.iter().take(WAYS).enumerate() {
            t.remember(&s, 10 + i as u64, id, &cause(&format!("C{i}")));
        }
        assert_eq!(
            t.remember(&s, 100, &ids[WAYS], &cause("N")),
            Remembered::Evicted
        );
        assert_eq!(t.take(&s, 100, &ids[0], 0), None, "the oldest went");
        for (i, id) in ids.iter().enumerate().take(WAYS).skip(1) {
            assert_eq!(t.take(&s, 100, id, 0), Some(cause(&format!("C{i}"))));
        }
        assert_eq!(t.take(&s, 100, &ids[WAYS], 0), Some(cause("N")));
    }

    #[test]
    fn a_reused_request_id_never_inherits_an_old_cause() {
        let (t, s) = table();
        t.remember(&s, 1_000, b"reused", &cause("OLD"));
        assert_eq!(
            t.take(&s, 2_000, b"reused", 1_500),
            None,
            "written before it arrived"
        );
        t.remember(&s, 1_000, b"again", &cause("X"));
        t.remember(&s, 1_600, b"again", &cause("NEW"));
        assert_eq!(
            t.take(&s, 2_000, b"again", 1_500),
            Some(cause("NEW")),
            "replaced"
        );
    }

    #[test]
    fn concurrent_writers_to_one_bucket_keep_each_others_entries() {
        let (t, s) = table();
        let ids = same_bucket(&t, 2);
        let (mine, theirs) = (ids[0].clone(), ids[1].clone());
        // Another worker writes its entry between our read and our write.
        let (t2, other) = (t, theirs.clone());
        *s.interloper.borrow_mut() = Some(Box::new(move |bytes: &[u8]| {
            let mut entries = decode(bytes);
            entries.push(Entry {
                written_ms: 5,
                request_id: other.clone(),
                cause: cause("THEIRS"),
            });
            let _ = t2;
            encode(&entries)
        }));
        s.conflicts.set(1);
        assert_eq!(t.remember(&s, 6, &mine, &cause("MINE")), Remembered::Stored);
        assert_eq!(t.take(&s, 7, &theirs, 0), Some(cause("THEIRS")));
        // And taking one entry out never erases a fresh entry written meanwhile.
        t.remember(&s, 8, &theirs, &cause("THEIRS"));
        let (t3, other) = (t, theirs.clone());
        *s.interloper.borrow_mut() = Some(Box::new(move |bytes: &[u8]| {
            let mut entries = decode(bytes);
            entries.retain(|e| e.request_id != other);
            entries.push(Entry {
                written_ms: 9,
                request_id: other.clone(),
                cause: cause("FRESH"),
            });
            let _ = t3;
            encode(&entries)
        }));
        s.conflicts.set(1);
        assert_eq!(t.take(&s, 10, &mine, 0), Some(cause("MINE")));
        assert_eq!(t.take(&s, 10, &theirs, 0), Some(cause("FRESH")));
    }

    #[test]
    fn memory_is_bounded_and_sizes_are_powers_of_two() {
        let (t, s) = table();
        for i in 0..(t.buckets as usize * WAYS * 4) {
            t.remember(&s, 0, format!("req-{i}").as_bytes(), &cause("X"));
        }
        let data = s.data.borrow();
        assert_eq!(data.len(), t.buckets as usize);
        assert!(data.values().all(|(v, _)| decode(v).len() <= WAYS));
        assert_eq!(CauseTable::new(0, 1).buckets, MIN_BUCKETS);
        assert_eq!(CauseTable::new(1000, 1).buckets, 1024);
        assert_eq!(CauseTable::new(u32::MAX, 1).buckets, MAX_BUCKETS);
    }

    #[test]
    fn unusable_ids_corrupt_buckets_and_a_broken_store() {
        let (t, s) = table();
        for id in [&b""[..], &[b'a'; 129], b"with space", b"\xff\xfe"] {
            assert_eq!(t.remember(&s, 0, id, &cause("X")), Remembered::Skipped);
            assert_eq!(t.take(&s, 0, id, 0), None);
        }
        let key = t.key(b"r");
        s.set(&key, b"\xff\xfe garbage", None).unwrap();
        assert_eq!(t.take(&s, 0, b"r", 0), None);
        s.set(&key, b"v2\n1 r", None).unwrap();
        assert_eq!(t.take(&s, 0, b"r", 0), None, "truncated entry");
        assert_eq!(
            t.remember(&s, 0, b"r", &cause("X")),
            Remembered::Stored,
            "rewritten clean"
        );
        s.broken.set(true);
        assert_eq!(t.remember(&s, 0, b"q", &cause("X")), Remembered::Failed);
    }
}
