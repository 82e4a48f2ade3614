//! Kubernetes manifests as both sides of rollwave read them: the agent (renderer,
//! applier, tenancy checks) and the simulated API server its tests and demo run
//! against. Leaves only: nothing here does I/O or knows about fleets.
//!
//! - [`yaml`]: YAML documents parsed with budgets, errors with file and line;
//! - [`schema`]: the built-in schema (list merge keys and strategies, scopes);
//! - [`fieldset`]: managed-field sets, as server-side apply writes them;
//! - [`labels`]: label selectors;
//! - [`names`]: the object name rules (DNS labels and subdomains).

pub mod fieldset;
pub mod labels;
pub mod names;
pub mod schema;
pub mod yaml;
mod yaml_print;
