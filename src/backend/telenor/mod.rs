//! Telenor IoT Connect backend. Subscriptions are keyed by IMSI; writes are asynchronous (202,
//! applied later); the account is listed through the inventory search. Service policies are
//! read-only in the API, so a ServiceProfile on Telenor only observes one (by id or name).

pub mod api;
pub mod client;

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::json;

use self::client::TelenorClient;
use super::{
    AccountBackend, AccountInfo, BackendError, Capabilities, DesiredServiceProfile, DesiredSubscription, ErrorKind,
    Inventory, InventoryBuilder, ListedProfile, Lookup, Observation, ObservedProfile, ObservedSubscription,
    ProfileChange, ProfileSettings, ServiceProfileBackend, SimIdentity, SimKey, SubscriptionBackend,
    SubscriptionChange, SubscriptionProfile, WriteOutcome,
};
use crate::crd::{ObservedServiceProfile, SubscriptionMode};

/// Our mode for a Telenor mode value; `ACTIVE_NO_BILLING` (test-ready mode) and unknown values
/// are none of ours. Pure.
pub fn mode_of(mode: &str) -> Option<SubscriptionMode> {
    match mode {
        "ACTIVE" => Some(SubscriptionMode::Active),
        "PAUSED" => Some(SubscriptionMode::Paused),
        "DEACTIVATED" => Some(SubscriptionMode::Deactivated),
        "TERMINATED" => Some(SubscriptionMode::Terminated),
        _ => None,
    }
}

/// Telenor's value for our mode.
pub fn wire_mode(mode: SubscriptionMode) -> &'static str {
    match mode {
        SubscriptionMode::Active => "ACTIVE",
        SubscriptionMode::Paused => "PAUSED",
        SubscriptionMode::Deactivated => "DEACTIVATED",
        SubscriptionMode::Terminated => "TERMINATED",
    }
}

pub(crate) fn observed(s: &api::ConnectivitySubscription, policy: Option<String>) -> ObservedSubscription {
    let vendor_mode = s.mode.clone().unwrap_or_else(|| "UNKNOWN".into());
    ObservedSubscription {
        imsi: s.imsi.clone(),
        iccid: s.iccid.clone(),
        msisdn: s.msisdn.clone(),
        imei: s
            .imei
            .as_ref()
            .and_then(|i| i.detected_imei.clone().or_else(|| i.assigned_imei.clone())),
        id: None,
        endpoint_id: None,
        mode: mode_of(&vendor_mode),
        vendor_mode,
        service_profile_id: policy.or_else(|| s.service_policy_id.clone()),
        first_activation_date: s.first_activation_date.clone(),
        equivalent: Vec::new(),
    }
}

pub struct TelenorBackend {
    client: Arc<TelenorClient>,
}

impl TelenorBackend {
    pub fn new(client: Arc<TelenorClient>) -> Self {
        TelenorBackend { client }
    }

    pub fn client(&self) -> &Arc<TelenorClient> {
        &self.client
    }

