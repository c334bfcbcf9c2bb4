//! Examples and properties of [`plan`]: the route moves to a variant only with the ready
//! replicas for its share, never past the lifecycle's step, and a rollback ends at 100 %
//! stable with stable at full size.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use proptest::prelude::*;

use super::*;

const R: i32 = 10;
const DEADLINE: Duration = Duration::from_secs(600);

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

fn deployment(version: &str, ready: i32) -> DeploymentState {
    DeploymentState {
        desired_replicas: ready,
        ready_replicas: ready,
        updated: true,
        version: Some(version.into()),
    }
}

fn target(candidate: Option<&str>, weight: i32) -> DesiredTraffic {
    DesiredTraffic {
        candidate_version: candidate.map(String::from),
        canary_weight: weight,
        mirror_percent: 0,
        stable_version: Some("1".into()),
        experiment: false,
    }
}

fn routed(candidate: Option<&str>, weight: i32) -> RoutedTraffic {
    RoutedTraffic {
        candidate_version: candidate.map(String::from),
        candidate_weight: weight,
        ..RoutedTraffic::default()
    }
}

/// One plan: stable runs version "1", the candidate version "2".
fn run(
    phase: Phase,
    target: &DesiredTraffic,
    previous: Option<&RoutedTraffic>,
    stable_ready: i32,
    candidate_ready: Option<i32>,
    now: Timestamp,
) -> Plan {
    let stable = deployment("1", stable_ready);
    let candidate = candidate_ready.map(|ready| deployment("2", ready));
    plan(&PlanInput {
        replicas: R,
        phase,
        target,
        stable_version: Some("1"),
        previous,
        stable: Some(&stable),
        candidate: candidate.as_ref(),
        now,
        progress_deadline: DEADLINE,
    })
}

#[test]
fn needed_rounds_up() {
    assert_eq!(needed(10, 0), 0);
    assert_eq!(needed(10, 1), 1);
    assert_eq!(needed(10, 10), 1);
    assert_eq!(needed(10, 11), 2);
    assert_eq!(needed(10, 100), 10);
    assert_eq!(needed(3, 50), 2);
    assert_eq!(needed(0, 50), 0);
}

#[test]
fn a_step_moves_the_route_only_once_the_candidate_has_its_replicas() {
    let step = target(Some("2"), 50);
    let from = routed(Some("2"), 10);
    // The candidate scales to its new share first; stable keeps its replicas.
    let waiting = run(Phase::Progressing, &step, Some(&from), 9, Some(2), at(0));
    assert_eq!(waiting.traffic.canary_weight, 10);
    assert_eq!(
        (waiting.stable_replicas, waiting.candidate_replicas),
        (9, 5)
    );
    assert!(waiting.moving);
    assert!(
        waiting
            .routed
            .message
            .as_deref()
            .unwrap()
            .contains("5 ready replicas for 50%")
    );
    // Five ready: the route moves; stable shrinks one decision later.
    let moved = run(
        Phase::Progressing,
        &step,
        Some(&waiting.routed),
        9,
        Some(5),
        at(30),
    );
    assert_eq!(moved.traffic.canary_weight, 50);
    assert_eq!((moved.stable_replicas, moved.candidate_replicas), (9, 5));
    assert_eq!(moved.routed.waiting_since, None);
    let settled = run(
        Phase::Progressing,
        &step,
        Some(&moved.routed),
        9,
        Some(5),
        at(60),
    );
    assert_eq!(settled.traffic.canary_weight, 50);
    assert_eq!(
        (settled.stable_replicas, settled.candidate_replicas),
        (5, 5)
    );
    assert!(!settled.moving);
}

