//! Shared vocabulary: label and annotation names that the renderer writes and the
//! reconciler and planner read, so no two modules spell them differently.

/// Label marking every object rollwave manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "rollwave";
/// Label naming the app an object belongs to.
pub const APP_LABEL: &str = "rollwave.dev/app";
/// Annotation that makes the agent leave a live object alone.
pub const RECONCILE_ANNOTATION: &str = "rollwave.dev/reconcile";
/// Annotation that keeps an object from being pruned.
pub const PRUNE_ANNOTATION: &str = "rollwave.dev/prune";
