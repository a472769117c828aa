//! ConnectivitySubscription on emnify: a SIM (`/api/v1/sim`) and the endpoint (device) it is
//! assigned to (`/api/v1/endpoint`). Network access needs SIM Activated AND endpoint Enabled, and
//! an Activated SIM is billed even when its endpoint is Disabled, so our modes map onto the pair:
//!
//! | mode        | SIM status      | endpoint status      |
//! |-------------|-----------------|----------------------|
//! | Active      | Activated (1)   | Enabled (0)          |
//! | Paused      | Activated (1)   | Disabled (1)         |
//! | Deactivated | Suspended (2), or Issued (0) never activated | Disabled (1) or none |
//! | Terminated  | Deleted (3)     | released and deleted |
//!
//! SIM status changes follow emnify's allowed transitions (`PATCH /sim/{id}`): Issued -> Activated
//! or Factory Test, Factory Test -> Activated only, Activated <-> Suspended. A Factory Test SIM
//! is therefore activated (with its endpoint already disabled) on its way to Suspended.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::json;

use super::EmnifyBackend;
use super::api::{Endpoint, Sim};
use crate::backend::{
    BackendError, BulkItem, DesiredSubscription, ErrorKind, Inventory, InventoryBuilder, ObservedSubscription,
    SimIdentity, SubscriptionChange, WriteOutcome,
};
use crate::crd::SubscriptionMode;

const SIM_ISSUED: i64 = 0;
const SIM_ACTIVATED: i64 = 1;
const SIM_SUSPENDED: i64 = 2;
const SIM_DELETED: i64 = 3;
const SIM_FACTORY_TEST: i64 = 4;
const ENDPOINT_ENABLED: i64 = 0;
const ENDPOINT_DISABLED: i64 = 1;

/// Page sizes: the documented maxima, so a sweep needs as few pages as possible.
const ENDPOINTS_PER_PAGE: u32 = 1000;
const SIMS_PER_PAGE: u32 = 2500;

fn sim_status_name(id: Option<i64>) -> &'static str {
    match id {
        Some(SIM_ISSUED) => "Issued",
        Some(SIM_ACTIVATED) => "Activated",
        Some(SIM_SUSPENDED) => "Suspended",
        Some(SIM_DELETED) => "Deleted",
        Some(SIM_FACTORY_TEST) => "FactoryTest",
        _ => "Unknown",
    }
}

fn endpoint_status_name(id: Option<i64>) -> &'static str {
    match id {
        Some(ENDPOINT_ENABLED) => "Enabled",
        Some(ENDPOINT_DISABLED) => "Disabled",
        Some(2) => "Deleted",
        _ => "Unknown",
    }
}

/// Our mode for a SIM status and endpoint status (`None`: no endpoint). Pure.
pub fn mode_of(sim_status: Option<i64>, endpoint_status: Option<i64>) -> Option<SubscriptionMode> {
    match (sim_status, endpoint_status) {
        (Some(SIM_DELETED), _) => Some(SubscriptionMode::Terminated),
        (Some(SIM_ACTIVATED), Some(ENDPOINT_ENABLED)) => Some(SubscriptionMode::Active),
        (Some(SIM_ACTIVATED), Some(ENDPOINT_DISABLED)) => Some(SubscriptionMode::Paused),
        (Some(SIM_SUSPENDED | SIM_ISSUED), Some(ENDPOINT_DISABLED) | None) => Some(SubscriptionMode::Deactivated),
        _ => None,
    }
}

/// The SIM and endpoint statuses a mode needs.
fn target(mode: SubscriptionMode) -> (i64, i64) {
    match mode {
        SubscriptionMode::Active => (SIM_ACTIVATED, ENDPOINT_ENABLED),
        SubscriptionMode::Paused => (SIM_ACTIVATED, ENDPOINT_DISABLED),
        SubscriptionMode::Deactivated => (SIM_SUSPENDED, ENDPOINT_DISABLED),
        SubscriptionMode::Terminated => (SIM_DELETED, ENDPOINT_DISABLED),
    }
}

