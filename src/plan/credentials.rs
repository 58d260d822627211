//! The Quay credentials: when to mint a token from a username and
//! password, when to renew it, what it may do (its scopes), where it comes
//! from in Quay (an organization and OAuth application of this cluster),
//! and what the credentials Secret becomes.

use crate::config::IntegrationConfig;
use crate::model::names::{self, InvalidName, NameKind};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use std::time::Duration;

/// Data key of the Quay user a token is minted for.
pub const USERNAME_KEY: &str = "username";
/// Data key of that user's password.
pub const PASSWORD_KEY: &str = "password";
/// When the minted token expires (RFC 3339).
pub const TOKEN_EXPIRES_ANNOTATION: &str = "quay.redhat.com/token-expires-at";
/// The minted token's id in Quay's tokens API (to renew and delete it).
pub const TOKEN_UUID_ANNOTATION: &str = "quay.redhat.com/token-uuid";
/// `<organization>/<client_id>` of the OAuth application that minted it.
pub const TOKEN_APPLICATION_ANNOTATION: &str = "quay.redhat.com/token-application";

/// The name minted tokens carry in Quay's tokens list.
pub const TOKEN_NAME: &str = "quay-bridge-operator";

/// The scopes the operator's token needs, each for a reason the README
/// lists: `org:admin` (robots, default permissions, teams, the OAuth
/// application's tokens), `repo:admin` (repository permissions and
/// visibility, deletes), `repo:create` (repositories), `repo:read` and
/// `repo:write` (what `repo:admin` grants, named for Quays that do not
/// imply them), `user:admin` (creating organizations), `user:read` (the
/// token probe `GET /api/v1/user/`). Team sync adds nothing: it calls team
/// and member endpoints, which `org:admin` covers, and never looks users
/// up through the superuser API.
pub const SCOPES: &[&str] = &[
    "org:admin",
    "repo:admin",
    "repo:create",
    "repo:read",
    "repo:write",
    "user:admin",
    "user:read",
];

/// The organization holding this cluster's OAuth application:
/// `<prefix><clusterID>-bridge`. A namespace's organization always has an
/// `_` after the cluster ID, so the two never meet.
pub fn organization(cfg: &IntegrationConfig) -> Result<String, InvalidName> {
    let org = format!(
        "{}{}-bridge",
        cfg.organization_prefix,
        cfg.cluster_id.to_ascii_lowercase()
    );
    names::validate(NameKind::Organization, &org)?;
    Ok(org)
}

/// The OAuth application's name.
pub fn application_name(cfg: &IntegrationConfig) -> String {
    format!("quay-bridge-operator-{}", cfg.cluster_id)
}

const APP_MARKER_PREFIX: &str = "managed by quay-bridge-operator; bootstrap;";

/// The application's description: which cluster minted with it.
pub fn application_marker(cluster_id: &str, cluster_uid: &str) -> String {
    format!("{APP_MARKER_PREFIX} cluster={cluster_id}; cluster-uid={cluster_uid}")
}

/// Whether an application's description is this cluster's marker.
pub fn is_our_application(description: &str, cluster_uid: &str) -> bool {
    description
        .strip_prefix(APP_MARKER_PREFIX)
        .is_some_and(|rest| {
            rest.split(';')
                .any(|p| p.trim() == format!("cluster-uid={cluster_uid}"))
        })
}

/// What the credentials Secret holds, as the decision needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CredentialsView {
    /// A non-empty token under the integration's key.
    pub has_token: bool,
    /// Quay answered the token as dead (its client stopped calling).
    pub token_rejected: bool,
    /// A non-empty `username` and `password`.
    pub has_password: bool,
    /// What the operator recorded when it minted the token.
    pub minted: Option<MintedRecord>,
}

/// The annotations of a minted token.
#[derive(Debug, Clone, PartialEq)]
pub struct MintedRecord {
    /// When it expires.
    pub expires_at: jiff::Timestamp,
    /// Its id in the tokens API; `None` for a token from
    /// `/oauth/authorizeapp` (not renewable with itself).
    pub uuid: Option<String>,
    /// `(organization, client_id)` of its application.
    pub application: Option<(String, String)>,
}

impl MintedRecord {
    /// Reads the annotations; `None` when the token was not minted here
    /// (or the annotations are unreadable: then it is treated as a token
    /// someone put there).
    pub fn from_annotations(
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Option<MintedRecord> {
        let expires_at = annotations
            .get(TOKEN_EXPIRES_ANNOTATION)?
            .parse::<jiff::Timestamp>()
            .ok()?;
        Some(MintedRecord {
            expires_at,
            uuid: annotations.get(TOKEN_UUID_ANNOTATION).cloned(),
            application: annotations
                .get(TOKEN_APPLICATION_ANNOTATION)
                .and_then(|a| a.split_once('/'))
                .map(|(o, c)| (o.to_owned(), c.to_owned())),
        })
    }
}

/// Why a token is minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MintReason {
    /// The Secret holds no token, only a username and password.
    NoToken,
    /// Quay stopped accepting the token and the password is still held.
    Rejected,
    /// The minted token expired (the operator was down past its renewal).
    Expired,
}

