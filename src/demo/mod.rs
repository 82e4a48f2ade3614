//! The demo's parts that are not command-line handling: a real Prometheus launched to
//! scrape the simulated clusters' traffic, so the demo's analysis runs against the
//! real thing.

pub mod prometheus;
