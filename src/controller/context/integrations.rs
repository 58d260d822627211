//! What this leadership term learnt of each QuayIntegration: the spec
//! generation it last handled, recent token checks, and sign-ins Quay
//! refused.

use super::lock;
use crate::plan::status::TokenCheck;
use std::collections::HashMap;
use std::sync::Mutex;
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

/// The integrations' memory (see the module).
#[derive(Debug, Default)]
pub(crate) struct IntegrationMemory {
    generations: Mutex<HashMap<String, i64>>,
    checks: Mutex<HashMap<String, (Instant, TokenCheck)>>,
    sign_ins: Mutex<HashMap<(String, String), SignInFailure>>,
}

impl IntegrationMemory {
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

    /// Forgets everything (a new leadership term).
    pub fn clear(&self) {
        lock(&self.generations).clear();
        lock(&self.checks).clear();
        lock(&self.sign_ins).clear();
    }
}
