//! The meshkit Wasm HTTP filter entry of a listener's filter chain.

use envoy_types::pb::envoy::config::core::v3::BackoffStrategy;
use envoy_types::pb::envoy::config::core::v3::{
    async_data_source, data_source, AsyncDataSource, DataSource,
};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::envoy::extensions::wasm::v3::{
    plugin_config, FailurePolicy, PluginConfig, ReloadConfig, VmConfig,
};
use envoy_types::pb::google::protobuf::{BoolValue, StringValue};
use meshkit_filter::core::config::PluginConfig as MeshkitConfig;

use super::any::{duration, pack};

/// Wait before reloading a crashed VM (Envoy's default is 1 s; jittered up to 1.5×).
const RELOAD_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// One VM per worker shared by both listeners' plugins (same `vm_id` and code): state shared
/// between them (e.g. retry budgets) lives in that VM's shared data.
pub const VM_ID: &str = "meshkit";

/// The filter, configured with `config` serialized exactly as the filter parses it.
pub fn meshkit_http_filter(config: &MeshkitConfig, wasm_path: &str) -> HttpFilter {
    let vm = VmConfig {
        vm_id: VM_ID.into(),
        runtime: "envoy.wasm.runtime.v8".into(),
        code: Some(AsyncDataSource {
            specifier: Some(async_data_source::Specifier::Local(DataSource {
                specifier: Some(data_source::Specifier::Filename(wasm_path.into())),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    let plugin = PluginConfig {
        // Distinct per listener: it is how Envoy's logs tell the two plugins apart.
        name: format!("meshkit-{}", config.direction.as_str()),
        root_id: "meshkit".into(),
        configuration: Some(pack(&StringValue {
            value: config.to_json(),
        })),
        vm: Some(plugin_config::Vm::VmConfig(vm)),
        // The filter holds response headers while it reads a problem+json body, then stamps
        // them. Without this Envoy turns that StopIteration into StopAllIteration and the body
        // callback never runs.
        allow_on_headers_stop_iteration: Some(BoolValue { value: true }),
        // A crash (panic, trap) must not take traffic down with it, nor leave the worker
        // without meshkit: Envoy reloads the VM on the next request after a short backoff
        // (counted in `wasm.<plugin name>.vm_reload_success`); until then requests on that
        // worker fail fast with `wasm_fail_stream`. Fail-open would keep traffic flowing but
        // leave retries unbudgeted and errors unreported for the rest of the process's life,
        // with no stat to show it.
        failure_policy: FailurePolicy::FailReload as i32,
        reload_config: Some(ReloadConfig {
            backoff: Some(BackoffStrategy {
                base_interval: Some(duration(RELOAD_BACKOFF)),
                max_interval: None,
            }),
        }),
        ..Default::default()
    };
    HttpFilter {
        name: "envoy.filters.http.wasm".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack(&Wasm {
            config: Some(plugin),
        }))),
        ..Default::default()
    }
}
