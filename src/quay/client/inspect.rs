//! Calls the operator never makes, which tests and the sandbox use to look
//! at or change Quay the way a person would (list robots, regenerate a
//! token, change visibility, read permissions and tags). Built only with
//! the `sandbox` feature: the image's client holds what the product calls.

use super::{Idempotency, QuayClient, decode, encode, optional};
use crate::quay::endpoint::{self as ep};
use crate::quay::error::QuayError;
use crate::quay::types::*;

impl QuayClient {
    /// `GET /api/v1/organization/{org}/robots`, with or without tokens.
    pub async fn list_robots(&self, org: &str, with_tokens: bool) -> Result<Vec<Robot>, QuayError> {
        self.list_robots_with(org, with_tokens, false).await
    }

    /// `POST /api/v1/organization/{org}/robots/{robot}/regenerate`: a new
    /// token. Repeating it only regenerates again, so it is retried.
    pub async fn regenerate_robot_token(&self, org: &str, robot: &str) -> Result<Robot, QuayError> {
        let url = self.robot_url(org, robot, Some("regenerate"))?;
        let (status, bytes) = self
            .execute(
                ep::ROBOT_REGENERATE,
                Idempotency::Idempotent,
                url,
                &[],
                None,
            )
            .await?;
        decode(ep::ROBOT_REGENERATE, status, &bytes)
    }

    /// `POST /api/v1/repository/{org}/{repo}/changevisibility`.
    pub async fn set_repository_visibility(
        &self,
        org: &str,
        repo: &str,
        visibility: Visibility,
    ) -> Result<(), QuayError> {
        let url = self.repo_url(org, repo, &["changevisibility"])?;
        let body = encode(ep::REPO_VISIBILITY, &VisibilityBody { visibility })?;
        self.send_no_content(
            ep::REPO_VISIBILITY,
            Idempotency::Idempotent,
            url,
            Some(body),
        )
        .await
    }

    /// `GET …/permissions/user/`: every user and robot permission, by name.
    pub async fn list_repository_permissions(
        &self,
        org: &str,
        repo: &str,
    ) -> Result<Vec<RepositoryPermission>, QuayError> {
        let mut url = self.repo_url(org, repo, &["permissions", "user"])?;
        if let Ok(mut path) = url.path_segments_mut() {
            path.push("");
        }
        let list: RepositoryPermissionList = self.get_json(ep::REPO_PERM_LIST, url, &[]).await?;
        Ok(list.permissions.into_values().collect())
    }

    /// `GET …/permissions/user/{user}`; `None` when the user or robot holds
    /// no permission (Quay answers 400 for that).
    pub async fn get_repository_permission(
        &self,
        org: &str,
        repo: &str,
        user: &str,
    ) -> Result<Option<RepositoryPermission>, QuayError> {
        let url = self.repo_perm_url(org, repo, user)?;
        optional(self.get_json(ep::REPO_PERM_GET, url, &[]).await)
    }

    /// `DELETE …/permissions/user/{user}`.
    pub async fn delete_repository_permission(
        &self,
        org: &str,
        repo: &str,
        user: &str,
    ) -> Result<(), QuayError> {
        let url = self.repo_perm_url(org, repo, user)?;
        self.send_no_content(ep::REPO_PERM_DELETE, Idempotency::Idempotent, url, None)
            .await
    }

    /// `GET …/tag/?onlyActiveTags=true`, following `has_additional`.
    pub async fn list_tags(&self, org: &str, repo: &str) -> Result<Vec<Tag>, QuayError> {
        let mut url = self.repo_url(org, repo, &["tag"])?;
        if let Ok(mut path) = url.path_segments_mut() {
            path.push("");
        }
        let mut all = Vec::new();
        for page in 1..=10_000u32 {
            let page_text = page.to_string();
            let query = [
                ("onlyActiveTags", "true"),
                ("limit", "100"),
                ("page", page_text.as_str()),
            ];
            let result: TagPage = self.get_json(ep::TAG_LIST, url.clone(), &query).await?;
            all.extend(result.tags);
            if !result.has_additional {
                return Ok(all);
            }
        }
        Err(QuayError::Decode {
            endpoint: ep::TAG_LIST,
            status: 200,
            message: "pagination did not end".into(),
        })
    }
}
