//! The pure core: spec + status + observations + `now` in; desired children, new status,
//! Events and when to look again out. No I/O and no clock anywhere below this module.
//!
//! - [`decide`]: one reconcile's decision (validation, serving, the lifecycle, conditions,
//!   children).
//! - [`lifecycle`]: the state machine drift → retrain → evaluate → shadow → steps → promote or
//!   roll back.
//! - [`children`]: the Deployments, Services, Job and route the decision wants to exist.
//! - [`conditions`]: every condition type and reason, and how a condition is set.
//! - [`names`]: deterministic child names and labels.
//! - [`verdict`]: how one analysis measurement is judged, and the built-in metrics.

pub mod children;
pub mod conditions;
pub mod decide;
pub mod lifecycle;
pub mod names;
pub mod verdict;
