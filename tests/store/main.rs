//! The store layer: one conformance suite over every store (memory, local
//! directory, the fault wrapper, S3), the fault wrapper's own faults, and
//! what only the local directory and S3 stores do. One test binary, so CI
//! links it once.

#[path = "../support/mod.rs"]
mod support;

mod conformance;
mod fault;
mod local;
mod s3;
mod s3_lost_answer;
mod s3_server;
mod s3_timeouts;