#[test]
fn a_rollback_scales_stable_up_before_traffic_returns_to_it() {
    let back = target(None, 0);
    let from = routed(Some("2"), 90);
    // Stable has 1 of 10 ready: the candidate keeps its 90 %.
    let held = run(Phase::RolledBack, &back, Some(&from), 1, Some(9), at(0));
    assert_eq!(held.traffic, target(Some("2"), 90));
    assert_eq!((held.stable_replicas, held.candidate_replicas), (R, 9));
    // Stable's ready replicas take their share back, never more.
    let partly = run(
        Phase::RolledBack,
        &back,
        Some(&held.routed),
        6,
        Some(9),
        at(20),
    );
    assert_eq!(partly.traffic.canary_weight, 40);
    let drained = run(
        Phase::RolledBack,
        &back,
        Some(&partly.routed),
        10,
        Some(9),
        at(40),
    );
    assert_eq!(
        drained.traffic,
        target(Some("2"), 0),
        "the candidate goes after the route"
    );
    let done = run(
        Phase::RolledBack,
        &back,
        Some(&drained.routed),
        10,
        Some(9),
        at(60),
    );
    assert_eq!(done.traffic, target(None, 0));
    assert_eq!(done.stable_replicas, R);
    assert!(!done.moving);
    assert_eq!(done.routed, routed(None, 0));
}

#[test]
fn a_stable_that_never_gets_ready_is_reported_once_and_traffic_stays() {
    let back = target(None, 0);
    let mut previous = routed(Some("2"), 50);
    let mut events = 0;
    for minute in 0..30 {
        let plan = run(
            Phase::RolledBack,
            &back,
            Some(&previous),
            2,
            Some(5),
            at(minute * 60),
        );
        assert_eq!(plan.traffic.canary_weight, 50);
        events += usize::from(plan.deadline_exceeded.is_some());
        previous = plan.routed;
    }
    assert_eq!(events, 1);
    let message = previous.message.unwrap();
    assert!(
        message.starts_with("progress deadline exceeded"),
        "{message}"
    );
    assert!(message.contains("2 of 10 ready"), "{message}");
}

#[test]
fn the_shadow_candidate_is_sized_for_its_mirror_and_promotion_runs_both_at_full_size() {
    let shadow = DesiredTraffic {
        mirror_percent: 30,
        ..target(Some("2"), 0)
    };
    let plan = run(Phase::Shadow, &shadow, None, 10, None, at(0));
    assert_eq!((plan.stable_replicas, plan.candidate_replicas), (10, 3));
    assert_eq!(plan.traffic, shadow);

    // The last step at 100 %: stable keeps one warm replica.
    let last = run(
        Phase::Progressing,
        &target(Some("2"), 100),
        Some(&routed(Some("2"), 100)),
        1,
        Some(10),
        at(0),
    );
    assert_eq!((last.stable_replicas, last.candidate_replicas), (1, 10));
    let promoted = run(
        Phase::Promoted,
        &target(Some("2"), 100),
        Some(&last.routed),
        1,
        Some(10),
        at(10),
    );
    assert_eq!(
        (promoted.stable_replicas, promoted.candidate_replicas),
        (10, 10)
    );
    assert_eq!(promoted.traffic.canary_weight, 100);
}

#[test]
fn a_new_candidate_waits_for_the_old_one_to_drain() {
    let new = target(Some("3"), 10);
    let old = routed(Some("2"), 50);
    let plan = run(Phase::Progressing, &new, Some(&old), 5, Some(5), at(0));
    assert_eq!(plan.traffic.candidate_version.as_deref(), Some("2"));
    assert_eq!(plan.traffic.canary_weight, 50);
    assert_eq!(plan.stable_replicas, R);
}

// -- Properties ---------------------------------------------------------------------------

/// A simulated Deployment: desired replicas, and ready ones that catch up by random amounts
/// (scale-downs are immediate).
#[derive(Debug, Clone, Default)]
struct Sim {
    version: Option<String>,
    desired: i32,
    ready: i32,
}

impl Sim {
    fn follow(&mut self, version: Option<&str>, desired: i32, progress: i32) {
        if self.version.as_deref() != version {
            self.version = version.map(String::from);
            self.ready = 0;
        }
        self.desired = desired;
        self.ready = (self.ready + progress).min(desired);
    }

    fn state(&self) -> Option<DeploymentState> {
        self.version.as_ref().map(|v| deployment(v, self.ready))
    }
}

/// What a story does at one tick.
#[derive(Debug, Clone, Copy)]
enum Move {
    /// The lifecycle advances a step (only when the route carries the current one).
    Advance,
    Rollback,
    Wait,
}

fn moves() -> impl Strategy<Value = Vec<(Move, i32, i32)>> {
    let one = (
        prop_oneof![4 => Just(Move::Advance), 1 => Just(Move::Rollback), 3 => Just(Move::Wait)],
        0..4i32,
        0..4i32,
    );
    proptest::collection::vec(one, 1..60)
}

