//! The Quay API calls, typed: organizations, robots, default
//! permissions, repositories, their permissions and tags.

use super::{Idempotency, QuayClient, decode, encode, optional};
use crate::quay::endpoint::{self as ep};
use crate::quay::error::QuayError;
use crate::quay::names::{self, NameKind};
use crate::quay::types::*;
use reqwest::Url;

impl QuayClient {
    /// `GET /api/v1/user/`: who the token belongs to.
    pub async fn current_user(&self) -> Result<User, QuayError> {
        self.get_json(ep::USER_GET, self.url(&["user"], true)?, &[])
            .await
    }

    // === organizations ===

    /// `GET /api/v1/organization/{org}`; `None` when it does not exist.
    pub async fn get_organization(&self, org: &str) -> Result<Option<Organization>, QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization", org], false)?;
        optional(self.get_json(ep::ORG_GET, url, &[]).await)
    }

    /// `POST /api/v1/organization/`. A duplicate is [`QuayError::AlreadyExists`].
    pub async fn create_organization(
        &self,
        org: &str,
        email: Option<&str>,
    ) -> Result<(), QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization"], true)?;
        let body = encode(ep::ORG_CREATE, &NewOrganization { name: org, email })?;
        self.create_verified(
            || {
                self.send_no_content(
                    ep::ORG_CREATE,
                    Idempotency::Create,
                    url.clone(),
                    Some(body.clone()),
                )
            },
            || async { Ok(self.get_organization(org).await?.map(|_| ())) },
        )
        .await
    }

    /// `DELETE /api/v1/organization/{org}`. A missing organization is
    /// [`QuayError::NotFound`].
    pub async fn delete_organization(&self, org: &str) -> Result<(), QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization", org], false)?;
        self.send_no_content(ep::ORG_DELETE, Idempotency::Idempotent, url, None)
            .await
    }

    // === robots ===

    /// `GET /api/v1/organization/{org}/robots`; with `permissions` each robot
    /// names the repositories it holds a permission on.
    pub async fn list_robots_with(
        &self,
        org: &str,
        with_tokens: bool,
        permissions: bool,
    ) -> Result<Vec<Robot>, QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization", org, "robots"], false)?;
        let flag = |b: bool| if b { "true" } else { "false" };
        let list: RobotList = self
            .get_json(
                ep::ROBOT_LIST,
                url,
                &[
                    ("permissions", flag(permissions)),
                    ("token", flag(with_tokens)),
                ],
            )
            .await?;
        Ok(list.robots)
    }

    /// `GET /api/v1/organization/{org}/robots/{robot}`; `None` when missing
    /// (Quay answers 400 for that).
    pub async fn get_robot(&self, org: &str, robot: &str) -> Result<Option<Robot>, QuayError> {
        let url = self.robot_url(org, robot, None)?;
        optional(self.get_json(ep::ROBOT_GET, url, &[]).await)
    }

    /// `PUT /api/v1/organization/{org}/robots/{robot}`: creates the robot and
    /// returns it with its token. A duplicate is [`QuayError::AlreadyExists`].
    pub async fn create_robot(
        &self,
        org: &str,
        robot: &str,
        body: &NewRobot,
    ) -> Result<Robot, QuayError> {
        let url = self.robot_url(org, robot, None)?;
        let bytes = encode(ep::ROBOT_CREATE, body)?;
        self.create_verified(
            || async {
                let (status, b) = self
                    .execute(
                        ep::ROBOT_CREATE,
                        Idempotency::Create,
                        url.clone(),
                        &[],
                        Some(bytes.clone()),
                    )
                    .await?;
                decode(ep::ROBOT_CREATE, status, &b)
            },
            || self.get_robot(org, robot),
        )
        .await
    }

    /// `DELETE /api/v1/organization/{org}/robots/{robot}`.
    pub async fn delete_robot(&self, org: &str, robot: &str) -> Result<(), QuayError> {
        let url = self.robot_url(org, robot, None)?;
        self.send_no_content(ep::ROBOT_DELETE, Idempotency::Idempotent, url, None)
            .await
    }

    pub(super) fn robot_url(
        &self,
        org: &str,
        robot: &str,
        action: Option<&str>,
    ) -> Result<Url, QuayError> {
        names::validate(NameKind::Organization, org)?;
        names::validate(NameKind::Robot, robot)?;
        match action {
            Some(action) => self.url(&["organization", org, "robots", robot, action], false),
            None => self.url(&["organization", org, "robots", robot], false),
        }
    }

    // === default permissions (prototypes) ===

    /// `GET /api/v1/organization/{org}/prototypes`.
    pub async fn list_prototypes(&self, org: &str) -> Result<Vec<Prototype>, QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization", org, "prototypes"], false)?;
        let list: PrototypeList = self.get_json(ep::PROTOTYPE_LIST, url, &[]).await?;
        Ok(list.prototypes)
    }

    /// `POST /api/v1/organization/{org}/prototypes`: grants `role` on every
    /// repository created later to the robot `org+robot`.
    pub async fn create_robot_prototype(
        &self,
        org: &str,
        robot: &str,
        role: Role,
    ) -> Result<Prototype, QuayError> {
        names::validate(NameKind::Robot, robot)?;
        let delegate = Delegate {
            name: format!("{org}+{robot}"),
            kind: "user".into(),
            is_robot: true,
        };
        self.create_prototype(org, delegate, role).await
    }

    /// `POST /api/v1/organization/{org}/prototypes` for a team: `role` on
    /// every repository created later.
    pub async fn create_team_prototype(
        &self,
        org: &str,
        team: &str,
        role: Role,
    ) -> Result<Prototype, QuayError> {
        names::validate(NameKind::Team, team)?;
        let delegate = Delegate {
            name: team.to_owned(),
            kind: "team".into(),
            is_robot: false,
        };
        self.create_prototype(org, delegate, role).await
    }

    /// Creates a default permission, verified against the list when the
    /// answer is lost (a POST is not idempotent).
    async fn create_prototype(
        &self,
        org: &str,
        delegate: Delegate,
        role: Role,
    ) -> Result<Prototype, QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization", org, "prototypes"], false)?;
        let (name, kind) = (delegate.name.clone(), delegate.kind.clone());
        let bytes = encode(ep::PROTOTYPE_CREATE, &NewPrototype { role, delegate })?;
        self.create_verified(
            || async {
                let (status, b) = self
                    .execute(
                        ep::PROTOTYPE_CREATE,
                        Idempotency::Create,
                        url.clone(),
                        &[],
                        Some(bytes.clone()),
                    )
                    .await?;
                decode(ep::PROTOTYPE_CREATE, status, &b)
            },
            || async {
                Ok(self
                    .list_prototypes(org)
                    .await?
                    .into_iter()
                    .find(|p| p.role == role && p.delegate.kind == kind && p.delegate.name == name))
            },
        )
        .await
    }

    /// `DELETE /api/v1/organization/{org}/prototypes/{id}`.
    pub async fn delete_prototype(&self, org: &str, id: &str) -> Result<(), QuayError> {
        names::validate(NameKind::Organization, org)?;
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(QuayError::Config(format!("{id:?} is not a prototype id")));
        }
        let url = self.url(&["organization", org, "prototypes", id], false)?;
        self.send_no_content(ep::PROTOTYPE_DELETE, Idempotency::Idempotent, url, None)
            .await
    }

    // === repositories ===

    /// `GET /api/v1/repository/{org}/{repo}`; `None` when missing.
    pub async fn get_repository(
        &self,
        org: &str,
        repo: &str,
    ) -> Result<Option<Repository>, QuayError> {
        let url = self.repo_url(org, repo, &[])?;
        optional(self.get_json(ep::REPO_GET, url, &[]).await)
    }

    /// `GET /api/v1/repository?namespace={org}`, following `next_page`.
    pub async fn list_repositories(&self, org: &str) -> Result<Vec<Repository>, QuayError> {
        names::validate(NameKind::Organization, org)?;
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        // Bounded: a misbehaving server cannot keep the loop going for ever.
        for _ in 0..10_000 {
            let url = self.url(&["repository"], false)?;
            let mut query = vec![("namespace", org)];
            if let Some(token) = next.as_deref() {
                query.push(("next_page", token));
            }
            let page: RepositoryList = self.get_json(ep::REPO_LIST, url, &query).await?;
            all.extend(page.repositories);
            match page.next_page {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => return Ok(all),
            }
        }
        Err(QuayError::Decode {
            endpoint: ep::REPO_LIST,
            status: 200,
            message: "pagination did not end".into(),
        })
    }

    /// `POST /api/v1/repository`. A duplicate is [`QuayError::AlreadyExists`].
    pub async fn create_repository(
        &self,
        org: &str,
        repo: &str,
        visibility: Visibility,
        description: &str,
    ) -> Result<(), QuayError> {
        names::validate(NameKind::Organization, org)?;
        names::validate(NameKind::Repository, repo)?;
        let url = self.url(&["repository"], false)?;
        let body = encode(
            ep::REPO_CREATE,
            &NewRepository {
                namespace: org,
                repository: repo,
                visibility,
                description,
                repo_kind: "image",
            },
        )?;
        self.create_verified(
            || {
                self.send_no_content(
                    ep::REPO_CREATE,
                    Idempotency::Create,
                    url.clone(),
                    Some(body.clone()),
                )
            },
            || async { Ok(self.get_repository(org, repo).await?.map(|_| ())) },
        )
        .await
    }

    /// `DELETE /api/v1/repository/{org}/{repo}` (Quay answers 204 even when
    /// the repository is already gone).
    pub async fn delete_repository(&self, org: &str, repo: &str) -> Result<(), QuayError> {
        let url = self.repo_url(org, repo, &[])?;
        self.send_no_content(ep::REPO_DELETE, Idempotency::Idempotent, url, None)
            .await
    }

    /// `PUT …/permissions/user/{user}` with `{"role": …}`.
    pub async fn set_repository_permission(
        &self,
        org: &str,
        repo: &str,
        user: &str,
        role: Role,
    ) -> Result<RepositoryPermission, QuayError> {
        let url = self.repo_perm_url(org, repo, user)?;
        self.send_json(
            ep::REPO_PERM_PUT,
            Idempotency::Idempotent,
            url,
            &RoleBody { role },
        )
        .await
    }

    pub(super) fn repo_url(&self, org: &str, repo: &str, rest: &[&str]) -> Result<Url, QuayError> {
        names::validate(NameKind::Organization, org)?;
        names::validate(NameKind::Repository, repo)?;
        let mut segments = vec!["repository", org, repo];
        segments.extend_from_slice(rest);
        self.url(&segments, false)
    }

    pub(super) fn repo_perm_url(
        &self,
        org: &str,
        repo: &str,
        user: &str,
    ) -> Result<Url, QuayError> {
        // A user name, or a robot `namespace+short`.
        match user.split_once('+') {
            Some((ns, short)) => {
                names::validate(NameKind::Organization, ns)?;
                names::validate(NameKind::Robot, short)?;
            }
            None => names::validate(NameKind::Organization, user)?,
        }
        self.repo_url(org, repo, &["permissions", "user", user])
    }

    // === teams ===

    /// `GET /api/v1/organization/{org}/members`: its users and their teams.
    pub async fn list_organization_members(&self, org: &str) -> Result<Vec<OrgMember>, QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization", org, "members"], false)?;
        let list: OrgMemberList = self.get_json(ep::ORG_MEMBERS, url, &[]).await?;
        Ok(list.members)
    }

    /// `PUT /api/v1/organization/{org}/team/{team}`: creates the team or
    /// sets its role and description.
    pub async fn put_team(
        &self,
        org: &str,
        team: &str,
        role: TeamRole,
        description: &str,
    ) -> Result<Team, QuayError> {
        names::validate(NameKind::Organization, org)?;
        names::validate(NameKind::Team, team)?;
        let url = self.url(&["organization", org, "team", team], false)?;
        self.send_json(
            ep::TEAM_PUT,
            Idempotency::Idempotent,
            url,
            &TeamBody { role, description },
        )
        .await
    }

    /// `PUT …/team/{team}/members/{user}`. An unknown user is a 400
    /// ([`QuayError::is_unknown_user`]); a member already in the team is
    /// [`QuayError::AlreadyExists`].
    pub async fn add_team_member(
        &self,
        org: &str,
        team: &str,
        user: &str,
    ) -> Result<TeamMemberAdded, QuayError> {
        names::validate(NameKind::Organization, org)?;
        names::validate(NameKind::Team, team)?;
        names::validate(NameKind::User, user)?;
        let url = self.url(&["organization", org, "team", team, "members", user], false)?;
        let (status, body) = self
            .execute(ep::TEAM_MEMBER_PUT, Idempotency::Idempotent, url, &[], None)
            .await?;
        decode(ep::TEAM_MEMBER_PUT, status, &body)
    }

    /// `DELETE …/team/{team}/members/{user}`. A user not in the team is
    /// [`QuayError::NotFound`].
    pub async fn remove_team_member(
        &self,
        org: &str,
        team: &str,
        user: &str,
    ) -> Result<(), QuayError> {
        names::validate(NameKind::Organization, org)?;
        names::validate(NameKind::Team, team)?;
        names::validate(NameKind::User, user)?;
        let url = self.url(&["organization", org, "team", team, "members", user], false)?;
        self.send_no_content(ep::TEAM_MEMBER_DELETE, Idempotency::Idempotent, url, None)
            .await
    }

    /// `PUT /api/v1/repository/{org}/{repo}/permissions/team/{team}`.
    pub async fn set_team_repository_permission(
        &self,
        org: &str,
        repo: &str,
        team: &str,
        role: Role,
    ) -> Result<(), QuayError> {
        names::validate(NameKind::Team, team)?;
        let url = self.repo_url(org, repo, &["permissions", "team", team])?;
        let _: serde_json::Value = self
            .send_json(
                ep::REPO_TEAM_PERM_PUT,
                Idempotency::Idempotent,
                url,
                &RoleBody { role },
            )
            .await?;
        Ok(())
    }
}
