//! The independent rollout model: built from the decisions' lifecycle events alone, it checks
//! that a step (or the shadow phase) is left only through its gate, that promotion is earned,
//! and that it agrees with the status.

use std::collections::BTreeMap;

use super::strategies::stage_metrics;
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Shadow,
    /// The experiment (A/B) phase.
    Experiment,
    Step(usize),
    /// Promoted, waiting for the new stable.
    Done,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counters {
    failed: i32,
    inconclusive: i32,
    consecutive_errors: i32,
}

#[derive(Debug, Clone)]
pub(super) struct Rollout {
    source: Option<CandidateSource>,
    evaluation_passed: bool,
    shadow_passed: bool,
    experiment_passed: bool,
    steps_passed: usize,
    stage: Stage,
    stage_started: Timestamp,
    measurements: i32,
    metrics: BTreeMap<String, Counters>,
}

impl Rollout {
    /// A rollout of a candidate from `source`, starting in `stage`.
    fn start(source: Option<CandidateSource>, stage: Stage, now: Timestamp) -> Self {
        Rollout {
            source,
            evaluation_passed: source == Some(CandidateSource::Retraining),
            shadow_passed: false,
            experiment_passed: false,
            steps_passed: 0,
            stage,
            stage_started: now,
            measurements: 0,
            metrics: BTreeMap::new(),
        }
    }

    fn enter(&mut self, stage: Stage, now: Timestamp) {
        self.stage = stage;
        self.restart(now);
    }

    fn restart(&mut self, now: Timestamp) {
        self.stage_started = now;
        self.measurements = 0;
        self.metrics.clear();
    }

    fn record(&mut self, round: &[MetricMeasurement]) {
        self.measurements += 1;
        for m in round {
            let c = self.metrics.entry(m.name.clone()).or_default();
            match m.verdict {
                Verdict::Failed => c.failed += 1,
                Verdict::Inconclusive => c.inconclusive += 1,
                _ => {}
            }
            if m.verdict == Verdict::Error {
                c.consecutive_errors += 1;
            } else {
                c.consecutive_errors = 0;
            }
        }
    }

    /// Whether the current shadow phase or step may be left upward now.
    fn gate(
        &self,
        now: Timestamp,
        minimum: Duration,
        analysis: Option<&AnalysisSpec>,
        metrics: &[AnalysisMetric],
        candidate_ready: bool,
    ) -> Result<(), String> {
        if !candidate_ready {
            return Err("left while the candidate was not ready".into());
        }
        let age = since(now, self.stage_started);
        if age < minimum {
            return Err(format!(
                "left after {age:?}, before its duration {minimum:?}"
            ));
        }
        if let Some(a) = analysis {
            if self.measurements < a.count.max(1) {
                return Err(format!(
                    "left after {} measurements, count is {}",
                    self.measurements, a.count
                ));
            }
            for m in metrics {
                let c = self.metrics.get(&m.name).cloned().unwrap_or_default();
                if c.failed > m.failure_limit
                    || c.inconclusive > m.inconclusive_limit
                    || c.consecutive_errors > m.consecutive_error_limit
                {
                    return Err(format!("left with metric {} past a limit: {c:?}", m.name));
                }
            }
        }
        Ok(())
    }
}

/// Lifecycle events the model follows (conditions' events are ignored).
const LIFECYCLE: &[EventReason] = &[
    EventReason::CandidateFromRegistry,
    EventReason::Retry,
    EventReason::EvaluationPassed,
    EventReason::ShadowStarted,
    EventReason::ShadowPassed,
    EventReason::ExperimentStarted,
    EventReason::ExperimentPassed,
    EventReason::StepStarted,
    EventReason::Resumed,
    EventReason::ManualPromotion,
    EventReason::Promoted,
    EventReason::PromotionComplete,
    EventReason::RolledBack,
];

#[derive(Debug, Default, Clone)]
pub(super) struct Stats {
    pub(super) ticks: usize,
    pub(super) rollouts: usize,
    pub(super) steps_left: usize,
    /// Shadow phases and steps left through a checked analysis gate.
    pub(super) analysed: usize,
    pub(super) promotions: usize,
    pub(super) rollbacks: usize,
    pub(super) attempts: usize,
    /// Experiments that passed their gate.
    pub(super) experiments: usize,
}

/// What a story checks beyond "no panic" and the traffic invariants.
#[derive(Debug, Clone, Copy)]
pub(super) struct Checks {
    /// Step order, analysis gates and promotion gates (no manual promote in the story).
    pub(super) gates: bool,
    /// Decide every tick twice and compare.
    pub(super) determinism: bool,
}

fn in_rollout(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Shadow | Phase::Experimenting | Phase::Progressing | Phase::Promoted
    )
}

