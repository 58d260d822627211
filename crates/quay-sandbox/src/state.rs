//! The embedded Quay's data: users, OAuth tokens, organizations with their
//! robots, default permissions and repositories, and registry content.
//!
//! Permission rules follow Quay: the user that creates an organization joins
//! its `owners` team; members of an admin-role team (and superusers, when
//! full access is on) administer everything in it; joining any team makes a
//! user an organization member; default permissions (for users, robots or
//! teams) are applied only when a real user creates a repository in a
//! namespace other than its own.

use crate::Role;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// OAuth scopes of Quay (`auth/scopes.py`).
pub const ALL_SCOPES: &[&str] = &[
    "org:admin",
    "repo:admin",
    "repo:create",
    "repo:read",
    "repo:write",
    "super:user",
    "user:admin",
    "user:read",
];

/// Whether a token holding `granted` satisfies `required`, with Quay's
/// implied scopes (repo:admin ⊃ repo:write ⊃ repo:read, user:admin ⊃ user:read).
pub fn scope_satisfied(granted: &BTreeSet<String>, required: &str) -> bool {
    granted.iter().any(|g| {
        g == required
            || matches!(
                (g.as_str(), required),
                ("repo:admin", "repo:write" | "repo:read" | "repo:create")
                    | ("repo:write", "repo:read")
                    | ("user:admin", "user:read")
            )
    })
}

/// A Quay user.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub(crate) email: String,
    pub(crate) password: String,
    pub(crate) super_user: bool,
    /// A disabled user cannot sign in and its tokens are suspended.
    pub(crate) enabled: bool,
    /// Failed sign-ins since the last success (`util/backoff.py`).
    pub(crate) failed_logins: u32,
    /// Until when every sign-in is answered 429.
    pub(crate) backoff_until: Option<Instant>,
}

/// An OAuth access token.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub(crate) user: String,
    pub(crate) scopes: BTreeSet<String>,
    pub(crate) expires_at: Option<Instant>,
    /// The tokens API's id.
    pub(crate) uuid: String,
    /// The name given through the tokens API (`null` for authorizeapp's).
    pub(crate) name: Option<String>,
    /// `client_id` of the OAuth application that issued it.
    pub(crate) app: Option<String>,
    pub(crate) created: jiff::Timestamp,
    /// Its lifetime, as the tokens list shows it in `expires_at`.
    pub(crate) lifetime: Duration,
    /// When it last authenticated a call.
    pub(crate) last_accessed: Option<jiff::Timestamp>,
}

/// Quay's default OAuth token lifetime (`DEFAULT_TOKEN_EXPIRATION_SECONDS`,
/// 10 years).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(315_576_000);

/// A Flask session, keyed by the `_csrf_token` cookie's value.
#[derive(Debug, Clone)]
pub struct Session {
    /// The signed-in user; `None` for an anonymous session.
    pub(crate) user: Option<String>,
    /// The CSRF token that goes with this session.
    pub(crate) csrf: String,
}

/// An OAuth application of an organization.
#[derive(Debug, Clone)]
pub struct AppRecord {
    pub(crate) org: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) application_uri: String,
    pub(crate) redirect_uri: String,
    pub(crate) client_secret: String,
}

/// A robot account.
#[derive(Debug, Clone)]
pub struct RobotRecord {
    pub(crate) description: String,
    pub(crate) token: String,
    pub(crate) created: String,
    pub(crate) metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub(crate) last_accessed: Option<String>,
}

/// A default permission.
#[derive(Debug, Clone)]
pub struct PrototypeRecord {
    pub(crate) id: String,
    pub(crate) role: Role,
    /// A user, a robot (`org+short`) or, with `team_delegate`, a team.
    pub(crate) delegate: String,
    pub(crate) team_delegate: bool,
    pub(crate) activating_user: Option<String>,
}

/// A team's role in its organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TeamRole {
    /// Sees what the team is granted.
    Member,
    /// Members may also create repositories.
    Creator,
    /// Members administer the organization.
    Admin,
}

impl TeamRole {
    /// Quay's name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Member => "member",
            TeamRole::Creator => "creator",
            TeamRole::Admin => "admin",
        }
    }

    /// A role from Quay's name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "member" => Some(TeamRole::Member),
            "creator" => Some(TeamRole::Creator),
            "admin" => Some(TeamRole::Admin),
            _ => None,
        }
    }
}

