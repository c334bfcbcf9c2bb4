//! A story played through the simulated shell, tick by tick: the world is scripted from the
//! random [`Tick`]s, each decision is checked by the model and the traffic invariants, then
//! applied.

use std::collections::BTreeMap;

use super::model::Rollout;
use super::strategies::{Manual, SpecParams, Tick, stage_metrics, verdict};
use super::traffic::check_traffic;
use super::*;
use crate::api::PauseReason;
use crate::api::validation::ValidatedSpec;
use crate::registry::LINEAGE_TAG;

/// A random story played through the simulated shell ([`Harness`]): the story scripts the
/// world (registry outages and hand-moved aliases, manual requests, drift, Jobs, lookups,
/// evaluation metrics, measurements, readiness, failing registry writes) and follows every
/// decision with the independent rollout model.
pub(super) struct Story<'a> {
    pub(super) params: &'a SpecParams,
    /// The simulated cluster and registry around the core.
    pub(super) harness: Harness,
    pub(super) checks: Checks,
    /// The next version number the registry hands out.
    next_version: u64,
    /// Rows in the current data (for the `newSamples` trigger).
    rows: i64,
    pause_annotation: bool,
    pub(super) rollout: Option<Rollout>,
    pub(super) stats: Stats,
}

impl<'a> Story<'a> {
    pub(super) fn new(params: &'a SpecParams, checks: Checks) -> Self {
        let readiness = Readiness::Scripted {
            stable: false,
            candidate: false,
        };
        let harness = Harness::new(identity(), params.spec(), readiness);
        harness.register(3, &BTreeMap::new(), &[]);
        harness.set_alias(&harness.spec().model.alias, 3);
        Story {
            params,
            harness,
            checks,
            next_version: 4,
            rows: 100_000,
            pause_annotation: false,
            rollout: None,
            stats: Stats::default(),
        }
    }

    pub(super) fn spec(&self) -> &ModelDeploymentSpec {
        self.harness.spec()
    }

    pub(super) fn valid(&self) -> Result<&ValidatedSpec, String> {
        self.harness
            .validated()
            .as_ref()
            .map_err(|problems| format!("the generated spec is invalid: {problems:?}"))
    }

    pub(super) fn play(&mut self, ticks: &[Tick]) -> Result<Stats, String> {
        // The first reconcile adopts the served version as stable.
        self.harness.advance_to(at(0));
        self.harness.reconcile(Observations::default());
        let status = self.harness.status();
        if status.phase != Phase::Stable || status.stable_version.as_deref() != Some("3") {
            return fail(format!(
                "first reconcile did not adopt version 3: {:?}",
                status.phase
            ));
        }
        for (i, tick) in ticks.iter().enumerate() {
            self.tick(i, tick).map_err(|e| {
                format!("tick {i} at +{}s: {e}", self.harness.now().as_second() - T0)
            })?;
        }
        Ok(self.stats.clone())
    }

    fn tick(&mut self, index: usize, t: &Tick) -> Result<(), String> {
        let now = self
            .harness
            .now()
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(
                t.advance as i64,
            ))
            .unwrap();
        let pre = self.harness.status().clone();
        self.script_registry(t);
        let manual_tick = self.script_annotations(index, t, &pre);
        self.harness.set_readiness(Readiness::Scripted {
            stable: t.stable_ready,
            candidate: t.candidate_ready,
        });
        self.harness.advance_to(now);
        self.valid()?;
        let candidate_ready = self.harness.candidate_ready();
        let (observations, round) = self.observations(t, candidate_ready, manual_tick);
        let observed = self.harness.observed(observations);
        let decision = self.harness.decide(observed.clone());
        if self.checks.determinism {
            let again = self.harness.decide(observed.clone());
            ensure!(again == decision, "the same input decided differently");
            let step_input = StepInput {
                name: NAME,
                uid: UID,
                generation: Some(1),
                spec: self.valid()?,
                status: &pre,
                observed: &observed.lifecycle,
                now,
            };
            ensure!(
                step(step_input.clone()) == step(step_input),
                "step is not deterministic"
            );
        }
        self.stats.ticks += 1;

        check_traffic(self.spec(), &decision)?;
        super::gitops::check_gitops_conditions(&decision)?;
        self.follow(
            &pre,
            &decision,
            round.as_deref(),
            candidate_ready,
            manual_tick,
        )?;
        self.check_rollback(&decision)?;
        self.check_weight_moves(&decision.traffic.clone().unwrap_or_default())?;

