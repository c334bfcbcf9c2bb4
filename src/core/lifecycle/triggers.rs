//! Retraining triggers (the seed's four: schedule, data volume, accuracy, drift; plus manual)
//! and the gates that keep them from storming: a cooldown and a rolling daily budget.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::schedule::add;
use crate::api::validation::RetrainingTiming;
use crate::api::{RetrainingAttempt, RetrainingSpec, Severity, TriggerSeverity};

pub use crate::api::Trigger;

/// Fresh facts the triggers look at.
#[derive(Debug, Clone, Default)]
pub struct TriggerFacts {
    /// Severity of a drift check completed in this reconcile (`ok`, `medium`, `high`).
    pub drift_severity: Option<Severity>,
    /// Accuracy measured in this reconcile.
    pub accuracy: Option<f64>,
    /// Rows in the current data now.
    pub sample_count: Option<i64>,
    /// Rows when the last training started.
    pub samples_at_last_training: Option<i64>,
    /// Last training start, or when retraining was first configured (schedule anchor).
    pub schedule_anchor: Option<Timestamp>,
    /// A person asked for retraining.
    pub manual: bool,
    /// The advisor recommended retraining.
    pub advisor: bool,
}

/// The trigger that fires now, with a reason, in priority order.
pub fn fired(
    spec: &RetrainingSpec,
    timing: &RetrainingTiming,
    facts: &TriggerFacts,
    now: Timestamp,
) -> Option<(Trigger, String)> {
    let t = &spec.triggers;
    if facts.manual {
        return Some((
            Trigger::Manual,
            "requested with mlrollout.io/retrain".into(),
        ));
    }
    if let (Some(threshold), Some(accuracy)) = (t.accuracy_below, facts.accuracy)
        && accuracy < threshold
    {
        return Some((
            Trigger::Accuracy,
            format!("accuracy {accuracy:.4} is below {threshold}"),
        ));
    }
    if let (Some(level), Some(severity)) = (t.drift_severity, facts.drift_severity) {
        let fires = match level {
            TriggerSeverity::High => severity == Severity::High,
            TriggerSeverity::Medium => severity >= Severity::Medium,
        };
        if fires {
            return Some((Trigger::Drift, format!("drift severity is {severity}")));
        }
    }
    if let (Some(needed), Some(now_count), Some(base)) = (
        t.new_samples,
        facts.sample_count,
        facts.samples_at_last_training,
    ) && now_count - base >= needed
    {
        return Some((
            Trigger::NewSamples,
            format!(
                "{} new samples since the last training (threshold {needed})",
                now_count - base
            ),
        ));
    }
    if let (Some(schedule), Some(anchor)) = (&timing.schedule, facts.schedule_anchor)
        && schedule.next_after(anchor).is_some_and(|due| due <= now)
    {
        return Some((
            Trigger::Schedule,
            format!("schedule \"{}\" is due", schedule.as_str()),
        ));
    }
    if facts.advisor {
        return Some((Trigger::Advisor, "the advisor recommends retraining".into()));
    }
    None
}

/// Whether an attempt may start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// The last attempt started less than `cooldown` ago.
    Cooldown {
        until: Timestamp,
    },
    /// `maxAttemptsPerDay` attempts started in the last 24 hours.
    Budget {
        until: Timestamp,
    },
}

const DAY: Duration = Duration::from_secs(86_400);

