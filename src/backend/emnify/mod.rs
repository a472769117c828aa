//! emnify backend: the vendor contract implemented on emnify's REST API (`/api/v1`).
//! `api` holds wire types, `map` the spec<->wire translation and the pure plan, `client` HTTP.

pub mod api;
pub mod client;
pub mod map;
pub mod subscription;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Method;
use tokio::sync::Mutex;

use self::client::EmnifyClient;
use self::map::{Catalogue, Change};
use super::{
    AccountBackend, AccountInfo, BackendError, BulkItem, Capabilities, DesiredServiceProfile, DesiredSubscription,
    ErrorKind, Inventory, ListedProfile, Lookup, Observation, ObservedProfile, ObservedSubscription, ProfileChange,
    ProfileOp, ProfileSection, ProfileSettings, ServiceProfileBackend, SimIdentity, SimKey, SubscriptionBackend,
    SubscriptionChange, SubscriptionProfile, WriteOutcome,
};

/// How long the service / traffic-limit catalogue is reused before it is read again.
const CATALOGUE_TTL: Duration = Duration::from_secs(600);

/// emnify implementation of the contracts.
pub struct EmnifyBackend {
    client: Arc<EmnifyClient>,
    catalogue: Mutex<Option<(Instant, Catalogue)>>,
    /// Use emnify's bulk endpoint update (`PATCH /api/v2/endpoint/multi`).
    bulk_writes: bool,
}

impl EmnifyBackend {
    pub fn new(client: Arc<EmnifyClient>) -> Self {
        EmnifyBackend {
            client,
            catalogue: Mutex::new(None),
            bulk_writes: true,
        }
    }

    /// Whether to write endpoints in bulk. Off for BICS accounts on this API: BICS publishes no
    /// page for the `/api/v2/.../multi` routes (docs/bulk-writes.md), so their SIMs are written
    /// one request each.
    pub fn with_bulk_writes(mut self, on: bool) -> Self {
        self.bulk_writes = on;
        self
    }

    pub fn client(&self) -> &Arc<EmnifyClient> {
        &self.client
    }

    /// Services and the limits of the services `wanted` names, cached for [`CATALOGUE_TTL`].
    async fn catalogue(&self, wanted: &[i64]) -> Result<Catalogue, BackendError> {
        let mut cached = self.catalogue.lock().await;
        let stale = cached.as_ref().is_none_or(|(at, _)| at.elapsed() > CATALOGUE_TTL);
        if stale {
            let services: Vec<api::Service> = self
                .client
                .call(
                    "service.list",
                    Method::GET,
                    "/api/v1/service",
                    None,
                    None,
                    "list emnify services",
                )
                .await?
                .json("list emnify services")?;
            *cached = Some((
                Instant::now(),
                Catalogue {
                    services,
                    limits: BTreeMap::new(),
                },
            ));
        }
        let Some((_, catalogue)) = cached.as_mut() else {
            return Err(BackendError::new(
                "read emnify catalogue",
                ErrorKind::Transient,
                "catalogue missing",
            ));
        };
        for sid in wanted {
            if catalogue.limits.contains_key(sid) {
                continue;
            }
            let action = format!("list traffic limits of emnify service {sid}");
            let limits: Vec<api::TrafficLimit> = match self
                .client
                .call(
                    "service.traffic_limit.list",
                    Method::GET,
                    &format!("/api/v1/service/{sid}/traffic_limit"),
                    None,
                    None,
                    &action,
                )
                .await
            {
                Ok(answer) => answer.json(&action)?,
                // A service with no limit catalogue.
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(e),
            };
            catalogue.limits.insert(*sid, limits);
        }
        Ok(catalogue.clone())
    }

    async fn resolve(&self, desired: &DesiredServiceProfile<'_>) -> Result<map::ResolvedProfile, BackendError> {
        let action = format!("resolve emnify service profile {:?}", desired.name);
        let Some(settings) = &desired.spec.emnify else {
            return Err(BackendError::new(
                action,
                ErrorKind::Invalid,
                "spec.emnify is required for an emnify ProviderConfig",
            ));
        };
        // What can be checked without emnify is checked before any call.
        map::desired_data_limits(settings).map_err(|m| BackendError::new(action.clone(), ErrorKind::Invalid, m))?;
        // First pass: the services named in the spec, so only their limit catalogues are read.
        let services_only = self.catalogue(&[]).await?;
        let mut wanted = Vec::new();
        for svc in settings.services.iter().flatten() {
            if !svc.traffic_limits.is_empty() {
                let (sid, _) = services_only
                    .service(&svc.service)
                    .map_err(|m| BackendError::new(action.clone(), ErrorKind::Invalid, m))?;
                wanted.push(sid);
            }
        }
        let catalogue = self.catalogue(&wanted).await?;
        map::resolve(&desired.name, desired.spec.description.as_deref(), settings, &catalogue)
            .map_err(|m| BackendError::new(action, ErrorKind::Invalid, m))
    }

