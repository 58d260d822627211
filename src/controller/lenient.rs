//! Watches that no object a user can create can stop.
//!
//! A typed watch fails its whole list when one object does not deserialise
//! (an ImageStream without `spec`, a QuayIntegration of an older CRD
//! schema): its cache never syncs and the operator does nothing. These
//! watches read each object through kube's [`DeserializeGuard`] and skip,
//! with a warning, those that do not fit.

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

/// The object, or `None` (logged) when it did not deserialise.
fn typed<K>(guard: DeserializeGuard<K>) -> Option<K>
where
    K: Resource<DynamicType = ()>,
{
    match guard.0 {
        Ok(k) => Some(k),
        Err(invalid) => {
            tracing::warn!(
                kind = %K::kind(&()),
                namespace = invalid.metadata.namespace.as_deref().unwrap_or_default(),
                name = invalid.metadata.name.as_deref().unwrap_or_default(),
                error = %invalid.error,
                "skipping an object that does not deserialise"
            );
            None
        }
    }
}

fn convert<K>(event: watcher::Event<DeserializeGuard<K>>) -> Option<watcher::Event<K>>
where
    K: Resource<DynamicType = ()>,
{
    Some(match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(typed(o)?),
        watcher::Event::Delete(o) => watcher::Event::Delete(typed(o)?),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(typed(o)?),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    })
}

/// A cluster-wide watch of `K` that skips objects that do not deserialise.
pub fn lenient<K>(
    client: Client,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug + Send + 'static,
{
    let api = Api::<DeserializeGuard<K>>::all(client);
    watcher(api, config).filter_map(|event| async move {
        match event {
            Ok(e) => convert(e).map(Ok),
            Err(e) => Some(Err(e)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::QuayIntegration;

    fn guarded(v: serde_json::Value) -> DeserializeGuard<QuayIntegration> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn objects_that_do_not_fit_are_skipped_and_the_rest_pass() {
        let good = guarded(
            serde_json::json!({"apiVersion": "quay.redhat.com/v1", "kind": "QuayIntegration",
            "metadata": {"name": "a"}, "spec": {"credentialsSecret": {"name": "s", "namespace": "n"}, "quayHostname": "https://q"}}),
        );
        let bad = guarded(
            serde_json::json!({"apiVersion": "quay.redhat.com/v1", "kind": "QuayIntegration",
            "metadata": {"name": "b"}, "spec": {"quayHostname": 7}}),
        );
        assert!(typed(good.clone()).is_some());
        assert!(typed(bad.clone()).is_none());
        assert!(matches!(
            convert::<QuayIntegration>(watcher::Event::InitApply(good)),
            Some(watcher::Event::InitApply(_))
        ));
        assert!(convert::<QuayIntegration>(watcher::Event::Apply(bad)).is_none());
        assert!(matches!(
            convert::<QuayIntegration>(watcher::Event::InitDone),
            Some(watcher::Event::InitDone)
        ));
    }
}
