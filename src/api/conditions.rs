//! Every condition type and every condition reason the operator writes: the vocabulary of
//! `status.conditions`, listed once. The README's condition table is checked against [`Reason`].

use super::vocabulary::status_word;

/// A condition type in `status.conditions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
pub enum ConditionType {
    /// The stable variant serves the resolved model.
    Ready,
    /// The operator's view of the model matches MLflow.
    RegistrySynced,
    /// A lifecycle phase is under way.
    Progressing,
    /// Every desired child object is applied.
    Synced,
    /// The last drift check ran (False: why it could not).
    DriftChecked,
    /// The advisor answered (False: why its answer was ignored).
    AdvisorAvailable,
    /// kstatus' abnormal-true condition: True while the operator is still moving the resource
    /// toward a state (retraining, evaluation, shadow, steps, waiting for the registry or for
    /// replicas). Never True together with `Stalled`.
    Reconciling,
    /// kstatus' abnormal-true condition: True when the resource cannot move on without a person
    /// (an invalid spec, a rollback, a failed attempt, an analysis that could not decide).
    Stalled,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

status_word! {
/// Why a condition holds its status. One closed set for every condition type: the reason is
/// what a person acts on, so it is never free text.
"PascalCase", pub enum Reason {
    // Ready
    Available,
    WaitingForReplicas,
    InvalidSpec,
    Unresolved,
    // Registry (Ready, RegistrySynced)
    Resolved,
    RegistryBehind,
    ModelNotFound,
    AliasNotFound,
    VersionNotFound,
    RegistryForbidden,
    SecretNotFound,
    SecretKeyMissing,
    RegistryUnavailable,
    RegistryMalformedResponse,
    RegistryError,
    // Progressing: the phase, or a pause
    Pending,
    Stable,
    Retraining,
    Evaluating,
    Shadow,
    Experimenting,
    Progressing,
    Promoted,
    RolledBack,
    Failed,
    Paused,
    // Stalled (besides InvalidSpec, RolledBack, Failed, and the phase while False)
    InconclusiveAnalysis,
    // Synced
    Applied,
    KubernetesApiError,
    KubernetesConflict,
    InvalidObject,
    NameConflict,
    // DriftChecked
    Checked,
    DataNotFound,
    DataUnreachable,
    DataAccessDenied,
    UnsupportedScheme,
    InvalidDataUri,
    UnknownFormat,
    EmptyData,
    MissingColumn,
    WrongType,
    UnsupportedColumnType,
    MalformedData,
    DataTooLarge,
    DataTimedOut,
    DataSourceNotAllowed,
    InvalidDriftConfig,
    InvalidTrackingUri,
    NoDriftSpec,
    NoPrometheus,
    AccuracyQueryFailed,
    NoFeatures,
    // AdvisorAvailable
    Answered,
    AdvisorTimeout,
    AdvisorUnreachable,
    AdvisorRateLimited,
    AdvisorHttpError,
    AdvisorRefused,
    AdvisorAnswerNotJson,
    AdvisorAnswerInvalid,
    AdvisorKeyMissing,
    AdvisorError,
}
}

impl Reason {
    /// The `Progressing` reason for a phase (the phase's own name).
    pub fn of_phase(phase: super::Phase) -> Self {
        use super::Phase;
        match phase {
            Phase::Pending => Reason::Pending,
            Phase::Stable => Reason::Stable,
            Phase::Retraining => Reason::Retraining,
            Phase::Evaluating => Reason::Evaluating,
            Phase::Shadow => Reason::Shadow,
            Phase::Experimenting => Reason::Experimenting,
            Phase::Progressing => Reason::Progressing,
            Phase::Promoted => Reason::Promoted,
            Phase::RolledBack => Reason::RolledBack,
            Phase::Failed => Reason::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn every_phase_is_a_progressing_reason_of_the_same_name() {
        for phase in [
            super::super::Phase::Pending,
            super::super::Phase::Stable,
            super::super::Phase::Retraining,
            super::super::Phase::Evaluating,
            super::super::Phase::Shadow,
            super::super::Phase::Experimenting,
            super::super::Phase::Progressing,
            super::super::Phase::Promoted,
            super::super::Phase::RolledBack,
            super::super::Phase::Failed,
        ] {
            assert_eq!(Reason::of_phase(phase).as_str(), phase.as_str());
        }
    }

    /// The README's condition table names every reason, and only reasons that exist.
    #[test]
    fn readme_condition_table_lists_exactly_the_reasons() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("| Condition | Reasons |")
            .expect("README has the condition table");
        let table = readme[start..].split("\n\n").next().unwrap_or_default();
        let mut listed = std::collections::BTreeSet::new();
        let mut types = std::collections::BTreeSet::new();
        for row in table.lines().skip(2) {
            let cells: Vec<&str> = row.split('|').collect();
            let (Some(condition), Some(reasons)) = (cells.get(1), cells.get(2)) else {
                panic!("malformed row {row:?}");
            };
            types.insert(condition.trim().trim_matches('`').to_string());
            for name in reasons.split('`').skip(1).step_by(2) {
                listed.insert(name.to_string());
            }
        }
        let reasons: std::collections::BTreeSet<String> =
            Reason::iter().map(|r| r.as_str().to_string()).collect();
        assert_eq!(listed, reasons, "README condition table vs the Reason enum");
        let condition_types: std::collections::BTreeSet<String> = ConditionType::iter()
            .map(|t| t.as_str().to_string())
            .collect();
        assert_eq!(
            types, condition_types,
            "README condition rows vs ConditionType"
        );
    }

    #[test]
    fn reasons_serialize_as_their_names() {
        for reason in Reason::iter() {
            let json = serde_json::to_value(reason).unwrap();
            assert_eq!(json, reason.as_str());
            assert_eq!(reason.to_string(), reason.as_str());
        }
    }
}
