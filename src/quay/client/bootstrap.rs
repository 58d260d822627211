//! The calls that turn a username and password into an API token, as a
//! real Quay answers them (quay-api-bootstrap.md): the CSRF pair, sign-in,
//! an organization's OAuth applications, the applications' tokens API,
//! and `/oauth/authorizeapp` where that API is missing.

use super::{Auth, Idempotency, QuayClient, decode, encode};
use crate::quay::endpoint::{self as ep, Endpoint};
use crate::quay::error::QuayError;
use crate::quay::names::{self, NameKind};
use crate::quay::types::{AppToken, OAuthApplication, OAuthApplicationList};
use crate::secret::SecretString;
use bytes::Bytes;
use reqwest::Url;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use std::time::{Duration, Instant};

/// The session cookie's name (Quay's `SESSION_COOKIE_NAME`).
pub(super) const COOKIE: &str = "_csrf_token";
/// The header carrying the CSRF token.
pub(super) const CSRF_HEADER: &str = "x-csrf-token";

/// A token minted for the operator.
#[derive(Debug, Clone)]
pub struct MintedToken {
    /// The token.
    pub token: SecretString,
    /// Its id in the tokens API (to renew or delete it); `None` from
    /// `/oauth/authorizeapp`, whose tokens the operator cannot list apart.
    pub uuid: Option<String>,
    /// When Quay stops accepting it.
    pub expires_at: jiff::Timestamp,
}

/// The `_csrf_token` cookie's value in a `Set-Cookie` header.
fn session_cookie(headers: &HeaderMap) -> Option<SecretString> {
    headers.get_all(SET_COOKIE).iter().find_map(|v| {
        let text = v.to_str().ok()?;
        let first = text.split(';').next()?.trim();
        let value = first.strip_prefix(COOKIE)?.strip_prefix('=')?;
        (!value.is_empty()).then(|| SecretString::new(value.to_owned()))
    })
}

/// The access token in `/oauth/authorizeapp`'s redirect: `…#access_token=…`,
/// or the `?error=…` Quay put there instead.
pub(crate) fn token_from_redirect(location: &str) -> Result<(SecretString, u64), String> {
    if let Some((_, fragment)) = location.split_once('#') {
        let mut token = None;
        let mut expires_in = None;
        for pair in fragment.split('&') {
            match pair.split_once('=') {
                Some(("access_token", v)) if !v.is_empty() => token = Some(v.to_owned()),
                Some(("expires_in", v)) => expires_in = v.parse().ok(),
                _ => {}
            }
        }
        if let Some(t) = token {
            return Ok((SecretString::new(t), expires_in.unwrap_or(315_576_000)));
        }
    }
    let query = location.split('#').next().unwrap_or_default();
    let error = query
        .split_once('?')
        .and_then(|(_, q)| {
            q.split('&')
                .find_map(|p| p.strip_prefix("error=").map(str::to_owned))
        })
        .unwrap_or_else(|| "no access token in the redirect".to_owned());
    Err(error)
}