/// What an observation reads of an endpoint. The sweep keeps one per endpoint of the account
/// until the SIM pages arrive: 64 bytes, where a whole [`Endpoint`] (with its inline SIM) is
/// several hundred; with whole endpoints this map was 7.5 of the operator's 40.6 MiB peak heap
/// at 10,000 SIMs (heaptrack).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EndpointFacts {
    id: Option<i64>,
    status: Option<i64>,
    imei: Option<Box<str>>,
    service_profile: Option<i64>,
}

impl From<Endpoint> for EndpointFacts {
    fn from(e: Endpoint) -> Self {
        EndpointFacts {
            id: e.id,
            status: e.status.and_then(|s| s.id),
            imei: e.imei.filter(|i| !i.is_empty()).map(String::into_boxed_str),
            service_profile: e.service_profile.and_then(|p| p.id),
        }
    }
}

pub(crate) fn observed(sim: &Sim, endpoint: Option<&EndpointFacts>) -> ObservedSubscription {
    let sim_status = sim.status.as_ref().and_then(|s| s.id);
    let endpoint_status = endpoint.and_then(|e| e.status);
    let vendor_mode = match endpoint {
        Some(_) => format!(
            "{}/{}",
            sim_status_name(sim_status),
            endpoint_status_name(endpoint_status)
        ),
        None => format!("{}/no endpoint", sim_status_name(sim_status)),
    };
    ObservedSubscription {
        imsi: sim.imsi.clone(),
        iccid: sim.iccid_with_luhn.clone().or_else(|| sim.iccid.clone()),
        msisdn: sim.msisdn.clone(),
        imei: endpoint.and_then(|e| e.imei.as_deref()).map(str::to_string),
        id: sim.id.map(|i| i.to_string()),
        endpoint_id: endpoint.and_then(|e| e.id).map(|i| i.to_string()),
        vendor_mode,
        mode: mode_of(sim_status, endpoint.map(|_| endpoint_status.unwrap_or(-1))),
        service_profile_id: endpoint.and_then(|e| e.service_profile).map(|i| i.to_string()),
        first_activation_date: sim.activation_date.clone(),
        equivalent: Vec::new(),
    }
}

/// Endpoints one bulk update may carry (emnify: "up to 2,000 endpoints").
pub const BULK_LIMIT: usize = 2000;

/// Up to this many endpoints are read back one by one after a failed bulk update; more are
/// read through the endpoint listing.
const READ_BACK_ONE_BY_ONE: usize = 20;

/// SIM status and endpoint status (`None`: no endpoint) from our `vendor_mode` text.
fn statuses(current: &ObservedSubscription) -> (i64, Option<i64>) {
    let mut parts = current.vendor_mode.split('/');
    let sim = match parts.next() {
        Some("Issued") => SIM_ISSUED,
        Some("Activated") => SIM_ACTIVATED,
        Some("Suspended") => SIM_SUSPENDED,
        Some("Deleted") => SIM_DELETED,
        Some("FactoryTest") => SIM_FACTORY_TEST,
        _ => -1,
    };
    let endpoint = match parts.next() {
        Some("Enabled") => Some(ENDPOINT_ENABLED),
        Some("Disabled") => Some(ENDPOINT_DISABLED),
        _ => None,
    };
    (sim, endpoint)
}

/// Our `vendor_mode` text for a SIM status and endpoint status.
fn vendor_mode(sim_status: i64, endpoint_status: Option<i64>) -> String {
    match endpoint_status {
        Some(e) => format!(
            "{}/{}",
            sim_status_name(Some(sim_status)),
            endpoint_status_name(Some(e))
        ),
        None => format!("{}/no endpoint", sim_status_name(Some(sim_status))),
    }
}

