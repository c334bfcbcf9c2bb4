//! Manual control through annotations, GitOps-safe: the operator never writes the spec, and
//! an annotation is acted on once (its value is recorded in `status.handledRequests`).
//!
//! The CLI writes `<action>@<timestamp>` values, so repeating a command is a new request.

use std::collections::BTreeMap;

/// Annotation prefix of every manual request.
pub const PREFIX: &str = "mlrollout.io/";
/// `mlrollout.io/pause: "true"` holds the rollout where it is (state, not an event).
pub const PAUSE: &str = "mlrollout.io/pause";
/// `mlrollout.io/promote: next|full[@nonce]`.
pub const PROMOTE: &str = "mlrollout.io/promote";
/// `mlrollout.io/abort: <nonce>`.
pub const ABORT: &str = "mlrollout.io/abort";
/// `mlrollout.io/retry: <nonce>`.
pub const RETRY: &str = "mlrollout.io/retry";
/// `mlrollout.io/retrain: <nonce>`.
pub const RETRAIN: &str = "mlrollout.io/retrain";
/// `mlrollout.io/resume: <nonce>`: lifts any pause, also one set by an inconclusive analysis.
pub const RESUME: &str = "mlrollout.io/resume";

/// A one-shot request found on the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    PromoteNext,
    PromoteFull,
    Abort,
    Retry,
    Retrain,
    Resume,
}

impl Request {
    pub fn annotation(&self) -> &'static str {
        match self {
            Request::PromoteNext | Request::PromoteFull => PROMOTE,
            Request::Abort => ABORT,
            Request::Retry => RETRY,
            Request::Retrain => RETRAIN,
            Request::Resume => RESUME,
        }
    }
}

/// Manual input of one reconcile: whether paused, and the new one-shot requests (with the
/// annotation values to record as handled), in a fixed order: abort first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManualInput {
    pub paused: bool,
    pub requests: Vec<(Request, String)>,
}

/// Reads the manual input from annotations, skipping requests already handled.
pub fn read(
    annotations: &BTreeMap<String, String>,
    handled: &BTreeMap<String, String>,
) -> ManualInput {
    let paused = annotations
        .get(PAUSE)
        .is_some_and(|v| matches!(v.trim(), "true" | "True" | "yes" | "1"));
    let mut requests = Vec::new();
    let fresh = |key: &str| {
        annotations
            .get(key)
            .filter(|value| handled.get(key) != Some(*value))
            .cloned()
    };
    if let Some(v) = fresh(ABORT) {
        requests.push((Request::Abort, v));
    }
    if let Some(v) = fresh(RESUME) {
        requests.push((Request::Resume, v));
    }
    if let Some(v) = fresh(RETRY) {
        requests.push((Request::Retry, v));
    }
    if let Some(v) = fresh(PROMOTE) {
        let action = v.split('@').next().unwrap_or("").trim();
        let request = if action == "full" {
            Request::PromoteFull
        } else {
            Request::PromoteNext
        };
        requests.push((request, v));
    }
    if let Some(v) = fresh(RETRAIN) {
        requests.push((Request::Retrain, v));
    }
    ManualInput { paused, requests }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn requests_are_read_once() {
        let annotations = map(&[(PROMOTE, "full@t1"), (ABORT, "t2"), (PAUSE, "true")]);
        let input = read(&annotations, &BTreeMap::new());
        assert!(input.paused);
        assert_eq!(
            input.requests,
            vec![
                (Request::Abort, "t2".into()),
                (Request::PromoteFull, "full@t1".into())
            ]
        );
        let handled = map(&[(PROMOTE, "full@t1"), (ABORT, "t2")]);
        assert!(read(&annotations, &handled).requests.is_empty());
        let again = map(&[(PROMOTE, "next@t3")]);
        assert_eq!(
            read(&again, &handled).requests,
            vec![(Request::PromoteNext, "next@t3".into())]
        );
    }
}
