//! Pure decisions: which namespaces, which names, who owns an
//! organization, and what to change in Quay and Kubernetes. No I/O here;
//! the controllers read, call these, apply, and report.

pub mod credentials;
pub mod escape;
pub mod import;
pub mod metadata;
pub mod names;
pub mod namespace;
pub mod patch;
pub mod resync;
pub mod rotation;
pub mod selection;
pub mod status;
pub mod teams;
pub mod view;

/// `1 namespace`, `2 namespaces`: a count with its noun, for messages.
pub fn count_of(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}
