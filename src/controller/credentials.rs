//! Keeps the Quay token working: mints one from the Secret's username and
//! password (sign-in, this cluster's organization and OAuth application,
//! the tokens API), mints it again when Quay stops accepting it and the
//! password is kept, and renews a minted token with itself before it
//! expires. The decisions are `plan::credentials`'; this shell reads the
//! Secret, calls Quay, writes the Secret and reports.

use super::context::{IntegrationContext, SignInFailure, TokenCheck};
use super::error::Error;
use crate::config::IntegrationConfig;
use crate::plan::credentials::{
    self as plan, CredentialsAction, CredentialsView, MintReason, Minted, MintedRecord,
};
use crate::quay::{MintedToken, QuayClient, QuayError};
use crate::secret::SecretString;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::Api;
use std::sync::Arc;
use std::time::Instant;

fn failed(reason: &'static str, message: String, reachable: bool) -> TokenCheck {
    TokenCheck {
        creds_ok: false,
        creds_reason: reason,
        creds_msg: message,
        reachable,
        reach_reason: if reachable { "Answering" } else { "Unknown" },
        reach_msg: if reachable {
            "Quay answers".into()
        } else {
            "not checked".into()
        },
        rejected: false,
    }
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Brings the credentials Secret to a working token when it can. Returns
/// the check the status shows when this step decided it (a mint, a refused
/// sign-in); `None` leaves it to the token check.
pub(crate) async fn ensure(
    cfg: &IntegrationConfig,
    ctx: &Arc<IntegrationContext>,
    regarding: &ObjectReference,
) -> Option<TokenCheck> {
    if ctx.quay.is_down(cfg) {
        return None;
    }
    let secret = match ctx.quay.credentials_secret(&cfg.credentials).await {
        Ok(Some(s)) => s,
        // The token check reports a missing Secret.
        Ok(None) => return None,
        Err(e) => {
            tracing::debug!(error = %e, "credentials Secret not read");
            return None;
        }
    };
    let token = text(&secret, &cfg.credentials.key);
    let username = text(&secret, plan::USERNAME_KEY);
    let password = text(&secret, plan::PASSWORD_KEY).map(SecretString::new);
    let token_rejected = match &token {
        Some(_) => ctx
            .quay
            .client(cfg)
            .await
            .is_ok_and(|client| client.token_rejected()),
        None => false,
    };
    let view = CredentialsView {
        has_token: token.is_some(),
        token_rejected,
        has_password: username.is_some() && password.is_some(),
        minted: secret
            .metadata
            .annotations
            .as_ref()
            .and_then(MintedRecord::from_annotations),
    };
    match plan::decide(
        &view,
        jiff::Timestamp::now(),
        cfg.credentials.token_lifetime,
    ) {
        CredentialsAction::Use => None,
        CredentialsAction::Stuck(message) => view.token_rejected.then(|| TokenCheck {
            rejected: true,
            ..failed("TokenRejected", message, true)
        }),
        CredentialsAction::Mint(reason) => {
            let (Some(username), Some(password)) = (username, password) else {
                return None;
            };
            let check = mint_and_report(cfg, ctx, &secret, (&username, &password), regarding).await;
            Some(TokenCheck {
                rejected: check.rejected || (!check.creds_ok && reason == MintReason::Rejected),
                ..check
            })
        }
        CredentialsAction::Renew { application, uuid } => {
            renew_and_report(cfg, ctx, &secret, (&application, &uuid), regarding).await;
            None
        }
    }
}

/// Mints unless this version of the Secret already failed to sign in;
/// publishes the mint; remembers a refused sign-in.
async fn mint_and_report(
    cfg: &IntegrationConfig,
    ctx: &Arc<IntegrationContext>,
    secret: &Secret,
    (username, password): (&str, &SecretString),
    regarding: &ObjectReference,
) -> TokenCheck {
    let key = (
        cfg.credentials.namespace.clone(),
        cfg.credentials.name.clone(),
    );
    if let Some(check) = ctx.integrations.sign_in_failure(
        &key,
        secret.metadata.resource_version.as_deref(),
        cfg.generation,
    ) {
        return check;
    }
    match mint(cfg, ctx, secret, username, password).await {
        Ok(user) => {
            let note = format!(
                "minted a Quay token for user {user}; scopes: {}",
                plan::SCOPES.join(" ")
            );
            tracing::info!(integration = %cfg.id, %note, "token minted");
            ctx.events
                .publish(regarding, false, "TokenMinted", "Mint", note.clone())
                .await;
            TokenCheck {
                creds_ok: true,
                creds_reason: "TokenMinted",
                creds_msg: note,
                reachable: true,
                reach_reason: "Answering",
                reach_msg: format!("Quay at {} answers", cfg.quay_url),
                rejected: false,
            }
        }
        Err(MintError::SignIn(check, until)) => {
            ctx.integrations.remember_sign_in_failure(
                key,
                SignInFailure {
                    resource_version: secret.metadata.resource_version.clone(),
                    generation: cfg.generation,
                    until,
                    check: check.clone(),
                },
            );
            check
        }
        Err(MintError::Other(check)) => check,
    }
}

async fn renew_and_report(
    cfg: &IntegrationConfig,
    ctx: &Arc<IntegrationContext>,
    secret: &Secret,
    (application, uuid): (&(String, String), &str),
    regarding: &ObjectReference,
) {
    if let Err(e) = renew(cfg, ctx, secret, application, uuid).await {
        let note = format!("could not renew the minted Quay token (it still works): {e}");
        tracing::warn!(integration = %cfg.id, %note);
        ctx.events
            .publish(regarding, true, "TokenRenewalFailed", "Renew", note)
            .await;
    } else {
        ctx.events
            .publish(
                regarding,
                false,
                "TokenRenewed",
                "Renew",
                "renewed the minted Quay token; the previous one is deleted".into(),
            )
            .await;
    }
}

enum MintError {
    /// Quay refused the sign-in (until the Secret changes, or this instant).
    SignIn(TokenCheck, Option<Instant>),
    Other(TokenCheck),
}

fn sign_in_error(username: &str, e: &QuayError) -> MintError {
    match e {
        QuayError::Forbidden { message, .. } | QuayError::Unauthorized { message, .. } => {
            MintError::SignIn(
                failed(
                    "PasswordRejected",
                    format!(
                        "Quay refused the sign-in of {username:?} with the Secret's password: {message}"
                    ),
                    true,
                ),
                None,
            )
        }
        QuayError::RateLimited { retry_after, .. } => MintError::SignIn(
            failed(
                "SignInThrottled",
                format!(
                    "Quay's login backoff for {username:?} is on (earlier failed sign-ins); trying again in {} s",
                    retry_after.unwrap_or_default().as_secs().max(1)
                ),
                true,
            ),
            Some(
                Instant::now()
                    + retry_after
                        .unwrap_or_default()
                        .max(std::time::Duration::from_secs(1)),
            ),
        ),
        other => MintError::Other(failed(
            "MintFailed",
            format!("could not sign in to Quay: {other}"),
            !matches!(other.category(), crate::quay::Category::Unavailable),
        )),
    }
}

/// Signs in, mints, checks the token, writes it into the Secret, signs
/// out. Returns the Quay user.
async fn mint(
    cfg: &IntegrationConfig,
    ctx: &Arc<IntegrationContext>,
    secret: &Secret,
    username: &str,
    password: &SecretString,
) -> Result<String, MintError> {
    let other = |what: &str, e: &dyn std::fmt::Display| {
        MintError::Other(failed("MintFailed", format!("{what}: {e}"), true))
    };
    let anonymous = ctx
        .quay
        .with_token(cfg, SecretString::new(String::new()))
        .await
        .map_err(|e| other("cannot build the Quay client", &e))?;
    let (session, signed_in) = match anonymous.sign_in(username, password).await {
        Ok(session) => (session, true),
        // No such user, and the integration may create Quay's first one.
        Err(QuayError::Forbidden { message, .. })
            if cfg.credentials.initialize_user && message == "Invalid Username or Password" =>
        {
            let token = anonymous
                .initialize_user(username, password)
                .await
                .map_err(|e| {
                    MintError::SignIn(
                        failed(
                            "InitializeRefused",
                            format!(
                                "sign-in found no user {username:?}, and Quay refused to create it as its first user (FEATURE_USER_INITIALIZE off, or Quay has users already): {e}"
                            ),
                            true,
                        ),
                        None,
                    )
                })?;
            tracing::info!(integration = %cfg.id, user = username, "created Quay's first user");
            (anonymous.with_token(token), false)
        }
        Err(e) => return Err(sign_in_error(username, &e)),
    };
    let minted = mint_in_session(cfg, ctx, &session).await;
    if signed_in && let Err(e) = session.sign_out().await {
        tracing::debug!(error = %e, "sign-out failed; the session expires on its own");
    }
    let (minted, application) = minted.map_err(|e| other("could not mint a token", &e))?;
    let user = anonymous
        .with_token(minted.token.clone())
        .current_user()
        .await
        .map_err(|e| other("the minted token does not work", &e))?;
    write(
        cfg,
        ctx,
        secret,
        &minted,
        application,
        !cfg.credentials.keep_password,
    )
    .await
    .map_err(|e| other("could not write the token into the Secret", &e))?;
    Ok(user.username)
}

/// This cluster's organization and OAuth application (made when missing),
/// and a token of it with the scopes the integration needs: from the
/// tokens API with the configured lifetime, or from `/oauth/authorizeapp`
/// on a Quay without that API.
async fn mint_in_session(
    cfg: &IntegrationConfig,
    ctx: &IntegrationContext,
    session: &QuayClient,
) -> Result<(MintedToken, (String, String)), Error> {
    let org = plan::organization(cfg).map_err(|e| Error::Config(e.to_string()))?;
    match session.get_organization(&org).await? {
        None => match session.create_organization(&org, None).await {
            Ok(()) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e.into()),
        },
        Some(o) if !o.is_admin => {
            return Err(Error::Credentials(format!(
                "Quay organization {org} exists and the Secret's user does not administer it"
            )));
        }
        Some(_) => {}
    }
    let apps = session.list_applications(&org).await?;
    let app = match apps
        .into_iter()
        .find(|a| plan::is_our_application(&a.description, &ctx.cluster_uid))
    {
        Some(app) => app,
        None => {
            let redirect = format!(
                "{}/oauth/localapp",
                cfg.quay_url.as_str().trim_end_matches('/')
            );
            session
                .create_application(
                    &org,
                    &plan::application_name(cfg),
                    &plan::application_marker(&cfg.cluster_id, &ctx.cluster_uid),
                    &redirect,
                )
                .await?
        }
    };
    let scopes = plan::SCOPES;
    let minted = match session
        .create_application_token(
            &org,
            &app.client_id,
            plan::TOKEN_NAME,
            scopes,
            cfg.credentials.token_lifetime,
        )
        .await
    {
        // A Quay without the tokens API.
        Err(e)
            if e.is_not_found() || matches!(e, QuayError::InvalidRequest { status: 405, .. }) =>
        {
            session
                .authorize_application(&app.client_id, &app.redirect_uri, scopes)
                .await?
        }
        other => other?,
    };
    Ok((minted, (org, app.client_id)))
}

