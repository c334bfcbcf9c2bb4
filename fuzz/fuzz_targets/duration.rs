//! Go-style durations and 5-field cron schedules from any text: never panic; a parsed
//! duration formats to text that parses back to the same whole seconds (or milliseconds,
//! under a second), and a schedule's next occurrence is after the instant asked about.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlrollout::api::cron::CronSchedule;
use mlrollout::api::duration::{format_duration, parse_duration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(text) {
        let formatted = format_duration(d);
        let back = parse_duration(&formatted)
            .unwrap_or_else(|e| panic!("{text:?} -> {formatted:?} does not parse: {e}"));
        if d.as_secs() == 0 {
            assert_eq!(back.as_millis(), d.as_millis(), "{text:?} -> {formatted:?}");
        } else {
            assert_eq!(back.as_secs(), d.as_secs(), "{text:?} -> {formatted:?}");
        }
    }
    if let Ok(schedule) = CronSchedule::parse(text) {
        assert_eq!(schedule.as_str(), text);
        // 2026-01-01T00:00:00Z
        let after = jiff::Timestamp::from_second(1_767_225_600).unwrap_or_else(|e| panic!("{e}"));
        if let Some(next) = schedule.next_after(after) {
            assert!(next > after, "{text:?}: {next} is not after {after}");
        }
    }
});
