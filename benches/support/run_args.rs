//! The command line of the benches that are not criterion benches, read as criterion reads
//! it, so `cargo bench`, `cargo bench -- --test` and `cargo test --all-targets` mean the same
//! for every bench. Included by path (`#[path = "support/run_args.rs"] mod run_args;`).

#[derive(Clone, Copy, PartialEq)]
pub enum Run {
    /// `cargo bench`: the measurement.
    Full,
    /// `cargo bench -- --test`, `cargo test --all-targets`: proves the bench works, small and
    /// fast (with `--features harness`, like the rest of the full suite).
    Quick,
}

/// What the command line asks for, read as criterion reads the same arguments (the drift bench
/// is a criterion bench): `--bench` without `--test` is the full run, anything else a quick
/// one; a positional argument filters by name (`--exact`, `--skip NAME` as in libtest);
/// `--list` lists. A quick run needs the `harness` feature, as the tests on the harness do.
/// `None`: nothing to run, said on stdout.
pub fn requested_run(name: &str) -> Option<Run> {
    // Options of criterion and libtest that take a value.
    const WITH_VALUE: &[&str] = &[
        "--color",
        "--format",
        "--save-baseline",
        "--baseline",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--plotting-backend",
        "--output-format",
        "--test-threads",
        "--logfile",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--skip" {
            skips.extend(rest.next());
        } else if WITH_VALUE.contains(&arg.as_str()) {
            rest.next();
        } else if !arg.starts_with('-') {
            filters.push(arg.as_str());
        }
    }
    if has("--list") {
        println!("{name}: benchmark");
        return None;
    }
    let selected = filters.iter().all(|f| {
        if has("--exact") {
            *f == name
        } else {
            name.contains(f)
        }
    }) && !skips.iter().any(|s| name.contains(s.as_str()))
        && !has("--ignored");
    if !selected {
        println!("{name}: filtered out by the arguments {args:?}");
        return None;
    }
    let run = if has("--bench") && !has("--test") {
        Run::Full
    } else {
        Run::Quick
    };
    // The benches that read their command line here run on the harness (the control plane,
    // Prometheus). A measurement is asked for by name and always runs; the quick check belongs
    // to the full suite, as the tests that need the harness do.
    if run == Run::Quick && !cfg!(feature = "harness") {
        println!("{name}: ignored, needs the harness (--features harness)");
        return None;
    }
    Some(run)
}
