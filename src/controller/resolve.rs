//! Resolve step: ProviderConfig and its credentials Secret to a connected vendor backend.
//! Backends (and with them cached auth tokens and rate limiters) are kept per ProviderConfig and
//! rebuilt only when the endpoint, the credentials or the rate limit change.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::backend::bics::BicsBackend;
use crate::backend::bics::client::{self as bics_client, BicsClient};
use crate::backend::emnify::EmnifyBackend;
use crate::backend::emnify::client::{ClientConfig, Credentials, EmnifyClient};
use crate::backend::telenor::TelenorBackend;
use crate::backend::telenor::client::{self as telenor_client, TelenorClient};
use crate::backend::{
    AccountBackend, BackendError, Capabilities, EndpointDefaults, SecretString, ServiceProfileBackend,
    SubscriptionBackend,
};
use crate::crd::{ProviderConfig, RateLimit, Vendor, VendorApi};
use crate::metrics::Metrics;
use crate::reason::Reason;

/// Why a ProviderConfig could not be turned into a backend. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("ProviderConfig {namespace}/{name} not found")]
    ProviderConfigNotFound { namespace: String, name: String },
    #[error("failed to get ProviderConfig {namespace}/{name}: {source}")]
    GetProviderConfig {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("Secret {namespace}/{name} (credentialsSecretRef of ProviderConfig {provider}) not found")]
    SecretNotFound {
        namespace: String,
        name: String,
        provider: String,
    },
    #[error("failed to get Secret {namespace}/{name}: {source}")]
    GetSecret {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("Secret {namespace}/{name} has no usable credentials: {detail}")]
    SecretKeyMissing {
        namespace: String,
        name: String,
        detail: String,
    },
    #[error("failed to build a client for ProviderConfig {provider}: {source}")]
    BuildClient { provider: String, source: BackendError },
    #[error("ProviderConfig {provider}: {field} {value:?} is not an http(s) URL: {detail}")]
    InvalidUrl {
        provider: String,
        field: &'static str,
        value: String,
        detail: String,
    },
}

/// `Ok` for an absolute http or https URL with a host.
fn http_url(value: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(value.trim()).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the scheme is {:?}", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("there is no host".into());
    }
    Ok(())
}

impl ResolveError {
    /// Condition / event reason.
    pub fn reason(&self) -> Reason {
        match self {
            ResolveError::ProviderConfigNotFound { .. } => Reason::ProviderConfigNotFound,
            ResolveError::GetProviderConfig { .. } | ResolveError::GetSecret { .. } => Reason::KubernetesApiError,
            ResolveError::SecretNotFound { .. } => Reason::SecretNotFound,
            ResolveError::SecretKeyMissing { .. } => Reason::SecretKeyMissing,
            ResolveError::BuildClient { .. } | ResolveError::InvalidUrl { .. } => Reason::InvalidProviderConfig,
        }
    }
}

/// A connected vendor account.
pub struct Provider {
    pub vendor: Vendor,
    pub endpoint: String,
    pub service_profiles: Arc<dyn ServiceProfileBackend>,
    pub subscriptions: Arc<dyn SubscriptionBackend>,
    pub account: Arc<dyn AccountBackend>,
    /// Defaults for endpoints the operator creates (emnify tariff profile, BICS roaming profiles).
    pub endpoint_defaults: EndpointDefaults,
    /// What the vendor API can do (from the backend).
    pub capabilities: Capabilities,
}

impl Provider {
    /// An account served by one backend for profiles, subscriptions and verification.
    fn new<B>(vendor: Vendor, endpoint: &str, backend: Arc<B>, endpoint_defaults: EndpointDefaults) -> Self
    where
        B: ServiceProfileBackend + SubscriptionBackend + AccountBackend + 'static,
    {
        Provider {
            capabilities: backend.capabilities(),
            vendor,
            endpoint: endpoint.to_string(),
            service_profiles: backend.clone(),
            subscriptions: backend.clone(),
            account: backend,
            endpoint_defaults,
        }
    }
}