    async fn get_profile(&self, id: i64) -> Result<Option<api::ServiceProfile>, BackendError> {
        let action = format!("get emnify service profile {id}");
        match self
            .client
            .call(
                "service_profile.get",
                Method::GET,
                &format!("/api/v1/service_profile/{id}"),
                None,
                None,
                &action,
            )
            .await
        {
            Ok(answer) => Ok(Some(answer.json(&action)?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn data_limits(&self, pid: i64) -> Result<Vec<api::DataLimit>, BackendError> {
        let action = format!("list data limits of emnify service profile {pid}");
        self.client
            .call(
                "service_profile.data_limit.list",
                Method::GET,
                &format!("/api/v1/service_profile/{pid}/traffic_limit"),
                None,
                None,
                &action,
            )
            .await?
            .json(&action)
    }

    async fn list_profiles(&self) -> Result<Vec<api::ServiceProfile>, BackendError> {
        let action = "list emnify service profiles";
        // Service profiles are not paged (emnify.md §4).
        self.client
            .call(
                "service_profile.list",
                Method::GET,
                "/api/v1/service_profile",
                None,
                None,
                action,
            )
            .await?
            .json(action)
    }

    async fn find_by_name(&self, name: &str) -> Result<Vec<i64>, BackendError> {
        Ok(self
            .list_profiles()
            .await?
            .into_iter()
            .filter(|p| p.name == name)
            .filter_map(|p| p.id)
            .collect())
    }
}

fn parse_id(id: &str, action: &str) -> Result<i64, BackendError> {
    id.trim().parse().map_err(|_| {
        BackendError::new(
            action,
            ErrorKind::Invalid,
            format!("{id:?} is not an emnify id (a number)"),
        )
    })
}

#[async_trait]
impl ServiceProfileBackend for EmnifyBackend {
    async fn observe(
        &self,
        desired: &DesiredServiceProfile<'_>,
        lookup: &Lookup,
    ) -> Result<Observation<ObservedProfile>, BackendError> {
        let resolved = self.resolve(desired).await?;
        let profile = match lookup {
            Lookup::Id(id) => {
                let id = parse_id(id, "observe emnify service profile")?;
                self.get_profile(id).await?
            }
            Lookup::Name(name) => match self.find_by_name(name).await?.as_slice() {
                [] => None,
                [id] => self.get_profile(*id).await?,
                ids => {
                    return Ok(Observation::Ambiguous {
                        ids: ids.iter().map(i64::to_string).collect(),
                    });
                }
            },
        };
        let Some(mut profile) = profile else {
            return Ok(Observation::Missing);
        };
        if resolved.data_limits.is_some()
            && let Some(pid) = profile.id
        {
            profile.data_limits = Some(self.data_limits(pid).await?);
        }
        let changes = map::plan(&resolved, &profile);
        Ok(Observation::Present(ObservedProfile {
            id: profile.id.map(|i| i.to_string()).unwrap_or_default(),
            used_count: profile.used_count,
            summary: map::summary(&profile, &changes),
            changes,
        }))
    }

    /// The list, then each profile's detail (services and their limits) and data limits: two
    /// calls a profile, plus the service catalogue (accounts hold a few dozen profiles at most).
    async fn list(&self) -> Result<Vec<ListedProfile>, BackendError> {
        let catalogue = self.catalogue(&[]).await?;
        let mut out = Vec::new();
        for short in self.list_profiles().await? {
            let Some(id) = short.id else { continue };
            // Gone between the list and its read: not there any more.
            let Some(mut profile) = self.get_profile(id).await? else {
                continue;
            };
            profile.data_limits = Some(self.data_limits(id).await?);
            let (emnify, unmanaged) = map::settings_of(&profile, &catalogue);
            out.push(ListedProfile {
                id: id.to_string(),
                name: profile.name.clone(),
                settings: Ok(ProfileSettings {
                    description: profile.description.clone().filter(|d| !d.is_empty()),
                    emnify: Some(emnify),
                    bics_sft: None,
                    unmanaged,
                }),
            });
        }
        Ok(out)
    }

    async fn create(&self, desired: &DesiredServiceProfile<'_>) -> Result<String, BackendError> {
        let resolved = self.resolve(desired).await?;
        let action = format!("create emnify service profile {:?}", desired.name);
        let answer = self
            .client
            .call(
                "service_profile.create",
                Method::POST,
                "/api/v1/service_profile",
                None,
                Some(&map::create_body(&resolved)),
                &action,
            )
            .await?;
        if let Some(id) = answer.location_id() {
            return Ok(id.to_string());
        }
        // emnify documents an empty 201 without saying whether `Location` is set: find it by name.
        match self.find_by_name(&desired.name).await?.as_slice() {
            [id] => Ok(id.to_string()),
            ids => Err(BackendError::new(
                action,
                ErrorKind::Transient,
                format!(
                    "created, but {} profiles carry the name; the next observe resolves it",
                    ids.len()
                ),
            )),
        }
    }

    async fn update(&self, id: &str, changes: &[ProfileChange]) -> Result<(), BackendError> {
        let pid = parse_id(id, "update emnify service profile")?;
        for change in changes {
            let ProfileOp::Emnify(op) = &change.op else {
                return Err(BackendError::new(
                    "update emnify service profile",
                    ErrorKind::Invalid,
                    "not an emnify change",
                ));
            };
            let action = format!("{} on emnify service profile {pid}", change.description);
            let base = format!("/api/v1/service_profile/{pid}");
            let result = match op {
                Change::Patch { body } => self
                    .client
                    .call(
                        "service_profile.update",
                        Method::PATCH,
                        &base,
                        None,
                        Some(&serde_json::Value::Object(body.clone())),
                        &action,
                    )
                    .await
                    .map(drop),
                Change::AddService { service_id } => tolerate(
                    self.client
                        .call(
                            "service_profile.service.add",
                            Method::PUT,
                            &format!("{base}/service/{service_id}"),
                            None,
                            None,
                            &action,
                        )
                        .await,
                    ErrorKind::Conflict,
                ),
                Change::RemoveService { service_id } => tolerate(
                    self.client
                        .call(
                            "service_profile.service.remove",
                            Method::DELETE,
                            &format!("{base}/service/{service_id}"),
                            None,
                            None,
                            &action,
                        )
                        .await,
                    ErrorKind::NotFound,
                ),
                Change::AttachLimit { service_id, limit_id } => tolerate(
                    self.client
                        .call(
                            "service_profile.traffic_limit.attach",
                            Method::PUT,
                            &format!("{base}/service/{service_id}/traffic_limit/{limit_id}"),
                            None,
                            None,
                            &action,
                        )
                        .await,
                    ErrorKind::Conflict,
                ),
                // A lost answer sent again finds the limit there (409): the next observe compares it.
                Change::AddDataLimit { body } => tolerate(
                    self.client
                        .call(
                            "service_profile.data_limit.add",
                            Method::POST,
                            &format!("{base}/traffic_limit"),
                            None,
                            Some(body),
                            &action,
                        )
                        .await,
                    ErrorKind::Conflict,
                ),
                Change::DeleteDataLimit { limit_id } => tolerate(
                    self.client
                        .call(
                            "service_profile.data_limit.delete",
                            Method::DELETE,
                            &format!("{base}/traffic_limit/{limit_id}"),
                            None,
                            None,
                            &action,
                        )
                        .await,
                    ErrorKind::NotFound,
                ),
                Change::DetachLimit { service_id, limit_id } => tolerate(
                    self.client
                        .call(
                            "service_profile.traffic_limit.detach",
                            Method::DELETE,
                            &format!("{base}/service/{service_id}/traffic_limit/{limit_id}"),
                            None,
                            None,
                            &action,
                        )
                        .await,
                    ErrorKind::NotFound,
                ),
            };
            result?;
        }
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<(), BackendError> {
        let pid = parse_id(id, "delete emnify service profile")?;
        let action = format!("delete emnify service profile {pid}");
        tolerate(
            self.client
                .call(
                    "service_profile.delete",
                    Method::DELETE,
                    &format!("/api/v1/service_profile/{pid}"),
                    None,
                    None,
                    &action,
                )
                .await,
            ErrorKind::NotFound,
        )
    }
}

/// Idempotency: an "already there" (or "already gone") answer means the change is in place.
fn tolerate(result: Result<client::Answer, BackendError>, ok_kind: ErrorKind) -> Result<(), BackendError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ok_kind => Ok(()),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl AccountBackend for EmnifyBackend {
    async fn verify(&self) -> Result<AccountInfo, BackendError> {
        Ok(AccountInfo {
            account: self.client.account_name().await?,
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            profile_section: Some(ProfileSection::Emnify),
            read_only_profiles: false,
            subscription_profile: SubscriptionProfile::ServiceProfileRef,
            // emnify SIMs may carry several IMSIs (multi-IMSI) and switch between them.
            sim_key: SimKey::Iccid,
        }
    }
}

#[async_trait]
impl SubscriptionBackend for EmnifyBackend {
    async fn inventory(&self) -> Result<Inventory, BackendError> {
        self.sweep().await
    }

    async fn observe(&self, identity: &SimIdentity) -> Result<Option<ObservedSubscription>, BackendError> {
        self.observe_sim(identity).await
    }

    async fn update(
        &self,
        desired: &DesiredSubscription<'_>,
        observed: &ObservedSubscription,
        changes: &[SubscriptionChange],
    ) -> Result<WriteOutcome, BackendError> {
        self.update_sim(desired, observed, changes).await
    }

    fn bulk_limit(&self) -> usize {
        if self.bulk_writes { subscription::BULK_LIMIT } else { 0 }
    }

    fn bulk_item(&self, observed: &ObservedSubscription, changes: &[SubscriptionChange]) -> Option<BulkItem> {
        self.endpoint_item(observed, changes)
    }

    async fn bulk_update(&self, items: &[BulkItem]) -> Result<(), BackendError> {
        self.bulk_update_endpoints(items).await
    }

    async fn bulk_in_effect(&self, items: &[BulkItem]) -> Result<Vec<bool>, BackendError> {
        self.endpoints_in_effect(items).await
    }
}
