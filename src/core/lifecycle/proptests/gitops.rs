//! What GitOps tools read from every decision: kstatus' `Reconciling` / `Stalled` pair (and,
//! through it, Flux's health checks) agrees with the phase, the pause and `Ready`.

use super::*;
use crate::api::PauseReason;
use crate::core::conditions::{self, ConditionType};

/// kstatus' verdict for a ModelDeployment, as `sigs.k8s.io/cli-utils/pkg/kstatus`
/// `status.Compute` reaches it for a custom resource whose `observedGeneration` is current:
/// the first `Reconciling=True` or `Stalled=True` condition, else `Ready`, else Current.
/// (The real library judges the operator's objects in `tests/gitops_status.rs`.)
pub(super) fn kstatus(status: &ModelDeploymentStatus) -> &'static str {
    for c in &status.conditions {
        if c.status == "True" && c.type_ == "Reconciling" {
            return "InProgress";
        }
        if c.status == "True" && c.type_ == "Stalled" {
            return "Failed";
        }
    }
    match conditions::get(&status.conditions, ConditionType::Ready) {
        Some(ready) if ready.status != "True" => "InProgress",
        _ => "Current",
    }
}

/// The designed verdict (README, "GitOps: Argo CD and Flux").
pub(super) fn designed(status: &ModelDeploymentStatus) -> &'static str {
    let ready = conditions::get(&status.conditions, ConditionType::Ready);
    let invalid = ready.is_some_and(|r| r.reason == Reason::InvalidSpec.as_str());
    let ready = ready.is_some_and(|r| r.status == "True");
    let inconclusive =
        status.paused && status.pause_reason == Some(PauseReason::InconclusiveAnalysis);
    if invalid || inconclusive || matches!(status.phase, Phase::RolledBack | Phase::Failed) {
        "Failed"
    } else if status.paused {
        if ready { "Current" } else { "InProgress" }
    } else if matches!(
        status.phase,
        Phase::Retraining
            | Phase::Evaluating
            | Phase::Shadow
            | Phase::Experimenting
            | Phase::Progressing
    ) || !ready
    {
        "InProgress"
    } else {
        "Current"
    }
}

pub(super) fn check_gitops_conditions(decision: &Decision) -> Result<(), String> {
    let status = &decision.status;
    let get = |t| conditions::get(&status.conditions, t);
    let (Some(reconciling), Some(stalled)) =
        (get(ConditionType::Reconciling), get(ConditionType::Stalled))
    else {
        return fail(format!(
            "Reconciling and Stalled are always set: {status:?}"
        ));
    };
    ensure!(
        !(reconciling.status == "True" && stalled.status == "True"),
        "Reconciling and Stalled both True: {reconciling:?} {stalled:?}"
    );
    for c in [reconciling, stalled] {
        ensure!(
            c.observed_generation == status.observed_generation,
            "{} describes generation {:?}, the status {:?}",
            c.type_,
            c.observed_generation,
            status.observed_generation
        );
    }
    let (got, want) = (kstatus(status), designed(status));
    ensure!(
        got == want,
        "kstatus says {got}, designed {want} (phase {:?}, paused {}, {:?})",
        status.phase,
        status.paused,
        status.conditions
    );
    Ok(())
}