fn form_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl QuayClient {
    /// `{base}{path}` for the routes outside `/api/v1`.
    fn web_url(&self, segments: &[&str]) -> Result<Url, QuayError> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| QuayError::Config("Quay URL cannot have a path".into()))?;
            path.pop_if_empty();
            path.extend(segments);
        }
        Ok(url)
    }

    /// One request, no retry (a sign-in retried inside Quay's backoff only
    /// extends it); the status, headers and body whatever the status.
    async fn send_once(
        &self,
        endpoint: Endpoint,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, HeaderMap, Bytes), QuayError> {
        let started = Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                self.metrics.observe(endpoint, None, started.elapsed());
                return Err(QuayError::from_transport(endpoint, &e));
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(|e| {
            let mut err = QuayError::from_transport(endpoint, &e);
            if let QuayError::Transport { before_send, .. } = &mut err {
                *before_send = false;
            }
            err
        })?;
        self.metrics
            .observe(endpoint, Some(status), started.elapsed());
        Ok((status, headers, bytes))
    }

    fn answer_error(
        endpoint: Endpoint,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> QuayError {
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(super::parse_retry_after);
        QuayError::from_response(endpoint, status, retry_after, body)
    }

    /// Signs in with a username and password: `GET /csrf_token` for an
    /// anonymous CSRF pair, then `POST /api/v1/signin` with both. Returns
    /// a client of the signed-in session (its new cookie and CSRF token).
    /// A wrong password is [`QuayError::Forbidden`]; inside Quay's per-user
    /// login backoff even the right one is [`QuayError::RateLimited`].
    pub async fn sign_in(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<QuayClient, QuayError> {
        let url = self.web_url(&["csrf_token"])?;
        let (status, headers, body) = self.send_once(ep::CSRF_TOKEN, self.http.get(url)).await?;
        if status != 200 {
            return Err(Self::answer_error(ep::CSRF_TOKEN, status, &headers, &body));
        }
        #[derive(serde::Deserialize)]
        struct Csrf {
            csrf_token: SecretString,
        }
        let csrf: Csrf = decode(ep::CSRF_TOKEN, status, &body)?;
        let cookie = session_cookie(&headers).ok_or_else(|| QuayError::Decode {
            endpoint: ep::CSRF_TOKEN,
            status,
            message: "no session cookie in the answer".into(),
        })?;
        let anonymous = QuayClient {
            auth: Auth::Session {
                cookie,
                csrf: csrf.csrf_token,
            },
            ..self.clone()
        };
        #[derive(serde::Serialize)]
        struct SignIn<'a> {
            username: &'a str,
            password: &'a str,
        }
        let body = encode(
            ep::SIGNIN,
            &SignIn {
                username,
                password: password.expose(),
            },
        )?;
        let request = anonymous.authenticate(
            self.http
                .post(self.url(&["signin"], false)?)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        )?;
        let (status, headers, body) = self.send_once(ep::SIGNIN, request).await?;
        if status != 200 {
            return Err(Self::answer_error(ep::SIGNIN, status, &headers, &body));
        }
        let next = headers
            .get("x-next-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(|v| SecretString::new(v.to_owned()));
        let (Some(cookie), Some(csrf)) = (session_cookie(&headers), next) else {
            return Err(QuayError::Decode {
                endpoint: ep::SIGNIN,
                status,
                message: "sign-in answered without a session cookie and CSRF token".into(),
            });
        };
        Ok(QuayClient {
            auth: Auth::Session { cookie, csrf },
            rejected: std::sync::Arc::default(),
            ..self.clone()
        })
    }

    /// `POST /api/v1/user/initialize` with `access_token`: creates the
    /// first user of a Quay that has none (`FEATURE_USER_INITIALIZE`) and
    /// returns the short-lived (2.5 h), all-scope token Quay mints for it.
    /// A Quay without the feature answers 404; one with any user, 400.
    pub async fn initialize_user(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<SecretString, QuayError> {
        let body = serde_json::json!({
            "username": username, "password": password.expose(), "access_token": true,
        });
        let body = encode(ep::USER_INITIALIZE, &body)?;
        let request = self
            .http
            .post(self.url(&["user", "initialize"], false)?)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let (status, headers, body) = self.send_once(ep::USER_INITIALIZE, request).await?;
        if status != 200 {
            return Err(Self::answer_error(
                ep::USER_INITIALIZE,
                status,
                &headers,
                &body,
            ));
        }
        #[derive(serde::Deserialize)]
        struct Initialized {
            access_token: Option<SecretString>,
        }
        let answer: Initialized = decode(ep::USER_INITIALIZE, status, &body)?;
        answer.access_token.ok_or_else(|| QuayError::Decode {
            endpoint: ep::USER_INITIALIZE,
            status,
            message: "no access_token in the answer".into(),
        })
    }

    /// `POST /api/v1/signout`: ends the session.
    pub async fn sign_out(&self) -> Result<(), QuayError> {
        let request = self.authenticate(self.http.post(self.url(&["signout"], false)?))?;
        let (status, headers, body) = self.send_once(ep::SIGNOUT, request).await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(Self::answer_error(ep::SIGNOUT, status, &headers, &body))
        }
    }

    /// `GET /api/v1/organization/{org}/applications`.
    pub async fn list_applications(&self, org: &str) -> Result<Vec<OAuthApplication>, QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization", org, "applications"], false)?;
        let list: OAuthApplicationList = self.get_json(ep::APP_LIST, url, &[]).await?;
        Ok(list.applications)
    }

    /// `POST /api/v1/organization/{org}/applications`.
    pub async fn create_application(
        &self,
        org: &str,
        name: &str,
        description: &str,
        redirect_uri: &str,
    ) -> Result<OAuthApplication, QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization", org, "applications"], false)?;
        let body = serde_json::json!({
            "name": name, "description": description,
            "redirect_uri": redirect_uri, "application_uri": redirect_uri,
        });
        self.send_json(ep::APP_CREATE, Idempotency::Create, url, &body)
            .await
    }

    /// `POST …/applications/{client_id}/tokens`: a token of the
    /// application with exactly these scopes and this lifetime. Quay
    /// refuses scopes beyond the caller's own with 403.
    pub async fn create_application_token(
        &self,
        org: &str,
        client_id: &str,
        name: &str,
        scopes: &[&str],
        lifetime: Duration,
    ) -> Result<MintedToken, QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(
            &["organization", org, "applications", client_id, "tokens"],
            false,
        )?;
        let body = serde_json::json!({
            "name": name, "scope": scopes.join(" "), "expiration": lifetime.as_secs(),
        });
        let sent = jiff::Timestamp::now();
        let answer: AppToken = self
            .send_json(ep::APP_TOKEN_CREATE, Idempotency::Create, url, &body)
            .await?;
        // Counted from before the request: never later than Quay's own.
        let expires_at = sent
            .checked_add(jiff::SignedDuration::from_secs(
                i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
            ))
            .unwrap_or(sent);
        Ok(MintedToken {
            token: answer.token,
            uuid: Some(answer.uuid),
            expires_at,
        })
    }

    /// `DELETE …/applications/{client_id}/tokens/{uuid}`; a token already
    /// gone is [`QuayError::NotFound`].
    pub async fn delete_application_token(
        &self,
        org: &str,
        client_id: &str,
        uuid: &str,
    ) -> Result<(), QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(
            &[
                "organization",
                org,
                "applications",
                client_id,
                "tokens",
                uuid,
            ],
            false,
        )?;
        self.send_no_content(ep::APP_TOKEN_DELETE, Idempotency::Idempotent, url, None)
            .await
    }

    /// `POST /oauth/authorizeapp` with the session (implicit grant, no
    /// consent page): Quay redirects to `redirect_uri#access_token=…`.
    /// For a Quay without the tokens API; its tokens live 10 years.
    pub async fn authorize_application(
        &self,
        client_id: &str,
        redirect_uri: &str,
        scopes: &[&str],
    ) -> Result<MintedToken, QuayError> {
        let form = format!(
            "client_id={}&redirect_uri={}&scope={}&response_type=token",
            form_encode(client_id),
            form_encode(redirect_uri),
            form_encode(&scopes.join(" "))
        );
        let request = self.authenticate(
            self.http
                .post(self.web_url(&["oauth", "authorizeapp"])?)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form),
        )?;
        let sent = jiff::Timestamp::now();
        let (status, headers, body) = self.send_once(ep::AUTHORIZE_APP, request).await?;
        if status != 302 {
            return Err(Self::answer_error(
                ep::AUTHORIZE_APP,
                status,
                &headers,
                &body,
            ));
        }
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        match token_from_redirect(location) {
            Ok((token, expires_in)) => Ok(MintedToken {
                token,
                uuid: None,
                expires_at: sent
                    .checked_add(jiff::SignedDuration::from_secs(
                        i64::try_from(expires_in).unwrap_or(i64::MAX),
                    ))
                    .unwrap_or(sent),
            }),
            Err(error) => Err(QuayError::InvalidRequest {
                endpoint: ep::AUTHORIZE_APP,
                status,
                message: format!("Quay refused to mint a token: {error}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_the_recorded_redirect() {
        let (token, expires) = token_from_redirect("http://localhost:8765/operator/callback?scope=org%3Aadmin+repo%3Aadmin#access_token=ABCDEF&token_type=Bearer&expires_in=315576000").unwrap();
        assert_eq!(token.expose(), "ABCDEF");
        assert_eq!(expires, 315_576_000);
        assert_eq!(
            token_from_redirect("http://localhost:8765/operator/callback?error=invalid_scope")
                .unwrap_err(),
            "invalid_scope"
        );
        assert_eq!(
            token_from_redirect(
                "http://localhost:8765/operator/callback?error=unauthorized_client"
            )
            .unwrap_err(),
            "unauthorized_client"
        );
    }

    #[test]
    fn the_session_cookie_is_read_from_set_cookie() {
        let mut h = HeaderMap::new();
        h.append(
            SET_COOKIE,
            "_csrf_token=abc.def; Expires=Sun, 06 Jan 2027 10:00:00 GMT; HttpOnly; Path=/; SameSite=Lax"
                .parse()
                .unwrap(),
        );
        assert_eq!(session_cookie(&h).unwrap().expose(), "abc.def");
        assert!(session_cookie(&HeaderMap::new()).is_none());
    }
}
