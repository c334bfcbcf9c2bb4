//! Cross-checks `mlrollout::drift::stats` against numpy/scipy.
//!
//! Runs `$MLROLLOUT_PYTHON tests/scripts/scipy_cases.py` (a Python with numpy
//! and scipy), which prints seeded cases with scipy's answers, and compares:
//! p-values to 1e-6 relative when scipy's p >= 1e-12 (1e-12 absolute below),
//! statistics and PSI to 1e-9 relative.
//!
//! Without `MLROLLOUT_PYTHON` the test FAILS on purpose: run it as the README
//! says, e.g.
//!
//! ```sh
//! MLROLLOUT_PYTHON=/path/to/venv/bin/python cargo test --features harness --test drift_scipy
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the test venv's Python with numpy and scipy (MLROLLOUT_PYTHON): full suite only, `cargo
// test --features harness` (tests/run.sh turns it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use mlrollout::drift::stats;
use serde::Deserialize;

#[derive(Deserialize)]
struct Doc {
    meta: serde_json::Value,
    numeric: Vec<NumericCase>,
    categorical: Vec<CategoricalCase>,
    kstwo: Vec<KstwoCase>,
    chi2_sf: Vec<Chi2SfCase>,
}

#[derive(Deserialize)]
struct NumericCase {
    name: String,
    a: Vec<f64>,
    b: Vec<f64>,
    ks_statistic: f64,
    ks_pvalue: f64,
    psi: Vec<PsiCase>,
}

#[derive(Deserialize)]
struct PsiCase {
    bins: usize,
    smoothing: f64,
    value: f64,
}

#[derive(Deserialize)]
struct CategoricalCase {
    name: String,
    reference: BTreeMap<String, u64>,
    current: BTreeMap<String, u64>,
    chi2_statistic: f64,
    chi2_pvalue: f64,
    dof: u64,
    cramers_v: Option<f64>,
    smoothing: f64,
    psi: f64,
}

#[derive(Deserialize)]
struct KstwoCase {
    n: u64,
    d: f64,
    sf: f64,
}

#[derive(Deserialize)]
struct Chi2SfCase {
    x: f64,
    dof: u64,
    sf: f64,
}

const README_HINT: &str = "set MLROLLOUT_PYTHON to a Python that has numpy and scipy, as in the \
README's test command: MLROLLOUT_PYTHON=/path/to/venv/bin/python \
cargo test --features harness --test drift_scipy";

