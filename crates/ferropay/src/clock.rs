//! Wall-clock time in the units the database stores: milliseconds since the Unix epoch (`*_ms`).

use time::OffsetDateTime;
use time::macros::format_description;

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).expect("the clock is within i64 milliseconds of 1970")
}

/// Now, in whole seconds since the Unix epoch.
pub fn now_s() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Formats a stored `*_ms` timestamp as RFC 3339 in UTC to the second, in the contract's shape
/// (`2026-11-24T10:00:00Z`): one fixed width, whatever the milliseconds (they are cut, not
/// rounded, so a time never reads later than it was).
pub fn rfc3339_from_ms(at_ms: i64) -> String {
    let shape = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::from_unix_timestamp(at_ms.div_euclid(1_000))
        .ok()
        .and_then(|t| t.format(&shape).ok())
        .unwrap_or_else(|| at_ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::rfc3339_from_ms;

    #[test]
    fn timestamps_have_the_contracts_shape() {
        assert_eq!(rfc3339_from_ms(1_795_860_000_000), "2026-11-28T10:00:00Z");
        assert_eq!(rfc3339_from_ms(1_795_860_000_999), "2026-11-28T10:00:00Z");
        assert_eq!(rfc3339_from_ms(1_795_860_001_340), "2026-11-28T10:00:01Z");
        assert_eq!(rfc3339_from_ms(-1), "1969-12-31T23:59:59Z");
    }
}
