//! Request and response bodies of the Quay REST API calls the operator makes.
//!
//! Shapes follow the answers recorded from a real Quay. Responses ignore
//! fields they do not name, and optional fields default, so a newer Quay that
//! adds keys does not break decoding.

use crate::secret::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A repository or default-permission role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pull.
    Read,
    /// Pull and push.
    Write,
    /// Everything, including permissions.
    Admin,
}

impl Role {
    /// The name Quay uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    /// Parses Quay's role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Repository visibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Only users and robots with a permission can pull.
    #[default]
    Private,
    /// Anyone can pull.
    Public,
}

impl Visibility {
    /// The name Quay uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Public => "public",
        }
    }
}

/// `GET /api/v1/user/`: the user the token belongs to.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct User {
    /// Login name.
    pub username: String,
    /// Whether the user is a Quay superuser.
    #[serde(default)]
    pub super_user: bool,
    /// Whether the user may create repositories in its own namespace.
    #[serde(default)]
    pub can_create_repo: bool,
    /// Organizations the user belongs to.
    #[serde(default)]
    pub organizations: Vec<UserOrganization>,
}

/// An organization in the current user's view.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct UserOrganization {
    /// Organization name.
    pub name: String,
    /// Whether the user administers it.
    #[serde(default)]
    pub is_org_admin: bool,
}

/// `GET /api/v1/organization/{org}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Organization {
    /// Organization name.
    pub name: String,
    /// Contact e-mail (empty for anonymous callers).
    #[serde(default)]
    pub email: String,
    /// Whether the caller administers the organization.
    #[serde(default)]
    pub is_admin: bool,
    /// Whether the caller is a member.
    #[serde(default)]
    pub is_member: bool,
    /// Its teams by name (shown to members).
    #[serde(default)]
    pub teams: BTreeMap<String, Team>,
}

/// A team's role in its organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeamRole {
    /// Sees what the team is granted.
    Member,
    /// May also create repositories.
    Creator,
    /// Administers the organization.
    Admin,
}

/// A team as the organization GET and the team PUT show it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Team {
    /// The team's name in its organization (Quay's team name rules).
    pub name: String,
    /// Free text; the operator keeps its marker here.
    #[serde(default)]
    pub description: String,
    /// Its role in the organization.
    pub role: TeamRole,
}

/// `PUT …/team/{team}` body.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TeamBody<'a> {
    /// Role in the organization (required even for an update).
    pub role: TeamRole,
    /// Description.
    pub description: &'a str,
}

/// A member of an organization (`GET …/members`: users only).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct OrgMember {
    /// User name.
    pub name: String,
    /// The teams the user is in.
    #[serde(default)]
    pub teams: Vec<TeamRef>,
}

/// A team named in a member's entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TeamRef {
    /// Team name.
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct OrgMemberList {
    #[serde(default)]
    pub members: Vec<OrgMember>,
}

/// The answer to adding a team member: added, or invited by mail when Quay
/// requires team invitations.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TeamMemberAdded {
    /// The member's name.
    pub name: String,
    /// Whether Quay sent an invitation instead of adding.
    #[serde(default)]
    pub invited: bool,
}

/// `POST /api/v1/organization/` body.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NewOrganization<'a> {
    /// Organization name.
    pub name: &'a str,
    /// Optional contact e-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
}

/// A robot account as Quay returns it from get, create, regenerate and list.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Robot {
    /// Full name, `org+short`.
    pub name: String,
    /// Free text; the operator keeps its ownership marker here.
    #[serde(default)]
    pub description: String,
    /// The robot's password; absent from lists asked with `token=false`.
    #[serde(default)]
    pub token: Option<SecretString>,
    /// Creation time as Quay formats it.
    #[serde(default)]
    pub created: Option<String>,
    /// Free JSON metadata (`null` on create when none was given).
    #[serde(default)]
    pub unstructured_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Repositories the robot holds a permission on (lists asked with
    /// `permissions=true`).
    #[serde(default)]
    pub repositories: Vec<String>,
}

impl Robot {
    /// The part after `org+`.
    pub fn short_name(&self) -> &str {
        self.name
            .split_once('+')
            .map_or(self.name.as_str(), |(_, short)| short)
    }
}

/// `PUT /api/v1/organization/{org}/robots/{robot}` body.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct NewRobot {
    /// Free text (Quay allows up to 255 characters).
    pub description: String,
    /// Free JSON metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unstructured_metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RobotList {
    #[serde(default)]
    pub robots: Vec<Robot>,
}

/// The user or team a default permission is granted to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delegate {
    /// `org+robot`, a user name, or a team name.
    pub name: String,
    /// `user` (users and robots) or `team`.
    pub kind: String,
    /// Whether the delegate is a robot (present in answers).
    #[serde(default, skip_serializing)]
    pub is_robot: bool,
}

/// A default-permission prototype of an organization.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Prototype {
    /// Quay's id (a UUID).
    pub id: String,
    /// The role granted.
    pub role: Role,
    /// Who gets the role.
    pub delegate: Delegate,
}

#[derive(Debug, Serialize)]
pub(crate) struct NewPrototype {
    pub role: Role,
    pub delegate: Delegate,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PrototypeList {
    #[serde(default)]
    pub prototypes: Vec<Prototype>,
}

/// `GET /api/v1/repository/{org}/{repo}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Repository {
    /// Organization or user namespace.
    pub namespace: String,
    /// Repository name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether anyone may pull.
    #[serde(default)]
    pub is_public: bool,
    /// `image` or `application`.
    #[serde(default)]
    pub kind: Option<String>,
    /// `NORMAL`, `READ_ONLY`, `MIRROR`.
    #[serde(default)]
    pub state: Option<String>,
}

