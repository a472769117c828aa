//! BICS SIM for Things backend on the RPC-style API (`/api/<Verb>`). Writes may fail or time out
//! while still running ("verify completion", result codes 10239 / 10240, or no answer in time):
//! the backend then reads the state back (by name for a create) before it sends anything again,
//! so the vendor never ends with two profiles and no write is lost.

pub mod client;
pub mod map;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use self::client::BicsClient;
use self::map::{Change, ProfileRow, text};
use super::{
    AccountBackend, AccountInfo, BackendError, Capabilities, DesiredServiceProfile, DesiredSubscription, ErrorKind,
    Inventory, InventoryBuilder, ListedProfile, Lookup, Observation, ObservedProfile, ObservedSubscription,
    ProfileChange, ProfileOp, ProfileSection, ProfileSettings, ServiceProfileBackend, SimIdentity, SimKey,
    SubscriptionBackend, SubscriptionChange, SubscriptionProfile, WriteOutcome,
};
use crate::crd::{BicsServiceProfile, SubscriptionMode};

/// SIMs per `fetchSIM` page in a sweep.
const SIMS_PER_PAGE: u32 = 1000;

pub struct BicsBackend {
    client: Arc<BicsClient>,
    /// How long to keep reading back after a write whose outcome is unknown.
    verify_timeout: Duration,
}

/// How a verified write ended: the vendor's answer, or what reading back found.
enum Sent<T, V> {
    Answered(T),
    Confirmed(V),
}

impl BicsBackend {
    pub fn new(client: Arc<BicsClient>, verify_timeout: Duration) -> Self {
        BicsBackend { client, verify_timeout }
    }

    pub fn client(&self) -> &Arc<BicsClient> {
        &self.client
    }

