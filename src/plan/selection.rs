//! Which namespaces an integration bridges (the upstream operator's exact
//! rules), and which integration manages a namespace.

use crate::config::{IntegrationConfig, IntegrationId};

/// Namespaces never bridged unless allow-listed.
pub const BUILTIN_DENY: &[&str] = &["default", "openshift", "management-infra"];
/// Namespace prefixes never bridged unless allow-listed.
pub const BUILTIN_DENY_PREFIXES: &[&str] = &["openshift-", "kube-"];

/// The deny list wins; an allow-listed namespace is selected; the built-in
/// system namespaces are not; anything else only when the allow list is
/// empty.
pub fn is_selected(allow: &[String], deny: &[String], namespace: &str) -> bool {
    if deny.iter().any(|d| d == namespace) {
        return false;
    }
    if allow.iter().any(|a| a == namespace) {
        return true;
    }
    if BUILTIN_DENY.contains(&namespace)
        || BUILTIN_DENY_PREFIXES
            .iter()
            .any(|p| namespace.starts_with(p))
    {
        return false;
    }
    allow.is_empty()
}

/// Who manages a namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum Manager<'a> {
    /// No integration selects it.
    None,
    /// Exactly one does.
    One(&'a IntegrationConfig),
    /// Several do: it is left alone and they all report the conflict.
    Conflict(Vec<IntegrationId>),
}

/// Decides who manages `namespace` among valid integrations.
pub fn manager<'a>(integrations: &'a [IntegrationConfig], namespace: &str) -> Manager<'a> {
    let selecting: Vec<&IntegrationConfig> = integrations
        .iter()
        .filter(|i| is_selected(&i.allow, &i.deny, namespace))
        .collect();
    match selecting.as_slice() {
        [] => Manager::None,
        [one] => Manager::One(one),
        many => {
            let mut ids: Vec<IntegrationId> = many.iter().map(|i| i.id.clone()).collect();
            ids.sort();
            Manager::Conflict(ids)
        }
    }
}

/// Whether a namespace is held as it is: no valid integration manages it,
/// it still carries our finalizer or label, and an integration fails
/// validation (it may be the one that selected it). Nothing is released,
/// cleaned up or written until that integration is valid again or deleted:
/// an invalid edit must not orphan organizations.
pub fn held(manager: &Manager<'_>, invalid: &[IntegrationId], bridged: bool) -> bool {
    matches!(manager, Manager::None) && bridged && !invalid.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn only_an_invalid_integration_holds_a_bridged_namespace_no_one_manages() {
        let cfg = crate::config::test_config("openshift", "");
        let id = cfg.id.clone();
        let one = [cfg];
        let invalid = [id];
        for (manager, invalid, bridged, expected) in [
            (Manager::None, &invalid[..], true, true),
            (Manager::None, &invalid[..], false, false),
            (Manager::None, &[][..], true, false),
            (Manager::One(&one[0]), &invalid[..], true, false),
            (Manager::Conflict(vec![]), &invalid[..], true, false),
        ] {
            assert_eq!(
                held(&manager, invalid, bridged),
                expected,
                "{bridged} {invalid:?}"
            );
        }
    }

    #[test]
    fn upstream_rules_exhaustively() {
        // (allow, deny, namespace, selected)
        let cases: &[(&[&str], &[&str], &str, bool)] = &[
            (&[], &[], "team-a", true),
            (&[], &[], "default", false),
            (&[], &[], "openshift", false),
            (&[], &[], "management-infra", false),
            (&[], &[], "openshift-operators", false),
            (&[], &[], "kube-system", false),
            (&[], &[], "kube", true),
            (&[], &[], "openshiftx", true),
            (&[], &["team-a"], "team-a", false),
            (&["team-a"], &[], "team-a", true),
            (&["team-a"], &[], "team-b", false),
            (&["team-a"], &["team-a"], "team-a", false),
            (&["default"], &[], "default", true),
            (&["kube-system"], &[], "kube-system", true),
            (
                &["openshift-foo"],
                &["openshift-foo"],
                "openshift-foo",
                false,
            ),
            (&["x"], &[], "openshift-foo", false),
            (&[], &["other"], "default", false),
        ];
        for (allow, deny, ns, expected) in cases {
            assert_eq!(
                is_selected(&v(allow), &v(deny), ns),
                *expected,
                "allow={allow:?} deny={deny:?} ns={ns}"
            );
        }
    }
}
