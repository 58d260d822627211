//! The Quay API endpoints the client calls, as method + path template.
//!
//! Templates (never object names) label metrics and errors, so label sets stay
//! bounded however many organizations the operator manages.

use std::fmt;

/// One Quay API endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// HTTP method.
    pub method: &'static str,
    /// Path template below the base URL.
    pub template: &'static str,
}

impl Endpoint {
    const fn new(method: &'static str, template: &'static str) -> Self {
        Self { method, template }
    }

    /// Whether repeating the request cannot create a second object.
    pub fn is_idempotent(&self) -> bool {
        matches!(self.method, "GET" | "PUT" | "DELETE" | "HEAD")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.template)
    }
}

/// `GET /api/v1/user/`.
pub const USER_GET: Endpoint = Endpoint::new("GET", "/api/v1/user/");
/// `GET /api/v1/organization/{org}`.
pub const ORG_GET: Endpoint = Endpoint::new("GET", "/api/v1/organization/{org}");
/// `POST /api/v1/organization/`.
pub const ORG_CREATE: Endpoint = Endpoint::new("POST", "/api/v1/organization/");
/// `DELETE /api/v1/organization/{org}`.
pub const ORG_DELETE: Endpoint = Endpoint::new("DELETE", "/api/v1/organization/{org}");
/// `GET /api/v1/organization/{org}/robots`.
pub const ROBOT_LIST: Endpoint = Endpoint::new("GET", "/api/v1/organization/{org}/robots");
/// `GET /api/v1/organization/{org}/robots/{robot}`.
pub const ROBOT_GET: Endpoint = Endpoint::new("GET", "/api/v1/organization/{org}/robots/{robot}");
/// `PUT /api/v1/organization/{org}/robots/{robot}`.
///
/// A PUT, but not idempotent: a second one answers "Existing robot".
pub const ROBOT_CREATE: Endpoint =
    Endpoint::new("PUT", "/api/v1/organization/{org}/robots/{robot}");
/// `DELETE /api/v1/organization/{org}/robots/{robot}`.
pub const ROBOT_DELETE: Endpoint =
    Endpoint::new("DELETE", "/api/v1/organization/{org}/robots/{robot}");
/// `POST /api/v1/organization/{org}/robots/{robot}/regenerate`.
pub const ROBOT_REGENERATE: Endpoint = Endpoint::new(
    "POST",
    "/api/v1/organization/{org}/robots/{robot}/regenerate",
);
/// `GET /api/v1/organization/{org}/prototypes`.
pub const PROTOTYPE_LIST: Endpoint = Endpoint::new("GET", "/api/v1/organization/{org}/prototypes");
/// `POST /api/v1/organization/{org}/prototypes`.
pub const PROTOTYPE_CREATE: Endpoint =
    Endpoint::new("POST", "/api/v1/organization/{org}/prototypes");
/// `DELETE /api/v1/organization/{org}/prototypes/{id}`.
pub const PROTOTYPE_DELETE: Endpoint =
    Endpoint::new("DELETE", "/api/v1/organization/{org}/prototypes/{id}");
/// `GET /api/v1/repository?namespace={org}`.
pub const REPO_LIST: Endpoint = Endpoint::new("GET", "/api/v1/repository");
/// `POST /api/v1/repository`.
pub const REPO_CREATE: Endpoint = Endpoint::new("POST", "/api/v1/repository");
/// `GET /api/v1/repository/{org}/{repo}`.
pub const REPO_GET: Endpoint = Endpoint::new("GET", "/api/v1/repository/{org}/{repo}");
/// `DELETE /api/v1/repository/{org}/{repo}`.
pub const REPO_DELETE: Endpoint = Endpoint::new("DELETE", "/api/v1/repository/{org}/{repo}");
/// `POST /api/v1/repository/{org}/{repo}/changevisibility`.
pub const REPO_VISIBILITY: Endpoint =
    Endpoint::new("POST", "/api/v1/repository/{org}/{repo}/changevisibility");
/// `GET /api/v1/repository/{org}/{repo}/permissions/user/`.
pub const REPO_PERM_LIST: Endpoint =
    Endpoint::new("GET", "/api/v1/repository/{org}/{repo}/permissions/user/");
