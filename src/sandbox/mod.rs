//! The sandbox: embedded stand-ins for the systems the operator talks to, so
//! the whole flow runs on a laptop and in tests.

pub mod cmd;
pub mod demo;
pub mod kube;
pub mod quay;
pub mod registry_client;
