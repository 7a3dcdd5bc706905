//! OTLP/HTTP metrics (`metrics = true` on an `otlp` target): an `ExportMetricsServiceRequest`
//! (opentelemetry-proto's `collector/metrics/v1`) of each service's state, restarts, memory and
//! open fds, written by hand like the logs. One `ResourceMetrics` per service, with the same
//! resource attributes as its log lines.

use candor_api::ServiceStatus;

use super::wire::{put_bytes, put_fixed64, put_varint_field};
use super::{string_attribute, Scratch};
use candor_spec::group_of;

/// A number a metric takes of a service, if it has one now.
type Value = fn(&ServiceStatus) -> Option<i64>;

/// The metrics of each service: name, unit, description, a cumulative counter (else a gauge),
/// and its value.
const METRICS: [(&str, &str, &str, bool, Value); 4] = [
    (
        "candor.service.up",
        "1",
        "1 while the service is running (ready), else 0; its state is the `state` attribute",
        false,
        |s| Some(i64::from(s.state == "running")),
    ),
    (
        "candor.service.restarts",
        "{restart}",
        "Restarts of the service since the daemon started it",
        true,
        |s| Some(i64::from(s.restarts)),
    ),
    (
        "process.memory.usage",
        "By",
        "Resident memory of the service's processes, at the last sample",
        false,
        |s| s.rss_bytes.and_then(|b| i64::try_from(b).ok()),
    ),
    (
        "process.open_file_descriptor.count",
        "{file_descriptor}",
        "Open fds of the service's main process, at the last sample",
        false,
        |s| s.fds.as_ref().and_then(|f| i64::try_from(f.count).ok()),
    ),
];

/// The request body for `services`, as of `now_ns` (unix ns); `start_ns`: when the daemon
/// started (the start of the counters).
pub fn encode_metrics(
    services: &[ServiceStatus],
    host_name: &str,
    start_ns: u64,
    now_ns: u64,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut scratch = Scratch::default();
    for s in services {
        let mut resource = Vec::new();
        string_attribute(
            &mut resource,
            &mut scratch,
            1,
            "service.name",
            group_of(&s.name),
        );
        string_attribute(
            &mut resource,
            &mut scratch,
            1,
            "service.instance.id",
            &s.name,
        );
        string_attribute(&mut resource, &mut scratch, 1, "host.name", host_name);
        let mut scope_metrics = Vec::new();
        let mut scope = Vec::new();
        put_bytes(&mut scope, 1, b"candor");
        put_bytes(&mut scope_metrics, 1, &scope);
        for (name, unit, description, counter, value) in METRICS {
            let Some(v) = value(s) else { continue };
            // NumberDataPoint: attributes 7, start_time 2, time 3, as_int 6 (sfixed64).
            let mut point = Vec::new();
            if name == "candor.service.up" {
                string_attribute(&mut point, &mut scratch, 7, "state", &s.state);
            }
            put_fixed64(&mut point, 2, start_ns);
            put_fixed64(&mut point, 3, now_ns);
            put_fixed64(&mut point, 6, v as u64);
            let mut data = Vec::new();
            put_bytes(&mut data, 1, &point);
            // Metric: name 1, description 2, unit 3, gauge 5 | sum 7.
            let mut metric = Vec::new();
            put_bytes(&mut metric, 1, name.as_bytes());
            put_bytes(&mut metric, 2, description.as_bytes());
            put_bytes(&mut metric, 3, unit.as_bytes());
            match counter {
                // Sum: aggregation_temporality 2 = CUMULATIVE, is_monotonic 3.
                true => {
                    put_varint_field(&mut data, 2, 2);
                    put_varint_field(&mut data, 3, 1);
                    put_bytes(&mut metric, 7, &data);
                }
                false => put_bytes(&mut metric, 5, &data),
            }
            put_bytes(&mut scope_metrics, 2, &metric);
        }
        // ResourceMetrics: resource 1, scope_metrics 2; the request's resource_metrics 1.
        let mut resource_metrics = Vec::new();
        put_bytes(&mut resource_metrics, 1, &resource);
        put_bytes(&mut resource_metrics, 2, &scope_metrics);
        put_bytes(&mut out, 1, &resource_metrics);
    }
    out
}
