//! Replays every request recorded from a real Quay's bootstrap path
//! (shared reference `quay-api-bootstrap.md`: CSRF pairs, sign-in and its
//! backoff, OAuth applications, `/oauth/authorizeapp`, the tokens API, and
//! how every kind of dead token answers) against the embedded Quay, in
//! order, with the setup calls the recording names but does not show.
//! Status, content type, the headers the recording shows (`Location`,
//! `Set-Cookie`, `X-Next-CSRF-Token`, `Retry-After`) and the body are
//! checked; masked values (`<cookie1>`, `<client_id>`, `<token_full>`, …)
//! are learnt from the answers that show them and sent back where the
//! recording sends them.

use crate::common;
use crate::quay_recorded::between;
use regex::Regex;
use serde_json::{Value, json};
use std::collections::HashMap;

const N: &str = "48213";
const PASSWORD: &str = "first-password-1";
const PASSWORD2: &str = "second-password-2";
/// The recording's Quay.
const RECORDED_BASE: &str = "http://127.0.0.1:8089";

/// Values learnt from answers and sent back (the rest of the masked
/// values are matched as anything).
const LEARNT: &[&str] = &[
    "cookie0",
    "cookieB",
    "cookie1",
    "csrf0",
    "csrfB",
    "csrf1",
    "client_id",
    "client_id2",
    "client_id3",
    "client_secret",
    "uuid_api",
    "tmp_password",
    "token_full",
    "token_full2",
    "token_hdr",
    "token_ro",
    "token_basic",
    "token_api",
    "token_app2",
    "token_app3",
];

/// Cases this process cannot make as recorded, and why.
const NOT_REPLAYED: &[(&str, &str)] = &[(
    "health endpoint",
    "the recording rig ran no web or registry workers (503); the embedded Quay serves both, and no one reads this as a liveness signal",
)];

struct Case {
    title: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    form: Option<String>,
    status: u16,
    expect_headers: Vec<(String, String)>,
    /// A macro (CSRF, BADCRED, …), an inline body, or a fenced block.
    expect_body: Option<String>,
    block: Option<(String, String)>,
}

