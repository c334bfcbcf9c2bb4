//! The pure core: spec + status + observations + `now` in; desired children, new status,
//! Events and when to look again out. No I/O and no clock anywhere below this module.
//!
//! - [`decide`]: one reconcile's decision (validation, serving, the lifecycle, conditions,
//!   children).
//! - [`lifecycle`]: the state machine drift → retrain → evaluate → shadow → steps → promote or
//!   roll back.
//! - [`children`]: the Deployments, Services, Job and route the decision wants to exist.
//! - [`conditions`]: every condition type and reason, and how a condition is set.
//! - [`notify`]: which transitions are announced, what they carry, the documents sent.
//! - [`names`]: deterministic child names and labels.
//! - [`verdict`]: how one analysis measurement is judged, and the built-in metrics.

pub mod children;
pub mod conditions;
pub mod decide;
pub mod lifecycle;
pub mod names;
pub mod notify;
pub mod verdict;

#[cfg(test)]
mod layering {
    /// The core imports no adapter and no shell: it defines the types it needs and adapters
    /// convert into them. Production code only (test modules may build adapter errors).
    #[test]
    fn the_core_imports_no_adapter_or_shell() {
        const OUTSIDE: [&str; 13] = [
            "proxy",
            "registry",
            "advisor",
            "analysis",
            "drift",
            "controller",
            "mlflow",
            "metrics",
            "cli",
            "simulate",
            "leader",
            "server",
            "notify",
        ];
        let mut offenders = Vec::new();
        let mut stack = vec![std::path::PathBuf::from("src/core")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("src/core is readable") {
                let path = entry.expect("directory entry").path();
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                if path.is_dir() {
                    // Test modules (`tests/`, `proptests/`) may use the shell.
                    if name != "tests" && name != "proptests" {
                        stack.push(path);
                    }
                    continue;
                }
                if name == "tests.rs" || name == "proptests.rs" {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("source is readable");
                let production = text.split("#[cfg(test)]").next().unwrap_or_default();
                for module in OUTSIDE {
                    let import = format!("crate::{module}::");
                    if production
                        .lines()
                        .any(|l| !l.trim_start().starts_with("//") && l.contains(&import))
                    {
                        offenders.push(format!("{} uses {import}", path.display()));
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "{offenders:#?}");
    }
}