/// One element of the bulk update's request body: the endpoint id and the fields it sets.
fn endpoint_patch(item: &BulkItem) -> Option<serde_json::Value> {
    let id: i64 = item.target.parse().ok()?;
    let mut patch = serde_json::Map::new();
    patch.insert("id".into(), json!(id));
    for change in &item.changes {
        match change {
            SubscriptionChange::SetServiceProfile(profile) => {
                patch.insert("service_profile".into(), json!({"id": profile.parse::<i64>().ok()?}));
            }
            SubscriptionChange::SetMode(mode) => {
                patch.insert("status".into(), json!({"id": target(*mode).1}));
            }
        }
    }
    Some(serde_json::Value::Object(patch))
}

/// Whether `endpoint` has everything `item` sets.
fn in_effect(item: &BulkItem, endpoint: &Endpoint) -> bool {
    item.changes.iter().all(|change| match change {
        SubscriptionChange::SetServiceProfile(profile) => {
            endpoint
                .service_profile
                .as_ref()
                .and_then(|p| p.id)
                .map(|id| id.to_string())
                .as_deref()
                == Some(profile.as_str())
        }
        SubscriptionChange::SetMode(mode) => endpoint.status.as_ref().and_then(|s| s.id) == Some(target(*mode).1),
    })
}

fn numeric(id: &Option<String>, what: &str, action: &str) -> Result<i64, BackendError> {
    id.as_deref()
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| BackendError::new(action, ErrorKind::Invalid, format!("{what} is not a numeric emnify id")))
}

impl EmnifyBackend {
    pub(super) async fn sweep(&self) -> Result<Inventory, BackendError> {
        let client = self.client();
        let before = client.requests_sent();
        // Page by page, keeping only what the observation needs: the endpoints as the
        // fields `observed` reads, the SIMs as observations.
        let mut by_id: HashMap<i64, EndpointFacts> = HashMap::new();
        client
            .for_each_page(
                "endpoint.list",
                "/api/v1/endpoint",
                &[],
                ENDPOINTS_PER_PAGE,
                "list emnify endpoints",
                |page: Vec<Endpoint>| {
                    by_id.extend(page.into_iter().filter_map(|e| Some((e.id?, EndpointFacts::from(e)))));
                },
            )
            .await?;
        let mut inventory = InventoryBuilder::default();
        client
            .for_each_page(
                "sim.list",
                "/api/v1/sim",
                &[],
                SIMS_PER_PAGE,
                "list emnify SIMs",
                |page: Vec<Sim>| {
                    for sim in &page {
                        let endpoint = sim.endpoint.as_ref().and_then(|e| e.id).and_then(|id| by_id.get(&id));
                        inventory.push(&observed(sim, endpoint));
                    }
                },
            )
            .await?;
        Ok(inventory.finish(client.requests_sent() - before))
    }

    pub(super) async fn observe_sim(
        &self,
        identity: &SimIdentity,
    ) -> Result<Option<ObservedSubscription>, BackendError> {
        let action = format!("find emnify SIM {identity}");
        let q = match (&identity.imsi, &identity.iccid) {
            (Some(imsi), _) => format!("imsi:{imsi}"),
            (None, Some(iccid)) if iccid.len() == 20 => format!("iccid_with_luhn:{iccid}"),
            (None, Some(iccid)) => format!("iccid:{iccid}"),
            (None, None) => return Ok(None),
        };
        let sims: Vec<Sim> = self
            .client()
            .list_paged("sim.list", "/api/v1/sim", &[("q", q)], 10, &action)
            .await?;
        let Some(sim) = sims.into_iter().find(|s| observed(s, None).matches(identity)) else {
            return Ok(None);
        };
        let endpoint = match sim.endpoint.as_ref().and_then(|e| e.id) {
            Some(id) => self.endpoint(id, &format!("get emnify endpoint {id}")).await?,
            None => None,
        };
        Ok(Some(observed(&sim, endpoint.map(EndpointFacts::from).as_ref())))
    }

