//! `mlrollout drift profile`: the reference prepared once and written as a profile that checks
//! and the operator read instead of the raw reference.

use std::io::Write;
use std::process::ExitCode;

use super::{DriftArgs, build_request, current_thread_runtime, engine_for};
use crate::drift::engine::DriftProfile;

pub(super) fn run(args: &DriftArgs) -> ExitCode {
    match write_profile(args) {
        Ok(message) => {
            let _ = writeln!(std::io::stderr(), "{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "mlrollout drift profile: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_profile(args: &DriftArgs) -> Result<String, String> {
    super::super::install_crypto_provider();
    let out = args
        .out
        .as_ref()
        .ok_or("--out FILE is required: where to write the profile (JSON)")?;
    if !crate::drift::engine::is_profile_uri(&out.to_string_lossy()) {
        return Err(format!(
            "--out {}: a profile is a .json file (checks and the operator recognise a profile by that extension)",
            out.display()
        ));
    }
    if args.current.is_some() {
        return Err("a profile is made from --reference alone: drop --current".into());
    }
    let mut args = args.clone();
    // the check's current side is not read; the reference stands in for it
    args.current.clone_from(&args.reference);
    let (mut request, tracking_uri) = build_request(&args)?;
    request.current = request.reference.clone();
    request.labelled = None;
    let (engine, _) = engine_for(&args, &request, tracking_uri.as_deref())?;
    let prepared = current_thread_runtime()?
        .block_on(engine.prepare_reference(&request))
        .map_err(|e| e.to_string())?;
    let profile = DriftProfile::new(
        &prepared,
        &request.config,
        &request.reference.uri,
        args.exact_up_to,
    );
    let json =
        serde_json::to_vec(&profile).map_err(|e| format!("cannot write the profile: {e}"))?;
    std::fs::write(out, &json).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(format!(
        "profile of {} ({} rows, {} features) written to {} ({} bytes)",
        request.reference.uri,
        profile.rows,
        profile.features.len() + usize::from(profile.prediction.is_some()),
        out.display(),
        json.len()
    ))
}
