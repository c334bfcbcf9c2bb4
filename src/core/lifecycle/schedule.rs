//! Time arithmetic on `jiff` timestamps: cron occurrences, durations from the spec.

use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp, tz::TimeZone};

use crate::api::duration::parse_duration;

/// The first occurrence of the 5-field cron `expr` (UTC) strictly after `after`.
pub fn next_cron(expr: &str, after: Timestamp) -> Option<Timestamp> {
    let cron = croner::Cron::from_str(expr).ok()?;
    let zoned = after.to_zoned(TimeZone::UTC);
    cron.find_next_occurrence(&zoned, false)
        .ok()
        .map(|z| z.timestamp())
}

/// A spec duration; a string the schema let through but the parser refuses falls back to
/// `fallback` (validation reports it as InvalidSpec before any of this runs).
pub fn spec_duration(value: &str, fallback: Duration) -> Duration {
    parse_duration(value).unwrap_or(fallback)
}

/// `t + d`, saturating.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|sd| t.checked_add(sd).ok())
        .unwrap_or(Timestamp::MAX)
}

/// `later - earlier` as a std Duration (zero if negative).
pub fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    let d = later.duration_since(earlier);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_occurrence_is_strictly_after() {
        let t: Timestamp = "2026-11-26T02:30:00Z".parse().unwrap();
        let next = next_cron("0 3 * * *", t).unwrap();
        assert_eq!(next.to_string(), "2026-11-26T03:00:00Z");
        let at: Timestamp = "2026-11-26T03:00:00Z".parse().unwrap();
        assert_eq!(
            next_cron("0 3 * * *", at).unwrap().to_string(),
            "2026-11-27T03:00:00Z"
        );
        assert!(next_cron("not a cron", t).is_none());
    }

    #[test]
    fn durations() {
        let t: Timestamp = "2026-11-26T00:00:00Z".parse().unwrap();
        let later = add(t, Duration::from_secs(90));
        assert_eq!(since(later, t), Duration::from_secs(90));
        assert_eq!(since(t, later), Duration::ZERO);
        assert_eq!(
            spec_duration("5m", Duration::ZERO),
            Duration::from_secs(300)
        );
        assert_eq!(
            spec_duration("bad", Duration::from_secs(7)),
            Duration::from_secs(7)
        );
    }
}
