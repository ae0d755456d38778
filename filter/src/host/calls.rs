//! [`Host`] over proxy-wasm hostcalls: one method, one (or two) hostcalls.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};

use super::metrics;
use crate::core::access_log::FilterField;
use crate::core::host::{Host, Map, Property};
use crate::core::metrics::CardinalityCap;
use crate::core::shared_data::{CasStore, SetError};

#[derive(Default)]
pub struct Hostcalls;

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
        hostcalls::get_map_value_bytes(map_type(map), name)
            .ok()
            .flatten()
    }

    fn set_header(&mut self, map: Map, name: &str, value: &str) {
        if let Err(s) = hostcalls::set_map_value(map_type(map), name, Some(value)) {
            log::warn!("meshkit: cannot set {name}: {s:?}");
        }
    }

    fn remove_header(&mut self, map: Map, name: &str) {
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
