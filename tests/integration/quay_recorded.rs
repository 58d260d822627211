//! Replays every request recorded from a real Quay (shared reference
//! `quay-api-recorded.md`, in order, as state builds up) against the embedded
//! Quay, and checks the status, content type and body shape of each answer.

use crate::common;
use serde_json::Value;

struct Case {
    title: String,
    method: String,
    path: String,
    auth: String,
    body: Option<String>,
    status: u16,
    content_type: String,
    location: Option<String>,
    expected: String,
}

fn expand(s: &str) -> String {
    s.replace("a{256}", &"a".repeat(256))
}

pub(crate) fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(&s[start..end])
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for chunk in text.split("\n#### ").skip(1) {
        let mut lines = chunk.lines();
        let title = lines.next().unwrap_or_default().trim().to_owned();
        let rest: Vec<&str> = lines.collect();
        let request = rest
            .iter()
            .find(|l| l.starts_with('`'))
            .unwrap_or_else(|| panic!("{title}: no request line"));
        let target = between(request, "`", "`").unwrap();
        let (method, path) = target.split_once(' ').unwrap();
        let auth = between(request, "(auth: ", ")").unwrap().to_owned();
        let body = request
            .split_once(" body: `")
            .map(|(_, b)| b.trim_end_matches('`').to_owned());
        let answer = rest
            .iter()
            .find(|l| l.starts_with("-> **"))
            .unwrap_or_else(|| panic!("{title}: no answer line"));
        let status: u16 = between(answer, "**", "**").unwrap().parse().unwrap();
        let after = answer.split("** ").nth(1).unwrap_or_default();
        let content_type = after
            .split(" (")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let location = between(answer, "(Location: `", "`)").map(str::to_owned);
        let block_start = rest.iter().position(|l| l.starts_with("```json")).unwrap();
        let block_end = rest[block_start + 1..]
            .iter()
            .position(|l| l.starts_with("```"))
            .unwrap()
            + block_start
            + 1;
        let expected = expand(&rest[block_start + 1..block_end].join("\n"));
        cases.push(Case {
            title,
            method: method.to_owned(),
            path: expand(path),
            auth,
            body: body.map(|b| expand(&b)),
            status,
            content_type,
            location,
            expected,
        });
    }
    cases
}

const VOLATILE: &[&str] = &[
    "token",
    "created",
    "hash",
    "color",
    "id",
    "status_token",
    "last_modified",
    "start_ts",
    "password",
    "encrypted_password",
    "last_accessed",
];

/// Same keys everywhere, same values except where they are generated.
pub(crate) fn assert_same_shape(title: &str, path: &str, expected: &Value, actual: &Value) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let ek: Vec<&String> = e.keys().collect();
            let mut ak: Vec<&String> = a.keys().collect();
            ak.sort();
            let mut eks = ek.clone();
            eks.sort();
            assert_eq!(
                eks, ak,
                "{title}: keys differ at {path}\nexpected {expected}\nactual   {actual}"
            );
            for (k, ev) in e {
                let av = &a[k];
                let sub = format!("{path}.{k}");
                if VOLATILE.contains(&k.as_str()) {
                    assert_eq!(ev.is_null(), av.is_null(), "{title}: null-ness of {sub}");
                    continue;
                }
                match (k.as_str(), ev, av) {
                    ("type", Value::String(es), Value::String(as_)) => {
                        let suffix = |s: &str| s.split("/api/v1/").nth(1).map(str::to_owned);
                        assert_eq!(suffix(es), suffix(as_), "{title}: {sub}");
                    }
                    ("detail" | "error_message", Value::String(es), Value::String(as_)) => {
                        // Quay's own text, schema dump included.
                        assert_eq!(es, as_, "{title}: {sub}");
                    }
                    _ => assert_same_shape(title, &sub, ev, av),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(
                e.len(),
                a.len(),
                "{title}: length of {path}\nexpected {expected}\nactual   {actual}"
            );
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                assert_same_shape(title, &format!("{path}[{i}]"), ev, av);
            }
        }
        _ => assert_eq!(expected, actual, "{title}: value at {path}"),
    }
}

