//! `rollwave ui` (DESIGN §7): a read-only web page of the fleet's rollouts and the
//! JSON API behind it, read from the repository and its status refs and updated live.
//! [`model`] builds the views (pure), [`load`] reads what they are built from, and
//! [`server`] serves them.

pub mod load;
pub mod model;
pub mod server;

pub use load::{Loader, Views};
pub use server::UiServer;

/// Where `rollwave ui` listens unless told otherwise: loopback only, since the page
/// has no authentication of its own (put it behind a proxy that has, to share it).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
