//! Label and field selectors, in every form the apiserver accepts.

use serde_json::Value;
use std::collections::BTreeMap;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `k=v`, `k==v`.
    Equals(String, String),
    /// `k!=v` (also true when the label is absent).
    NotEquals(String, String),
    /// `k in (a,b)`.
    In(String, Vec<String>),
    /// `k notin (a,b)` (also true when absent).
    NotIn(String, Vec<String>),
    /// `k`.
    Exists(String),
    /// `!k`.
    DoesNotExist(String),
}

/// A parsed label selector (requirements ANDed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

impl LabelSelector {
    /// Parses `labelSelector` syntax; the error is the apiserver's message.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for raw in split_top(s) {
            let part = raw.trim();
            if part.is_empty() {
                continue;
            }
            let set_op = |op: &str| -> Option<(String, Vec<String>)> {
                let idx = part.find(op)?;
                let key = part[..idx].trim();
                let rest = part[idx + op.len()..].trim();
                let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
                let values: Vec<String> = inner
                    .split(',')
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .collect();
                Some((key.to_owned(), values))
            };
            let req = if let Some((k, vs)) = part
                .contains(" notin ")
                .then(|| set_op(" notin "))
                .flatten()
            {
                Requirement::NotIn(k, vs)
            } else if let Some((k, vs)) = part.contains(" in ").then(|| set_op(" in ")).flatten() {
                Requirement::In(k, vs)
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::DoesNotExist(k.trim().to_owned())
            } else {
                Requirement::Exists(part.to_owned())
            };
            let (key, values): (&str, Vec<&str>) = match &req {
                Requirement::Equals(k, v) | Requirement::NotEquals(k, v) => (k, vec![v.as_str()]),
                Requirement::In(k, vs) | Requirement::NotIn(k, vs) => {
                    (k, vs.iter().map(String::as_str).collect())
                }
                Requirement::Exists(k) | Requirement::DoesNotExist(k) => (k, vec![]),
            };
            // `key in value` without parentheses: Go's parser names the
            // token it found (list-label[app in web]).
            for op in [" in ", " notin "] {
                if let Some(idx) = part.find(op) {
                    let rest = part[idx + op.len()..].trim();
                    if !rest.starts_with('(') {
                        let token = rest.split([' ', ',', ')']).next().unwrap_or_default();
                        return Err(format!(
                            "unable to parse requirement: found '{token}' expected: '('"
                        ));
                    }
                }
            }
            if !valid_key(key) || !values.iter().all(|v| valid_value(v)) {
                return Err(format!(
                    "unable to parse requirement: invalid label selector {part:?}"
                ));
            }
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// From a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    pub fn from_object(sel: &Value) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                reqs.push(Requirement::Equals(
                    k.clone(),
                    v.as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                reqs.push(match e.get("operator").and_then(Value::as_str) {
                    Some("In") => Requirement::In(key, values),
                    Some("NotIn") => Requirement::NotIn(key, values),
                    Some("Exists") => Requirement::Exists(key),
                    Some("DoesNotExist") => Requirement::DoesNotExist(key),
                    other => {
                        return Err(format!("{other:?} is not a valid label selector operator"));
                    }
                });
            }
        }
        Ok(Self(reqs))
    }

    /// Whether the labels satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The labels of an object.
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `fieldSelector`; `supported` lists the extra fields of the kind.
    pub fn parse(s: &str, supported: &[&str]) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                ));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace")
                && !supported.contains(&field)
            {
                let known = ["metadata.name", "metadata.namespace"]
                    .iter()
                    .chain(supported.iter())
                    .map(|f| format!("{f:?}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(format!(
                    "{field:?} is not a known field selector: only {known}"
                ));
            }
            terms.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    /// Whether the object satisfies every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = obj
                .pointer(&pointer)
                .and_then(Value::as_str)
                .unwrap_or_default();
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_label_form() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("managed-by", "qbo")]);
        for (sel, expected) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (web,db)", true),
            ("app in (db)", false),
            ("app notin (db, cache)", true),
            ("missing notin (x)", true),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier in (front),!missing", true),
            ("app=web,tier=back", false),
            ("", true),
            ("app.kubernetes.io/name", false),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&l),
                expected,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("app=we b").is_err());
    }

    #[test]
    fn label_selector_objects() {
        let sel = json!({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "NotIn", "values": ["x"]}, {"key": "c", "operator": "Exists"}]});
        let s = LabelSelector::from_object(&sel).unwrap();
        assert!(s.matches(&labels(&[("a", "1"), ("c", "")])));
        assert!(!s.matches(&labels(&[("a", "1"), ("b", "x"), ("c", "")])));
        assert!(
            LabelSelector::from_object(
                &json!({"matchExpressions": [{"key": "b", "operator": "Near"}]})
            )
            .is_err()
        );
        assert!(LabelSelector::from_object(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn field_selectors() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns"}, "type": "kubernetes.io/dockerconfigjson"});
        assert!(
            FieldSelector::parse("metadata.name=a", &[])
                .unwrap()
                .matches(&obj)
        );
        assert!(
            FieldSelector::parse("metadata.name==a,metadata.namespace=ns", &[])
                .unwrap()
                .matches(&obj)
        );
        assert!(
            !FieldSelector::parse("metadata.name!=a", &[])
                .unwrap()
                .matches(&obj)
        );
        assert!(
            FieldSelector::parse("type=kubernetes.io/dockerconfigjson", &["type"])
                .unwrap()
                .matches(&obj)
        );
        assert_eq!(
            FieldSelector::parse("spec.x=1", &[]).unwrap_err(),
            "\"spec.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
    }
}