/// Mints the successor with the token itself, checks it, writes it, then
/// deletes the old one. A crash before the delete leaves the old token
/// valid until it expires, never a Secret without a working one.
async fn renew(
    cfg: &IntegrationConfig,
    ctx: &Arc<IntegrationContext>,
    secret: &Secret,
    application: &(String, String),
    old_uuid: &str,
) -> Result<(), Error> {
    let client = ctx.quay.client(cfg).await?;
    let (org, client_id) = application;
    let minted = client
        .create_application_token(
            org,
            client_id,
            plan::TOKEN_NAME,
            plan::SCOPES,
            cfg.credentials.token_lifetime,
        )
        .await?;
    let fresh = client.with_token(minted.token.clone());
    fresh.current_user().await?;
    write(cfg, ctx, secret, &minted, application.clone(), false).await?;
    match fresh
        .delete_application_token(org, client_id, old_uuid)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write(
    cfg: &IntegrationConfig,
    ctx: &IntegrationContext,
    secret: &Secret,
    minted: &MintedToken,
    application: (String, String),
    drop_password: bool,
) -> Result<(), Error> {
    let updated = plan::with_token(
        secret,
        &cfg.credentials.key,
        minted.token.expose(),
        &Minted {
            expires_at: minted.expires_at,
            uuid: minted.uuid.clone(),
            application,
        },
        drop_password,
    );
    Api::<Secret>::namespaced(ctx.client.clone(), &cfg.credentials.namespace)
        .replace(&cfg.credentials.name, &super::post_params(), &updated)
        .await?;
    Ok(())
}