/// Backends per ProviderConfig.
pub struct Providers {
    cache: Mutex<HashMap<String, (u64, Arc<Provider>)>>,
    /// When each ProviderConfig was last resolved from the API (ProviderConfig and Secret read).
    resolved: Mutex<HashMap<String, (Instant, Arc<Provider>)>>,
    /// How long a resolution is reused without reading the ProviderConfig and its Secret again.
    reuse_for: Duration,
    metrics: Metrics,
    timeout: Duration,
    slow_timeout: Duration,
    verify_timeout: Duration,
}

impl Providers {
    pub fn new(metrics: Metrics, timeout: Duration, slow_timeout: Duration, verify_timeout: Duration) -> Self {
        Providers {
            cache: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
            reuse_for: Duration::ZERO,
            metrics,
            timeout,
            slow_timeout: slow_timeout.max(timeout),
            verify_timeout,
        }
    }

    /// Reuse a resolution for `ttl` before reading the ProviderConfig and its Secret again, so a
    /// resync of thousands of objects on one account does not read the same two objects
    /// thousands of times. A ProviderConfig change is seen at once (its controller resolves it
    /// again); a rotated Secret within `ttl`. Zero reads them on every resolve.
    pub fn with_reuse(mut self, ttl: Duration) -> Self {
        self.reuse_for = ttl;
        self
    }

