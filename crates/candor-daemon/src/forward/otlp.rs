//! OTLP/HTTP logs: an `ExportLogsServiceRequest` (opentelemetry-proto's
//! `collector/logs/v1`) written by hand — one message type with a handful of fields does not
//! need a protobuf code generator — and its POST to `<url>/v1/logs`.
//!
//! One `ResourceLogs` per service (an instance is a service: `api@2` has `service.name` "api"
//! and `service.instance.id` "api@2"), one `ScopeLogs` named "candor", a `LogRecord` per line
//! in the order given. A body that is not UTF-8 is sent as text with U+FFFD in place of the
//! invalid bytes, and its exact bytes in the attribute `candor.body_bytes`.

mod metrics;
mod wire;

pub use metrics::encode_metrics;

use crate::http_post::Poster;

use candor_store::{Level, Stream};

use super::record::{level, Record};
use candor_spec::group_of;
use wire::{put_bytes, put_fixed64, put_varint_field};

/// OpenTelemetry's SeverityNumber of a level: TRACE 1, DEBUG 5, INFO 9, INFO2 10 (notice),
/// WARN 13, ERROR 17, FATAL 21. `Unknown` (never the result of [`level`]) is 0, unspecified.
pub fn severity_number(level: Level) -> u64 {
    match level {
        Level::Unknown => 0,
        Level::Trace => 1,
        Level::Debug => 5,
        Level::Info => 9,
        Level::Notice => 10,
        Level::Warn => 13,
        Level::Error => 17,
        Level::Fatal => 21,
    }
}

/// SeverityText: the level's name as OpenTelemetry writes them (`NOTICE` for INFO2).
pub fn severity_text(level: Level) -> &'static str {
    match level {
        Level::Unknown => "",
        Level::Trace => "TRACE",
        Level::Debug => "DEBUG",
        Level::Info => "INFO",
        Level::Notice => "NOTICE",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
        Level::Fatal => "FATAL",
    }
}

/// An OTLP/HTTP collector's endpoint for `signal` (`logs`, `metrics`): `<url>/v1/<signal>`,
/// port 4318 (OTLP/HTTP's) unless the URL names one.
pub fn collector(url: &str, headers: &[(String, String)], signal: &str) -> Result<Poster, String> {
    Poster::new(
        url,
        4318,
        &format!("/v1/{signal}"),
        headers.iter().map(|(k, v)| (k, v)),
        "application/x-protobuf",
    )
}

/// The request body for `records`, grouped by service in the order each first appears.
pub fn encode_logs(records: &[Record], host_name: &str) -> Vec<u8> {
    let mut services: Vec<(&str, Vec<&Record>)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for rec in records {
        let i = *index.entry(rec.service).or_insert_with(|| {
            services.push((rec.service, Vec::new()));
            services.len() - 1
        });
        services[i].1.push(rec);
    }
    let mut out = Vec::with_capacity(records.iter().map(|r| r.line.len() + 96).sum());
    let mut resource_logs = Vec::new();
    let mut scope_logs = Vec::new();
    let mut scratch = Scratch::default();
    for (service, recs) in services {
        resource_logs.clear();
        // ResourceLogs.resource = 1: Resource { attributes = 1 }.
        let mut resource = Vec::new();
        string_attribute(
            &mut resource,
            &mut scratch,
            1,
            "service.name",
            group_of(service),
        );
        string_attribute(
            &mut resource,
            &mut scratch,
            1,
            "service.instance.id",
            service,
        );
        string_attribute(&mut resource, &mut scratch, 1, "host.name", host_name);
        put_bytes(&mut resource_logs, 1, &resource);
        // ResourceLogs.scope_logs = 2: ScopeLogs { scope = 1 { name = 1 }, log_records = 2 }.
        scope_logs.clear();
        let mut scope = Vec::new();
        put_bytes(&mut scope, 1, b"candor");
        put_bytes(&mut scope_logs, 1, &scope);
        for rec in recs {
            log_record(&mut scratch, rec);
            put_bytes(&mut scope_logs, 2, &scratch.record);
        }
        put_bytes(&mut resource_logs, 2, &scope_logs);
        // ExportLogsServiceRequest.resource_logs = 1.
        put_bytes(&mut out, 1, &resource_logs);
    }
    out
}

/// Buffers reused from one record to the next.
#[derive(Default)]
struct Scratch {
    record: Vec<u8>,
    key_value: Vec<u8>,
    any_value: Vec<u8>,
}

/// `scratch.record` := one LogRecord.
fn log_record(scratch: &mut Scratch, rec: &Record) {
    let level = level(rec);
    let nanos = u64::try_from(rec.at_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let mut record = std::mem::take(&mut scratch.record);
    record.clear();
    put_fixed64(&mut record, 1, nanos); // time_unix_nano
    put_varint_field(&mut record, 2, severity_number(level)); // severity_number
    put_bytes(&mut record, 3, severity_text(level).as_bytes()); // severity_text
                                                                // body = 5: AnyValue { string_value = 1 }.
    scratch.any_value.clear();
    let body = String::from_utf8_lossy(rec.line);
    put_bytes(&mut scratch.any_value, 1, body.as_bytes());
    put_bytes(&mut record, 5, &scratch.any_value);
    // attributes = 6.
    if matches!(rec.stream, Stream::Stdout | Stream::Stderr) {
        string_attribute(&mut record, scratch, 6, "log.iostream", rec.stream.as_str());
    }
    if let Some(run) = rec.run_id {
        scratch.any_value.clear();
        put_varint_field(&mut scratch.any_value, 3, run); // int_value
        key_value(&mut record, scratch, 6, "candor.run_id");
    }
    if std::str::from_utf8(rec.line).is_err() {
        scratch.any_value.clear();
        put_bytes(&mut scratch.any_value, 7, rec.line); // bytes_value
        key_value(&mut record, scratch, 6, "candor.body_bytes");
    }
    put_fixed64(&mut record, 11, nanos); // observed_time_unix_nano
    scratch.record = record;
}

/// A KeyValue with a string AnyValue as field `field` of `out`.
fn string_attribute(out: &mut Vec<u8>, scratch: &mut Scratch, field: u32, key: &str, value: &str) {
    scratch.any_value.clear();
    put_bytes(&mut scratch.any_value, 1, value.as_bytes());
    key_value(out, scratch, field, key);
}

/// A KeyValue { key = 1, value = 2 (`scratch.any_value`) } as field `field` of `out`.
fn key_value(out: &mut Vec<u8>, scratch: &mut Scratch, field: u32, key: &str) {
    scratch.key_value.clear();
    put_bytes(&mut scratch.key_value, 1, key.as_bytes());
    put_bytes(&mut scratch.key_value, 2, &scratch.any_value);
    put_bytes(out, field, &scratch.key_value);
}

#[cfg(test)]
mod tests;
