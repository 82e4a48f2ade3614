//! The rollout planner (DESIGN §4): waves, gates and the target release of every app on
//! every cluster. [`decide`], [`waves`] and [`analysis`] are pure functions of the
//! repository, the peers' statuses and the time, so every agent computes the same plan
//! from the same inputs; [`history`] gathers those inputs from Git (it reads commits
//! and renders each release).

pub mod analysis;
pub mod decide;
pub mod history;
pub mod waves;

pub use decide::{
    AppPlan, Approval, Decision, DependencyReadiness, GateState, PlanInput, Reason, Release,
    dependency_readiness, describe_gate, plan_app, readiness_of, release_gates, unrenderable_hash,
};
pub use waves::{batch_sizes, waves_for};
