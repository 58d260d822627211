//! Watches that no object a user can create can stop.
//!
//! A typed watch fails its whole list when one object does not deserialise
//! (an ImageStream without `spec`, a QuayIntegration of an older CRD
//! schema): its cache never syncs and the operator does nothing. These
//! watches read objects untyped and convert each one, skipping those that
//! do not fit with a warning.

use futures::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// `object` as `K`, or `None` (logged) when it does not deserialise.
pub fn typed<K>(object: DynamicObject) -> Option<K>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    match serde_json::to_value(&object).and_then(serde_json::from_value::<K>) {
        Ok(k) => Some(k),
        Err(error) => {
            tracing::warn!(
                kind = %K::kind(&()),
                %namespace,
                %name,
                %error,
                "skipping an object that does not deserialise"
            );
            None
        }
    }
}

fn convert<K>(event: watcher::Event<DynamicObject>) -> Option<watcher::Event<K>>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
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
    let api = Api::<DynamicObject>::all_with(client, &ApiResource::erase::<K>(&()));
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

    fn dynamic(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn objects_that_do_not_fit_are_skipped_and_the_rest_pass() {
        let good = dynamic(
            serde_json::json!({"apiVersion": "quay.redhat.com/v1", "kind": "QuayIntegration",
            "metadata": {"name": "a"}, "spec": {"credentialsSecret": {"name": "s", "namespace": "n"}, "quayHostname": "https://q"}}),
        );
        let bad = dynamic(
            serde_json::json!({"apiVersion": "quay.redhat.com/v1", "kind": "QuayIntegration",
            "metadata": {"name": "b"}, "spec": {"quayHostname": 7}}),
        );
        assert!(typed::<QuayIntegration>(good.clone()).is_some());
        assert!(typed::<QuayIntegration>(bad.clone()).is_none());
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
