//! Time arithmetic on `jiff` timestamps. (Durations and cron schedules come parsed from
//! [`validation`](crate::api::validation).)

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

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
    fn durations() {
        let t: Timestamp = "2026-11-26T00:00:00Z".parse().unwrap();
        let later = add(t, Duration::from_secs(90));
        assert_eq!(since(later, t), Duration::from_secs(90));
        assert_eq!(since(t, later), Duration::ZERO);
    }
}
