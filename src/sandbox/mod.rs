//! The `sandbox` command: the operator composed with the embedded
//! Kubernetes API server and Quay (crates `kube-sandbox` and
//! `quay-sandbox`). It belongs to the binary, behind the `sandbox` feature:
//! the operator's library knows nothing of it.

pub mod cmd;
pub mod demo;