    pub(super) async fn update_sim(
        &self,
        desired: &DesiredSubscription<'_>,
        current: &ObservedSubscription,
        changes: &[SubscriptionChange],
    ) -> Result<WriteOutcome, BackendError> {
        let client = self.client();
        let sim_id = numeric(&current.id, "the SIM id", "update emnify SIM")?;
        let mut endpoint_id = current.endpoint_id.as_deref().and_then(|i| i.parse::<i64>().ok());
        let (mut sim_status, mut endpoint_status) = statuses(current);
        let mut profile_id = current.service_profile_id.clone();
        for change in changes {
            match change {
                SubscriptionChange::SetServiceProfile(profile) => {
                    let profile: i64 = profile.parse().map_err(|_| {
                        BackendError::new(
                            "set emnify service profile",
                            ErrorKind::Invalid,
                            format!("{profile:?} is not an emnify id"),
                        )
                    })?;
                    match endpoint_id {
                        Some(eid) => {
                            let action = format!("set service profile {profile} on emnify endpoint {eid}");
                            profile_id = Some(profile.to_string());
                            client
                                .call(
                                    "endpoint.update",
                                    Method::PATCH,
                                    &format!("/api/v1/endpoint/{eid}"),
                                    None,
                                    Some(&json!({"service_profile": {"id": profile}})),
                                    &action,
                                )
                                .await?;
                        }
                        None => {
                            endpoint_id = Some(
                                self.create_endpoint(desired, sim_id, profile, ENDPOINT_DISABLED)
                                    .await?,
                            );
                            endpoint_status = Some(ENDPOINT_DISABLED);
                            profile_id = Some(profile.to_string());
                        }
                    }
                }
                SubscriptionChange::SetMode(mode) => {
                    let (want_sim, want_endpoint) = target(*mode);
                    if *mode == SubscriptionMode::Terminated {
                        self.terminate(sim_id, endpoint_id).await?;
                        sim_status = SIM_DELETED;
                        endpoint_id = None;
                        endpoint_status = None;
                        continue;
                    }
                    // Activate the SIM before enabling the endpoint; disable the endpoint before
                    // suspending the SIM, so the device is never briefly in a billed-but-blocked
                    // or a free-but-open state it was not asked for.
                    let sim_first = want_sim == SIM_ACTIVATED;
                    let needs_sim = !(sim_status == want_sim
                        || (*mode == SubscriptionMode::Deactivated && sim_status == SIM_ISSUED));
                    // An endpoint to create needs a profile: refused before any call, so a SIM is
                    // never activated for an endpoint that cannot be made (found when failed
                    // writes began to be read back: the SIM was left Activated, billed).
                    let new_endpoint_profile = match endpoint_id {
                        None if *mode != SubscriptionMode::Deactivated => Some(
                            desired
                                .service_profile_id
                                .as_deref()
                                .and_then(|p| p.parse::<i64>().ok())
                                .ok_or_else(|| {
                                    BackendError::new(
                                        format!("create an emnify endpoint for SIM {sim_id}"),
                                        ErrorKind::Invalid,
                                        "the SIM has no endpoint; set spec.serviceProfileRef so one can be created",
                                    )
                                })?,
                        ),
                        _ => None,
                    };
                    if sim_first && needs_sim {
                        self.set_sim_status(sim_id, want_sim).await?;
                        sim_status = want_sim;
                    }
                    match endpoint_id {
                        Some(eid) => {
                            if endpoint_status != Some(want_endpoint) {
                                self.set_endpoint_status(eid, want_endpoint).await?;
                                endpoint_status = Some(want_endpoint);
                            }
                        }
                        // Deactivated: no endpoint needed.
                        None => {
                            if let Some(profile) = new_endpoint_profile {
                                endpoint_id =
                                    Some(self.create_endpoint(desired, sim_id, profile, want_endpoint).await?);
                                endpoint_status = Some(want_endpoint);
                                profile_id = Some(profile.to_string());
                            }
                        }
                    }
                    if !sim_first && needs_sim {
                        if sim_status == SIM_FACTORY_TEST && want_sim == SIM_SUSPENDED {
                            // Factory Test goes only to Activated; the endpoint is disabled by now.
                            self.set_sim_status(sim_id, SIM_ACTIVATED).await?;
                        }
                        self.set_sim_status(sim_id, want_sim).await?;
                        sim_status = want_sim;
                    }
                }
            }
        }
        // emnify applies writes synchronously: the SIM is now what the answers said.
        Ok(WriteOutcome::Applied(Box::new(ObservedSubscription {
            mode: mode_of(Some(sim_status), endpoint_status),
            vendor_mode: vendor_mode(sim_status, endpoint_status),
            endpoint_id: endpoint_id.map(|i| i.to_string()),
            service_profile_id: profile_id,
            ..current.clone()
        })))
    }