/// Cooldown and budget over the recorded attempts.
pub fn gate(
    spec: &RetrainingSpec,
    timing: &RetrainingTiming,
    attempts: &[RetrainingAttempt],
    now: Timestamp,
) -> Gate {
    let starts: Vec<Timestamp> = attempts
        .iter()
        .filter_map(|a| a.started_at.as_ref().map(|t| t.0))
        .collect();
    if let Some(last) = starts.iter().max() {
        let until = add(*last, timing.cooldown);
        if until > now {
            return Gate::Cooldown { until };
        }
    }
    let window_start = now
        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(86_400))
        .ok();
    let mut recent: Vec<Timestamp> = starts
        .into_iter()
        .filter(|s| window_start.is_some_and(|w| *s > w))
        .collect();
    recent.sort();
    let budget = usize::try_from(spec.max_attempts_per_day.max(1)).unwrap_or(1);
    if recent.len() >= budget {
        // The oldest attempt in the window leaves it first.
        let until = add(recent[recent.len() - budget], DAY);
        return Gate::Budget { until };
    }
    Gate::Open
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RetrainingTriggers;
    use crate::api::cron::CronSchedule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// The times `spec` parses to.
    fn timing(spec: &RetrainingSpec) -> RetrainingTiming {
        RetrainingTiming {
            schedule: spec
                .triggers
                .schedule
                .as_deref()
                .map(|s| CronSchedule::parse(s).unwrap()),
            cooldown: Duration::from_secs(6 * 3600),
            timeout: Duration::from_secs(2 * 3600),
        }
    }

    fn spec(triggers: RetrainingTriggers) -> RetrainingSpec {
        RetrainingSpec {
            enabled: true,
            triggers,
            job_template: serde_json::json!({}),
            cooldown: "6h".into(),
            max_attempts_per_day: 3,
            timeout: "2h".into(),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn attempt(start: &str) -> RetrainingAttempt {
        RetrainingAttempt {
            number: 1,
            id: "a".into(),
            trigger: Trigger::Drift,
            job_name: "j".into(),
            started_at: Some(Time(at(start))),
            finished_at: None,
            outcome: crate::api::AttemptOutcome::Running,
            candidate_version: None,
            message: None,
        }
    }

    #[test]
    fn each_trigger_fires_on_its_own_fact() {
        let now = at("2026-11-26T12:00:00Z");
        let s = spec(RetrainingTriggers {
            schedule: Some("0 3 * * *".into()),
            new_samples: Some(1000),
            accuracy_below: Some(0.85),
            drift_severity: Some(TriggerSeverity::High),
        });
        let none = TriggerFacts::default();
        assert_eq!(fired(&s, &timing(&s), &none, now), None);
        let acc = TriggerFacts {
            accuracy: Some(0.7),
            ..Default::default()
        };
        assert_eq!(
            fired(&s, &timing(&s), &acc, now).unwrap().0,
            Trigger::Accuracy
        );
        let ok_acc = TriggerFacts {
            accuracy: Some(0.9),
            ..Default::default()
        };
        assert_eq!(fired(&s, &timing(&s), &ok_acc, now), None);
        let drift = TriggerFacts {
            drift_severity: Some(Severity::High),
            ..Default::default()
        };
        assert_eq!(
            fired(&s, &timing(&s), &drift, now).unwrap().0,
            Trigger::Drift
        );
        let medium = TriggerFacts {
            drift_severity: Some(Severity::Medium),
            ..Default::default()
        };
        assert_eq!(
            fired(&s, &timing(&s), &medium, now),
            None,
            "medium does not reach a high trigger"
        );
        let samples = TriggerFacts {
            sample_count: Some(5_000),
            samples_at_last_training: Some(3_999),
            ..Default::default()
        };
        assert_eq!(
            fired(&s, &timing(&s), &samples, now).unwrap().0,
            Trigger::NewSamples
        );
        let few = TriggerFacts {
            sample_count: Some(4_998),
            samples_at_last_training: Some(3_999),
            ..Default::default()
        };
        assert_eq!(fired(&s, &timing(&s), &few, now), None);
        let sched = TriggerFacts {
            schedule_anchor: Some(at("2026-11-26T01:00:00Z")),
            ..Default::default()
        };
        assert_eq!(
            fired(&s, &timing(&s), &sched, now).unwrap().0,
            Trigger::Schedule
        );
        let not_yet = TriggerFacts {
            schedule_anchor: Some(at("2026-11-26T04:00:00Z")),
            ..Default::default()
        };
        assert_eq!(fired(&s, &timing(&s), &not_yet, now), None);
        let manual = TriggerFacts {
            manual: true,
            accuracy: Some(0.1),
            ..Default::default()
        };
        assert_eq!(
            fired(&s, &timing(&s), &manual, now).unwrap().0,
            Trigger::Manual
        );
    }

    #[test]
    fn cooldown_then_budget() {
        let s = spec(RetrainingTriggers::default());
        let now = at("2026-11-26T12:00:00Z");
        assert_eq!(gate(&s, &timing(&s), &[], now), Gate::Open);
        assert_eq!(
            gate(&s, &timing(&s), &[attempt("2026-11-26T10:00:00Z")], now),
            Gate::Cooldown {
                until: at("2026-11-26T16:00:00Z")
            }
        );
        let three = [
            attempt("2026-11-25T13:00:00Z"),
            attempt("2026-11-25T19:00:00Z"),
            attempt("2026-11-26T01:00:00Z"),
        ];
        assert_eq!(
            gate(&s, &timing(&s), &three, now),
            Gate::Budget {
                until: at("2026-11-26T13:00:00Z")
            }
        );
        assert_eq!(
            gate(&s, &timing(&s), &three, at("2026-11-26T13:00:01Z")),
            Gate::Open
        );
    }
}
