//! proxy-wasm glue: reads what Envoy shows, calls [`crate::core`], writes the result back.
//!
//! Only `hostcalls::*` are used, never the `Context` trait helpers: those `unwrap()` host errors
//! (e.g. `set_property`), and a panic here would kill the VM and fail every request on the worker.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

use crate::core::access_log;
use crate::core::config::PluginConfig;
use crate::core::headers::HeaderSource;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(MeshkitRoot::default()) });
}}

/// One per plugin per worker VM: owns the parsed configuration.
#[derive(Default)]
struct MeshkitRoot {
    config: Option<Rc<PluginConfig>>,
}

impl Context for MeshkitRoot {}

impl RootContext for MeshkitRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        ) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                log::error!(
                    "meshkit: invalid plugin configuration: (root): configuration is missing"
                );
                return false;
            }
            Err(status) => {
                log::error!("meshkit: cannot read plugin configuration: {status:?}");
                return false;
            }
        };
        match PluginConfig::parse(&bytes) {
            Ok(config) => {
                log::info!(
                    "meshkit: configured service={} direction={}",
                    config.service,
                    config.direction.as_str()
                );
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                // The message names the field: "invalid plugin configuration: <path>: <problem>".
                log::error!("meshkit: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(MeshkitHttp { config }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One per HTTP stream.
struct MeshkitHttp {
    config: Rc<PluginConfig>,
}

impl Context for MeshkitHttp {}

impl HttpContext for MeshkitHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (field, value) in
            access_log::request_fields(&self.config, &Headers(MapType::HttpRequestHeaders))
        {
            set_filter_state(field.property(), value.as_bytes());
        }
        Action::Continue
    }
}

/// A header map of the current stream, read through the host.
struct Headers(MapType);

impl HeaderSource for Headers {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(self.0, name).ok().flatten()
    }
}

/// Writes one filter-state property; a host refusal is logged, never fatal to the request.
fn set_filter_state(property: &str, value: &[u8]) {
    if let Err(status) = hostcalls::set_property(vec![property], Some(value)) {
        log::warn!("meshkit: cannot set filter state {property}: {status:?}");
    }
}