/// A team of an organization.
#[derive(Debug, Clone)]
pub struct TeamRecord {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) role: TeamRole,
    /// Users and robots, in the order they joined.
    pub(crate) members: Vec<String>,
}

/// A stored manifest.
#[derive(Debug, Clone)]
pub struct ManifestRecord {
    pub(crate) media_type: String,
    pub(crate) body: bytes::Bytes,
}

/// A tag.
#[derive(Debug, Clone)]
pub struct TagRecord {
    pub(crate) digest: String,
    pub(crate) size: u64,
    pub(crate) last_modified: String,
    pub(crate) start_ts: i64,
}

/// A repository.
#[derive(Debug, Clone)]
pub struct RepoRecord {
    pub(crate) description: String,
    pub(crate) public: bool,
    pub(crate) kind: String,
    /// Explicit user and robot permissions, by user or `org+robot` name.
    pub(crate) permissions: BTreeMap<String, Role>,
    /// Team permissions, by team name.
    pub(crate) team_permissions: BTreeMap<String, Role>,
    /// Creation sequence: Quay lists repositories in creation order.
    pub(crate) seq: u64,
    pub(crate) tags: BTreeMap<String, TagRecord>,
    pub(crate) manifests: HashMap<String, ManifestRecord>,
    pub(crate) status_token: String,
}

/// An organization.
#[derive(Debug, Clone)]
pub struct OrgRecord {
    pub(crate) name: String,
    pub(crate) email: String,
    /// Teams in creation order (`owners` first, holding the creator).
    pub(crate) teams: Vec<TeamRecord>,
    pub(crate) robots: BTreeMap<String, RobotRecord>,
    pub(crate) prototypes: Vec<PrototypeRecord>,
    pub(crate) repos: BTreeMap<String, RepoRecord>,
}

impl OrgRecord {
    /// A new organization whose `owners` team holds its creator.
    pub fn new(name: &str, email: &str, creator: &str) -> Self {
        Self {
            name: name.to_owned(),
            email: email.to_owned(),
            teams: vec![TeamRecord {
                name: "owners".into(),
                description: String::new(),
                role: TeamRole::Admin,
                members: vec![creator.to_owned()],
            }],
            robots: BTreeMap::new(),
            prototypes: Vec::new(),
            repos: BTreeMap::new(),
        }
    }

    /// `org+`, what its robots' names start with.
    pub fn robot_prefix(&self) -> String {
        format!("{}+", self.name)
    }

    /// A team by name.
    pub fn team(&self, name: &str) -> Option<&TeamRecord> {
        self.teams.iter().find(|t| t.name == name)
    }

    /// A team by name, mutable.
    pub fn team_mut(&mut self, name: &str) -> Option<&mut TeamRecord> {
        self.teams.iter_mut().find(|t| t.name == name)
    }

    /// Whether a member of an admin-role team.
    pub fn is_admin(&self, who: &str) -> bool {
        self.teams
            .iter()
            .any(|t| t.role == TeamRole::Admin && t.members.iter().any(|m| m == who))
    }

    /// Whether in any team (what makes a user an organization member).
    pub fn is_member(&self, who: &str) -> bool {
        self.teams
            .iter()
            .any(|t| t.members.iter().any(|m| m == who))
    }

    /// Repositories in creation order.
    pub fn repos_in_order(&self) -> Vec<(&String, &RepoRecord)> {
        let mut repos: Vec<_> = self.repos.iter().collect();
        repos.sort_by_key(|(_, r)| r.seq);
        repos
    }

    /// Takes a user out of every team and drops their own permissions.
    pub fn remove_member(&mut self, who: &str) {
        for t in &mut self.teams {
            t.members.retain(|m| m != who);
        }
        for r in self.repos.values_mut() {
            r.permissions.remove(who);
        }
    }
}

/// What a registry bearer token allows.
#[derive(Debug, Clone)]
pub struct RegistryGrant {
    pub(crate) subject: Option<String>,
    pub(crate) access: BTreeMap<String, BTreeSet<String>>,
    pub(crate) expires_at: Instant,
}

