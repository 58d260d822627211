//! Builds that escaped the Build webhook. Under OLM the webhook fails open
//! (`failurePolicy: Ignore`), so a Build created while the operator is
//! unreachable keeps its ImageStreamTag output and pushes to the
//! integrated registry. Such a Build is one the webhook would have
//! rewritten (or refused) now, not yet finished; it is reported, and, when
//! the integration opts in, cancelled and started again from its
//! BuildConfig so the webhook sends the new one to Quay.

use super::selection::{self, Manager};
use crate::config::{IntegrationConfig, IntegrationId};
use std::collections::BTreeMap;

/// What the webhook says, now, of the Build as it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It would pass unchanged: nothing escaped.
    Pass,
    /// It would be rewritten to push to Quay.
    Rewrite,
    /// It would be refused.
    Refuse,
}

/// What the escape check reads of a Build.
#[derive(Debug, Clone, Copy)]
pub struct EscapeFacts<'a> {
    /// The Build's namespace (from the apiserver).
    pub namespace: &'a str,
    /// Its annotations.
    pub annotations: &'a BTreeMap<String, String>,
    /// `status.phase`.
    pub phase: Option<&'a str>,
    /// `status.cancelled`.
    pub cancelled: bool,
    /// The BuildConfig it was started from (`status.config.name`).
    pub build_config: Option<&'a str>,
    /// The webhook's decision on it.
    pub admission: Admission,
}

/// What to do with a Build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscapeDecision {
    /// Not an escaped Build (or one already dealt with).
    None,
    /// Escaped: report it (Warning Event, status count).
    Report {
        /// The integration that manages its namespace.
        integration: IntegrationId,
        /// Why it is not rebuilt, for the Event.
        why_not_rebuilt: &'static str,
    },
    /// Escaped: start its BuildConfig again, record the new Build's name in
    /// `annotation`, then cancel this one.
    Rebuild {
        /// The integration that manages its namespace.
        integration: IntegrationId,
        /// The BuildConfig to instantiate.
        build_config: String,
        /// The annotation that records the new Build.
        annotation: String,
    },
    /// Escaped and already started again (the annotation names the new
    /// Build): cancel it.
    Cancel {
        /// The integration that manages its namespace.
        integration: IntegrationId,
    },
}

impl EscapeDecision {
    /// The integration an escaped Build counts against.
    pub fn integration(&self) -> Option<&IntegrationId> {
        match self {
            Self::None => None,
            Self::Report { integration, .. }
            | Self::Rebuild { integration, .. }
            | Self::Cancel { integration } => Some(integration),
        }
    }
}

/// Phases after which a Build no longer pushes.
const FINISHED: [&str; 4] = ["Complete", "Failed", "Error", "Cancelled"];

/// The annotation on an escaped Build naming the Build started in its place.
pub fn rebuilt_annotation(cfg: &IntegrationConfig) -> String {
    format!("{}/rebuilt-as", cfg.id.group.annotation_prefix())
}