    async fn policy(&self, id: &str) -> Result<Option<api::Resource<api::ServicePolicy>>, BackendError> {
        let action = format!("get Telenor service policy {id}");
        match self
            .client
            .call(
                "service_policy.get",
                Method::GET,
                &format!("{}/{id}", api::SERVICE_POLICIES),
                &[],
                None,
                &action,
                false,
            )
            .await
        {
            Ok(answer) => Ok(Some(answer.json(&action)?)),
            // An id that does not match the policy id format is answered 400: it names nothing.
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Invalid) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl TelenorBackend {
    /// Every service policy of the account.
    async fn policies(&self) -> Result<Vec<api::ServicePolicy>, BackendError> {
        let action = "list Telenor service policies";
        let list: api::ServicePolicyList = self
            .client
            .call(
                "service_policy.list",
                Method::GET,
                api::SERVICE_POLICIES,
                &[],
                None,
                action,
                false,
            )
            .await?
            .json(action)?;
        Ok(list.items.into_iter().map(|r| r.attributes).collect())
    }
}

fn read_only(what: &str) -> BackendError {
    BackendError::new(
        what,
        ErrorKind::Invalid,
        "Telenor IoT Connect service policies are read-only in the API; create or change them in the portal",
    )
}

#[async_trait]
impl ServiceProfileBackend for TelenorBackend {
    async fn observe(
        &self,
        _desired: &DesiredServiceProfile<'_>,
        lookup: &Lookup,
    ) -> Result<Observation<ObservedProfile>, BackendError> {
        let policies: Vec<api::ServicePolicy> = match lookup {
            Lookup::Id(id) => self.policy(id).await?.into_iter().map(|r| r.attributes).collect(),
            Lookup::Name(name) => self
                .policies()
                .await?
                .into_iter()
                .filter(|p| p.name.as_deref() == Some(name))
                .collect(),
        };
        match policies.as_slice() {
            [] => Ok(Observation::Missing),
            [p] => Ok(Observation::Present(ObservedProfile {
                id: p.id.clone(),
                // Telenor does not report how many subscriptions use a policy.
                used_count: None,
                summary: ObservedServiceProfile {
                    data_limits: Vec::new(),
                    name: p.name.clone().unwrap_or_default(),
                    description: p.type_.clone(),
                    ..Default::default()
                },
                changes: Vec::new(),
            })),
            many => Ok(Observation::Ambiguous {
                ids: many.iter().map(|p| p.id.clone()).collect(),
            }),
        }
    }

    /// Every service policy (one call). Policies are read-only in the API and have no settings
    /// a spec carries: a name and an id.
    async fn list(&self) -> Result<Vec<ListedProfile>, BackendError> {
        Ok(self
            .policies()
            .await?
            .into_iter()
            .map(|p| ListedProfile {
                name: p.name.unwrap_or_default(),
                id: p.id,
                settings: Ok(ProfileSettings::default()),
            })
            .collect())
    }

    async fn create(&self, desired: &DesiredServiceProfile<'_>) -> Result<String, BackendError> {
        Err(read_only(&format!("create Telenor service policy {:?}", desired.name)))
    }

    async fn update(&self, id: &str, _changes: &[ProfileChange]) -> Result<(), BackendError> {
        Err(read_only(&format!("update Telenor service policy {id}")))
    }

    async fn delete(&self, id: &str) -> Result<(), BackendError> {
        Err(read_only(&format!("delete Telenor service policy {id}")))
    }
}

impl TelenorBackend {
    /// `GET` a connectivity subscription (by its path or a relationship URL) with its service
    /// policy and IMEI ("Get connectivity subscription").
    async fn subscription_at(
        &self,
        path: &str,
        identity: &SimIdentity,
    ) -> Result<Option<ObservedSubscription>, BackendError> {
        let action = format!("get Telenor connectivity subscription {identity}");
        let query = [
            ("include", "servicePolicy".to_string()),
            ("extendWith", "imei".to_string()),
        ];
        match self
            .client
            .call("subscription.get", Method::GET, path, &query, None, &action, false)
            .await
        {
            Ok(answer) => {
                let r: api::Resource<api::ConnectivitySubscription> = answer.json(&action)?;
                let o = observed(&r.attributes, r.related_id("servicePolicy"));
                Ok(Some(o).filter(|o| o.matches(identity)))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl SubscriptionBackend for TelenorBackend {
    async fn inventory(&self) -> Result<Inventory, BackendError> {
        let mut inventory = InventoryBuilder::default();
        let pages = self
            .client
            .search_each(None, |items| {
                for s in items.iter().flat_map(|i| i.connectivity_subscriptions.iter()) {
                    inventory.push(&observed(s, None));
                }
            })
            .await?;
        Ok(inventory.finish(pages))
    }

    async fn observe(&self, identity: &SimIdentity) -> Result<Option<ObservedSubscription>, BackendError> {
        if let Some(imsi) = &identity.imsi {
            return self
                .subscription_at(&format!("{}/{imsi}", api::SUBSCRIPTIONS), identity)
                .await;
        }
        let Some(iccid) = &identity.iccid else { return Ok(None) };
        // Documented: `GET .../profiles/{iccid}` ("Get profile"); a profile always has one
        // connectivity subscription, whose relationship URL is followed (the search documents
        // only `between` filters, and no GET of a subscription by ICCID exists).
        let action = format!("get Telenor profile {iccid}");
        let answer = match self
            .client
            .call(
                "profile.get",
                Method::GET,
                &format!("{}/{iccid}", api::PROFILES),
                &[("include", "connectivitySubscriptions".to_string())],
                None,
                &action,
                false,
            )
            .await
        {
            Ok(answer) => answer,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let profile: api::Resource<serde_json::Value> = answer.json(&action)?;
        let Some(path) = profile
            .related_urls("connectivitySubscriptions")
            .first()
            .and_then(|u| api::relative_path(u))
        else {
            return Ok(None);
        };
        self.subscription_at(&path, identity).await
    }

    async fn update(
        &self,
        _desired: &DesiredSubscription<'_>,
        current: &ObservedSubscription,
        changes: &[SubscriptionChange],
    ) -> Result<WriteOutcome, BackendError> {
        let (id_type, id) = match (&current.imsi, &current.iccid) {
            (Some(imsi), _) => ("imsi", imsi),
            (None, Some(iccid)) => ("iccid", iccid),
            (None, None) => {
                return Err(BackendError::new(
                    "update Telenor subscription",
                    ErrorKind::Invalid,
                    "no IMSI or ICCID",
                ));
            }
        };
        for change in changes {
            let (operation, path, body) = match change {
                SubscriptionChange::SetMode(mode) => (
                    "subscription.mode",
                    format!("{}/{id_type}/{id}/mode", api::SUBSCRIPTIONS),
                    json!({"mode": wire_mode(*mode)}),
                ),
                SubscriptionChange::SetServiceProfile(policy) => (
                    "subscription.service_policy",
                    format!("{}/{id_type}/{id}/service-policy", api::SUBSCRIPTIONS),
                    json!({"servicePolicyId": policy}),
                ),
            };
            let action = format!("{change} on Telenor subscription {id}");
            self.client
                .call(operation, Method::PUT, &path, &[], Some(&body), &action, true)
                .await?;
        }
        Ok(WriteOutcome::Accepted)
    }
}

#[async_trait]
impl AccountBackend for TelenorBackend {
    async fn verify(&self) -> Result<AccountInfo, BackendError> {
        self.client.access_token().await?;
        Ok(AccountInfo { account: None })
    }

    /// Telenor's service policies are read-only in the API and take no settings.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            profile_section: None,
            read_only_profiles: true,
            subscription_profile: SubscriptionProfile::ServiceProfileRef,
            // Subscriptions are keyed by IMSI (`/subscriptions/{imsi}`).
            sim_key: SimKey::Imsi,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_both_ways() {
        for mode in [
            SubscriptionMode::Active,
            SubscriptionMode::Paused,
            SubscriptionMode::Deactivated,
            SubscriptionMode::Terminated,
        ] {
            assert_eq!(mode_of(wire_mode(mode)), Some(mode));
        }
        assert_eq!(mode_of("ACTIVE_NO_BILLING"), None, "test-ready mode is none of ours");
        assert_eq!(mode_of("SOMETHING_NEW"), None);
    }
}
