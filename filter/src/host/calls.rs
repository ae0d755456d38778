//! [`Host`] over proxy-wasm hostcalls: one method, one (or two) hostcalls; request and
//! response headers are read a whole map at a time (see [`HeaderCache`]).

use std::cell::RefCell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};

use super::metrics;
use crate::core::access_log::FilterField;
use crate::core::header_pairs;
use crate::core::host::{Host, Map, Property};
use crate::core::metrics::CardinalityCap;
use crate::core::shared_data::{CasStore, SetError};

#[derive(Default)]
pub struct Hostcalls {
    headers: HeaderCache,
}

/// The request and response header maps as read in the current callback. Envoy copies a
/// header into the VM by calling back into it to allocate (~10 k instructions per header
/// read, measured with callgrind); one read of the whole map pays that once. Dropped at every
/// callback ([`Hostcalls::new_callback`]) and after every write to the map.
#[derive(Default)]
struct HeaderCache {
    /// Serialized as Envoy hands it over; `None`: not read in this callback.
    maps: RefCell<[Option<Vec<u8>>; 2]>,
}

impl HeaderCache {
    fn slot(map: Map) -> Option<usize> {
        match map {
            Map::RequestHeaders => Some(0),
            Map::ResponseHeaders => Some(1),
            // Trailers may not exist at all: read one by one.
            Map::ResponseTrailers => None,
        }
    }

    /// Header `name` of `map`: `Ok(value)` from the cached map, or `Err(())` where the map
    /// cannot be read whole (then the caller reads the one header).
    fn get(&self, map: Map, name: &str) -> Result<Option<Vec<u8>>, ()> {
        let slot = Self::slot(map).ok_or(())?;
        let mut maps = self.maps.borrow_mut();
        if maps[slot].is_none() {
            maps[slot] = Some(map_pairs(map_type(map)).ok_or(())?);
        }
        let bytes = maps[slot].as_deref().ok_or(())?;
        let pairs = header_pairs::parse(bytes).ok_or(())?;
        Ok(header_pairs::first(&pairs, name).map(<[u8]>::to_vec))
    }

    fn forget(&self, map: Map) {
        if let Some(slot) = Self::slot(map) {
            self.maps.borrow_mut()[slot] = None;
        }
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// The whole map, serialized (see [`header_pairs`]). The SDK's `get_map_bytes` would parse it
/// into `String` names and panic on one that is not UTF-8; this leaves parsing to
/// [`header_pairs::parse`], which never panics.
fn map_pairs(map_type: MapType) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through the VM's allocator (the SDK's
    // `proxy_on_memory_allocate`: a Vec of `size` bytes) and hands over its ownership, exactly
    // as for the SDK's own `get_map_bytes`.
    unsafe {
        match proxy_get_header_map_pairs(map_type, &mut data, &mut size) {
            Status::Ok if data.is_null() => Some(Vec::new()),
            Status::Ok => Some(Vec::from_raw_parts(data, size, size)),
            _ => None,
        }
    }
}

impl Hostcalls {
    /// A callback begins: headers read before may have changed since.
    pub fn new_callback(&self) {
        *self.headers.maps.borrow_mut() = [None, None];
    }
}

fn map_type(map: Map) -> MapType {
    match map {
        Map::RequestHeaders => MapType::HttpRequestHeaders,
        Map::ResponseHeaders => MapType::HttpResponseHeaders,
        Map::ResponseTrailers => MapType::HttpResponseTrailers,
    }
}

pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl CasStore for Hostcalls {
    fn get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), cas)) => Some((value, cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SetError::CasMismatch),
            Err(_) => Err(SetError::Failed),
        }
    }
}

impl Host for Hostcalls {
    fn header(&self, map: Map, name: &str) -> Option<Vec<u8>> {
        self.headers.get(map, name).unwrap_or_else(|()| {
            hostcalls::get_map_value_bytes(map_type(map), name)
                .ok()
                .flatten()
        })
    }

    fn set_header(&mut self, map: Map, name: &str, value: &str) {
        self.headers.forget(map);
        if let Err(s) = hostcalls::set_map_value(map_type(map), name, Some(value)) {
            log::warn!("meshkit: cannot set {name}: {s:?}");
        }
    }

    fn remove_header(&mut self, map: Map, name: &str) {
        self.headers.forget(map);
        let _ = hostcalls::set_map_value(map_type(map), name, None);
    }

    fn property(&self, property: Property) -> Option<Vec<u8>> {
        hostcalls::get_property(property.path().to_vec())
            .ok()
            .flatten()
    }

    fn response_body(&self, len: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpResponseBody, 0, len)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn replace_response_body(&mut self, len: usize, body: &[u8]) {
        if let Err(s) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, len, body) {
            log::warn!("meshkit: cannot replace the response body: {s:?}");
        }
    }

    fn set_log_field(&mut self, field: FilterField, value: &str) {
        let property = field.property();
        if let Err(s) = hostcalls::set_property(vec![property], Some(value.as_bytes())) {
            log::warn!("meshkit: cannot set filter state {property}: {s:?}");
        }
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn counter(&mut self, name: &str, n: u64) {
        metrics::add(name, n);
    }

    fn gauge(&mut self, name: &str, value: u64) {
        metrics::gauge(name, value);
    }

    fn with_cap<R>(&mut self, f: impl FnOnce(&mut CardinalityCap) -> R) -> R {
        metrics::with_cap(f)
    }

    fn debug(&self, message: &str) {
        log::debug!("{message}");
    }
}