/// `GET /api/v1/repository/{org}/{repo}/permissions/user/{user}`.
pub const REPO_PERM_GET: Endpoint = Endpoint::new(
    "GET",
    "/api/v1/repository/{org}/{repo}/permissions/user/{user}",
);
/// `PUT /api/v1/repository/{org}/{repo}/permissions/user/{user}`.
pub const REPO_PERM_PUT: Endpoint = Endpoint::new(
    "PUT",
    "/api/v1/repository/{org}/{repo}/permissions/user/{user}",
);
/// `DELETE /api/v1/repository/{org}/{repo}/permissions/user/{user}`.
pub const REPO_PERM_DELETE: Endpoint = Endpoint::new(
    "DELETE",
    "/api/v1/repository/{org}/{repo}/permissions/user/{user}",
);
/// `GET /api/v1/organization/{org}/members`.
pub const ORG_MEMBERS: Endpoint = Endpoint::new("GET", "/api/v1/organization/{org}/members");
/// `PUT /api/v1/organization/{org}/team/{team}`: creates or updates.
pub const TEAM_PUT: Endpoint = Endpoint::new("PUT", "/api/v1/organization/{org}/team/{team}");
/// `PUT /api/v1/organization/{org}/team/{team}/members/{member}`.
pub const TEAM_MEMBER_PUT: Endpoint = Endpoint::new(
    "PUT",
    "/api/v1/organization/{org}/team/{team}/members/{member}",
);
/// `DELETE /api/v1/organization/{org}/team/{team}/members/{member}`.
pub const TEAM_MEMBER_DELETE: Endpoint = Endpoint::new(
    "DELETE",
    "/api/v1/organization/{org}/team/{team}/members/{member}",
);
/// `PUT /api/v1/repository/{org}/{repo}/permissions/team/{team}`.
pub const REPO_TEAM_PERM_PUT: Endpoint = Endpoint::new(
    "PUT",
    "/api/v1/repository/{org}/{repo}/permissions/team/{team}",
);
/// `GET /api/v1/repository/{org}/{repo}/tag/`.
pub const TAG_LIST: Endpoint = Endpoint::new("GET", "/api/v1/repository/{org}/{repo}/tag/");
/// `GET /csrf_token`: a CSRF token and its session cookie.
pub const CSRF_TOKEN: Endpoint = Endpoint::new("GET", "/csrf_token");
/// `POST /api/v1/signin`.
pub const SIGNIN: Endpoint = Endpoint::new("POST", "/api/v1/signin");
/// `POST /api/v1/user/initialize`: the first user of an empty Quay.
pub const USER_INITIALIZE: Endpoint = Endpoint::new("POST", "/api/v1/user/initialize");
/// `POST /api/v1/signout`.
pub const SIGNOUT: Endpoint = Endpoint::new("POST", "/api/v1/signout");
/// `GET /api/v1/organization/{org}/applications`.
pub const APP_LIST: Endpoint = Endpoint::new("GET", "/api/v1/organization/{org}/applications");
/// `POST /api/v1/organization/{org}/applications`.
pub const APP_CREATE: Endpoint = Endpoint::new("POST", "/api/v1/organization/{org}/applications");
/// `POST /api/v1/organization/{org}/applications/{client_id}/tokens`.
pub const APP_TOKEN_CREATE: Endpoint = Endpoint::new(
    "POST",
    "/api/v1/organization/{org}/applications/{client_id}/tokens",
);
/// `DELETE /api/v1/organization/{org}/applications/{client_id}/tokens/{uuid}`.
pub const APP_TOKEN_DELETE: Endpoint = Endpoint::new(
    "DELETE",
    "/api/v1/organization/{org}/applications/{client_id}/tokens/{uuid}",
);
/// `POST /oauth/authorizeapp`: mints a token for a signed-in user.
pub const AUTHORIZE_APP: Endpoint = Endpoint::new("POST", "/oauth/authorizeapp");

impl Endpoint {
    /// The OAuth scope Quay requires for the call (its endpoints'
    /// `require_scope`); `None` for calls that need none or only a session.
    pub fn required_scope(&self) -> Option<&'static str> {
        let t = self.template;
        Some(match (self.method, t) {
            (
                _,
                "/csrf_token"
                | "/api/v1/signin"
                | "/api/v1/signout"
                | "/api/v1/user/initialize"
                | "/oauth/authorizeapp",
            ) => {
                return None;
            }
            ("GET", "/api/v1/user/") => "user:read",
            ("POST", "/api/v1/organization/") => "user:admin",
            ("GET", "/api/v1/organization/{org}") => return None,
            (_, _) if t.starts_with("/api/v1/organization/") => "org:admin",
            ("POST", "/api/v1/repository") => "repo:create",
            ("GET", _) if t.starts_with("/api/v1/repository") => "repo:read",
            (_, _) if t.starts_with("/api/v1/repository") => "repo:admin",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_per_call_follow_quay() {
        assert_eq!(USER_GET.required_scope(), Some("user:read"));
        assert_eq!(ORG_CREATE.required_scope(), Some("user:admin"));
        assert_eq!(ORG_GET.required_scope(), None);
        assert_eq!(ROBOT_CREATE.required_scope(), Some("org:admin"));
        assert_eq!(TEAM_MEMBER_PUT.required_scope(), Some("org:admin"));
        assert_eq!(APP_TOKEN_CREATE.required_scope(), Some("org:admin"));
        assert_eq!(REPO_CREATE.required_scope(), Some("repo:create"));
        assert_eq!(TAG_LIST.required_scope(), Some("repo:read"));
        assert_eq!(REPO_PERM_PUT.required_scope(), Some("repo:admin"));
        assert_eq!(REPO_VISIBILITY.required_scope(), Some("repo:admin"));
        assert_eq!(SIGNIN.required_scope(), None);
    }
}
