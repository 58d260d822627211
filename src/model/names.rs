//! Quay's own name rules, checked before any request is made.
//!
//! Organization and robot short names follow `util/validation.py` in Quay:
//! `^([a-z0-9]+(?:[._-][a-z0-9]+)*)$` and 2 to 255 characters. Repository
//! names follow `util/names.py`: `^[a-z0-9][.a-z0-9_-]{0,254}$`. The error
//! texts are Quay's own, so the embedded Quay answers with the same details.

use std::fmt;

/// The pattern Quay requires of organization (namespace) and robot names.
pub const NAMESPACE_PATTERN: &str = "^([a-z0-9]+(?:[._-][a-z0-9]+)*)$";
/// The pattern Quay requires of repository names.
pub const REPOSITORY_PATTERN: &str = r"^[a-z0-9][\.a-z0-9_-]{0,254}$";

/// What kind of name was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// An organization (Quay namespace).
    Organization,
    /// A robot account's short name (the part after `org+`).
    Robot,
    /// A repository name.
    Repository,
    /// A team name.
    Team,
    /// A user name.
    User,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Organization => "organization",
            NameKind::Robot => "robot",
            NameKind::Repository => "repository",
            NameKind::Team => "team",
            NameKind::User => "user",
        })
    }
}

/// Why a namespace-style name is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceNameProblem {
    /// Fewer than 2 or more than 255 characters.
    Length,
    /// Does not match [`NAMESPACE_PATTERN`].
    Pattern,
}

impl NamespaceNameProblem {
    /// Quay's own wording of the problem.
    pub fn quay_message(self) -> String {
        match self {
            NamespaceNameProblem::Length => {
                "Namespace must be between 2 and 255 characters in length".to_owned()
            }
            NamespaceNameProblem::Pattern => {
                format!("Namespace must match expression {NAMESPACE_PATTERN}")
            }
        }
    }
}

/// Checks an organization or robot short name. Quay checks length first.
pub fn check_namespace_name(name: &str) -> Result<(), NamespaceNameProblem> {
    let len = name.chars().count();
    if !(2..=255).contains(&len) {
        return Err(NamespaceNameProblem::Length);
    }
    // [a-z0-9]+ ([._-] [a-z0-9]+)*: alphanumeric runs separated by single separators.
    let mut previous_was_separator = true; // the name may not start with a separator
    for c in name.chars() {
        let alnum = c.is_ascii_lowercase() || c.is_ascii_digit();
        let separator = matches!(c, '.' | '_' | '-');
        if alnum {
            previous_was_separator = false;
        } else if separator && !previous_was_separator {
            previous_was_separator = true;
        } else {
            return Err(NamespaceNameProblem::Pattern);
        }
    }
    if previous_was_separator {
        return Err(NamespaceNameProblem::Pattern);
    }
    Ok(())
}

/// Checks a repository name against [`REPOSITORY_PATTERN`].
pub fn is_valid_repository_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return false;
    }
    name.len() <= 255
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// A name Quay would reject, with Quay's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Quay {kind} name {name:?}: {reason}")]
pub struct InvalidName {
    /// What kind of name it is.
    pub kind: NameKind,
    /// The name as given.
    pub name: String,
    /// Quay's wording of the rule it breaks.
    pub reason: String,
}

/// Validates a name of the given kind, with Quay's reason on failure.
pub fn validate(kind: NameKind, name: &str) -> Result<(), InvalidName> {
    let reason = match kind {
        NameKind::Organization | NameKind::Robot | NameKind::Team | NameKind::User => {
            check_namespace_name(name)
                .err()
                .map(NamespaceNameProblem::quay_message)
        }
        NameKind::Repository => (!is_valid_repository_name(name))
            .then(|| format!("Repository name must match expression {REPOSITORY_PATTERN}")),
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_follow_quay() {
        for ok in [
            "ab",
            "peerorg",
            "peer-org-dash",
            "openshift_e2e-demo",
            "a.b_c-d",
            "00",
            "a1",
        ] {
            assert_eq!(check_namespace_name(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(255);
        assert_eq!(check_namespace_name(&long), Ok(()));
        assert_eq!(
            check_namespace_name(&"a".repeat(256)),
            Err(NamespaceNameProblem::Length)
        );
        assert_eq!(check_namespace_name("a"), Err(NamespaceNameProblem::Length));
        assert_eq!(check_namespace_name(""), Err(NamespaceNameProblem::Length));
        for bad in [
            "PeerOrg", "org+x", "a--b", "_ns", "ns_", "-ab", "ab.", "a..b", "a b", "ä1", "a/b",
        ] {
            assert_eq!(
                check_namespace_name(bad),
                Err(NamespaceNameProblem::Pattern),
                "{bad}"
            );
        }
    }

    #[test]
    fn length_is_checked_before_pattern_like_quay() {
        // "A" is both too short and wrongly cased; Quay reports the length.
        assert_eq!(check_namespace_name("A"), Err(NamespaceNameProblem::Length));
    }

    #[test]
    fn repository_names_follow_quay() {
        for ok in ["repo1", "a", "0", "my.app_v2-x", "a-", "a..b"] {
            assert!(is_valid_repository_name(ok), "{ok}");
        }
        assert!(is_valid_repository_name(&"a".repeat(255)));
        for bad in ["", "Repo1", "-a", ".a", "_a", "a/b", "a b", "é"] {
            assert!(!is_valid_repository_name(bad), "{bad}");
        }
        assert!(!is_valid_repository_name(&"a".repeat(256)));
    }

    #[test]
    fn quay_messages_are_quay_wording() {
        assert_eq!(
            NamespaceNameProblem::Pattern.quay_message(),
            "Namespace must match expression ^([a-z0-9]+(?:[._-][a-z0-9]+)*)$"
        );
        let err = validate(NameKind::Robot, "Builder").unwrap_err();
        assert_eq!(err.kind, NameKind::Robot);
        assert!(err.to_string().contains("Builder"));
        assert!(validate(NameKind::Repository, "ok").is_ok());
        assert!(validate(NameKind::Organization, "openshift_demo").is_ok());
    }
}
