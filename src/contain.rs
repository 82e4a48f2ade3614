//! Containment of per-app work: rendering and planning an app run on a thread of their
//! own, with a stack size chosen on purpose and panics caught at the boundary, so a
//! defect reached by one app's input becomes that app's error instead of the death of
//! the process (and of every agent of the fleet that fetched the same commit).
//!
//! The input bounds (template and build limits) are the first line; this is the second,
//! for the defects nobody has found yet.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    /// Set on the threads [`contained`] starts, so work already contained runs inline.
    static ON_APP_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Stack of the thread that renders or plans one app: well above what the bounded
/// renderer needs at its nesting limits (it recurses once per template block, YAML
/// level and kustomization root), so a limit, not the stack, decides what is refused.
pub const APP_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Work that did not finish normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Contained {
    /// The work panicked; the message is the panic's.
    #[error(
        "internal error while {what}: {message}; this is a rollwave bug, please report it with the commit"
    )]
    Panicked {
        /// What was being done (`rendering apps/web for prod-1`).
        what: String,
        /// The panic message.
        message: String,
    },
    /// No thread could be started for it.
    #[error("cannot start a thread for {what}: {message}")]
    NoThread {
        /// What was to be done.
        what: String,
        /// The OS error.
        message: String,
    },
}

/// Runs `work` on a thread with an [`APP_STACK_BYTES`] stack and returns its result, or
/// [`Contained`] if it panicked. `what` describes the work for the error.
pub fn contained<T: Send>(what: &str, work: impl FnOnce() -> T + Send) -> Result<T, Contained> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("rollwave-app".into())
            .stack_size(APP_STACK_BYTES)
            .spawn_scoped(scope, move || {
                ON_APP_THREAD.with(|on| on.set(true));
                catch_unwind(AssertUnwindSafe(work))
            })
            .map_err(|e| Contained::NoThread {
                what: what.to_string(),
                message: e.to_string(),
            })?;
        match handle.join() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(payload)) | Err(payload) => Err(Contained::Panicked {
                what: what.to_string(),
                message: panic_message(payload.as_ref()),
            }),
        }
    })
}

/// [`contained`], unless the caller already runs on a contained thread, where `work`
/// runs inline: entry points that recurse deeply (a kustomize build) call this so their
/// depth limits, not the caller's stack, decide what is refused, without starting a
/// second thread inside a rendering.
pub fn on_app_stack<T: Send>(what: &str, work: impl FnOnce() -> T + Send) -> Result<T, Contained> {
    if ON_APP_THREAD.with(Cell::get) {
        Ok(work())
    } else {
        contained(what, work)
    }
}

/// Runs `work` on the caller's thread and returns its result, or [`Contained`] if it
/// panicked: for per-app work that does not recurse with its input (planning), where
/// a thread with its own stack would cost more than the work at every pass.
pub fn caught<T>(what: &str, work: impl FnOnce() -> T) -> Result<T, Contained> {
    catch_unwind(AssertUnwindSafe(work)).map_err(|payload| Contained::Panicked {
        what: what.to_string(),
        message: panic_message(payload.as_ref()),
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_naming_the_work() {
        let r: Result<(), _> = contained("rendering apps/web for prod-1", || panic!("boom"));
        assert_eq!(
            r.unwrap_err().to_string(),
            "internal error while rendering apps/web for prod-1: boom; this is a rollwave bug, please report it with the commit"
        );
    }

    #[test]
    fn a_panic_on_the_callers_thread_becomes_an_error_too() {
        let r: Result<(), _> = caught("planning apps/web for prod-1", || panic!("boom"));
        assert_eq!(
            r.unwrap_err().to_string(),
            "internal error while planning apps/web for prod-1: boom; this is a rollwave bug, please report it with the commit"
        );
        assert_eq!(caught("adding", || 1 + 1), Ok(2));
    }

    #[test]
    fn results_and_borrows_pass_through() {
        let data = [1, 2, 3];
        assert_eq!(contained("summing", || data.iter().sum::<i32>()), Ok(6));
    }

    #[test]
    fn deep_recursion_within_the_chosen_stack_does_not_overflow() {
        fn depth(n: u32) -> u32 {
            let pad = [0u8; 1024];
            if n == 0 {
                pad[0] as u32
            } else {
                1 + depth(n - 1) + (pad[n as usize % 1024] as u32)
            }
        }
        // 20,000 frames of at least 1 KiB: more than a default 2 MiB thread stack holds.
        assert_eq!(contained("recursing", || depth(20_000)), Ok(20_000));
    }
}
