//! The QuayIntegration controller (both API groups): validates the spec,
//! watches the credentials Secret, checks Quay and the token, reports
//! conditions and namespace counts, re-reconciles namespaces when the spec
//! changes, and releases namespace finalizers when it is deleted.

use super::context::{IntegrationContext, TokenCheck, token_fingerprint};
use super::error::Error;
use crate::config::{
    ApiGroup, ConfigError, INTEGRATION_FINALIZER, IntegrationConfig, from_current, from_legacy,
};
use crate::crd::{LegacyQuayIntegration, QuayIntegration, QuayIntegrationStatus};
use crate::plan::status::{self, transition_events};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch};
use kube::core::ClusterResourceScope;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;

const CONTROLLER: &str = "quayintegration";

/// What both QuayIntegration kinds offer the controller.
pub trait IntegrationResource:
    Resource<DynamicType = (), Scope = ClusterResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The validated configuration.
    fn config(&self) -> Result<IntegrationConfig, ConfigError>;
    /// The current status.
    fn status(&self) -> Option<&QuayIntegrationStatus>;
    /// The API group.
    fn api_group() -> ApiGroup;
}

impl IntegrationResource for QuayIntegration {
    fn config(&self) -> Result<IntegrationConfig, ConfigError> {
        from_current(self)
    }
    fn status(&self) -> Option<&QuayIntegrationStatus> {
        self.status.as_ref()
    }
    fn api_group() -> ApiGroup {
        ApiGroup::Current
    }
}

impl IntegrationResource for LegacyQuayIntegration {
    fn config(&self) -> Result<IntegrationConfig, ConfigError> {
        from_legacy(self)
    }
    fn status(&self) -> Option<&QuayIntegrationStatus> {
        self.status.as_ref()
    }
    fn api_group() -> ApiGroup {
        ApiGroup::Legacy
    }
}

/// Reconciles one QuayIntegration.
pub(crate) async fn reconcile<K: IntegrationResource>(
    qi: Arc<K>,
    ctx: Arc<IntegrationContext>,
) -> Result<Action, kube::runtime::finalizer::Error<Error>> {
    let api: Api<K> = Api::all(ctx.client.clone());
    let result = finalizer(&api, INTEGRATION_FINALIZER, qi, |event| async {
        match event {
            FinalizerEvent::Apply(qi) => apply(qi.as_ref(), &ctx).await,
            FinalizerEvent::Cleanup(_) => {
                // Without this integration its namespaces are no longer
                // selected: their reconcile releases the finalizers and keeps
                // the organizations.
                ctx.resync.all();
                Ok(Action::await_change())
            }
        }
    })
    .await;
    ctx.metrics.reconciled(CONTROLLER, result.is_ok());
    result
}

/// Retries with the integration's own backoff.
pub(crate) fn error_policy<K: IntegrationResource>(
    qi: Arc<K>,
    err: &kube::runtime::finalizer::Error<Error>,
    ctx: Arc<IntegrationContext>,
) -> Action {
    let category = match err {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e.category(),
        _ => super::error::Category::Kubernetes,
    };
    ctx.metrics.failed(CONTROLLER, category);
    Action::requeue(ctx.backoff.next(&format!("qi/{}", qi.name_any())))
}

async fn apply<K: IntegrationResource>(
    qi: &K,
    ctx: &Arc<IntegrationContext>,
) -> Result<Action, Error> {
    let name = qi.name_any();
    // The UID keys what this replica knows of the object: without one
    // (never from a real apiserver) there is nothing to key it by.
    let Some(uid) = qi.uid() else {
        return Err(Error::Internal(format!(
            "QuayIntegration {name} has no UID"
        )));
    };
    let generation = qi.meta().generation;
    let previous: Vec<Condition> = qi
        .status()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let changed = ctx
        .integrations
        .generation_changed(&uid, generation.unwrap_or_default());
    if changed {
        // The spec changed (or this replica sees it for the first time):
        // every namespace it may select is reconciled again.
        ctx.resync.all();
    }
    let status = match qi.config() {
        Err(e) => status::invalid(&e.to_string(), generation, &previous),
        Ok(cfg) => {
            ctx.quay
                .watch_credentials(&cfg.credentials.namespace, &cfg.credentials.name);
            let regarding = qi.object_ref(&());
            let check = match super::credentials::ensure(&cfg, ctx, &regarding).await {
                Some(decided) => decided,
                None => {
                    let check = check_quay(&cfg, ctx).await;
                    if check.rejected {
                        // A password may be held: mint again right away.
                        super::credentials::ensure(&cfg, ctx, &regarding)
                            .await
                            .unwrap_or(check)
                    } else {
                        check
                    }
                }
            };
            status::status(
                &check,
                &ctx.outcomes.counts(&cfg.id),
                cfg.quay_url.as_str(),
                generation,
                &previous,
                status::Extras {
                    team_sync: cfg
                        .team_sync
                        .is_some()
                        .then(|| ctx.team_sync_status(&cfg.id)),
                    escaped_builds: u32::try_from(ctx.escaped.count(Some(&cfg.id)))
                        .unwrap_or(u32::MAX),
                    robot_tokens: robot_tokens(&cfg, ctx),
                },
            )
        }
    };
    if qi.status() != Some(&status) {
        for (warning, reason, note) in transition_events(&previous, &status.conditions) {
            ctx.events
                .publish(&qi.object_ref(&()), warning, &reason, "Reconcile", note)
                .await;
        }
        let api: Api<K> = Api::all(ctx.client.clone());
        api.patch_status(
            &name,
            &super::patch_params(),
            &Patch::Merge(status_patch(&status)),
        )
        .await?;
    }
    Ok(Action::requeue(ctx.status_interval))
}

