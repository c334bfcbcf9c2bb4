//! From a `ModelDeployment`'s drift section to a verdict.
//!
//! 1. [`DriftConfig::from_spec`] turns `spec.drift` (+ `spec.performance`) into the statistics
//!    [`DriftPolicy`], the PSI parameters, the feature list and the multiple-testing method.
//! 2. The reference is read once per model version and URI and kept as a
//!    [`PreparedReference`] (sorted numeric samples, PSI edges, category counts) in the
//!    [`DriftEngine`]'s cache under a [`ReferenceKey`].
//! 3. Each check reads only the current columns it needs, with the kinds fixed by the
//!    reference, compares every feature in parallel ([`compare`]) and applies the decision
//!    rule of [`crate::drift::stats`] ([`evaluate`]).
//! 4. Concept drift: the prediction column's distribution (KS + PSI, reference vs current) and,
//!    with labelled data, [`accuracy`] (+ precision and recall for binary labels).
//!
//! `multipleTesting: bonferroni` is applied here: the stats policy knows only
//! Benjamini–Hochberg on/off, so the p-values are multiplied by the number of evaluated
//! features (capped at 1) before the rule runs with BH off, and the raw p-values are put back
//! in the verdicts afterwards (`p_value_adjusted` holds the Bonferroni value).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::api::{DataFormat, DriftSpec, MultipleTesting, PerformanceSpec};
use crate::drift::data::{
    Column, ColumnKind, ColumnRequest, DataError, DataSource, FetchContext, FileSelection, Payload,
    Side, Table, column_names, detect_format, read_table, sniff_format,
};
use crate::drift::stats::{
    CategoricalReference, ComparisonStatus, CurrentSummary, DatasetVerdict, DriftPolicy,
    FeatureComparison, FeatureVerdict, NumericReference, PsiParams, Severity, compare_categorical,
    compare_numeric, compare_numeric_summary, evaluate,
};
use crate::storage::StoreOptions;

mod accuracy;
mod compare;
mod config;
mod join;
mod profile;
mod reference;
mod runner;
mod stream;

