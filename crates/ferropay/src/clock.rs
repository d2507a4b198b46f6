//! Wall-clock time in the units the database stores: milliseconds since the Unix epoch (`*_ms`).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).expect("the clock is within i64 milliseconds of 1970")
}

/// Now, in whole seconds since the Unix epoch.
pub fn now_s() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Formats a stored `*_ms` timestamp as RFC 3339 in UTC (`2026-11-24T10:00:00.123Z`).
pub fn rfc3339_from_ms(at_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| at_ms.to_string())
}
