//! The bundle, the catalog and every image reference agree with Cargo.toml
//! and with each other, and carry what OLM's validators and OperatorHub
//! check (operator-framework/api's default, operatorframework and
//! multi-arch validators, minus what needs the image pulled).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use xtask::{CHANNEL, PACKAGE, Release};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_saphyr::from_str(&text(rel)).unwrap()
}

fn release() -> Release {
    Release::from_manifest(&text("Cargo.toml")).unwrap()
}

/// Runs `cargo xtask` with `args` (on the checkout at `root`), which must succeed.
fn xtask(args: &[&str], root: Option<&Path>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(args);
    if let Some(root) = root {
        command.arg("--root").arg(root);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn csv() -> Value {
    yaml("bundle/manifests/quay-bridge-operator.clusterserviceversion.yaml")
}

#[test]
fn the_committed_bundle_catalog_and_image_references_are_current() {
    let release = release();
    let files = xtask::generate(&root(), &release).unwrap();
    assert!(files.len() >= 10, "{:?}", files.keys());
    let stale = xtask::stale(&root(), &files);
    assert!(
        stale.is_empty(),
        "stale, run `cargo xtask bundle`: {stale:?}"
    );
    // The check command says the same.
    xtask(&["bundle", "--check"], None);
    assert_eq!(
        release.version,
        env!("CARGO_PKG_VERSION"),
        "the bundle's version is the workspace version"
    );
}

#[test]
fn the_csv_carries_what_a_catalog_entry_needs() {
    let release = release();
    let csv = csv();
    let meta = &csv["metadata"];
    assert_eq!(meta["name"], release.csv_name().as_str());
    assert_eq!(csv["spec"]["version"], release.version.as_str());
    let a = &meta["annotations"];
    assert_eq!(a["containerImage"], release.image.as_str());
    assert!(
        a["createdAt"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    for key in [
        "repository",
        "support",
        "description",
        "capabilities",
        "categories",
    ] {
        assert!(a[key].as_str().is_some_and(|v| !v.is_empty()), "{key}");
    }
    assert!(a["repository"].as_str().unwrap().starts_with("https://"));
    // Every feature annotation OpenShift's catalog reads, as "true"/"false".
    for feature in [
        "disconnected",
        "fips-compliant",
        "proxy-aware",
        "tls-profiles",
        "token-auth-aws",
        "token-auth-azure",
        "token-auth-gcp",
        "cnf",
        "cni",
        "csi",
    ] {
        let v = &a[format!("features.operators.openshift.io/{feature}")];
        assert!(v == "true" || v == "false", "{feature}: {v}");
    }
    // Disconnected needs images by digest.
    if a["features.operators.openshift.io/disconnected"] == "true" {
        assert!(release.image.contains("@sha256:"));
    }
    assert_eq!(meta["labels"]["operatorframework.io/os.linux"], "supported");
    assert!(
        meta["labels"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("operatorframework.io/arch."))
    );
    let spec = &csv["spec"];
    assert!(
        spec["provider"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://"))
    );
    assert!(
        spec["maintainers"][0]["email"]
            .as_str()
            .is_some_and(|e| e.contains('@'))
    );
    let icon = &spec["icon"][0];
    assert_eq!(icon["mediatype"], "image/svg+xml");
    let svg = base64::engine::general_purpose::STANDARD
        .decode(icon["base64data"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        svg,
        std::fs::read(root().join("bundle/base/icon.svg")).unwrap()
    );
    assert!(String::from_utf8(svg).unwrap().starts_with("<svg"));
    let related: Vec<&str> = spec["relatedImages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["image"].as_str())
        .collect();
    assert_eq!(related, [release.image.as_str()]);
    let images: BTreeSet<&str> = spec["install"]["spec"]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
        })
        .filter_map(|c| c["image"].as_str())
        .collect();
    assert_eq!(images, BTreeSet::from([release.image.as_str()]));
    // Under OLM the webhook sees every Build in the cluster: it fails open
    // (escaped Builds are found by the operator), deploy/ keeps Fail.
    assert_eq!(spec["webhookdefinitions"][0]["failurePolicy"], "Ignore");
    let examples: Vec<Value> = serde_json::from_str(a["alm-examples"].as_str().unwrap()).unwrap();
    assert_eq!(examples.len(), 2);
}

/// Every leaf path of a CRD schema's `spec`/`status`, as descriptors write
/// them (`a.b`, `list[0].c`).
fn paths(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    for (name, field) in schema["properties"].as_object().into_iter().flatten() {
        let path = format!("{prefix}{name}");
        out.insert(path.clone());
        if field["type"] == "object" {
            paths(field, &format!("{path}."), out);
        } else if field["type"] == "array"
            && field["items"]["type"] == "object"
            && name != "conditions"
        {
            paths(&field["items"], &format!("{path}[0]."), out);
        }
    }
}

#[test]
fn every_quay_integration_field_has_a_descriptor_for_the_console_form() {
    let csv = csv();
    let owned = csv["spec"]["customresourcedefinitions"]["owned"]
        .as_array()
        .unwrap();
    assert_eq!(owned.len(), 2);
    for entry in owned {
        let name = entry["name"].as_str().unwrap();
        let crd = yaml(&format!("bundle/manifests/{name}.crd.yaml"));
        assert_eq!(entry["version"], crd["spec"]["versions"][0]["name"]);
        assert_eq!(entry["kind"], crd["spec"]["names"]["kind"]);
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
        for (part, key) in [("spec", "specDescriptors"), ("status", "statusDescriptors")] {
            let mut expected = BTreeSet::new();
            paths(&schema[part], "", &mut expected);
            let described: BTreeSet<String> = entry[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["path"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(described, expected, "{name} {key}");
            for d in entry[key].as_array().unwrap() {
                assert!(
                    d["displayName"].as_str().is_some_and(|s| !s.is_empty())
                        && d["description"].as_str().is_some_and(|s| !s.is_empty()),
                    "{d}"
                );
            }
        }
        let x = |path: &str, key: &str| -> Vec<String> {
            entry[key]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["path"] == path)
                .map(|d| {
                    d["x-descriptors"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert!(
            x("insecureRegistry", "specDescriptors")
                .contains(&"urn:alm:descriptor:com.tectonic.ui:checkbox".to_owned())
        );
        let secret = if name.starts_with("quayintegrations.quay.") {
            "credentialsSecret.name"
        } else {
            "credentialsSecretName"
        };
        assert!(
            x(secret, "specDescriptors")
                .contains(&"urn:alm:descriptor:io.kubernetes:Secret".to_owned()),
            "{name}"
        );
        assert_eq!(
            x("conditions", "statusDescriptors"),
            ["urn:alm:descriptor:io.kubernetes.conditions"]
        );
    }
}

#[test]
fn the_catalog_and_the_bundle_image_agree_with_the_bundle() {
    let release = release();
    let csv = csv();
    let annotations = &yaml("bundle/metadata/annotations.yaml")["annotations"];
    assert_eq!(
        annotations["operators.operatorframework.io.bundle.package.v1"],
        PACKAGE
    );
    assert_eq!(
        annotations["operators.operatorframework.io.bundle.channels.v1"],
        CHANNEL
    );
    assert_eq!(
        annotations["operators.operatorframework.io.bundle.channel.default.v1"],
        CHANNEL
    );
    assert!(
        annotations["com.redhat.openshift.versions"]
            .as_str()
            .unwrap()
            .starts_with("v4.")
    );
    // OLM's channel naming: stable, fast, candidate, eus-*.
    assert!(["stable", "fast", "candidate"].contains(&CHANNEL));
    // bundle.Dockerfile: the same labels, the two directories.
    let dockerfile = text("bundle.Dockerfile");
    for (k, v) in annotations.as_object().unwrap() {
        assert!(
            dockerfile.contains(&format!("LABEL {k}={}\n", v.as_str().unwrap())),
            "bundle.Dockerfile lacks {k}"
        );
    }
    assert!(
        dockerfile.contains("COPY bundle/manifests /manifests/\n")
            && dockerfile.contains("COPY bundle/metadata /metadata/\n")
    );
    let catalog: Vec<Value> =
        serde_saphyr::from_multiple(&text(&format!("catalog/{PACKAGE}/catalog.yaml"))).unwrap();
    let package = catalog
        .iter()
        .find(|d| d["schema"] == "olm.package")
        .unwrap();
    assert_eq!(
        (package["name"].as_str(), package["defaultChannel"].as_str()),
        (Some(PACKAGE), Some(CHANNEL))
    );
    assert_eq!(package["icon"], csv["spec"]["icon"][0]);
    let channel = catalog
        .iter()
        .find(|d| d["schema"] == "olm.channel" && d["name"] == CHANNEL)
        .unwrap();
    assert_eq!(channel["package"], PACKAGE);
    assert!(
        channel["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == csv["metadata"]["name"])
    );
    let bundle = catalog
        .iter()
        .find(|d| d["schema"] == "olm.bundle" && d["name"] == csv["metadata"]["name"])
        .unwrap();
    assert_eq!(bundle["package"], PACKAGE);
    assert_eq!(bundle["image"], release.bundle_image().as_str());
    let props = bundle["properties"].as_array().unwrap();
    assert!(props.iter().any(|p| p["type"] == "olm.package"
        && p["value"]["packageName"] == PACKAGE
        && p["value"]["version"] == csv["spec"]["version"]));
    for owned in csv["spec"]["customresourcedefinitions"]["owned"]
        .as_array()
        .unwrap()
    {
        let group = owned["name"].as_str().unwrap().split_once('.').unwrap().1;
        assert!(
            props.iter().any(|p| p["type"] == "olm.gvk"
                && p["value"]["group"] == group
                && p["value"]["kind"] == owned["kind"]
                && p["value"]["version"] == owned["version"]),
            "{group}"
        );
    }
    assert!(
        bundle["relatedImages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["image"] == release.image.as_str())
    );
    // The one image reference, everywhere it is used.
    let kustomization = yaml("deploy/base/kustomization.yaml");
    assert_eq!(kustomization["images"][0]["newName"], release.repository());
    assert_eq!(kustomization["images"][0]["newTag"], release.tag());
    assert!(text("Dockerfile").contains(&format!(
        "org.opencontainers.image.ref.name=\"{}\"",
        release.image
    )));
}

#[test]
fn the_command_regenerates_everything_for_another_image_and_version() {
    let dir = tempfile::tempdir().unwrap();
    for rel in [
        "Cargo.toml",
        "Dockerfile",
        "bundle/base/icon.svg",
        "bundle/base/quay-bridge-operator.clusterserviceversion.yaml",
        "catalog/quay-bridge-operator/catalog.yaml",
    ] {
        let to = dir.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root().join(rel), to).unwrap();
    }
    let image = "registry.example.com:5000/me/qbo:v9.8.7";
    xtask(
        &["bundle", "--image", image, "--version", "9.8.7"],
        Some(dir.path()),
    );
    let read = |rel: &str| std::fs::read_to_string(dir.path().join(rel)).unwrap();
    let release = Release::from_manifest(&read("Cargo.toml")).unwrap();
    assert_eq!(
        (release.image.as_str(), release.version.as_str()),
        (image, "9.8.7")
    );
    let csv: Value = serde_saphyr::from_str(&read(
        "bundle/manifests/quay-bridge-operator.clusterserviceversion.yaml",
    ))
    .unwrap();
    assert_eq!(csv["metadata"]["name"], "quay-bridge-operator.v9.8.7");
    assert_eq!(csv["metadata"]["annotations"]["containerImage"], image);
    let catalog: Vec<Value> =
        serde_saphyr::from_multiple(&read("catalog/quay-bridge-operator/catalog.yaml")).unwrap();
    let channel = catalog
        .iter()
        .find(|d| d["schema"] == "olm.channel")
        .unwrap();
    let previous = csv_name_in_repo();
    assert!(
        channel["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "quay-bridge-operator.v9.8.7"
                && e["replaces"] == previous.as_str()),
        "{channel}"
    );
    assert!(
        read("deploy/base/kustomization.yaml")
            .contains("newName: registry.example.com:5000/me/qbo\n    newTag: v9.8.7\n")
    );
    assert!(read("Dockerfile").contains("org.opencontainers.image.version=\"9.8.7\""));
    assert!(read("bundle.Dockerfile").contains("COPY bundle/manifests /manifests/"));
    // An unqualified image is refused and nothing is written.
    let before = read("Cargo.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bundle", "--image", "qbo:latest", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not fully qualified"));
    assert_eq!(read("Cargo.toml"), before);
}

fn csv_name_in_repo() -> String {
    csv()["metadata"]["name"].as_str().unwrap().to_owned()
}

#[test]
fn the_olm_examples_install_this_bundle_from_this_catalog() {
    let release = release();
    let docs = |rel: &str| -> Vec<Value> { serde_saphyr::from_multiple(&text(rel)).unwrap() };
    let source = docs("examples/olm/catalogsource.yaml").remove(0);
    assert_eq!(source["kind"], "CatalogSource");
    assert_eq!(source["spec"]["image"], release.catalog_image().as_str());
    assert_eq!(source["spec"]["sourceType"], "grpc");
    let group_docs = docs("examples/olm/operatorgroup.yaml");
    let group = group_docs
        .iter()
        .find(|d| d["kind"] == "OperatorGroup")
        .unwrap();
    assert!(group_docs.iter().any(
        |d| d["kind"] == "Namespace" && d["metadata"]["name"] == group["metadata"]["namespace"]
    ));
    // All namespaces: the only install mode the CSV supports.
    assert!(
        group["spec"].get("targetNamespaces").is_none() && group["spec"].get("selector").is_none()
    );
    let modes = csv()["spec"]["installModes"].clone();
    assert!(
        modes
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["type"] == "AllNamespaces" && m["supported"] == true)
    );
    let sub = docs("examples/olm/subscription.yaml").remove(0);
    assert_eq!(sub["kind"], "Subscription");
    assert_eq!(sub["metadata"]["namespace"], group["metadata"]["namespace"]);
    assert_eq!(sub["spec"]["name"], PACKAGE);
    assert_eq!(sub["spec"]["channel"], CHANNEL);
    assert_eq!(sub["spec"]["source"], source["metadata"]["name"]);
    assert_eq!(
        sub["spec"]["sourceNamespace"],
        source["metadata"]["namespace"]
    );
    assert_eq!(sub["spec"]["startingCSV"], release.csv_name().as_str());
    assert!(text("catalog.Dockerfile").contains("ADD catalog /configs"));
}