/// Who is calling the API.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No valid credentials.
    Anonymous,
    /// A user through an OAuth token with these scopes.
    User {
        /// User name.
        name: String,
        /// Scopes of the token.
        scopes: BTreeSet<String>,
    },
}

impl Caller {
    /// The user name, if authenticated.
    pub fn user(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::User { name, .. } => Some(name),
        }
    }

    /// Whether the token has the scope.
    pub fn has_scope(&self, scope: &str) -> bool {
        match self {
            Caller::Anonymous => false,
            Caller::User { scopes, .. } => scope_satisfied(scopes, scope),
        }
    }
}

/// The whole state.
#[derive(Debug)]
pub struct QuayState {
    pub(crate) users: BTreeMap<String, UserRecord>,
    pub(crate) tokens: HashMap<String, TokenRecord>,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) apps: BTreeMap<String, AppRecord>,
    pub(crate) orgs: BTreeMap<String, OrgRecord>,
    /// Names of deleted organizations, unavailable until the instant given
    /// (Quay's namespace garbage collection).
    pub(crate) deleted_names: HashMap<String, Instant>,
    pub(crate) registry_tokens: HashMap<String, RegistryGrant>,
    pub(crate) blobs: HashMap<String, bytes::Bytes>,
    pub(crate) uploads: HashMap<String, String>,
    pub(crate) superusers_full_access: bool,
    /// `FEATURE_USER_INITIALIZE`.
    pub(crate) user_initialize: bool,
    pub(crate) deleted_name_hold: Duration,
    pub(crate) next_seq: u64,
}

pub use bridge_common::random::{random_token, random_uuid};

/// Now, as Quay formats dates (`Tue, 24 Nov 2026 15:52:46 -0000`).
pub fn quay_now() -> String {
    jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S -0000")
        .to_string()
}

impl QuayState {
    /// An empty Quay.
    pub fn new(superusers_full_access: bool, deleted_name_hold: Duration) -> Self {
        Self {
            users: BTreeMap::new(),
            tokens: HashMap::new(),
            sessions: HashMap::new(),
            apps: BTreeMap::new(),
            orgs: BTreeMap::new(),
            deleted_names: HashMap::new(),
            registry_tokens: HashMap::new(),
            blobs: HashMap::new(),
            uploads: HashMap::new(),
            superusers_full_access,
            user_initialize: false,
            deleted_name_hold,
            next_seq: 0,
        }
    }

    /// Adds a user.
    pub fn add_user(&mut self, name: &str, password: &str, super_user: bool) {
        self.users.insert(
            name.to_owned(),
            UserRecord {
                email: format!("{name}@example.com"),
                password: password.to_owned(),
                super_user,
                enabled: true,
                failed_logins: 0,
                backoff_until: None,
            },
        );
    }