impl MintReason {
    /// For messages and Events.
    pub fn describe(self) -> &'static str {
        match self {
            MintReason::NoToken => "the Secret holds a username and password but no token",
            MintReason::Rejected => "Quay no longer accepts the token",
            MintReason::Expired => "the token expired",
        }
    }
}

/// What to do with the credentials.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialsAction {
    /// Use the token as it is.
    Use,
    /// Sign in with the password and mint a token.
    Mint(MintReason),
    /// Mint a successor with the token itself, then delete it.
    Renew {
        /// `(organization, client_id)` of the application.
        application: (String, String),
        /// The token's id, deleted once the successor is in the Secret.
        uuid: String,
    },
    /// Nothing works and nothing can be done here; the message says what
    /// a person must do.
    Stuck(String),
}

/// Decides what to do with the credentials at `now`.
pub fn decide(
    view: &CredentialsView,
    now: jiff::Timestamp,
    lifetime: Duration,
) -> CredentialsAction {
    let secret_fix = "put a new token (or a username and password) in the credentials Secret";
    if !view.has_token {
        return if view.has_password {
            CredentialsAction::Mint(MintReason::NoToken)
        } else {
            CredentialsAction::Stuck(format!("no token and no username/password: {secret_fix}"))
        };
    }
    let expired = view.minted.as_ref().is_some_and(|m| now >= m.expires_at);
    if view.token_rejected || expired {
        let reason = if expired {
            MintReason::Expired
        } else {
            MintReason::Rejected
        };
        return if view.has_password {
            CredentialsAction::Mint(reason)
        } else {
            CredentialsAction::Stuck(format!("{}: {secret_fix}", reason.describe()))
        };
    }
    if let Some(MintedRecord {
        expires_at,
        uuid: Some(uuid),
        application: Some(application),
    }) = &view.minted
    {
        let third = jiff::SignedDuration::from_secs(
            i64::try_from(lifetime.as_secs() / 3).unwrap_or(i64::MAX),
        );
        let renew_from = expires_at.checked_sub(third).unwrap_or(*expires_at);
        if now >= renew_from {
            return CredentialsAction::Renew {
                application: application.clone(),
                uuid: uuid.clone(),
            };
        }
    }
    CredentialsAction::Use
}

/// What was minted, to be written into the Secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Minted {
    /// When it expires.
    pub expires_at: jiff::Timestamp,
    /// Its id in the tokens API.
    pub uuid: Option<String>,
    /// `(organization, client_id)` of its application.
    pub application: (String, String),
}