        // The shell writes to the registry after applying the children; the writes fail
        // when the story says so.
        self.harness.set_registry_outage(!t.writes_ok);
        self.harness.apply(&decision);
        self.stats.attempts = self
            .stats
            .attempts
            .max(self.harness.status().retraining_attempts.len());
        Ok(())
    }

    /// The registry is down, or someone moves the alias to a new version by hand.
    fn script_registry(&mut self, t: &Tick) {
        self.harness.set_registry_outage(t.registry == 1);
        if t.registry == 2 {
            let version = self.next_version;
            self.next_version += 1;
            self.harness.register(version, &BTreeMap::new(), &[]);
            let alias = self.spec().model.alias.clone();
            self.harness.set_alias(&alias, version);
        }
    }

    /// Manual input (annotations, as a person with the CLI would set them); returns whether
    /// this tick carries a manual request or a pause change.
    fn script_annotations(&mut self, index: usize, t: &Tick, pre: &ModelDeploymentStatus) -> bool {
        let nonce = format!("t{index}");
        if let Some(m) = t.manual {
            let (key, value) = match m {
                Manual::Abort => (manual::ABORT, nonce.clone()),
                Manual::Retry => (manual::RETRY, nonce.clone()),
                Manual::Retrain => (manual::RETRAIN, nonce.clone()),
                Manual::Resume => (manual::RESUME, nonce.clone()),
                Manual::PromoteNext => (manual::PROMOTE, format!("next@{nonce}")),
                Manual::PromoteFull => (manual::PROMOTE, format!("full@{nonce}")),
            };
            self.harness.annotate(key, Some(value));
        }
        if t.toggle_pause {
            self.pause_annotation = !self.pause_annotation;
        }
        self.harness.annotate(
            manual::PAUSE,
            self.pause_annotation.then(|| "true".to_string()),
        );
        let manual_pause = pre.pause_reason == Some(PauseReason::Manual);
        t.manual.is_some()
            || (self.pause_annotation && !pre.paused)
            || (!self.pause_annotation && pre.paused && manual_pause)
    }

    /// Observations, taken only when the lifecycle wants them; also returns the round of
    /// measurements (kept apart so the model knows what was recorded before which event).
    fn observations(
        &mut self,
        t: &Tick,
        candidate_ready: bool,
        manual_tick: bool,
    ) -> (Observations, Option<Vec<MetricMeasurement>>) {
        let wants = self.harness.wants();
        let mut o = Observations {
            advisor_recommends: t.advisor,
            ..Default::default()
        };
        if wants.drift_check {
            self.rows += t.new_rows;
            o.drift = Some(drift_observation(t, self.rows));
        }
        if wants.job.is_some() {
            let state = match t.job {
                0 => JobState::Running,
                1 => JobState::Succeeded,
                2 => JobState::Failed("BackoffLimitExceeded".into()),
                _ => JobState::Missing,
            };
            if state == JobState::Succeeded
                && let Some(attempt_id) = &wants.candidate_lookup
            {
                o.candidate_lookup = Some(self.lookup(t, attempt_id));
            }
            o.job = Some(state);
        }
        if wants.evaluation.is_some() {
            o.evaluation = Some(evaluation(t, self.params.lower_is_better));
        }
        // No measurement on a manual tick: the model follows one kind of change per tick.
        let round = wants
            .measure
            .filter(|_| (candidate_ready || t.measure_unready) && !manual_tick)
            .map(|stage| measurements(self.spec(), stage, &t.verdicts));
        o.measurements = round.clone();
        (o, round)
    }

    /// The lineage lookup after a succeeded Job: found (the Job registered a new, tagged
    /// version), not found, or MLflow failing.
    fn lookup(&mut self, t: &Tick, attempt_id: &str) -> CandidateLookup {
        match t.lookup {
            0 => {
                let version = self.next_version;
                self.next_version += 1;
                self.harness
                    .register(version, &BTreeMap::new(), &[(LINEAGE_TAG, attempt_id)]);
                CandidateLookup::Found(version.to_string())
            }
            1 => CandidateLookup::NotFound,
            _ => CandidateLookup::Error("MLflow 503".into()),
        }
    }
}

/// A drift check's result as the tick tells it.
fn drift_observation(t: &Tick, rows: i64) -> DriftObservation {
    match t.drift {
        3 => DriftObservation::Failed {
            reason: Reason::DataUnreachable,
            message: "404".into(),
        },
        s => DriftObservation::Completed {
            summary: DriftSummary {
                severity: [Severity::Ok, Severity::Medium, Severity::High][s as usize],
                drift_detected: s > 0,
                drifted_share: f64::from(s) / 2.0,
                accuracy: t.accuracy,
                ..Default::default()
            },
            sample_count: Some(rows),
        },
    }
}

/// The evaluation metrics as the tick tells them: the candidate `delta` better than a
/// champion at 0.8 (worse for a negative delta), or one of them missing, or MLflow failing.
fn evaluation(t: &Tick, lower_is_better: bool) -> EvaluationObservation {
    let champion = 0.8;
    let candidate = if lower_is_better {
        champion - t.delta
    } else {
        champion + t.delta
    };
    match t.evaluation {
        0 => EvaluationObservation::Metrics {
            candidate: Some(candidate),
            champion: Some(champion),
        },
        1 => EvaluationObservation::Error("MLflow 503".into()),
        2 => EvaluationObservation::Metrics {
            candidate: None,
            champion: Some(champion),
        },
        _ => EvaluationObservation::Metrics {
            candidate: Some(candidate),
            champion: None,
        },
    }
}

/// One round of measurements of every metric of `stage`, with the tick's verdicts.
fn measurements(
    spec: &ModelDeploymentSpec,
    stage: AnalysisStage,
    verdicts: &[u8],
) -> Vec<MetricMeasurement> {
    stage_metrics(spec, stage)
        .iter()
        .zip(verdicts.iter().cycle())
        .map(|(m, v)| {
            let verdict = verdict(*v);
            MetricMeasurement {
                name: m.name.clone(),
                verdict,
                candidate: matches!(verdict, Verdict::Passed | Verdict::Failed).then_some(0.5),
                stable: Some(0.5),
                threshold: "t".into(),
                error: (verdict == Verdict::Error).then(|| "timeout".into()),
            }
        })
        .collect()
}