    /// Adds an OAuth token for a user.
    pub fn add_token(&mut self, token: &str, user: &str, scopes: &[&str], ttl: Option<Duration>) {
        self.tokens.insert(
            token.to_owned(),
            TokenRecord {
                user: user.to_owned(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                expires_at: ttl.map(|t| Instant::now() + t),
                uuid: random_uuid(),
                name: None,
                app: None,
                created: jiff::Timestamp::now(),
                lifetime: ttl.unwrap_or(DEFAULT_TOKEN_LIFETIME),
                last_accessed: None,
            },
        );
    }

    /// Mints a token of an OAuth application; returns the token.
    pub(crate) fn mint_app_token(
        &mut self,
        app: &str,
        user: &str,
        scopes: BTreeSet<String>,
        name: Option<String>,
        lifetime: Duration,
    ) -> String {
        let token = random_token(40);
        self.tokens.insert(
            token.clone(),
            TokenRecord {
                user: user.to_owned(),
                scopes,
                expires_at: Some(Instant::now() + lifetime),
                uuid: random_uuid(),
                name,
                app: Some(app.to_owned()),
                created: jiff::Timestamp::now(),
                lifetime,
                last_accessed: None,
            },
        );
        token
    }

    /// Deletes an OAuth application: every token it issued dies with it.
    pub(crate) fn delete_app(&mut self, client_id: &str) -> bool {
        if self.apps.remove(client_id).is_none() {
            return false;
        }
        self.tokens
            .retain(|_, t| t.app.as_deref() != Some(client_id));
        true
    }

    /// The scopes a user's signed-in session carries: all of them, with
    /// `super:user` only for superusers.
    pub(crate) fn session_scopes(&self, user: &str) -> BTreeSet<String> {
        let superuser = self.users.get(user).is_some_and(|u| u.super_user);
        ALL_SCOPES
            .iter()
            .filter(|s| superuser || **s != "super:user")
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// Records that a token authenticated a call (the tokens list's
    /// `last_accessed`).
    pub(crate) fn touch_token(&mut self, bearer: Option<&str>) {
        if let Some(t) = bearer.and_then(|b| self.tokens.get_mut(b)) {
            t.last_accessed = Some(jiff::Timestamp::now());
        }
    }

    /// The signed-in user of a session cookie, if any.
    pub(crate) fn session_user(&self, cookie: Option<&str>) -> Option<&str> {
        let session = self.sessions.get(cookie?)?;
        let user = session.user.as_deref()?;
        self.users
            .get(user)
            .is_some_and(|u| u.enabled)
            .then_some(user)
    }

    /// The caller a bearer token stands for. An unknown or expired token is
    /// anonymous: Quay falls back to (absent) session auth.
    pub fn caller(&self, bearer: Option<&str>) -> Caller {
        let Some(token) = bearer else {
            return Caller::Anonymous;
        };
        match self.tokens.get(token) {
            Some(t)
                if t.expires_at.is_none_or(|e| e > Instant::now())
                    && self.users.get(&t.user).is_some_and(|u| u.enabled) =>
            {
                Caller::User {
                    name: t.user.clone(),
                    scopes: t.scopes.clone(),
                }
            }
            _ => Caller::Anonymous,
        }
    }

    pub(crate) fn is_superuser_with_access(&self, user: &str) -> bool {
        self.superusers_full_access && self.users.get(user).is_some_and(|u| u.super_user)
    }

    /// Whether `user` administers organization `org` (existing or not, for
    /// superusers with full access).
    pub fn is_org_admin(&self, user: &str, org: &str) -> bool {
        self.is_superuser_with_access(user) || self.orgs.get(org).is_some_and(|o| o.is_admin(user))
    }

    /// Whether the name is taken by a user, an organization, or a deleted
    /// organization not yet collected.
    pub fn name_in_use(&mut self, name: &str) -> Option<&'static str> {
        if self.users.contains_key(name) || self.orgs.contains_key(name) {
            return Some("A user or organization with this name already exists");
        }
        let now = Instant::now();
        self.deleted_names.retain(|_, until| *until > now);
        if self.deleted_names.contains_key(name) {
            return Some("Username is not available");
        }
        None
    }

    /// The role a user or robot (`org+robot`) holds on a repository: its
    /// own permission or the best of its teams'.
    pub fn repo_role(&self, who: &str, org: &str, repo: &str) -> Option<Role> {
        if self.is_org_admin(who, org) {
            return Some(Role::Admin);
        }
        let o = self.orgs.get(org)?;
        let r = o.repos.get(repo)?;
        let through_teams = o
            .teams
            .iter()
            .filter(|t| t.members.iter().any(|m| m == who))
            .filter_map(|t| r.team_permissions.get(&t.name).copied());
        r.permissions
            .get(who)
            .copied()
            .into_iter()
            .chain(through_teams)
            .max()
    }

    /// Whether `who` (a user, a robot, or anonymous) may pull.
    pub fn can_read(&self, who: Option<&str>, org: &str, repo: &str) -> bool {
        let public = self
            .orgs
            .get(org)
            .and_then(|o| o.repos.get(repo))
            .is_some_and(|r| r.public);
        public || who.and_then(|w| self.repo_role(w, org, repo)).is_some()
    }

    /// Whether `who` may push.
    pub fn can_write(&self, who: Option<&str>, org: &str, repo: &str) -> bool {
        who.and_then(|w| self.repo_role(w, org, repo))
            .is_some_and(|r| r >= Role::Write)
    }

    /// Whether a robot name `org+short` exists.
    pub fn robot_exists(&self, full: &str) -> bool {
        full.split_once('+').is_some_and(|(org, short)| {
            self.orgs
                .get(org)
                .is_some_and(|o| o.robots.contains_key(short))
        })
    }

    /// Creates a repository as Quay's `create_repository` does: a real user
    /// creator gets admin, and default permissions apply only when that user
    /// is not the namespace itself.
    pub fn create_repo(
        &mut self,
        org: &str,
        repo: &str,
        public: bool,
        description: &str,
        kind: &str,
        creator: Option<&str>,
    ) {
        let creator_is_user =
            creator.is_some_and(|c| !c.contains('+') && self.users.contains_key(c));
        self.next_seq += 1;
        let seq = self.next_seq;
        let Some(o) = self.orgs.get_mut(org) else {
            return;
        };
        let mut permissions = BTreeMap::new();
        let mut team_permissions = BTreeMap::new();
        if let (true, Some(user)) = (creator_is_user, creator) {
            permissions.insert(user.to_owned(), Role::Admin);
            if user != org {
                for p in &o.prototypes {
                    if p.activating_user.as_deref().is_none_or(|a| a == user) {
                        let target = if p.team_delegate {
                            &mut team_permissions
                        } else {
                            &mut permissions
                        };
                        let entry = target.entry(p.delegate.clone()).or_insert(p.role);
                        *entry = (*entry).max(p.role);
                    }
                }
            }
        }
        o.repos.insert(
            repo.to_owned(),
            RepoRecord {
                description: description.to_owned(),
                public,
                kind: kind.to_owned(),
                permissions,
                team_permissions,
                seq,
                tags: BTreeMap::new(),
                manifests: HashMap::new(),
                status_token: random_uuid(),
            },
        );
    }

    /// Deletes an organization, holding its name until garbage collection.
    pub fn delete_org(&mut self, org: &str) -> bool {
        if self.orgs.remove(org).is_none() {
            return false;
        }
        let apps: Vec<String> = self
            .apps
            .iter()
            .filter(|(_, a)| a.org == org)
            .map(|(id, _)| id.clone())
            .collect();
        for id in apps {
            self.delete_app(&id);
        }
        self.deleted_names
            .insert(org.to_owned(), Instant::now() + self.deleted_name_hold);
        // Robots of the org lose every grant elsewhere too.
        let prefix = format!("{org}+");
        for o in self.orgs.values_mut() {
            for r in o.repos.values_mut() {
                r.permissions.retain(|who, _| !who.starts_with(&prefix));
            }
            o.prototypes
                .retain(|p| p.team_delegate || !p.delegate.starts_with(&prefix));
            for t in &mut o.teams {
                t.members.retain(|m| !m.starts_with(&prefix));
            }
        }
        true
    }

    /// Deletes a robot and its grants.
    pub fn delete_robot(&mut self, org: &str, short: &str) -> bool {
        let full = format!("{org}+{short}");
        let Some(o) = self.orgs.get_mut(org) else {
            return false;
        };
        if o.robots.remove(short).is_none() {
            return false;
        }
        for r in o.repos.values_mut() {
            r.permissions.remove(&full);
        }
        o.prototypes
            .retain(|p| p.team_delegate || p.delegate != full);
        for o in self.orgs.values_mut() {
            for t in &mut o.teams {
                t.members.retain(|m| m != &full);
            }
        }
        true
    }

    /// Deletes a user: their tokens stop working at once, and they leave
    /// every team and lose their permissions.
    pub fn delete_user(&mut self, name: &str) -> bool {
        if self.users.remove(name).is_none() {
            return false;
        }
        self.tokens.retain(|_, t| t.user != name);
        self.sessions.retain(|_, s| s.user.as_deref() != Some(name));
        for o in self.orgs.values_mut() {
            o.remove_member(name);
        }
        true
    }

    /// Checks registry credentials (Basic auth on `/v2/auth`): a robot and
    /// its token, `$oauthtoken` and an OAuth token, or a user and password.
    pub fn registry_login(&mut self, username: &str, password: &str) -> Option<String> {
        if username == "$oauthtoken" {
            return match self.caller(Some(password)) {
                Caller::User { name, .. } => Some(name),
                Caller::Anonymous => None,
            };
        }
        if let Some((org, short)) = username.split_once('+') {
            let robot = self.orgs.get_mut(org)?.robots.get_mut(short)?;
            if robot.token == password {
                robot.last_accessed = Some(quay_now());
                return Some(username.to_owned());
            }
            return None;
        }
        let user = self.users.get(username)?;
        (user.enabled && user.password == password).then(|| username.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> QuayState {
        let mut s = QuayState::new(true, Duration::from_secs(2));
        s.add_user("admin", "pw", true);
        s.add_user("alice", "pw", false);
        let mut org = OrgRecord::new("org", "", "alice");
        org.prototypes.push(PrototypeRecord {
            id: "p1".into(),
            role: Role::Write,
            delegate: "org+builder".into(),
            team_delegate: false,
            activating_user: None,
        });
        s.orgs.insert("org".into(), org);
        s
    }

    #[test]
    fn scopes_imply_like_quay() {
        let g: BTreeSet<String> = ["repo:admin".to_owned()].into();
        assert!(
            scope_satisfied(&g, "repo:read")
                && scope_satisfied(&g, "repo:write")
                && scope_satisfied(&g, "repo:create")
        );
        assert!(!scope_satisfied(&g, "org:admin"));
        let g: BTreeSet<String> = ["repo:read".to_owned()].into();
        assert!(!scope_satisfied(&g, "repo:write"));
    }

    #[test]
    fn prototypes_apply_only_to_user_created_repos() {
        let mut s = state();
        s.create_repo("org", "byuser", false, "", "image", Some("alice"));
        assert_eq!(
            s.orgs["org"].repos["byuser"].permissions.get("org+builder"),
            Some(&Role::Write)
        );
        assert_eq!(
            s.orgs["org"].repos["byuser"].permissions.get("alice"),
            Some(&Role::Admin)
        );
        s.create_repo("org", "byrobot", false, "", "image", Some("org+builder"));
        assert!(s.orgs["org"].repos["byrobot"].permissions.is_empty());
        s.create_repo("org", "bypush", false, "", "image", None);
        assert!(s.orgs["org"].repos["bypush"].permissions.is_empty());
    }

    #[test]
    fn team_members_get_the_team_role_on_repositories() {
        let mut s = state();
        s.add_user("bob", "pw", false);
        let org = s.orgs.get_mut("org").unwrap();
        org.teams.push(TeamRecord {
            name: "editors".into(),
            description: String::new(),
            role: TeamRole::Member,
            members: vec!["bob".into()],
        });
        org.prototypes.push(PrototypeRecord {
            id: "p2".into(),
            role: Role::Write,
            delegate: "editors".into(),
            team_delegate: true,
            activating_user: None,
        });
        s.create_repo("org", "old", false, "", "image", None);
        assert!(
            !s.can_write(Some("bob"), "org", "old"),
            "no retroactive prototypes"
        );
        s.create_repo("org", "new", false, "", "image", Some("alice"));
        assert!(s.can_write(Some("bob"), "org", "new"));
        assert!(!s.is_org_admin("bob", "org") && s.orgs["org"].is_member("bob"));
        s.orgs.get_mut("org").unwrap().remove_member("bob");
        assert!(!s.can_read(Some("bob"), "org", "new"));
        // Repositories list in creation order, not by name.
        let order: Vec<&String> = s.orgs["org"]
            .repos_in_order()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(order, ["old", "new"]);
    }

    #[test]
    fn deleted_names_are_held() {
        let mut s = state();
        assert!(s.delete_org("org"));
        assert_eq!(s.name_in_use("org"), Some("Username is not available"));
        assert_eq!(
            s.name_in_use("admin"),
            Some("A user or organization with this name already exists")
        );
        assert_eq!(s.name_in_use("free"), None);
        s.deleted_names.insert("org".into(), Instant::now());
        assert_eq!(s.name_in_use("org"), None);
    }

    #[test]
    fn unknown_and_expired_tokens_are_anonymous() {
        let mut s = state();
        s.add_token("good", "alice", &["repo:read"], None);
        s.add_token("old", "alice", &["repo:read"], Some(Duration::ZERO));
        assert!(matches!(s.caller(Some("good")), Caller::User { .. }));
        assert!(matches!(s.caller(Some("old")), Caller::Anonymous));
        assert!(matches!(s.caller(Some("nope")), Caller::Anonymous));
        assert!(matches!(s.caller(None), Caller::Anonymous));
    }

    #[test]
    fn uuids_look_like_uuids() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
        assert_eq!(&u[14..15], "4");
    }
}
