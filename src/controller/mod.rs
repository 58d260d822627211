//! The operator's controllers: thin shells that read from caches, ask
//! `plan` what to do, apply it, and report.

pub mod build;
mod caches;
pub mod context;
mod credentials;
pub mod error;
pub mod index;
pub mod integration;
mod leader_controllers;
pub mod lenient;
pub mod namespace;
mod operator;
mod relist;
pub mod uninstall;

pub use caches::synced;
use context::{Metrics, Options};
use kube::Client;
use std::future::Future;

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The API server refused or failed a startup read.
    #[error("startup: {0}")]
    Kube(#[from] kube::Error),
    /// The webhook could not start (certificates, address).
    #[error("webhook: {0}")]
    Webhook(#[from] crate::net::NetError),
    /// The `kube-system` namespace has no UID, which every ownership
    /// marker carries.
    #[error("the kube-system namespace has no UID: the cluster cannot be told apart from another")]
    ClusterIdentity,
    /// Self-managed certificates could not be set up.
    #[error("webhook certificates: {0}")]
    Certificates(String),
}

/// Aborts its tasks when dropped: whatever `run` starts ends with it, even
/// when `run` itself is cancelled.
#[derive(Default)]
struct Tasks(Vec<tokio::task::AbortHandle>);

impl Tasks {
    fn push<T>(&mut self, handle: tokio::task::JoinHandle<T>) -> tokio::task::JoinHandle<T> {
        self.0.push(handle.abort_handle());
        handle
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Create and replace parameters naming the operator as field manager.
pub(crate) fn post_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(crate::config::FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Patch parameters naming the operator as field manager.
pub(crate) fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(crate::config::FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// How many times a guarded patch is computed again after the object
/// changed between the read and the patch.
const GUARDED_ATTEMPTS: usize = 5;

/// Applies the JSON patch `ops` computes from an object, guarded by what it
/// read (see `plan::metadata`): first from `cached`, then, each time the
/// apiserver refuses it because the object changed, from a fresh read.
/// `Ok(false)`: the object is gone, or there was nothing to change.
pub(crate) async fn patch_guarded<K>(
    api: &kube::Api<K>,
    name: &str,
    cached: Option<&K>,
    ops: impl Fn(&K) -> Vec<crate::plan::patch::Op>,
) -> Result<bool, error::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut read = cached.cloned();
    for attempt in 1..=GUARDED_ATTEMPTS {
        let obj = match read.take() {
            Some(o) => o,
            None => match api.get_opt(name).await? {
                Some(o) => o,
                None => return Ok(false),
            },
        };
        let ops = ops(&obj);
        if ops.is_empty() {
            return Ok(false);
        }
        let patch = json_patch::Patch(ops);
        match api
            .patch(name, &patch_params(), &kube::api::Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
            // Changed since it was read (a test failed): read it again.
            Err(kube::Error::Api(s))
                if (s.code == 422 || s.code == 409) && attempt < GUARDED_ATTEMPTS =>
            {
                tracing::debug!(
                    name,
                    "object changed while patching its metadata; reading it again"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Runs the operator until `shutdown` resolves: everything every replica
/// runs (caches, the webhook), and the reconcilers while it leads.
pub async fn run(
    client: Client,
    options: Options,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    operator::Operator::start(client, options, metrics)
        .await?
        .run(shutdown)
        .await;
    Ok(())
}
