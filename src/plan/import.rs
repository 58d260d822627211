//! Whether a completed Build's image is imported into an ImageStream, and
//! which. A Build's labels, annotations and output are the tenant's to
//! write, so none of them is proof on its own: the destination is derived
//! from the Build's own namespace and the integration that manages it, and
//! the Build must say exactly what the webhook wrote for that namespace.

use super::names;
use super::selection::{self, Manager};
use crate::config::{ApiGroup, IntegrationConfig};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What the import controller reads of a Build.
#[derive(Debug, Clone, Copy)]
pub struct BuildFacts<'a> {
    /// The Build's namespace (from the apiserver, not from its content).
    pub namespace: &'a str,
    /// Its annotations.
    pub annotations: &'a BTreeMap<String, String>,
    /// `spec.output.to.kind`.
    pub output_kind: Option<&'a str>,
    /// `spec.output.to.name`.
    pub output_name: Option<&'a str>,
    /// `status.phase`.
    pub phase: Option<&'a str>,
}

/// The tag to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Annotation prefix of the integration group that rewrote the Build.
    pub prefix: &'static str,
    /// The ImageStream's namespace: always the Build's own.
    pub namespace: String,
    /// ImageStream name.
    pub stream: String,
    /// The ImageStreamTag's tag (`latest` when the Build named none).
    pub tag: String,
    /// The image in the namespace's own Quay organization.
    pub image: String,
    /// Import without TLS verification.
    pub insecure: bool,
    /// Keep the tag imported periodically.
    pub scheduled: bool,
}

/// What to do with a Build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportDecision {
    /// Nothing: not a rewritten Build, not complete, or already imported.
    Skip,
    /// Import this tag.
    Import(Import),
    /// Refuse: a Warning Event on the Build says why.
    Refuse(String),
}

/// The webhook's annotations on a Build it rewrote: the group's prefix and
/// `<namespace>/<imagestream>:<tag>`, and whether the tag was imported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Claimed<'a> {
    prefix: &'static str,
    namespace: &'a str,
    stream: &'a str,
    tag: &'a str,
    imported: bool,
}

fn claimed(annotations: &BTreeMap<String, String>) -> Option<Result<Claimed<'_>, String>> {
    let get = |prefix: &str, key: &str| {
        annotations
            .get(&format!("{prefix}/{key}"))
            .map(String::as_str)
    };
    let prefix = [ApiGroup::Current, ApiGroup::Legacy]
        .into_iter()
        .map(|g| g.annotation_prefix())
        .find(|p| get(p, "quay-registry-operator-managed") == Some("true"))?;
    let raw = get(prefix, "destination-imagestream").unwrap_or_default();
    let parsed = raw
        .split_once('/')
        .and_then(|(ns, rest)| rest.split_once(':').map(|(s, t)| (ns, s, t)))
        .filter(|(ns, s, t)| !ns.is_empty() && !s.is_empty() && !t.is_empty());
    Some(match parsed {
        Some((namespace, stream, tag)) => Ok(Claimed {
            prefix,
            namespace,
            stream,
            tag,
            imported: get(prefix, "destination-imagestreamtag-imported") == Some("true"),
        }),
        None => Err(format!(
            "annotation {prefix}/destination-imagestream is {raw:?}, expected <namespace>/<imagestream>:<tag>"
        )),
    })
}