#[tokio::test]
#[ignore = "needs ../shared/reference/quay-api-recorded.md (run by .ci/run)"]
async fn embedded_quay_answers_like_the_recorded_real_quay() {
    let text = common::shared_reference("quay-api-recorded.md");
    let cases = parse(&text);
    assert_eq!(cases.len(), 87, "all recorded cases parsed");

    let quay = common::quay().await;
    let admin = quay.admin_token();
    // The recording's repo:read-only token.
    let read_only = "Z9EDV0HBDHH63BCKSQ7YFKXFZ0M5MB5YU9T4TZ8Q";
    {
        // Register exactly that token for the admin user with one scope.
        let resp = reqwest::Client::new()
            .post(format!("{}/_sandbox/quay/tokens", quay.url()))
            .bearer_auth(admin.expose())
            .json(&serde_json::json!({"user": "admin", "scopes": ["repo:read"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let read_only_token = quay.issue_token("admin", &["repo:read"], None);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Generated ids differ: recorded id -> ours, learnt from answers.
    let mut ids: Vec<(String, String)> = Vec::new();
    for case in &cases {
        if case.title.starts_with("org get after recreate") {
            // The recorder waited for Quay's namespace GC, then created the
            // organization again before this request.
            quay.collect_deleted_namespaces();
            let r = http
                .post(format!("{}/api/v1/organization/", quay.url()))
                .bearer_auth(admin.expose())
                .json(&serde_json::json!({"name": "peerorg", "email": "peerorg@example.com"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
        let mut path = case.path.clone();
        for (recorded, ours) in &ids {
            path = path.replace(recorded.as_str(), ours);
        }
        let url = format!("{}{path}", quay.url());
        let mut req = http.request(case.method.parse().unwrap(), &url);
        req = match case.auth.as_str() {
            "valid admin token" => req.bearer_auth(admin.expose()),
            "none" => req,
            other => {
                let token = other.strip_prefix("Bearer ").unwrap();
                req.bearer_auth(if token == read_only {
                    read_only_token.expose()
                } else {
                    token
                })
            }
        };
        if let Some(body) = &case.body {
            let content_type = if case.title.contains("not JSON content-type") {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            };
            req = req.header("content-type", content_type).body(body.clone());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.text().await.unwrap();
        assert_eq!(status, case.status, "{}: status (body {body})", case.title);
        let media = |ct: &str| ct.split(';').next().unwrap_or_default().trim().to_owned();
        assert_eq!(
            media(&content_type),
            media(&case.content_type),
            "{}: content type",
            case.title
        );
        if let Some(expected_location) = &case.location {
            let path_of = |l: &str| {
                l.split_once("//")
                    .and_then(|(_, r)| r.split_once('/'))
                    .map(|(_, p)| p.to_owned())
            };
            assert_eq!(
                path_of(location.as_deref().unwrap_or_default()),
                path_of(expected_location),
                "{}: Location",
                case.title
            );
        }
        let expected = case.expected.trim();
        if expected.is_empty() {
            assert!(
                body.trim().is_empty(),
                "{}: expected no body, got {body}",
                case.title
            );
        } else if expected == "Created" {
            assert_eq!(body.trim().trim_matches('"'), "Created", "{}", case.title);
        } else if expected.starts_with("<swagger") {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["swagger"], "2.0");
        } else if expected.starts_with('<') {
            let title_of = |s: &str| between(s, "<title>", "</title>").map(|t| t.trim().to_owned());
            assert_eq!(
                title_of(&body),
                title_of(expected),
                "{}: HTML page",
                case.title
            );
        } else if expected.ends_with("<truncated>") {
            // The recording cut a schema dump; compare its first line.
            let first = between(expected, "{\"detail\": \"", "\\n").unwrap();
            let v: Value = serde_json::from_str(&body).unwrap();
            let detail = v["detail"].as_str().unwrap_or_default();
            assert_eq!(
                detail.lines().next().unwrap_or_default(),
                first.replace("\\'", "'"),
                "{}",
                case.title
            );
            assert_eq!(v["error_type"], "invalid_request");
        } else {
            let e: Value = serde_json::from_str(expected)
                .unwrap_or_else(|err| panic!("{}: recorded body is JSON: {err}", case.title));
            let a: Value = serde_json::from_str(&body)
                .unwrap_or_else(|err| panic!("{}: body {body} is not JSON: {err}", case.title));
            assert_same_shape(&case.title, "$", &e, &a);
            if let (Some(recorded), Some(ours)) = (e["id"].as_str(), a["id"].as_str()) {
                ids.push((recorded.to_owned(), ours.to_owned()));
            }
        }
    }
    quay.shutdown().await;
}
