//! Replays every request recorded from a real Quay's teams, members, team
//! permissions and user APIs (shared reference `quay-api-teams.md`, in
//! order, with the setup calls the recording names but does not show)
//! against the embedded Quay, and checks status, content type and body.

use crate::common;
use crate::quay_recorded::{assert_same_shape, between};
use reqwest::Client;
use serde_json::{Value, json};

struct Case {
    title: String,
    method: String,
    path: String,
    auth: String,
    body: Option<String>,
    status: u16,
    expect: Expect,
}

enum Expect {
    Empty,
    Json(String),
    /// Quay's error shape (a) with this exact detail.
    Invalid(String),
    /// Shape (a) whose detail starts with this line (a jsonschema dump).
    InvalidFirstLine(String),
    /// Only the content type (an HTML page).
    ContentType(String),
    Csrf,
    SameAs(String),
}

/// `@name` avatars and `X{n}` repetitions, as the recording writes them.
fn expander(text: &str) -> impl Fn(&str) -> String {
    let mut avatars: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("- `@")?;
            let (name, rest) = l.split_once("` = `")?;
            Some((format!("@{name}"), rest.trim_end_matches('`').to_owned()))
        })
        .collect();
    avatars.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    move |s: &str| {
        let mut s = s.to_owned();
        for (name, body) in &avatars {
            s = s.replace(name.as_str(), body);
        }
        s.replace("a{256}", &"a".repeat(256))
            .replace("b{255}", &"b".repeat(255))
            .replace("$O", "/api/v1/organization/teamsorg")
            .replace("$R", "/api/v1/repository/teamsorg")
    }
}

fn parse(text: &str) -> Vec<Case> {
    let expand = expander(text);
    let cases_part = text.split("# Recorded cases").nth(1).unwrap_or_default();
    let mut cases = Vec::new();
    for chunk in cases_part.split("\n#### ").skip(1) {
        let mut lines = chunk.lines();
        let title = lines.next().unwrap_or_default().trim().to_owned();
        let rest: Vec<&str> = lines.collect();
        let request = rest
            .iter()
            .find(|l| l.starts_with('`'))
            .unwrap_or_else(|| panic!("{title}: no request line"));
        let target = between(request, "`", "`").unwrap();
        let (method, path) = target.split_once(' ').unwrap();
        let auth = between(request, "(auth: ", ")")
            .unwrap_or("admin")
            .to_owned();
        let body = request
            .split_once(" body: `")
            .map(|(_, b)| b.trim_end_matches('`').to_owned());
        let answer = rest
            .iter()
            .find(|l| l.starts_with("-> **"))
            .unwrap_or_else(|| panic!("{title}: no answer line"));
        let status: u16 = between(answer, "**", "**").unwrap().parse().unwrap();
        let after = answer
            .splitn(3, "**")
            .nth(2)
            .unwrap_or_default()
            .trim()
            .trim_matches('`')
            .to_owned();
        let block = |lang: &str| {
            let start = rest.iter().position(|l| *l == format!("```{lang}"))?;
            let end = rest[start + 1..]
                .iter()
                .position(|l| l.starts_with("```"))?
                + start
                + 1;
            Some(rest[start + 1..end].join("\n"))
        };
        let macro_body = |name: &str, status: u16, error_type: &str, detail: &str| {
            (after == name).then(|| {
                json!({"detail": detail, "error_message": detail, "error_type": error_type,
                    "title": error_type, "type": format!("http://x/api/v1/error/{error_type}"), "status": status})
            })
        };
        let expect = if let Some(other) = after.strip_prefix(": body identical to **") {
            Expect::SameAs(other.trim_end_matches("**").to_owned())
        } else if let Some(j) = block("json") {
            Expect::Json(expand(&j))
        } else if block("html").is_some() {
            Expect::ContentType("text/html".into())
        } else if after.is_empty() {
            Expect::Empty
        } else if after.starts_with('{') || after.starts_with('"') {
            Expect::Json(expand(&after))
        } else if after.contains("CSRF") {
            Expect::Csrf
        } else if let Some(v) = macro_body("NOT_FOUND", 404, "not_found", "Not Found")
            .or_else(|| macro_body("SCOPE_403", 403, "insufficient_scope", "Unauthorized"))
            .or_else(|| macro_body("AUTH_401", 401, "invalid_token", "Requires authentication"))
        {
            Expect::Json(v.to_string())
        } else if after == "AUTH_401_S" {
            Expect::Json(
                json!({"session_required": false, "detail": "Requires authentication", "error_message": "Requires authentication", "error_type": "invalid_token", "title": "invalid_token", "type": "http://x/api/v1/error/invalid_token", "status": 401})
                    .to_string(),
            )
        } else if let Some(d) = between(&after, "INVALID_REQUEST(\"", "\")") {
            Expect::Invalid(d.to_owned())
        } else if let Some(d) = between(&after, "d = \"", "\\n") {
            Expect::InvalidFirstLine(d.to_owned())
        } else if after.starts_with("text/html") {
            Expect::ContentType("text/html".into())
        } else {
            panic!("{title}: unread answer {after:?}")
        };
        cases.push(Case {
            title,
            method: method.to_owned(),
            path: expand(path),
            auth,
            body: body.map(|b| expand(&b)),
            status,
            expect,
        });
    }
    cases
}

