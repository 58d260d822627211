//! A small Docker Registry v2 client with Quay's token flow, used by the
//! sandbox's build simulation to push and pull images with robot
//! credentials, exactly as a build or a pod would.

use base64::Engine;
use bridge_common::secret::SecretString;
use reqwest::StatusCode;
use serde_json::json;

/// Registry client errors.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The credentials were refused.
    #[error("registry login failed (HTTP {0})")]
    LoginFailed(u16),
    /// The token does not allow the action.
    #[error("registry denied {action} on {repository} (HTTP {status})")]
    Denied {
        /// `push` or `pull`.
        action: &'static str,
        /// `org/repo`.
        repository: String,
        /// Status answered.
        status: u16,
    },
    /// The image or tag does not exist.
    #[error("{0} not found in registry")]
    NotFound(String),
    /// Any other answer.
    #[error("registry answered HTTP {status}: {body}")]
    Unexpected {
        /// Status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// No answer.
    #[error("registry request failed: {0}")]
    Transport(String),
}

/// Registry credentials: a robot (`org+name`) and its token, or a user.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: SecretString,
}

/// A registry client bound to a base URL.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
}

fn transport(e: reqwest::Error) -> RegistryError {
    RegistryError::Transport(e.to_string())
}

async fn unexpected(resp: reqwest::Response) -> RegistryError {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    RegistryError::Unexpected {
        status,
        body: body.chars().take(300).collect(),
    }
}

impl RegistryClient {
    /// A client for `base` (`http(s)://host[:port]`).
    pub fn new(http: reqwest::Client, base: impl Into<String>) -> Self {
        Self {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
        }
    }

    /// Exchanges credentials for a bearer token for `actions` on `repository`.
    pub async fn token(
        &self,
        repository: &str,
        actions: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        let host = self.base.split("://").nth(1).unwrap_or_default().to_owned();
        let scope = format!("repository:{repository}:{actions}");
        let mut req = self
            .http
            .get(format!("{}/v2/auth", self.base))
            .query(&[("service", host.as_str()), ("scope", scope.as_str())]);
        if let Some(c) = creds {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                c.username,
                c.password.expose()
            ));
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Basic {basic}"))
                .map_err(|_| RegistryError::LoginFailed(0))?;
            value.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, value);
        }
        let resp = req.send().await.map_err(transport)?;
        if !resp.status().is_success() {
            return Err(RegistryError::LoginFailed(resp.status().as_u16()));
        }
        let body: serde_json::Value = resp.json().await.map_err(transport)?;
        body.get("token")
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or(RegistryError::LoginFailed(200))
    }

    fn denied(status: StatusCode, action: &'static str, repository: &str) -> Option<RegistryError> {
        matches!(status.as_u16(), 401 | 403).then(|| RegistryError::Denied {
            action,
            repository: repository.to_owned(),
            status: status.as_u16(),
        })
    }

    async fn upload_blob(
        &self,
        token: &str,
        repository: &str,
        data: Vec<u8>,
    ) -> Result<String, RegistryError> {
        let digest = bridge_common::encoding::sha256_digest(&data);
        let start = self
            .http
            .post(format!("{}/v2/{repository}/blobs/uploads/", self.base))
            .bearer_auth(token)
            .send()
            .await
            .map_err(transport)?;
        if let Some(e) = Self::denied(start.status(), "push", repository) {
            return Err(e);
        }
        if start.status() != StatusCode::ACCEPTED {
            return Err(unexpected(start).await);
        }
        let location = start
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.base)
        };
        let put = self
            .http
            .put(url)
            .query(&[("digest", digest.as_str())])
            .bearer_auth(token)
            .body(data)
            .send()
            .await
            .map_err(transport)?;
        if put.status() != StatusCode::CREATED {
            return Err(unexpected(put).await);
        }
        Ok(digest)
    }

    /// Pushes a small image (one config blob, one layer holding `content`)
    /// as `repository:tag`; returns the manifest digest.
    pub async fn push_image(
        &self,
        repository: &str,
        tag: &str,
        content: &[u8],
        creds: &Credentials,
    ) -> Result<String, RegistryError> {
        let token = self.token(repository, "pull,push", Some(creds)).await?;
        let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "config": {}}))
            .unwrap_or_default();
        let config_len = config.len();
        let layer_len = content.len();
        let config_digest = self.upload_blob(&token, repository, config).await?;
        let layer_digest = self
            .upload_blob(&token, repository, content.to_vec())
            .await?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_len},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_len}],
        });
        let resp = self
            .http
            .put(format!("{}/v2/{repository}/manifests/{tag}", self.base))
            .bearer_auth(&token)
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_string())
            .send()
            .await
            .map_err(transport)?;
        if let Some(e) = Self::denied(resp.status(), "push", repository) {
            return Err(e);
        }
        if resp.status() != StatusCode::CREATED {
            return Err(unexpected(resp).await);
        }
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|d| d.to_str().ok())
            .unwrap_or_default()
            .to_owned())
    }

    /// Fetches the manifest digest of `repository:reference`.
    pub async fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        let token = self.token(repository, "pull", creds).await?;
        let resp = self
            .http
            .get(format!(
                "{}/v2/{repository}/manifests/{reference}",
                self.base
            ))
            .bearer_auth(&token)
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .map_err(transport)?;
        if let Some(e) = Self::denied(resp.status(), "pull", repository) {
            return Err(e);
        }
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound(format!("{repository}:{reference}")));
        }
        if !resp.status().is_success() {
            return Err(unexpected(resp).await);
        }
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|d| d.to_str().ok())
            .unwrap_or_default()
            .to_owned())
    }
}
