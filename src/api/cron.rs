//! Cron schedules (5 fields, UTC) as used by `spec.drift.schedule` and
//! `spec.retraining.triggers.schedule`: parsed once by [`validation`](super::validation), kept
//! with the text the user wrote (for messages).

use k8s_openapi::jiff::{Timestamp, tz::TimeZone};

/// Why a cron expression was rejected.
#[derive(Debug, thiserror::Error)]
#[error("{input:?} is not a valid cron schedule ({source}); use 5 fields, e.g. \"0 3 * * 0\"")]
pub struct CronScheduleError {
    pub input: String,
    pub source: croner::errors::CronError,
}

/// A parsed cron schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    expression: String,
    cron: croner::Cron,
}

impl CronSchedule {
    /// Parses a 5-field cron expression such as `0 3 * * 0`.
    pub fn parse(expression: &str) -> Result<Self, CronScheduleError> {
        // croner reads an empty list item (`,` or `1,,2`) as a field with no value at all: a
        // schedule that never fires, which it then searches for decades to find (seconds per
        // call, on every reconcile). Refused here, found by the `duration` fuzz target.
        if let Some(field) = expression
            .split_whitespace()
            .find(|field| field.split(',').any(str::is_empty))
        {
            return Err(CronScheduleError {
                input: expression.to_string(),
                source: croner::errors::CronError::InvalidPattern(format!(
                    "field {field:?} has an empty list item"
                )),
            });
        }
        // croner also takes seconds and years (6 or 7 fields) unless told not to.
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build();
        let cron = parser
            .parse(expression)
            .map_err(|source| CronScheduleError {
                input: expression.to_string(),
                source,
            })?;
        Ok(Self {
            expression: expression.to_string(),
            cron,
        })
    }

    /// The expression as written in the spec.
    pub fn as_str(&self) -> &str {
        &self.expression
    }

    /// The first occurrence (UTC) strictly after `after`; `None` when there is none (a date
    /// that never comes, such as the 30th of February).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let zoned = after.to_zoned(TimeZone::UTC);
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrence_is_strictly_after() {
        let daily = CronSchedule::parse("0 3 * * *").unwrap();
        let t: Timestamp = "2026-11-26T02:30:00Z".parse().unwrap();
        assert_eq!(
            daily.next_after(t).unwrap().to_string(),
            "2026-11-26T03:00:00Z"
        );
        let at: Timestamp = "2026-11-26T03:00:00Z".parse().unwrap();
        assert_eq!(
            daily.next_after(at).unwrap().to_string(),
            "2026-11-27T03:00:00Z"
        );
        assert_eq!(daily.as_str(), "0 3 * * *");
    }

    /// A seconds (or years) field would be read as minutes (issue 20 point 7).
    #[test]
    fn six_or_seven_fields_are_refused() {
        for expression in ["0 0 3 * * 0", "0 0 3 * * 0 2030"] {
            let error = CronSchedule::parse(expression).unwrap_err().to_string();
            assert!(error.contains("use 5 fields"), "{expression}: {error}");
        }
        assert!(CronSchedule::parse("@daily").is_ok());
    }

    #[test]
    fn rejects_what_is_not_cron() {
        let error = CronSchedule::parse("not a cron").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("\"not a cron\" is not a valid cron schedule ("),
            "{error}"
        );
    }

    /// Issue 14 point 9, found by the `duration` fuzz target: `", * * * 0"` parsed as a minute
    /// field with no value, and every `next_after` then searched for seconds (15 s in a debug
    /// build) before answering "never". Empty list items are refused at once.
    #[test]
    fn empty_list_items_are_refused_not_searched_for() {
        for expression in [", * * * 0", "1,,2 * * * *", "1, * * * *", "0 3 * * ,1"] {
            let started = std::time::Instant::now();
            let error = CronSchedule::parse(expression).unwrap_err().to_string();
            assert!(error.contains("empty list item"), "{expression}: {error}");
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
        let lists = CronSchedule::parse("0,30 1,13 * * 1,3").unwrap();
        let t: Timestamp = "2026-11-26T02:30:00Z".parse().unwrap();
        assert_eq!(
            lists.next_after(t).unwrap().to_string(),
            "2026-11-30T01:00:00Z"
        );
    }
}
