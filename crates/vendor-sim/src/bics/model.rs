//! The simulator's in-memory world: one Enterprise account with its service profiles, plans,
//! endpoints and SIMs, how each renders to BICS's JSON rows, and the deterministic seed.
//!
//! Rendering lives next to the structs so every row shape has one definition, used by the HTTP
//! handlers and by the inspection hooks alike.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::token::{Buckets, Tokens};
use super::{BicsConfig, BicsFault};

/// Service ids of spec §4 with the names `serviceName` renders them as.
pub(crate) const SERVICES: &[(u32, &str)] = &[(2, "SMS-MO"), (3, "SMS-MT"), (4, "DATA"), (5, "NB-IOT")];

/// Access types (RAT) of spec §3.1, lowest first: `02` < `01` < `06` < `10`.
pub(crate) const ACCESS_TYPES: &[(&str, &str)] =
    &[("02", "2G"), ("01", "2G/3G"), ("06", "2G/3G/4G"), ("10", "2G/3G/4G/5G")];

/// Plan categories of `plan.basicInfo.planCategory` (spec §5).
pub(crate) const PLAN_CATEGORIES: &[&str] = &["NORMAL", "ADDON", "TEST", "INVENTORY"];

/// The account's roaming profiles (CreateEndPoint's mandatory `roamingProfileId` must name them).
pub(crate) const ROAMING_PROFILES: &[&str] = &["RP_1", "RP_2"];

/// At most this many addon plans per endpoint (spec §7).
pub(crate) const MAX_ADDONS: usize = 15;

pub(crate) const REQUEST_LOG_CAP: usize = 10_000;

pub(crate) fn service_name(id: u32) -> &'static str {
    SERVICES.iter().find(|(i, _)| *i == id).map_or("UNKNOWN", |(_, n)| n)
}

/// Position of an access type in the RAT order, `None` for unknown codes.
pub(crate) fn rat_rank(code: &str) -> Option<usize> {
    ACCESS_TYPES.iter().position(|(c, _)| *c == code)
}

pub(crate) fn rat_name(code: &str) -> &'static str {
    ACCESS_TYPES.iter().find(|(c, _)| *c == code).map_or("", |(_, n)| n)
}

/// DATA, SMS-MO and SMS-MT need an access type; NB-IoT alone must not have one.
pub(crate) fn needs_access_type(services: &[u32]) -> bool {
    services.iter().any(|s| matches!(s, 2..=4))
}

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct ServiceProfile {
    /// The number in `SP_<n>`.
    pub n: u64,
    pub name: String,
    /// `0` Base, `1` Addon.
    pub category: String,
    /// `0` Inactive, `1` Active.
    pub status: String,
    /// Service ids in the order the caller gave them (duplicates dropped).
    pub services: Vec<u32>,
    pub access_type: Option<String>,
}

impl ServiceProfile {
    pub fn id(&self) -> String {
        format!("SP_{}", self.n)
    }

