//! The kinds the embedded apiserver serves: built-in Kubernetes kinds, the
//! OpenShift kinds the operator uses, and kinds registered by applying a
//! CustomResourceDefinition.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// How a resource's objects are stored and served.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    /// API group (`""` for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural (URL) name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// Has a `status` subresource (the main endpoint ignores `.status`).
    pub status_subresource: bool,
    /// Only `create` is served (e.g. ImageStreamImport); nothing is stored.
    pub create_only: bool,
    /// Defined by a CustomResourceDefinition.
    pub custom: bool,
    /// `metadata.generation` is maintained.
    pub has_generation: bool,
    /// Extra field selectors besides `metadata.name`/`metadata.namespace`.
    pub field_selectors: Vec<String>,
    /// CRD printer columns (name, type, jsonPath).
    pub printer_columns: Vec<(String, String, String)>,
    /// CRD categories.
    pub categories: Vec<String>,
    /// The CRD's structural schema of this version, if any.
    pub schema: Option<Value>,
}

impl ResourceDef {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or `plural` for core), as in error messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The verbs discovery lists.
    pub fn verbs(&self) -> Vec<&'static str> {
        if self.create_only {
            vec!["create"]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn def(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    generation: bool,
) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_ascii_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| (*s).to_owned()).collect(),
        status_subresource: status,
        create_only: false,
        custom: false,
        has_generation: generation,
        field_selectors: Vec::new(),
        printer_columns: Vec::new(),
        categories: Vec::new(),
        schema: None,
    }
}

