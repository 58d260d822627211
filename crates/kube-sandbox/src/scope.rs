//! What one request carries down to the store: its `fieldValidation` mode
//! and the warnings its answer returns in `Warning` headers.

use std::cell::RefCell;
use std::future::Future;

/// `fieldValidation`: what unknown fields cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// A 400 BadRequest.
    Strict,
    /// A `Warning` header (the default).
    #[default]
    Warn,
    /// Nothing.
    Ignore,
}

impl FieldValidation {
    /// From the query parameter (absent or unknown: the default).
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            _ => FieldValidation::Warn,
        }
    }
}

struct Scope {
    field_validation: FieldValidation,
    warnings: RefCell<Vec<String>>,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Runs one request's handling; returns its output and its warnings.
pub async fn run<F: Future>(field_validation: FieldValidation, f: F) -> (F::Output, Vec<String>) {
    SCOPE
        .scope(
            Scope {
                field_validation,
                warnings: RefCell::new(Vec::new()),
            },
            async move {
                let out = f.await;
                let warnings = SCOPE.try_with(|s| s.warnings.take()).unwrap_or_default();
                (out, warnings)
            },
        )
        .await
}

/// Adds a warning to the current request's answer (none outside one).
pub fn warn(text: String) {
    let _ = SCOPE.try_with(|s| {
        let mut w = s.warnings.borrow_mut();
        if !w.contains(&text) {
            w.push(text);
        }
    });
}

/// The current request's `fieldValidation` (the default outside one).
pub fn field_validation() -> FieldValidation {
    SCOPE.try_with(|s| s.field_validation).unwrap_or_default()
}

/// A `Warning` header value as the apiserver writes it: code 299, no
/// agent, the text quoted as Go's `strconv.Quote` does.
pub fn header_value(text: &str) -> String {
    let mut quoted = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    format!("299 - {quoted}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn warnings_are_per_request_and_quoted_like_go() {
        let ((), w) = run(FieldValidation::Strict, async {
            assert_eq!(field_validation(), FieldValidation::Strict);
            warn("unknown field \"spec.extra\"".into());
            warn("unknown field \"spec.extra\"".into());
        })
        .await;
        assert_eq!(w, ["unknown field \"spec.extra\""]);
        assert_eq!(
            header_value(&w[0]),
            r#"299 - "unknown field \"spec.extra\"""#
        );
        // Outside a request: no panic, the default.
        warn("x".into());
        assert_eq!(field_validation(), FieldValidation::Warn);
    }
}