/// The credentials Secret with a minted token: the token under `key`, the
/// annotations renewal reads, and — unless kept — no password. Everything
/// else in it is left as it is; written with its resourceVersion, so a
/// Secret someone changed meanwhile is not overwritten.
pub fn with_token(
    secret: &Secret,
    key: &str,
    token: &str,
    minted: &Minted,
    drop_password: bool,
) -> Secret {
    let mut updated = secret.clone();
    // `stringData` is write-only; what is read back is `data`.
    updated.string_data = None;
    let data = updated.data.get_or_insert_with(Default::default);
    data.insert(key.to_owned(), ByteString(token.as_bytes().to_vec()));
    if drop_password {
        data.remove(PASSWORD_KEY);
    }
    let annotations = updated
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(
        TOKEN_EXPIRES_ANNOTATION.to_owned(),
        minted.expires_at.to_string(),
    );
    match &minted.uuid {
        Some(uuid) => annotations.insert(TOKEN_UUID_ANNOTATION.to_owned(), uuid.clone()),
        None => annotations.remove(TOKEN_UUID_ANNOTATION),
    };
    let (org, client_id) = &minted.application;
    annotations.insert(
        TOKEN_APPLICATION_ANNOTATION.to_owned(),
        format!("{org}/{client_id}"),
    );
    updated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    const DAY: Duration = Duration::from_secs(86_400);

    fn minted(expires: &str, uuid: Option<&str>) -> Option<MintedRecord> {
        Some(MintedRecord {
            expires_at: ts(expires),
            uuid: uuid.map(str::to_owned),
            application: Some(("c-bridge".into(), "CID".into())),
        })
    }

    #[test]
    fn a_password_without_a_token_mints() {
        let view = CredentialsView {
            has_password: true,
            ..Default::default()
        };
        assert_eq!(
            decide(&view, ts("2026-12-01T00:00:00Z"), 30 * DAY),
            CredentialsAction::Mint(MintReason::NoToken)
        );
        let nothing = CredentialsView::default();
        assert!(matches!(
            decide(&nothing, ts("2026-12-01T00:00:00Z"), 30 * DAY),
            CredentialsAction::Stuck(m) if m.contains("no token")
        ));
    }

    #[test]
    fn a_rejected_token_is_minted_again_only_with_a_password() {
        let mut view = CredentialsView {
            has_token: true,
            token_rejected: true,
            has_password: true,
            minted: None,
        };
        let now = ts("2026-12-01T00:00:00Z");
        assert_eq!(
            decide(&view, now, 30 * DAY),
            CredentialsAction::Mint(MintReason::Rejected)
        );
        view.has_password = false;
        assert!(matches!(
            decide(&view, now, 30 * DAY),
            CredentialsAction::Stuck(m) if m.contains("no longer accepts")
        ));
    }

    #[test]
    fn a_minted_token_is_renewed_when_a_third_remains() {
        let view = CredentialsView {
            has_token: true,
            minted: minted("2026-12-31T00:00:00Z", Some("u1")),
            ..Default::default()
        };
        // 30-day lifetime: renewal from 10 days before expiry.
        assert_eq!(
            decide(&view, ts("2026-12-20T23:59:59Z"), 30 * DAY),
            CredentialsAction::Use
        );
        assert_eq!(
            decide(&view, ts("2026-12-21T00:00:00Z"), 30 * DAY),
            CredentialsAction::Renew {
                application: ("c-bridge".into(), "CID".into()),
                uuid: "u1".into()
            }
        );
    }

    #[test]
    fn an_expired_token_is_minted_again_or_reported() {
        let mut view = CredentialsView {
            has_token: true,
            has_password: true,
            minted: minted("2026-12-31T00:00:00Z", Some("u1")),
            ..Default::default()
        };
        let after = ts("2027-01-01T00:00:00Z");
        assert_eq!(
            decide(&view, after, 30 * DAY),
            CredentialsAction::Mint(MintReason::Expired)
        );
        view.has_password = false;
        assert!(
            matches!(decide(&view, after, 30 * DAY), CredentialsAction::Stuck(m) if m.contains("expired"))
        );
    }

    #[test]
    fn tokens_without_a_uuid_or_not_minted_here_are_used_as_they_are() {
        // authorizeapp's 10-year token: no uuid, never renewed.
        let view = CredentialsView {
            has_token: true,
            minted: minted("2036-12-31T00:00:00Z", None),
            ..Default::default()
        };
        assert_eq!(
            decide(&view, ts("2036-12-30T00:00:00Z"), 30 * DAY),
            CredentialsAction::Use
        );
        let pasted = CredentialsView {
            has_token: true,
            ..Default::default()
        };
        assert_eq!(
            decide(&pasted, ts("2036-12-30T00:00:00Z"), 30 * DAY),
            CredentialsAction::Use
        );
    }

    #[test]
    fn the_token_goes_in_and_the_password_out_and_nothing_else_changes() {
        let m = Minted {
            expires_at: ts("2026-12-31T00:00:00Z"),
            uuid: Some("u1".into()),
            application: ("c-bridge".into(), "CID".into()),
        };
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "resourceVersion": "42", "labels": {"team": "x"},
                "annotations": {"note": "keep me"}},
            "data": {"username": "dQ==", "password": "cA==", "other": "bw=="},
        }))
        .unwrap();
        let out = with_token(&secret, "token", "T0K", &m, true);
        let data = out.data.as_ref().unwrap();
        assert_eq!(data["token"].0, b"T0K");
        assert!(!data.contains_key("password"));
        assert_eq!(data["username"].0, b"u");
        assert_eq!(data["other"].0, b"o");
        assert_eq!(out.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(out.metadata.labels, secret.metadata.labels);
        let annotations = out.metadata.annotations.clone().unwrap();
        assert_eq!(annotations["note"], "keep me");
        assert_eq!(
            MintedRecord::from_annotations(&annotations),
            Some(MintedRecord {
                expires_at: m.expires_at,
                uuid: Some("u1".into()),
                application: Some(("c-bridge".into(), "CID".into())),
            })
        );
        let kept = with_token(&secret, "token", "T0K", &m, false);
        assert_eq!(kept.data.unwrap()["password"].0, b"p");
        // A token from authorizeapp has no uuid: a stale one is dropped.
        let no_uuid = Minted { uuid: None, ..m };
        let out2 = with_token(&out, "token", "T1K", &no_uuid, true);
        assert!(
            !out2
                .metadata
                .annotations
                .unwrap()
                .contains_key(TOKEN_UUID_ANNOTATION)
        );
        let mut bad = annotations.clone();
        bad.insert(TOKEN_EXPIRES_ANNOTATION.into(), "soon".into());
        assert_eq!(MintedRecord::from_annotations(&bad), None);
    }

    #[test]
    fn names_and_markers() {
        let cfg = crate::config::test_config("Prod", "");
        assert_eq!(organization(&cfg).unwrap(), "prod-bridge");
        assert_eq!(application_name(&cfg), "quay-bridge-operator-Prod");
        let marker = application_marker("Prod", "uid-1");
        assert!(is_our_application(&marker, "uid-1"));
        assert!(!is_our_application(&marker, "uid-2"));
        assert!(!is_our_application("cluster-uid=uid-1", "uid-1"));
        assert!(SCOPES.contains(&"user:admin"));
        assert!(!SCOPES.contains(&"super:user"));
    }
}