/// Decides one Build. An import happens only into the Build's own
/// namespace, which a valid integration manages, of the image the webhook
/// would have pushed for it: `<registry host>/<its organization>/<stream>:<tag>`.
pub fn plan_import(build: &BuildFacts<'_>, integrations: &[IntegrationConfig]) -> ImportDecision {
    let claim = match claimed(build.annotations) {
        None => return ImportDecision::Skip,
        Some(Err(msg)) => return ImportDecision::Refuse(msg),
        Some(Ok(c)) => c,
    };
    if claim.imported || build.phase != Some("Complete") {
        return ImportDecision::Skip;
    }
    let ns = build.namespace;
    if claim.namespace != ns {
        return ImportDecision::Refuse(format!(
            "not imported: this Build in namespace {ns} names ImageStream {}/{}; the operator imports only into the Build's own namespace",
            claim.namespace, claim.stream
        ));
    }
    let Manager::One(cfg) = selection::manager(integrations, ns) else {
        return ImportDecision::Refuse(format!(
            "not imported: namespace {ns} is not bridged to Quay by exactly one valid QuayIntegration"
        ));
    };
    let Ok(org) = names::organization(cfg, ns) else {
        return ImportDecision::Refuse(format!(
            "not imported: namespace {ns} has no valid Quay organization name"
        ));
    };
    let image = format!("{}/{org}/{}:{}", cfg.registry_host, claim.stream, claim.tag);
    if build.output_kind != Some("DockerImage") || build.output_name != Some(image.as_str()) {
        return ImportDecision::Refuse(format!(
            "not imported: this Build's output is {} {:?}, not {image}, the image the webhook writes for {ns}/{}:{}",
            build.output_kind.unwrap_or("(none)"),
            build.output_name.unwrap_or_default(),
            claim.stream,
            claim.tag
        ));
    }
    ImportDecision::Import(Import {
        prefix: claim.prefix,
        namespace: ns.to_owned(),
        stream: claim.stream.to_owned(),
        tag: claim.tag.to_owned(),
        image,
        insecure: cfg.insecure_registry,
        scheduled: cfg.scheduled_import,
    })
}

/// The ImageStreamImport that brings the image into the destination tag
/// (upstream's shape: DockerImage source, `referencePolicy: Source`).
pub fn import_request(import: &Import) -> Value {
    json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStreamImport",
        "metadata": {"name": import.stream, "namespace": import.namespace},
        "spec": {"import": true, "images": [{
            "from": {"kind": "DockerImage", "name": import.image},
            "to": {"name": import.tag},
            "importPolicy": {"insecure": import.insecure, "scheduled": import.scheduled},
            "referencePolicy": {"type": "Source"},
        }]}
    })
}

