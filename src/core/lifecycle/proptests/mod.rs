//! Property tests of the lifecycle invariants (see the module doc), driven through the whole
//! decision ([`crate::core::decide::decide`]) so the traffic objects are checked too.
//!
//! A random spec and a random story (drift checks, Job states, lineage lookups, evaluation
//! metrics, measurements, readiness, registry outages and hand-moved aliases, manual requests,
//! a clock advancing by random ticks) are replayed on the simulated shell
//! ([`crate::simulate::Harness`]): observations are only taken when [`wants`] asks for them,
//! and registry writes are applied (or not) after each decision. An independent model of each
//! rollout is built from the decisions' events and checked against the status.
//!
//! - [`strategies`]: random specs and random stories;
//! - [`story`]: a story played through the harness, tick by tick;
//! - [`model`]: the independent rollout model and the gates it checks;
//! - [`traffic`]: the traffic invariants of every decision (routes, rollbacks, weight moves);
//! - [`arbitrary`]: arbitrary (schema-valid) statuses and observations;
//! - here: the properties.

// Random-input strategies and the rollout model read best as whole functions.
#![allow(clippy::too_many_lines)]

use std::cell::Cell;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

// The vocabulary every file below shares (each one starts with `use super::*`).
use super::*;
use crate::api::{
    AnalysisMetric, AnalysisSpec, AttemptOutcome, CandidateSource, EventReason,
    ModelDeploymentSpec, ModelDeploymentStatus, Phase, Reason, RegistryOp, RolloutOutcome,
    RolloutReason, Severity, TrafficProvider,
};
use crate::core::decide::{Child, Decision, EventCause, Observed};
use crate::core::verdict::{AnalysisStage, MetricMeasurement, Verdict};
use crate::registry::{RegistryError, ResolvedModel};
use crate::simulate::{Harness, Identity, Readiness};

const NAME: &str = "fraud";
const UID: &str = "0123456789abcdef";
const T0: i64 = 1_800_000_000;
const MAX_TICKS: usize = 60;

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Never write regression files into the source tree.
        failure_persistence: None,
        ..Config::default()
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(T0 + seconds).unwrap()
}

fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or(Duration::ZERO)
}

/// The resource the stories reconcile.
fn identity() -> Identity {
    Identity {
        name: NAME.into(),
        namespace: "ml".into(),
        uid: UID.into(),
        generation: 1,
    }
}

fn fail<T>(message: String) -> Result<T, String> {
    Err(message)
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return fail(format!($($arg)+));
        }
    };
}

// After `ensure!`: the modules below use it.
mod arbitrary;
mod gitops;
mod model;
mod story;
mod strategies;
mod traffic;

use arbitrary::{arbitrary_observations, arbitrary_status};
use model::{Checks, Stats};
use story::Story;
use strategies::{spec_params, story};

fn run_stories(name: &str, cases: u32, allow_promote: bool, checks: Checks) {
    let total = Cell::new(Stats::default());
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&story(allow_promote), |(params, ticks)| {
        let stats = Story::new(&params, checks)
            .play(&ticks)
            .map_err(TestCaseError::fail)?;
        let mut t = total.take();
        t.ticks += stats.ticks;
        t.rollouts += stats.rollouts;
        t.steps_left += stats.steps_left;
        t.analysed += stats.analysed;
        t.promotions += stats.promotions;
        t.rollbacks += stats.rollbacks;
        t.attempts += stats.attempts;
        t.experiments += stats.experiments;
        total.set(t);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let t = total.take();
    eprintln!(
        "{name}: {cases} cases, {} ticks, {} rollouts, {} steps left ({} through a checked analysis), {} promotions, {} rollbacks, {} attempts, {} experiments passed",
        t.ticks,
        t.rollouts,
        t.steps_left,
        t.analysed,
        t.promotions,
        t.rollbacks,
        t.attempts,
        t.experiments
    );
    // The stories reach the interesting phases (otherwise the properties hold vacuously).
    assert!(
        t.rollouts > 0
            && t.promotions > 0
            && t.rollbacks > 0
            && t.experiments > 0
            && (!checks.gates || t.analysed > 0),
        "{name}: weak coverage {t:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Weights sum to 100, the candidate weight is status.canaryWeight and a configured step,
/// the model of each rollout matches the status, rollbacks end on stable: with every manual
/// request, promote included.
#[test]
fn traffic_invariants_hold_with_any_manual_request() {
    run_stories(
        "traffic",
        192,
        true,
        Checks {
            gates: false,
            determinism: false,
        },
    );
}

/// Without manual promotion: the weight moves up one step at a time, a step (and the shadow
/// phase) is left only after its duration, with a ready candidate and, when analysis is
/// configured, `count` measurements and no limit exceeded; promotion needs a passed evaluation
/// (retrained candidates), a passed shadow (when it runs) and every step.
#[test]
fn steps_and_promotion_are_earned() {
    run_stories(
        "gates",
        256,
        false,
        Checks {
            gates: true,
            determinism: false,
        },
    );
}

/// The same (spec, status, observations, now) gives the same decision.
#[test]
fn decisions_are_deterministic() {
    run_stories(
        "determinism",
        64,
        true,
        Checks {
            gates: false,
            determinism: true,
        },
    );
}

// ---------------------------------------------------------------------------------------------
// No panic on arbitrary (schema-valid) statuses and observations
// ---------------------------------------------------------------------------------------------

/// `step`, `wants` and `decide` never panic on any schema-valid status and observations,
/// and what they decide keeps the traffic invariants.
#[test]
fn no_panic_on_arbitrary_status_and_observations() {
    let mut runner = TestRunner::new(config(512));
    let strategy = (
        spec_params(),
        arbitrary_status(),
        arbitrary_observations(),
        -100_000i64..100_000,
    );
    let result = runner.run(&strategy, |(params, status, observed, offset)| {
        let now = at(offset);
        let readiness = Readiness::Scripted {
            stable: observed.stable_ready,
            candidate: observed.candidate_ready,
        };
        let mut harness =
            Harness::new(identity(), params.spec(), readiness).resuming(status.clone());
        harness.advance_to(now);
        let Ok(spec) = harness.validated() else {
            return Err(TestCaseError::fail(format!(
                "invalid spec: {:?}",
                harness.validated()
            )));
        };
        let _ = wants(spec, &status, now);
        let out = step(StepInput {
            name: NAME,
            uid: UID,
            generation: Some(1),
            spec,
            status: &status,
            observed: &observed,
            now,
        });
        let _ = wants(spec, &out.status, now);
        // Any served version, even one no registry would hold.
        let served = observed
            .served_version
            .clone()
            .map(|version| ResolvedModel {
                version,
                run_id: None,
            })
            .ok_or(RegistryError::Unavailable("down".into()).into());
        let decision = harness.decide(Observed {
            served,
            ..harness.observed(observed.clone())
        });
        gitops::check_gitops_conditions(&decision).map_err(TestCaseError::fail)?;
        // Whatever the status said, a rollback leaves nothing on the candidate.
        if decision
            .events
            .iter()
            .any(|e| e.reason == EventCause::Lifecycle(EventReason::RolledBack))
        {
            prop_assert_eq!(decision.status.canary_weight, 0);
            prop_assert_eq!(decision.status.mirror_percent, 0);
            prop_assert_eq!(decision.status.candidate_version.as_deref(), None);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