/// `POST /api/v1/repository` body.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NewRepository<'a> {
    /// Organization the repository goes into.
    pub namespace: &'a str,
    /// Repository name.
    pub repository: &'a str,
    /// Initial visibility.
    pub visibility: Visibility,
    /// Free text; Quay requires the key.
    pub description: &'a str,
    /// Always `image` for the operator.
    pub repo_kind: &'a str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RepositoryList {
    #[serde(default)]
    pub repositories: Vec<Repository>,
    #[serde(default)]
    pub next_page: Option<String>,
}

/// A user's or robot's permission on a repository.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RepositoryPermission {
    /// The role held.
    pub role: Role,
    /// User or `org+robot` name.
    pub name: String,
    /// Whether it is a robot.
    #[serde(default)]
    pub is_robot: bool,
}

#[cfg(feature = "sandbox")]
#[derive(Debug, Deserialize)]
pub(crate) struct RepositoryPermissionList {
    #[serde(default)]
    pub permissions: BTreeMap<String, RepositoryPermission>,
}

/// A tag of a repository.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Tag {
    /// Tag name.
    pub name: String,
    /// Digest of the manifest it points to.
    #[serde(default)]
    pub manifest_digest: Option<String>,
    /// Size in bytes, when known.
    #[serde(default)]
    pub size: Option<u64>,
    /// Last modification, as Quay formats it.
    #[serde(default)]
    pub last_modified: Option<String>,
}

#[cfg(feature = "sandbox")]
#[derive(Debug, Deserialize)]
pub(crate) struct TagPage {
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub has_additional: bool,
}

#[derive(Serialize)]
pub(crate) struct RoleBody {
    pub role: Role,
}

#[cfg(feature = "sandbox")]
#[derive(Serialize)]
pub(crate) struct VisibilityBody {
    pub visibility: Visibility,
}

/// Quay's error bodies, all three shapes: the API shape
/// (`detail`/`error_message`/`error_type`/`title`/`status`), the data-model
/// shape (`{"message"}`) and the CSRF shape (`{"error"}`).
/// An organization's OAuth application (its client secret is never read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OAuthApplication {
    /// Display name.
    pub name: String,
    /// Free text; the operator keeps its ownership marker here.
    #[serde(default)]
    pub description: String,
    /// The OAuth client id.
    pub client_id: String,
    /// Where Quay redirects after authorizing.
    #[serde(default)]
    pub redirect_uri: String,
}

/// `{"applications": [...]}`.
#[derive(Debug, Deserialize)]
pub struct OAuthApplicationList {
    /// The applications.
    pub applications: Vec<OAuthApplication>,
}

/// The tokens API's answer to a create: the token is shown only here.
#[derive(Debug, Deserialize)]
pub struct AppToken {
    /// Its id, to delete it.
    pub uuid: String,
    /// The token.
    pub token: SecretString,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// `invalid_token`, `insufficient_scope`, … (shape (a) only).
    #[serde(default)]
    pub error_type: Option<String>,
}

impl ErrorBody {
    /// The human message, whichever shape carried it.
    pub fn text(&self) -> Option<&str> {
        self.detail
            .as_deref()
            .or(self.error_message.as_deref())
            .or(self.message.as_deref())
            .or(self.error.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robot_decodes_recorded_answers() {
        let created: Robot = serde_json::from_str(r#"{"name": "peerorg+builder", "created": "Tue, 24 Nov 2026 15:52:46 -0000", "last_accessed": null, "description": "operator robot", "token": "7HKPBGY4", "unstructured_metadata": null}"#).unwrap();
        assert_eq!(created.short_name(), "builder");
        assert_eq!(
            created.token.as_ref().map(SecretString::expose),
            Some("7HKPBGY4")
        );
        assert_eq!(created.unstructured_metadata, None);
        let listed: Robot = serde_json::from_str(r#"{"name": "peerorg+ci-bot", "created": "x", "last_accessed": null, "teams": [], "repositories": [], "description": ""}"#).unwrap();
        assert!(listed.token.is_none());
        // Debug of a robot never shows its token.
        assert!(!format!("{created:?}").contains("7HKPBGY4"));
    }

    #[test]
    fn error_body_reads_every_shape() {
        let a: ErrorBody = serde_json::from_str(r#"{"detail": "Not Found", "error_message": "Not Found", "error_type": "not_found", "title": "not_found", "status": 404}"#).unwrap();
        assert_eq!(a.text(), Some("Not Found"));
        let b: ErrorBody =
            serde_json::from_str(r#"{"message": "Could not find robot with specified username"}"#)
                .unwrap();
        assert_eq!(
            b.text(),
            Some("Could not find robot with specified username")
        );
        let c: ErrorBody =
            serde_json::from_str(r#"{"error": "CSRF token was invalid or missing."}"#).unwrap();
        assert_eq!(c.text(), Some("CSRF token was invalid or missing."));
    }

    #[test]
    fn prototype_body_has_quay_shape() {
        let body = NewPrototype {
            role: Role::Write,
            delegate: Delegate {
                name: "o+builder".into(),
                kind: "user".into(),
                is_robot: true,
            },
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"role": "write", "delegate": {"name": "o+builder", "kind": "user"}})
        );
    }
}
