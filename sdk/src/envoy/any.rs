//! Packing typed messages into `google.protobuf.Any` and building small well-known values.

use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use prost::{Message, Name};

/// `Any` with the canonical `type.googleapis.com/<full name>` URL of `M`.
pub(crate) fn pack<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

pub(crate) fn duration(d: std::time::Duration) -> PbDuration {
    PbDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