fn script_path() -> PathBuf {
    // `file!()` is absolute when this file is compiled from outside the crate,
    // and relative to the package root (the test's working directory) otherwise.
    let here = PathBuf::from(file!());
    if let Some(dir) = here.parent() {
        let candidate = dir.join("scripts").join("scipy_cases.py");
        if candidate.exists() {
            return candidate;
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/scipy_cases.py")
}

fn cases() -> &'static Doc {
    static DOC: OnceLock<Doc> = OnceLock::new();
    DOC.get_or_init(|| {
        let python = match std::env::var_os("MLROLLOUT_PYTHON") {
            Some(p) if !p.is_empty() => p,
            _ => panic!("MLROLLOUT_PYTHON is not set: {README_HINT}"),
        };
        let script = script_path();
        let out = Command::new(&python)
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python:?} {script:?}: {e}; {README_HINT}"));
        assert!(
            out.status.success(),
            "{script:?} failed ({}): {}\n{README_HINT}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("scipy_cases.py printed invalid JSON")
    })
}

/// p-values: 1e-6 relative for p >= 1e-12, else 1e-12 absolute.
fn p_ok(ours: f64, scipy: f64) -> bool {
    if scipy >= 1e-12 {
        (ours - scipy).abs() <= 1e-6 * scipy
    } else {
        (ours - scipy).abs() <= 1e-12
    }
}

/// statistics: 1e-9 relative (plus a hair of absolute slack around 0).
fn stat_ok(ours: f64, scipy: f64) -> bool {
    (ours - scipy).abs() <= 1e-9 * scipy.abs() + 1e-15
}

/// Collects mismatches (reported all at once) and the worst relative error.
struct Failures(Vec<String>, f64);

impl Failures {
    fn new() -> Self {
        Self(Vec::new(), 0.0)
    }

    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    /// Record |ours - want| / |want| for the summary (only where want > 1e-12).
    fn track(&mut self, ours: f64, want: f64) {
        if want.abs() > 1e-12 {
            self.1 = self.1.max((ours - want).abs() / want.abs());
        }
    }

    fn finish(self, label: &str, total: usize) {
        eprintln!(
            "{label}: {total} comparisons, {} mismatches, worst relative error {:.2e}",
            self.0.len(),
            self.1
        );
        let shown: Vec<&String> = self.0.iter().take(40).collect();
        assert!(
            self.0.is_empty(),
            "{label}: {} mismatches:\n{shown:#?}",
            self.0.len()
        );
    }
}

#[test]
fn ks_two_sample_matches_scipy() {
    let doc = cases();
    eprintln!("reference versions: {}", doc.meta);
    let mut f = Failures::new();
    let mut total = 0;
    for c in &doc.numeric {
        let direct = stats::ks_2samp(&c.a, &c.b).expect("non-empty finite samples");
        let prep = stats::NumericReference::new(c.a.clone(), stats::PsiParams::default()).unwrap();
        let cmp = stats::compare_numeric(&prep, c.b.clone());
        let prepared = cmp.ks.expect("comparison has data");
        for (how, r) in [("ks_2samp", direct), ("compare_numeric", prepared)] {
            total += 2;
            f.track(r.statistic, c.ks_statistic);
            f.track(r.p_value, c.ks_pvalue);
            f.check(stat_ok(r.statistic, c.ks_statistic), || {
                format!(
                    "{} [{how}] D: ours {} scipy {}",
                    c.name, r.statistic, c.ks_statistic
                )
            });
            f.check(p_ok(r.p_value, c.ks_pvalue), || {
                format!(
                    "{} [{how}] p: ours {:e} scipy {:e} ({:?})",
                    c.name, r.p_value, c.ks_pvalue, r.method
                )
            });
        }
    }
    f.finish("ks_2samp", total);
}

#[test]
fn numeric_psi_matches_seed() {
    let doc = cases();
    let mut f = Failures::new();
    let mut total = 0;
    for c in &doc.numeric {
        for p in &c.psi {
            let params = stats::PsiParams {
                bins: p.bins,
                smoothing: p.smoothing,
            };
            let direct = stats::psi_numeric(&c.a, &c.b, &params).unwrap();
            let prep = stats::NumericReference::new(c.a.clone(), params).unwrap();
            let prepared = stats::compare_numeric(&prep, c.b.clone()).psi.unwrap();
            for (how, v) in [("psi_numeric", direct), ("compare_numeric", prepared)] {
                total += 1;
                f.track(v, p.value);
                f.check(stat_ok(v, p.value), || {
                    format!(
                        "{} [{how}] bins={} s={}: ours {v} seed {}",
                        c.name, p.bins, p.smoothing, p.value
                    )
                });
            }
        }
    }
    f.finish("psi", total);
}

#[test]
fn chi2_contingency_matches_scipy() {
    let doc = cases();
    let mut f = Failures::new();
    let mut total = 0;
    for c in &doc.categorical {
        let r = stats::CategoricalCounts::from_counts(c.reference.clone(), 0);
        let cur = stats::CategoricalCounts::from_counts(c.current.clone(), 0);
        let prep = stats::CategoricalReference::new(r.clone(), c.smoothing).unwrap();
        let cmp = stats::compare_categorical(&prep, &cur);
        let chi2 = cmp.chi2.expect("both sides have data");
        total += 5;
        f.track(chi2.statistic, c.chi2_statistic);
        f.track(chi2.p_value, c.chi2_pvalue);
        f.check(stat_ok(chi2.statistic, c.chi2_statistic), || {
            format!(
                "{} chi2: ours {} scipy {}",
                c.name, chi2.statistic, c.chi2_statistic
            )
        });
        f.check(p_ok(chi2.p_value, c.chi2_pvalue), || {
            format!(
                "{} p: ours {:e} scipy {:e}",
                c.name, chi2.p_value, c.chi2_pvalue
            )
        });
        f.check(chi2.dof == c.dof, || {
            format!("{} dof: ours {} scipy {}", c.name, chi2.dof, c.dof)
        });
        let want_v = c.cramers_v.unwrap_or(0.0);
        f.check(stat_ok(chi2.cramers_v, want_v), || {
            format!("{} V: ours {} scipy {want_v}", c.name, chi2.cramers_v)
        });
        let psi = stats::psi_categorical(&r, &cur, c.smoothing).unwrap();
        f.check(stat_ok(psi, c.psi) && cmp.psi == Some(psi), || {
            format!("{} psi: ours {psi} / {:?} numpy {}", c.name, cmp.psi, c.psi)
        });
    }
    f.finish("chi2_contingency", total);
}

#[test]
fn kstwo_and_chi2_survival_functions_match_scipy() {
    let doc = cases();
    let mut f = Failures::new();
    for c in &doc.kstwo {
        let ours = stats::kstwo_sf(c.d, c.n);
        f.track(ours, c.sf);
        f.check(p_ok(ours, c.sf), || {
            format!("kstwo.sf({}, {}): ours {ours:e} scipy {:e}", c.d, c.n, c.sf)
        });
    }
    for c in &doc.chi2_sf {
        let ours = stats::chi2_sf(c.x, c.dof);
        f.track(ours, c.sf);
        f.check(p_ok(ours, c.sf), || {
            format!(
                "chi2.sf({}, {}): ours {ours:e} scipy {:e}",
                c.x, c.dof, c.sf
            )
        });
    }
    f.finish("kstwo.sf + chi2.sf", doc.kstwo.len() + doc.chi2_sf.len());
}
