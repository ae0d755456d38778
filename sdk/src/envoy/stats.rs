//! Stats configuration: tag extractors that turn the labels the filter encodes in its metric
//! names back into Prometheus labels (`meshkit_errors{service="…",code="…",…}`).

use envoy_types::pb::envoy::config::metrics::v3::{tag_specifier, StatsConfig, TagSpecifier};
use envoy_types::pb::google::protobuf::BoolValue;
use meshkit_filter::core::metrics::stats_tags;

pub fn stats_config() -> StatsConfig {
    StatsConfig {
        stats_tags: stats_tags()
            .into_iter()
            .map(|(name, regex)| TagSpecifier {
                tag_name: name,
                tag_value: Some(tag_specifier::TagValue::Regex(regex)),
            })
            .collect(),
        use_all_default_tags: Some(BoolValue { value: true }),
        ..Default::default()
    }
}