/// Cases whose request this process cannot make as recorded, and why.
const NOT_REPLAYED: &[(&str, &str)] = &[(
    "v2 auth endpoint (registry token flow)",
    "the recorded Quay process served no registry; the embedded Quay serves its registry on the same port",
)];

struct Replay {
    http: Client,
    base: String,
    admin: String,
}

impl Replay {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// A setup call the recording names but does not show.
    async fn setup(&self, method: &str, path: &str, body: Option<Value>) {
        let (status, text) = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "setup {method} {path}: {status} {text}"
        );
    }

    /// Registry login with Basic credentials: whether Quay accepts them.
    async fn registry_login(&self, user: &str, password: &str) -> u16 {
        self.http
            .get(format!("{}/v2/auth?service=quay&scope=", self.base))
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[tokio::test]
#[ignore = "needs ../shared/reference/quay-api-teams.md (run by .ci/run)"]
async fn embedded_quay_teams_answer_like_the_recorded_real_quay() {
    let text = common::shared_reference("quay-api-teams.md");
    let cases = parse(&text);
    assert_eq!(cases.len(), 136, "all recorded cases parsed");

    let quay = common::quay().await;
    let r = Replay {
        http: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: quay.url(),
        admin: quay.admin_token().expose().to_owned(),
    };
    let o = "/api/v1/organization/teamsorg";
    let mut bodies: Vec<(String, Value)> = Vec::new();
    let mut robot_tokens: Vec<String> = Vec::new();
    let mut alice_tokens: Option<(String, String)> = None;
    let mut replayed = 0;
    for case in &cases {
        let title = case.title.as_str();
        if let Some((_, why)) = NOT_REPLAYED.iter().find(|(t, _)| *t == title) {
            eprintln!("not replayed: {title}: {why}");
            continue;
        }
        // The setup calls the recording lists without showing them, at the
        // point the later answers need them.
        match title {
            // `ordered_teams` in "org get (teams map)" shows editors made
            // before admins.
            "team create admins (admin), no description" => {
                r.setup(
                    "PUT",
                    &format!("{o}/team/editors"),
                    Some(json!({"role": "creator"})),
                )
                .await;
            }
            // The same answer lists no 255-character team: the recorder
            // removed it.
            "org get (teams map)" => {
                r.setup("DELETE", &format!("{o}/team/{}", "b".repeat(255)), None)
                    .await;
            }
            "member add: robot of ANOTHER org" => {
                r.setup(
                    "POST",
                    "/api/v1/organization/",
                    Some(json!({"name": "teamsorgx", "email": "teamsorgx@example.com"})),
                )
                .await;
                r.setup(
                    "PUT",
                    "/api/v1/organization/teamsorgx/robots/bot",
                    Some(json!({})),
                )
                .await;
            }
            "member delete: org member not in this team" => {
                r.setup(
                    "POST",
                    "/api/v1/superuser/users/",
                    Some(json!({"username": "bob", "email": "bob@example.com"})),
                )
                .await;
                for team in ["editors", "proj-dev"] {
                    r.setup("PUT", &format!("{o}/team/{team}/members/bob"), None)
                        .await;
                }
                r.setup(
                    "PUT",
                    &format!("{o}/team/proj-dev/members/teamsorg+bot"),
                    None,
                )
                .await;
            }
            "org members list" => {
                r.setup("PUT", &format!("{o}/team/viewers/members/bob"), None)
                    .await;
                r.setup(
                    "PUT",
                    "/api/v1/repository/teamsorg/prerepo/permissions/user/bob",
                    Some(json!({"role": "write"})),
                )
                .await;
            }
            "owners: add a second member" => {
                let noscope = quay.issue_token("alice", &["repo:read", "user:read"], None);
                let member =
                    quay.issue_token("alice", &["org:admin", "repo:admin", "user:read"], None);
                alice_tokens = Some((noscope.expose().to_owned(), member.expose().to_owned()));
            }
            _ => {}
        }
        // Sign-in needs the CSRF pair of `GET /csrf_token` first
        // (quay-api-bootstrap.md).
        if title == "signin as a user created by the superuser API" {
            let password = bodies
                .iter()
                .find(|(t, _)| t == "superuser create user alice")
                .and_then(|(_, v)| v["password"].as_str().map(str::to_owned))
                .unwrap();
            let pair = r
                .http
                .get(format!("{}/csrf_token", r.base))
                .send()
                .await
                .unwrap();
            let cookie = pair.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            let csrf: Value = pair.json().await.unwrap();
            let resp = r
                .http
                .post(format!("{}{}", r.base, case.path))
                .header("cookie", cookie)
                .header("x-csrf-token", csrf["csrf_token"].as_str().unwrap())
                .json(&json!({"username": "alice", "password": password}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), case.status, "{title}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body, json!({"success": true}), "{title}");
            replayed += 1;
            continue;
        }
        // Credential checks: the recording asked `/oauth/authorizeapp`
        // (401 = refused, 403 = accepted); the embedded Quay is asked
        // through its registry login, which accepts the same credentials.
        if title.starts_with("credential check, robot") {
            let token = if title.ends_with("original token") {
                &robot_tokens[0]
            } else if title.ends_with("first regenerate") {
                &robot_tokens[1]
            } else {
                robot_tokens.last().unwrap()
            };
            let status = r.registry_login("teamsorg+bot", token).await;
            let accepted = case.status == 403;
            assert_eq!(status == 200, accepted, "{title}: registry login {status}");
            replayed += 1;
            continue;
        }
        let mut req = r.http.request(
            case.method.parse().unwrap(),
            format!("{}{}", r.base, case.path),
        );
        req = match case.auth.as_str() {
            "admin" => req.bearer_auth(&r.admin),
            "none" => req,
            "T_NOSCOPE" => req.bearer_auth(&alice_tokens.as_ref().unwrap().0),
            "T_MEMBER" | "T_MEMBER, after alice was deleted" => {
                req.bearer_auth(&alice_tokens.as_ref().unwrap().1)
            }
            a if a.starts_with("Basic teamsorg+bot:") => {
                let token = if a.contains("original") {
                    &robot_tokens[0]
                } else {
                    robot_tokens.last().unwrap()
                };
                req.basic_auth("teamsorg+bot", Some(token))
            }
            other => panic!("{title}: unknown auth {other}"),
        };
        if let Some(body) = &case.body {
            req = req
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp.text().await.unwrap();
        assert_eq!(status, case.status, "{title}: status (body {body})");
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        if let Some(v) = &parsed
            && let Some(token) = v.get("token").and_then(Value::as_str)
            && v["name"] == "teamsorg+bot"
            && (title == "robot create" || title.starts_with("robot regenerate"))
        {
            robot_tokens.push(token.to_owned());
        }
        let json_of = |what: &str| -> Value {
            parsed
                .clone()
                .unwrap_or_else(|| panic!("{title}: {what}: body {body} is not JSON"))
        };
        match &case.expect {
            Expect::Empty => assert!(body.trim().is_empty(), "{title}: body {body}"),
            Expect::Json(expected) => {
                let e: Value = serde_json::from_str(expected)
                    .unwrap_or_else(|err| panic!("{title}: recorded body is JSON: {err}"));
                assert_same_shape(title, "$", &e, &json_of("JSON"));
                assert!(
                    content_type.starts_with("application/json"),
                    "{title}: {content_type}"
                );
            }
            Expect::SameAs(other) => {
                let (_, e) = bodies
                    .iter()
                    .find(|(t, _)| t == other)
                    .unwrap_or_else(|| panic!("{title}: no earlier answer {other}"));
                assert_same_shape(title, "$", e, &json_of("JSON"));
            }
            Expect::Invalid(detail) => {
                let v = json_of("error");
                assert_eq!(v["error_type"], "invalid_request", "{title}");
                assert_eq!(v["detail"], detail.as_str(), "{title}");
            }
            Expect::InvalidFirstLine(first) => {
                let v = json_of("error");
                assert_eq!(v["error_type"], "invalid_request", "{title}");
                let detail = v["detail"].as_str().unwrap_or_default();
                assert_eq!(detail.lines().next(), Some(first.as_str()), "{title}");
            }
            Expect::ContentType(ct) => {
                assert!(
                    content_type.starts_with(ct.as_str()),
                    "{title}: {content_type}"
                )
            }
            Expect::Csrf => {
                assert!(
                    content_type.starts_with("text/html"),
                    "{title}: {content_type}"
                );
                assert_eq!(
                    json_of("CSRF")["error"],
                    "CSRF token was invalid or missing.",
                    "{title}"
                );
            }
        }
        if let Some(v) = parsed {
            bodies.push((case.title.clone(), v));
        }
        replayed += 1;
    }
    assert_eq!(replayed, cases.len() - NOT_REPLAYED.len());
    quay.shutdown().await;
}
