//! Quay's name rules as the embedded Quay enforces them, written from
//! Quay's own code and answers (`util/validation.py`, `util/names.py`, and
//! the recorded errors: "Namespace must be between 2 and 255 characters in
//! length", "Namespace must match expression …"), independently of the
//! operator's client, so the two cannot be wrong together.

use regex::Regex;
use std::sync::OnceLock;

/// `util/validation.py`'s namespace (organization, user, robot) pattern.
pub const NAMESPACE_PATTERN: &str = "^([a-z0-9]+(?:[._-][a-z0-9]+)*)$";
/// `util/names.py`'s repository pattern.
pub const REPOSITORY_PATTERN: &str = r"^[a-z0-9][\.a-z0-9_-]{0,254}$";

fn compiled(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

/// Why Quay refuses a namespace name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Quay checks the length first: 2 to 255 characters.
    Length,
    /// Then the pattern.
    Pattern,
}

impl Problem {
    /// Quay's text.
    pub fn quay_message(self) -> String {
        match self {
            Problem::Length => "Namespace must be between 2 and 255 characters in length".into(),
            Problem::Pattern => format!("Namespace must match expression {NAMESPACE_PATTERN}"),
        }
    }
}

/// Quay's check of an organization or robot short name.
pub fn check_namespace_name(name: &str) -> Result<(), Problem> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    if !(2..=255).contains(&name.chars().count()) {
        return Err(Problem::Length);
    }
    match compiled(&RE, NAMESPACE_PATTERN) {
        Some(re) if re.is_match(name) => Ok(()),
        _ => Err(Problem::Pattern),
    }
}

/// Quay's check of a repository name.
pub fn is_valid_repository_name(name: &str) -> bool {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    compiled(&RE, REPOSITORY_PATTERN).is_some_and(|re| re.is_match(name))
}

/// A repository or default-permission role, as Quay names it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pull.
    Read,
    /// Pull and push.
    Write,
    /// Everything, including permissions.
    Admin,
}

impl Role {
    /// Quay's name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    /// A role from Quay's name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quays_rules() {
        assert!(check_namespace_name("openshift_demo").is_ok());
        assert_eq!(check_namespace_name("a"), Err(Problem::Length));
        assert_eq!(check_namespace_name(&"a".repeat(256)), Err(Problem::Length));
        for bad in ["Upper", "a--b", "-a", "a-", "a b"] {
            assert_eq!(check_namespace_name(bad), Err(Problem::Pattern), "{bad}");
        }
        assert!(is_valid_repository_name("httpd-example"));
        assert!(is_valid_repository_name("a..b"));
        assert!(!is_valid_repository_name("_a") && !is_valid_repository_name("A"));
        assert!(!is_valid_repository_name(&"a".repeat(256)));
        assert_eq!(Role::parse("write"), Some(Role::Write));
        assert!(Role::Admin > Role::Write);
    }
}