fn backticked(line: &str) -> Vec<String> {
    line.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

fn parse(text: &str) -> Vec<Case> {
    let part = text.split("# Recorded cases").nth(1).unwrap_or_default();
    let mut cases = Vec::new();
    for chunk in part.split("\n#### ").skip(1) {
        let mut lines = chunk.lines();
        let title = lines.next().unwrap().trim().to_owned();
        let rest: Vec<&str> = lines.collect();
        let request = rest.iter().find(|l| l.starts_with('`')).unwrap();
        let ticks = backticked(request);
        let (method, path) = ticks[0].split_once(' ').unwrap();
        let headers = ticks[1..]
            .iter()
            .filter_map(|h| h.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let body = rest
            .iter()
            .find_map(|l| l.strip_prefix("body: `"))
            .map(|b| b.trim_end_matches('`').to_owned());
        let form = rest
            .iter()
            .find_map(|l| l.strip_prefix("form (application/x-www-form-urlencoded): `"))
            .map(|b| b.trim_end_matches('`').to_owned());
        let answer = rest.iter().find(|l| l.starts_with("-> **")).unwrap();
        let status: u16 = between(answer, "**", "**").unwrap().parse().unwrap();
        let after = answer.splitn(3, "**").nth(2).unwrap_or_default();
        let mut expect_headers = Vec::new();
        let mut expect_body = None;
        for t in backticked(after) {
            match t.split_once(": ") {
                Some((k, v)) if !k.starts_with('{') && !k.starts_with('"') => {
                    expect_headers.push((k.to_owned(), v.to_owned()));
                }
                _ => expect_body = Some(t),
            }
        }
        // A macro after the last backtick (CSRF, BADCRED, HTML_401, …).
        let tail = after.rsplit('`').next().unwrap_or_default().trim();
        if expect_body.is_none() && !tail.is_empty() && !tail.starts_with('(') {
            expect_body = Some(tail.trim_start_matches(';').trim().to_owned());
        }
        let block = rest.iter().position(|l| l.starts_with("```")).map(|start| {
            let lang = rest[start].trim_start_matches('`').to_owned();
            let end = rest[start + 1..]
                .iter()
                .position(|l| l.starts_with("```"))
                .unwrap()
                + start
                + 1;
            (lang, rest[start + 1..end].join("\n"))
        });
        cases.push(Case {
            title,
            method: method.to_owned(),
            path: path.to_owned(),
            headers,
            body,
            form,
            status,
            expect_headers,
            expect_body,
            block,
        });
    }
    cases
}

struct Replay {
    http: reqwest::Client,
    base: String,
    admin: String,
    learnt: HashMap<String, String>,
}

impl Replay {
    /// The recording's text with this run's values: the run suffix, the
    /// passwords, this Quay's address, learnt values.
    fn fill(&self, text: &str) -> String {
        let mut s = text
            .replace("<n>", N)
            .replace("<password2>", PASSWORD2)
            .replace("<password>", PASSWORD)
            .replace(RECORDED_BASE, &self.base);
        // Tokens are learnt anew each time one is minted (Run B mints
        // T_FULL again); they travel as Bearer tokens, never in text.
        for (k, v) in self.learnt.iter().filter(|(k, _)| !k.starts_with("token_")) {
            s = s.replace(&format!("<{k}>"), v);
        }
        s
    }

    fn token(&self, name: &str) -> String {
        if name == "ADMIN" {
            return self.admin.clone();
        }
        if !name.starts_with("T_") {
            // A literal (a malformed or unknown token).
            return name.to_owned();
        }
        let key = format!("token_{}", name.trim_start_matches("T_").to_lowercase());
        self.learnt
            .get(&key)
            .unwrap_or_else(|| panic!("token {name} not learnt yet"))
            .clone()
    }

    /// Matches `actual` against a recorded string with `<masked>` parts;
    /// a masked part of [`LEARNT`] not known yet is learnt.
    fn matches(&mut self, what: &str, recorded: &str, actual: &str) {
        let recorded = self.fill(recorded);
        let mut pattern = String::from("^");
        let mut names = Vec::new();
        let mut rest = recorded.as_str();
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>') else {
                break;
            };
            let name = &rest[open + 1..open + close];
            pattern.push_str(&regex::escape(&rest[..open]));
            if name
                .chars()
                .all(|c| c.is_alphanumeric() || "_' =+".contains(c))
            {
                names.push(name.to_owned());
                pattern.push_str("(.*?)");
            } else {
                pattern.push_str(&regex::escape(&rest[open..=open + close]));
            }
            rest = &rest[open + close + 1..];
        }
        pattern.push_str(&regex::escape(rest));
        pattern.push('$');
        let re = Regex::new(&pattern).unwrap();
        let caps = re
            .captures(actual)
            .unwrap_or_else(|| panic!("{what}: {actual:?} does not match {recorded:?}"));
        for (i, name) in names.iter().enumerate() {
            if LEARNT.contains(&name.as_str()) {
                let value = caps.get(i + 1).unwrap().as_str().to_owned();
                assert!(!value.is_empty(), "{what}: empty <{name}>");
                self.learnt.insert(name.clone(), value);
            }
        }
    }

    /// Same keys, same values except masked ones; lists of objects with a
    /// `uuid` in any order (their order in real Quay is the database's).
    fn same_json(&mut self, what: &str, expected: &Value, actual: &Value) {
        match (expected, actual) {
            (Value::Object(e), Value::Object(a)) => {
                let mut ek: Vec<&String> = e.keys().collect();
                let mut ak: Vec<&String> = a.keys().collect();
                ek.sort();
                ak.sort();
                assert_eq!(
                    ek, ak,
                    "{what}: keys\nexpected {expected}\nactual   {actual}"
                );
                for (k, ev) in e {
                    let av = &a[k];
                    let sub = format!("{what}.{k}");
                    match (k.as_str(), ev, av) {
                        ("type", Value::String(es), Value::String(as_)) => assert_eq!(
                            es.split("/api/v1/").nth(1),
                            as_.split("/api/v1/").nth(1),
                            "{sub}"
                        ),
                        // A jsonschema dump: its first line says what failed.
                        ("detail" | "error_message", Value::String(es), Value::String(as_))
                            if es.contains("\n\n") =>
                        {
                            assert_eq!(es.split("\n\n").next(), as_.split("\n\n").next(), "{sub}");
                        }
                        _ => self.same_json(&sub, ev, av),
                    }
                }
            }
            (Value::Array(e), Value::Array(a)) => {
                assert_eq!(
                    e.len(),
                    a.len(),
                    "{what}: length\nexpected {expected}\nactual   {actual}"
                );
                let unordered = e.iter().all(|v| v.get("uuid").is_some());
                if !unordered {
                    for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                        self.same_json(&format!("{what}[{i}]"), ev, av);
                    }
                    return;
                }
                let mut left: Vec<&Value> = a.iter().collect();
                for ev in e {
                    let found = left.iter().position(|av| {
                        let mut trial = Replay {
                            http: self.http.clone(),
                            base: self.base.clone(),
                            admin: self.admin.clone(),
                            learnt: self.learnt.clone(),
                        };
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            trial.same_json(what, ev, av)
                        }))
                        .is_ok()
                    });
                    let i = found
                        .unwrap_or_else(|| panic!("{what}: no answer entry like {ev} in {actual}"));
                    left.remove(i);
                }
            }
            (Value::String(e), Value::String(a)) if e == "<avatar>" => {
                panic!("{what}: an avatar object expected, got {a:?}")
            }
            (Value::String(e), Value::Object(a)) if e == "<avatar>" => {
                assert!(
                    a.contains_key("name") && a.contains_key("hash"),
                    "{what}: {a:?}"
                );
            }
            (Value::String(e), Value::String(a)) if e.contains('<') => self.matches(what, e, a),
            (Value::String(e), Value::Null) if e.contains('<') => {
                panic!("{what}: null where the recording shows {e}")
            }
            _ => assert_eq!(expected, actual, "{what}"),
        }
    }

    async fn send(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        self.http.request(
            method.parse().unwrap(),
            format!("{}{}", self.base, self.fill(path)),
        )
    }

    /// A setup call: JSON in, a 2xx JSON answer out.
    async fn setup(
        &self,
        method: &str,
        path: &str,
        auth: Auth,
        body: Option<Value>,
    ) -> (reqwest::header::HeaderMap, Value) {
        let mut req = self.send(method, path).await;
        req = match auth {
            Auth::Admin => req.bearer_auth(&self.admin),
            Auth::Session => req
                .header("Cookie", format!("_csrf_token={}", self.learnt["cookie1"]))
                .header("X-CSRF-Token", &self.learnt["csrf1"]),
            Auth::Anonymous => req,
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        assert!(
            (200..300).contains(&status),
            "setup {method} {path}: {status} {text}"
        );
        (headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Run B's setup the recording leaves out: user, password, CSRF pair,
    /// sign-in (as Run A shows them).
    async fn sign_in_again(&mut self) {
        self.setup(
            "POST",
            "/api/v1/superuser/users/",
            Auth::Admin,
            Some(json!({"username": format!("boot{N}"), "email": format!("boot{N}@example.com")})),
        )
        .await;
        self.setup(
            "PUT",
            &format!("/api/v1/superuser/users/boot{N}"),
            Auth::Admin,
            Some(json!({"password": PASSWORD})),
        )
        .await;
        let (headers, body) = self
            .setup("GET", "/csrf_token", Auth::Anonymous, None)
            .await;
        let cookie = cookie_of(&headers);
        let csrf = body["csrf_token"].as_str().unwrap().to_owned();
        let resp = self
            .send("POST", "/api/v1/signin")
            .await
            .header("Cookie", format!("_csrf_token={cookie}"))
            .header("X-CSRF-Token", csrf)
            .json(&json!({"username": format!("boot{N}"), "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        self.learnt
            .insert("cookie1".into(), cookie_of(resp.headers()));
        self.learnt.insert(
            "csrf1".into(),
            resp.headers()["x-next-csrf-token"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }

    /// Creates an application in `bootadm<n>` with the session (as "create
    /// OAuth application" shows) and learns its id (and secret).
    async fn app(&mut self, name: &str, id_key: &str) {
        let (_, body) = self
            .setup(
                "POST",
                "/api/v1/organization/bootadm<n>/applications",
                Auth::Session,
                Some(json!({"name": name, "redirect_uri": "http://localhost:8765/operator/callback",
                    "application_uri": "http://localhost:8765/", "description": "operator bootstrap"})),
            )
            .await;
        self.learnt.insert(
            id_key.into(),
            body["client_id"].as_str().unwrap().to_owned(),
        );
        if id_key == "client_id" {
            self.learnt.insert(
                "client_secret".into(),
                body["client_secret"].as_str().unwrap().to_owned(),
            );
        }
    }
}

enum Auth {
    Admin,
    Session,
    Anonymous,
}

fn cookie_of(headers: &reqwest::header::HeaderMap) -> String {
    headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("_csrf_token=")
        .to_owned()
}

/// The shared bodies the recording names.
fn macro_body(name: &str) -> Option<(Option<&'static str>, Value)> {
    let api = |status: u16, t: &str, d: &str| {
        json!({"detail": d, "error_message": d, "error_type": t, "title": t,
            "type": format!("http://x/api/v1/error/{t}"), "status": status})
    };
    Some(match name {
        "AUTH_401_S" => {
            let mut v = api(401, "invalid_token", "Requires authentication");
            v["session_required"] = json!(false);
            (None, v)
        }
        "AUTH_401" => (None, api(401, "invalid_token", "Requires authentication")),
        "SCOPE_403" => (None, api(403, "insufficient_scope", "Unauthorized")),
        "NOT_FOUND" => (None, api(404, "not_found", "Not Found")),
        "CSRF" => (
            Some("text/html"),
            json!({"error": "CSRF token was invalid or missing."}),
        ),
        "CSRF_U" => (
            Some("text/html"),
            json!({"error": format!("CSRF token was invalid or missing. (authorized: user boot{N})")}),
        ),
        "BADCRED" => (
            None,
            json!({"needsEmailVerification": false, "invalidCredentials": true, "message": "Invalid Username or Password"}),
        ),
        _ => return None,
    })
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn avatars(text: &str) -> String {
    // `@name` where a value goes (not the `@` of an e-mail address).
    Regex::new(r"([\s:\[,])@[a-z][a-z0-9]*(<n>)?")
        .unwrap()
        .replace_all(text, "${1}\"<avatar>\"")
        .into_owned()
}

#[tokio::test]
#[ignore = "needs ../shared/reference/quay-api-bootstrap.md (run by .ci/run)"]
async fn embedded_quay_bootstraps_tokens_like_the_recorded_real_quay() {
    let text = common::shared_reference("quay-api-bootstrap.md");
    let cases = parse(&text);
    assert_eq!(cases.len(), 107, "all recorded cases parsed");
    let quay = common::quay().await;
    let mut r = Replay {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: quay.url(),
        admin: quay.admin_token().expose().to_owned(),
        learnt: HashMap::new(),
    };
    let mut replayed = 0;
    for case in &cases {
        let title = case.title.as_str();
        if let Some((_, why)) = NOT_REPLAYED.iter().find(|(t, _)| *t == title) {
            eprintln!("not replayed: {title}: {why}");
            continue;
        }
        match title {
            "admin creates org `bootadm<n>`" => r.sign_in_again().await,
            "mint T_FULL with `user:admin` added" => r.app("quay-operator", "client_id").await,
            "mint T_APP3 (`org:admin`) from app `self-delete`" => {
                r.app("self-delete", "client_id3").await
            }
            _ => {}
        }
        // Quay's login backoff: the recorder waited for these answers
        // (1.2 s and more after a failure); wait while Quay says 429.
        let waits_out_backoff = case.path == "/api/v1/signin" && case.status != 429;
        let (status, headers, body) = loop {
            let mut req = r.send(&case.method, &case.path).await;
            for (k, v) in &case.headers {
                req = match (k.as_str(), v.split_once(' ')) {
                    ("Authorization", Some(("Bearer", name))) => req.bearer_auth(r.token(name)),
                    ("Authorization", Some(("Basic", creds))) => {
                        let (u, p) = r
                            .fill(creds)
                            .split_once(':')
                            .map(|(u, p)| (u.to_owned(), p.to_owned()))
                            .unwrap();
                        req.basic_auth(u, Some(p))
                    }
                    _ => req.header(k, r.fill(v)),
                };
            }
            if let Some(b) = &case.body {
                req = req
                    .header("content-type", "application/json")
                    .body(r.fill(b));
            }
            if let Some(f) = &case.form {
                let pairs: Vec<(String, String)> = r
                    .fill(f)
                    .split('&')
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap();
                        (k.to_owned(), v.to_owned())
                    })
                    .collect();
                let encoded: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
                    .collect();
                req = req
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(encoded.join("&"));
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.text().await.unwrap();
            if status == 429 && waits_out_backoff {
                let wait = headers["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(wait * 1000 + 100)).await;
                continue;
            }
            break (status, headers, body);
        };
        assert_eq!(status, case.status, "{title}: status (body {body})");
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        for (k, v) in &case.expect_headers {
            let actual = headers
                .get(k.to_lowercase())
                .unwrap_or_else(|| panic!("{title}: no {k} header"))
                .to_str()
                .unwrap()
                .to_owned();
            if k == "Content-Type" {
                assert!(actual.starts_with(v.as_str()), "{title}: {actual}");
            } else if k == "Set-Cookie" {
                // `Expires=<ts>` is a date; the rest must match.
                r.matches(&format!("{title}: {k}"), v, &actual);
            } else {
                r.matches(&format!("{title}: {k}"), v, &actual);
            }
        }
        let expected: Option<(Option<&str>, Value)> = match (&case.expect_body, &case.block) {
            (_, Some((lang, block))) if lang == "json" => {
                Some((None, serde_json::from_str(&avatars(block)).unwrap()))
            }
            (_, Some((_, block))) => {
                assert_eq!(body.trim(), block.trim(), "{title}: text body");
                None
            }
            (Some(b), None) if b.starts_with('{') || b.starts_with('"') => Some((
                None,
                serde_json::from_str(&avatars(b))
                    .unwrap_or_else(|e| panic!("{title}: recorded body {b}: {e}")),
            )),
            (Some(m), None) if m.starts_with("HTML_") => {
                assert!(
                    content_type.starts_with("text/html"),
                    "{title}: {content_type}"
                );
                None
            }
            (Some(m), None) => {
                Some(macro_body(m).unwrap_or_else(|| panic!("{title}: unknown body {m:?}")))
            }
            (None, None) => {
                assert!(body.is_empty(), "{title}: body {body}");
                None
            }
        };
        if let Some((ct, value)) = expected {
            let ct = ct.unwrap_or("application/json");
            assert!(content_type.starts_with(ct), "{title}: {content_type}");
            let actual: Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{title}: body {body} is not JSON: {e}"));
            r.same_json(title, &value, &actual);
        }
        replayed += 1;
    }
    assert_eq!(replayed, cases.len() - NOT_REPLAYED.len());
    quay.shutdown().await;
}