/// The robot tokens' status, and the age metric from it.
fn robot_tokens(
    cfg: &IntegrationConfig,
    ctx: &IntegrationContext,
) -> Option<crate::crd::RobotTokenStatus> {
    let status = ctx.rotations.status(cfg)?;
    if let Some(oldest) = &status.oldest_token_created {
        let age = jiff::Timestamp::now().duration_since(oldest.0).as_secs();
        ctx.metrics
            .set_robot_token_age(&cfg.id.to_string(), age.max(0));
    }
    Some(status)
}

/// The merge patch that makes the stored status equal `status`: a cleared
/// `lastError` is sent as null, or the stale one would stay (and every
/// later comparison would differ, patching forever).
fn status_patch(status: &QuayIntegrationStatus) -> serde_json::Value {
    let mut body = serde_json::json!({ "status": status });
    if let Some(s) = body.get_mut("status").and_then(|s| s.as_object_mut()) {
        s.entry("lastError").or_insert(serde_json::Value::Null);
    }
    body
}

/// How long a token check is trusted before Quay is asked again.
const TOKEN_CHECK_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Checks the token against Quay, at most once a minute per token.
async fn check_quay(cfg: &IntegrationConfig, ctx: &Arc<IntegrationContext>) -> TokenCheck {
    if ctx.quay.is_down(cfg) {
        return TokenCheck::quay_down(format!("Quay at {} does not answer", cfg.quay_url));
    }
    let client = match ctx.quay.client(cfg).await {
        Ok(c) => c,
        Err(Error::Credentials(m)) => return TokenCheck::unusable("SecretMissing", m),
        Err(Error::QuayDown(u)) => {
            return TokenCheck::quay_down(format!("Quay at {u} does not answer"));
        }
        Err(e) => return TokenCheck::unusable("ClientError", e.to_string()),
    };
    let key = match ctx.quay.token(&cfg.credentials).await {
        Ok(t) => format!("{}|{:x}", cfg.quay_url, token_fingerprint(&t)),
        Err(_) => String::new(),
    };
    if let Some(check) = ctx.integrations.token_check(&key, TOKEN_CHECK_TTL) {
        return check;
    }
    let was_rejected = client.token_rejected();
    let answer = client.current_user().await;
    if answer.is_ok() && was_rejected {
        // Quay accepts it again (its user re-enabled): namespaces resume.
        tracing::info!(integration = %cfg.id, "Quay accepts the token again");
        ctx.resync.all();
    }
    if let Err(e) = &answer
        && matches!(
            e.category(),
            crate::quay::Category::Unavailable | crate::quay::Category::RateLimited
        )
    {
        ctx.quay.failed(cfg, &client);
        return TokenCheck::quay_down(e.to_string());
    }
    let check = token_check(cfg.quay_url.as_str(), answer);
    ctx.integrations.remember_token_check(key, check.clone());
    check
}