fn steps() -> impl Strategy<Value = Vec<i32>> {
    proptest::collection::btree_set(1..100i32, 0..4).prop_map(|set| {
        let mut steps: Vec<i32> = set.into_iter().collect();
        steps.push(100);
        steps
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// At every decision: the route moves only between its last split and the lifecycle's
    /// weight, a variant gains traffic only with the ready replicas for its new share, and both
    /// variants keep the replicas for what they carry. A rollback ends with everything on
    /// stable at full size once its pods are ready.
    #[test]
    fn the_route_never_outruns_ready_capacity(
        replicas in 1..12i32,
        steps in steps(),
        story in moves(),
    ) {
        let (mut stable, mut candidate) = (Sim::default(), Sim::default());
        stable.follow(Some("1"), replicas, replicas);
        let mut step: Option<usize> = Some(0);
        // Before the rollout: stable has everything.
        let mut previous: Option<RoutedTraffic> = Some(routed(None, 0));
        let mut now = 0;
        let decide = |step: Option<usize>, previous: &Option<RoutedTraffic>,
                          stable: &Sim, candidate: &Sim, now: i64| {
            let (phase, wanted) = match step {
                Some(index) => (Phase::Progressing, target(Some("2"), steps[index])),
                None => (Phase::RolledBack, target(None, 0)),
            };
            let (s, c) = (stable.state(), candidate.state());
            let plan = plan(&PlanInput {
                replicas,
                phase,
                target: &wanted,
                stable_version: Some("1"),
                previous: previous.as_ref(),
                stable: s.as_ref(),
                candidate: c.as_ref(),
                now: at(now),
                progress_deadline: DEADLINE,
            });
            (wanted, plan)
        };
        let mut rolled_back = false;
        for (action, stable_progress, candidate_progress) in story {
            let routed_at_target = previous.as_ref().is_some_and(|p| {
                step.is_some_and(|i| p.candidate_weight == steps[i])
            });
            match action {
                Move::Advance if !rolled_back && routed_at_target => {
                    step = step.map(|i| (i + 1).min(steps.len() - 1));
                }
                Move::Rollback => {
                    step = None;
                    rolled_back = true;
                }
                _ => {}
            }
            now += 15;
            let (wanted, plan) = decide(step, &previous, &stable, &candidate, now);
            let p = previous.as_ref().map_or(wanted.canary_weight, |p| p.candidate_weight);
            let r = plan.traffic.canary_weight;
            let t = wanted.canary_weight;
            // Between the last split and the target: never past the step.
            prop_assert!(r >= p.min(t) && r <= p.max(t), "r={r} p={p} t={t}");
            // A variant gains traffic only with the ready replicas for it.
            if r > p {
                prop_assert!(candidate.ready >= needed(replicas, r), "{r}% on {candidate:?}");
            }
            if r < p {
                prop_assert!(stable.ready >= needed(replicas, 100 - r), "{r}% on {stable:?}");
            }
            // Both keep the replicas for what they carry.
            prop_assert!(plan.stable_replicas >= needed(replicas, 100 - r).max(1));
            if plan.traffic.has_candidate() {
                prop_assert!(plan.candidate_replicas >= needed(replicas, r).max(1));
            }
            stable.follow(Some("1"), plan.stable_replicas, stable_progress);
            let version = plan.traffic.candidate_version.as_deref();
            candidate.follow(version, if version.is_some() { plan.candidate_replicas } else { 0 }, candidate_progress);
            previous = Some(plan.routed);
        }
        if rolled_back {
            // The pods get ready eventually: the rollback completes.
            for _ in 0..(2 * replicas + 4) {
                now += 15;
                let (_, plan) = decide(None, &previous, &stable, &candidate, now);
                stable.follow(Some("1"), plan.stable_replicas, 1);
                let version = plan.traffic.candidate_version.as_deref();
                candidate.follow(version, plan.candidate_replicas, 1);
                previous = Some(plan.routed);
            }
            let (_, plan) = decide(None, &previous, &stable, &candidate, now + 15);
            prop_assert_eq!(plan.traffic, target(None, 0));
            prop_assert_eq!(plan.stable_replicas, replicas);
            prop_assert!(!plan.moving);
        }
    }
}