    /// The endpoint bulk update's item for `changes`, when it can carry all of them: the
    /// endpoint's status (Active <-> Paused on an Activated SIM) and its service profile, on an
    /// endpoint that exists. SIM status changes have no bulk route (docs/bulk-writes.md) and
    /// go through [`Self::update_sim`]. Pure.
    pub(super) fn endpoint_item(
        &self,
        current: &ObservedSubscription,
        changes: &[SubscriptionChange],
    ) -> Option<BulkItem> {
        if !self.bulk_writes || changes.is_empty() {
            return None;
        }
        let endpoint_id: i64 = current.endpoint_id.as_deref()?.parse().ok()?;
        let (sim_status, endpoint_status) = statuses(current);
        let mut endpoint_status = endpoint_status?;
        let mut profile_id = current.service_profile_id.clone();
        for change in changes {
            match change {
                SubscriptionChange::SetServiceProfile(profile) => {
                    profile.parse::<i64>().ok()?;
                    profile_id = Some(profile.clone());
                }
                SubscriptionChange::SetMode(mode @ (SubscriptionMode::Active | SubscriptionMode::Paused))
                    if sim_status == SIM_ACTIVATED =>
                {
                    endpoint_status = target(*mode).1;
                }
                SubscriptionChange::SetMode(_) => return None,
            }
        }
        Some(BulkItem {
            target: endpoint_id.to_string(),
            changes: changes.to_vec(),
            after: ObservedSubscription {
                mode: mode_of(Some(sim_status), Some(endpoint_status)),
                vendor_mode: vendor_mode(sim_status, Some(endpoint_status)),
                service_profile_id: profile_id,
                ..current.clone()
            },
        })
    }

