//! `rollwave demo`'s story ([`story`]: simulated clusters, their agents, a good change,
//! a bad one and its revert, each expectation checked) and what it runs beside the
//! clusters: a real Prometheus scraping their traffic ([`prometheus`]).

pub mod prometheus;
pub mod story;