/// Decides one Build.
pub fn plan_escape(build: &EscapeFacts<'_>, integrations: &[IntegrationConfig]) -> EscapeDecision {
    if build.admission == Admission::Pass
        || build.cancelled
        || build.phase.is_some_and(|p| FINISHED.contains(&p))
    {
        return EscapeDecision::None;
    }
    let Manager::One(cfg) = selection::manager(integrations, build.namespace) else {
        return EscapeDecision::None;
    };
    let integration = cfg.id.clone();
    let annotation = rebuilt_annotation(cfg);
    if build.annotations.contains_key(&annotation) {
        return EscapeDecision::Cancel { integration };
    }
    let why_not_rebuilt = if !cfg.rebuild_escaped {
        "spec.rebuildEscapedBuilds is off"
    } else if build.admission == Admission::Refuse {
        "the webhook would refuse it"
    } else if build.build_config.is_none() {
        "it has no BuildConfig to start again"
    } else {
        return EscapeDecision::Rebuild {
            integration,
            build_config: build.build_config.unwrap_or_default().to_owned(),
            annotation,
        };
    };
    EscapeDecision::Report {
        integration,
        why_not_rebuilt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config;

    fn integrations(rebuild: bool) -> Vec<IntegrationConfig> {
        let mut cfg = test_config("openshift", "");
        cfg.allow = vec!["team".into()];
        cfg.rebuild_escaped = rebuild;
        vec![cfg]
    }

    fn facts<'a>(annotations: &'a BTreeMap<String, String>) -> EscapeFacts<'a> {
        EscapeFacts {
            namespace: "team",
            annotations,
            phase: Some("Running"),
            cancelled: false,
            build_config: Some("app"),
            admission: Admission::Rewrite,
        }
    }

    #[test]
    fn a_running_build_the_webhook_would_rewrite_is_reported_or_rebuilt() {
        let none = BTreeMap::new();
        let off = plan_escape(&facts(&none), &integrations(false));
        assert!(
            matches!(
                off,
                EscapeDecision::Report {
                    why_not_rebuilt: "spec.rebuildEscapedBuilds is off",
                    ..
                }
            ),
            "{off:?}"
        );
        let on = plan_escape(&facts(&none), &integrations(true));
        assert_eq!(
            on,
            EscapeDecision::Rebuild {
                integration: integrations(true)[0].id.clone(),
                build_config: "app".into(),
                annotation: "quay-registry-operator.quay.redhat.com/rebuilt-as".into(),
            }
        );
        for phase in [None, Some("New"), Some("Pending")] {
            assert!(matches!(
                plan_escape(
                    &EscapeFacts {
                        phase,
                        ..facts(&none)
                    },
                    &integrations(true)
                ),
                EscapeDecision::Rebuild { .. }
            ));
        }
    }

    #[test]
    fn finished_cancelled_passing_or_unbridged_builds_are_not_escaped() {
        let none = BTreeMap::new();
        let base = facts(&none);
        let mut cases: Vec<EscapeFacts<'_>> = FINISHED
            .iter()
            .map(|p| EscapeFacts {
                phase: Some(p),
                ..base
            })
            .collect();
        cases.push(EscapeFacts {
            cancelled: true,
            ..base
        });
        cases.push(EscapeFacts {
            admission: Admission::Pass,
            ..base
        });
        cases.push(EscapeFacts {
            namespace: "elsewhere",
            ..base
        });
        for case in &cases {
            assert_eq!(
                plan_escape(case, &integrations(true)),
                EscapeDecision::None,
                "{case:?}"
            );
        }
        assert_eq!(plan_escape(&base, &[]), EscapeDecision::None);
    }

    #[test]
    fn a_refused_or_configless_build_is_only_reported() {
        let none = BTreeMap::new();
        let refused = plan_escape(
            &EscapeFacts {
                admission: Admission::Refuse,
                ..facts(&none)
            },
            &integrations(true),
        );
        assert!(matches!(
            refused,
            EscapeDecision::Report {
                why_not_rebuilt: "the webhook would refuse it",
                ..
            }
        ));
        let configless = plan_escape(
            &EscapeFacts {
                build_config: None,
                ..facts(&none)
            },
            &integrations(true),
        );
        assert!(matches!(
            configless,
            EscapeDecision::Report {
                why_not_rebuilt: "it has no BuildConfig to start again",
                ..
            }
        ));
        assert!(refused.integration().is_some());
        assert!(EscapeDecision::None.integration().is_none());
    }

    #[test]
    fn a_build_already_started_again_is_cancelled_not_started_twice() {
        let marked = BTreeMap::from([(
            "quay-registry-operator.quay.redhat.com/rebuilt-as".to_owned(),
            "app-2".to_owned(),
        )]);
        assert!(matches!(
            plan_escape(&facts(&marked), &integrations(true)),
            EscapeDecision::Cancel { .. }
        ));
        // Even if the integration has opted out since.
        assert!(matches!(
            plan_escape(&facts(&marked), &integrations(false)),
            EscapeDecision::Cancel { .. }
        ));
    }
}