    /// One endpoint (`None`: emnify has no such endpoint).
    async fn endpoint(&self, id: i64, action: &str) -> Result<Option<Endpoint>, BackendError> {
        match self
            .client()
            .call(
                "endpoint.get",
                Method::GET,
                &format!("/api/v1/endpoint/{id}"),
                None,
                None,
                action,
            )
            .await
        {
            Ok(answer) => Ok(Some(answer.json::<Endpoint>(action)?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PATCH /api/v2/endpoint/multi` (`bulk-update-endpoint`): every item in one request,
    /// answered 204 for all of them or one error for the request.
    pub(super) async fn bulk_update_endpoints(&self, items: &[BulkItem]) -> Result<(), BackendError> {
        let action = match items {
            [one] => format!(
                "update emnify endpoint {} in bulk ({})",
                one.target,
                super::super::subscription::list_changes(&one.changes)
            ),
            _ => format!("update {} emnify endpoints in bulk", items.len()),
        };
        let body = items
            .iter()
            .map(|item| {
                endpoint_patch(item).ok_or_else(|| {
                    BackendError::new(
                        &action,
                        ErrorKind::Invalid,
                        format!("endpoint {:?} is not a numeric emnify id", item.target),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.client()
            .call(
                "endpoint.bulk_update",
                Method::PATCH,
                "/api/v2/endpoint/multi",
                None,
                Some(&serde_json::Value::Array(body)),
                &action,
            )
            .await
            .map(drop)
    }

    /// Which items' endpoints have what the item sets (read back after a failed bulk update):
    /// a few are read one by one, more through one endpoint listing (its pages cost less than a
    /// read each).
    pub(super) async fn endpoints_in_effect(&self, items: &[BulkItem]) -> Result<Vec<bool>, BackendError> {
        let wanted: HashMap<i64, usize> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| Some((item.target.parse().ok()?, i)))
            .collect();
        let mut found: Vec<Option<Endpoint>> = vec![None; items.len()];
        if items.len() <= READ_BACK_ONE_BY_ONE {
            for (&id, &i) in &wanted {
                found[i] = self.endpoint(id, &format!("read back emnify endpoint {id}")).await?;
            }
        } else {
            self.client()
                .for_each_page(
                    "endpoint.list",
                    "/api/v1/endpoint",
                    &[],
                    ENDPOINTS_PER_PAGE,
                    "read back emnify endpoints after a bulk update",
                    |page: Vec<Endpoint>| {
                        for e in page {
                            if let Some(&i) = e.id.and_then(|id| wanted.get(&id)) {
                                found[i] = Some(e);
                            }
                        }
                    },
                )
                .await?;
        }
        Ok(items
            .iter()
            .zip(found)
            .map(|(item, endpoint)| endpoint.is_some_and(|e| in_effect(item, &e)))
            .collect())
    }

    async fn set_sim_status(&self, sim_id: i64, status: i64) -> Result<(), BackendError> {
        let action = format!("set emnify SIM {sim_id} to {}", sim_status_name(Some(status)));
        self.client()
            .call(
                "sim.update",
                Method::PATCH,
                &format!("/api/v1/sim/{sim_id}"),
                None,
                Some(&json!({"status": {"id": status}})),
                &action,
            )
            .await
            .map(drop)
    }

    async fn set_endpoint_status(&self, endpoint_id: i64, status: i64) -> Result<(), BackendError> {
        let action = format!(
            "set emnify endpoint {endpoint_id} to {}",
            endpoint_status_name(Some(status))
        );
        self.client()
            .call(
                "endpoint.update",
                Method::PATCH,
                &format!("/api/v1/endpoint/{endpoint_id}"),
                None,
                Some(&json!({"status": {"id": status}})),
                &action,
            )
            .await
            .map(drop)
    }

    async fn create_endpoint(
        &self,
        desired: &DesiredSubscription<'_>,
        sim_id: i64,
        service_profile: i64,
        status: i64,
    ) -> Result<i64, BackendError> {
        let emnify = desired.spec.emnify.clone().unwrap_or_default();
        let name = emnify.endpoint_name.unwrap_or_else(|| desired.name.clone());
        let action = format!("create emnify endpoint {name:?} for SIM {sim_id}");
        let tariff = emnify.tariff_profile_id.or(desired.defaults.tariff_profile_id).ok_or_else(|| {
            BackendError::new(
                action.clone(),
                ErrorKind::Invalid,
                "no tariff profile: set spec.emnify.tariffProfileId or the ProviderConfig's spec.emnify.defaultTariffProfileId",
            )
        })?;
        let body = json!({
            "name": name,
            "status": {"id": status},
            "service_profile": {"id": service_profile},
            "tariff_profile": {"id": tariff},
            // Sent explicitly: the documented default changed between API versions.
            "sim": {"id": sim_id, "activate": false},
        });
        let answer = self
            .client()
            .call(
                "endpoint.create",
                Method::POST,
                "/api/v1/endpoint",
                None,
                Some(&body),
                &action,
            )
            .await?;
        // emnify's spec documents the created endpoint as the 201 body; recorded answers carry a
        // `Location` header too.
        answer
            .location_id()
            .or_else(|| serde_json::from_slice::<Endpoint>(&answer.body).ok().and_then(|e| e.id))
            .ok_or_else(|| {
                BackendError::new(
                    action,
                    ErrorKind::Transient,
                    "created, but the answer has neither a Location header nor an id",
                )
            })
    }

    /// Terminate: release the SIM from its endpoint, delete the endpoint (a retired device; left
    /// in place it would keep its service profile in use, so the profile could never be deleted),
    /// then delete the SIM (irreversible). Each step tolerates an earlier, interrupted attempt.
    async fn terminate(&self, sim_id: i64, endpoint_id: Option<i64>) -> Result<(), BackendError> {
        if let Some(eid) = endpoint_id {
            let action = format!("release emnify SIM {sim_id} from endpoint {eid}");
            self.client()
                .call(
                    "endpoint.update",
                    Method::PATCH,
                    &format!("/api/v1/endpoint/{eid}"),
                    None,
                    Some(&json!({"sim": {"id": null}})),
                    &action,
                )
                .await?;
            let action = format!("delete emnify endpoint {eid} of terminated SIM {sim_id}");
            match self
                .client()
                .call(
                    "endpoint.delete",
                    Method::DELETE,
                    &format!("/api/v1/endpoint/{eid}"),
                    None,
                    None,
                    &action,
                )
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let action = format!("delete (terminate) emnify SIM {sim_id}");
        match self
            .client()
            .call(
                "sim.delete",
                Method::DELETE,
                &format!("/api/v1/sim/{sim_id}"),
                None,
                None,
                &action,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_table() {
        use SubscriptionMode::*;
        assert_eq!(mode_of(Some(SIM_ACTIVATED), Some(ENDPOINT_ENABLED)), Some(Active));
        assert_eq!(mode_of(Some(SIM_ACTIVATED), Some(ENDPOINT_DISABLED)), Some(Paused));
        assert_eq!(mode_of(Some(SIM_SUSPENDED), Some(ENDPOINT_DISABLED)), Some(Deactivated));
        assert_eq!(mode_of(Some(SIM_SUSPENDED), None), Some(Deactivated));
        assert_eq!(
            mode_of(Some(SIM_ISSUED), None),
            Some(Deactivated),
            "never activated counts as deactivated"
        );
        assert_eq!(mode_of(Some(SIM_DELETED), None), Some(Terminated));
        assert_eq!(
            mode_of(Some(SIM_SUSPENDED), Some(ENDPOINT_ENABLED)),
            None,
            "half-configured"
        );
        assert_eq!(mode_of(Some(SIM_ACTIVATED), None), None, "billed but no device");
        assert_eq!(mode_of(Some(SIM_FACTORY_TEST), Some(ENDPOINT_ENABLED)), None);
        for mode in [Active, Paused, Deactivated, Terminated] {
            let (sim, endpoint) = target(mode);
            assert_eq!(
                mode_of(Some(sim), Some(endpoint)),
                Some(mode),
                "target of {mode} reads back as {mode}"
            );
        }
    }

    #[test]
    fn observed_from_wire_shapes() {
        let endpoint: Endpoint = serde_json::from_str(
            r#"{"id":11898598,"name":"phone no2","imei":"3554631177373901","status":{"id":0,"description":"Enabled"},
            "service_profile":{"id":540569,"name":"Default Policy"},
            "sim":{"id":4401340,"iccid":"8988303000006738593","iccid_with_luhn":"89883030000067385937","status":{"id":1,"description":"Activated"},"imsi":"295050901900082","msisdn":"423663921524357"}}"#,
        )
        .unwrap();
        let sim: Sim = serde_json::from_str(
            r#"{"id":4401340,"iccid":"8988303000006738593","iccid_with_luhn":"89883030000067385937","imsi":"295050901900082","msisdn":"423663921524357",
            "status":{"id":1,"description":"Activated"},"activation_date":"2022-03-27T23:20:49.000+0000","endpoint":{"id":11898598,"name":"phone no2"}}"#,
        )
        .unwrap();
        let o = observed(&sim, Some(&EndpointFacts::from(endpoint)));
        assert_eq!(o.mode, Some(SubscriptionMode::Active));
        assert_eq!(o.vendor_mode, "Activated/Enabled");
        assert_eq!(o.iccid.as_deref(), Some("89883030000067385937"));
        assert_eq!(o.service_profile_id.as_deref(), Some("540569"));
        assert_eq!(o.endpoint_id.as_deref(), Some("11898598"));
        assert_eq!(o.id.as_deref(), Some("4401340"));
        assert!(o.matches(&SimIdentity {
            imsi: None,
            iccid: Some("8988303000006738593".into())
        }));
    }
}
