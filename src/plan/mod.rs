//! The rollout planner (DESIGN §4): waves, gates and the target release of every app on
//! every cluster, as pure functions of the repository, the peers' statuses and the
//! time. Every agent computes the same plan from the same inputs.

pub mod analysis;
pub mod decide;
pub mod history;
pub mod waves;

pub use decide::{
    AppPlan, Approval, Decision, GateState, PlanInput, Reason, Release, describe_gate, plan_app,
    release_gates, unrenderable_hash,
};
pub use waves::{batch_sizes, waves_for};