impl Story<'_> {
    /// Follows the decision's lifecycle events in order with the independent rollout model.
    pub(super) fn follow(
        &mut self,
        pre: &ModelDeploymentStatus,
        decision: &Decision,
        round: Option<&[MetricMeasurement]>,
        candidate_ready: bool,
        manual_tick: bool,
    ) -> Result<(), String> {
        let spec = self.harness.spec();
        let post = &decision.status;
        let now = self.harness.now();
        let strict = self.checks.gates;
        let analysis = spec.rollout.analysis.as_ref();
        let steps = spec.rollout.steps.len();
        let timing = &self.valid()?.timing;
        let step_duration = timing.rollout.step_duration;
        let shadow_duration = timing.shadow_duration;
        let experiment_duration = timing.experiment.unwrap_or_default();

        // The phase function runs first (no manual event on a tick with measurements).
        if let (Some(r), Some(round)) = (self.rollout.as_mut(), round)
            && analysis.is_some()
            && !pre.paused
            && candidate_ready
            && matches!(
                pre.phase,
                Phase::Shadow | Phase::Experimenting | Phase::Progressing
            )
        {
            ensure!(!manual_tick, "measurements were delivered on a manual tick");
            r.record(round);
        }

        let mut source = None;
        let mut manual_promotion = false;
        let mut shadow_passed_now = false;
        let mut experiment_passed_now = false;
        let lifecycle_events = decision.events.iter().filter_map(|e| match e.reason {
            EventCause::Lifecycle(reason) if LIFECYCLE.contains(&reason) => Some(reason),
            _ => None,
        });
        for reason in lifecycle_events {
            match reason {
                EventReason::CandidateFromRegistry => source = Some(CandidateSource::Registry),
                EventReason::Retry => source = Some(CandidateSource::Retry),
                EventReason::EvaluationPassed => source = Some(CandidateSource::Retraining),
                EventReason::ManualPromotion => manual_promotion = true,
                EventReason::ShadowStarted => {
                    ensure!(
                        self.rollout.is_none(),
                        "a shadow phase started inside a rollout"
                    );
                    self.stats.rollouts += 1;
                    self.rollout = Some(Rollout::start(source, Stage::Shadow, now));
                }
                EventReason::ShadowPassed => {
                    let Some(r) = self.rollout.as_mut() else {
                        return fail("ShadowPassed outside a rollout".into());
                    };
                    ensure!(
                        r.stage == Stage::Shadow,
                        "ShadowPassed in stage {:?}",
                        r.stage
                    );
                    r.gate(
                        now,
                        shadow_duration,
                        analysis,
                        &stage_metrics(spec, AnalysisStage::Shadow),
                        candidate_ready,
                    )
                    .map_err(|e| format!("shadow {e}"))?;
                    self.stats.analysed += usize::from(strict && analysis.is_some());
                    r.shadow_passed = true;
                    shadow_passed_now = true;
                }
                EventReason::ExperimentStarted => {
                    let Some(r) = self.rollout.as_mut() else {
                        // Without shadow, the experiment is where a rollout starts.
                        self.stats.rollouts += 1;
                        self.rollout = Some(Rollout::start(source, Stage::Experiment, now));
                        continue;
                    };
                    ensure!(
                        r.stage == Stage::Shadow,
                        "an experiment started in stage {:?}",
                        r.stage
                    );
                    ensure!(
                        !strict || shadow_passed_now,
                        "the shadow phase ended without passing"
                    );
                    r.enter(Stage::Experiment, now);
                }
                EventReason::ExperimentPassed => {
                    let Some(r) = self.rollout.as_mut() else {
                        return fail("ExperimentPassed outside a rollout".into());
                    };
                    ensure!(
                        r.stage == Stage::Experiment,
                        "ExperimentPassed in stage {:?}",
                        r.stage
                    );
                    r.gate(
                        now,
                        experiment_duration,
                        analysis,
                        &stage_metrics(spec, AnalysisStage::Canary),
                        candidate_ready,
                    )
                    .map_err(|e| format!("experiment {e}"))?;
                    self.stats.analysed += usize::from(strict && analysis.is_some());
                    r.experiment_passed = true;
                    experiment_passed_now = true;
                    self.stats.experiments += 1;
                }
                EventReason::StepStarted => match self.rollout.as_mut() {
                    None => {
                        self.stats.rollouts += 1;
                        self.rollout = Some(Rollout::start(source, Stage::Step(0), now));
                    }
                    Some(r) => {
                        match r.stage {
                            Stage::Shadow => {
                                ensure!(
                                    !strict || shadow_passed_now,
                                    "the shadow phase ended without passing"
                                );
                                ensure!(
                                    !strict || self.params.experiment().is_none(),
                                    "the steps started without the experiment"
                                );
                            }
                            Stage::Experiment => {
                                ensure!(
                                    !strict || experiment_passed_now,
                                    "the experiment ended without passing"
                                );
                            }
                            Stage::Step(i) => {
                                if strict {
                                    ensure!(
                                        !manual_promotion,
                                        "manual promotion in a strict story"
                                    );
                                    r.gate(
                                        now,
                                        step_duration,
                                        analysis,
                                        &stage_metrics(spec, AnalysisStage::Canary),
                                        candidate_ready,
                                    )
                                    .map_err(|e| format!("step {i} {e}"))?;
                                    self.stats.analysed +=
                                        usize::from(strict && analysis.is_some());
                                }
                                r.steps_passed += 1;
                                self.stats.steps_left += 1;
                            }
                            Stage::Done => return fail("a step started after promotion".into()),
                        }
                        let next = match r.stage {
                            Stage::Step(i) => i + 1,
                            _ => 0,
                        };
                        ensure!(next < steps, "step index {next} past the {steps} steps");
                        r.enter(Stage::Step(next), now);
                    }
                },
                EventReason::Resumed => {
                    if let Some(r) = self.rollout.as_mut() {
                        r.restart(now);
                    }
                }
                EventReason::Promoted => {
                    let Some(r) = self.rollout.as_mut() else {
                        return fail("Promoted outside a rollout".into());
                    };
                    if strict {
                        ensure!(
                            r.stage == Stage::Step(steps - 1),
                            "promoted from {:?}",
                            r.stage
                        );
                        r.gate(
                            now,
                            step_duration,
                            analysis,
                            &stage_metrics(spec, AnalysisStage::Canary),
                            candidate_ready,
                        )
                        .map_err(|e| format!("last step {e}"))?;
                        self.stats.analysed += usize::from(strict && analysis.is_some());
                        r.steps_passed += 1;
                        ensure!(
                            r.steps_passed == steps,
                            "promoted after {} of {steps} steps",
                            r.steps_passed
                        );
                        ensure!(
                            !self.params.shadow_runs() || r.shadow_passed,
                            "promoted without a passed shadow phase"
                        );
                        ensure!(
                            self.params.experiment().is_none() || r.experiment_passed,
                            "promoted without a passed experiment"
                        );
                        if r.source == Some(CandidateSource::Retraining) {
                            ensure!(
                                r.evaluation_passed,
                                "a retrained candidate promoted without EvaluationPassed"
                            );
                            ensure!(
                                post.evaluation.as_ref().is_some_and(|e| e.passed),
                                "a retrained candidate promoted with evaluation {:?}",
                                post.evaluation
                            );
                        }
                    }
                    r.enter(Stage::Done, now);
                    self.stats.promotions += 1;
                }
                EventReason::PromotionComplete => {
                    ensure!(
                        self.rollout
                            .as_ref()
                            .is_some_and(|r| r.stage == Stage::Done),
                        "PromotionComplete without a promotion"
                    );
                    self.rollout = None;
                }
                EventReason::RolledBack => {
                    self.rollout = None;
                    self.stats.rollbacks += 1;
                }
                _ => {}
            }
        }

        self.check_model_against(post)
    }

    /// The model and the status agree; the recorded analysis is what was measured.
    fn check_model_against(&self, post: &ModelDeploymentStatus) -> Result<(), String> {
        let spec = self.harness.spec();
        let analysis = spec.rollout.analysis.as_ref();
        // The model and the status agree.
        match (post.phase, self.rollout.as_ref()) {
            (Phase::Shadow, Some(r)) => ensure!(
                r.stage == Stage::Shadow,
                "Shadow but model at {:?}",
                r.stage
            ),
            (Phase::Experimenting, Some(r)) => {
                ensure!(
                    r.stage == Stage::Experiment,
                    "Experimenting but model at {:?}",
                    r.stage
                );
                ensure!(
                    post.canary_weight == 0 && post.mirror_percent == 0,
                    "an experiment at weight {} mirror {}",
                    post.canary_weight,
                    post.mirror_percent
                );
            }
            (Phase::Progressing, Some(r)) => {
                let i = post.current_step.unwrap_or(-1);
                ensure!(
                    r.stage == Stage::Step(i as usize),
                    "step {i} but model at {:?}",
                    r.stage
                );
                ensure!(
                    spec.rollout.steps.get(i as usize) == Some(&post.canary_weight),
                    "step {i} at weight {}",
                    post.canary_weight
                );
            }
            (Phase::Promoted, Some(r)) => {
                ensure!(
                    r.stage == Stage::Done,
                    "Promoted but model at {:?}",
                    r.stage
                );
                ensure!(
                    post.canary_weight == 100,
                    "Promoted at weight {}",
                    post.canary_weight
                );
            }
            (phase, None) if !in_rollout(phase) => {
                ensure!(
                    post.canary_weight == 0 && post.mirror_percent == 0,
                    "{phase:?} with traffic on the candidate"
                );
            }
            (phase, r) => return fail(format!("phase {phase:?} but model {r:?}")),
        }
        // The recorded analysis is what was measured.
        if let (Some(r), Some(_)) = (self.rollout.as_ref(), analysis)
            && matches!(
                post.phase,
                Phase::Shadow | Phase::Experimenting | Phase::Progressing
            )
        {
            let recorded = post.analysis.clone().unwrap_or_default();
            ensure!(
                recorded.measurements == r.measurements,
                "status has {} measurements, the model {}",
                recorded.measurements,
                r.measurements
            );
            for m in &recorded.metrics {
                let c = r.metrics.get(&m.name).cloned().unwrap_or_default();
                let s = Counters {
                    failed: m.failed,
                    inconclusive: m.inconclusive,
                    consecutive_errors: m.consecutive_errors,
                };
                ensure!(s == c, "metric {}: status {s:?}, model {c:?}", m.name);
            }
        }
        Ok(())
    }
}
