//! The mutating admission webhook for Builds: a pure decision, an HTTPS
//! endpoint, and certificates that reload when their files change.

pub mod decision;
pub mod registration;
pub mod selfmanaged;
pub mod server;
pub mod tls;