/// The built-in kinds.
pub fn builtin() -> Vec<ResourceDef> {
    let mut list = vec![
        def(
            "",
            "v1",
            "namespaces",
            "Namespace",
            false,
            &["ns"],
            true,
            false,
        ),
        def(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
            false,
        ),
        def("", "v1", "secrets", "Secret", true, &[], false, false),
        // Served as a real cluster serves them (kubectl:api-resources-core-ns);
        // nothing in the sandbox makes them.
        def(
            "",
            "v1",
            "componentstatuses",
            "ComponentStatus",
            false,
            &["cs"],
            false,
            false,
        ),
        def("", "v1", "nodes", "Node", false, &["no"], true, false),
        def(
            "",
            "v1",
            "persistentvolumes",
            "PersistentVolume",
            false,
            &["pv"],
            true,
            false,
        ),
        def(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            true,
            &["cm"],
            false,
            false,
        ),
        def("", "v1", "events", "Event", true, &["ev"], false, false),
        def("", "v1", "services", "Service", true, &["svc"], true, false),
        def("", "v1", "pods", "Pod", true, &["po"], true, false),
        def(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            false,
            false,
        ),
        def(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
            false,
        ),
        def(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
            true,
        ),
        def(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
            &[],
            false,
            true,
        ),
        def(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
            &[],
            false,
            true,
        ),
        def(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            true,
            true,
        ),
        def(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
            false,
            false,
        ),
        def(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            false,
            false,
        ),
        def(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            &[],
            false,
            false,
        ),
        def(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            &[],
            false,
            false,
        ),
        def(
            "",
            "v1",
            "resourcequotas",
            "ResourceQuota",
            true,
            &["quota"],
            true,
            false,
        ),
        def(
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "PriorityClass",
            false,
            &["pc"],
            false,
            false,
        ),
        def("batch", "v1", "jobs", "Job", true, &[], true, true),
        def(
            "batch",
            "v1",
            "cronjobs",
            "CronJob",
            true,
            &["cj"],
            true,
            true,
        ),
        def(
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            false,
            &[],
            false,
            false,
        ),
        def(
            "image.openshift.io",
            "v1",
            "imagestreams",
            "ImageStream",
            true,
            &["is"],
            true,
            true,
        ),
        def(
            "image.openshift.io",
            "v1",
            "imagestreamimports",
            "ImageStreamImport",
            true,
            &[],
            false,
            false,
        ),
        def(
            "build.openshift.io",
            "v1",
            "builds",
            "Build",
            true,
            &[],
            false,
            true,
        ),
        def(
            "user.openshift.io",
            "v1",
            "groups",
            "Group",
            false,
            &[],
            false,
            false,
        ),
        def(
            "build.openshift.io",
            "v1",
            "buildconfigs",
            "BuildConfig",
            true,
            &["bc"],
            false,
            true,
        ),
    ];
    for d in &mut list {
        match d.plural.as_str() {
            "secrets" => d.field_selectors = vec!["type".into()],
            "namespaces" => d.field_selectors = vec!["status.phase".into()],
            "events" if d.group.is_empty() => {
                d.field_selectors = [
                    "involvedObject.kind",
                    "involvedObject.name",
                    "involvedObject.namespace",
                    "involvedObject.uid",
                    "reason",
                    "type",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
            }
            "imagestreamimports" | "selfsubjectaccessreviews" => d.create_only = true,
            _ => {}
        }
        // The `all` category, as the kinds' REST storages declare it
        // (Kubernetes: pods, services, deployments…; OpenShift: builds,
        // build configs, image streams), so `kubectl get all` finds them.
        if matches!(
            (d.group.as_str(), d.plural.as_str()),
            ("", "pods" | "services")
                | ("apps", "deployments")
                | ("build.openshift.io", "builds" | "buildconfigs")
                | ("image.openshift.io", "imagestreams")
        ) {
            d.categories = vec!["all".to_owned()];
        }
    }
    list
}

/// The kinds a CustomResourceDefinition declares (one per served version).
pub fn from_crd(crd: &Value) -> Result<Vec<ResourceDef>, String> {
    let spec = crd.get("spec").ok_or("spec is required")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or("spec.group is required")?;
    let names = spec.get("names").ok_or("spec.names is required")?;
    let plural = names
        .get("plural")
        .and_then(Value::as_str)
        .ok_or("spec.names.plural is required")?;
    let kind = names
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("spec.names.kind is required")?;
    let expected_name = format!("{plural}.{group}");
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name != expected_name {
        return Err(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let namespaced = match spec.get("scope").and_then(Value::as_str) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            return Err(format!(
                "spec.scope: Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            ));
        }
    };
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or("spec.versions is required")?;
    let mut out = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let version = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("spec.versions[].name is required")?;
        let columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .filter_map(|c| {
                        Some((
                            c.get("name")?.as_str()?.to_owned(),
                            c.get("type")
                                .and_then(Value::as_str)
                                .unwrap_or("string")
                                .to_owned(),
                            c.get("jsonPath")?.as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(ResourceDef {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: names
                .get("singular")
                .and_then(Value::as_str)
                .map_or_else(|| kind.to_ascii_lowercase(), str::to_owned),
            kind: kind.into(),
            namespaced,
            short_names: strings(names.get("shortNames")),
            status_subresource: v.pointer("/subresources/status").is_some(),
            create_only: false,
            custom: true,
            has_generation: true,
            field_selectors: Vec::new(),
            printer_columns: columns,
            categories: strings(names.get("categories")),
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
        });
    }
    Ok(out)
}

/// Resources by (group, version, plural).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    defs: BTreeMap<(String, String, String), ResourceDef>,
}

impl Registry {
    /// The built-in kinds.
    pub fn new() -> Self {
        let mut r = Self::default();
        for d in builtin() {
            r.insert(d);
        }
        r
    }

    /// Adds or replaces a kind.
    pub fn insert(&mut self, d: ResourceDef) {
        self.defs
            .insert((d.group.clone(), d.version.clone(), d.plural.clone()), d);
    }

    /// Removes the kinds of a CRD.
    pub fn remove_group_plural(&mut self, group: &str, plural: &str) {
        self.defs
            .retain(|(g, _, p), d| !(g == group && p == plural && d.custom));
    }

    /// Looks a resource up.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceDef> {
        self.defs
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
    }

    /// Every kind.
    pub fn all(&self) -> impl Iterator<Item = &ResourceDef> {
        self.defs.values()
    }

    /// `/api` and `/apis` group list: group → versions.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in self.defs.values() {
            let versions = groups.entry(d.group.clone()).or_default();
            if !versions.contains(&d.version) {
                versions.push(d.version.clone());
            }
        }
        groups
    }

    /// The OpenAPI v3 root: one document per group version.
    pub fn openapi_v3_root(&self) -> Value {
        let mut paths = serde_json::Map::new();
        for (group, versions) in self.groups() {
            for v in versions {
                let key = if group.is_empty() {
                    format!("api/{v}")
                } else {
                    format!("apis/{group}/{v}")
                };
                paths.insert(key.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", self.defs.len())}));
            }
        }
        json!({"paths": paths})
    }

    /// A group version's OpenAPI v3 document: the operations of each kind
    /// with their group-version-kind and query parameters (what kubectl
    /// reads to learn that server-side field validation is supported).
    pub fn openapi_v3_document(&self, group: &str, version: &str) -> Option<Value> {
        let defs: Vec<&ResourceDef> = self
            .defs
            .values()
            .filter(|d| d.group == group && d.version == version)
            .collect();
        if defs.is_empty() {
            return None;
        }
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let mut paths = serde_json::Map::new();
        let mut schemas = serde_json::Map::new();
        for d in defs {
            let gvk = json!({"group": d.group, "version": d.version, "kind": d.kind});
            // A custom resource's schema, found by kubectl explain through
            // its group-version-kind, as the apiserver publishes it.
            if let Some(schema) = d.schema.as_ref().filter(|_| d.custom) {
                let mut s = schema.clone();
                if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
                    props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values."}));
                    props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase."}));
                    props.insert(
                        "metadata".into(),
                        json!({"type": "object", "description": "Standard object's metadata."}),
                    );
                }
                s["x-kubernetes-group-version-kind"] = json!([gvk]);
                let reversed: Vec<&str> = d.group.split('.').rev().collect();
                schemas.insert(
                    format!("{}.{}.{}", reversed.join("."), d.version, d.kind),
                    s,
                );
            }
            let params = json!([
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            ]);
            let op = |action: &str| json!({"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": action, "parameters": params, "responses": {"200": {"description": "OK"}}});
            let base = if d.namespaced {
                format!("{prefix}/namespaces/{{namespace}}/{}", d.plural)
            } else {
                format!("{prefix}/{}", d.plural)
            };
            if d.create_only {
                paths.insert(base, json!({"post": op("post")}));
                continue;
            }
            paths.insert(base.clone(), json!({"get": op("list"), "post": op("post")}));
            paths.insert(format!("{base}/{{name}}"), json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
        }
        Some(
            json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.36.2"}, "paths": paths, "components": {"schemas": schemas}}),
        )
    }

    /// An `APIResourceList` for one group version.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let defs: Vec<&ResourceDef> = self
            .defs
            .values()
            .filter(|d| d.group == group && d.version == version)
            .collect();
        if defs.is_empty() {
            return None;
        }
        let mut resources = Vec::new();
        for d in &defs {
            let mut r = json!({
                "name": d.plural, "singularName": d.singular, "namespaced": d.namespaced, "kind": d.kind, "verbs": d.verbs(),
            });
            if !d.short_names.is_empty() {
                r["shortNames"] = json!(d.short_names);
            }
            if !d.categories.is_empty() {
                r["categories"] = json!(d.categories);
            }
            resources.push(r);
            if d.status_subresource {
                resources.push(json!({"name": format!("{}/status", d.plural), "singularName": "", "namespaced": d.namespaced, "kind": d.kind, "verbs": ["get", "patch", "update"]}));
            }
            if d.plural == "buildconfigs" {
                resources.push(json!({"name": "buildconfigs/instantiate", "singularName": "", "namespaced": true, "group": "build.openshift.io", "version": "v1", "kind": "BuildRequest", "verbs": ["create"]}));
            }
        }
        let gv = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_cover_what_the_operator_uses() {
        let r = Registry::new();
        for (g, v, p) in [
            ("", "v1", "namespaces"),
            ("", "v1", "secrets"),
            ("", "v1", "serviceaccounts"),
            ("events.k8s.io", "v1", "events"),
            ("coordination.k8s.io", "v1", "leases"),
            ("image.openshift.io", "v1", "imagestreams"),
            ("image.openshift.io", "v1", "imagestreamimports"),
            ("build.openshift.io", "v1", "builds"),
            ("build.openshift.io", "v1", "buildconfigs"),
            (
                "admissionregistration.k8s.io",
                "v1",
                "mutatingwebhookconfigurations",
            ),
        ] {
            assert!(r.get(g, v, p).is_some(), "{g}/{v}/{p}");
        }
        assert!(
            r.get("image.openshift.io", "v1", "imagestreamimports")
                .unwrap()
                .create_only
        );
        assert_eq!(
            r.resource_list("image.openshift.io", "v1").unwrap()["resources"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn crds_register_their_served_versions() {
        let crd = json!({"metadata": {"name": "quayintegrations.quay.redhat.com"}, "spec": {
        "group": "quay.redhat.com", "scope": "Cluster",
        "names": {"plural": "quayintegrations", "singular": "quayintegration", "kind": "QuayIntegration", "shortNames": ["qi"]},
        "versions": [
            {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
             "additionalPrinterColumns": [{"name": "Host", "type": "string", "jsonPath": ".spec.quayHostname"}],
             "schema": {"openAPIV3Schema": {"type": "object"}}},
            {"name": "v0", "served": false, "storage": false}
        ]}});
        let defs = from_crd(&crd).unwrap();
        assert_eq!(defs.len(), 1);
        let d = &defs[0];
        assert!(!d.namespaced && d.status_subresource && d.custom);
        assert_eq!(d.printer_columns[0].2, ".spec.quayHostname");
        let mut bad = crd.clone();
        bad["metadata"]["name"] = json!("wrong");
        assert!(from_crd(&bad).is_err());
    }
}
