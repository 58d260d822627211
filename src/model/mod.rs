//! What Quay holds, as the operator's decisions see it: names and their
//! rules, roles, visibility, the shapes of organizations, robots, default
//! permissions, repositories and teams, and what a Quay URL is. No I/O:
//! `plan`, the webhook's decision and `config` depend on this and never on
//! the client (`crate::quay`), which a test checks.

pub mod names;
pub mod types;
pub mod url;

pub use types::{Role, TeamRole, Visibility};
pub use url::{InvalidUrl, parse_base_url, registry_host};

#[cfg(test)]
mod tests {
    /// The layers' rule: decisions and admission import the model, never
    /// the client.
    #[test]
    fn decisions_and_admission_never_import_the_client() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut files = vec![
            format!("{root}/config.rs"),
            format!("{root}/webhook/decision.rs"),
        ];
        let mut dirs = vec![format!("{root}/plan"), format!("{root}/model")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path.display().to_string());
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("model/mod.rs")
                {
                    files.push(path.display().to_string());
                }
            }
        }
        let offending: Vec<String> = files
            .iter()
            .filter(|f| {
                let text = std::fs::read_to_string(f).unwrap();
                text.contains("crate::quay") || text.contains("crate::controller")
            })
            .cloned()
            .collect();
        assert!(
            offending.is_empty(),
            "import the client or the controllers: {offending:?}"
        );
        assert!(files.len() > 10, "{files:?}");
    }
}
