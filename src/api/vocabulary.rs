//! The closed sets of words that status fields and Events use. Each is an enum so it shows as
//! an enum in the CRD schema and in `kubectl explain`, and so code matches on it instead of
//! comparing strings. Serde and strum spell every value the same way.

/// Derives shared by every status word: schema, serde, and `as_str` / `Display` via strum.
macro_rules! status_word {
    ($(#[$meta:meta])* $case:literal, pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            schemars::JsonSchema,
            serde::Serialize,
            serde::Deserialize,
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            strum::IntoStaticStr,
            strum::Display,
            strum::EnumIter,
        )]
        #[serde(rename_all = $case)]
        #[strum(serialize_all = $case)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

pub(crate) use status_word;

status_word! {
    /// Why a rollout is paused.
    "camelCase", pub enum PauseReason {
        /// The `mlrollout.io/pause` annotation.
        Manual,
        /// Analysis stayed inconclusive and `inconclusive: pause` asks a person to decide.
        InconclusiveAnalysis,
        /// A `pause: {}` step of `rollout.plan`: held until a person promotes or resumes.
        Step,
    }
}

status_word! {
    /// Where the current candidate came from.
    "camelCase", pub enum CandidateSource {
        /// A retraining Job registered it.
        Retraining,
        /// The alias or the pinned version moved to it.
        Registry,
        /// A person asked to retry the last candidate (`mlrollout retry`).
        Retry,
    }
}

status_word! {
    /// How soon retraining should happen, in the advisor's view.
    "camelCase", pub enum Urgency { Immediate, Scheduled, Optional }
}

status_word! {
    /// Outcome of one measurement of one analysis metric.
    "PascalCase", pub enum Verdict {
        Passed,
        Failed,
        /// No data (or no stable value for a relative threshold).
        Inconclusive,
        /// The query itself failed (Prometheus down, bad query).
        Error,
    }
}

status_word! {
    /// What started (or wanted to start) a retraining attempt.
    "camelCase", pub enum Trigger { Manual, Advisor, Accuracy, Drift, NewSamples, Schedule }
}

status_word! {
    /// Drift severity, ordered `ok < medium < high`.
    #[derive(Default, PartialOrd, Ord)]
    "camelCase", pub enum Severity {
        #[default]
        Ok,
        Medium,
        High,
    }
}

status_word! {
    /// The statistical test a feature was compared with.
    "camelCase", pub enum DriftTest {
        /// Two-sample Kolmogorov–Smirnov (numeric features).
        Ks,
        /// Chi-square (categorical features).
        Chi2,
    }
}

status_word! {
    /// An MLflow write the operator owes the registry.
    "camelCase", pub enum RegistryOp {
        SetAlias,
        DeleteAlias,
        SetTag,
        /// Log a retraining attempt as an MLflow run (the value is the attempt record).
        LogAttempt,
    }
}

status_word! {
    /// How a retraining attempt ended (or that it has not yet).
    "PascalCase", pub enum AttemptOutcome { Running, Succeeded, Failed, TimedOut, Aborted }
}

status_word! {
    /// How a rollout ended.
    "PascalCase", pub enum RolloutOutcome {
        /// The candidate became stable.
        Promoted,
        /// Traffic went back to stable.
        RolledBack,
        /// A person aborted it.
        Aborted,
        /// The candidate failed its evaluation before seeing traffic.
        Rejected,
        /// The resource pins a version; the candidate waits for the pin to move.
        Held,
    }
}

status_word! {
    /// Why a rollout ended.
    "PascalCase", pub enum RolloutReason {
        Promoted,
        Aborted,
        EvaluationFailed,
        PinnedVersion,
        ShadowFailed,
        AnalysisFailed,
        /// The experiment's analysis failed.
        ExperimentFailed,
        AnalysisError,
        AnalysisInconclusive,
        ProgressDeadlineExceeded,
        PostPromotionAnalysisFailed,
    }
}

status_word! {
    /// Reason of an Event the lifecycle emits for a transition.
    "PascalCase", pub enum EventReason {
        StableVersionServed,
        DriftSeverityChanged,
        DriftCheckFailed,
        AdvisorAnswered,
        AdvisorIgnored,
        RetrainingStarted,
        RetrainingDeferred,
        TrainingFailed,
        CandidateRegistered,
        CandidateNotRegistered,
        CandidateFromRegistry,
        CandidateHeldByPin,
        EvaluationPassed,
        EvaluationFailed,
        ShadowStarted,
        ShadowPassed,
        ExperimentStarted,
        ExperimentPassed,
        StepStarted,
        Promoted,
        PromotionComplete,
        RolledBack,
        Aborted,
        ProgressDeadlineExceeded,
        AnalysisInconclusive,
        DryRunMetricFailed,
        PostPromotionPassed,
        CandidateReleased,
        ManualPromotion,
        ManualRequestIgnored,
        Paused,
        Resumed,
        Retry,
        RegistryBehind,
    }
}