    /// Resolve `namespace/name` to a connected backend.
    pub async fn resolve(&self, client: &Client, namespace: &str, name: &str) -> Result<Arc<Provider>, ResolveError> {
        if !self.reuse_for.is_zero()
            && let Some((at, provider)) = self
                .resolved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&format!("{namespace}/{name}"))
            && at.elapsed() < self.reuse_for
        {
            return Ok(provider.clone());
        }
        let pcs: Api<ProviderConfig> = Api::namespaced(client.clone(), namespace);
        let pc = pcs
            .get_opt(name)
            .await
            .map_err(|source| ResolveError::GetProviderConfig {
                namespace: namespace.into(),
                name: name.into(),
                source,
            })?
            .ok_or_else(|| ResolveError::ProviderConfigNotFound {
                namespace: namespace.into(),
                name: name.into(),
            })?;
        self.for_provider_config(client, &pc).await
    }

    /// Connected backend for a ProviderConfig object.
    pub async fn for_provider_config(
        &self,
        client: &Client,
        pc: &ProviderConfig,
    ) -> Result<Arc<Provider>, ResolveError> {
        let secret = credentials_secret(client, pc).await?;
        self.with_secret(pc, &secret)
    }

    /// Connected backend for a ProviderConfig whose credentials Secret the caller already read.
    pub fn with_secret(&self, pc: &ProviderConfig, secret: &Secret) -> Result<Arc<Provider>, ResolveError> {
        let namespace = super::managed::namespace(pc);
        let name = pc.metadata.name.clone().unwrap_or_default();
        let secret_name = &pc.spec.credentials_secret_ref.name;
        let credentials =
            credentials(pc.spec.api(), secret, pc.spec.credentials_secret_ref.key.as_deref()).map_err(|detail| {
                ResolveError::SecretKeyMissing {
                    namespace: namespace.clone(),
                    name: secret_name.clone(),
                    detail,
                }
            })?;
        let endpoint = pc.spec.endpoint_or_default();
        // Checked here, before any request: a bad URL would otherwise only fail as a request.
        let token_url = pc
            .spec
            .telenor_iot_connect
            .as_ref()
            .and_then(|t| t.token_url.as_deref());
        for (field, value) in [
            ("spec.endpoint", Some(endpoint.as_str())),
            ("spec.telenorIotConnect.tokenUrl", token_url),
        ] {
            if let Some(value) = value {
                http_url(value).map_err(|detail| ResolveError::InvalidUrl {
                    provider: format!("{namespace}/{name}"),
                    field,
                    value: value.to_string(),
                    detail,
                })?;
            }
        }
        let rate = effective_rate_limit(pc.spec.vendor, pc.spec.rate_limit.as_ref());
        let fingerprint = {
            let mut h = DefaultHasher::new();
            pc.spec.vendor.hash(&mut h);
            endpoint.hash(&mut h);
            pc.spec.emnify.hash(&mut h);
            pc.spec.telenor_iot_connect.hash(&mut h);
            pc.spec.bics_sft.hash(&mut h);
            credentials.fingerprint().hash(&mut h);
            rate.requests_per_second.to_bits().hash(&mut h);
            rate.burst.hash(&mut h);
            h.finish()
        };
        let key = format!("{namespace}/{name}");
        let cached = match self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            Some((fp, provider)) if *fp == fingerprint => Some(provider.clone()),
            _ => None,
        };
        if let Some(provider) = cached {
            self.resolved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, (Instant::now(), provider.clone()));
            return Ok(provider);
        }
        let provider =
            Arc::new(
                self.build(pc, &endpoint, credentials, &rate)
                    .map_err(|source| ResolveError::BuildClient {
                        provider: key.clone(),
                        source,
                    })?,
            );
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), (fingerprint, provider.clone()));
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (Instant::now(), provider.clone()));
        Ok(provider)
    }

    fn build(
        &self,
        pc: &ProviderConfig,
        endpoint: &str,
        credentials: VendorCredentials,
        rate: &RateLimit,
    ) -> Result<Provider, BackendError> {
        let vendor = pc.spec.vendor;
        match credentials {
            VendorCredentials::Emnify(credentials) => {
                let client = Arc::new(EmnifyClient::new(
                    ClientConfig {
                        base_url: endpoint.to_string(),
                        credentials,
                        requests_per_second: rate.requests_per_second,
                        burst: rate.burst,
                        timeout: self.timeout,
                    },
                    Some(self.metrics.clone()),
                )?);
                let backend = Arc::new(EmnifyBackend::new(client).with_bulk_writes(vendor == Vendor::Emnify));
                Ok(Provider::new(
                    vendor,
                    endpoint,
                    backend,
                    EndpointDefaults {
                        tariff_profile_id: pc
                            .spec
                            .emnify
                            .as_ref()
                            .and_then(|e| e.default_tariff_profile_id)
                            .or_else(|| pc.spec.bics_sft.as_ref().and_then(|b| b.default_tariff_profile_id)),
                        ..Default::default()
                    },
                ))
            }
            VendorCredentials::Telenor {
                client_id,
                client_secret,
            } => {
                let client = Arc::new(TelenorClient::new(
                    telenor_client::ClientConfig {
                        base_url: endpoint.to_string(),
                        token_url: pc.spec.telenor_iot_connect.as_ref().and_then(|t| t.token_url.clone()),
                        client_id,
                        client_secret,
                        requests_per_second: rate.requests_per_second,
                        burst: rate.burst,
                        timeout: self.timeout,
                    },
                    Some(self.metrics.clone()),
                )?);
                let backend = Arc::new(TelenorBackend::new(client));
                Ok(Provider::new(vendor, endpoint, backend, EndpointDefaults::default()))
            }
            VendorCredentials::Bics { username, password } => {
                let bics = pc.spec.bics_sft.clone().unwrap_or_default();
                let client = Arc::new(BicsClient::new(
                    bics_client::ClientConfig {
                        base_url: endpoint.to_string(),
                        username,
                        password,
                        target_account_id: bics.target_account_id.clone(),
                        requests_per_second: rate.requests_per_second,
                        burst: rate.burst,
                        timeout: self.timeout,
                        slow_timeout: self.slow_timeout,
                    },
                    Some(self.metrics.clone()),
                )?);
                let backend = Arc::new(BicsBackend::new(client, self.verify_timeout));
                Ok(Provider::new(
                    vendor,
                    endpoint,
                    backend,
                    EndpointDefaults {
                        roaming_profile_ids: bics.default_roaming_profile_ids.clone(),
                        apn_group_id: bics.default_apn_group_id.clone(),
                        ..Default::default()
                    },
                ))
            }
        }
    }

    /// Forget a ProviderConfig's backend (it was deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        let key = format!("{namespace}/{name}");
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        self.resolved.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    }
}