pub use accuracy::*;
pub use compare::*;
pub use config::*;
pub use join::{JoinSide, LabelJoinReport, MAX_JOIN_ROWS};
pub use profile::{DEFAULT_EXACT_UP_TO, DriftProfile, ProfileFeature, is_profile_uri};
pub use reference::*;
pub use runner::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::data::{CategoricalColumn, NamedColumn};

    fn numeric(name: &str, v: Vec<f64>) -> NamedColumn {
        NamedColumn {
            name: name.into(),
            data: Column::Numeric(v),
        }
    }

    fn categorical(name: &str, values: &[&str]) -> NamedColumn {
        let mut cats: Vec<String> = Vec::new();
        let codes = values
            .iter()
            .map(|v| match cats.iter().position(|c| c == v) {
                Some(i) => i as u32,
                None => {
                    cats.push((*v).to_owned());
                    (cats.len() - 1) as u32
                }
            })
            .collect();
        NamedColumn {
            name: name.into(),
            data: Column::Categorical(CategoricalColumn {
                categories: cats,
                codes,
            }),
        }
    }

    fn key() -> ReferenceKey {
        ReferenceKey {
            model_version: Some("3".into()),
            uri: "ref.csv".into(),
            format: None,
            config: String::new(),
        }
    }

    /// Deterministic pseudo-normal sample.
    fn sample(n: usize, shift: f64, seed: u64) -> Vec<f64> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                let mut acc = 0.0;
                for _ in 0..4 {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    acc += (s >> 11) as f64 / (1u64 << 53) as f64;
                }
                acc - 2.0 + shift
            })
            .collect()
    }

    fn tables(shift: f64) -> (Table, Table) {
        let n = 4000;
        let chans: Vec<&str> = (0..n).map(|i| ["web", "pos", "atm"][i % 3]).collect();
        let reference = Table::new(
            n,
            vec![
                numeric("a", sample(n, 0.0, 1)),
                numeric("b", sample(n, 0.0, 2)),
                categorical("channel", &chans),
                numeric("prediction", sample(n, 0.0, 3)),
            ],
        );
        let current = Table::new(
            n,
            vec![
                numeric("a", sample(n, shift, 4)),
                numeric("b", sample(n, 0.0, 5)),
                categorical("channel", &chans),
                numeric("prediction", sample(n, shift / 2.0, 6)),
            ],
        );
        (reference, current)
    }

    #[test]
    fn detects_the_shifted_feature_only() {
        let config = DriftConfig::default();
        let (r, c) = tables(0.8);
        let prepared = prepare_reference(r, &config, key()).unwrap();
        assert_eq!(prepared.features().count(), 3);
        assert_eq!(prepared.prediction().unwrap().0, "prediction");
        let report = compare(&prepared, c, &config);
        let drifted: Vec<&str> = report
            .features
            .iter()
            .filter(|f| f.drifted)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(drifted, ["a"]);
        assert_eq!(report.severity, Severity::High);
        assert!(report.drift_detected);
        let pd = report.prediction_drift.unwrap();
        assert!(pd.drifted && pd.psi.unwrap() > 0.1, "{pd:?}");
        assert_eq!((report.reference_rows, report.current_rows), (4000, 4000));
        let json = serde_json::to_value(&report.features[0]).unwrap();
        assert_eq!(json["kind"], "numerical");
        assert_eq!(json["test"], "ks");
    }

    #[test]
    fn multiple_testing_methods() {
        // p-values 0.01 (3 features): BH adjusts to 0.03, Bonferroni to 0.03 (×3), none keeps 0.01
        let cmp = |p: f64| {
            FeatureComparison::Numeric(crate::drift::stats::NumericComparison {
                status: ComparisonStatus::Ok,
                n_reference: 100,
                n_current: 100,
                missing_reference: 0,
                missing_current: 0,
                ks: Some(crate::drift::stats::KsResult {
                    statistic: 0.3,
                    p_value: p,
                    method: crate::drift::stats::KsMethod::Exact,
                }),
                psi: Some(0.1),
                current_bin_counts: vec![],
                histogram: None,
                ks_error_bound: None,
            })
        };
        let comps = || {
            vec![
                ("x".to_owned(), cmp(0.01)),
                ("y".to_owned(), cmp(0.02)),
                ("z".to_owned(), cmp(0.5)),
            ]
        };
        let with = |m| DriftConfig {
            multiple_testing: m,
            ..DriftConfig::default()
        };
        let bon = decide(comps(), &with(MultipleTesting::Bonferroni));
        assert_eq!(bon.features[0].p_value, Some(0.01));
        assert!((bon.features[0].p_value_adjusted.unwrap() - 0.03).abs() < 1e-12);
        assert!((bon.features[1].p_value_adjusted.unwrap() - 0.06).abs() < 1e-12);
        assert_eq!(bon.features[2].p_value_adjusted, Some(1.0));
        assert!(bon.features[0].drifted && !bon.features[1].drifted);
        let bh = decide(comps(), &with(MultipleTesting::BenjaminiHochberg));
        assert!((bh.features[1].p_value_adjusted.unwrap() - 0.03).abs() < 1e-12);
        assert!(bh.features[1].drifted);
        let none = decide(comps(), &with(MultipleTesting::None));
        assert_eq!(none.features[1].p_value_adjusted, Some(0.02));
    }

    #[test]
    fn config_from_spec() {
        let spec: DriftSpec = serde_yaml::from_str(
            r#"
reference: {uri: r.parquet}
current: {uri: c.csv, timestampColumn: ts, window: 1h}
features: [{name: a, kind: categorical}, {name: b}]
ignoreColumns: [id]
thresholds: {alpha: 0.01, multipleTesting: bonferroni, minKsStatistic: 0.2, bins: 20, driftShare: 0.3}
"#,
        )
        .unwrap();
        let c = DriftConfig::from_spec(&spec, None).unwrap();
        assert_eq!(c.policy.alpha, 0.01);
        assert!(!c.policy.fdr);
        assert_eq!(c.policy.min_effect_numeric, 0.2);
        assert_eq!(c.policy.drift_share, 0.3);
        assert_eq!(c.psi.bins, 20);
        assert_eq!(c.multiple_testing, MultipleTesting::Bonferroni);
        assert_eq!(c.features[0].kind, Some(ColumnKind::Categorical));
        assert_eq!(c.features[1].kind, None);
        assert_eq!(c.ignore_columns, ["id", "ts"]);
        assert_eq!(c.prediction_column, None);
        let mut bad = spec.clone();
        bad.thresholds.psi_high = 0.1;
        assert_eq!(
            DriftConfig::from_spec(&bad, None).unwrap_err().reason(),
            crate::api::Reason::InvalidDriftConfig
        );
        bad = spec.clone();
        bad.thresholds.bins = 0;
        assert!(DriftConfig::from_spec(&bad, None).is_err());
        let req =
            CheckRequest::from_spec(&spec, None, Some("7".into()), &CaptureLocation::default())
                .unwrap();
        assert_eq!(req.reference_key().model_version.as_deref(), Some("7"));
        assert_ne!(
            req.reference_key(),
            CheckRequest::from_spec(&spec, None, Some("8".into()), &CaptureLocation::default())
                .unwrap()
                .reference_key()
        );
    }

    #[test]
    fn requests_respect_features_ignore_and_prediction() {
        let names: Vec<String> = ["id", "a", "b", "prediction", "label"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mut config = DriftConfig {
            ignore_columns: vec!["id".into(), "label".into()],
            forced_kinds: vec![("b".into(), ColumnKind::Categorical)],
            ..DriftConfig::default()
        };
        let r = reference_requests(&names, &config).unwrap();
        assert_eq!(
            r,
            vec![
                ColumnRequest::new("a", None),
                ColumnRequest::new("b", Some(ColumnKind::Categorical)),
                ColumnRequest::new("prediction", None),
            ]
        );
        config.features = vec![FeatureSelection {
            name: "zz".into(),
            kind: None,
        }];
        assert_eq!(
            reference_requests(&names, &config).unwrap_err(),
            DriftError::Data(DataError::MissingColumn {
                column: "zz".into(),
                side: Side::Reference
            })
        );
        config.features.clear();
        config.forced_kinds = vec![("nope".into(), ColumnKind::Categorical)];
        assert!(reference_requests(&names, &config).is_err());
    }

    #[test]
    fn explicit_feature_missing_from_current_is_an_error() {
        let config = DriftConfig {
            features: vec![FeatureSelection {
                name: "a".into(),
                kind: None,
            }],
            ..DriftConfig::default()
        };
        let (r, _) = tables(0.0);
        let prepared = prepare_reference(r, &config, key()).unwrap();
        let e = prepared
            .current_requests(&["b".to_owned(), "prediction".to_owned()])
            .unwrap_err();
        assert_eq!(e.to_string(), "column 'a' is missing from the current data");
        // inferred features: skipped instead
        let config = DriftConfig::default();
        let (r, _) = tables(0.0);
        let prepared = prepare_reference(r, &config, key()).unwrap();
        let req = prepared.current_requests(&["b".to_owned()]).unwrap();
        assert_eq!(req.len(), 1);
    }

    #[test]
    fn insufficient_data_and_new_categories() {
        let n = 500;
        let config = DriftConfig::default();
        let r = Table::new(
            n,
            vec![
                numeric("gone", vec![f64::NAN; n]),
                categorical("c", &vec!["a"; n]),
                numeric("x", sample(n, 0.0, 9)),
            ],
        );
        let mut cur_c = vec!["a"; n];
        for v in cur_c.iter_mut().take(200) {
            *v = "new";
        }
        let c = Table::new(
            n,
            vec![
                numeric("gone", sample(n, 0.0, 1)),
                categorical("c", &cur_c),
                numeric("x", sample(n, 0.0, 10)),
            ],
        );
        let prepared = prepare_reference(r, &config, key()).unwrap();
        let report = compare(&prepared, c, &config);
        let gone = &report.features[0];
        assert_eq!(gone.status, ComparisonStatus::InsufficientData);
        assert_eq!(gone.missing_reference, n as u64);
        assert!(!gone.drifted);
        let cat = &report.features[1];
        assert_eq!(cat.n_new_categories, 1);
        assert_eq!(cat.new_categories, ["new"]);
        assert!(cat.drifted, "{cat:?}");
        assert_eq!(report.n_evaluated, 2);
        assert!(report.notes.iter().any(|n| n.contains("prediction")));
    }

    #[test]
    fn accuracy_scores_and_classes() {
        let t = Table::new(
            6,
            vec![
                numeric("p", vec![0.9, 0.2, 0.7, 0.4, f64::NAN, 0.6]),
                numeric("l", vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
                categorical("pc", &["fraud", "ok", "fraud", "ok", "ok", "ok"]),
                categorical("lc", &["fraud", "ok", "ok", "ok", "fraud", "ok"]),
            ],
        );
        let a = accuracy(&t, "p", "l").unwrap();
        assert_eq!(a.decision, "threshold_0.5");
        assert_eq!((a.rows, a.missing), (5, 1));
        assert!((a.accuracy.unwrap() - 0.6).abs() < 1e-12);
        let b = a.binary.unwrap();
        assert_eq!(b.positive_label, "1");
        assert_eq!(
            (b.true_positives, b.false_positives, b.false_negatives),
            (2, 1, 1)
        );
        assert!((b.precision.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        let a = accuracy(&t, "pc", "lc").unwrap();
        assert_eq!(a.decision, "exact");
        assert!((a.accuracy.unwrap() - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(a.binary.unwrap().positive_label, "fraud");
        assert_eq!(
            accuracy(&t, "p", "nope").unwrap_err().to_string(),
            "column 'nope' is missing from the labelled data"
        );
    }

    #[test]
    fn engine_caches_prepared_references() {
        let dir = tempfile::tempdir().unwrap();
        let rp = dir.path().join("r.csv");
        let cp = dir.path().join("c.csv");
        let mut r = String::from("x,c\n");
        let mut c = String::from("x,c\n");
        for (i, (a, b)) in sample(300, 0.0, 1)
            .iter()
            .zip(sample(300, 1.0, 2))
            .enumerate()
        {
            r.push_str(&format!("{a},{}\n", ["u", "v"][i % 2]));
            c.push_str(&format!("{b},{}\n", ["u", "v"][i % 2]));
        }
        std::fs::write(&rp, r).unwrap();
        std::fs::write(&cp, c).unwrap();
        let engine = DriftEngine::new(FetchContext::new());
        let req = CheckRequest {
            reference: DatasetLocation {
                uri: rp.display().to_string(),
                format: None,
            },
            current: DatasetLocation {
                uri: cp.display().to_string(),
                format: None,
            },
            labelled: None,
            config: DriftConfig::default(),
            model_version: Some("1".into()),
            now: None,
            storage: StoreOptions::default(),
        };
        let first = engine.check_local(&req).unwrap();
        assert!(!first.timings.reference_cached);
        assert!(engine.cached(&req.reference_key()).is_some());
        // the reference file is gone, the cached preparation is used
        std::fs::remove_file(&rp).unwrap();
        let second = engine.check_local(&req).unwrap();
        assert!(second.timings.reference_cached);
        assert_eq!(first.features, second.features);
        assert!(first.features[0].drifted);
        engine.invalidate(&req.reference_key());
        assert_eq!(
            engine.check_local(&req).unwrap_err().reason(),
            crate::api::Reason::DataNotFound
        );
    }

    #[test]
    fn current_window_keeps_recent_rows() {
        let dir = tempfile::tempdir().unwrap();
        let rp = dir.path().join("r.csv");
        let cp = dir.path().join("c.csv");
        let mut r = String::from("x,ts\n");
        let mut c = String::from("x,ts\n");
        let xs = sample(400, 0.0, 3);
        for (i, x) in xs.iter().enumerate() {
            r.push_str(&format!("{x},2026-01-01T00:00:00Z\n"));
            // even rows inside the last hour (RFC 3339 or Unix seconds), odd rows a day old,
            // every 50th row without a timestamp
            let ts = if i % 50 == 49 {
                String::new()
            } else if i % 2 == 0 && i % 4 == 0 {
                "2026-11-26T11:30:00+00:00".to_owned()
            } else if i % 2 == 0 {
                "1795692600".to_owned() // 2026-11-26T11:30:00Z
            } else {
                "2026-11-25T11:30:00Z".to_owned()
            };
            c.push_str(&format!("{x},{ts}\n"));
        }
        std::fs::write(&rp, r).unwrap();
        std::fs::write(&cp, c).unwrap();
        let now: jiff::Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let spec: DriftSpec = serde_yaml::from_str(&format!(
            "reference: {{uri: '{}'}}\ncurrent: {{uri: '{}', window: 1h, timestampColumn: ts}}\n",
            rp.display(),
            cp.display()
        ))
        .unwrap();
        let mut req =
            CheckRequest::from_spec(&spec, None, None, &CaptureLocation::default()).unwrap();
        req.now = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_second() as u64));
        let report = DriftEngine::new(FetchContext::new())
            .check_local(&req)
            .unwrap();
        let w = report.window.clone().unwrap();
        assert_eq!(w.rows_total, 400);
        assert_eq!(w.rows_without_timestamp, 8);
        assert_eq!(report.current_rows, 200);
        assert_eq!(w.since, "2026-11-26T11:00:00Z");
        // the timestamp column is not a feature
        let names: Vec<&str> = report.features.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["x"]);
        assert_eq!(report.features[0].n_current, 200);
        // without timestampColumn the window is a configuration error
        let mut bad = spec.clone();
        bad.current.timestamp_column = None;
        assert_eq!(
            DriftConfig::from_spec(&bad, None).unwrap_err().reason(),
            crate::api::Reason::InvalidDriftConfig
        );
    }

    #[tokio::test]
    async fn async_check_matches_local_check() {
        let dir = tempfile::tempdir().unwrap();
        let rp = dir.path().join("r.csv");
        let cp = dir.path().join("c.csv");
        std::fs::write(&rp, "x,prediction\n1,0.1\n2,0.2\n3,0.3\n4,0.4\n").unwrap();
        std::fs::write(&cp, "x,prediction\n1,0.1\n2,0.9\n3,0.3\n").unwrap();
        let req = CheckRequest {
            reference: DatasetLocation {
                uri: rp.display().to_string(),
                format: None,
            },
            current: DatasetLocation {
                uri: format!("file://{}", cp.display()),
                format: None,
            },
            labelled: Some(LabelledLocation {
                location: DatasetLocation {
                    uri: cp.display().to_string(),
                    format: None,
                },
                prediction_column: "prediction".into(),
                label_column: "x".into(),
                accuracy_threshold: Some(0.85),
                join: None,
            }),
            config: DriftConfig::default(),
            model_version: None,
            now: None,
            storage: StoreOptions::default(),
        };
        let a = DriftEngine::new(FetchContext::new())
            .check(&req)
            .await
            .unwrap();
        let b = DriftEngine::new(FetchContext::new())
            .check_local(&req)
            .unwrap();
        assert_eq!(a.features, b.features);
        assert_eq!(a.current_rows, 3);
        assert!(a.prediction_drift.is_some());
        let perf = a.performance.unwrap();
        assert_eq!(perf.accuracy, Some(0.0));
        assert_eq!(perf.below_threshold, Some(true));
    }
}
