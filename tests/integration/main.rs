//! Integration tests: the real client and servers over loopback.

// A failed expectation in a test is a panic by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod badconfig;
mod bootstrap;
mod builds;
mod chaos;
mod cli;
mod common;
mod harness;
mod kube_api;
mod kube_kubectl;
mod kube_openshift;
mod kube_recorded;
mod manifests;
mod operator;
mod quay_bootstrap_recorded;
mod quay_client;
mod quay_faults;
mod quay_recorded;
mod quay_registry;
mod quay_teams_recorded;
mod quay_tls;
mod rbac;
mod readme;
mod rotation;
mod safety;
mod secret_hygiene;
mod teams;
mod trust;
