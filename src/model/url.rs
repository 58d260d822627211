//! A Quay base URL and the registry host it implies.

pub use ::url::Url;

/// Why a Quay URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidUrl(pub String);

/// Parses and checks a Quay base URL: scheme http or https, a host, no query.
pub fn parse_base_url(raw: &str) -> Result<Url, InvalidUrl> {
    let url = Url::parse(raw.trim()).map_err(|e| {
        InvalidUrl(format!(
            "Quay URL {raw:?} is not a URL ({e}); it needs a scheme, e.g. https://quay.example.com"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(InvalidUrl(format!(
            "Quay URL {raw:?} must start with https:// or http://"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(InvalidUrl(format!("Quay URL {raw:?} has no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(InvalidUrl(format!(
            "Quay URL {raw:?} must not have a query or fragment"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(InvalidUrl(
            "Quay URL must not carry credentials; use the token".into(),
        ));
    }
    Ok(url)
}

/// The registry host (`host[:port]`) of a Quay base URL: the key of
/// dockerconfigjson `auths` and the prefix of image references.
pub fn registry_host(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    }
}