    async fn profiles(&self, id: Option<&str>) -> Result<Vec<ProfileRow>, BackendError> {
        let action = match id {
            Some(id) => format!("get BICS service profile {id}"),
            None => "list BICS service profiles".to_string(),
        };
        let query: Vec<(&str, String)> = id.map(|i| ("serviceProfileId", i.to_string())).into_iter().collect();
        match self
            .client
            .call("GetServiceProfile", Method::GET, &query, None, &action, &[])
            .await
        {
            Ok(resp) => Ok(resp["responseParam"]["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(ProfileRow::parse)
                .collect()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    async fn by_name(&self, name: &str) -> Result<Vec<ProfileRow>, BackendError> {
        Ok(self
            .profiles(None)
            .await?
            .into_iter()
            .filter(|r| r.name == name.trim())
            .collect())
    }

    /// Read back until `check` finds what it looks for or the verify timeout passes. Transient
    /// read errors are retried; others end the wait.
    async fn verify<T, F, Fut>(&self, mut check: F) -> Result<Option<T>, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, BackendError>>,
    {
        let started = Instant::now();
        let mut delay = Duration::from_millis(250);
        loop {
            match check().await {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) => {}
                Err(e)
                    if matches!(
                        e.kind,
                        ErrorKind::Transient | ErrorKind::RateLimited { .. } | ErrorKind::OutcomeUnknown
                    ) => {}
                Err(e) => return Err(e),
            }
            if started.elapsed() + delay > self.verify_timeout {
                return Ok(None);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(15));
        }
    }

    /// Send a write at most `sends` times: when its outcome is unknown ("verify completion", no
    /// answer in time), read back with `landed` first, and send again only if the write is
    /// verifiably not there. `landed` returning `None` means "not visible", `Some(v)` "there".
    /// Still unknown after the last send, the `OutcomeUnknown` error stands.
    async fn send_verified<T, V, W, WF, L, LF>(
        &self,
        sends: usize,
        mut write: W,
        mut landed: L,
    ) -> Result<Sent<T, V>, BackendError>
    where
        W: FnMut() -> WF,
        WF: std::future::Future<Output = Result<T, BackendError>>,
        L: FnMut() -> LF,
        LF: std::future::Future<Output = Result<Option<V>, BackendError>>,
    {
        let mut unknown = None;
        for _ in 0..sends.max(1) {
            match write().await {
                Ok(answer) => return Ok(Sent::Answered(answer)),
                Err(e) if e.kind == ErrorKind::OutcomeUnknown => {
                    tracing::warn!(error = %e, "write outcome unknown; reading back before anything else");
                    if let Some(seen) = self.verify(&mut landed).await? {
                        return Ok(Sent::Confirmed(seen));
                    }
                    unknown = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(unknown.unwrap_or_else(|| {
            BackendError::new("send a BICS write", ErrorKind::OutcomeUnknown, "could not be verified")
        }))
    }

    fn spec<'a>(desired: &'a DesiredServiceProfile<'_>, action: &str) -> Result<&'a BicsServiceProfile, BackendError> {
        desired.spec.bics_sft.as_ref().ok_or_else(|| {
            BackendError::new(
                action,
                ErrorKind::Invalid,
                "spec.bicsSft is required for a BICS ProviderConfig",
            )
        })
    }

    /// A profile with the name exists: adopt it when it is what the spec asks for.
    fn adopt(
        &self,
        name: &str,
        spec: &BicsServiceProfile,
        rows: Vec<ProfileRow>,
        action: &str,
    ) -> Result<String, BackendError> {
        match rows.as_slice() {
            [row] if map::matches(name, spec, row) => Ok(row.id.clone()),
            [row] => Err(BackendError::new(
                action,
                ErrorKind::Conflict,
                format!(
                    "BICS already has a different service profile named {name:?} ({}); names are unique at BICS",
                    row.id
                ),
            )),
            rows => Err(BackendError::new(
                action,
                ErrorKind::Conflict,
                format!("{} BICS profiles are named {name:?}", rows.len()),
            )),
        }
    }

    async fn try_create(&self, body: &Value, action: &str) -> Result<Option<String>, BackendError> {
        let resp = self
            .client
            .call("CreateServiceProfile", Method::POST, &[], Some(body), action, &[])
            .await?;
        let id = resp["serviceProfile"]
            .as_str()
            .or_else(|| resp["responseParam"]["serviceProfile"].as_str());
        Ok(id.map(str::to_string))
    }
}

/// Whether a read-back row shows a modify's readable fields. `status` cannot be read back (BICS
/// does not return it); a modify is applied as a whole, so the readable fields stand for it.
fn modify_applied(row: &ProfileRow, fields: &serde_json::Map<String, Value>) -> bool {
    fields.iter().all(|(k, v)| {
        let want = v.as_str().unwrap_or_default();
        match k.as_str() {
            "name" => row.name == want,
            "accessType" => row.access_type.as_deref() == Some(want),
            "service" => row.services == want.split('|').filter_map(|x| x.parse().ok()).collect(),
            _ => true,
        }
    })
}

/// Whether a modify carries a field a read-back can confirm.
fn verifiable(fields: &serde_json::Map<String, Value>) -> bool {
    fields
        .keys()
        .any(|k| matches!(k.as_str(), "name" | "accessType" | "service"))
}

#[async_trait]
impl ServiceProfileBackend for BicsBackend {
    async fn observe(
        &self,
        desired: &DesiredServiceProfile<'_>,
        lookup: &Lookup,
    ) -> Result<Observation<ObservedProfile>, BackendError> {
        let spec = Self::spec(desired, "observe BICS service profile")?;
        let rows = match lookup {
            Lookup::Id(id) => self
                .profiles(Some(id))
                .await?
                .into_iter()
                .filter(|r| &r.id == id)
                .collect(),
            Lookup::Name(name) => self.by_name(name).await?,
        };
        match rows.as_slice() {
            [] => Ok(Observation::Missing),
            [row] => {
                let changes = map::plan(&desired.name, spec, row, desired.written.as_deref());
                Ok(Observation::Present(ObservedProfile {
                    id: row.id.clone(),
                    used_count: None,
                    summary: map::summary(row, &changes),
                    changes,
                }))
            }
            many => Ok(Observation::Ambiguous {
                ids: many.iter().map(|r| r.id.clone()).collect(),
            }),
        }
    }

    /// One `GetServiceProfile` without an id: every profile of the account.
    async fn list(&self) -> Result<Vec<ListedProfile>, BackendError> {
        Ok(self
            .profiles(None)
            .await?
            .into_iter()
            .map(|row| ListedProfile {
                settings: map::settings_of(&row).map(|bics| ProfileSettings {
                    bics_sft: Some(bics),
                    unmanaged: vec![
                        "bicsSft.status: BICS does not return it, so it is written as Active; the first reconcile under Full sends it (set Inactive first if the profile is inactive)".to_string(),
                    ],
                    ..Default::default()
                }),
                id: row.id,
                name: row.name,
            })
            .collect())
    }

    async fn create(&self, desired: &DesiredServiceProfile<'_>) -> Result<String, BackendError> {
        let action = format!("create BICS service profile {:?}", desired.name);
        let spec = Self::spec(desired, &action)?;
        let body = map::create_body(&desired.name, spec);
        let name = desired.name.clone();
        let sent = self
            .send_verified(
                2,
                || self.try_create(&body, &action),
                || async { Ok(Some(self.by_name(&name).await?).filter(|r| !r.is_empty())) },
            )
            .await;
        match sent {
            Ok(Sent::Answered(Some(id))) => Ok(id),
            // Success without an id in the answer: the name is unique, look it up.
            Ok(Sent::Answered(None)) => self.adopt(&name, spec, self.by_name(&name).await?, &action),
            // A create whose answer was lost, found by reading back.
            Ok(Sent::Confirmed(rows)) => self.adopt(&name, spec, rows, &action),
            // Duplicate name: an earlier attempt (ours or a lost one) landed; adopt it when it is
            // what we asked for.
            Err(e) if e.kind == ErrorKind::Conflict => self.adopt(&name, spec, self.by_name(&name).await?, &action),
            Err(e) => Err(e),
        }
    }

    async fn update(&self, id: &str, changes: &[ProfileChange]) -> Result<(), BackendError> {
        for change in changes {
            let fields = match &change.op {
                ProfileOp::Bics(Change::Modify { fields }) => fields,
                ProfileOp::Bics(Change::Immutable { field }) => {
                    return Err(BackendError::new(
                        format!("change {field} of BICS service profile {id}"),
                        ErrorKind::Invalid,
                        change.description.clone(),
                    ));
                }
                _ => {
                    return Err(BackendError::new(
                        "update BICS service profile",
                        ErrorKind::Invalid,
                        "not a BICS change",
                    ));
                }
            };
            let action = format!("{} on BICS service profile {id}", change.description);
            let mut profile = fields.clone();
            profile.insert("id".into(), json!(id));
            let body = json!({"Request": {"requestParam": {"serviceProfile": profile}}});
            let modify = || {
                self.client
                    .call("ModifyServiceProfile", Method::POST, &[], Some(&body), &action, &[])
            };
            if verifiable(fields) {
                self.send_verified(2, modify, || async {
                    Ok(self
                        .profiles(Some(id))
                        .await?
                        .into_iter()
                        .find(|r| r.id == id && modify_applied(r, fields)))
                })
                .await?;
            } else {
                // Only write-only fields: nothing to read back, and sending the same values again
                // is harmless.
                match modify().await {
                    Err(e) if e.kind == ErrorKind::OutcomeUnknown => drop(modify().await?),
                    other => drop(other?),
                }
            }
        }
        Ok(())
    }

    fn write_only(&self, desired: &DesiredServiceProfile<'_>) -> Option<String> {
        desired.spec.bics_sft.as_ref().map(map::write_only)
    }

    async fn delete(&self, id: &str) -> Result<(), BackendError> {
        let action = format!("delete BICS service profile {id}");
        let body = json!({"Request": {"requestParam": {"serviceProfile": {"id": id}}}});
        let sent = self
            .send_verified(
                2,
                || {
                    self.client
                        .call("DeleteServiceProfile", Method::POST, &[], Some(&body), &action, &[])
                },
                || async { Ok(self.profiles(Some(id)).await?.iter().all(|r| r.id != id).then_some(())) },
            )
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Our mode for a BICS SIM status (the SIM follows its endpoint). BICS has one suspended state,
/// which satisfies both `Paused` and `Deactivated`; a never-activated (Pre-Active) SIM counts as
/// `Deactivated`; a SIM without endpoint (back in inventory) satisfies `Deactivated` and
/// `Terminated`. Pure.
pub fn modes_of(sim_status: &str, has_endpoint: bool) -> (Option<SubscriptionMode>, Vec<SubscriptionMode>) {
    use SubscriptionMode::*;
    match (sim_status, has_endpoint) {
        (_, false) => (None, vec![Deactivated, Terminated]),
        ("Active", true) => (Some(Active), vec![]),
        ("Suspended", true) => (Some(Paused), vec![Deactivated]),
        ("Pre-Active", true) => (Some(Deactivated), vec![]),
        _ => (None, vec![]),
    }
}

/// A `fetchSIM` row. Its fields are seen in BICS's own clients, not in a published table: `iccid`,
/// `simStatus`, `endPointId` (`-` when none) and the IMSIs in
/// `iMSIList[].supplierIMSIList[].supplierIMSI`. A top-level `imsi` / `msisdn` is taken when
/// present. No documented read returns the endpoint's plan (see [`BicsBackend`]).
pub(crate) fn observed_from_sim(row: &Value) -> ObservedSubscription {
    let endpoint = text(&row["endPointId"]);
    let status = text(&row["simStatus"]).unwrap_or_else(|| "Unknown".into());
    let (mode, equivalent) = modes_of(&status, endpoint.is_some());
    let supplier_imsi = row["iMSIList"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["supplierIMSIList"].as_array().into_iter().flatten())
        .find_map(|s| text(&s["supplierIMSI"]));
    ObservedSubscription {
        imsi: supplier_imsi
            .or_else(|| text(&row["imsi"]))
            .or_else(|| text(&row["iMSIList"][0]["imsi"])),
        iccid: text(&row["iccid"]),
        msisdn: text(&row["msisdn"]),
        imei: None,
        id: None,
        vendor_mode: if endpoint.is_some() {
            status
        } else {
            format!("{status}/no endpoint")
        },
        endpoint_id: endpoint,
        mode,
        equivalent,
        service_profile_id: None,
        first_activation_date: None,
    }
}

/// At most this many `fetchSIM` pages in one sweep (10 million SIMs at 1,000 a page): a vendor
/// that never ends its listing cannot keep a sweep running forever.
const MAX_PAGES: u64 = 10_000;

impl BicsBackend {
    /// One SIM by ICCID (ICCIDs are unique: one page).
    async fn sim_by_iccid(&self, iccid: &str) -> Result<Option<Value>, BackendError> {
        let action = format!("find BICS SIM {iccid}");
        let q = [("iccid", iccid.to_string())];
        match self.client.call("fetchSIM", Method::GET, &q, None, &action, &[]).await {
            Ok(resp) => Ok(resp["responseParam"]["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| text(&r["iccid"]).as_deref() == Some(iccid))
                .cloned()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every SIM, page by page. BICS documents `page` and `perPage` but no total and no page-size
    /// cap, so the listing ends only at an empty page (or one shorter than the longest page seen:
    /// then the vendor's own cap is known). A page that repeats the previous one means the vendor
    /// ignored `page`: the listing could never be complete, so that is an error rather than a
    /// silently short inventory.
    /// Every SIM of the account, page by page into `each` (rows are not kept: an account may
    /// hold hundreds of thousands). Returns the pages read.
    async fn fetch_sims(&self, mut each: impl FnMut(&[Value])) -> Result<u64, BackendError> {
        let action = "list BICS SIMs";
        let mut longest = 0usize;
        let mut previous_first: Option<String> = None;
        for page in 1..=MAX_PAGES {
            let q = [("page", page.to_string()), ("perPage", SIMS_PER_PAGE.to_string())];
            let batch = match self.client.call("fetchSIM", Method::GET, &q, None, action, &[]).await {
                Ok(resp) => resp["responseParam"]["rows"].as_array().cloned().unwrap_or_default(),
                // "No data available" past the last page.
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(e),
            };
            let got = batch.len();
            let first = batch.first().and_then(|r| text(&r["iccid"]));
            if got > 0 && first.is_some() && first == previous_first {
                return Err(BackendError::new(
                    action,
                    ErrorKind::Transient,
                    format!(
                        "page {page} repeats page {}: BICS did not page the listing, so it cannot be complete",
                        page - 1
                    ),
                ));
            }
            each(&batch);
            if got == 0 || got < longest {
                return Ok(page);
            }
            longest = longest.max(got);
            previous_first = first;
        }
        Err(BackendError::new(
            action,
            ErrorKind::Transient,
            format!("more than {MAX_PAGES} pages: stopped"),
        ))
    }

    async fn endpoint_call(
        &self,
        verb: &str,
        endpoint: &str,
        params: Option<Value>,
        action: &str,
        also_ok: &[&str],
    ) -> Result<Value, BackendError> {
        let mut request = json!({"endPointId": endpoint});
        if let Some(p) = params {
            request["requestParam"] = p;
        }
        self.client
            .call(
                verb,
                Method::POST,
                &[],
                Some(&json!({"Request": request})),
                action,
                also_ok,
            )
            .await
    }

    /// An endpoint write whose outcome may be unknown (no answer within BICS's 180 s, or "verify
    /// completion"): read the SIM back until `landed` sees it applied before anything is sent
    /// again. Unconfirmed, the error stands and the controller records the change as pending
    /// with an unknown outcome (it observes again before any resend).
    async fn endpoint_write<W, WF, F>(
        &self,
        iccid: &str,
        write: W,
        landed: F,
    ) -> Result<Sent<Value, Value>, BackendError>
    where
        W: FnMut() -> WF,
        WF: std::future::Future<Output = Result<Value, BackendError>>,
        F: Fn(&Value) -> bool,
    {
        self.send_verified(1, write, || async {
            Ok(self.sim_by_iccid(iccid).await?.filter(|row| landed(row)))
        })
        .await
    }

    /// The roaming profiles and APN group for a new endpoint: the subscription's, else the
    /// ProviderConfig's. BICS requires at least one roaming profile.
    fn endpoint_settings(
        desired: &DesiredSubscription<'_>,
        action: &str,
    ) -> Result<(String, Option<String>), BackendError> {
        let own = desired.spec.bics_sft.as_ref();
        let roaming = match own.map(|b| &b.roaming_profile_ids).filter(|r| !r.is_empty()) {
            Some(r) => r.clone(),
            None => desired.defaults.roaming_profile_ids.clone(),
        };
        if roaming.is_empty() {
            return Err(BackendError::new(
                action,
                ErrorKind::Invalid,
                "BICS requires a roaming profile for a new endpoint: set spec.bicsSft.roamingProfileIds or the ProviderConfig's spec.bicsSft.defaultRoamingProfileIds",
            ));
        }
        let apn = own
            .and_then(|b| b.apn_group_id.clone())
            .or_else(|| desired.defaults.apn_group_id.clone());
        Ok((roaming.join("|"), apn))
    }
}

/// BICS on its RPC API. No documented read returns an endpoint's plan (GetEndPointProfile's
/// `basicInfo` has `iccid`, `name`, `msisdn`, `imsi`, `imeiLockStatus` in BICS's own clients), so
/// the plan is write-only: the controller compares the spec with the plan it last set
/// ([`SubscriptionProfile::WriteOnlyPlan`]).
#[async_trait]
impl SubscriptionBackend for BicsBackend {
    async fn inventory(&self) -> Result<Inventory, BackendError> {
        let mut inventory = InventoryBuilder::default();
        let pages = self
            .fetch_sims(|rows| {
                for row in rows {
                    inventory.push(&observed_from_sim(row));
                }
            })
            .await?;
        Ok(inventory.finish(pages))
    }

    async fn observe(&self, identity: &SimIdentity) -> Result<Option<ObservedSubscription>, BackendError> {
        Ok(match &identity.iccid {
            Some(iccid) => self
                .sim_by_iccid(iccid)
                .await?
                .map(|row| observed_from_sim(&row))
                .filter(|o| o.matches(identity)),
            // BICS finds SIMs by ICCID; an IMSI-only subscription is looked up in the inventory.
            None => self.inventory().await?.find(identity),
        })
    }

    async fn update(
        &self,
        desired: &DesiredSubscription<'_>,
        current: &ObservedSubscription,
        changes: &[SubscriptionChange],
    ) -> Result<WriteOutcome, BackendError> {
        let iccid = current.iccid.clone().unwrap_or_default();
        let mut endpoint = current.endpoint_id.clone();
        let mut state = if endpoint.is_some() {
            current.vendor_mode.clone()
        } else {
            "Ready To Activate".to_string()
        };
        let mut plan = current.service_profile_id.clone();
        for change in changes {
            match change {
                SubscriptionChange::SetServiceProfile(plan_id) => {
                    // Setting a plan twice is harmless: no read-back needed before a resend.
                    if let Some(e) = &endpoint {
                        let action = format!("change the plan of BICS endpoint {e} to {plan_id}");
                        self.endpoint_call("ChangePlan", e, Some(json!({"planId": plan_id})), &action, &["7001"])
                            .await?;
                    }
                    plan = Some(plan_id.clone());
                }
                SubscriptionChange::SetMode(mode) => {
                    use SubscriptionMode::*;
                    if *mode == Terminated {
                        if let Some(e) = endpoint.clone() {
                            let action = format!("de-link the SIM from BICS endpoint {e}");
                            self.endpoint_write(
                                &iccid,
                                || self.endpoint_call("DeLinkSim", &e, None, &action, &["6413", "6420"]),
                                |row| text(&row["endPointId"]).as_deref() != Some(e.as_str()),
                            )
                            .await?;
                            let action = format!("delete BICS endpoint {e}");
                            self.endpoint_call("DeleteEndPoint", &e, None, &action, &["10159"])
                                .await?;
                            endpoint = None;
                            plan = None;
                        }
                        state = "Ready To Activate".into();
                        continue;
                    }
                    let e = match (&endpoint, mode) {
                        (Some(e), _) => e.clone(),
                        (None, Deactivated) => continue,
                        (None, _) => {
                            let action = format!("create BICS endpoint {:?} for SIM {iccid}", desired.name);
                            let plan_id =
                                plan.clone()
                                    .or_else(|| desired.service_profile_id.clone())
                                    .ok_or_else(|| {
                                        BackendError::new(
                                            action.clone(),
                                            ErrorKind::Invalid,
                                            "the SIM has no endpoint; set spec.bicsSft.planId so one can be created",
                                        )
                                    })?;
                            let (roaming, apn) = Self::endpoint_settings(desired, &action)?;
                            let mut param = json!({
                                "name": desired.name, "isLinkSIM": "true", "iccid": iccid, "planId": plan_id,
                                "roamingProfileId": roaming, "isDefaultActivation": "false",
                            });
                            if let Some(apn) = apn {
                                param["apnGroupId"] = json!(apn);
                            }
                            let body = json!({"Request": {"requestParam": param}});
                            let create = || {
                                self.client
                                    .call("CreateEndPoint", Method::POST, &[], Some(&body), &action, &[])
                            };
                            // Unknown outcome: the SIM shows an endpoint once the create landed.
                            let id = match self
                                .endpoint_write(&iccid, create, |row| text(&row["endPointId"]).is_some())
                                .await?
                            {
                                Sent::Answered(resp) => text(&resp["endPointId"]),
                                Sent::Confirmed(row) => text(&row["endPointId"]),
                            }
                            .ok_or_else(|| {
                                BackendError::new(action, ErrorKind::Transient, "no endPointId in the answer")
                            })?;
                            endpoint = Some(id.clone());
                            state = "Pre-Active".into();
                            plan = Some(plan_id);
                            id
                        }
                    };
                    let activate = matches!(mode, Active | Paused) && state == "Pre-Active";
                    if activate {
                        let action = format!("activate BICS endpoint {e}");
                        self.endpoint_write(
                            &iccid,
                            || self.endpoint_call("EndPointActivation", &e, None, &action, &["5014", "2507"]),
                            |row| text(&row["simStatus"]).as_deref() == Some("Active"),
                        )
                        .await?;
                        state = "Active".into();
                    }
                    let lifecycle = match (mode, state.as_str()) {
                        (Active, "Suspended") => Some(("A", "Active")),
                        (Paused | Deactivated, "Active") => Some(("S", "Suspended")),
                        _ => None,
                    };
                    if let Some((code, to)) = lifecycle {
                        let action = format!("set BICS endpoint {e} to {to}");
                        self.endpoint_write(
                            &iccid,
                            || {
                                self.endpoint_call(
                                    "EndPointLifeCycleChange",
                                    &e,
                                    Some(json!({"lifeCycle": code, "reason": "1"})),
                                    &action,
                                    &["5017", "9003"],
                                )
                            },
                            |row| text(&row["simStatus"]).as_deref() == Some(to),
                        )
                        .await?;
                        state = to.into();
                    }
                }
            }
        }
        let (mode, equivalent) = modes_of(&state, endpoint.is_some());
        Ok(WriteOutcome::Applied(Box::new(ObservedSubscription {
            vendor_mode: if endpoint.is_some() {
                state
            } else {
                "Ready To Activate/no endpoint".into()
            },
            endpoint_id: endpoint,
            mode,
            equivalent,
            service_profile_id: plan,
            ..current.clone()
        })))
    }
}

#[async_trait]
impl AccountBackend for BicsBackend {
    async fn verify(&self) -> Result<AccountInfo, BackendError> {
        self.client.access_token().await?;
        Ok(AccountInfo { account: None })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            profile_section: Some(ProfileSection::BicsSft),
            read_only_profiles: false,
            subscription_profile: SubscriptionProfile::WriteOnlyPlan,
            // BICS finds SIMs by ICCID (fetchSIM); IMSIs are the supplier's and may be several.
            sim_key: SimKey::Iccid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_table() {
        use SubscriptionMode::*;
        assert_eq!(modes_of("Active", true), (Some(Active), vec![]));
        assert_eq!(modes_of("Suspended", true), (Some(Paused), vec![Deactivated]));
        assert_eq!(modes_of("Pre-Active", true), (Some(Deactivated), vec![]));
        assert_eq!(
            modes_of("Ready To Activate", false),
            (None, vec![Deactivated, Terminated])
        );
    }
}