/// What Quay's answer to the token probe says.
fn token_check(
    quay_url: &str,
    answer: Result<crate::quay::types::User, crate::quay::QuayError>,
) -> TokenCheck {
    match answer {
        Ok(user) => TokenCheck::answered(
            true,
            "TokenAccepted",
            format!("the token belongs to Quay user {}", user.username),
            quay_url,
        ),
        Err(e) => match e.category() {
            crate::quay::Category::Auth => TokenCheck {
                rejected: e.is_dead_token(),
                ..TokenCheck::answered(
                    false,
                    "TokenRejected",
                    format!(
                        "Quay refuses the token (revoked, expired, its user disabled or deleted, or without the user:read scope); no Quay calls are made with it until it works again: {e}"
                    ),
                    quay_url,
                )
            },
            crate::quay::Category::Protocol => TokenCheck::not_quay(quay_url, &e.to_string()),
            _ => TokenCheck {
                reach_msg: e.to_string(),
                ..TokenCheck::answered(false, "Unexpected", e.to_string(), quay_url)
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::status::condition;

    fn c(kind: &str, ok: bool, reason: &str) -> Condition {
        condition(kind, ok, reason, format!("{kind} {reason}"), Some(1), &[])
    }

    fn reasons(events: &[(bool, String, String)]) -> Vec<(bool, &str)> {
        events.iter().map(|(w, r, _)| (*w, r.as_str())).collect()
    }

    #[test]
    fn a_failing_check_warns_once_with_its_own_reason() {
        let healthy = vec![
            c("Ready", true, "Converged"),
            c("CredentialsValid", true, "TokenAccepted"),
            c("QuayReachable", true, "Answering"),
            c("Conflict", false, "NoConflict"),
        ];
        let missing = vec![
            c("Ready", false, "NotReady"),
            c("CredentialsValid", false, "SecretMissing"),
            c("QuayReachable", false, "Unknown"),
            c("Conflict", false, "NoConflict"),
        ];
        let events = transition_events(&healthy, &missing);
        assert_eq!(reasons(&events), vec![(true, "SecretMissing")]);
        assert_eq!(events[0].2, "CredentialsValid SecretMissing");
        // Unchanged: nothing more.
        assert!(transition_events(&missing, &missing).is_empty());
        // A new reason for the same failure warns again.
        let rejected = vec![
            c("Ready", false, "NotReady"),
            c("CredentialsValid", false, "TokenRejected"),
            c("QuayReachable", true, "Answering"),
        ];
        assert_eq!(
            reasons(&transition_events(&missing, &rejected)),
            vec![(true, "TokenRejected")]
        );
        // Fixed: one Normal Ready.
        assert_eq!(
            reasons(&transition_events(&rejected, &healthy)),
            vec![(false, "Ready")]
        );
    }

    #[test]
    fn a_cleared_last_error_is_removed_by_the_patch() {
        let status = QuayIntegrationStatus {
            last_error: None,
            ..Default::default()
        };
        assert_eq!(
            status_patch(&status)["status"]["lastError"],
            serde_json::Value::Null
        );
        assert!(
            status_patch(&status)["status"]
                .as_object()
                .is_some_and(|s| s.contains_key("lastError"))
        );
        let failing = QuayIntegrationStatus {
            last_error: Some("ns: boom".into()),
            ..Default::default()
        };
        assert_eq!(status_patch(&failing)["status"]["lastError"], "ns: boom");
    }

    #[test]
    fn first_status_and_invalid_specs() {
        // A first healthy status is one Normal Ready: `oc describe` shows
        // when the integration started to work.
        let healthy = vec![
            c("Ready", true, "Converged"),
            c("CredentialsValid", true, "TokenAccepted"),
        ];
        assert_eq!(
            reasons(&transition_events(&[], &healthy)),
            vec![(false, "Ready")]
        );
        // Staying healthy is not news.
        assert!(transition_events(&healthy, &healthy).is_empty());
        // A first failing one is, once per reason.
        let invalid = vec![
            c("Ready", false, "InvalidSpec"),
            c("CredentialsValid", false, "InvalidSpec"),
            c("QuayReachable", false, "InvalidSpec"),
            c("Conflict", false, "InvalidSpec"),
        ];
        assert_eq!(
            reasons(&transition_events(&[], &invalid)),
            vec![(true, "InvalidSpec")]
        );
        // Quay down: the reachability check speaks, not Ready.
        let down = vec![
            c("Ready", false, "NotReady"),
            c("CredentialsValid", true, "Unknown"),
            c("QuayReachable", false, "Unavailable"),
        ];
        assert_eq!(
            reasons(&transition_events(&healthy, &down)),
            vec![(true, "Unavailable")]
        );
        // Only namespaces failing: Ready itself explains.
        let failing = vec![
            c("Ready", false, "NotReady"),
            c("CredentialsValid", true, "TokenAccepted"),
            c("QuayReachable", true, "Answering"),
        ];
        assert_eq!(
            reasons(&transition_events(&healthy, &failing)),
            vec![(true, "NotReady")]
        );
        // A conflict is reported by its own condition and namespace Events.
        let conflict = vec![c("Conflict", true, "NamespacesInConflict")];
        assert!(transition_events(&[], &conflict).is_empty());
    }
}