/// The limit in force: the spec's, else one below the vendor's documented limit.
pub fn effective_rate_limit(vendor: Vendor, spec: Option<&RateLimit>) -> RateLimit {
    spec.cloned().unwrap_or(match vendor {
        // emnify allows 2000 requests per 5 minutes per IP (6.7/s) and 10/s on list paths;
        // 5/s with a burst of 5 stays below both.
        Vendor::Emnify => RateLimit {
            requests_per_second: 5.0,
            burst: 5,
        },
        // Telenor documents no numbers; stay well inside what a gateway usually allows.
        Vendor::TelenorIotConnect => RateLimit {
            requests_per_second: 5.0,
            burst: 10,
        },
        // No published limit; production clients assume 2 per second per account and pace at 1.
        Vendor::BicsSft => RateLimit {
            requests_per_second: 1.0,
            burst: 2,
        },
    })
}

/// Credentials read from a Secret, per vendor.
#[derive(Clone, Debug)]
pub enum VendorCredentials {
    Emnify(Credentials),
    Telenor {
        client_id: String,
        client_secret: SecretString,
    },
    Bics {
        username: String,
        password: SecretString,
    },
}

impl VendorCredentials {
    /// Hash input that changes when the credentials change, without keeping them in the cache key.
    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        match self {
            VendorCredentials::Emnify(Credentials::ApplicationToken(t)) => t.expose().hash(&mut h),
            VendorCredentials::Emnify(Credentials::User { username, password }) => {
                username.hash(&mut h);
                password.expose().hash(&mut h);
            }
            VendorCredentials::Telenor {
                client_id,
                client_secret,
            } => {
                client_id.hash(&mut h);
                client_secret.expose().hash(&mut h);
            }
            VendorCredentials::Bics { username, password } => {
                username.hash(&mut h);
                password.expose().hash(&mut h);
            }
        }
        h.finish()
    }
}

/// Read a Secret's value by key from `data` (or `stringData`, as in manifest files).
fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone())
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Parse the vendor's credentials from a Secret (formats in the README).
pub fn credentials(api: VendorApi, secret: &Secret, key: Option<&str>) -> Result<VendorCredentials, String> {
    match api {
        VendorApi::EmnifyRest => {
            let token_key = key.unwrap_or("applicationToken");
            if let Some(token) = secret_value(secret, token_key) {
                return Ok(VendorCredentials::Emnify(Credentials::ApplicationToken(
                    SecretString::new(token),
                )));
            }
            if key.is_some() {
                return Err(format!("key {token_key:?} is missing or empty"));
            }
            match (secret_value(secret, "username"), secret_value(secret, "password")) {
                (Some(username), Some(password)) => Ok(VendorCredentials::Emnify(Credentials::User {
                    username,
                    password: SecretString::new(password),
                })),
                _ => Err("expected key \"applicationToken\", or keys \"username\" and \"password\"".into()),
            }
        }
        VendorApi::BicsRpc => match (
            secret_value(secret, "username"),
            secret_value(secret, key.unwrap_or("password")),
        ) {
            (Some(username), Some(password)) => Ok(VendorCredentials::Bics {
                username,
                password: SecretString::new(password),
            }),
            _ => Err(format!(
                "expected keys \"username\" and {:?}",
                key.unwrap_or("password")
            )),
        },
        VendorApi::Telenor => {
            match (
                secret_value(secret, "clientId"),
                secret_value(secret, key.unwrap_or("clientSecret")),
            ) {
                (Some(client_id), Some(secret)) => Ok(VendorCredentials::Telenor {
                    client_id,
                    client_secret: SecretString::new(secret),
                }),
                _ => Err(format!(
                    "expected keys \"clientId\" and {:?}",
                    key.unwrap_or("clientSecret")
                )),
            }
        }
    }
}

/// The credentials Secret a ProviderConfig names.
pub async fn credentials_secret(client: &Client, pc: &ProviderConfig) -> Result<Secret, ResolveError> {
    let namespace = super::managed::namespace(pc);
    let secret_name = &pc.spec.credentials_secret_ref.name;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    secrets
        .get_opt(secret_name)
        .await
        .map_err(|source| ResolveError::GetSecret {
            namespace: namespace.clone(),
            name: secret_name.clone(),
            source,
        })?
        .ok_or_else(|| ResolveError::SecretNotFound {
            namespace,
            name: secret_name.clone(),
            provider: pc.metadata.name.clone().unwrap_or_default(),
        })
}

