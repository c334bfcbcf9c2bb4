//! Where captured traffic lives: one Parquet file per window, under a prefix per resource and
//! variant, so the drift check can read "the stable variant's last hour" as one dataset.
//!
//! `<base>/<namespace>/<name>/<variant>/<window start>_<pod>_<seq>.parquet`, the window start in
//! UTC as `YYYYMMDDTHHMMSSmmmZ` (sorts like time, safe in paths and object keys).

use jiff::Timestamp;

/// Extension of every capture window file.
pub const WINDOW_EXTENSION: &str = "parquet";
/// Column holding the request id (the `x-request-id` header, or one the proxy made).
pub const REQUEST_ID_COLUMN: &str = "request_id";
/// Column holding the time the request arrived (milliseconds since the epoch, UTC).
pub const TIMESTAMP_COLUMN: &str = "timestamp";
/// Column holding the model version that answered.
pub const MODEL_VERSION_COLUMN: &str = "model_version";
/// Column holding the prediction (a number), or its JSON text when it is not one number.
pub const PREDICTION_COLUMN: &str = "prediction";
/// Columns the proxy adds beside the features: never compared as features.
pub const BOOKKEEPING_COLUMNS: [&str; 4] = [
    REQUEST_ID_COLUMN,
    TIMESTAMP_COLUMN,
    MODEL_VERSION_COLUMN,
    PREDICTION_COLUMN,
];

/// The prefix holding one variant's windows (no trailing `/`).
pub fn variant_prefix(base: &str, namespace: &str, name: &str, variant: &str) -> String {
    format!(
        "{}/{namespace}/{name}/{variant}",
        base.trim_end_matches('/')
    )
}

/// File name of a window that started at `start`, written by `pod` as its `seq`-th window.
pub fn window_file_name(start: Timestamp, pod: &str, seq: u64) -> String {
    let pod: String = pod
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "{}_{pod}_{seq:06}.{WINDOW_EXTENSION}",
        start.strftime("%Y%m%dT%H%M%S%3fZ")
    )
}

/// The window start encoded in a file name written by [`window_file_name`].
pub fn window_start(file_name: &str) -> Option<Timestamp> {
    let stamp = file_name.split('_').next()?;
    let digits = stamp.strip_suffix('Z')?;
    let (date_time, millis) = digits.split_at_checked(digits.len().checked_sub(3)?)?;
    let parsed = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S", date_time).ok()?;
    let millis: i64 = millis.parse().ok()?;
    let at = parsed.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    at.checked_add(jiff::SignedDuration::from_millis(millis))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_names_sort_like_time_and_round_trip() {
        let a: Timestamp = "2026-12-01T22:15:00.123Z".parse().unwrap();
        let b: Timestamp = "2026-12-01T22:20:00Z".parse().unwrap();
        let (na, nb) = (
            window_file_name(a, "m-stable-7d9f/x", 3),
            window_file_name(b, "m-stable-7d9f", 0),
        );
        assert_eq!(na, "20261201T221500123Z_m-stable-7d9f-x_000003.parquet");
        assert!(na < nb);
        assert_eq!(window_start(&na), Some(a));
        assert_eq!(window_start(&nb), Some(b));
        assert_eq!(window_start("notes.txt"), None);
        assert_eq!(
            variant_prefix("s3://b/captures/", "ns", "m", "stable"),
            "s3://b/captures/ns/m/stable"
        );
    }
}