    /// A `GetServiceProfile` row with the documented fields: `profileId`, `profileName`,
    /// `serviceName`, `ratTypeName` (only with an access type) and `category`. BICS documents no
    /// `status` in the read: the profile status is write-only. With `raw_codes` (the inferred
    /// switch `BicsInferred::profile_codes`) the row also carries the raw `service`,
    /// `accessType` and `status` codes an earlier simulator invented.
    pub fn row(&self, raw_codes: bool) -> Value {
        let names: Vec<&str> = self.services.iter().map(|s| service_name(*s)).collect();
        let mut row = json!({
            "profileId": self.id(),
            "profileName": self.name,
            "serviceName": names.join("|"),
            "category": self.category,
        });
        if let Some(at) = &self.access_type {
            row["ratTypeName"] = json!(rat_name(at));
        }
        if raw_codes {
            let ids: Vec<String> = self.services.iter().map(u32::to_string).collect();
            row["service"] = json!(ids.join("|"));
            row["status"] = json!(self.status);
            if let Some(at) = &self.access_type {
                row["accessType"] = json!(at);
            }
        }
        row
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub id: String,
    pub name: String,
    pub category: String,
    pub plan_type: String,
    pub service_profile: Option<String>,
    pub status: String,
}

impl Plan {
    /// A `QueryRatePlan` row (field names follow `plan.basicInfo`).
    pub fn row(&self) -> Value {
        json!({
            "planId": self.id,
            "planName": self.name,
            "planCategory": self.category,
            "planType": self.plan_type,
            "serviceProfile": self.service_profile.clone().unwrap_or_else(|| "-".into()),
            "planStatus": self.status,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointState {
    PreActive,
    Active,
    Suspended,
    Hold,
}

impl EndpointState {
    pub fn label(self) -> &'static str {
        match self {
            Self::PreActive => "Pre-Active",
            Self::Active => "Active",
            Self::Suspended => "Suspended",
            Self::Hold => "Hold",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().replace(['-', '_', ' '], "").as_str() {
            "preactive" => Some(Self::PreActive),
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "hold" => Some(Self::Hold),
            _ => None,
        }
    }

    /// The state a linked SIM takes when its endpoint is in `self` (the SIM follows, §7).
    pub fn sim_status(self) -> Option<SimStatus> {
        match self {
            Self::PreActive => Some(SimStatus::PreActive),
            Self::Active => Some(SimStatus::Active),
            Self::Suspended => Some(SimStatus::Suspended),
            Self::Hold => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SimStatus {
    ReadyToActivate,
    PreActive,
    Active,
    Suspended,
}

impl SimStatus {
    pub fn label(self) -> &'static str {
        match self {
            Self::ReadyToActivate => "Ready To Activate",
            Self::PreActive => "Pre-Active",
            Self::Active => "Active",
            Self::Suspended => "Suspended",
        }
    }

    /// `simStatusId` filter values: 12 Pre-Active is documented, the others are ours.
    pub fn id(self) -> u32 {
        match self {
            Self::ReadyToActivate => 11,
            Self::PreActive => 12,
            Self::Active => 13,
            Self::Suspended => 14,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Sim {
    pub iccid: String,
    pub imsi: String,
    pub msisdn: String,
    pub status: SimStatus,
    pub endpoint: Option<String>,
}

impl Sim {
    /// A `fetchSIM` row with the fields BICS's own clients read (no published table exists);
    /// `extras` (the inferred switch `BicsInferred::sim_row_extras`) adds a top-level `imsi`,
    /// `msisdn`, `simStatusId` and `iMSIList[].imsi`.
    pub fn row(&self, extras: bool) -> Value {
        let mut row = json!({
            "iccid": self.iccid,
            "simStatus": self.status.label(),
            "endPointId": self.endpoint.clone().unwrap_or_else(|| "-".into()),
            "simAttachStatus": if self.endpoint.is_some() { "ATTACHED" } else { "NOT ATTACHED" },
            "simProduct": "SFT Industrial 3-in-1",
            "eid": "-",
            "activationCode": {"textQrCode": "-", "smDpPlusAdress": "-", "matchingId": "-"},
            "iMSIList": [{"supplierIMSIList": [{"sponsorName": "BICS", "supplierIMSI": self.imsi}]}],
        });
        if extras {
            row["imsi"] = json!(self.imsi);
            row["msisdn"] = json!(self.msisdn);
            row["simStatusId"] = json!(self.status.id().to_string());
            row["iMSIList"][0]["imsi"] = json!(self.imsi);
        }
        row
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub id: String,
    pub name: String,
    pub state: EndpointState,
    pub iccid: Option<String>,
    pub plan_id: Option<String>,
    pub addon_plan_ids: Vec<String>,
    pub roaming_profile_id: Option<String>,
    pub apn_group_id: Option<String>,
}

pub(crate) struct State {
    pub config: BicsConfig,
    pub key: Vec<u8>,
    pub account: Account,
    pub tokens: Tokens,
    pub buckets: Buckets,
    pub profiles: BTreeMap<u64, ServiceProfile>,
    pub next_profile: u64,
    /// Keyed by plan id; ids are numeric strings allocated from `next_plan`.
    pub plans: BTreeMap<String, Plan>,
    pub next_plan: u64,
    /// Keyed by the numeric endpoint id so listings come out in creation order.
    pub endpoints: BTreeMap<u64, Endpoint>,
    pub next_endpoint: u64,
    /// Keyed by ICCID.
    pub sims: BTreeMap<String, Sim>,
    pub faults: Vec<BicsFault>,
    pub request_count: u64,
    pub request_log: VecDeque<(String, String, u16)>,
    pub call_counts: HashMap<String, usize>,
    pub response_seq: u64,
    /// Creates whose object already existed: `CreateServiceProfile` with an existing name (6554),
    /// `CreateEndPoint` with an existing endpoint's name or for a SIM already linked.
    pub repeated_creates: u64,
    /// ICCIDs de-linked from their endpoint (the operator's termination), in order.
    pub delinked: Vec<String>,
}

impl State {
    pub fn profile_by_id(&self, id: &str) -> Option<&ServiceProfile> {
        let n = id.trim().strip_prefix("SP_")?.parse::<u64>().ok()?;
        self.profiles.get(&n)
    }

    /// Ids of the plans that reference `profile_id`.
    pub fn plans_using(&self, profile_id: &str) -> Vec<String> {
        self.plans
            .values()
            .filter(|p| p.service_profile.as_deref() == Some(profile_id))
            .map(|p| p.id.clone())
            .collect()
    }

    pub fn endpoint_key(id: &str) -> Option<u64> {
        id.trim().parse::<u64>().ok()
    }

    pub fn alloc_plan_id(&mut self) -> String {
        self.next_plan += 1;
        self.next_plan.to_string()
    }

    /// `GetEndPointProfile`'s `Response.info`: the documented `basicInfo{iccid, name, msisdn,
    /// imsi, imeiLockStatus}` plus our `endPointId`, `status`, `simStatus`, `planId`,
    /// `addonPlanIds`, `roamingProfileId` and `apnGroupId`. Absent values render as `"-"`.
    /// `GetEndPointProfile`'s `info` as BICS's clients read it; `extras` (the inferred switch
    /// `BicsInferred::endpoint_extras`) keeps our additions.
    pub fn endpoint_profile(&self, e: &Endpoint, extras: bool) -> Value {
        let mut info = self.endpoint_info(e);
        if !extras && let Some(basic) = info["basicInfo"].as_object_mut() {
            basic.retain(|k, _| matches!(k.as_str(), "iccid" | "name" | "msisdn" | "imsi" | "imeiLockStatus"));
        }
        info
    }

    pub fn endpoint_info(&self, e: &Endpoint) -> Value {
        let sim = e.iccid.as_ref().and_then(|i| self.sims.get(i));
        let dash = |v: Option<&String>| v.cloned().unwrap_or_else(|| "-".into());
        json!({"basicInfo": {
            "endPointId": e.id,
            "name": e.name,
            "iccid": dash(e.iccid.as_ref()),
            "msisdn": dash(sim.map(|s| &s.msisdn)),
            "imsi": dash(sim.map(|s| &s.imsi)),
            "imeiLockStatus": "0",
            "status": e.state.label(),
            "simStatus": sim.map_or("-", |s| s.status.label()),
            "planId": dash(e.plan_id.as_ref()),
            "addonPlanIds": e.addon_plan_ids,
            "roamingProfileId": dash(e.roaming_profile_id.as_ref()),
            "apnGroupId": dash(e.apn_group_id.as_ref()),
        }})
    }

    /// Moves an endpoint to `to`; its SIM (if any) follows.
    pub fn set_state(&mut self, endpoint: u64, to: EndpointState) {
        let Some(e) = self.endpoints.get_mut(&endpoint) else {
            return;
        };
        e.state = to;
        if let (Some(iccid), Some(status)) = (e.iccid.clone(), to.sim_status())
            && let Some(s) = self.sims.get_mut(&iccid)
        {
            s.status = status;
        }
    }

    pub fn summary(&self) -> Value {
        let count = |st: EndpointState| self.endpoints.values().filter(|e| e.state == st).count();
        json!({
            "account": {"id": self.account.id, "name": self.account.name},
            "service_profiles": self.profiles.len(),
            "plans": self.plans.len(),
            "endpoints": self.endpoints.len(),
            "endpoints_by_state": {
                "Pre-Active": count(EndpointState::PreActive),
                "Active": count(EndpointState::Active),
                "Suspended": count(EndpointState::Suspended),
                "Hold": count(EndpointState::Hold),
            },
            "sims": self.sims.len(),
            "free_sims": self.sims.values().filter(|s| s.endpoint.is_none()).count(),
            "live_access_tokens": self.tokens.live_access_tokens(),
            "pending_faults": self.faults.len(),
            "request_count": self.request_count,
        })
    }
}

/// ICCID check digit (Luhn over the 18 leading digits).
pub(crate) fn luhn_digit(digits: &str) -> u32 {
    let sum: u32 = digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// The seeded world; identical for identical `rng_seed` (only the token key is random).
pub(crate) fn seed(config: BicsConfig, key: Vec<u8>) -> State {
    let mut rng = StdRng::seed_from_u64(config.seed.rng_seed);
    let account = Account {
        id: super::DEMO_ACCOUNT_ID.to_string(),
        name: "Demo Fleet NV".to_string(),
    };
    let mut s = State {
        key,
        account,
        tokens: Tokens::default(),
        buckets: Buckets::default(),
        profiles: BTreeMap::new(),
        next_profile: 1000,
        plans: BTreeMap::new(),
        next_plan: 572_959,
        endpoints: BTreeMap::new(),
        next_endpoint: 700_000,
        sims: BTreeMap::new(),
        faults: Vec::new(),
        request_count: 0,
        request_log: VecDeque::new(),
        call_counts: HashMap::new(),
        response_seq: 0,
        repeated_creates: 0,
        delinked: Vec::new(),
        config,
    };

    // Every Enterprise starts with DEFAULT holding every service it is entitled to (§3).
    s.next_profile += 1;
    let default_profile = ServiceProfile {
        n: s.next_profile,
        name: "DEFAULT".into(),
        category: "0".into(),
        status: "1".into(),
        services: vec![4, 2, 3, 5],
        access_type: Some("10".into()),
    };
    let default_id = default_profile.id();
    s.profiles.insert(default_profile.n, default_profile);

    let plan_id = s.alloc_plan_id();
    s.plans.insert(
        plan_id.clone(),
        Plan {
            id: plan_id.clone(),
            name: "Demo IoT Base".into(),
            category: "NORMAL".into(),
            plan_type: "0".into(),
            service_profile: Some(default_id),
            status: "Active".into(),
        },
    );

    let iccid_base: u64 = rng.random_range(100_000_000..900_000_000) * 100;
    let imsi_base: u64 = rng.random_range(1_000_000_000..9_000_000_000);
    let msisdn_base: u64 = rng.random_range(10_000_000..90_000_000);
    let cycle = [
        EndpointState::Active,
        EndpointState::Active,
        EndpointState::PreActive,
        EndpointState::Suspended,
    ];
    let total = s.config.seed.endpoints + s.config.seed.free_sims;
    for i in 0..total {
        let i64_ = i as u64;
        let body = format!("8932071{:011}", iccid_base + i64_);
        let iccid = format!("{body}{}", luhn_digit(&body));
        let sim = Sim {
            iccid: iccid.clone(),
            imsi: format!("20628{:010}", imsi_base + i64_),
            msisdn: format!("3247{:08}", (msisdn_base + i64_) % 100_000_000),
            status: SimStatus::ReadyToActivate,
            endpoint: None,
        };
        s.sims.insert(iccid.clone(), sim);
        if i < s.config.seed.endpoints {
            s.next_endpoint += 1;
            let n = s.next_endpoint;
            let kind = if i % 5 == 4 { "gateway" } else { "sensor" };
            let state = cycle[i % cycle.len()];
            s.endpoints.insert(
                n,
                Endpoint {
                    id: n.to_string(),
                    name: format!("{kind}-{:03}", i + 1),
                    state,
                    iccid: Some(iccid.clone()),
                    plan_id: Some(plan_id.clone()),
                    addon_plan_ids: Vec::new(),
                    roaming_profile_id: Some("RP_1".into()),
                    apn_group_id: Some("PDP_1785".into()),
                },
            );
            if let Some(sim) = s.sims.get_mut(&iccid) {
                sim.endpoint = Some(n.to_string());
            }
            s.set_state(n, state);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rat_order_and_names() {
        assert!(rat_rank("02") < rat_rank("01"));
        assert!(rat_rank("01") < rat_rank("06"));
        assert!(rat_rank("06") < rat_rank("10"));
        assert_eq!(rat_rank("03"), None);
        assert_eq!(rat_name("10"), "2G/3G/4G/5G");
        assert!(needs_access_type(&[5, 4]));
        assert!(!needs_access_type(&[5]));
    }

    #[test]
    fn seed_is_deterministic_and_mixed() {
        let a = seed(BicsConfig::default(), vec![1]);
        let b = seed(BicsConfig::default(), vec![2]);
        let iccids = |s: &State| s.sims.keys().cloned().collect::<Vec<_>>();
        assert_eq!(iccids(&a), iccids(&b));
        assert_eq!(a.sims.len(), 15);
        assert_eq!(a.endpoints.len(), 10);
        assert_eq!(a.sims.values().filter(|s| s.endpoint.is_none()).count(), 5);
        for sim in a.sims.values() {
            assert_eq!(sim.iccid.len(), 19);
            let (body, check) = sim.iccid.split_at(18);
            assert_eq!(check.parse::<u32>().unwrap(), luhn_digit(body));
        }
        let states: Vec<_> = a.endpoints.values().map(|e| e.state).collect();
        assert!(states.contains(&EndpointState::PreActive) && states.contains(&EndpointState::Suspended));
        let e = a
            .endpoints
            .values()
            .find(|e| e.state == EndpointState::Suspended)
            .unwrap();
        assert_eq!(a.sims[e.iccid.as_ref().unwrap()].status, SimStatus::Suspended);
        assert_eq!(a.profiles.values().next().unwrap().row(false)["profileId"], "SP_1001");
    }
}
