//! Discord adapter.

pub mod routes;
