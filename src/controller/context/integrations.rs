//! The QuayIntegrations, parsed once per change of their caches, and what
//! this leadership term learnt of each: the spec generation it last
//! handled, recent token checks, and sign-ins Quay refused.

use super::lock;
use crate::config::{ApiGroup, IntegrationConfig, IntegrationId, from_current, from_legacy};
use crate::crd::{LegacyQuayIntegration, QuayIntegration};
use crate::plan::status::TokenCheck;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A sign-in Quay refused, remembered so it is not repeated: every failure
/// lengthens Quay's per-user login backoff.
#[derive(Debug, Clone)]
pub(crate) struct SignInFailure {
    /// The credentials Secret's version the failure was met with.
    pub resource_version: Option<String>,
    /// The integration's generation then (a changed spec may change the
    /// outcome: `initializeUser`).
    pub generation: Option<i64>,
    /// Until when not to try (Quay's Retry-After); `None`: until the
    /// Secret or the spec changes.
    pub until: Option<Instant>,
    /// What the status says meanwhile.
    pub check: TokenCheck,
}

/// The integrations and their memory (see the module).
#[derive(Debug, Default)]
pub(crate) struct Integrations {
    /// The valid integrations not being deleted, sorted by id.
    parsed: RwLock<Arc<Vec<IntegrationConfig>>>,
    /// The integrations that fail validation (not being deleted).
    invalid: RwLock<Arc<Vec<IntegrationId>>>,
    generations: Mutex<HashMap<String, i64>>,
    checks: Mutex<HashMap<String, (Instant, TokenCheck)>>,
    sign_ins: Mutex<HashMap<(String, String), SignInFailure>>,
}

/// Parses the integrations of one API group not being deleted: the valid
/// ones into `out`, the others' ids into `invalid`.
fn parse_into<K>(
    store: &Store<K>,
    group: ApiGroup,
    parse: fn(&K) -> Result<IntegrationConfig, crate::config::ConfigError>,
    out: &mut Vec<IntegrationConfig>,
    invalid: &mut Vec<IntegrationId>,
) where
    K: Resource + kube::runtime::reflector::Lookup + Clone + 'static,
    <K as kube::runtime::reflector::Lookup>::DynamicType: Eq + std::hash::Hash + Clone,
{
    for q in store
        .state()
        .iter()
        .filter(|q| q.meta().deletion_timestamp.is_none())
    {
        match parse(q) {
            Ok(cfg) => out.push(cfg),
            Err(_) => invalid.push(IntegrationId {
                group,
                name: q.name_any(),
            }),
        }
    }
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn write<T>(l: &RwLock<T>, value: T) {
    *l.write().unwrap_or_else(std::sync::PoisonError::into_inner) = value;
}

impl Integrations {
    /// Every valid integration that is not being deleted, sorted by id:
    /// parsed once per change of the QuayIntegration caches (see
    /// [`Integrations::refresh`]), not on every reconcile and admission.
    pub fn all(&self) -> Arc<Vec<IntegrationConfig>> {
        read(&self.parsed)
    }

    /// The integrations that exist, are not being deleted, and fail
    /// validation: their namespaces are held as they are.
    pub fn invalid(&self) -> Arc<Vec<IntegrationId>> {
        read(&self.invalid)
    }

    /// Parses the QuayIntegration caches again.
    pub fn refresh(
        &self,
        current: &Store<QuayIntegration>,
        legacy: Option<&Store<LegacyQuayIntegration>>,
    ) {
        let mut out: Vec<IntegrationConfig> = Vec::new();
        let mut invalid: Vec<IntegrationId> = Vec::new();
        parse_into(
            current,
            ApiGroup::Current,
            from_current,
            &mut out,
            &mut invalid,
        );
        if let Some(legacy) = legacy {
            parse_into(
                legacy,
                ApiGroup::Legacy,
                from_legacy,
                &mut out,
                &mut invalid,
            );
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        invalid.sort();
        write(&self.invalid, Arc::new(invalid));
        write(&self.parsed, Arc::new(out));
    }

    /// Records the generation handled for the integration of this UID;
    /// whether it differs from the last one (or is the first seen).
    pub fn generation_changed(&self, uid: &str, generation: i64) -> bool {
        lock(&self.generations).insert(uid.to_owned(), generation) != Some(generation)
    }

    /// A token check made less than `ttl` ago under `key`.
    pub fn token_check(&self, key: &str, ttl: Duration) -> Option<TokenCheck> {
        lock(&self.checks)
            .get(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, check)| check.clone())
    }

    /// Keeps a token check under `key`.
    pub fn remember_token_check(&self, key: String, check: TokenCheck) {
        lock(&self.checks).insert(key, (Instant::now(), check));
    }

    /// The refused sign-in still standing for this version of the Secret
    /// `secret` (namespace, name) and of the spec.
    pub fn sign_in_failure(
        &self,
        secret: &(String, String),
        resource_version: Option<&str>,
        generation: Option<i64>,
    ) -> Option<TokenCheck> {
        lock(&self.sign_ins)
            .get(secret)
            .filter(|f| {
                f.resource_version.as_deref() == resource_version
                    && f.generation == generation
                    && f.until.is_none_or(|u| Instant::now() < u)
            })
            .map(|f| f.check.clone())
    }

    /// Remembers a refused sign-in.
    pub fn remember_sign_in_failure(&self, secret: (String, String), failure: SignInFailure) {
        lock(&self.sign_ins).insert(secret, failure);
    }

    /// Forgets what the term learnt (a new leadership term); the parsed
    /// integrations stay (they come from the caches).
    pub fn clear(&self) {
        lock(&self.generations).clear();
        lock(&self.checks).clear();
        lock(&self.sign_ins).clear();
    }
}
