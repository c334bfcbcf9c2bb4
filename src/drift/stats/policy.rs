//! Thresholds of the drift decision rule (see the rule at the top of `stats/mod.rs`).

use serde::{Deserialize, Serialize};

use super::StatsError;

/// Thresholds of the decision rule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftPolicy {
    /// Significance level applied to the (adjusted) p-values. Default 0.05.
    pub alpha: f64,
    /// Benjamini–Hochberg adjustment across all features of one check. Default on.
    pub fdr: bool,
    /// Minimum KS D for a numeric feature to count as drifted. Default 0.1.
    pub min_effect_numeric: f64,
    /// Minimum Cramér's V for a categorical feature to count as drifted. Default 0.1.
    pub min_effect_categorical: f64,
    /// PSI at which `psi_level` becomes `warning` (informational). Default 0.2.
    pub psi_warning: f64,
    /// PSI at which a *drifted* feature is `high` severity. Default 0.25.
    pub psi_high: f64,
    /// Dataset drift when drifted features / evaluated features ≥ this. Default 0.5.
    pub drift_share: f64,
}

impl Default for DriftPolicy {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            fdr: true,
            min_effect_numeric: 0.1,
            min_effect_categorical: 0.1,
            psi_warning: 0.2,
            psi_high: 0.25,
            drift_share: 0.5,
        }
    }
}

impl DriftPolicy {
    /// `0 < alpha < 1`; effects in `[0, 1]`; `0 <= psi_warning <= psi_high`
    /// finite; `0 < drift_share <= 1`.
    pub fn validate(&self) -> Result<(), StatsError> {
        let bad = |name: &'static str, reason: &str| {
            Err(StatsError::InvalidParameter {
                name,
                reason: reason.to_owned(),
            })
        };
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return bad("alpha", "must be in (0, 1)");
        }
        if !(0.0..=1.0).contains(&self.min_effect_numeric) {
            return bad("min_effect_numeric", "must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_effect_categorical) {
            return bad("min_effect_categorical", "must be in [0, 1]");
        }
        if !(self.psi_warning.is_finite() && self.psi_warning >= 0.0) {
            return bad("psi_warning", "must be finite and >= 0");
        }
        if !(self.psi_high.is_finite() && self.psi_high >= self.psi_warning) {
            return bad("psi_high", "must be finite and >= psi_warning");
        }
        if !(self.drift_share > 0.0 && self.drift_share <= 1.0) {
            return bad("drift_share", "must be in (0, 1]");
        }
        Ok(())
    }
}
