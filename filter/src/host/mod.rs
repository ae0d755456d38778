//! proxy-wasm glue: the root context (configuration) and the HTTP context, which forwards every
//! callback to [`crate::core::stream::Stream`]. Nothing here decides anything.
//!
//! Only `hostcalls::*` are used, never the `Context` trait helpers, which `unwrap()` more host
//! errors. Even so, proxy-wasm 0.2.5's hostcalls `panic!` on any status they do not expect
//! (e.g. `set_map_value` on anything but Ok), and a panic kills the VM; the stream only writes
//! header maps when Envoy accepts it (see `core::stream`).

mod calls;
mod metrics;

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};

use crate::core::config::PluginConfig;
use crate::core::plugin::Plugin;
use crate::core::stream::{self, Stream};

use calls::Hostcalls;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(MeshkitRoot::default()) });
}}

/// One per plugin per worker VM: owns the parsed configuration.
#[derive(Default)]
struct MeshkitRoot {
    plugin: Option<Rc<Plugin>>,
}

impl Context for MeshkitRoot {}

impl RootContext for MeshkitRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
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
        let config = match PluginConfig::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                // The message names the field: "invalid plugin configuration: <path>: <problem>".
                log::error!("meshkit: {e}");
                return false;
            }
        };
        log::info!(
            "meshkit: configured service={} direction={} catalog={} codes",
            config.service,
            config.direction.as_str(),
            config.errors.catalog.len()
        );
        metrics::raise_cap(config.errors.max_metric_codes as usize);
        let plugin = Plugin::new(config);
        let calls = Hostcalls::default();
        if let Err(e) = plugin.create_shared_keys(&calls, calls::now_ms()) {
            log::warn!("meshkit: cannot create shared data keys: {e:?}");
        }
        if let Some(ms) = plugin.tick_period_ms() {
            if let Err(status) = hostcalls::set_tick_period(Duration::from_millis(ms)) {
                log::warn!("meshkit: cannot set the tick period: {status:?}");
            }
        }
        self.plugin = Some(Rc::new(plugin));
        true
    }

    fn on_tick(&mut self) {
        if let Some(plugin) = &self.plugin {
            plugin.tick(&Hostcalls::default(), calls::now_ms());
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy does not start a plugin whose configuration failed; should it ask anyway,
        // answering None would make the SDK panic, so hand it a context that does nothing.
        let Some(plugin) = self.plugin.clone() else {
            return Some(Box::new(Passthrough));
        };
        Some(Box::new(MeshkitHttp {
            plugin,
            stream: Stream::new(),
            calls: Hostcalls::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The HTTP context of a plugin that has no configuration: lets traffic through untouched.
struct Passthrough;

impl Context for Passthrough {}
impl HttpContext for Passthrough {}

/// One per HTTP stream: Envoy's callbacks, forwarded.
struct MeshkitHttp {
    plugin: Rc<Plugin>,
    stream: Stream,
    calls: Hostcalls,
}

fn action(a: stream::Action) -> Action {
    match a {
        stream::Action::Continue => Action::Continue,
        stream::Action::Pause => Action::Pause,
    }
}

impl Context for MeshkitHttp {}

impl HttpContext for MeshkitHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.calls.new_callback();
        #[cfg(feature = "test-panic")]
        test_panic();
        action(
            self.stream
                .on_request_headers(&self.plugin, &mut self.calls),
        )
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.calls.new_callback();
        action(
            self.stream
                .on_response_headers(&self.plugin, &mut self.calls, end_of_stream),
        )
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.calls.new_callback();
        action(self.stream.on_response_body(
            &self.plugin,
            &mut self.calls,
            body_size,
            end_of_stream,
        ))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.calls.new_callback();
        action(
            self.stream
                .on_response_trailers(&self.plugin, &mut self.calls),
        )
    }

    fn on_log(&mut self) {
        self.calls.new_callback();
        self.stream.on_log(&self.plugin, &mut self.calls);
    }
}

/// Test builds only (`--features test-panic`): a request carrying `x-meshkit-test-panic` makes
/// the VM panic, to prove what Envoy does after a crash (the `failure_policy` test).
#[cfg(feature = "test-panic")]
#[allow(clippy::panic)]
fn test_panic() {
    use proxy_wasm::types::MapType;
    if let Ok(Some(_)) =
        hostcalls::get_map_value(MapType::HttpRequestHeaders, "x-meshkit-test-panic")
    {
        panic!("meshkit: panic on demand (test-panic build)");
    }
}
