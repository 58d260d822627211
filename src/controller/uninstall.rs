//! `quay-bridge-operator uninstall`: lets go of everything before the
//! operator is removed, so no namespace is stranded in Terminating.

use crate::config::{BRIDGED_LABEL, FINALIZER, INTEGRATION_FINALIZER, LEGACY_FINALIZER};
use crate::crd::{LegacyQuayIntegration, QuayIntegration};
use crate::plan::metadata::release_ops;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};

/// What was released.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Released {
    /// Namespaces whose finalizer was removed.
    pub namespaces: Vec<String>,
    /// QuayIntegrations whose finalizer was removed.
    pub integrations: Vec<String>,
}

/// Removes `names` from the object's finalizers and `label` from its
/// labels; `true` when there was anything to remove.
async fn release<K>(
    api: &Api<K>,
    obj: &K,
    names: &[&str],
    label: Option<&str>,
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let ops = release_ops(obj.meta(), names, label);
    if ops.is_empty() {
        return Ok(false);
    }
    let patch = json_patch::Patch(ops);
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(true)
}

/// Removes the operator's finalizers from every namespace (current and
/// legacy names, with the bridged label) and QuayIntegration. Organizations in Quay are kept. Run
/// it after the operator is stopped.
pub async fn uninstall(client: Client) -> Result<Released, kube::Error> {
    let mut released = Released::default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces.list(&ListParams::default()).await? {
        if release(
            &namespaces,
            &ns,
            &[FINALIZER, LEGACY_FINALIZER],
            Some(BRIDGED_LABEL),
        )
        .await?
        {
            released.namespaces.push(ns.name_any());
        }
    }
    let current: Api<QuayIntegration> = Api::all(client.clone());
    if let Ok(list) = current.list(&ListParams::default()).await {
        for qi in list {
            if release(&current, &qi, &[INTEGRATION_FINALIZER], None).await? {
                released.integrations.push(qi.name_any());
            }
        }
    }
    let legacy: Api<LegacyQuayIntegration> = Api::all(client);
    if let Ok(list) = legacy.list(&ListParams::default()).await {
        for qi in list {
            if release(&legacy, &qi, &[INTEGRATION_FINALIZER], None).await? {
                released.integrations.push(qi.name_any());
            }
        }
    }
    Ok(released)
}