/// Whether an object's cleanup that failed with `err` has nothing left to wait for: the
/// credentials cannot be had (ProviderConfig or Secret missing) and the account itself is going
/// away (its ProviderConfig is gone or being deleted). That happens when a namespace deletion took
/// the Secret before the operator protected it, or someone removed the protecting finalizer; the
/// cleanup then leaves the vendor object as it is and says so, instead of blocking the deletion for
/// ever. An error reading the ProviderConfig counts as "not going away" (retry).
pub async fn credentials_gone_for_good(client: &Client, err: &ResolveError, namespace: &str, name: &str) -> bool {
    let unavailable = matches!(
        err,
        ResolveError::ProviderConfigNotFound { .. }
            | ResolveError::SecretNotFound { .. }
            | ResolveError::SecretKeyMissing { .. }
    );
    if !unavailable {
        return false;
    }
    let pcs: Api<ProviderConfig> = Api::namespaced(client.clone(), namespace);
    match pcs.get_opt(name).await {
        Ok(None) => true,
        Ok(Some(pc)) => pc.metadata.deletion_timestamp.is_some(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    #[test]
    fn only_absolute_http_urls_with_a_host_are_endpoints() {
        for ok in [
            "https://cdn.emnify.net",
            "http://127.0.0.1:9",
            " https://api.iot.telenor.com/x ",
        ] {
            assert!(http_url(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("not a url", "relative URL"),
            ("ftp://cdn.emnify.net", "scheme"),
            ("http://exa mple.com", "invalid"),
            ("::", "relative URL"),
            ("file:///etc/passwd", "scheme"),
        ] {
            let e = http_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    fn secret(data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn emnify_secret_formats() {
        let c = credentials(VendorApi::EmnifyRest, &secret(&[("applicationToken", "tok\n")]), None).unwrap();
        assert!(matches!(c, VendorCredentials::Emnify(Credentials::ApplicationToken(t)) if t.expose() == "tok"));
        let c = credentials(
            VendorApi::EmnifyRest,
            &secret(&[("username", "a@b.c"), ("password", "pw")]),
            None,
        )
        .unwrap();
        assert!(matches!(c, VendorCredentials::Emnify(Credentials::User { username, .. }) if username == "a@b.c"));
        let c = credentials(VendorApi::EmnifyRest, &secret(&[("token", "t2")]), Some("token")).unwrap();
        assert!(matches!(c, VendorCredentials::Emnify(Credentials::ApplicationToken(t)) if t.expose() == "t2"));
    }

    #[test]
    fn telenor_secret_format() {
        let c = credentials(
            VendorApi::Telenor,
            &secret(&[("clientId", "id"), ("clientSecret", "s")]),
            None,
        )
        .unwrap();
        assert!(
            matches!(c, VendorCredentials::Telenor { client_id, client_secret } if client_id == "id" && client_secret.expose() == "s")
        );
        let err = credentials(VendorApi::Telenor, &secret(&[("clientId", "id")]), None).unwrap_err();
        assert_eq!(err, "expected keys \"clientId\" and \"clientSecret\"");
    }

    #[test]
    fn missing_keys_say_what_is_expected_without_values() {
        let err = credentials(VendorApi::EmnifyRest, &secret(&[("username", "a@b.c")]), None).unwrap_err();
        assert!(err.contains("applicationToken") && !err.contains("a@b.c"), "{err}");
        let err = credentials(
            VendorApi::EmnifyRest,
            &secret(&[("applicationToken", "x")]),
            Some("other"),
        )
        .unwrap_err();
        assert_eq!(err, "key \"other\" is missing or empty");
    }

    #[test]
    fn string_data_is_read_too() {
        let s = Secret {
            string_data: Some(BTreeMap::from([("applicationToken".to_string(), "sd".to_string())])),
            ..Default::default()
        };
        assert!(credentials(VendorApi::EmnifyRest, &s, None).is_ok());
    }
}
