//! The simulated controllers of a real cluster: [`workload`] drives them; each of the
//! others (Deployments and ReplicaSets, StatefulSets/DaemonSets/Jobs, Endpoints, the
//! kubelet, policy objects) reads and writes the store, sharing only [`common`].

pub mod common;
pub mod deployments;
pub(crate) mod endpoints;
pub mod kubelet;
pub(crate) mod policy;
pub(crate) mod sets;
pub mod workload;