/// The annotation that records the import, so it happens once.
pub fn imported_annotation(import: &Import) -> String {
    format!("{}/destination-imagestreamtag-imported", import.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config;

    const CURRENT: &str = "quay-registry-operator.quay.redhat.com";
    const LEGACY: &str = "quay-registry-operator.redhatcop.redhat.io";

    fn integrations() -> Vec<IntegrationConfig> {
        let mut cfg = test_config("openshift", "");
        cfg.allow = vec!["team".into(), "other".into()];
        vec![cfg]
    }

    fn ann(prefix: &str, dest: &str, imported: bool) -> BTreeMap<String, String> {
        let mut a = BTreeMap::from([
            (
                format!("{prefix}/quay-registry-operator-managed"),
                "true".into(),
            ),
            (format!("{prefix}/destination-imagestream"), dest.into()),
        ]);
        if imported {
            a.insert(
                format!("{prefix}/destination-imagestreamtag-imported"),
                "true".into(),
            );
        }
        a
    }

    fn decide(
        ns: &str,
        a: &BTreeMap<String, String>,
        kind: &str,
        name: &str,
        phase: &str,
    ) -> ImportDecision {
        plan_import(
            &BuildFacts {
                namespace: ns,
                annotations: a,
                output_kind: Some(kind),
                output_name: Some(name),
                phase: Some(phase),
            },
            &integrations(),
        )
    }

    const IMAGE: &str = "quay.example.com/openshift_team/app:v1";

    #[test]
    fn a_rewritten_build_of_its_own_namespace_is_imported_once_complete() {
        let a = ann(CURRENT, "team/app:v1", false);
        let ImportDecision::Import(i) = decide("team", &a, "DockerImage", IMAGE, "Complete") else {
            panic!("expected an import")
        };
        assert_eq!(
            (
                i.namespace.as_str(),
                i.stream.as_str(),
                i.tag.as_str(),
                i.image.as_str(),
                i.prefix
            ),
            ("team", "app", "v1", IMAGE, CURRENT)
        );
        assert_eq!(
            imported_annotation(&i),
            format!("{CURRENT}/destination-imagestreamtag-imported")
        );
        let req = import_request(&i);
        assert_eq!(req["metadata"], json!({"name": "app", "namespace": "team"}));
        assert_eq!(req["spec"]["images"][0]["from"]["name"], IMAGE);
        assert_eq!(req["spec"]["images"][0]["to"]["name"], "v1");
        // The legacy group's prefix is recognised and kept.
        let a = ann(LEGACY, "team/app:v1", false);
        let ImportDecision::Import(i) = decide("team", &a, "DockerImage", IMAGE, "Complete") else {
            panic!("expected an import")
        };
        assert_eq!(i.prefix, LEGACY);
    }

    #[test]
    fn nothing_happens_before_completion_after_the_import_or_without_the_mark() {
        for phase in ["New", "Pending", "Running", "Failed", "Cancelled", "Error"] {
            let a = ann(CURRENT, "team/app:v1", false);
            assert_eq!(
                decide("team", &a, "DockerImage", IMAGE, phase),
                ImportDecision::Skip,
                "{phase}"
            );
        }
        let a = ann(CURRENT, "team/app:v1", true);
        assert_eq!(
            decide("team", &a, "DockerImage", IMAGE, "Complete"),
            ImportDecision::Skip
        );
        assert_eq!(
            decide("team", &BTreeMap::new(), "DockerImage", IMAGE, "Complete"),
            ImportDecision::Skip
        );
        let mut a = ann(CURRENT, "team/app:v1", false);
        a.insert(
            format!("{CURRENT}/quay-registry-operator-managed"),
            "false".into(),
        );
        assert_eq!(
            decide("team", &a, "DockerImage", IMAGE, "Complete"),
            ImportDecision::Skip
        );
    }

    #[test]
    fn malformed_destinations_are_refused() {
        for bad in ["team/app", "app:v1", "/app:v1", "team/:v1", "team/app:", ""] {
            let a = ann(CURRENT, bad, false);
            assert!(
                matches!(
                    decide("team", &a, "DockerImage", IMAGE, "Complete"),
                    ImportDecision::Refuse(_)
                ),
                "{bad}"
            );
        }
    }

    /// A tenant's annotations never move an import to another namespace.
    #[test]
    fn another_namespace_is_never_a_destination() {
        let a = ann(CURRENT, "other/app:v1", false);
        let other_image = "quay.example.com/openshift_other/app:v1";
        for image in [IMAGE, other_image] {
            let d = decide("team", &a, "DockerImage", image, "Complete");
            assert!(
                matches!(&d, ImportDecision::Refuse(m) if m.contains("own namespace")),
                "{d:?}"
            );
        }
    }

    /// A labelled and annotated Build in a namespace no integration
    /// bridges is not the webhook's.
    #[test]
    fn an_unbridged_namespace_imports_nothing() {
        let a = ann(CURRENT, "mallory/app:v1", false);
        let d = decide(
            "mallory",
            &a,
            "DockerImage",
            "quay.example.com/openshift_mallory/app:v1",
            "Complete",
        );
        assert!(
            matches!(&d, ImportDecision::Refuse(m) if m.contains("not bridged")),
            "{d:?}"
        );
    }

    /// Only the namespace's own organization on the integration's
    /// registry, and the tag the annotation names, can be imported.
    #[test]
    fn an_image_from_elsewhere_is_refused() {
        let a = ann(CURRENT, "team/app:v1", false);
        for (kind, name) in [
            ("DockerImage", "quay.example.com/openshift_other/app:v1"),
            ("DockerImage", "evil.example.com/openshift_team/app:v1"),
            ("DockerImage", "quay.example.com/openshift_team/app:v2"),
            ("DockerImage", "quay.example.com/openshift_team/other:v1"),
            (
                "DockerImage",
                "quay.example.com/openshift_team/app:v1@sha256:00",
            ),
            ("ImageStreamTag", "app:v1"),
        ] {
            let d = decide("team", &a, kind, name, "Complete");
            assert!(
                matches!(&d, ImportDecision::Refuse(m) if m.contains("not imported")),
                "{name}: {d:?}"
            );
        }
        let d = plan_import(
            &BuildFacts {
                namespace: "team",
                annotations: &a,
                output_kind: None,
                output_name: None,
                phase: Some("Complete"),
            },
            &integrations(),
        );
        assert!(matches!(d, ImportDecision::Refuse(_)));
    }

    /// Two integrations selecting the namespace: neither decides.
    #[test]
    fn a_conflict_imports_nothing() {
        let mut two = integrations();
        let mut second = two[0].clone();
        second.id.name = "second".into();
        two.push(second);
        let a = ann(CURRENT, "team/app:v1", false);
        let d = plan_import(
            &BuildFacts {
                namespace: "team",
                annotations: &a,
                output_kind: Some("DockerImage"),
                output_name: Some(IMAGE),
                phase: Some("Complete"),
            },
            &two,
        );
        assert!(matches!(d, ImportDecision::Refuse(_)), "{d:?}");
    }
}
